"""Consumers: millions of users held as struct-of-arrays on the chosen device, their friend graph
(CSR) and merchant-group membership (CSR both ways). Never Python objects.

Per-user state is declared once, in :data:`USER_STATE`; :class:`Population` allocates exactly
those arrays. Build order: pick the merchants' accounts, weight their sociability up (merchants
befriend many people), generate (or read) the friend graph, then draw interests, conversion
propensity, account ages and merchant groups, all from counter-based streams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kernels import rng
from ..kernels.backend import Backend, concat_ranges, sorted_unique
from ..kernels.graph import GraphParams, city_sizes, generate_friend_graph, sociability_weights
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


def _choose_merchants(n_users: int, n_merchants: int, seed: int) -> np.ndarray:
    """(int64[M]) distinct random accounts for the merchants, in merchant order."""
    if n_merchants > n_users:
        raise ValueError(f"merchants.n_merchants={n_merchants} exceeds population.n_users={n_users}")
    order = np.argsort(rng.uniform(rng.stream_key(seed, "population.merchant_accounts"), n_users), kind="stable")
    return order[:n_merchants].astype(np.int64)


def category_cdf(n_categories: int) -> np.ndarray:
    """(float64[K]) cumulative popularity of the product categories: Zipf, category 0 the most
    popular. Users' interests and merchants' categories are both drawn from it."""
    weight = 1.0 / np.arange(1, n_categories + 1)
    return np.cumsum(weight / weight.sum())


def draw_categories(u: np.ndarray, n_categories: int) -> np.ndarray:
    """(int64[n]) categories for uniform draws ``u`` (float64[n]) by :func:`category_cdf`."""
    return np.minimum(np.searchsorted(category_cdf(n_categories), u, side="right"), n_categories - 1)


def _interests(n: int, n_categories: int, seed: int) -> np.ndarray:
    """(uint16[N]) 1-4 interest categories per user, popular categories more often (Zipf)."""
    mask = np.zeros(n, dtype=np.uint16)
    n_tags = 1 + rng.integers(rng.stream_key(seed, "population.n_interests"), n, 4)
    for slot in range(4):
        u = rng.uniform(rng.stream_key(seed, "population.interest", slot), n)
        category = draw_categories(u, n_categories)
        mask |= np.where(slot < n_tags, (1 << category).astype(np.uint16), np.uint16(0))
    return mask


def _draw_groups(indptr: np.ndarray, indices: np.ndarray, n: int, merchant_uids: np.ndarray,
                 config: ScenarioConfig, seed: int, size_scale: float):
    """One draw of the merchant groups with sizes scaled by ``size_scale`` (see :func:`_groups`)."""
    c = config.community
    n_merchants = merchant_uids.shape[0]
    per_merchant = np.floor(c.groups_per_merchant + rng.uniform(rng.stream_key(seed, "community.n_groups"), n_merchants))
    owner = np.repeat(np.arange(n_merchants, dtype=np.int32), per_merchant.astype(np.int64))
    n_groups = owner.shape[0]
    # log-normal sizes: mean group_size_mean, with a tail past the 500-member threshold
    sigma = 0.6
    z = rng.normal(rng.stream_key(seed, "community.size"), n_groups)
    mean = c.group_size_mean * size_scale
    size = np.clip(np.round(mean * np.exp(sigma * z - sigma**2 / 2)), 3, n - 1).astype(np.int64)
    slot_group = np.repeat(np.arange(n_groups, dtype=np.int64), size)
    account = merchant_uids[owner[slot_group]]
    m = slot_group.shape[0]
    slot_rank = concat_ranges(np.zeros_like(size), size, xp=np)  # 0, 1, ... within each group
    from_friend = rng.bernoulli(rng.stream_key(seed, "community.from_friend"), m, 0.5)
    # the k-th slot of a group takes the owner's friend k places after a random start, so a
    # group repeats no friend until it has gone round the owner's whole friend list
    owner_degree = indptr[merchant_uids[owner] + 1] - indptr[merchant_uids[owner]]
    start = rng.integers(rng.stream_key(seed, "community.friend_start"), n_groups, np.maximum(owner_degree, 1))
    degree = np.maximum(owner_degree[slot_group], 1)
    friend = indices[np.minimum(indptr[account] + (start[slot_group] + slot_rank) % degree, indices.shape[0] - 1)]
    # the other slots take users living near the owner: ids are laid out city by city, so slot k
    # takes a random user from the k-th 7-id bucket of a window around the owner's id; buckets
    # are disjoint, so these picks never repeat (small cities spill into their neighbours)
    bucket = 7
    jitter = rng.integers(rng.stream_key(seed, "community.local"), m, bucket)
    local = (account - size[slot_group] * bucket // 2 + bucket * slot_rank + jitter) % n
    member = np.where(from_friend & (owner_degree[slot_group] > 0), friend, local).astype(np.int64)
    keys = sorted_unique(slot_group * n + member, xp=np)
    members = (keys % n).astype(np.int32)
    group_indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n_groups), out=group_indptr[1:])
    return group_indptr, members, owner


def _groups(indptr: np.ndarray, indices: np.ndarray, n: int, merchant_uids: np.ndarray,
            config: ScenarioConfig, seed: int):
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
        group_indptr, members, owner = _draw_groups(indptr, indices, n, merchant_uids, config, seed, scale)
        if owner.shape[0] == 0:
            break
        realised = members.shape[0] / owner.shape[0]
        scale *= target / realised
    return group_indptr, members, owner


def _transpose_membership(group_indptr: np.ndarray, members: np.ndarray, n: int):
    """User -> groups CSR from group -> members CSR: member_indptr (int64[N+1]), groups (int32[M])."""
    group_of = np.repeat(np.arange(group_indptr.shape[0] - 1, dtype=np.int32), np.diff(group_indptr))
    order = np.argsort(members, kind="stable")
    member_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(members, minlength=n), out=member_indptr[1:])
    return member_indptr, group_of[order]


def build_population(config: ScenarioConfig, backend: Backend, progress: Any = None,
                     graph: tuple[np.ndarray, np.ndarray] | None = None) -> Population:
    """Build users, graph and groups on the host, then move them to the backend's device once.

    Args:
        config: the scenario.
        backend: where the arrays live during the run.
        progress: optional callable(str) told about each build step.
        graph: the edge list's CSR (indptr, indices) as :func:`~weishang.model.graph_io.with_edge_list`
            read it, with the config it returned (read here when the config names an edge list and
            this is omitted).
    """
    say = progress or (lambda _msg: None)
    seed = config.run.seed
    pop = config.population
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    if pop.edge_list:
        if graph is None:
            say(f"reading edge list {pop.edge_list}")
            config, graph = with_edge_list(config)
        indptr, indices = graph
        n = indptr.shape[0] - 1
        sizes = city_sizes(n, pop.n_cities, 1.0, pop.region_users)
        city = np.repeat(np.arange(sizes.shape[0], dtype=np.int32), sizes)
        merchant_uids = _choose_merchants(n, config.n_merchants, seed)
    else:
        n = pop.n_users
        merchant_uids = _choose_merchants(n, config.n_merchants, seed)
        sociability = sociability_weights(n, graph_params(config).sociability_sigma, seed)
        sociability[merchant_uids] *= pop.merchant_sociability
        say(f"generating friend graph: {n:,} users, mean degree {pop.mean_degree:g}")
        graph = generate_friend_graph(n, graph_params(config), seed=seed, sociability=sociability)
        indptr, indices, city = graph.indptr, graph.indices, graph.city
    timings["graph"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    say("drawing user attributes and merchant groups")
    state: dict[str, np.ndarray] = {
        f.name: np.full(n, f.default, dtype=f.dtype) for f in USER_STATE
    }
    state["city"][:] = city
    state["interests"][:] = _interests(n, pop.n_categories, seed)
    # log-normal propensity with mean 1; drawn on the host once, so both backends share it
    z = rng.normal(rng.stream_key(seed, "population.rel_buy"), n)
    state["rel_buy"][:] = np.exp(0.5 * z - 0.125)
    # account ages: up to 10 years, exponential-ish (1 - u) ** 2 puts more mass on young accounts
    u = rng.uniform(rng.stream_key(seed, "population.age"), n)
    state["ti_created"][:] = -np.floor(10 * TICKS_PER_YEAR * u * u).astype(np.int32)
    state["profile_complete"][:] = rng.bernoulli(rng.stream_key(seed, "population.profile"), n,
                                                 config.community.profile_completeness)
    group_indptr, group_members, group_owner = _groups(indptr, indices, n, merchant_uids, config, seed)
    member_indptr, member_groups = _transpose_membership(group_indptr, group_members, n)
    timings["attributes"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    dev = backend.to_device
    population = Population(
        n_users=n,
        state={name: dev(array) for name, array in state.items()},
        indptr=dev(indptr),
        indices=dev(indices),
        group_indptr=dev(group_indptr),
        group_members=dev(group_members),
        group_owner=dev(group_owner),
        group_size=dev(np.diff(group_indptr).astype(np.int32)),
        member_indptr=dev(member_indptr),
        member_groups=dev(member_groups),
        merchant_uids=merchant_uids,
        timings=timings,
    )
    timings["to_device"] = time.perf_counter() - t2
    for array in population.arrays():
        if isinstance(array, np.ndarray):  # host arrays are shared by every run on this population
            array.flags.writeable = False
    return population
