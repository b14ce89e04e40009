"""Bulk transaction risk scoring: every transaction of a tick scored at once on the device.

A transaction's score is a weighted sum of features computed with exact arithmetic only
(integer counts, IEEE division, multiplication and addition in a fixed order), so the kernel,
the CuPy path and the per-transaction reference (:func:`reference_scores`) agree bit for bit:

==================  ==========================================================================
payer_velocity      the payer's transactions in the trailing window, this tick's included (cap 50)
payer_burst         the payer's transactions this tick (cap 20)
amount_ratio        amount over the payer's historical mean amount (the reference amount when the
                    payer has no history), capped at 50
new_account         1 when the account is younger than ``new_account_ticks``
new_device          1 when paid from a device or place the payer has not used before
scenario            the scenario's weight (cross-border riskier than QR)
merchant_velocity   the merchant's transactions this tick over its mean daily count in the
                    window (at least 1), capped at 50
merchant_flag       1 when the merchant is under governance action or newly onboarded
==================  ==========================================================================

The decision threshold is chosen by the platform from confirmed-legitimate scores of past ticks,
so that at most ``target_fpr`` of legitimate transactions would be intercepted
(:func:`threshold_for_fpr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from . import fused
from .backend import bin_sums, map_chunks, scatter_add

VELOCITY_CAP = 50
BURST_CAP = 20
RATIO_CAP = 50.0


@dataclass(frozen=True)
class RiskWeights:
    """Weights of the score's features (see the module docstring), and its bias."""

    bias: float = 0.0
    payer_velocity: float = 0.05
    payer_burst: float = 0.3
    amount_ratio: float = 0.3
    new_account: float = 4.0
    new_device: float = 3.0
    merchant_velocity: float = 0.02
    merchant_flag: float = 0.8
    scenario: tuple[float, float, float] = (0.0, 0.2, 0.5)


@dataclass
class RiskState:
    """What the scorer remembers between ticks (on the device).

    Attributes:
        payer_window: (int32[W, N]) transactions per payer in each of the last W ticks (a ring).
        payer_amount_sum: (int64[N]) fen paid by each payer so far; payer_count (int64[N]).
        merchant_window: (int32[W, M]) transactions per merchant in each of the last W ticks.
    """

    payer_window: Any
    payer_amount_sum: Any
    payer_count: Any
    merchant_window: Any

    @classmethod
    def empty(cls, n_users: int, n_merchants: int, window: int, *, xp: ModuleType) -> "RiskState":
        return cls(xp.zeros((window, n_users), dtype=xp.int32), xp.zeros(n_users, dtype=xp.int64),
                   xp.zeros(n_users, dtype=xp.int64), xp.zeros((window, n_merchants), dtype=xp.int32))


@dataclass
class TickView:
    """Per-account quantities a tick's scoring gathers from (N- and M-sized, on the device).

    Attributes:
        burst_of: (int64[N]) each payer's transactions this tick.
        past_of: (int64[N]) each payer's transactions in the window before this tick.
        mean_of: (float64[N]) each payer's mean amount so far (the reference amount without history).
        merchant_today: (int64[M]) each merchant's transactions this tick.
        merchant_mean: (float64[M]) each merchant's mean daily count in the window.
    """

    burst_of: Any
    past_of: Any
    mean_of: Any
    merchant_today: Any
    merchant_mean: Any


def tick_view(payer: Any, merchant: Any, state: RiskState, reference_amount: float, *, xp: ModuleType) -> TickView:
    """The :class:`TickView` of one tick's transactions (payer, merchant: int64[T]) on ``state``."""
    n_users, n_merchants = state.payer_count.shape[0], state.merchant_window.shape[1]
    count = state.payer_count
    window_days = state.merchant_window.shape[0]
    return TickView(
        burst_of=bin_sums(payer, n_users, xp=xp),
        past_of=state.payer_window.sum(axis=0, dtype=xp.int64),
        mean_of=fused.launch(_MEAN_AMOUNT, state.payer_amount_sum, count, float(reference_amount), xp=xp),
        merchant_today=bin_sums(merchant, n_merchants, xp=xp),
        merchant_mean=state.merchant_window.sum(axis=0, dtype=xp.int64) / window_days)


