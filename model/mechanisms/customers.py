"""Who bought from whom: the (merchant, buyer) ledger behind repurchase and LTV.

A customer of a merchant is a user who bought from it at least once during the run; a repeat
customer bought from it on at least two occasions. The ledger keeps one sorted entry per
(merchant, buyer) pair on the device, with whether the pair has repeated and whether the buyer
is a member of the merchant's community after the first purchase.

Private traffic (SPEC section 4): a merchant that runs a group invites each new buyer into it,
and the buyer joins with ``community.p_join_after_purchase`` (one draw per pair, keyed by the
pair). Joined buyers, the *recruits*, read the merchant's group posts like the members it
started with (:meth:`CustomerLedger.recruit_index`, used by
:func:`weishang.model.mechanisms.community.group_exposures`), until they leave the group again
(``community.recruit_leave_rate`` a day, :meth:`CustomerLedger.churn_recruits`), so a
merchant's private audience settles where recruiting and leaving balance instead of growing
for ever. The ledger's flag says whether the customer was in the merchant's community after
its first purchase, and does not change when a recruit leaves.

SPEC section 4's "group members repurchase 4.2x as often as ordinary buyers" is read here as:
the share of a merchant's customers who come back, for customers in its community (members
before the first purchase, or recruited by it) over customers outside it, pooled over merchants
(:meth:`CustomerLedger.repurchase_ratio`). Joining is drawn independently of anything the buyer
does later, so the ratio measures what the group posts do, not who would have come back anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import rng
from ...kernels.backend import bin_sums, merge_sorted, repeat_ids_and_firsts
from ...kernels.cascade import row_spans
from ..state import Stateful


def is_group_member(merchant: Any, buyer: Any, member_indptr: Any, member_groups: Any, group_owner: Any,
                    *, xp: ModuleType) -> Any:
    """(bool[P]) whether each buyer belongs to one of the merchant's groups.

    Args:
        merchant, buyer: (int64[P]) pairs.
        member_indptr: (int64[N+1]) user -> groups CSR; member_groups (int32[...]); group_owner (int32[G]).
    """
    start, length = row_spans(member_indptr, buyer, xp=xp)
    pair, first = repeat_ids_and_firsts(length, xp=xp)  # the pair each slot belongs to
    # slot j of a pair's run is the j-th of its buyer's group list (concat_ranges, sharing the pairs)
    slots = (start - first)[pair] + xp.arange(pair.shape[0], dtype=xp.int64)
    owned = group_owner[member_groups[slots]].astype(xp.int64) == merchant[pair]
    return bin_sums(pair, buyer.shape[0], owned, xp=xp) > 0


@dataclass
class SortedPairs:
    """A sorted run of pair keys with two flags per pair (device arrays of length P)."""

    keys: Any
    repeat: Any
    member: Any

    @classmethod
    def empty(cls, xp: ModuleType) -> "SortedPairs":
        return cls(xp.zeros(0, dtype=xp.int64), xp.zeros(0, dtype=xp.bool_), xp.zeros(0, dtype=xp.bool_))

    @property
    def size(self) -> int:
        return int(self.keys.shape[0])

    def find(self, keys: Any, *, xp: ModuleType) -> tuple[Any, Any]:
        """(found (bool[K]), position (int64[K])) of sorted, distinct ``keys`` in this run."""
        if self.size == 0:
            return xp.zeros(keys.shape[0], dtype=xp.bool_), xp.zeros(keys.shape[0], dtype=xp.int64)
        pos = xp.minimum(xp.searchsorted(self.keys, keys), self.size - 1)
        return self.keys[pos] == keys, pos

    def merged_with(self, other: "SortedPairs", *, xp: ModuleType) -> "SortedPairs":
        """This run and ``other`` (no key in both) as one sorted run; linear in the sizes.

        ``other``'s places are found once and serve all three arrays. This run's entries fill the
        rest through a boolean mask (one size synchronisation each on CuPy): a gather by a running
        count, which needs none, costs five times as much on NumPy when ``other`` is small."""
        if other.size == 0:
            return self
        if self.size == 0:
            return other
        n = self.size + other.size
        slot = xp.searchsorted(self.keys, other.keys, side="right") + xp.arange(other.size, dtype=xp.int64)
        mine = xp.ones(n, dtype=xp.bool_)
        mine[slot] = False
        merged = []
        for ours, theirs in ((self.keys, other.keys), (self.repeat, other.repeat), (self.member, other.member)):
            out = xp.empty(n, dtype=ours.dtype)
            out[slot], out[mine] = theirs, ours
            merged.append(out)
        return SortedPairs(*merged)


class CustomerLedger(Stateful):
    """Every (merchant, buyer) pair so far, and per-merchant customer counts.

    Pairs are kept in two sorted runs, a large one and a small recent one (a two-level
    log-structured merge): a tick's new pairs are merged into the small run, and the small run
    into the large one only once it holds a quarter as many pairs, so a tick costs work in
    proportion to the recent pairs, not to every pair of the run.

    Attributes:
        runs: [large, small] :class:`SortedPairs`; keys are ``merchant * N + buyer``.
        recruits: (int64[R], device) sorted keys of the buyers who joined the merchant's group
            after buying (members before the first purchase are not repeated here).
        customers, repeaters: (int64[M], host) per merchant.
        pairs, repeat_pairs: (int64[2], host) pooled counts for [outside groups, group members].
    """

    #: the small run is merged into the large one past max(this, a quarter of the large run)
    MIN_MERGE = 1 << 20
    STATE = ("runs", "recruits", "customers", "repeaters", "pairs", "repeat_pairs")

    def __init__(self, n_users: int, n_merchants: int, *, xp: ModuleType, p_join: float = 0.0,
                 runs_group: Any = None, seed: int = 0, p_leave: float = 0.0) -> None:
        """``runs_group`` (bool[M], device): merchants with a group to invite buyers into (none
        when omitted); ``p_join``: a new buyer of such a merchant joins its group; ``p_leave``: a
        recruit leaves the group again, a day."""
        self.n_users = n_users
        self.n_merchants = n_merchants
        self.xp = xp
        self.p_join = p_join
        self.runs_group = xp.zeros(n_merchants, dtype=xp.bool_) if runs_group is None else runs_group
        # each merchant's first key, merchant * N: where its recruits start among the sorted keys
        self.merchant_bounds = xp.arange(n_merchants + 1, dtype=xp.int64) * n_users
        self.join_key = rng.stream_key(seed, "community.join")
        self.seed, self.p_leave = seed, p_leave
        self.runs = [SortedPairs.empty(xp), SortedPairs.empty(xp)]
        self.recruits = xp.zeros(0, dtype=xp.int64)
        self.customers = np.zeros(n_merchants, dtype=np.int64)
        self.repeaters = np.zeros(n_merchants, dtype=np.int64)
        self.pairs = np.zeros(2, dtype=np.int64)
        self.repeat_pairs = np.zeros(2, dtype=np.int64)

    def record(self, merchant: Any, buyer: Any, population: Any, to_host: Any, completed: Any = None) -> None:
        """Add one tick's orders (int64[O] merchant and buyer on the device); ``completed``
        (bool[O]): only those orders (all when omitted).

        Two orders of the same pair in one tick (from two posts) are two occasions.
        """
        xp, n, m = self.xp, self.n_users, self.n_merchants
        pairs = merchant * n + buyer
        if completed is not None:
            pairs = pairs[completed]
        if pairs.shape[0] == 0:
            return
        ordered = xp.sort(pairs)
        first = xp.ones(ordered.shape[0], dtype=xp.bool_)
        first[1:] = ordered[1:] != ordered[:-1]
        starts = xp.flatnonzero(first)
        keys = ordered[starts]
        times = xp.diff(starts, append=ordered.shape[0])
        # pairs seen before (in one run at most), and those of them that repeat for the first time
        known = xp.zeros(keys.shape[0], dtype=xp.bool_)
        turning, turning_member = xp.zeros_like(known), xp.zeros_like(known)
        for run in self.runs:
            if run.size == 0:
                continue
            found, pos = run.find(keys, xp=xp)
            turns = found & ~run.repeat[pos]
            run.repeat[pos[turns]] = True
            known |= found
            turning |= turns
            turning_member |= turns & run.member[pos]
        new = xp.flatnonzero(~known)
        new_keys, new_repeat = keys[new], times[new] >= 2
        new_merchant, new_buyer = new_keys // n, new_keys % n
        new_member = is_group_member(new_merchant, new_buyer, population.member_indptr, population.member_groups,
                                     population.group_owner, xp=xp)
        invited = ~new_member & self.runs_group[new_merchant]
        joined = invited & rng.bernoulli(self.join_key, new_keys, self.p_join, xp=xp)
        self.recruits = merge_sorted(self.recruits, new_keys[joined], xp=xp)  # a subset of sorted keys is sorted
        new_member = new_member | joined
        # the counts, in one pass: new pairs add a customer, new pairs that repeat already and
        # turning pairs a repeater; bins [customers, repeaters] x [outside, member] x merchant,
        # and 4M for the pairs that add nothing
        customer_bin = new_member.astype(xp.int64) * m + new_merchant
        turning_bin = (2 + turning_member.astype(xp.int64)) * m + keys // n
        bins = xp.concatenate([customer_bin, xp.where(new_repeat, customer_bin + 2 * m, 4 * m),
                               xp.where(turning, turning_bin, 4 * m)])
        counts = to_host(bin_sums(bins, 4 * m + 1, xp=xp)[:4 * m]).reshape(2, 2, m)
        self.customers += counts[0].sum(axis=0)
        self.repeaters += counts[1].sum(axis=0)
        self.pairs += counts[0].sum(axis=1)
        self.repeat_pairs += counts[1].sum(axis=1)
        large, small = self.runs
        small = small.merged_with(SortedPairs(new_keys, new_repeat, new_member), xp=xp)
        if small.size > max(self.MIN_MERGE, large.size // 4):
            large, small = large.merged_with(small, xp=xp), SortedPairs.empty(xp)
        self.runs = [large, small]

    def churn_recruits(self, tick: int) -> None:
        """Recruits leave their groups, each with ``p_leave`` this tick (a draw keyed by the pair
        and the tick)."""
        if self.p_leave <= 0.0 or self.recruits.shape[0] == 0:
            return
        leave = rng.bernoulli(rng.stream_key(self.seed, "community.leave", tick), self.recruits, self.p_leave,
                              xp=self.xp)
        self.recruits = self.recruits[~leave]  # a subset of sorted keys stays sorted

    def recruit_index(self) -> tuple[Any, Any]:
        """The recruits as a merchant -> buyers CSR: (indptr (int64[M+1]), buyer (int64[R]))."""
        return self.xp.searchsorted(self.recruits, self.merchant_bounds).astype(self.xp.int64, copy=False), \
            self.recruits % self.n_users

    def repurchase_rate(self) -> tuple[float, float]:
        """(outside groups, group members): the share of customers who bought again."""
        rates = self.repeat_pairs / np.maximum(self.pairs, 1)
        return float(rates[0]), float(rates[1])

    def repurchase_ratio(self) -> float:
        """Group members' repurchase rate over other customers' (SPEC target 4.2)."""
        outside, members = self.repurchase_rate()
        return members / outside if outside > 0 else 0.0
