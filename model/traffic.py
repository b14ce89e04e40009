"""Traffic allocation (SPEC sections 1, 2, 4): turning merchants' posts into cascades and their
level-1 exposures, "social first".

Channels modelled so far:

* ``moments``: the post appears in the merchant's friends' Moments feeds; each friend sees it
  with ``cascade.p_view_friend``.
* ``official_account``: the mall pushes the post to the account's followers: each friend follows
  with ``channels.p_follow_account`` and opens a push with ``community.push_open_rate``.
* ``search``: mini-program search, public traffic ("system recommendation"): searchers are drawn
  from the merchant's city (LBS) and kept when the post's category is among their interest tags;
  the ranking gives cheaper offers more searchers (``channels.search_price_weight``). Searchers
  are strangers, so they trust the post less (``cascade.trust_stranger``).
* ``groups``: the post goes to one part of one of the merchant's groups; members read it that
  day or get it as a targeted push, down-weighted in parts over the threshold (see
  :mod:`model.community`). Besides the paid posts drawn for groups, a merchant running a group
  operates it with free community posts (``community.group_post_rate`` a day), and buyers it
  recruited into the group read them too (private traffic).
* ``live_stream``: a mini-program live stream, by merchants that live-stream (``tools.share_live``;
  the others post to Moments instead); friends join with ``channels.p_view_live`` and convert
  better while watching (``channels.live_conversion_boost``); its level-3 (live fission)
  reaches strangers like any other post's.
* ``external_link``: a Moments post linking out to another platform; its reach is down-weighted
  step by step as the merchant posts more of them (``platform.external_link_steps`` and
  ``external_link_weights``), and its orders are paid outside WeChat.

Social channels are allocated first: a merchant's friends and groups see its posts before any
public traffic does. A merchant with deep analytics targets the pushes of its friend channels
and its groups (:func:`model.tools.target_exposures`). Video-account commerce is not yet modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels import rng
from kernels.backend import concat_ranges
from kernels.cascade import draw_in_home_city, expose_neighbours
from model.community import group_exposures
from model.merchant import MAX_POSTS_PER_TICK
from model.tools import target_exposures

CHANNELS = ("moments", "official_account", "search", "groups", "live_stream", "external_link")
MOMENTS, OFFICIAL_ACCOUNT, SEARCH, GROUPS, LIVE_STREAM, EXTERNAL_LINK = range(len(CHANNELS))
#: channels whose level-1 viewers get the post as a friend's personal recommendation (the
#: official account's followers are friends too, but get a brand broadcast)
FRIEND_RECOMMENDATION = (MOMENTS, GROUPS, LIVE_STREAM, EXTERNAL_LINK)


@dataclass
class TickPosts:
    """The tick's cascades (host arrays, one entry per post).

    Attributes:
        key: (int64[C]) stable cascade key: merchant index * MAX_POSTS_PER_TICK + post slot.
        merchant: (int64[C]) merchant index.
        origin: (int64[C]) merchant's account.
        channel: (int8[C]) index into :data:`CHANNELS`.
        group: (int64[C]) group part posted to (see :class:`model.community.GroupParts`), -1 for
            other channels.
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
               group_count: np.ndarray, channel_shares: tuple[float, ...],
               seed: int, tick: int, live: np.ndarray | None = None,
               n_group_posts: np.ndarray | None = None) -> TickPosts:
    """Lay out the tick's posts and pick each post's channel.

    Args:
        n_posts: (int64[M]) paid posts each merchant makes this tick; their channels are drawn.
        n_group_posts: (int64[M]) community posts each merchant makes to its own groups (channel
            ``groups``), after its paid posts in slot order, so a paid post's key and draws do
            not depend on them. ``n_posts + n_group_posts`` must not exceed
            :data:`~model.merchant.MAX_POSTS_PER_TICK`.
        merchant_uid: (int64[M]) merchants' accounts.
        group_start, group_count: (int64[M]) each merchant's group parts are
            ``group_start[m] .. group_start[m] + group_count[m] - 1``.
        channel_shares: shares of posts by channel, in :data:`CHANNELS` order; a post drawn for
            groups by a merchant without a group goes to Moments.
        live: (bool[M]) merchants that live-stream (all when omitted); a live post drawn by a
            merchant that does not goes to Moments.
    """
    n_group_posts = np.zeros_like(n_posts) if n_group_posts is None else n_group_posts
    total = n_posts + n_group_posts
    merchant = np.repeat(np.arange(n_posts.shape[0], dtype=np.int64), total)
    slot = concat_ranges(np.zeros_like(total), total, xp=np)  # 0, 1, ... within each merchant
    key = merchant * MAX_POSTS_PER_TICK + slot
    u = rng.uniform(rng.stream_key(seed, "traffic.channel", tick), key)
    channel = np.minimum(np.searchsorted(np.cumsum(channel_shares), u, side="right"), len(CHANNELS) - 1)
    channel[slot >= n_posts[merchant]] = GROUPS
    channel[(channel == GROUPS) & (group_count[merchant] == 0)] = MOMENTS
    if live is not None:
        channel[(channel == LIVE_STREAM) & ~live[merchant]] = MOMENTS
    which = rng.integers(rng.stream_key(seed, "traffic.group", tick), key, np.maximum(group_count[merchant], 1))
    group = np.where(channel == GROUPS, group_start[merchant] + which, -1)
    return TickPosts(key=key, merchant=merchant, origin=merchant_uid[merchant],
                     channel=channel.astype(np.int8), group=group)


