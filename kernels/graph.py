"""The friend graph: a symmetric CSR adjacency built from pairs, and a generator of WeChat-like
friend graphs with community structure and a heavy-tailed degree capped at the friend limit.

CSR layout (DESIGN.md): ``indptr`` int64[N+1], ``indices`` int32[E], each row sorted ascending,
no self-loops, no duplicates, and symmetric (``j`` in row ``i`` iff ``i`` in row ``j``); E counts
directed edges, so an undirected friendship is stored twice.

The generator (:func:`generate_friend_graph`) lays users out city by city (user ids are
contiguous within a city, cities sized by a Zipf law within regions of a fixed number of users,
so a city's size does not grow with N: :func:`city_sizes`) and draws friendships in layers:

* households: small cliques of 1-5 consecutive users inside a city;
* circles: workplaces, schoolmates and neighbourhoods, ``n_circle_layers`` independent random
  partitions of each city into groups of ``circle_size``; each member befriends a few random
  members of its group. Dense groups make the clustering coefficient far above a random graph's;
* city ties: a Chung-Lu layer inside each city, each user's number of ties proportional to a
  heavy-tailed (log-normal) sociability weight; this layer carries the degree tail;
* cross-city ties: the same Chung-Lu rule across the user's region (``region_users`` users, a
  closed social world), or with probability ``cross_region_share`` across all users.

Each friendship is a "pick" of a partner by a picker. Picks can repeat a pair or fall on the
picker itself; those are removed when the CSR is built. Degrees above ``max_degree`` (WeChat's
5,000-friend limit) are trimmed on an upper bound of the degree, so the cap holds exactly.

Backends: every step runs with ``xp`` (NumPy, or CuPy on the device) and gives the same arrays
bit for bit on both; the draws are counter-based (:mod:`.rng`). On NumPy the passes over the
picks run in cache-sized chunks on the thread pool and the coarse steps (blocks of sort keys,
cities' orders, degree counts) on :data:`WORKERS` threads, because NumPy releases the GIL in its
loops; on the device each runs in pieces of :data:`DEVICE_PIECE` one after another. Host syncs
are the sizes the build must know (pick totals, block bounds, each block's key count).

Memory: the build holds the pairs (8 bytes per undirected pick), the output ``indices``
(4 bytes per directed edge) and two blocks of sort keys at a time (one on the device).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import rng
from .backend import map_chunks, repeat_values

#: pairs per vectorised step when scanning pairs on NumPy (bounds temporaries)
CHUNK = 1 << 23
#: elements per step of a pass over the picks or pairs on the device: bounds the temporaries a
#: partner draw makes (about 40 bytes a pick) to a few GiB
DEVICE_PIECE = 1 << 27
#: directed edges per block of the CSR build: two blocks' sort keys (16 bytes each) are live at once
BLOCK_KEYS = 6_000_000
#: the same on the device, where blocks run one at a time and a sort of 2^28 keys takes
#: milliseconds: a few blocks at 10M users, so the pairs are scanned a few times, not hundreds
DEVICE_BLOCK_KEYS = 1 << 28
#: users per piece of a circle layer's order on NumPy (pieces are cut at city boundaries)
ORDER_PIECE = 1 << 18
#: threads of the NumPy path's coarse steps (each holds a block of keys or a degree array)
WORKERS = max(1, min(2, os.cpu_count() or 1))
#: the share of all pairs one group of blocks of the CSR build may copy (it holds them twice
#: while they are gathered): 5% adds at most 0.4 bytes per directed edge to the build's peak
GROUP_SHARE = 0.05


@dataclass(frozen=True)
class GraphParams:
    """Shape of a generated friend graph; the population config maps onto these fields."""

    mean_degree: float = 175.0
    max_degree: int = 5000
    n_cities: int = 100
    region_users: int | None = 200_000
    cross_region_share: float = 0.0
    city_zipf_exponent: float = 1.0
    max_household_size: int = 5
    circle_size: int = 40
    n_circle_layers: int = 3
    circle_share: float = 0.35
    cross_city_share: float = 0.15
    sociability_sigma: float = 1.0


@dataclass(frozen=True)
class FriendGraph:
    """A built friend graph, on the device of the ``xp`` it was built with.

    Attributes:
        indptr: (int64[N+1]) row offsets.
        indices: (int32[E]) neighbours, sorted within each row.
        city: (int32[N]) city of each user; ids are contiguous within a city.
    """

    indptr: Any
    indices: Any
    city: Any

    @property
    def n_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def n_edges(self) -> int:
        """Directed edges (twice the number of friendships)."""
        return int(self.indices.shape[0])

    def degree(self) -> Any:
        """(int64[N]) number of friends of each user."""
        return self.indptr[1:] - self.indptr[:-1]


# ---------------------------------------------------------------------------------------------
# Running work on either backend


class _Inline(Executor):
    """An executor that runs each task at once in the caller's thread: the device path's, where
    the device is the parallelism (and CuPy's current device and stream are per thread)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _executor(xp: ModuleType) -> Executor:
    """:data:`WORKERS` threads on NumPy, the caller's thread on the device."""
    return ThreadPoolExecutor(max_workers=WORKERS) if xp is np else _Inline()


def _chunk(xp: ModuleType) -> int:
    """Elements per step of a scan over all pairs inside one task."""
    return CHUNK if xp is np else DEVICE_PIECE


def _over_picks(n: int, work: Callable[[int, int], None], xp: ModuleType) -> None:
    """Run ``work(start, stop)`` over [0, n) for elementwise work on picks or pairs: on NumPy
    through :func:`~.backend.map_chunks` (cache-sized chunks on the thread pool), on the device
    in pieces of :data:`DEVICE_PIECE`. Each element's result must depend on it alone.

    A chunk of ``map_chunks`` is no longer than its own chunk size, so the counter-based draws
    ``work`` makes run inline in the worker instead of queueing on the pool it runs on.
    """
    if xp is np:
        map_chunks(n, work, xp=xp)
        return
    for start in range(0, n, DEVICE_PIECE):
        work(start, min(start + DEVICE_PIECE, n))


# ---------------------------------------------------------------------------------------------
# CSR from pairs


def _block_keys(u: Any, v: Any, lo: int, hi: int, n: int, bound: int, xp: ModuleType) -> Any:
    """Sorted unique int64 keys ``(src - lo) * n + dst`` of directed edges with src in [lo, hi).

    Both directions of every pair are considered; pairs with ``u == v`` (self-loops and trimmed
    pairs) are skipped. ``bound`` (at least the number of such directed edges) sizes the key
    buffer, so the keys are written once instead of gathered and concatenated.
    """
    keys = xp.empty(bound, dtype=xp.int64)
    filled = 0
    chunk = _chunk(xp)
    for start in range(0, u.shape[0], chunk):
        uc, vc = u[start : start + chunk], v[start : start + chunk]
        live = uc != vc
        for src, dst in ((uc, vc), (vc, uc)):
            m = (src >= lo) & (src < hi) & live
            part = keys[filled : filled + int(xp.count_nonzero(m))]
            xp.subtract(src[m], lo, out=part, dtype=xp.int64)
            part *= n
            part += dst[m]
            filled += part.shape[0]
    keys = keys[:filled]
    keys.sort()
    if filled > 1:
        keep = xp.empty(filled, dtype=xp.bool_)
        keep[0] = True
        xp.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def csr_from_pairs(
    u: Any, v: Any, n: int, *, degree_bound: Any = None, xp: ModuleType = np
) -> tuple[Any, Any]:
    """Symmetric, deduplicated CSR adjacency from undirected pairs.

    Args:
        u, v: (int32[P]) pair endpoints in ``[0, n)``; pairs with ``u == v`` are ignored.
        n: number of nodes.
        degree_bound: (int64[n]) optional upper bound on each node's degree, used to split the
            work into blocks of similar size (computed from the pairs if omitted).
        xp: the array module of ``u`` and ``v``; the CSR is built on its device.

    Returns:
        ``indptr`` (int64[n+1]) and ``indices`` (int32[E]), rows sorted ascending.
    """
    if n >= 2**31 - 1:
        raise ValueError(f"n={n} nodes does not fit int32 indices (at most 2^31 - 2)")
    if degree_bound is None:
        degree_bound = xp.bincount(u, minlength=n) + xp.bincount(v, minlength=n)
    total = int(degree_bound.sum())
    n_blocks = max(1, min(n, -(-total // (BLOCK_KEYS if xp is np else DEVICE_BLOCK_KEYS))))
    cum = xp.cumsum(degree_bound)
    cuts = xp.searchsorted(cum, xp.arange(1, n_blocks, dtype=xp.int64) * total // n_blocks, side="right")
    bounds = sorted({0, n, *cuts.tolist()})
    # directed edges bounded before each block's end: one copy back for all blocks
    bounded = [0, *cum[xp.asarray(bounds[1:], dtype=xp.int64) - 1].tolist()]

    indptr = xp.zeros(n + 1, dtype=xp.int64)
    indices = xp.empty(total, dtype=xp.int32)
    filled = 0
    workers = WORKERS if xp is np else 1
    blocks = list(zip(bounds[:-1], bounds[1:], bounded[:-1], bounded[1:]))
    with _executor(xp) as pool:
        for group in _block_groups(blocks):
            # the pairs with an end in this group's rows, found in one scan: each block of the
            # group then scans these instead of every pair (one scan per block made the build
            # quadratic in N: 300 blocks of 6M keys at 10M users, each reading all 0.9B pairs)
            if len(group) == len(blocks):
                u_group, v_group = u, v
            else:
                u_group, v_group = _pairs_touching(u, v, group[0][0], group[-1][1], pool, xp)
            # a sliding window of `workers` blocks keeps at most that many key arrays alive
            pending = []
            next_block = 0
            while next_block < len(group) or pending:
                while next_block < len(group) and len(pending) < workers:
                    lo, hi, before, through = group[next_block]
                    pending.append((lo, hi, pool.submit(_block_keys, u_group, v_group, lo, hi, n,
                                                        through - before, xp)))
                    next_block += 1
                lo, hi, future = pending.pop(0)
                keys = future.result()
                row_starts = xp.searchsorted(keys, xp.arange(hi - lo + 1, dtype=xp.int64) * n)
                indptr[lo + 1 : hi + 1] = filled + row_starts[1:]
                indices[filled : filled + keys.shape[0]] = keys % n
                filled += keys.shape[0]
                del keys
            del u_group, v_group
    if xp is np:
        indices.resize(filled, refcheck=False)  # shrink in place: duplicates were removed
        return indptr, indices
    return indptr, indices[:filled]  # CuPy resizes nothing in place; the slack is the duplicates


def _block_groups(blocks: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """Consecutive blocks taken together, G at a time (G = 1: one group of all blocks, each
    scanning every pair, as extracting a one-block group's pairs would cost a scan of its own).

    With B blocks and P pairs, finding each group's pairs costs B/G scans of all P pairs, and
    its G blocks then scan about 2PG/B pairs each: B P/G + 2 P G^2/B, least at G = (B^2/4)^(1/3).
    G is also capped so a group's pairs, about 2G/B of all, stay within GROUP_SHARE of them:
    at 1M users (30 blocks) that leaves G = 1, at 10M (300 blocks) G = 7.
    """
    n_blocks = len(blocks)
    size = max(1, min(round((n_blocks**2 / 4) ** (1 / 3)), int(GROUP_SHARE * n_blocks / 2)))
    if size == 1:
        return [blocks]
    return [blocks[i:i + size] for i in range(0, n_blocks, size)]


def _pairs_touching(u: Any, v: Any, lo: int, hi: int, pool: Executor, xp: ModuleType) -> tuple[Any, Any]:
    """(u, v) of the pairs with at least one end in ``[lo, hi)``, in their original order,
    scanned in chunks on the pool."""
    chunk = _chunk(xp)

    def scan(start: int) -> tuple[Any, Any]:
        uc, vc = u[start:start + chunk], v[start:start + chunk]
        keep = ((uc >= lo) & (uc < hi)) | ((vc >= lo) & (vc < hi))
        return uc[keep], vc[keep]

    parts = list(pool.map(scan, range(0, u.shape[0], chunk)))
    if not parts:
        return u[:0], v[:0]
    return xp.concatenate([p[0] for p in parts]), xp.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------------------------
# The generator


def zipf_ladder(n_users: int, n_cities: int, exponent: float) -> np.ndarray:
    """(int64[C]) ``n_cities`` Zipf city sizes summing to ``n_users``, every city at least 1 user."""
    n_cities = max(1, min(n_cities, n_users))
    weight = 1.0 / np.arange(1, n_cities + 1, dtype=np.float64) ** exponent
    raw = 1 + weight / weight.sum() * (n_users - n_cities)
    sizes = np.floor(raw).astype(np.int64)
    short = n_users - int(sizes.sum())
    sizes[np.argsort(-(raw - sizes), kind="stable")[:short]] += 1  # largest remainders
    return sizes


def city_sizes(n_users: int, n_cities: int, exponent: float, region_users: int | None = None) -> np.ndarray:
    """(int64[C]) city sizes summing to ``n_users``: regions of ``region_users`` users, each a
    Zipf ladder of ``n_cities`` cities (:func:`zipf_ladder`), and the remainder as one smaller
    ladder. ``region_users`` None (or at least ``n_users``): one ladder of the whole population.

    Why regions: the friend graph's local structure (the degree tail, merchants' degrees, how
    soon a city runs out of strangers) depends on city sizes in users. Cities that are a fixed
    share of N would grow with N and change every intensive figure; a fixed ladder repeated
    N / region_users times keeps them the same at every N that holds whole regions.
    """
    if region_users is None or n_users <= region_users:
        return zipf_ladder(n_users, n_cities, exponent)
    n_full, rest = divmod(n_users, region_users)
    ladder = zipf_ladder(region_users, n_cities, exponent)
    parts = [np.tile(ladder, n_full)]
    if rest:
        parts.append(zipf_ladder(rest, n_cities, exponent))
    return np.concatenate(parts)


def _stochastic_round(x: Any, key: int, xp: ModuleType) -> Any:
    """(int64[n]) ``floor(x + u)``: an integer with mean exactly x and minimal variance."""
    return xp.floor(x + rng.uniform(key, x.shape[0], xp=xp)).astype(xp.int64)


def _write_pickers(u_out: Any, offset: int, counts: Any, xp: ModuleType) -> tuple[int, Any]:
    """Write user i ``counts[i]`` (int64[N]) times into ``u_out`` from ``offset``.

    The pickers of a layer come out sorted by user id, hence grouped by city. Returns the new
    offset and (int64[N+1]) the layer's picks made by users before each user.
    """
    n_users = counts.shape[0]
    before = xp.zeros(n_users + 1, dtype=xp.int64)
    before[1:] = xp.cumsum(counts)
    users = xp.arange(n_users, dtype=xp.int32)

    def work(lo: int, hi: int) -> None:
        first, last = offset + int(before[lo]), offset + int(before[hi])
        u_out[first:last] = repeat_values(users[lo:hi], counts[lo:hi], xp=xp)

    map_chunks(n_users, work, xp=xp)
    return offset + int(before[n_users]), before


def _fill_partners(u: Any, v: Any, start: int, stop: int, partner: Any, xp: ModuleType) -> None:
    """Set ``v[start:stop] = partner(pickers, pick_index)`` piece by piece (:func:`_over_picks`).

    ``pickers`` are ``u[start:stop]`` as int64; ``pick_index`` numbers the layer's picks from 0,
    so a pick's draw depends only on its place in the layer (counter-based).
    """
    def work(lo: int, hi: int) -> None:
        pickers = u[start + lo : start + hi].astype(xp.int64)
        v[start + lo : start + hi] = partner(pickers, xp.arange(lo, hi, dtype=xp.int64))

    _over_picks(stop - start, work, xp)


def _household_pairs(city_start: Any, n: int, max_size: int, key: int, xp: ModuleType) -> tuple[Any, Any]:
    """Households: consecutive runs of 1..max_size users, never crossing a city boundary.

    Returns (int32[P], int32[P]) all pairs inside each household (cliques), by distance then
    by first member.
    """
    sizes = 1 + rng.integers(key, n, max_size, xp=xp)
    starts = xp.cumsum(sizes) - sizes
    head = xp.zeros(n, dtype=xp.bool_)
    head[starts[starts < n]] = True
    head[city_start[:-1]] = True
    household = xp.cumsum(head) - 1
    distances = range(1, max_size)
    firsts = [xp.flatnonzero(household[:-d] == household[d:]) for d in distances]
    us = xp.concatenate(firsts).astype(xp.int32)
    vs = xp.concatenate([first + d for d, first in zip(distances, firsts)]).astype(xp.int32)
    return us, vs


def circle_picks_for_degree(degree: float, size: int) -> float:
    """Picks per member that give a member ``degree`` distinct friends in a circle of ``size``.

    Picks are uniform over the group (the picker included) and a pair is a friendship when
    either end picked the other, so with k picks each a given pair stays unlinked with
    probability (1 - 1/size)^(2k): the expected distinct degree is
    (size - 1) * (1 - (1 - 1/size)^(2k)). Solved for k; degrees the group cannot hold are capped
    at 95% of it.
    """
    if size < 2 or degree <= 0:
        return 0.0
    fill = min(degree / (size - 1), 0.95)
    return float(np.log1p(-fill) / (2.0 * np.log1p(-1.0 / size)))


def city_repeat_inflation(w: Any, city: Any, sizes: Any, degree: float, *, xp: ModuleType = np) -> Any:
    """(float64[C]) factor on each city's Chung-Lu picks that offsets picks of the same pair.

    With weights w (mean 1) and mean degree d inside a city of size n, users i and j are picked
    Poisson(w_i w_j d / n) times, so a pair picked twice or more loses a friendship. To first
    order the lost share of the city's degree is r = d * mean(w^2)^2 / (2 n); the picks are
    scaled by 1 / (1 - r), with r capped at 0.5 where the approximation stops being useful.
    ``w`` (float64[N]), ``city`` (int32[N]) and ``sizes`` (int64[C]) live on ``xp``'s device
    (the model's build passes host arrays: a weighted bincount sums in another order on a GPU).
    """
    mean_w2 = xp.bincount(city, weights=w * w, minlength=sizes.shape[0]) / xp.maximum(sizes, 1)
    lost = xp.minimum(0.5, degree * mean_w2**2 / (2.0 * xp.maximum(sizes, 1)))
    return 1.0 / (1.0 - lost)


def sociability_weights(n: int, sigma: float, seed: int) -> np.ndarray:
    """(float64[n], host) log-normal sociability with mean 1 (the degree tail's shape). Made on
    the host only: its exp and mean would round the last bit otherwise on a GPU, and a weight
    feeds a stochastic rounding (see :func:`friend_pairs`)."""
    z = rng.normal(rng.stream_key(seed, "graph.sociability"), n)
    w = np.exp(sigma * z)
    return w / w.mean()


def _city_order(values: Any, city_start: np.ndarray, xp: ModuleType) -> Any:
    """(int64[N]) the stable argsort of ``values`` (float64[N]), where user i's value lies in
    [city_i, city_i + 1] and ``city_start`` (int64[C+1], on the host) bounds the cities.

    Stable, as CuPy's only sort is: an unstable sort may order tied values (``city + u`` rounds
    to 2^-52 times the city id) either way. Users are laid out city by city, so a value is never
    above a later city's: on NumPy the users are cut at city boundaries into pieces sorted on
    :data:`WORKERS` threads, which gives the same order as one sort.
    """
    n = values.shape[0]
    if xp is not np or n <= ORDER_PIECE:
        return xp.argsort(values, kind="stable")
    cuts = city_start[np.searchsorted(city_start, np.arange(ORDER_PIECE, n, ORDER_PIECE))]
    bounds = sorted({0, n, *cuts.tolist()})
    order = np.empty(n, dtype=np.int64)

    def sort_piece(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.add(np.argsort(values[lo:hi], kind="stable"), lo, out=order[lo:hi])

    with _executor(xp) as pool:
        list(pool.map(sort_piece, range(len(bounds) - 1)))
    return order


def generate_friend_graph(
    n_users: int,
    params: GraphParams = GraphParams(),
    *,
    seed: int = 0,
    sociability: Any = None,
    xp: ModuleType = np,
) -> FriendGraph:
    """Generate a WeChat-like friend graph (see the module docstring for the layers).

    Args:
        n_users: N, number of users.
        params: degree, city and community parameters.
        seed: base seed of the counter-based draws.
        sociability: (float64[N]) optional relative friend-making weights (for example merchants'
            accounts weighted up), on the host (float work made there, see :func:`friend_pairs`);
            log-normal with mean 1 when omitted. Scaled to mean 1 here.
        xp: the array module: the graph is built on its device, the same bit for bit on each.

    Returns:
        A :class:`FriendGraph`; its mean degree is close to ``params.mean_degree`` when cities
        are much larger than circles, and never above ``params.max_degree`` per user.
    """
    u, v, degree_bound, city = friend_pairs(n_users, params, seed=seed, sociability=sociability, xp=xp)
    indptr, indices = csr_from_pairs(u, v, int(n_users), degree_bound=degree_bound, xp=xp)
    return FriendGraph(indptr=indptr, indices=indices, city=city)


def friend_pairs(
    n_users: int,
    params: GraphParams = GraphParams(),
    *,
    seed: int = 0,
    sociability: Any = None,
    xp: ModuleType = np,
) -> tuple[Any, Any, Any, Any]:
    """The picks of :func:`generate_friend_graph` before the CSR build, on ``xp``'s device:
    households, then each circle layer, then the city and cross-city Chung-Lu layers, written
    one after another into one pair of arrays.

    Returns:
        u, v (int32[P]) picks, with ``u == v`` marking dropped ones; the degree bound (int64[N],
        already trimmed to ``max_degree``); city (int32[N]).
    """
    n = int(n_users)
    if n < 2:
        raise ValueError(f"n_users must be at least 2, got {n}")
    p = params
    sizes_host = city_sizes(n, p.n_cities, p.city_zipf_exponent, p.region_users)
    city_start_host = np.concatenate([[0], np.cumsum(sizes_host)]).astype(np.int64)
    sizes, city_start = xp.asarray(sizes_host), xp.asarray(city_start_host)
    city = repeat_values(xp.arange(sizes.shape[0], dtype=xp.int32), sizes, xp=xp)

    hu, hv = _household_pairs(city_start, n, p.max_household_size, rng.stream_key(seed, "graph.household"), xp)
    household_degree = 2.0 * hu.shape[0] / n

    # circles: per-user pick counts (each pick gives ~2 degree: the picker's and the partner's)
    circle_degree = p.circle_share * p.mean_degree
    picks_per_layer = circle_picks_for_degree(circle_degree / p.n_circle_layers, p.circle_size)
    circle_counts = [
        _stochastic_round(xp.full(n, picks_per_layer), rng.stream_key(seed, f"graph.circle{l}.count"), xp)
        for l in range(p.n_circle_layers)
    ]

    # Chung-Lu layers carry the rest of the mean degree, with a heavy tail from sociability
    cl_degree = max(0.0, p.mean_degree - household_degree - circle_degree)
    city_degree = cl_degree * (1 - p.cross_city_share)
    cross_degree = cl_degree * p.cross_city_share
    w, inflation = _chung_lu_weights(n, p, seed, sociability, sizes_host, city_degree, cross_degree, picks_per_layer)
    w, inflation = xp.asarray(w), xp.asarray(inflation)
    city_counts = _stochastic_round(w * city_degree / 2.0 * inflation, rng.stream_key(seed, "graph.city.count"), xp)
    cross_counts = _stochastic_round(w * cross_degree / 2.0, rng.stream_key(seed, "graph.cross.count"), xp)

    total = hu.shape[0] + sum(int(c.sum()) for c in circle_counts) + int(city_counts.sum()) + int(cross_counts.sum())
    u = xp.empty(total, dtype=xp.int32)
    v = xp.empty(total, dtype=xp.int32)
    u[: hu.shape[0]] = hu
    v[: hu.shape[0]] = hv
    offset = hu.shape[0]
    del hu, hv
    for layer, counts in enumerate(circle_counts):
        offset = _circle_layer(u, v, offset, counts, layer, city, city_start, city_start_host, p, seed, xp)
    offset = _city_layer(u, v, offset, city_counts, city, city_start, seed, xp)
    offset = _cross_city_layer(u, v, offset, cross_counts, n, p, seed, xp)
    assert offset == total

    degree_bound = trim_to_max_degree(u, v, n, p.max_degree, seed, xp=xp)
    return u, v, degree_bound, city


def _chung_lu_weights(n: int, p: GraphParams, seed: int, sociability: Any, sizes_host: np.ndarray,
                      city_degree: float, cross_degree: float, picks_per_layer: float) -> tuple[np.ndarray, np.ndarray]:
    """Each user's Chung-Lu weight (float64[N], mean 1) and its city's repeat inflation
    (float64[N]), on the host. The weights are made in NumPy and copied over by the caller: their
    exp, means and per-city sums are float work whose last bit a GPU may round otherwise (its
    exp, its order of summation, its atomics), and a weight feeds a stochastic rounding: so every
    backend gets the same bits. A few passes over N floats; the picks themselves stay on the device.
    """
    # Cap each user's expected pick count (the degree bound the trim works on) at 90% of the
    # friend limit, so that trimming is needed only for rare Poisson excursions.
    bound_room = 0.9 * p.max_degree - (p.max_household_size - 1) - 2.0 * picks_per_layer * p.n_circle_layers
    w = (sociability_weights(n, p.sociability_sigma, seed) if sociability is None
         else np.asarray(sociability, dtype=np.float64))
    city_host = np.repeat(np.arange(sizes_host.shape[0], dtype=np.int32), sizes_host)
    for _ in range(4):
        w = w / w.mean()
        inflation = city_repeat_inflation(w, city_host, sizes_host, city_degree)[city_host]
        w = np.minimum(w, max(bound_room, 1.0) / (city_degree * inflation + cross_degree))
    return w, inflation


def _circle_layer(u: Any, v: Any, offset: int, counts: Any, layer: int, city: Any, city_start: Any,
                  city_start_host: np.ndarray, p: GraphParams, seed: int, xp: ModuleType) -> int:
    """Write one circle layer's picks from ``offset``: users in a random order within their city,
    cut into circles of ``circle_size``; a partner is drawn from the picker's circle. Returns
    where the next layer starts."""
    order = _city_order(city + rng.uniform(rng.stream_key(seed, f"graph.circle{layer}.order"), city.shape[0], xp=xp),
                        city_start_host, xp)
    position = xp.empty(city.shape[0], dtype=xp.int64)
    position[order] = xp.arange(city.shape[0], dtype=xp.int64)
    group_start = position - (position - city_start[city]) % p.circle_size
    group_len = xp.minimum(p.circle_size, city_start[city + 1] - group_start)
    del position
    key = rng.stream_key(seed, f"graph.circle{layer}")

    def circle_partner(pickers: Any, pick_index: Any) -> Any:
        return order[group_start[pickers] + rng.integers(key, pick_index, group_len[pickers], xp=xp)]

    end, _ = _write_pickers(u, offset, counts, xp)
    _fill_partners(u, v, offset, end, circle_partner, xp)
    return end


def _city_layer(u: Any, v: Any, offset: int, counts: Any, city: Any, city_start: Any, seed: int,
                xp: ModuleType) -> int:
    """Write the city ties from ``offset``. The layer's pickers are sorted by user, hence grouped
    by city, and double as its stub list: a partner drawn uniformly from the city's stubs is
    drawn in proportion to weight. Returns where the next layer starts."""
    end, picks_before = _write_pickers(u, offset, counts, xp)
    stubs = u[offset:end]
    stub_city_start = picks_before[city_start]  # the stubs of users in earlier cities
    stub_city_count = xp.maximum(stub_city_start[1:] - stub_city_start[:-1], 1)
    key = rng.stream_key(seed, "graph.city")

    def city_partner(pickers: Any, pick_index: Any) -> Any:
        c = city[pickers]
        return stubs[stub_city_start[c] + rng.integers(key, pick_index, stub_city_count[c], xp=xp)]

    _fill_partners(u, v, offset, end, city_partner, xp)
    return end


def _cross_city_layer(u: Any, v: Any, offset: int, counts: Any, n: int, p: GraphParams, seed: int,
                      xp: ModuleType) -> int:
    """Write the cross-city ties from ``offset``: partners drawn in proportion to weight from the
    picker's own region (a region is a closed social world, so a cascade meets the same cities at
    every N), and with probability ``cross_region_share`` from every region. Returns the end."""
    end, picks_before = _write_pickers(u, offset, counts, xp)
    cross_stubs = u[offset:end]
    region_bounds = np.append(np.arange(0, n, p.region_users or n, dtype=np.int64), n)
    stub_region_start = picks_before[xp.asarray(region_bounds)]
    stub_region_count = xp.maximum(stub_region_start[1:] - stub_region_start[:-1], 1)
    key = rng.stream_key(seed, "graph.cross")
    key_far = rng.stream_key(seed, "graph.cross_region")

    def cross_partner(pickers: Any, pick_index: Any) -> Any:
        region = pickers // (p.region_users or n)
        first, count = stub_region_start[region], stub_region_count[region]
        if p.cross_region_share > 0:
            far = rng.bernoulli(key_far, pick_index, p.cross_region_share, xp=xp)
            first = xp.where(far, 0, first)
            count = xp.where(far, max(cross_stubs.shape[0], 1), count)
        return cross_stubs[first + rng.integers(key, pick_index, count, xp=xp)]

    _fill_partners(u, v, offset, end, cross_partner, xp)
    return end


def _live_degree(u: Any, v: Any, n: int, xp: ModuleType) -> Any:
    """(int64[n]) the live pairs (``u != v``) at each node, repeats counted.

    On NumPy the pairs' chunks are dealt to :data:`WORKERS` threads, each counting into its own
    array: integer sums, so the total does not depend on the split.
    """
    chunk = _chunk(xp)
    starts = list(range(0, u.shape[0], chunk))
    n_parts = max(1, min(WORKERS if xp is np else 1, len(starts)))

    def count(part: int) -> Any:
        degree = xp.zeros(n, dtype=xp.int64)
        for start in starts[part::n_parts]:
            uc, vc = u[start : start + chunk], v[start : start + chunk]
            live = uc != vc
            degree += xp.bincount(uc[live], minlength=n)
            degree += xp.bincount(vc[live], minlength=n)
        return degree

    with _executor(xp) as pool:
        parts = list(pool.map(count, range(n_parts)))
    return sum(parts[1:], parts[0])


def trim_to_max_degree(u: Any, v: Any, n: int, max_degree: int, seed: int, *, xp: ModuleType = np) -> Any:
    """Delete pairs (in place, by setting ``v = u``) until every node's degree bound <= max_degree.

    The bound counts every live pair, duplicates included, so it is never below the true degree:
    after this, the built graph respects the cap exactly. Returns the bound (int64[n]).
    """
    degree = _live_degree(u, v, n, xp)
    round_ = 0
    while int(degree.max()) > max_degree:
        # keep each pair at an over-cap node with probability cap/degree of its fuller end
        keep_p = xp.minimum(1.0, max_degree / xp.maximum(degree, 1))
        key = rng.stream_key(seed, "graph.trim", round_)

        def work(lo: int, hi: int, keep_p=keep_p, key=key) -> None:
            uc, vc = u[lo:hi], v[lo:hi]
            p_keep = xp.minimum(keep_p[uc], keep_p[vc])
            drop = (p_keep < 1.0) & ~rng.bernoulli(key, xp.arange(lo, hi, dtype=xp.int64), p_keep, xp=xp)
            vc[drop] = uc[drop]

        _over_picks(u.shape[0], work, xp)
        degree = _live_degree(u, v, n, xp)
        round_ += 1
    return degree


def graph_from_edges(src: Any, dst: Any, n_users: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric CSR from a user-supplied edge list of node ids ``0 .. n_users-1``.

    Args:
        src, dst: (int[M]) endpoints; direction is ignored, self-loops and repeats are dropped.
        n_users: number of nodes; ``max(id) + 1`` when omitted.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError("edge list: src and dst must be 1-D arrays of the same length")
    if src.size and (min(src.min(), dst.min()) < 0):
        raise ValueError("edge list: node ids must be non-negative")
    n = int(n_users if n_users is not None else (max(src.max(), dst.max()) + 1 if src.size else 0))
    if src.size and max(src.max(), dst.max()) >= n:
        raise ValueError(f"edge list: node id {int(max(src.max(), dst.max()))} >= n_users={n}")
    return csr_from_pairs(src.astype(np.int32), dst.astype(np.int32), n)


def csr_from_pairs_plain(u: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain build that :func:`csr_from_pairs` replaces: both directions' int64 keys in one
    array, one in-place sort, repeats dropped. Obviously correct, single-threaded, and about
    four times the memory of the block build; kept as the benchmark's baseline and a reference.
    """
    live = u != v
    src = np.concatenate([u[live], v[live]]).astype(np.int64)
    keys = src * n
    del src
    keys += np.concatenate([v[live], u[live]])
    keys.sort()
    keep = np.ones(keys.shape[0], dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    keys = keys[keep]
    rows = keys // n
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, (keys - rows * n).astype(np.int32)


def local_clustering(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(float64[k]) local clustering coefficient of each of ``nodes`` (int[k]).

    Links among a node's friends over the number of friend pairs; 0 for degree < 2. Rows are
    sorted, so each friend's row is intersected with the node's row by a sorted search.
    """
    out = np.zeros(len(nodes))
    for i, node in enumerate(np.asarray(nodes, dtype=np.int64)):
        row = indices[indptr[node]:indptr[node + 1]]
        d = row.shape[0]
        if d < 2:
            continue
        links = 0
        for friend in row:
            other = indices[indptr[friend]:indptr[friend + 1]]
            pos = np.minimum(np.searchsorted(row, other), d - 1)
            links += int(np.count_nonzero(row[pos] == other))
        out[i] = links / (d * (d - 1))  # each link is counted from both ends
    return out
