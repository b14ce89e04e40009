"""Consumers: millions of users held as struct-of-arrays on the chosen device, their friend graph
(CSR) and merchant-group membership (CSR both ways). Never Python objects.

Per-user state is declared once, in :data:`USER_STATE`; :class:`Population` allocates exactly
those arrays. Build order: pick the merchants' accounts, weight their sociability up (merchants
befriend many people), generate (or read) the friend graph, then draw interests, conversion
propensity, account ages and merchant groups, all from counter-based streams and all with the
backend's ``xp``, so on CuPy the population is built on the device and never crosses the bus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..kernels import rng
from ..kernels.backend import (
    Backend,
    concat_ranges,
    map_chunks,
    repeat_ids,
    sorted_unique,
)
from ..kernels.graph import (
    GraphParams,
    city_sizes,
    generate_friend_graph,
    sociability_weights,
)
from .codes import TICKS_PER_YEAR
from .config import ScenarioConfig
from .graph_io import with_edge_list
from .state import StateField

#: The per-user state: the only place it is declared. None of it changes during a run (the model
#: keeps what changes per merchant, per (merchant, buyer) pair or per payer window), so a
#: population can serve several runs and checkpoints need not carry it.
USER_STATE: tuple[StateField, ...] = (
    StateField("city", "int32", 0, "city id; user ids are contiguous within a generated city"),
    StateField("interests", "uint16", 0, "bitmask of product categories the user is interested in"),
    StateField("rel_buy", "float32", 1.0, "conversion propensity multiplier (mean 1)"),
    StateField("ti_created", "int32", 0, "tick the account was created (negative: before the run)"),
    StateField("profile_complete", "bool", False,
               "enterprise-WeChat linkage completed the user's customer profile (targeted pushes)"),
)


@dataclass
class Population:
    """Users, friend graph and groups, on one device; read-only once built (on the host, the
    arrays refuse writes), so several runs can share one population.

    Attributes:
        n_users: N.
        state: name -> (dtype[N]) array, one per :data:`USER_STATE` field.
        indptr: (int64[N+1]) friend CSR offsets; indices (int32[E]) friends, rows sorted.
        group_indptr: (int64[G+1]) group -> members CSR offsets; group_members (int32[M]).
        group_owner: (int32[G]) merchant index running each group; group_size (int32[G]).
        member_indptr: (int64[N+1]) user -> groups CSR offsets; member_groups (int32[M]).
        merchant_uids: (int64[n_merchants]) account of each merchant (host array).
    """

    n_users: int
    state: dict[str, Any]
    indptr: Any
    indices: Any
    group_indptr: Any
    group_members: Any
    group_owner: Any
    group_size: Any
    member_indptr: Any
    member_groups: Any
    merchant_uids: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_edges(self) -> int:
        return int(self.indices.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.group_owner.shape[0])

    def arrays(self) -> list[Any]:
        """Every per-user, per-edge and per-membership array."""
        return [*self.state.values(), self.indptr, self.indices, self.group_indptr, self.group_members,
                self.group_owner, self.group_size, self.member_indptr, self.member_groups]

    def nbytes(self) -> int:
        """Bytes held by all per-user, per-edge and per-membership arrays."""
        return int(sum(a.nbytes for a in self.arrays()))


def graph_params(config: ScenarioConfig) -> GraphParams:
    p = config.population
    return GraphParams(mean_degree=p.mean_degree, max_degree=p.max_degree, n_cities=p.n_cities,
                       region_users=p.region_users, cross_region_share=p.cross_region_share)


def _choose_merchants(n_users: int, n_merchants: int, seed: int, xp: ModuleType) -> Any:
    """(int64[M]) distinct random accounts for the merchants, in merchant order, on ``xp``'s device."""
    if n_merchants > n_users:
        raise ValueError(f"merchants.n_merchants={n_merchants} exceeds population.n_users={n_users}")
    draws = rng.uniform(rng.stream_key(seed, "population.merchant_accounts"), n_users, xp=xp)
    return xp.argsort(draws, kind="stable")[:n_merchants].astype(xp.int64)


def category_cdf(n_categories: int) -> np.ndarray:
    """(float64[K]) cumulative popularity of the product categories: Zipf, category 0 the most
    popular. Users' interests and merchants' categories are both drawn from it."""
    weight = 1.0 / np.arange(1, n_categories + 1)
    return np.cumsum(weight / weight.sum())


