"""Video-account distribution: staged public traffic pools, on the device (issue 19, first part).

A short video on a video account (视频号) reaches people two ways: socially (friends of those who
liked or shared it; the cascade kernel's levels 2 and 3 do that) and through the recommender's
**staged traffic pools**, the way short-video recommenders hand out public traffic: a new video
is shown to a small pool of users whose interest tags match its category; if enough of them
watch it through, it is promoted to the next, larger pool, and so on; a video that falls short
stops where it is. This module draws those pools for all of a tick's videos at once.

For video ``v`` at stage ``s`` (0-based), the pool has ``pool_sizes[s]`` candidates drawn
uniformly from all users (counter-based: draw ``j`` has index ``key[v] * 2**24 + s * 2**20 +
j`` in the stream), kept when interested in the video's category; each kept viewer watches it
through with probability ``watch[v]`` (draw index ``key[v] * N + user`` in the watch stream, so a
viewer's draw does not depend on which pool it came from). The video advances to stage ``s + 1``
when the share of its stage-``s`` viewers who watched through is at least ``thresholds[s]``.
A user who lands in two pools of the same video is exposed once.

Every step is a whole-array operation over the tick's videos, one loop over the (few) stages,
so NumPy and CuPy give identical results; :func:`reference_pool_exposures` in the tests is the
slow per-video loop it must match.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import rng
from .backend import bin_sums, isin_sorted, merge_sorted

#: draws of one stage of one video: at most this many candidates a stage
STAGE_STRIDE = 1 << 20
#: draws of one video over all its stages
VIDEO_STRIDE = 1 << 24


@dataclass(frozen=True)
class PoolExposures:
    """Who the recommender showed the tick's videos to.

    Attributes:
        video: (int64[X]) local index of the video of each exposure.
        user: (int64[X]) the viewer; each (video, user) pair once.
        watched: (bool[X]) the viewer watched the video through.
        stage: (int64[V]) the last pool each video reached (0-based).
    """

    video: Any
    user: Any
    watched: Any
    stage: Any


def pool_exposures(key: Any, category_bit: Any, watch: Any, interests: Any, pool_sizes: list[int] | tuple[int, ...],
                   thresholds: list[float] | tuple[float, ...], pool_key: int, watch_key: int, *,
                   xp: ModuleType) -> PoolExposures:
    """Run every video through the staged pools.

    Args:
        key: (int64[V]) stable cascade key of each video (below 2**39).
        category_bit: (uint16[V]) the video's category as an interest bit.
        watch: (float64[V]) chance that an interested viewer watches the video through.
        interests: (uint16[N]) users' interest bitmasks.
        pool_sizes: candidates drawn at each stage (each below :data:`STAGE_STRIDE`).
        thresholds: one fewer than ``pool_sizes``: the watch-through share at stage ``s`` that
            promotes a video to stage ``s + 1``.
        pool_key, watch_key: stream keys of the candidate draws and the watch-through draws.

    Returns:
        :class:`PoolExposures`, exposures sorted by video then user.
    """
    if len(thresholds) != len(pool_sizes) - 1:
        raise ValueError("thresholds needs one entry fewer than pool_sizes")
    if max(pool_sizes) >= STAGE_STRIDE:
        raise ValueError(f"a pool has at most {STAGE_STRIDE - 1} candidates")
    n_users = interests.shape[0]
    n_videos = key.shape[0]
    stage = xp.zeros(n_videos, dtype=xp.int64)
    alive = xp.ones(n_videos, dtype=xp.bool_)
    seen_pairs = xp.zeros(0, dtype=xp.int64)  # video * N + user, sorted, every stage so far
    for s, size in enumerate(pool_sizes):
        videos = xp.nonzero(alive)[0]
        # every alive video draws `size` candidates: draw d is candidate d % size of video d // size
        # (arithmetic, where a repeat by counts would read its length back from the device)
        draw = xp.arange(videos.shape[0] * int(size), dtype=xp.int64)
        slot, j = draw // size, draw % size
        owner = videos[slot]
        index = key[owner] * VIDEO_STRIDE + s * STAGE_STRIDE + j
        user = rng.integers(pool_key, index, n_users, xp=xp)
        interested = (interests[user] & category_bit[owner]) != 0
        pair = xp.unique(owner[interested] * n_users + user[interested])
        new = pair[~isin_sorted(pair, seen_pairs, xp=xp)]
        seen_pairs = merge_sorted(seen_pairs, new, xp=xp)
        if s == len(pool_sizes) - 1:
            break
        # promotion: this stage's viewers (repeat viewers count again: they are in this pool)
        pool_video, pool_user = pair // n_users, pair % n_users
        watched = rng.bernoulli(watch_key, key[pool_video] * n_users + pool_user, watch[pool_video], xp=xp)
        viewers = bin_sums(pool_video, n_videos, xp=xp)
        watchers = bin_sums(pool_video, n_videos, watched, xp=xp)  # integer counts: exact anywhere
        promoted = alive & (viewers > 0) & (watchers >= thresholds[s] * viewers)
        stage = xp.where(promoted, s + 1, stage)
        alive = promoted
        if not bool(alive.any()):
            break
    video, user = seen_pairs // n_users, seen_pairs % n_users
    watched = rng.bernoulli(watch_key, key[video] * n_users + user, watch[video], xp=xp)
    return PoolExposures(video=video, user=user, watched=watched, stage=stage)
