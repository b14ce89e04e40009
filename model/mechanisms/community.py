"""Merchant groups as merchants post to them (SPEC section 4): parts, reads and targeted pushes.

A merchant posts to a *part* of one of its groups. Every group starts as one part; a merchant
that splits an oversized group (its adaptation to the platform down-weighting groups over the
threshold, see :meth:`weishang.model.merchant.Merchant.adapt`) divides the member list into
``ceil(size / threshold)`` contiguous parts, each a smaller group of its own. Members stay the
merchant's group members, so the user -> groups index and repurchase accounting do not change;
only the group -> members index is read through finer offsets (:attr:`GroupParts.part_indptr`).

A member sees a group post in one of two ways:

* it reads the group that day: ``1 - (1 - weekly_active) ** (1/7)``;
* it gets the post as a targeted push (enterprise-WeChat linkage): members whose profile is
  complete (``community.profile_completeness``) and who are interested in the category are
  pushed the post and open it with ``community.push_open_rate``.

Both are multiplied by ``platform.group_downweight`` in a part over the threshold. Buyers a
merchant recruited into its group after a purchase (private traffic, see
:mod:`weishang.model.mechanisms.customers`) read its group posts the same way; they do not count towards a part's
size (the down-weighting threshold applies to the members a merchant started with).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import fused, rng
from ...kernels.backend import Backend, concat_ranges
from ...kernels.cascade import expose_neighbours
from ..plan import Mechanism, Sync, TickRecord
from ..schema import Column, T, col, ratio
from ..state import Stateful
from .customers import CustomerLedger


def group_read_probability(group_size: Any, weekly_active: float, threshold: int, downweight: float,
                           *, xp: ModuleType) -> Any:
    """(float64[G]) daily chance a member reads a group post.

    A member active in a given week with probability ``weekly_active`` is active on a given day
    with ``1 - (1 - weekly_active) ** (1/7)``; groups over ``threshold`` members are down-weighted.
    """
    daily = 1.0 - (1.0 - weekly_active) ** (1.0 / 7.0)
    return xp.where(group_size > threshold, daily * downweight, daily)


class GroupParts(Stateful):
    """The parts merchants post to (host bookkeeping, device offsets).

    Attributes:
        n_parts: (int64[G], host) parts of each group: the state; everything else derives from it.
        part_indptr: (int64[P+1], device) offsets of each part in ``population.group_members``.
        part_owner: (int64[P], host) merchant owning each part.
        part_start, part_count: (int64[M], host) a merchant's parts are
            ``part_start[m] .. part_start[m] + part_count[m] - 1``.
        part_size: (int64[P], host) members per part.
        p_read, p_push: (float64[P], device) daily read and push-open probability per part.
    """

    def __init__(self, population: Any, n_merchants: int, config: Any, backend: Backend) -> None:
        host = backend.to_host
        self.backend = backend
        self.config = config
        self.n_merchants = n_merchants
        self.group_indptr = host(population.group_indptr)
        self.group_owner = host(population.group_owner).astype(np.int64)
        self.group_size = np.diff(self.group_indptr)
        self.n_parts = np.ones(self.group_size.shape[0], dtype=np.int64)
        self.rebuild()

    STATE = ("n_parts",)

    def after_restore(self) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute the part offsets and probabilities from ``n_parts``."""
        part_group = np.repeat(np.arange(self.n_parts.shape[0], dtype=np.int64), self.n_parts)
        j = concat_ranges(np.zeros_like(self.n_parts), self.n_parts, xp=np)  # part number within its group
        size, parts = self.group_size[part_group], self.n_parts[part_group]
        starts = self.group_indptr[part_group] + (j * size) // parts
        part_indptr = np.append(starts, self.group_indptr[-1]).astype(np.int64)
        self.part_size = np.diff(part_indptr)
        self.part_owner = self.group_owner[part_group]
        self.part_start = np.searchsorted(self.part_owner, np.arange(self.n_merchants)).astype(np.int64)
        self.part_count = np.bincount(self.part_owner, minlength=self.n_merchants).astype(np.int64)
        community, platform = self.config.community, self.config.platform
        p_read = group_read_probability(self.part_size, community.weekly_active, platform.group_downweight_threshold,
                                        platform.group_downweight, xp=np)
        p_push = np.where(self.part_size > platform.group_downweight_threshold,
                          community.push_open_rate * platform.group_downweight, community.push_open_rate)
        dev = self.backend.to_device
        self.part_indptr, self.p_read, self.p_push = dev(part_indptr), dev(p_read), dev(p_push)

    def oversized(self) -> np.ndarray:
        """(bool[M]) merchants with a part over the down-weighting threshold."""
        over = self.part_size > self.config.platform.group_downweight_threshold
        return np.bincount(self.part_owner[over], minlength=self.n_merchants) > 0

    def split(self, merchants: np.ndarray) -> int:
        """Split every oversized group of the given merchants (bool[M]) into parts of at most the
        threshold; returns how many groups were split."""
        threshold = self.config.platform.group_downweight_threshold
        wanted = -(-self.group_size // threshold)  # ceil
        chosen = merchants[self.group_owner] & (wanted > self.n_parts)
        self.n_parts[chosen] = wanted[chosen]
        if chosen.any():
            self.rebuild()
        return int(chosen.sum())

    def n_oversized_parts(self) -> int:
        return int((self.part_size > self.config.platform.group_downweight_threshold).sum())


def group_exposures(parts: GroupParts, members: Any, part: Any, post: Any, cascade_key: Any, category_bit: Any,
                    profile_complete: Any, interests: Any, seed: int, tick: int, *, xp: ModuleType,
                    reach_weight: Any = None, recruits: tuple[Any, Any] | None = None,
                    merchant: Any = None) -> tuple[Any, Any]:
    """Level-1 viewers of group posts: daily readers, and targeted pushes opened.

    Args:
        parts: the :class:`GroupParts`; members (int32[...]) ``population.group_members``.
        part: (int64[S]) part each group post went to; post (int64[S]) its local cascade index.
        cascade_key: (int64[C]); category_bit (uint16[C]) per cascade.
        profile_complete: (bool[N]); interests (uint16[N]).
        reach_weight: (float64[S]) optional multiplier of both probabilities per post (fatigue,
            analytics targeting), capped at 1.
        recruits: optional merchant -> buyers CSR (int64[M+1], int64[R]) of buyers who joined
            the merchant's group after buying (:meth:`weishang.model.mechanisms.customers.CustomerLedger.recruit_index`);
            they read every group post of the merchant with the probabilities of the part posted
            to. merchant: (int64[S]) the posting merchant, needed with ``recruits``.

    Returns:
        (cascade (int64[X]), user (int64[X])).
    """
    p_read, p_push = parts.p_read[part], parts.p_push[part]
    if reach_weight is not None:  # a weight above 1 (analytics targeting) saturates at certainty
        p_read, p_push = xp.minimum(p_read * reach_weight, 1.0), xp.minimum(p_push * reach_weight, 1.0)
    seen = _read_or_push(parts.part_indptr, members, part, post, p_read, p_push, cascade_key, category_bit,
                         profile_complete, interests, seed, tick, "groups", xp=xp)
    if recruits is None:
        return seen
    recruited = _read_or_push(*recruits, merchant, post, p_read, p_push, cascade_key, category_bit,
                              profile_complete, interests, seed, tick, "recruits", xp=xp)
    return xp.concatenate([seen[0], recruited[0]]), xp.concatenate([seen[1], recruited[1]])


def _read_or_push(indptr: Any, users: Any, rows: Any, post: Any, p_read: Any, p_push: Any, cascade_key: Any,
                  category_bit: Any, profile_complete: Any, interests: Any, seed: int, tick: int, stream: str,
                  *, xp: ModuleType) -> tuple[Any, Any]:
    """Readers of the posts (int64[S]) among the users of CSR rows ``rows`` (int64[S]).

    Each user is drawn once with the larger of the two probabilities (float64[S] per post), then
    kept with the ratio of its own (push-open for a targeted user: complete profile, interested
    in the category; read otherwise) to that larger one, so a user sees a post at most once.
    """
    p_high = xp.maximum(p_read, p_push)
    cascade, user = expose_neighbours(indptr, users, rows, post, cascade_key, p_high,
                                      rng.stream_key(seed, f"traffic.{stream}.read", tick), xp=xp)
    if cascade.shape[0] == 0:
        return cascade, user
    keep = fused.launch(_KEEP_READER, cascade, user, post, p_read, p_push, p_high, profile_complete, interests,
                        category_bit, cascade_key, int(post.shape[0]), int(interests.shape[0]),
                        np.uint64(rng.stream_key(seed, f"traffic.{stream}.push", tick)), xp=xp)
    kept = xp.flatnonzero(keep)
    return cascade[kept], user[kept]


def _keep_reader_reference(cascade: Any, user: Any, post: Any, p_read: Any, p_push: Any, p_high: Any,
                           profile_complete: Any, interests: Any, category_bit: Any, cascade_key: Any,
                           n_posts: int, n_users: int, key: Any) -> Any:
    """(bool[X]) which users drawn with ``p_high`` keep the post: with the ratio of their own
    probability (push-open if targeted: complete profile, interested; read otherwise) to it."""
    # the post's position among the group posts: post is ascending, so search it
    which = np.searchsorted(post, cascade)
    targeted = profile_complete[user] & ((interests[user] & category_bit[cascade]) != 0)
    p_own = np.where(targeted, p_push[which], p_read[which])
    return rng.bernoulli(int(key), cascade_key[cascade] * n_users + user,
                         np.where(p_high[which] > 0, p_own / np.maximum(p_high[which], 1e-300), 0.0))


#: a group post's readers kept in one launch on CuPy (a binary search for the post's row)
_KEEP_READER = fused.register(fused.FusedKernel(
    "weishang_keep_reader",
    "int64 cascade, int64 user, raw int64 post, raw float64 p_read, raw float64 p_push, raw float64 p_high, "
    "raw bool profile_complete, raw uint16 interests, raw uint16 category_bit, raw int64 cascade_key, "
    "int64 n_posts, int64 n_users, uint64 key",
    "bool keep",
    """long long lo = 0, hi = n_posts;  // searchsorted(post, cascade, side="left")
       while (lo < hi) {
           long long mid = lo + (hi - lo) / 2;
           if (post[mid] < cascade) lo = mid + 1; else hi = mid;
       }
       bool targeted = profile_complete[user] && (interests[user] & category_bit[cascade]) != 0;
       double p_own = targeted ? p_push[lo] : p_read[lo];
       double high = p_high[lo];
       double ratio = high > 0 ? p_own / (high > 1e-300 ? high : 1e-300) : 0.0;
       keep = weishang_unit(weishang_draw(cascade_key[cascade] * n_users + user, key)) < ratio;""",
    _keep_reader_reference, rng.DRAW_PREAMBLE))


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Community.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "customers", "int64", "pairs", "last", "(merchant, buyer) pairs with a completed order so far")
    + col(T, "repurchase_rate_members", "float64", "share", "last",
          "share of community members' (merchant, buyer) pairs that bought again; null without any", nullable=True)
    + col(T, "repurchase_rate_others", "float64", "share", "last",
          "the same for customers outside the merchant's community; null without any", nullable=True)
    + col(T, "n_group_parts_oversized", "int64", "groups", "last", "group parts over the down-weighting threshold"))