def expose_searchers(origin: Any, category_bit: Any, n_candidates: Any, city: Any, city_start: Any,
                     interests: Any, cascade: Any, cascade_key: Any, key: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Searchers matched to listings: candidates from the merchant's city, kept on interest match.

    Args:
        origin: (int64[S]) merchants' accounts of the listed posts; category_bit (uint16[S]).
        n_candidates: (int64[S]) searchers drawn per listing.
        city (int32[N]), city_start (int64[K+1]): cities, contiguous in user id.
        interests: (uint16[N]) interest bitmasks.
        cascade: (int64[S]) local cascade index of each listing; cascade_key (int64[C]).
        key: stream key; candidate j of post k has draw index ``k * 2^20 + j``.

    Returns:
        (cascade (int64[X]), user (int64[X])) of matched searchers.
    """
    owner, user = draw_in_home_city(origin, n_candidates, cascade_key[cascade] * (1 << 20), city, city_start, key,
                                    xp=xp)
    match = (interests[user] & category_bit[owner]) != 0
    return cascade[owner][match], user[match]


def level1_exposures(posts_dev: dict[str, Any], pop: Any, config: Any, group_parts: Any, city_start: Any,
                     seed: int, tick: int, *, xp: ModuleType,
                     recruits: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """The channels' level-1 exposures, (cascade (int64[X]), user (int64[X])) on the device.

    Args:
        posts_dev: the :class:`TickPosts` arrays on the device, by field name, plus
            ``category_bit`` (uint16[C]), ``search_candidates`` (int64[C]), ``reach_weight``
            (float64[C], the external-link step weight times the poster's fatigue factor) and
            ``targeted`` (bool[C], posts of merchants with deep analytics).
        pop: the :class:`~model.population.Population`.
        config: the :class:`~model.config.ScenarioConfig`.
        group_parts: the :class:`~model.community.GroupParts` group posts go to.
        city_start: (int64[K+1]) first user of each city.
        recruits: merchant -> buyers CSR of buyers recruited into the merchant's group (they
            read its group posts), see :func:`model.community.group_exposures`.
    """
    channel = posts_dev["channel"]
    keys = posts_dev["key"]
    local = xp.arange(channel.shape[0], dtype=xp.int64)
    parts = []
    friend_views = ((MOMENTS, config.cascade.p_view_friend),
                    (OFFICIAL_ACCOUNT, config.channels.p_follow_account * config.community.push_open_rate),
                    (LIVE_STREAM, config.channels.p_view_live),
                    (EXTERNAL_LINK, config.cascade.p_view_friend))
    tools = config.tools
    targeted = posts_dev["targeted"]

    def boost(posts: Any) -> Any:
        """(float64[S]) deep-analytics merchants push harder (matched viewers keep all of it,
        off-interest viewers are thinned by ``targeted_only``)."""
        return xp.where(targeted[posts], tools.analytics_match_boost, 1.0)

    def targeted_only(cascade: Any, user: Any, stream: str) -> tuple[Any, Any]:
        return target_exposures(cascade, user, targeted, posts_dev["category_bit"], pop.state["interests"],
                                tools.analytics_offinterest_keep / tools.analytics_match_boost, keys,
                                rng.stream_key(seed, stream, tick), xp=xp)

    for ch, p_view in friend_views:
        posts = local[channel == ch]
        # a post's reach weight: external-link steps and fatigue
        p = p_view * posts_dev["reach_weight"][posts] * boost(posts)
        parts.append(expose_neighbours(pop.indptr, pop.indices, posts_dev["origin"][posts], posts, keys,
                                       xp.minimum(p, 1.0),
                                       rng.stream_key(seed, f"traffic.{CHANNELS[ch]}.view", tick), xp=xp))
    friend_cascade = xp.concatenate([c for c, _ in parts])
    friend_user = xp.concatenate([u for _, u in parts])
    parts = [targeted_only(friend_cascade, friend_user, "traffic.analytics.target")]
    posts = local[channel == SEARCH]
    parts.append(expose_searchers(posts_dev["origin"][posts], posts_dev["category_bit"][posts],
                                  posts_dev["search_candidates"][posts], pop.state["city"], city_start,
                                  pop.state["interests"], posts, keys,
                                  rng.stream_key(seed, "traffic.search.candidates", tick), xp=xp))
    posts = local[channel == GROUPS]
    # deep analytics target group pushes as they do friend pushes (a stream of their own)
    group_cascade, group_user = group_exposures(
        group_parts, pop.group_members, posts_dev["group"][posts], posts, keys, posts_dev["category_bit"],
        pop.state["profile_complete"], pop.state["interests"], seed, tick, xp=xp,
        reach_weight=posts_dev["reach_weight"][posts] * boost(posts), recruits=recruits,
        merchant=posts_dev["merchant"][posts])
    parts.append(targeted_only(group_cascade, group_user, "traffic.analytics.target_groups"))
    return xp.concatenate([c for c, _ in parts]), xp.concatenate([u for _, u in parts])


def external_link_weight(recent_links: np.ndarray, steps: list[int], weights: list[float]) -> np.ndarray:
    """(float64[M]) reach weight of a merchant's next external link, stepped by its recent count.

    Args:
        recent_links: (int64[M]) external-link posts by each merchant in the trailing window.
        steps: counts at which the weight steps down (increasing).
        weights: one more weight than steps: below the first step, between steps, past the last.
    """
    return np.asarray(weights, dtype=np.float64)[np.searchsorted(np.asarray(steps), recent_links, side="right")]
