"""Posting: how many posts each merchant makes today (its budget, applied for all at once).

A merchant's paid posts are its post rate (the traffic budget its adaptation sets), stochastically
rounded; a merchant running a group also makes free community posts to it
(``community.group_post_rate`` a day), which cost no traffic. None while onboarding, rectifying
or gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...kernels import rng
from ..plan import Mechanism

#: at most this many posts per merchant per tick; part of each post's stable cascade key
MAX_POSTS_PER_TICK = 16


def posts_today(post_rate: np.ndarray, can_post: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """(int64[M]) each merchant's posts this tick: its post rate, stochastically rounded (the
    integer part, plus one with the fractional part's probability), none when it cannot post,
    at most :data:`MAX_POSTS_PER_TICK`.

    Args:
        post_rate: (float64[M]) budgets; can_post (bool[M]); draw (float64[M]) uniform draws.
    """
    whole = np.floor(post_rate)
    n = whole.astype(np.int64) + (draw < post_rate - whole)
    return np.where(can_post, np.minimum(n, MAX_POSTS_PER_TICK), 0)


@dataclass(frozen=True)
class PostCounts:
    """Posts each merchant makes this tick (host, int64[M] each).

    Attributes:
        paid: posts its budget pays traffic for; their channels are drawn.
        community: free posts to its own groups.
    """

    paid: np.ndarray
    community: np.ndarray

    @property
    def reviewed(self) -> np.ndarray:
        """(int64[M]) posts machine review sees: community posts are content too."""
        return self.paid + self.community


class Posting(Mechanism):
    name = "posting"
    engine = "arrays"
    sections = ("community",)
    uses = ("community",)
    does = "each merchant's paid posts (its budget, stochastically rounded) and free posts to its own groups"

    def step(self, tick: int) -> PostCounts:
        seed, merchants = self.config.run.seed, self.model.merchants
        can_post = merchants.can_post(tick)
        draw = rng.uniform(rng.stream_key(seed, "merchant.posts", tick), merchants.n)
        paid = posts_today(merchants.post_rate, can_post, draw)
        draw = rng.uniform(rng.stream_key(seed, "merchant.group_posts", tick), merchants.n)
        group_rate = np.full(merchants.n, self.config.community.group_post_rate)
        community = posts_today(group_rate, can_post & (self.model.community.parts.part_count > 0), draw)
        return PostCounts(paid=paid, community=np.minimum(community, MAX_POSTS_PER_TICK - paid))