def score_transactions(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any,
                       account_age: Any, merchant_flag: Any, state: RiskState, weights: RiskWeights,
                       reference_amount: float, new_account_ticks: int, *, xp: ModuleType,
                       view: TickView | None = None, own_payer: Any = None, own_merchant: Any = None) -> Any:
    """(float64[T]) risk scores of one tick's transactions: one fused kernel
    (:data:`_RULE_SCORES`; its NumPy reference is :func:`_rule_scores`).

    Args:
        payer, merchant: (int64[T]) who pays whom.
        amount: (int64[T]) fen.
        scenario: (int8[T]) 0 QR, 1 mini-program, 2 cross-border.
        new_device: (bool[T]) paid from a new device or place.
        account_age: (int64[T]) payer's account age in ticks.
        merchant_flag: (bool[M]) merchants under governance action or newly onboarded.
        state: history before this tick (not modified here; see :func:`update_state`).
        view: the tick's per-account quantities (:func:`tick_view` of these transactions when
            None). Scoring transactions that are not part of the tick (a probe) against the
            tick's traffic: pass the tick's view, and in ``own_payer`` and ``own_merchant``
            (int64[T]) the payments each transaction's own event adds to its payer's and its
            merchant's counts today.
    """
    if view is None:
        view = tick_view(payer, merchant, state, reference_amount, xp=xp)
    w = weights
    scalars = (*(float(v) for v in (w.bias, w.payer_velocity, w.payer_burst, w.amount_ratio, w.new_account,
                                    w.new_device, *w.scenario, w.merchant_velocity, w.merchant_flag)),
               int(new_account_ticks))
    counts = (view.burst_of, view.past_of, view.mean_of, view.merchant_today, view.merchant_mean, merchant_flag)
    tx = (payer, merchant, amount, scenario, new_device, account_age)
    if own_payer is None:
        return fused.launch(_RULE_SCORES, *tx, *counts, *scalars, xp=xp)
    return fused.launch(_RULE_SCORES_OWN, *tx, own_payer, own_merchant, *counts, *scalars, xp=xp)


def _rule_scores(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
                 own_payer: Any, own_merchant: Any, burst_of: Any, past_of: Any, mean_of: Any, merchant_today: Any,
                 merchant_mean: Any, merchant_flag: Any, bias: float, w_velocity: float, w_burst: float,
                 w_ratio: float, w_new_account: float, w_new_device: float, w_qr: float, w_mini_program: float,
                 w_cross_border: float, w_merchant_velocity: float, w_merchant_flag: float,
                 new_account_ticks: int) -> np.ndarray:
    """The NumPy reference of :data:`_RULE_SCORES` (NumPy arrays, shapes as in
    :func:`score_transactions`; ``own_payer``/``own_merchant`` None without a probe's own
    counts), chunk by chunk on the thread pool."""
    scenario_weight = np.asarray((w_qr, w_mini_program, w_cross_border), dtype=np.float64)
    score = np.empty(payer.shape[0], dtype=np.float64)

    def work(start: int, stop: int) -> None:
        p, m = payer[start:stop], merchant[start:stop]
        burst = burst_of[p]
        today = merchant_today[m]
        if own_payer is not None:
            burst = burst + own_payer[start:stop]
            today = today + own_merchant[start:stop]
        velocity = np.minimum(past_of[p] + burst, VELOCITY_CAP)
        ratio = np.minimum(amount[start:stop] / mean_of[p], RATIO_CAP)
        s = bias + w_velocity * velocity
        s = s + w_burst * np.minimum(burst, BURST_CAP)
        s = s + w_ratio * ratio
        s = s + w_new_account * (account_age[start:stop] < new_account_ticks)
        s = s + w_new_device * new_device[start:stop]
        s = s + scenario_weight[scenario[start:stop].astype(np.int64)]
        merchant_ratio = np.minimum(today / np.maximum(merchant_mean[m], 1.0), RATIO_CAP)
        score[start:stop] = s + (w_merchant_velocity * merchant_ratio + w_merchant_flag * merchant_flag[m])

    map_chunks(payer.shape[0], work, xp=np)
    return score


