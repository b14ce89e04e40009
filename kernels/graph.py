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

Memory: the build holds the pairs (8 bytes per undirected pick), the output ``indices``
(4 bytes per directed edge) and two blocks of sort keys at a time; the blocks are sorted in
threads, because NumPy's sort releases the GIL.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import rng

#: pairs processed per vectorised step when drawing picks and scanning pairs (bounds temporaries)
CHUNK = 1 << 23
#: directed edges per block of the CSR build: two blocks' sort keys (16 bytes each) are live at once
BLOCK_KEYS = 6_000_000
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
    """A built friend graph.

    Attributes:
        indptr: (int64[N+1]) row offsets.
        indices: (int32[E]) neighbours, sorted within each row.
        city: (int32[N]) city of each user; ids are contiguous within a city.
    """

    indptr: np.ndarray
    indices: np.ndarray
    city: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def n_edges(self) -> int:
        """Directed edges (twice the number of friendships)."""
        return int(self.indices.shape[0])

    def degree(self) -> np.ndarray:
        """(int64[N]) number of friends of each user."""
        return np.diff(self.indptr)


# ---------------------------------------------------------------------------------------------
# CSR from pairs


def _block_keys(u: np.ndarray, v: np.ndarray, lo: int, hi: int, n: int, bound: int) -> np.ndarray:
    """Sorted unique int64 keys ``(src - lo) * n + dst`` of directed edges with src in [lo, hi).

    Both directions of every pair are considered; pairs with ``u == v`` (self-loops and trimmed
    pairs) are skipped. ``bound`` (at least the number of such directed edges) sizes the key
    buffer, so the keys are written once instead of gathered and concatenated.
    """
    keys = np.empty(bound, dtype=np.int64)
    filled = 0
    for start in range(0, u.shape[0], CHUNK):
        uc, vc = u[start : start + CHUNK], v[start : start + CHUNK]
        live = uc != vc
        for src, dst in ((uc, vc), (vc, uc)):
            m = (src >= lo) & (src < hi) & live
            part = keys[filled : filled + int(np.count_nonzero(m))]
            np.subtract(src[m], lo, out=part, dtype=np.int64)
            part *= n
            part += dst[m]
            filled += part.shape[0]
    keys = keys[:filled]
    keys.sort()
    if filled > 1:
        keep = np.empty(filled, dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def csr_from_pairs(
    u: np.ndarray, v: np.ndarray, n: int, *, degree_bound: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric, deduplicated CSR adjacency from undirected pairs.

    Args:
        u, v: (int32[P]) pair endpoints in ``[0, n)``; pairs with ``u == v`` are ignored.
        n: number of nodes.
        degree_bound: (int64[n]) optional upper bound on each node's degree, used to split the
            work into blocks of similar size (computed from the pairs if omitted).

    Returns:
        ``indptr`` (int64[n+1]) and ``indices`` (int32[E]), rows sorted ascending.
    """
    if n >= 2**31 - 1:
        raise ValueError(f"n={n} nodes does not fit int32 indices (at most 2^31 - 2)")
    if degree_bound is None:
        degree_bound = np.bincount(u, minlength=n) + np.bincount(v, minlength=n)
    total = int(degree_bound.sum())
    n_blocks = max(1, min(n, -(-total // BLOCK_KEYS)))
    cum = np.cumsum(degree_bound)
    bounds = np.searchsorted(cum, np.linspace(0, total, n_blocks + 1)[1:-1], side="right")
    bounds = np.unique(np.concatenate([[0], bounds, [n]]).astype(np.int64))

    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(total, dtype=np.int32)
    filled = 0
    workers = max(1, min(2, os.cpu_count() or 1))
    blocks = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for group in _block_groups(blocks):
            # the pairs with an end in this group's rows, found in one scan: each block of the
            # group then scans these instead of every pair (one scan per block made the build
            # quadratic in N: 300 blocks of 6M keys at 10M users, each reading all 0.9B pairs)
            if len(group) == len(blocks):
                u_group, v_group = u, v
            else:
                u_group, v_group = _pairs_touching(u, v, group[0][0], group[-1][1], pool)
            # a sliding window of `workers` blocks keeps at most that many key arrays alive
            pending = []
            next_block = 0
            while next_block < len(group) or pending:
                while next_block < len(group) and len(pending) < workers:
                    lo, hi = group[next_block]
                    bound = int(cum[hi - 1] - (cum[lo - 1] if lo else 0))
                    pending.append((lo, hi, pool.submit(_block_keys, u_group, v_group, lo, hi, n, bound)))
                    next_block += 1
                lo, hi, future = pending.pop(0)
                keys = future.result()
                row_starts = np.searchsorted(keys, np.arange(hi - lo + 1, dtype=np.int64) * n)
                indptr[lo + 1 : hi + 1] = filled + row_starts[1:]
                indices[filled : filled + keys.shape[0]] = keys % n
                filled += keys.shape[0]
                del keys
            del u_group, v_group
    indices.resize(filled, refcheck=False)  # shrink in place: duplicates were removed
    return indptr, indices


def _block_groups(blocks: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
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


def _pairs_touching(u: np.ndarray, v: np.ndarray, lo: int, hi: int,
                    pool: ThreadPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of the pairs with at least one end in ``[lo, hi)``, in their original order,
    scanned in chunks on the pool."""
    def scan(start: int) -> tuple[np.ndarray, np.ndarray]:
        uc, vc = u[start:start + CHUNK], v[start:start + CHUNK]
        keep = ((uc >= lo) & (uc < hi)) | ((vc >= lo) & (vc < hi))
        return uc[keep], vc[keep]

    parts = list(pool.map(scan, range(0, u.shape[0], CHUNK)))
    if not parts:
        return u[:0], v[:0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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


def _stochastic_round(x: np.ndarray, key: int) -> np.ndarray:
    """(int64[n]) ``floor(x + u)``: an integer with mean exactly x and minimal variance."""
    return np.floor(x + rng.uniform(key, x.shape[0])).astype(np.int64)


def _write_pickers(u_out: np.ndarray, offset: int, counts: np.ndarray) -> int:
    """Write user i ``counts[i]`` times into ``u_out`` from ``offset``; return the new offset.

    The pickers of a layer come out sorted by user id, hence grouped by city.
    """
    ends = np.cumsum(counts)
    n_users = counts.shape[0]
    start_user = 0
    while start_user < n_users:
        base = int(ends[start_user - 1]) if start_user else 0
        stop_user = max(int(np.searchsorted(ends, base + CHUNK, side="right")), start_user + 1)
        block = np.repeat(np.arange(start_user, stop_user, dtype=np.int32), counts[start_user:stop_user])
        u_out[offset : offset + block.shape[0]] = block
        offset += block.shape[0]
        start_user = stop_user
    return offset


def _fill_partners(u: np.ndarray, v: np.ndarray, start: int, stop: int, partner: Any) -> None:
    """Set ``v[start:stop] = partner(pickers, pick_index)`` chunk by chunk.

    ``pickers`` are ``u[start:stop]`` as int64; ``pick_index`` numbers the layer's picks from 0,
    so a pick's draw depends only on its place in the layer (counter-based).
    """
    for lo in range(start, stop, CHUNK):
        hi = min(lo + CHUNK, stop)
        pickers = u[lo:hi].astype(np.int64)
        v[lo:hi] = partner(pickers, np.arange(lo - start, hi - start, dtype=np.int64))


def _household_pairs(city_start: np.ndarray, n: int, max_size: int, key: int):
    """Households: consecutive runs of 1..max_size users, never crossing a city boundary.

    Returns (int32[P], int32[P]) all pairs inside each household (cliques).
    """
    sizes = 1 + rng.integers(key, n, max_size)
    starts = np.cumsum(sizes) - sizes
    head = np.zeros(n, dtype=bool)
    head[starts[starts < n]] = True
    head[city_start[:-1]] = True
    household = np.cumsum(head) - 1
    us, vs = [], []
    ids = np.arange(n, dtype=np.int64)
    for d in range(1, max_size):
        same = household[:-d] == household[d:]
        us.append(ids[:-d][same])
        vs.append(ids[d:][same])
    return np.concatenate(us).astype(np.int32), np.concatenate(vs).astype(np.int32)


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


def city_repeat_inflation(w: np.ndarray, city: np.ndarray, sizes: np.ndarray, degree: float) -> np.ndarray:
    """(float64[C]) factor on each city's Chung-Lu picks that offsets picks of the same pair.

    With weights w (mean 1) and mean degree d inside a city of size n, users i and j are picked
    Poisson(w_i w_j d / n) times, so a pair picked twice or more loses a friendship. To first
    order the lost share of the city's degree is r = d * mean(w^2)^2 / (2 n); the picks are
    scaled by 1 / (1 - r), with r capped at 0.5 where the approximation stops being useful.
    """
    mean_w2 = np.bincount(city, weights=w * w, minlength=sizes.shape[0]) / np.maximum(sizes, 1)
    lost = np.minimum(0.5, degree * mean_w2**2 / (2.0 * np.maximum(sizes, 1)))
    return 1.0 / (1.0 - lost)


def sociability_weights(n: int, sigma: float, seed: int) -> np.ndarray:
    """(float64[n]) log-normal sociability with mean 1 (the degree tail's shape)."""
    z = rng.normal(rng.stream_key(seed, "graph.sociability"), n)
    w = np.exp(sigma * z)
    return w / w.mean()


def generate_friend_graph(
    n_users: int,
    params: GraphParams = GraphParams(),
    *,
    seed: int = 0,
    sociability: np.ndarray | None = None,
) -> FriendGraph:
    """Generate a WeChat-like friend graph (see the module docstring for the layers).

    Args:
        n_users: N, number of users.
        params: degree, city and community parameters.
        seed: base seed of the counter-based draws.
        sociability: (float64[N]) optional relative friend-making weights (for example merchants'
            accounts weighted up); log-normal with mean 1 when omitted. Scaled to mean 1 here.

    Returns:
        A :class:`FriendGraph`; its mean degree is close to ``params.mean_degree`` when cities
        are much larger than circles, and never above ``params.max_degree`` per user.
    """
    u, v, degree_bound, city = friend_pairs(n_users, params, seed=seed, sociability=sociability)
    indptr, indices = csr_from_pairs(u, v, int(n_users), degree_bound=degree_bound)
    return FriendGraph(indptr=indptr, indices=indices, city=city)


def friend_pairs(
    n_users: int,
    params: GraphParams = GraphParams(),
    *,
    seed: int = 0,
    sociability: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The picks of :func:`generate_friend_graph` before the CSR build.

    Returns:
        u, v (int32[P]) picks, with ``u == v`` marking dropped ones; the degree bound (int64[N],
        already trimmed to ``max_degree``); city (int32[N]).
    """
    n = int(n_users)
    if n < 2:
        raise ValueError(f"n_users must be at least 2, got {n}")
    p = params
    sizes = city_sizes(n, p.n_cities, p.city_zipf_exponent, p.region_users)
    city_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    city = np.repeat(np.arange(sizes.shape[0], dtype=np.int32), sizes)

    hu, hv = _household_pairs(city_start, n, p.max_household_size, rng.stream_key(seed, "graph.household"))
    household_degree = 2.0 * hu.shape[0] / n

    # circles: per-user pick counts (each pick gives ~2 degree: the picker's and the partner's)
    circle_degree = p.circle_share * p.mean_degree
    picks_per_layer = circle_picks_for_degree(circle_degree / p.n_circle_layers, p.circle_size)
    circle_counts = [
        _stochastic_round(np.full(n, picks_per_layer), rng.stream_key(seed, f"graph.circle{l}.count"))
        for l in range(p.n_circle_layers)
    ]

    # Chung-Lu layers carry the rest of the mean degree, with a heavy tail from sociability
    cl_degree = max(0.0, p.mean_degree - household_degree - circle_degree)
    w = sociability_weights(n, p.sociability_sigma, seed) if sociability is None else np.asarray(sociability, np.float64)
    city_degree = cl_degree * (1 - p.cross_city_share)
    cross_degree = cl_degree * p.cross_city_share
    # Cap each user's expected pick count (the degree bound the trim works on) at 90% of the
    # friend limit, so that trimming is needed only for rare Poisson excursions.
    bound_room = 0.9 * p.max_degree - (p.max_household_size - 1) - 2.0 * picks_per_layer * p.n_circle_layers
    for _ in range(4):
        w = w / w.mean()
        inflation = city_repeat_inflation(w, city, sizes, city_degree)[city]
        w = np.minimum(w, max(bound_room, 1.0) / (city_degree * inflation + cross_degree))
    city_counts = _stochastic_round(w * city_degree / 2.0 * inflation, rng.stream_key(seed, "graph.city.count"))
    cross_counts = _stochastic_round(w * cross_degree / 2.0, rng.stream_key(seed, "graph.cross.count"))

    total = hu.shape[0] + sum(int(c.sum()) for c in circle_counts) + int(city_counts.sum()) + int(cross_counts.sum())
    u = np.empty(total, dtype=np.int32)
    v = np.empty(total, dtype=np.int32)
    u[: hu.shape[0]] = hu
    v[: hu.shape[0]] = hv
    offset = hu.shape[0]
    del hu, hv

    for layer, counts in enumerate(circle_counts):
        order = np.argsort(city + rng.uniform(rng.stream_key(seed, f"graph.circle{layer}.order"), n))
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        group_start = position - (position - city_start[city]) % p.circle_size
        group_len = np.minimum(p.circle_size, city_start[city + 1] - group_start)
        del position
        key = rng.stream_key(seed, f"graph.circle{layer}")

        def circle_partner(pickers, pick_index, order=order, group_start=group_start, group_len=group_len, key=key):
            return order[group_start[pickers] + rng.integers(key, pick_index, group_len[pickers])]

        end = _write_pickers(u, offset, counts)
        _fill_partners(u, v, offset, end, circle_partner)
        offset = end
        del order, group_start, group_len

    # city ties: a layer's pickers are sorted by user, hence grouped by city, and double as its
    # stub list: a partner drawn uniformly from the city's stubs is drawn in proportion to weight
    end = _write_pickers(u, offset, city_counts)
    stubs = u[offset:end]
    stub_city_start = np.searchsorted(stubs, city_start).astype(np.int64)
    stub_city_count = np.maximum(np.diff(stub_city_start), 1)
    key = rng.stream_key(seed, "graph.city")

    def city_partner(pickers, pick_index):
        c = city[pickers]
        return stubs[stub_city_start[c] + rng.integers(key, pick_index, stub_city_count[c])]

    _fill_partners(u, v, offset, end, city_partner)
    offset = end

    # cross-city ties: partners drawn in proportion to weight from the picker's own region (a
    # region is a closed social world, so a cascade meets the same cities at every N), and with
    # probability cross_region_share from every region
    end = _write_pickers(u, offset, cross_counts)
    cross_stubs = u[offset:end]
    region_bounds = np.append(np.arange(0, n, p.region_users or n, dtype=np.int64), n)
    stub_region_start = np.searchsorted(cross_stubs, region_bounds).astype(np.int64)
    stub_region_count = np.maximum(np.diff(stub_region_start), 1)
    key = rng.stream_key(seed, "graph.cross")
    key_far = rng.stream_key(seed, "graph.cross_region")

    def cross_partner(pickers, pick_index):
        region = pickers // (p.region_users or n)
        first, count = stub_region_start[region], stub_region_count[region]
        if p.cross_region_share > 0:
            far = rng.bernoulli(key_far, pick_index, p.cross_region_share)
            first = np.where(far, 0, first)
            count = np.where(far, max(cross_stubs.shape[0], 1), count)
        return cross_stubs[first + rng.integers(key, pick_index, count)]

    _fill_partners(u, v, offset, end, cross_partner)
    offset = end
    assert offset == total

    degree_bound = trim_to_max_degree(u, v, n, p.max_degree, seed)
    return u, v, degree_bound, city


def trim_to_max_degree(u: np.ndarray, v: np.ndarray, n: int, max_degree: int, seed: int) -> np.ndarray:
    """Delete pairs (in place, by setting ``v = u``) until every node's degree bound <= max_degree.

    The bound counts every live pair, duplicates included, so it is never below the true degree:
    after this, the built graph respects the cap exactly. Returns the bound (int64[n]).
    """
    def bound() -> np.ndarray:
        degree = np.zeros(n, dtype=np.int64)
        for start in range(0, u.shape[0], CHUNK):
            uc, vc = u[start : start + CHUNK], v[start : start + CHUNK]
            live = uc != vc
            degree += np.bincount(uc[live], minlength=n)
            degree += np.bincount(vc[live], minlength=n)
        return degree

    degree = bound()
    round_ = 0
    while degree.max(initial=0) > max_degree:
        # keep each pair at an over-cap node with probability cap/degree of its fuller end
        keep_p = np.minimum(1.0, max_degree / np.maximum(degree, 1))
        key = rng.stream_key(seed, "graph.trim", round_)
        for start in range(0, u.shape[0], CHUNK):
            uc, vc = u[start : start + CHUNK], v[start : start + CHUNK]
            p_keep = np.minimum(keep_p[uc], keep_p[vc])
            drop = (p_keep < 1.0) & ~rng.bernoulli(key, np.arange(start, start + uc.shape[0]), p_keep)
            vc[drop] = uc[drop]
        degree = bound()
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