class Community(Mechanism):
    """Merchants' groups and the (merchant, buyer) ledger: who posts to which group part, who
    joined after buying, and who came back."""

    name = "community"
    engine = "arrays"
    sections = ("community", "platform")
    does = "the (merchant, buyer) ledger: recruits into groups, repurchase, customers behind LTV"
    columns = COLUMNS
    syncs = (Sync("the new pairs' slots in the buyers' group lists", "a size the host must know to allocate "
                  "(CuPy's repeat by counts)"),
             Sync("per-merchant new customers and repeaters, outside and inside groups",
                  "the Mesa agents' LTV and the ticks table's repurchase rates"))
    STATE = ("parts", "ledger")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        pop, community, m = model.population, self.config.community, model.merchants.n
        self.parts = GroupParts(pop, m, self.config, self.backend)
        self.ledger = CustomerLedger(pop.n_users, m, xp=self.xp, p_join=community.p_join_after_purchase,
                                     runs_group=self.backend.to_device(self.parts.part_count > 0),
                                     seed=self.config.run.seed, p_leave=community.recruit_leave_rate)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """The (merchant, buyer) ledger: customers so far, repurchase inside and outside the
        merchants' communities, and group parts over the down-weighting threshold."""
        ledger = self.ledger
        members, others = ledger.pairs[1], ledger.pairs[0]
        return {"customers": int(ledger.pairs.sum()),
                "repurchase_rate_members": ratio(ledger.repeat_pairs[1], members),
                "repurchase_rate_others": ratio(ledger.repeat_pairs[0], others),
                "n_group_parts_oversized": self.parts.n_oversized_parts()}

    def step(self, tick: int, payments: Any, risk: Any) -> None:
        """Record who bought from whom (completed orders: ``payments``' orders that ``risk``
        passed); recruits leave first (see :mod:`weishang.model.mechanisms.customers`)."""
        self.ledger.churn_recruits(tick)
        self.ledger.record(payments.payments.merchant, payments.buyer, self.model.population, self.backend.to_host,
                           completed=risk.legit_passed)