def _rule_kernel(own: bool) -> fused.FusedKernel:
    """:func:`_rule_scores` as one fused kernel, with (``own``) or without a probe's own counts.
    Every operation in the reference's order; ``x > cap ? cap : x`` is NumPy's ``minimum`` with
    a cap (a NaN ratio stays NaN) and ``x < 1.0 ? 1.0 : x`` its ``maximum``; a scenario outside
    0..2 is the reference's IndexError, here cross-border's weight."""
    tx = "int64 payer, int64 merchant, int64 amount, int8 scenario, bool new_device, int64 account_age"
    own_params = ", int64 own_payer, int64 own_merchant" if own else ""
    counts = ("raw int64 burst_of, raw int64 past_of, raw float64 mean_of, raw int64 merchant_today, "
              "raw float64 merchant_mean, raw bool merchant_flag")
    scalars = ("float64 bias, float64 w_velocity, float64 w_burst, float64 w_ratio, float64 w_new_account, "
               "float64 w_new_device, float64 w_qr, float64 w_mini_program, float64 w_cross_border, "
               "float64 w_merchant_velocity, float64 w_merchant_flag, int64 new_account_ticks")
    add_own = "burst = burst + own_payer; today = today + own_merchant;" if own else ""
    body = f"""
        long long burst = burst_of[payer];
        long long today = merchant_today[merchant];
        {add_own}
        long long velocity = past_of[payer] + burst;
        velocity = velocity > {VELOCITY_CAP} ? {VELOCITY_CAP} : velocity;
        double ratio = (double)amount / mean_of[payer];
        ratio = ratio > {RATIO_CAP!r} ? {RATIO_CAP!r} : ratio;
        double s = bias + w_velocity * (double)velocity;
        s = s + w_burst * (double)(burst > {BURST_CAP} ? {BURST_CAP} : burst);
        s = s + w_ratio * ratio;
        s = s + w_new_account * (account_age < new_account_ticks ? 1.0 : 0.0);
        s = s + w_new_device * (new_device ? 1.0 : 0.0);
        s = s + (scenario == 0 ? w_qr : scenario == 1 ? w_mini_program : w_cross_border);
        const double mean = merchant_mean[merchant];
        double merchant_ratio = (double)today / (mean < 1.0 ? 1.0 : mean);
        merchant_ratio = merchant_ratio > {RATIO_CAP!r} ? {RATIO_CAP!r} : merchant_ratio;
        score = s + (w_merchant_velocity * merchant_ratio + w_merchant_flag * (merchant_flag[merchant] ? 1.0 : 0.0));
    """
    if own:
        reference = _rule_scores
    else:
        def reference(payer, merchant, amount, scenario, new_device, account_age, *rest):
            return _rule_scores(payer, merchant, amount, scenario, new_device, account_age, None, None, *rest)
    return fused.FusedKernel("weishang_rule_scores_own" if own else "weishang_rule_scores",
                             f"{tx}{own_params}, {counts}, {scalars}", "float64 score", body, reference)