def draw_categories(u: Any, n_categories: int, *, xp: ModuleType = np) -> Any:
    """(int64[n]) categories for uniform draws ``u`` (float64[n]) by :func:`category_cdf`."""
    cdf = xp.asarray(category_cdf(n_categories))
    return xp.minimum(xp.searchsorted(cdf, u, side="right"), n_categories - 1)


def _interests(n: int, n_categories: int, seed: int, xp: ModuleType) -> Any:
    """(uint16[N]) 1-4 interest categories per user, popular categories more often (Zipf).

    Each user's mask depends on its own draws alone, so on NumPy the users are done in chunks on
    the thread pool.
    """
    mask = xp.zeros(n, dtype=xp.uint16)
    keys = [rng.stream_key(seed, "population.interest", slot) for slot in range(4)]
    n_tags_key = rng.stream_key(seed, "population.n_interests")

    def work(lo: int, hi: int) -> None:
        users = xp.arange(lo, hi, dtype=xp.int64)
        n_tags = 1 + rng.integers(n_tags_key, users, 4, xp=xp)
        for slot, key in enumerate(keys):
            category = draw_categories(rng.uniform(key, users, xp=xp), n_categories, xp=xp)
            mask[lo:hi] |= xp.where(n_tags > slot, (1 << category).astype(xp.uint16), xp.uint16(0))

    map_chunks(n, work, xp=xp)
    return mask


