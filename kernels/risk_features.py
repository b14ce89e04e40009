"""Features of a risk engine for bulk scoring: velocity, amount, device, and the merchant-buyer
graph and account sequence a payments platform keeps, computed on the device.

Every feature is built from integer counts (bincounts over a tick's transactions, distinct
payer-merchant pairs found by sorting integer keys, per-account windows of past ticks) followed
by IEEE division, multiplication, addition, ``minimum`` and ``maximum`` in a fixed order: no
transcendental function and no float reduction, so NumPy, CuPy and the per-transaction
reference (:func:`reference_features`) agree bit for bit.

For a transaction of payer ``p`` to merchant ``m`` on tick ``t`` (``micro`` merchants are the
modelled ones; the one slot past them, everyday shops, has no graph features):

=======================  ====================================================================
payer_velocity           p's payments in the window, today's included (cap 50)
payer_burst              p's payments today (cap 20)
amount_ratio             amount over p's mean amount so far (the reference amount without
                         history), cap 50
new_account              1 when the account is younger than ``new_account_ticks``
new_device               1 when paid from a device or place new to p
mini_program             1 for a mini-program payment
cross_border             1 for a cross-border payment
merchant_velocity        m's payments today over its mean daily count in the window (at least
                         1), cap 50
merchant_flag            1 when m is under governance action or newly onboarded
amount_vs_reference      amount over the reference amount (the median price), cap 300
payer_fan_out            graph: distinct micro merchants p paid, summed over the window's days
                         and today (cap 50)
merchant_fan_in          graph: distinct payers of m today over its mean daily distinct payers
                         in the window (at least 1), cap 50
merchant_new_payers      graph: share of m's payments today from new accounts
merchant_shared_buyers   graph: mean over m's distinct payers today of the number of micro
                         merchants each paid today (buyers shared between merchants: brushing
                         rings' sockpuppets pay several of the ring's shops)
new_account_fan_out      graph: new_account x distinct micro merchants p paid today (cap 50)
signal_recency           sequence: 7 minus the days since p's last takeover signal (a login
                         from a new device, a password reset), 0 when a week or more or never
device_changes           sequence: p's payments from a new device in the window, today's
                         included (cap 20)
=======================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .backend import map_chunks, sorted_unique
from .risk import BURST_CAP, RATIO_CAP, VELOCITY_CAP, RiskState, TickView

FEATURES = ("payer_velocity", "payer_burst", "amount_ratio", "new_account", "new_device", "mini_program",
            "cross_border", "merchant_velocity", "merchant_flag", "amount_vs_reference", "payer_fan_out",
            "merchant_fan_in", "merchant_new_payers", "merchant_shared_buyers", "new_account_fan_out",
            "signal_recency", "device_changes")
N_FEATURES = len(FEATURES)
FAN_CAP = 50
REFERENCE_CAP = 300.0
DEVICE_CAP = 20
#: a takeover signal counts for this many days (``signal_recency`` = RECENCY_DAYS - days since)
RECENCY_DAYS = 7
#: ``last_signal`` of an account that never had one
NO_SIGNAL = -(2**30)


@dataclass
class GraphState:
    """The graph and sequence history the features need beyond :class:`RiskState` (on the
    device; W = the velocity window).

    Attributes:
        payer_fan_out: (int16[W, N]) distinct micro merchants each payer paid on each of the
            last W days (a ring, slot ``tick % W``).
        merchant_fan_in: (int32[W, M]) distinct payers of each merchant on each of those days.
        payer_devices: (int8[W, N]) each payer's payments from a new device on each of those days.
        last_signal: (int32[N]) the last day of a takeover signal per payer (``NO_SIGNAL``).
    """

    payer_fan_out: Any
    merchant_fan_in: Any
    payer_devices: Any
    last_signal: Any

    @classmethod
    def empty(cls, n_users: int, n_merchants: int, window: int, *, xp: ModuleType) -> "GraphState":
        return cls(xp.zeros((window, n_users), dtype=xp.int16), xp.zeros((window, n_merchants), dtype=xp.int32),
                   xp.zeros((window, n_users), dtype=xp.int8), xp.full(n_users, NO_SIGNAL, dtype=xp.int32))


@dataclass
class TickGraph:
    """One tick's per-account counts (on the device): what the tick's own payments add.

    Attributes:
        burst: (int64[N]) each payer's payments; devices (int64[N]) those from a new device.
        fan_out: (int64[N]) distinct micro merchants each payer paid.
        today: (int64[M]) each merchant's payments; new_payers (int64[M]) those from new accounts.
        fan_in: (int64[M]) distinct payers of each merchant (micro merchants only).
        shared: (float64[M]) sum of ``fan_out`` over each merchant's distinct payers (integers).
        signal: (int64[N]) the day of the latest takeover signal the tick brings per payer,
            ``NO_SIGNAL`` when none.
    """

    burst: Any
    devices: Any
    fan_out: Any
    today: Any
    new_payers: Any
    fan_in: Any
    shared: Any
    signal: Any


def tick_graph(payer: Any, merchant: Any, new_account: Any, new_device: Any, n_users: int, n_merchants: int,
               n_micro: int, *, xp: ModuleType, signal_payer: Any = None, signal_day: Any = None,
               burst: Any = None, today: Any = None) -> TickGraph:
    """The :class:`TickGraph` of payments (payer, merchant: int64[T]; new_account, new_device:
    bool[T]) among ``n_users`` payers and ``n_merchants`` merchant slots, of which the first
    ``n_micro`` are micro-commerce merchants. ``signal_payer`` (int64[S], distinct) and
    ``signal_day`` (int64[S]): takeover signals the tick brings beyond its new-device payments.
    ``burst`` (int64[N]) and ``today`` (int64[M]): the payments per payer and per merchant when
    the caller has counted them already (the linear rule's :class:`~weishang.kernels.risk.TickView`)."""
    micro = merchant < n_micro
    # distinct (payer, merchant) pairs among micro payments: a sort of integer keys
    pairs = sorted_unique((payer * n_merchants + merchant)[micro], xp=xp)
    pair_payer, pair_merchant = pairs // n_merchants, pairs % n_merchants
    fan_out = xp.bincount(pair_payer, minlength=n_users)
    devices = xp.bincount(payer[new_device], minlength=n_users)
    signal = xp.full(n_users, NO_SIGNAL, dtype=xp.int64)
    if signal_payer is not None and signal_payer.shape[0]:
        signal[signal_payer] = signal_day
    return TickGraph(
        burst=xp.bincount(payer, minlength=n_users) if burst is None else burst, devices=devices, fan_out=fan_out,
        today=xp.bincount(merchant, minlength=n_merchants) if today is None else today,
        new_payers=xp.bincount(merchant[micro & new_account], minlength=n_merchants),
        fan_in=xp.bincount(pair_merchant, minlength=n_merchants),
        shared=xp.bincount(pair_merchant, weights=fan_out[pair_payer].astype(xp.float64), minlength=n_merchants),
        signal=signal)


@dataclass
class AccountView:
    """Per-account quantities of one tick, summed over the window once (N- and M-sized, on the
    device), so that a payment's features gather each once.

    Attributes:
        payments: (int64[N]) each payer's payments in the window, today's included.
        burst: (int64[N]) today's; mean_amount (float64[N]) its mean amount so far (the
            reference amount without history).
        fan_out_total: (int64[N]) distinct micro merchants paid, summed over the window's days and
            today; fan_out (int64[N]) today's.
        devices_total: (int64[N]) payments from a new device in the window, today's included.
        last_signal: (int64[N]) the day of the latest takeover signal, today's included.
        today, fan_in, new_payers: (int64[M]) each merchant's payments, distinct payers and
            payments from new accounts today; shared (float64[M]) see :class:`TickGraph`.
        merchant_mean, fan_in_mean: (float64[M]) its mean daily payments and distinct payers in
            the window.
    """

    payments: Any
    burst: Any
    mean_amount: Any
    fan_out_total: Any
    fan_out: Any
    devices_total: Any
    last_signal: Any
    today: Any
    fan_in: Any
    new_payers: Any
    shared: Any
    merchant_mean: Any
    fan_in_mean: Any


#: AccountView fields a probe's own event adds to, and the TickGraph count it adds
OWN_PAYER = {"payments": "burst", "burst": "burst", "fan_out_total": "fan_out", "fan_out": "fan_out",
             "devices_total": "devices"}
OWN_MERCHANT = {"today": "today", "fan_in": "fan_in", "new_payers": "new_payers", "shared": "shared"}


def account_view(tick: TickGraph, rule: TickView, graph: GraphState, *, xp: ModuleType) -> AccountView:
    """The :class:`AccountView` of a tick's counts on the history before it: the velocity window,
    mean amounts and merchants' means come from the linear rule's :class:`TickView` of the same
    payments (summed once a tick for both scorers), the graph windows from ``graph``."""
    window = graph.merchant_fan_in.shape[0]
    return AccountView(
        payments=rule.past_of + tick.burst, burst=tick.burst, mean_amount=rule.mean_of,
        fan_out_total=graph.payer_fan_out.sum(axis=0, dtype=xp.int64) + tick.fan_out, fan_out=tick.fan_out,
        devices_total=graph.payer_devices.sum(axis=0, dtype=xp.int64) + tick.devices,
        last_signal=xp.maximum(graph.last_signal.astype(xp.int64), tick.signal),
        today=tick.today, fan_in=tick.fan_in, new_payers=tick.new_payers, shared=tick.shared,
        merchant_mean=rule.merchant_mean, fan_in_mean=graph.merchant_fan_in.sum(axis=0, dtype=xp.int64) / window)


def gather(view: AccountView, payer: Any, merchant: Any, *, xp: ModuleType,
           own: tuple[TickGraph, Any, Any] | None = None) -> AccountView:
    """The view's values at each payment's payer and merchant (arrays of [T]). ``own``: a
    probe's event counts (a :class:`TickGraph` over compact ids, and each payment's compact payer
    and merchant id), added to the tick's, which the probe's payments are not part of."""
    values = {name: getattr(view, name)[payer] for name in ("payments", "burst", "mean_amount", "fan_out_total",
                                                             "fan_out", "devices_total", "last_signal")}
    values.update({name: getattr(view, name)[merchant] for name in ("today", "fan_in", "new_payers", "shared",
                                                                     "merchant_mean", "fan_in_mean")})
    if own is not None:
        own_tick, own_payer, own_merchant = own
        for name, count in OWN_PAYER.items():
            values[name] = values[name] + getattr(own_tick, count)[own_payer]
        for name, count in OWN_MERCHANT.items():
            values[name] = values[name] + getattr(own_tick, count)[own_merchant]
        values["last_signal"] = xp.maximum(values["last_signal"], own_tick.signal[own_payer])
    return AccountView(**values)


def feature_columns(g: AccountView, amount: Any, scenario: Any, new_device: Any, new_account: Any, flag: Any,
                    reference_amount: float, day: int, *, xp: ModuleType) -> Iterator[Any]:
    """The feature columns in :data:`FEATURES` order (float64, int64 or bool [T], each computed
    when asked for), from the gathered view (:func:`gather`) and each payment's amount (int64
    fen), scenario (int8), new_device, new_account and merchant flag (bool[T])."""
    yield xp.minimum(g.payments, VELOCITY_CAP)
    yield xp.minimum(g.burst, BURST_CAP)
    yield xp.minimum(amount / g.mean_amount, RATIO_CAP)
    yield new_account
    yield new_device
    yield scenario == 1
    yield scenario == 2
    yield xp.minimum(g.today / xp.maximum(g.merchant_mean, 1.0), RATIO_CAP)
    yield flag
    yield xp.minimum(amount / reference_amount, REFERENCE_CAP)
    yield xp.minimum(g.fan_out_total, FAN_CAP)
    yield xp.minimum(g.fan_in / xp.maximum(g.fan_in_mean, 1.0), RATIO_CAP)
    yield g.new_payers / xp.maximum(g.today, 1)
    yield g.shared / xp.maximum(g.fan_in, 1)
    yield new_account * xp.minimum(g.fan_out, FAN_CAP)
    yield xp.maximum(RECENCY_DAYS - (day - g.last_signal), 0)
    yield xp.minimum(g.devices_total, DEVICE_CAP)


def _columns(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
             merchant_flag: Any, view: AccountView, reference_amount: float, new_account_ticks: int, day: int,
             xp: ModuleType, rows: Any, own: tuple[TickGraph, Any, Any] | None) -> Iterator[Any]:
    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    m = take(merchant)
    g = gather(view, take(payer), m, xp=xp, own=None if own is None else (own[0], take(own[1]), take(own[2])))
    return feature_columns(g, take(amount), take(scenario), take(new_device), take(account_age) < new_account_ticks,
                           merchant_flag[m], reference_amount, day, xp=xp)


def features(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
             merchant_flag: Any, view: AccountView, reference_amount: float, new_account_ticks: int, day: int, *,
             xp: ModuleType, rows: Any = None, own: tuple[TickGraph, Any, Any] | None = None) -> Any:
    """(float64[S, N_FEATURES]) feature rows of payments ``rows`` (int64[S] or a slice; all T
    when None) of a tick's payments (payer, merchant, amount, scenario, new_device, account_age:
    [T]; merchant_flag: bool[M]), against the tick's :class:`AccountView`. Feature-major
    underneath (``out.T`` is C-contiguous), so each feature is one contiguous column."""
    columns = _columns(payer, merchant, amount, scenario, new_device, account_age, merchant_flag, view,
                       reference_amount, new_account_ticks, day, xp, rows, own)
    first = next(columns)
    out = xp.empty((N_FEATURES, first.shape[0]), dtype=xp.float64).T
    out[:, 0] = first
    for k, column in enumerate(columns, start=1):
        out[:, k] = column
    return out


#: the score is summed in three parts, each in feature order: the payer's features, the
#: merchant's, then the payment's own (see :func:`linear_scores`); the first two are the same for
#: all of a payer's (a merchant's) payments, so bulk scoring computes them once per account
PAYER_FEATURES = tuple(FEATURES.index(f) for f in ("payer_velocity", "payer_burst", "payer_fan_out",
                                                  "signal_recency", "device_changes"))
MERCHANT_FEATURES = tuple(FEATURES.index(f) for f in ("merchant_velocity", "merchant_flag", "merchant_fan_in",
                                                     "merchant_new_payers", "merchant_shared_buyers"))
PAYMENT_FEATURES = tuple(k for k in range(N_FEATURES) if k not in PAYER_FEATURES + MERCHANT_FEATURES)


def _weighted(terms: Iterator[tuple[float, Any]]) -> Any:
    """``c0 * x0 + c1 * x1 + ...``, added left to right."""
    total = None
    for c, x in terms:
        term = float(c) * x
        total = term if total is None else total + term
    return total


def linear_scores(rows_of: Any, n: int, coef: np.ndarray, bias: float, *, xp: ModuleType) -> Any:
    """(float64[n]) the score of the feature rows that ``rows_of(start, stop)`` returns
    (float64[stop - start, N_FEATURES]), chunk by chunk: ``bias + payer part + merchant part``,
    then each payment feature's term, each part summed in feature order (:data:`PAYER_FEATURES`,
    :data:`MERCHANT_FEATURES`, :data:`PAYMENT_FEATURES`). A fixed order, not a matrix product,
    whose sums each BLAS orders its own way."""
    out = xp.empty(n, dtype=xp.float64)

    def work(start: int, stop: int) -> None:
        x = rows_of(start, stop)
        s = xp.full(stop - start, float(bias), dtype=xp.float64)
        s = s + _weighted((coef[k], x[:, k]) for k in PAYER_FEATURES)
        s = s + _weighted((coef[k], x[:, k]) for k in MERCHANT_FEATURES)
        for k in PAYMENT_FEATURES:
            s = s + float(coef[k]) * x[:, k]
        out[start:stop] = s

    map_chunks(n, work, xp=xp)
    return out


def feature_scores(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
                   merchant_flag: Any, view: AccountView, reference_amount: float, new_account_ticks: int, day: int,
                   coef: np.ndarray, bias: float, *, xp: ModuleType) -> Any:
    """(float64[T]) every payment's score, the tick's bulk scoring: the payer part once per
    payer (float64[N]) and the merchant part once per merchant (float64[M]), gathered, then the
    payment's own terms, chunk by chunk, without keeping feature rows. Equal bit for bit to
    :func:`linear_scores` of :func:`features` (the same operations on the same values in the same
    order; tested)."""
    f64 = xp.float64
    n = int(payer.shape[0])
    out = xp.empty(n, dtype=f64)
    k = {name: FEATURES.index(name) for name in FEATURES}
    # a row holds float64 features, so each part multiplies its columns as float64
    payer_columns = {k["payer_velocity"]: xp.minimum(view.payments, VELOCITY_CAP),
                     k["payer_burst"]: xp.minimum(view.burst, BURST_CAP),
                     k["payer_fan_out"]: xp.minimum(view.fan_out_total, FAN_CAP),
                     k["signal_recency"]: xp.maximum(RECENCY_DAYS - (day - view.last_signal), 0),
                     k["device_changes"]: xp.minimum(view.devices_total, DEVICE_CAP)}
    payer_part = _weighted((coef[i], payer_columns[i].astype(f64)) for i in PAYER_FEATURES)
    merchant_columns = {
        k["merchant_velocity"]: xp.minimum(view.today / xp.maximum(view.merchant_mean, 1.0), RATIO_CAP),
        k["merchant_flag"]: merchant_flag.astype(f64),
        k["merchant_fan_in"]: xp.minimum(view.fan_in / xp.maximum(view.fan_in_mean, 1.0), RATIO_CAP),
        k["merchant_new_payers"]: view.new_payers / xp.maximum(view.today, 1),
        k["merchant_shared_buyers"]: view.shared / xp.maximum(view.fan_in, 1)}
    merchant_part = _weighted((coef[i], merchant_columns[i]) for i in MERCHANT_FEATURES)
    fan_out_today = xp.minimum(view.fan_out, FAN_CAP).astype(xp.int8)  # a small gather
    c = [float(v) for v in coef]

    def work(start: int, stop: int) -> None:
        p, m, a = payer[start:stop], merchant[start:stop], amount[start:stop]
        new_account = account_age[start:stop] < new_account_ticks
        sc = scenario[start:stop]
        s = xp.full(stop - start, float(bias), dtype=f64)
        s = s + payer_part[p]
        s = s + merchant_part[m]
        # the payment's own terms, in PAYMENT_FEATURES order
        s = s + c[k["amount_ratio"]] * xp.minimum(a / view.mean_amount[p], RATIO_CAP)
        s = s + c[k["new_account"]] * new_account.astype(f64)
        s = s + c[k["new_device"]] * new_device[start:stop].astype(f64)
        s = s + c[k["mini_program"]] * (sc == 1).astype(f64)
        s = s + c[k["cross_border"]] * (sc == 2).astype(f64)
        s = s + c[k["amount_vs_reference"]] * xp.minimum(a / reference_amount, REFERENCE_CAP)
        s = s + c[k["new_account_fan_out"]] * (new_account * fan_out_today[p]).astype(f64)
        out[start:stop] = s

    map_chunks(n, work, xp=xp)
    return out


def update_graph(graph: GraphState, tick: TickGraph, day: int, *, xp: ModuleType) -> None:
    """Add one tick's counts to the history (in place); slot ``day % W`` is overwritten."""
    slot = day % graph.payer_fan_out.shape[0]
    graph.payer_fan_out[slot] = xp.minimum(tick.fan_out, 2**15 - 1).astype(xp.int16)
    graph.merchant_fan_in[slot] = tick.fan_in.astype(xp.int32)
    graph.payer_devices[slot] = xp.minimum(tick.devices, 127).astype(xp.int8)
    signal = xp.maximum(tick.signal, xp.where(tick.devices > 0, day, NO_SIGNAL))
    graph.last_signal[...] = xp.maximum(graph.last_signal, signal).astype(xp.int32)


def reference_features(payer, merchant, amount, scenario, new_device, account_age, merchant_flag, state: RiskState,
                       graph: GraphState, reference_amount: float, new_account_ticks: int, n_micro: int, day: int,
                       signals: dict[int, int] | None = None) -> list[list[float]]:
    """Slow, obviously correct features: one transaction at a time with Python numbers and sets
    (host arrays; ``signals``: payer -> day of a takeover signal the tick brings)."""
    signals = signals or {}
    window = state.payer_window.shape[0]
    merchants_of: dict[int, set[int]] = {}
    payers_of: dict[int, set[int]] = {}
    burst: dict[int, int] = {}
    devices: dict[int, int] = {}
    today: dict[int, int] = {}
    new_payers: dict[int, int] = {}
    for p, m, d, age in zip(payer.tolist(), merchant.tolist(), new_device.tolist(), account_age.tolist()):
        burst[p] = burst.get(p, 0) + 1
        devices[p] = devices.get(p, 0) + (1 if d else 0)
        today[m] = today.get(m, 0) + 1
        if m < n_micro:
            merchants_of.setdefault(p, set()).add(m)
            payers_of.setdefault(m, set()).add(p)
            new_payers[m] = new_payers.get(m, 0) + (1 if age < new_account_ticks else 0)
    rows = []
    for i in range(len(payer)):
        p, m, a = int(payer[i]), int(merchant[i]), int(amount[i])
        new = int(account_age[i]) < new_account_ticks
        count = int(state.payer_count[p])
        mean = int(state.payer_amount_sum[p]) / count if count > 0 else reference_amount
        past = sum(int(state.payer_window[k, p]) for k in range(window))
        m_mean = sum(int(state.merchant_window[k, m]) for k in range(window)) / window
        fan_out = len(merchants_of.get(p, ()))
        fan_in = len(payers_of.get(m, ()))
        fan_in_mean = sum(int(graph.merchant_fan_in[k, m]) for k in range(window)) / window
        shared = float(sum(len(merchants_of[q]) for q in payers_of.get(m, ())))
        last = max(int(graph.last_signal[p]), signals.get(p, NO_SIGNAL))
        rows.append([
            min(past + burst[p], VELOCITY_CAP), min(burst[p], BURST_CAP), min(a / mean, RATIO_CAP),
            1.0 if new else 0.0, 1.0 if bool(new_device[i]) else 0.0,
            1.0 if int(scenario[i]) == 1 else 0.0, 1.0 if int(scenario[i]) == 2 else 0.0,
            min(today[m] / max(m_mean, 1.0), RATIO_CAP), 1.0 if bool(merchant_flag[m]) else 0.0,
            min(a / reference_amount, REFERENCE_CAP),
            min(sum(int(graph.payer_fan_out[k, p]) for k in range(window)) + fan_out, FAN_CAP),
            min(fan_in / max(fan_in_mean, 1.0), RATIO_CAP),
            new_payers.get(m, 0) / max(today[m], 1),
            shared / max(fan_in, 1),
            (1.0 if new else 0.0) * min(fan_out, FAN_CAP),
            max(RECENCY_DAYS - (day - last), 0),
            min(sum(int(graph.payer_devices[k, p]) for k in range(window)) + devices[p], DEVICE_CAP)])
    return [[float(v) for v in row] for row in rows]