#: the linear rule's score of each payment (:func:`score_transactions`), and of a probe's payments
#: with their own event's counts: one launch each on CuPy
_RULE_SCORES = fused.register(_rule_kernel(own=False))
_RULE_SCORES_OWN = fused.register(_rule_kernel(own=True))
#: each payer's mean amount so far (:attr:`TickView.mean_of`)
_MEAN_AMOUNT = fused.register(fused.FusedKernel(
    "weishang_mean_amount", "int64 amount_sum, int64 count, float64 reference_amount", "float64 mean",
    "mean = count > 0 ? (double)amount_sum / (double)(count < 1 ? 1 : count) : reference_amount;",
    lambda amount_sum, count, reference_amount: np.where(count > 0, amount_sum / np.maximum(count, 1),
                                                         reference_amount)))


def update_state(state: RiskState, payer: Any, merchant: Any, amount: Any, tick: int, *, xp: ModuleType) -> None:
    """Add one tick's transactions to the history (in place); slot ``tick % W`` is overwritten."""
    slot = tick % state.payer_window.shape[0]
    burst = bin_sums(payer, state.payer_window.shape[1], xp=xp)
    state.payer_window[slot] = burst  # the assignment casts to the ring's int32
    state.merchant_window[slot] = bin_sums(merchant, state.merchant_window.shape[1], xp=xp)
    scatter_add(state.payer_amount_sum, payer, amount, xp=xp)
    state.payer_count += burst


def threshold_for_fpr(legit_scores: Any, target_fpr: float, *, xp: ModuleType) -> float:
    """Lowest threshold at which at most ``target_fpr`` of ``legit_scores`` (float64[L]) lie
    strictly above it; +inf while there are too few scores to resolve the target."""
    n = legit_scores.shape[0]
    allowed = int(np.floor(target_fpr * n))
    if n == 0 or n * target_fpr < 1.0:
        return float("inf")
    if allowed >= n:  # every score may lie above: no threshold (the rank below would wrap to the largest)
        return float("-inf")
    # the (n - 1 - allowed)-th smallest score: a selection, linear in n, not a sort (the
    # history holds a month of everyday payments)
    k = n - 1 - allowed
    return float(xp.partition(legit_scores, k)[k])


def reference_scores(payer, merchant, amount, scenario, new_device, account_age, merchant_flag,
                     state: RiskState, weights: RiskWeights, reference_amount: float,
                     new_account_ticks: int) -> list[float]:
    """Slow, obviously correct scorer: one transaction at a time with Python numbers."""
    w = weights
    window_days = state.merchant_window.shape[0]
    burst_of: dict[int, int] = {}
    merchant_today: dict[int, int] = {}
    for p, m in zip(payer.tolist(), merchant.tolist()):
        burst_of[p] = burst_of.get(p, 0) + 1
        merchant_today[m] = merchant_today.get(m, 0) + 1
    scores = []
    for i in range(len(payer)):
        p, m = int(payer[i]), int(merchant[i])
        past = int(sum(int(state.payer_window[k, p]) for k in range(state.payer_window.shape[0])))
        velocity = min(past + burst_of[p], VELOCITY_CAP)
        burst = min(burst_of[p], BURST_CAP)
        count = int(state.payer_count[p])
        mean = int(state.payer_amount_sum[p]) / count if count > 0 else reference_amount
        ratio = min(int(amount[i]) / mean, RATIO_CAP)
        m_mean = int(sum(int(state.merchant_window[k, m]) for k in range(window_days))) / window_days
        m_ratio = min(merchant_today[m] / max(m_mean, 1.0), RATIO_CAP)
        score = w.bias + w.payer_velocity * velocity
        score = score + w.payer_burst * burst
        score = score + w.amount_ratio * ratio
        score = score + w.new_account * (1 if int(account_age[i]) < new_account_ticks else 0)
        score = score + w.new_device * (1 if bool(new_device[i]) else 0)
        score = score + w.scenario[int(scenario[i])]
        score = score + (w.merchant_velocity * m_ratio + w.merchant_flag * (1 if bool(merchant_flag[m]) else 0))
        scores.append(score)
    return scores
