"""Traffic allocation (SPEC sections 1, 2, 4): turning merchants' posts into cascades and their
level-1 exposures, "social first".

Channels modelled so far:

* ``moments``: the post appears in the merchant's friends' Moments feeds; each friend sees it
  with ``cascade.p_view_friend``.
* ``groups``: the post goes to one of the merchant's groups; each member reads it with the daily
  chance implied by ``community.weekly_active``, times ``platform.group_downweight`` when the
  group has more than ``platform.group_downweight_threshold`` members.

Official-account malls, mini-program search (public traffic by location and interest), live
streams and external links are not yet modelled (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels import rng
from kernels.cascade import expose_neighbours
from model.merchant import MAX_POSTS_PER_TICK

CHANNELS = ("moments", "groups")


@dataclass
class TickPosts:
    """The tick's cascades (host arrays, one entry per post).

    Attributes:
        key: (int64[C]) stable cascade key: merchant index * MAX_POSTS_PER_TICK + post slot.
        merchant: (int64[C]) merchant index.
        origin: (int64[C]) merchant's account.
        channel: (int8[C]) index into :data:`CHANNELS`.
        group: (int64[C]) group posted to, -1 for Moments.
    """

    key: np.ndarray
    merchant: np.ndarray
    origin: np.ndarray
    channel: np.ndarray
    group: np.ndarray

    @property
    def n(self) -> int:
        return int(self.key.shape[0])


def plan_posts(n_posts: np.ndarray, merchant_uid: np.ndarray, group_start: np.ndarray,
               group_count: np.ndarray, share_moments: float, seed: int, tick: int) -> TickPosts:
    """Lay out the tick's posts and pick each post's channel.

    Args:
        n_posts: (int64[M]) posts each merchant makes this tick.
        merchant_uid: (int64[M]) merchants' accounts.
        group_start, group_count: (int64[M]) each merchant's groups are
            ``group_start[m] .. group_start[m] + group_count[m] - 1``.
        share_moments: share of posts to Moments; the rest go to a group when the merchant
            has one (and to Moments otherwise).
    """
    merchant = np.repeat(np.arange(n_posts.shape[0], dtype=np.int64), n_posts)
    slot = np.arange(merchant.shape[0], dtype=np.int64) - np.repeat(np.cumsum(n_posts) - n_posts, n_posts)
    key = merchant * MAX_POSTS_PER_TICK + slot
    to_group = ~rng.bernoulli(rng.stream_key(seed, "traffic.channel", tick), key, share_moments)
    to_group &= group_count[merchant] > 0
    which = rng.integers(rng.stream_key(seed, "traffic.group", tick), key, np.maximum(group_count[merchant], 1))
    group = np.where(to_group, group_start[merchant] + which, -1)
    return TickPosts(key=key, merchant=merchant, origin=merchant_uid[merchant],
                     channel=to_group.astype(np.int8), group=group)


def level1_exposures(posts_dev: dict[str, Any], pop: Any, p_view_friend: float, p_read: Any,
                     seed: int, tick: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """The channels' level-1 exposures, (cascade (int64[X]), user (int64[X])) on the device.

    Args:
        posts_dev: the :class:`TickPosts` arrays on the device, by field name.
        pop: the :class:`~model.population.Population`.
        p_read: (float64[G]) chance that a member of each group reads a post there today.
    """
    channel = posts_dev["channel"]
    local = xp.arange(channel.shape[0], dtype=xp.int64)
    moments = local[channel == 0]
    c1, u1 = expose_neighbours(pop.indptr, pop.indices, posts_dev["origin"][moments], moments,
                               posts_dev["key"], p_view_friend,
                               rng.stream_key(seed, "traffic.moments.view", tick), xp=xp)
    grouped = local[channel == 1]
    groups = posts_dev["group"][grouped]
    c2, u2 = expose_neighbours(pop.group_indptr, pop.group_members, groups, grouped,
                               posts_dev["key"], p_read[groups],
                               rng.stream_key(seed, "traffic.groups.read", tick), xp=xp)
    return xp.concatenate([c1, c2]), xp.concatenate([u1, u2])


def group_read_probability(group_size: Any, weekly_active: float, threshold: int, downweight: float,
                           *, xp: ModuleType) -> Any:
    """(float64[G]) daily chance a member reads a group post.

    A member active in a given week with probability ``weekly_active`` is active on a given day
    with ``1 - (1 - weekly_active) ** (1/7)``; groups over ``threshold`` members are down-weighted.
    """
    daily = 1.0 - (1.0 - weekly_active) ** (1.0 / 7.0)
    return xp.where(group_size > threshold, daily * downweight, daily)
