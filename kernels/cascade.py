"""The per-tick cascade kernel: all of a tick's posts spread together through the friend graph.

A *cascade* is one post: it has a stable key (merchant index x posts-per-tick slot, so the same
post keeps its random draws when an unrelated rule changes), an origin account, a category and
a price. Its level-1 exposures come from the post's channel (the merchant's friends for Moments,
its group's members for group posts), drawn by :func:`expose_neighbours`. Each exposed user
buys with a level's conversion probability times the user's propensity, the interest match and
the price factor, and shares with a level's share probability; a share exposes the sharer's
friends at the next level. A user is exposed to a given cascade at most once.

Draws are counter-based (:mod:`weishang.kernels.rng`): the view of edge ``e`` by cascade ``k`` uses index
``k * E + e``, the buy and share of user ``u`` use index ``k * N + u``, so the kernel gives the
same result on NumPy and CuPy, batch by batch.

:func:`independent_cascade` is the textbook independent cascade model (Kempe, Kleinberg & Tardos
2003) on the same machinery, public for users who want IC itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import fused, rng
from .backend import (
    array_module,
    bin_sums,
    concat_ranges,
    isin_sorted,
    merge_sorted,
    repeat_ids_and_firsts,
    sorted_unique,
)


def independent_cascade(indptr: Any, indices: Any, seeds: Any, p: Any, *, seed: int = 0,
                        xp: ModuleType | None = None, return_parent: bool = False) -> Any:
    """The independent cascade model on a CSR graph.

    Every node that becomes active at step t gets one attempt on each of its out-edges at step
    t + 1, each succeeding with probability ``p``; a node activated by several attempts in the
    same step takes as parent the one on the lowest edge position. The attempt on edge ``e`` uses
    counter-based draw ``e`` of stream ``"independent_cascade"`` (each edge is tried at most once,
    since a node activates once), so the result is a pure function of (graph, seeds, p, seed) and
    identical on NumPy and CuPy.

    Args:
        indptr: (int64[N+1]) CSR offsets; indices: (int32[E]) targets of each out-edge.
        seeds: (int[S]) initially active nodes (repeats are fine).
        p: attempt success probability: a scalar, or (float64[E]) one per edge.
        seed: base seed of the draws.
        xp: array module (inferred from ``indptr`` when omitted).
        return_parent: also return who activated whom.

    Returns:
        ``step`` (int64[N]): activation step, 0 for seeds, -1 for never activated; with
        ``return_parent``, also ``parent`` (int64[N]): the activating node, -1 for seeds and
        inactive nodes.
    """
    xp = xp or array_module(indptr)
    n = indptr.shape[0] - 1
    key = rng.stream_key(seed, "independent_cascade")
    per_edge = getattr(p, "ndim", 0) > 0
    step = xp.full(n, -1, dtype=xp.int64)
    parent = xp.full(n, -1, dtype=xp.int64)
    frontier = xp.unique(xp.asarray(seeds, dtype=xp.int64))
    step[frontier] = 0
    t = 0
    while frontier.shape[0]:
        start = indptr[frontier]
        length = indptr[frontier + 1] - start
        edge = concat_ranges(start, length, xp=xp)
        if edge.shape[0] == 0:
            break
        hit = xp.flatnonzero(rng.bernoulli(key, edge, p[edge] if per_edge else p, xp=xp))
        target = indices[edge[hit]].astype(xp.int64)
        # the source of a hit: the frontier row whose range holds its position (hits are few)
        source = frontier[xp.searchsorted(xp.cumsum(length), hit, side="right")]
        fresh = step[target] < 0
        target, source = target[fresh], source[fresh]
        # edges are in frontier order and frontier is sorted, so the first hit on a target is
        # the one on the lowest edge position; unique's first index picks it
        target, first = xp.unique(target, return_index=True)
        t += 1
        step[target] = t
        parent[target] = source[first]
        frontier = target
    return (step, parent) if return_parent else step


@dataclass(frozen=True)
class LevelRule:
    """Per-level probabilities of one cascade step.

    Attributes:
        p_view: chance that a user reached from the previous level's sharers sees the post
            (ignored at level 1, whose exposures the channel provides).
        p_buy: base conversion of an exposed user at this level (the trust a viewer puts in a
            post from this distance: the merchant's friend, a friend's share, a stranger's tool).
        p_share: an exposed user shares the post onward (opens the next level).
        n_strangers: 0 if the level is reached through the sharers' friends; otherwise each sharer
            reaches this many strangers in its own city (group buying, price cutting and live
            fission put the post in front of people outside the sharer's circle).
    """

    p_view: float
    p_buy: float
    p_share: float
    n_strangers: int = 0


def expose_strangers(sharers: Any, cascade: Any, cascade_key: Any, n_per_sharer: int, p_view: Any,
                     city: Any, city_start: Any, key: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Strangers reached by sharers' tools: of ``n_per_sharer`` uniform draws from each sharer's
    city, each sees the post with probability ``p_view``.

    The number that see it is drawn first (Binomial(n_per_sharer, p_view), one draw per sharer)
    and only those strangers are drawn: the same law as drawing every candidate and keeping each
    with ``p_view``, at a fraction of the work when ``p_view`` is small (a tick's sharers would
    otherwise draw millions of candidates to keep a fifth of them).

    Args:
        sharers: (int64[F]) users sharing; cascade (int64[F]) their cascades' local indices.
        cascade_key: (int64[C]) stable key per cascade.
        city: (int32[N]) city of each user; city_start (int64[K+1]) first user of each city
            (user ids are contiguous within a city).
        p_view: scalar, or (float64[F]) per sharer.
        key: stream key. Sharer u of cascade k draws its count at index ``k * N + u`` of the
            sub-stream "count"; its j-th stranger at index ``(k * N + u) * n_per_sharer + j``.

    Returns:
        (cascade (int64[X]), user (int64[X])) of the strangers who saw the post, sharer by sharer.
    """
    n_users = city.shape[0]
    pair = cascade_key[cascade] * n_users + sharers
    count = rng.binomial(rng.stream_key(key, "count"), pair, n_per_sharer, p_view, xp=xp)
    owner, user = draw_in_home_city(sharers, count, pair * n_per_sharer, city, city_start, key, xp=xp)
    return cascade[owner], user


def draw_in_home_city(source: Any, count: Any, index_base: Any, city: Any, city_start: Any, key: int, *,
                      xp: ModuleType) -> tuple[Any, Any]:
    """``count[i]`` users drawn uniformly from the city of user ``source[i]``, for each i.

    Args:
        source: (int64[F]) users whose cities the draws come from.
        count: (int64[F]) draws per source.
        index_base: (int64[F]) draw j of source i has index ``index_base[i] + j`` in stream ``key``.
        city: (int32[N]); city_start (int64[K+1]): cities, contiguous in user id.

    Returns:
        (owner (int64[X]) the source index of each draw, source by source; user (int64[X])).
    """
    owner, first = repeat_ids_and_firsts(count, xp=xp)  # each source's first position among the draws
    return owner, fused.launch(_HOME_CITY_DRAWS, owner, first, index_base, source, city, city_start,
                               np.uint64(key), xp=xp)


def _home_city_draws_reference(owner: Any, first: Any, index_base: Any, source: Any, city: Any, city_start: Any,
                               key: Any) -> Any:
    """(int64[X]) draw ``i`` (the ``i - first[o]``-th of source ``o = owner[i]``): a user drawn
    uniformly from source ``o``'s city, at index ``index_base[o] + i - first[o]`` of ``key``."""
    # per source first (F values), then one gather per draw
    index = (index_base - first)[owner] + np.arange(owner.shape[0], dtype=np.int64)
    home = city[source].astype(np.int64)
    city_first = city_start[home]
    city_size = city_start[home + 1] - city_first
    user = rng.integers(int(key), index, city_size[owner])
    user += city_first[owner]
    return user


#: draws from each source's home city in one launch on CuPy (``i``: the draw's position)
_HOME_CITY_DRAWS = fused.register(fused.FusedKernel(
    "weishang_home_city_draws",
    "int64 owner, raw int64 first, raw int64 index_base, raw int64 source, raw I city, raw int64 city_start, "
    "uint64 key",
    "int64 user",
    """long long home = (long long)city[source[owner]];
       long long city_first = city_start[home];
       long long size = city_start[home + 1] - city_first;
       long long index = index_base[owner] + ((long long)i - first[owner]);
       double v = weishang_unit(weishang_draw(index, key)) * (double)size;
       long long whole = (long long)v;
       user = (whole < size - 1 ? whole : size - 1) + city_first;""",
    _home_city_draws_reference, rng.DRAW_PREAMBLE))


@dataclass
class CascadeOutcome:
    """What a tick's cascades did. Arrays live on the kernel's device.

    Attributes:
        exposures, shares, buys: (int64[C, L]) counts per cascade and level.
        matched: (int64[C, L]) exposures whose viewer is interested in the post's category.
        order_cascade: (int64[O]) local index of the cascade each order came from.
        order_buyer: (int64[O]) buying user.
        order_level: (int8[O]) level (1-based) of the purchase.
        order_quantity: (int64[O]) units bought (1 to the post's basket limit).
    """

    exposures: Any
    shares: Any
    buys: Any
    matched: Any
    order_cascade: Any
    order_buyer: Any
    order_level: Any
    order_quantity: Any
    #: with ``trace``: every exposure of the tick, level by level: cascade (int64[X]), user
    #: (int64[X]), level (int8[X], 1-based), bought and shared (bool[X]); None otherwise
    trace: dict[str, Any] | None = None


def expose_neighbours(indptr: Any, indices: Any, sources: Any, cascade: Any, cascade_key: Any,
                      p_view: Any, key: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Users reached through one CSR hop, each edge kept with probability ``p_view``.

    Args:
        indptr: (int64[R+1]) CSR offsets of the adjacency hopped over (friends, or group members).
        indices: (int32[E]) CSR targets.
        sources: (int64[F]) rows to expand (sharers, or groups).
        cascade: (int64[F]) local cascade index of each source.
        cascade_key: (int64[C]) stable key of each local cascade.
        p_view: scalar, or (float64[F]) per source.
        key: stream key of the view draws, or (uint64[F]) per source (sources of several
            streams in one pass).

    Returns:
        (cascade (int64[X]), user (int64[X])) for the kept edges, in source order.
    """
    start, length = row_spans(indptr, sources, xp=xp)
    # the source of each edge examined, and each source's first position among them
    owner, first = repeat_ids_and_firsts(length, xp=xp)
    if owner.shape[0] == 0:
        empty = xp.zeros(0, dtype=xp.int64)
        return empty, empty
    if xp is np:  # the reference takes a single probability and key as they are (cheaper draws)
        edge, hit = _edge_views_reference(owner, start, first, cascade, cascade_key, p_view, key, indices.shape[0])
    else:
        n = sources.shape[0]
        p_view = p_view if getattr(p_view, "ndim", 0) > 0 else xp.full(n, float(p_view), dtype=xp.float64)
        key = key if getattr(key, "ndim", 0) > 0 else xp.full(n, np.uint64(key), dtype=xp.uint64)
        edge, hit = fused.launch(_EDGE_VIEWS, owner, start, first, cascade, cascade_key, p_view, key,
                                 int(indices.shape[0]), xp=xp)
    return fused.launch(_VIEWED, xp.flatnonzero(hit), owner, edge, cascade, indices, xp=xp)


def _viewed_reference(kept: Any, owner: Any, edge: Any, cascade: Any, indices: Any) -> tuple[Any, Any]:
    """(cascade, user (int64[K])) of the viewed edges ``kept`` (int64[K], positions among the
    edges examined; ``owner``, ``edge``: int64[X]; ``cascade``: int64[F]; ``indices``: the CSR's
    targets, int32[E] for the friend graph and the group members, int64 for recruited buyers)."""
    return cascade[owner[kept]], indices[edge[kept]].astype(np.int64)


#: the viewed edges' cascades and users gathered in one launch on CuPy
_VIEWED = fused.register(fused.FusedKernel(
    "weishang_viewed", "int64 kept, raw int64 owner, raw int64 edge, raw int64 cascade, raw I indices",
    "int64 c, int64 u",
    """c = cascade[owner[kept]];
       u = (long long)indices[edge[kept]];""",
    _viewed_reference))


def _edge_views_reference(owner: Any, start: Any, first: Any, cascade: Any, cascade_key: Any, p_view: Any,
                          key: Any, n_indices: int) -> tuple[Any, Any]:
    """For each edge examined, its position in the CSR (int64[X]) and whether it is viewed
    (bool[X]): edge ``i`` is row ``owner[i]``'s ``i - first[owner[i]]``-th, drawn at index
    ``edge + cascade_key[cascade[owner]] * E`` with that source's ``p_view`` and stream ``key``
    (per source, float64[F] and uint64[F]; on NumPy either may also be one number for all)."""
    edge = start[owner] + (np.arange(owner.shape[0], dtype=np.int64) - first[owner])
    draw_index = edge + cascade_key[cascade[owner]] * n_indices
    key = key[owner] if getattr(key, "ndim", 0) > 0 else int(key)
    p_view = p_view[owner] if getattr(p_view, "ndim", 0) > 0 else p_view
    return edge, rng.bernoulli(key, draw_index, p_view)


#: a CSR hop's edges laid out and drawn in one launch on CuPy (``i`` is the element's position)
_EDGE_VIEWS = fused.register(fused.FusedKernel(
    "weishang_edge_views",
    "int64 owner, raw int64 start, raw int64 first, raw int64 cascade, raw int64 cascade_key, raw float64 p_view, "
    "raw uint64 key, int64 n_indices",
    "int64 edge, bool hit",
    """edge = start[owner] + ((long long)i - first[owner]);
       long long index = edge + cascade_key[cascade[owner]] * n_indices;
       hit = weishang_unit(weishang_draw(index, key[owner])) < p_view[owner];""",
    _edge_views_reference, rng.DRAW_PREAMBLE))


def row_spans(indptr: Any, rows: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """(start, length (int64[S])) of CSR rows ``rows`` (int64[S]) of ``indptr`` (int64[R+1]):
    one launch on CuPy, where the two gathers and the difference would be four."""
    return fused.launch(_ROW_SPANS, rows, indptr, xp=xp)


def _row_spans_reference(rows: Any, indptr: Any) -> tuple[Any, Any]:
    start = indptr[rows]
    return start, indptr[rows + 1] - start


_ROW_SPANS = fused.register(fused.FusedKernel(
    "weishang_row_spans", "int64 rows, raw int64 indptr", "int64 start, int64 length",
    """start = indptr[rows];
       length = indptr[rows + 1] - start;""",
    _row_spans_reference))


def _first_exposures(cascade: Any, user: Any, origin: Any, seen: Any, n_users: int, *, xp: ModuleType,
                     merge: bool = True):
    """Drop repeats within the batch, the origin account itself, and users already exposed.

    Returns (cascade, user) of first exposures, sorted by key ``cascade * N + user`` (local
    cascade index: keys are unique within the tick), and the merged sorted ``seen`` (``seen``
    unchanged when ``merge`` is false: after the last level nothing reads it).
    """
    keys = sorted_unique(cascade * n_users + user, xp=xp, run=cascade)
    c, u, fresh = fused.launch(_SPLIT_FRESH, keys, isin_sorted(keys, seen, xp=xp), origin, int(n_users), xp=xp)
    kept = xp.flatnonzero(fresh)
    keys, c, u = keys[kept], c[kept], u[kept]
    return c, u, (merge_sorted(seen, keys, xp=xp) if merge else seen)


def _split_fresh_reference(keys: Any, seen: Any, origin: Any, n_users: int) -> tuple[Any, Any, Any]:
    """(cascade, user (int64[X]), fresh (bool[X])) of exposure keys ``cascade * N + user``
    (int64[X]): fresh unless already ``seen`` (bool[X]) or the post's own account (origin, int64[C])."""
    c = keys // n_users
    u = keys - c * n_users
    return c, u, (u != origin[c]) & ~seen


#: a level's first exposures told apart in one launch on CuPy
_SPLIT_FRESH = fused.register(fused.FusedKernel(
    "weishang_split_fresh", "int64 keys, bool seen, raw int64 origin, int64 n_users",
    "int64 c, int64 u, bool fresh",
    """c = keys / n_users;
       u = keys - c * n_users;
       fresh = u != origin[c] && !seen;""",
    _split_fresh_reference))


def propagate(indptr: Any, indices: Any, level1_cascade: Any, level1_user: Any, *,
              cascade_key: Any, origin: Any, category_bit: Any, rel_post: Any, max_quantity: Any,
              interests: Any, rel_buy: Any, rel_off_interest: float,
              levels: tuple[LevelRule, ...], seed: int, tick: int, xp: ModuleType,
              city: Any = None, city_start: Any = None, rel_view: Any = None,
              rel_share: Any = None, rel_tool: Any = None, trace: bool = False) -> CascadeOutcome:
    """Spread all of a tick's cascades level by level.

    Update rule at each level: exposures are first exposures only (a user sees a post at most
    once, and never the merchant's own account); an exposed user u of post k buys with
    probability ``p_buy * rel_buy[u] * rel_post[k]``, times ``rel_off_interest`` when k's
    category is not among u's interests, and shares with ``p_share * rel_share[k]`` (at most 1);
    sharers open the next level through their friends (``p_view * rel_view[k]`` per friend) or,
    for a stranger level, through tools.

    Args:
        indptr, indices: friend graph CSR (int64[N+1], int32[E]).
        level1_cascade, level1_user: (int64[X]) the channel's level-1 exposures.
        cascade_key: (int64[C]) stable key per cascade (for the draws).
        origin: (int64[C]) account of the posting merchant.
        category_bit: (uint16[C]) the post's product category as a bit.
        rel_post: (float64[C]) conversion multiplier of each post (price, channel, style).
        max_quantity: (int64[C]) most units one order of the post can hold.
        interests: (uint16[N]) users' interest bitmasks.
        rel_buy: (float32[N]) users' conversion propensity.
        rel_off_interest: conversion multiplier when the category is not among the interests.
        levels: one :class:`LevelRule` per level, level 1 first.
        seed, tick: for the stream keys.
        city, city_start: user cities and city offsets, needed by stranger levels.
        rel_view: (float64[C]) optional reach multiplier of each post beyond level 1 (a penalised
            post is passed on to fewer people).
        rel_share: (float64[C]) optional share multiplier of each post (content quality, inducement).
        rel_tool: (float64[C]) optional multiplier of ``p_view`` at stranger levels only (a post
            without group-buying or price-cutting tools reaches fewer strangers).
        trace: keep every exposure (:attr:`CascadeOutcome.trace`): for a few cascades, such as
            one post run again on its own (its draws depend on its key, not on the others, so it
            spreads exactly as it did among them; :func:`weishang.model.mechanisms.cascade.trace_post`).

    Returns:
        A :class:`CascadeOutcome`.
    """
    n_users = interests.shape[0]
    n_cascades = cascade_key.shape[0]
    n_levels = len(levels)
    counts: list[Any] = []  # per level, (int64[X]) each exposure's bin: cascade, level, outcome code
    orders: list[tuple[Any, Any, int]] = []
    traced: list[tuple[Any, Any, int, Any, Any]] = []
    seen = xp.zeros(0, dtype=xp.int64)
    cascade, user = level1_cascade, level1_user
    rel_share = xp.ones(n_cascades, dtype=xp.float64) if rel_share is None else rel_share
    for level, rule in enumerate(levels, start=1):
        if level > 1:
            cascade, user = _reach_next_level(indptr, indices, cascade, user, cascade_key, rule, level,
                                              rel_view, rel_tool, city, city_start, seed, tick, xp)
        cascade, user, seen = _first_exposures(cascade, user, origin, seen, n_users, xp=xp,
                                               merge=level < n_levels)
        last = level == n_levels  # nobody shares at the last level
        outcome, bins = fused.launch(
            _EXPOSURE_OUTCOME, cascade, user, cascade_key, interests, category_bit, rel_buy, rel_post, rel_share,
            float(rule.p_buy), 0.0 if last else float(rule.p_share), float(rel_off_interest), int(n_users),
            np.uint64(rng.stream_key(seed, f"cascade.buy.l{level}", tick)),
            np.uint64(rng.stream_key(seed, f"cascade.share.l{level}", tick)), n_levels, level - 1, xp=xp)
        counts.append(bins)
        bought = xp.flatnonzero(outcome & BOUGHT)
        orders.append((cascade[bought], user[bought], level))
        if trace:
            traced.append((cascade, user, level, (outcome & BOUGHT) != 0, (outcome & SHARED) != 0))
        if last:
            break
        shared = xp.flatnonzero(outcome & SHARED)
        cascade, user = cascade[shared], user[shared]
    exposures, shares, buys, matched = _tally(counts, n_cascades, n_levels, xp)
    order_cascade, order_buyer, order_level, order_quantity = _orders(orders, cascade_key, max_quantity, n_users,
                                                                      seed, tick, xp)
    kept = None
    if trace:
        kept = {"cascade": xp.concatenate([t[0] for t in traced]), "user": xp.concatenate([t[1] for t in traced]),
                "level": xp.concatenate([xp.full(t[0].shape[0], t[2], dtype=xp.int8) for t in traced]),
                "bought": xp.concatenate([t[3] for t in traced]), "shared": xp.concatenate([t[4] for t in traced])}
    return CascadeOutcome(exposures, shares, buys, matched, order_cascade, order_buyer, order_level, order_quantity,
                          kept)


def _reach_next_level(indptr: Any, indices: Any, cascade: Any, sharer: Any, cascade_key: Any, rule: LevelRule,
                      level: int, rel_view: Any, rel_tool: Any, city: Any, city_start: Any, seed: int, tick: int,
                      xp: ModuleType) -> tuple[Any, Any]:
    """(cascade, user) of the people the last level's sharers put the post in front of: their
    friends, each with ``p_view`` (times the post's ``rel_view``), or at a stranger level
    ``n_strangers`` of their city through tools (times ``rel_tool`` as well). Repeats included;
    :func:`_first_exposures` keeps the first."""
    key_view = rng.stream_key(seed, f"cascade.view.l{level}", tick)
    p_view = rule.p_view if rel_view is None else xp.minimum(rule.p_view * rel_view[cascade], 1.0)
    if rule.n_strangers:
        if rel_tool is not None:
            p_view = xp.minimum(p_view * rel_tool[cascade], 1.0)
        return expose_strangers(sharer, cascade, cascade_key, rule.n_strangers, p_view, city, city_start, key_view,
                                xp=xp)
    return expose_neighbours(indptr, indices, sharer, cascade, cascade_key, p_view, key_view, xp=xp)


def _tally(counts: list[Any], n_cascades: int, n_levels: int, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Every level's exposures counted in one pass, by (cascade, level, shared, bought, matched),
    the outcome code's bits as axes: (exposures, shares, buys, matched), each int64[C, L]."""
    by_outcome = bin_sums(xp.concatenate(counts), n_cascades * n_levels * 8, xp=xp)
    by_outcome = by_outcome.reshape(n_cascades, n_levels, 2, 2, 2)
    exposures = by_outcome.sum(axis=(2, 3, 4))
    matched = by_outcome[..., 1].sum(axis=(2, 3))
    buys = by_outcome[:, :, :, 1, :].sum(axis=(2, 3))
    shares = by_outcome[:, :, 1].sum(axis=(2, 3))
    return exposures, shares, buys, matched


def _orders(orders: list[tuple[Any, Any, int]], cascade_key: Any, max_quantity: Any, n_users: int, seed: int,
            tick: int, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Each level's purchases as one list of orders: (cascade int64[B], buyer int64[B], level
    int8[B], quantity int64[B]), a quantity drawn from 1 to the post's ``max_quantity`` on a key
    of (cascade key, buyer), so an order's size does not depend on the other orders."""
    order_cascade = xp.concatenate([c for c, _, _ in orders])
    order_buyer = xp.concatenate([u for _, u, _ in orders])
    order_level = xp.concatenate([xp.full(c.shape[0], lvl, dtype=xp.int8) for c, _, lvl in orders])
    qty_index = cascade_key[order_cascade] * n_users + order_buyer
    order_quantity = 1 + rng.integers(rng.stream_key(seed, "cascade.quantity", tick), qty_index,
                                      max_quantity[order_cascade], xp=xp)
    return order_cascade, order_buyer, order_level, order_quantity


#: bits of an exposure's outcome code (:data:`_EXPOSURE_OUTCOME`)
MATCHED, BOUGHT, SHARED = 1, 2, 4


def _exposure_outcome_reference(cascade: Any, user: Any, cascade_key: Any, interests: Any, category_bit: Any,
                                rel_buy: Any, rel_post: Any, rel_share: Any, p_buy: float, p_share: float,
                                rel_off_interest: float, n_users: int, buy_key: Any, share_key: Any,
                                n_levels: int, level: int) -> tuple[Any, Any]:
    """(int8[X]) each exposure's outcome code: MATCHED if the post's category is among the
    viewer's interests, BOUGHT if the viewer buys (``p_buy * rel_buy[user] * rel_post[k]``,
    times ``rel_off_interest`` off interest), SHARED if the viewer shares (``min(p_share *
    rel_share[k], 1)``); the buy and share draws at index ``cascade_key[k] * N + user``. And
    (int64[X]) its bin for the tick's counts: ``(cascade * n_levels + level) * 8 + code``
    (``level`` 0-based)."""
    draw_index = cascade_key[cascade] * n_users + user
    match = (interests[user] & category_bit[cascade]) != 0
    p = p_buy * rel_buy[user].astype(np.float64) * rel_post[cascade]
    p = np.where(match, p, p * rel_off_interest)
    bought = rng.bernoulli(int(buy_key), draw_index, p)
    if p_share > 0.0:
        shared = rng.bernoulli(int(share_key), draw_index, np.minimum(p_share * rel_share[cascade], 1.0))
    else:  # the last level: nobody shares, and the draws (u < 0) would say so at the cost of a pass
        shared = np.zeros(cascade.shape[0], dtype=np.bool_)
    code = match.view(np.int8) | (bought.view(np.int8) << 1) | (shared.view(np.int8) << 2)
    return code, (cascade * n_levels + level) * 8 + code


#: a level's buy and share draws for every exposure in one launch on CuPy
_EXPOSURE_OUTCOME = fused.register(fused.FusedKernel(
    "weishang_exposure_outcome",
    "int64 cascade, int64 user, raw int64 cascade_key, raw uint16 interests, raw uint16 category_bit, "
    "raw float32 rel_buy, raw float64 rel_post, raw float64 rel_share, float64 p_buy, float64 p_share, "
    "float64 rel_off_interest, int64 n_users, uint64 buy_key, uint64 share_key, int64 n_levels, int64 level",
    "int8 outcome, int64 bin",
    """long long index = cascade_key[cascade] * n_users + user;
       bool match = (interests[user] & category_bit[cascade]) != 0;
       double p = p_buy * (double)rel_buy[user] * rel_post[cascade];
       if (!match) p = p * rel_off_interest;
       bool bought = weishang_unit(weishang_draw(index, buy_key)) < p;
       double q = p_share * rel_share[cascade];
       q = q < 1.0 ? q : 1.0;
       bool shared = p_share > 0.0 && weishang_unit(weishang_draw(index, share_key)) < q;
       outcome = (match ? 1 : 0) | (bought ? 2 : 0) | (shared ? 4 : 0);
       bin = (cascade * n_levels + level) * 8 + outcome;""",
    _exposure_outcome_reference, rng.DRAW_PREAMBLE))