def _draw_groups(indptr: Any, indices: Any, n: int, merchant_uids: Any, config: ScenarioConfig,
                 seed: int, size_scale: float, xp: ModuleType):
    """One draw of the merchant groups with sizes scaled by ``size_scale`` (see :func:`_groups`)."""
    c = config.community
    n_merchants = merchant_uids.shape[0]
    per_merchant = xp.floor(c.groups_per_merchant
                            + rng.uniform(rng.stream_key(seed, "community.n_groups"), n_merchants, xp=xp))
    owner = repeat_ids(per_merchant.astype(xp.int64), xp=xp).astype(xp.int32)
    n_groups = owner.shape[0]
    # log-normal sizes: mean group_size_mean, with a tail past the 500-member threshold
    sigma = 0.6
    # drawn on the host (exp) and copied over, so every backend has the same sizes
    z = rng.normal(rng.stream_key(seed, "community.size"), n_groups)
    mean = c.group_size_mean * size_scale
    size = xp.asarray(np.clip(np.round(mean * np.exp(sigma * z - sigma**2 / 2)), 3, n - 1).astype(np.int64))
    # the k-th slot of a group takes the owner's friend k places after a random start, so a
    # group repeats no friend until it has gone round the owner's whole friend list
    owner_uid = merchant_uids[owner]
    owner_first = indptr[owner_uid]
    owner_degree = indptr[owner_uid + 1] - owner_first
    start = rng.integers(rng.stream_key(seed, "community.friend_start"), n_groups, xp.maximum(owner_degree, 1),
                         xp=xp)
    slot_group = repeat_ids(size, xp=xp)
    slot_rank = concat_ranges(xp.zeros_like(size), size, xp=xp)  # 0, 1, ... within each group
    m = slot_group.shape[0]
    keys = xp.empty(m, dtype=xp.int64)
    from_friend_key = rng.stream_key(seed, "community.from_friend")
    local_key = rng.stream_key(seed, "community.local")
    # the other slots take users living near the owner: ids are laid out city by city, so slot k
    # takes a random user from the k-th 7-id bucket of a window around the owner's id; buckets
    # are disjoint, so these picks never repeat (small cities spill into their neighbours)
    bucket = 7

    def work(lo: int, hi: int) -> None:  # each slot's member depends on the slot alone
        slots = xp.arange(lo, hi, dtype=xp.int64)
        group, rank = slot_group[lo:hi], slot_rank[lo:hi]
        account = owner_uid[group]
        degree = owner_degree[group]
        friend = indices[xp.minimum(owner_first[group] + (start[group] + rank) % xp.maximum(degree, 1),
                                    indices.shape[0] - 1)]
        jitter = rng.integers(local_key, slots, bucket, xp=xp)
        local = (account - size[group] * bucket // 2 + bucket * rank + jitter) % n
        from_friend = rng.bernoulli(from_friend_key, slots, 0.5, xp=xp)
        member = xp.where(from_friend & (degree > 0), friend, local).astype(xp.int64)
        keys[lo:hi] = group * n + member

    map_chunks(m, work, xp=xp)
    # keys ascend group by group: on NumPy the groups' runs are sorted side by side
    keys = sorted_unique(keys, xp=xp, run=slot_group)
    group_indptr = xp.searchsorted(keys, xp.arange(n_groups + 1, dtype=xp.int64) * n)
    members = (keys % n).astype(xp.int32)
    return group_indptr, members, owner


def _groups(indptr: Any, indices: Any, n: int, merchant_uids: Any, config: ScenarioConfig, seed: int,
            xp: ModuleType):
    """Merchant groups: owners, and members drawn from the owner's friends and neighbourhood.

    A group of drawn size s takes each member from the owner's friends with probability 1/2
    (friends follow the merchant into its group) and otherwise from users living near the owner.
    A member picked both ways counts once, and small friend lists wrap round, so realised groups
    come out smaller than drawn; the draw is repeated once with sizes scaled by the shortfall,
    so the realised mean matches ``community.group_size_mean`` (an input of SPEC section 4).

    Returns group_indptr (int64[G+1]), group_members (int32[M]), group_owner (int32[G]).
    """
    target = config.community.group_size_mean
    scale = 1.0
    for _ in range(2):
        group_indptr, members, owner = _draw_groups(indptr, indices, n, merchant_uids, config, seed, scale, xp)
        if owner.shape[0] == 0:
            break
        realised = members.shape[0] / owner.shape[0]
        scale *= target / realised
    return group_indptr, members, owner


def _transpose_membership(group_indptr: Any, members: Any, n: int, xp: ModuleType):
    """User -> groups CSR from group -> members CSR: member_indptr (int64[N+1]), groups (int32[M]).

    A user's groups come out ascending: the (member, group) keys are sorted, which orders the
    memberships as a stable sort by member would (a group lists each member once), at the cost
    of an integer sort instead of a stable argsort.
    """
    n_groups = group_indptr.shape[0] - 1
    group_of = repeat_ids(group_indptr[1:] - group_indptr[:-1], xp=xp)
    keys = xp.sort(members.astype(xp.int64) * n_groups + group_of)
    member_indptr = xp.zeros(n + 1, dtype=xp.int64)
    member_indptr[1:] = xp.cumsum(xp.bincount(members, minlength=n))
    return member_indptr, (keys % max(n_groups, 1)).astype(xp.int32)


def _friend_graph(config: ScenarioConfig, backend: Backend, say: Any, graph: tuple[np.ndarray, np.ndarray] | None,
                  timings: dict[str, float]) -> tuple[ScenarioConfig, int, Any, Any, Any, Any, np.ndarray]:
    """The friend graph, read from the config's edge list or generated, with each user's city and
    the merchants' accounts: (config, N, indptr int64[N + 1], indices int32[E], city int32[N],
    merchant uids int64[M]) on the device, and the merchant uids on the host (the Mesa agents'
    accounts). An edge list sets N (the config returned says so)."""
    seed, pop, xp = config.run.seed, config.population, backend.xp
    if pop.edge_list:
        if graph is None:
            say(f"reading edge list {pop.edge_list}")
            config, graph = with_edge_list(config)
        t_copy = time.perf_counter()
        indptr, indices = backend.to_device(graph[0]), backend.to_device(graph[1])
        timings["to_device"] = time.perf_counter() - t_copy
        n = indptr.shape[0] - 1
        sizes = city_sizes(n, pop.n_cities, 1.0, pop.region_users)
        city = repeat_ids(xp.asarray(sizes), xp=xp).astype(xp.int32)
        merchant_uids = _choose_merchants(n, config.n_merchants, seed, xp)
        return config, n, indptr, indices, city, merchant_uids, backend.to_host(merchant_uids)
    n = pop.n_users
    merchant_uids = _choose_merchants(n, config.n_merchants, seed, xp)
    # float work (exp, means) made on the host so every backend gets the same bits
    sociability = sociability_weights(n, graph_params(config).sociability_sigma, seed)
    merchant_uids_host = backend.to_host(merchant_uids)
    sociability[merchant_uids_host] *= pop.merchant_sociability
    say(f"generating friend graph: {n:,} users, mean degree {pop.mean_degree:g}")
    built = generate_friend_graph(n, graph_params(config), seed=seed, sociability=sociability, xp=xp)
    timings["to_device"] = 0.0  # built where it lives
    return config, n, built.indptr, built.indices, built.city, merchant_uids, merchant_uids_host


def _user_state(config: ScenarioConfig, n: int, city: Any, xp: ModuleType) -> dict[str, Any]:
    """The users' columns of :data:`USER_STATE` (each [N], on the device): city, interests,
    purchase propensity, account age, a complete profile."""
    seed = config.run.seed
    state: dict[str, Any] = {f.name: xp.full(n, f.default, dtype=f.dtype) for f in USER_STATE}
    state["city"][:] = city
    state["interests"][:] = _interests(n, config.population.n_categories, seed, xp)
    # log-normal propensity with mean 1; drawn on the host and copied over, so every backend has
    # the same bits (a GPU's exp may round the last bit otherwise, and float32 rounding can carry it)
    z = rng.normal(rng.stream_key(seed, "population.rel_buy"), n)
    state["rel_buy"][:] = xp.asarray(np.exp(0.5 * z - 0.125).astype(np.float32))
    # account ages: up to 10 years, exponential-ish (1 - u) ** 2 puts more mass on young accounts
    u = rng.uniform(rng.stream_key(seed, "population.age"), n, xp=xp)
    state["ti_created"][:] = -xp.floor(10 * TICKS_PER_YEAR * u * u).astype(xp.int32)
    state["profile_complete"][:] = rng.bernoulli(rng.stream_key(seed, "population.profile"), n,
                                                 config.community.profile_completeness, xp=xp)
    return state


#: the config keys :func:`build_population` reads beyond the population section (and run.seed)
POPULATION_KEYS = ("community.group_size_mean", "community.groups_per_merchant", "community.profile_completeness",
                   "merchants.n_merchants")


def population_key(config: ScenarioConfig) -> str:
    """What :func:`build_population` builds from, as one string: two configs with the same key
    build the same population (bit for bit), so runs may share one (an ensemble's samples, a
    calibration's trials). A test builds a population through a view that records every config
    read and checks each is in the key."""
    import json  # noqa: PLC0415

    data = config.model_dump(mode="json")
    return json.dumps({"population": data["population"], "seed": config.run.seed, "backend": config.run.backend,
                       **{key: data[key.split(".")[0]][key.split(".")[1]] for key in POPULATION_KEYS}},
                      sort_keys=True)


def build_population(config: ScenarioConfig, backend: Backend, progress: Any = None,
                     graph: tuple[np.ndarray, np.ndarray] | None = None) -> Population:
    """Build users, graph and groups on the backend's device (the host for NumPy), the same
    arrays bit for bit on either: every draw is counter-based.

    Args:
        config: the scenario.
        backend: where the arrays are built and live during the run.
        progress: optional callable(str) told about each build step.
        graph: the edge list's CSR (indptr, indices) as :func:`~weishang.model.graph_io.with_edge_list`
            read it, with the config it returned (read here when the config names an edge list and
            this is omitted); copied to the device once.
    """
    say = progress or (lambda _msg: None)
    xp = backend.xp
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    config, n, indptr, indices, city, merchant_uids, merchant_uids_host = _friend_graph(config, backend, say, graph,
                                                                                          timings)
    timings["graph"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    say("drawing user attributes and merchant groups")
    state = _user_state(config, n, city, xp)
    seed = config.run.seed
    group_indptr, group_members, group_owner = _groups(indptr, indices, n, merchant_uids, config, seed, xp)
    member_indptr, member_groups = _transpose_membership(group_indptr, group_members, n, xp)
    timings["attributes"] = time.perf_counter() - t1

    population = Population(
        n_users=n,
        state=state,
        indptr=indptr,
        indices=indices,
        group_indptr=group_indptr,
        group_members=group_members,
        group_owner=group_owner,
        group_size=(group_indptr[1:] - group_indptr[:-1]).astype(xp.int32),
        member_indptr=member_indptr,
        member_groups=member_groups,
        merchant_uids=merchant_uids_host,
        timings=timings,
    )
    for array in population.arrays():
        if isinstance(array, np.ndarray):  # host arrays are shared by every run on this population
            array.flags.writeable = False
    return population
