"""Features of a risk engine for bulk scoring: velocity, amount, device, and the merchant-buyer
graph and account sequence a payments platform keeps, computed on the device.

Every feature is built from integer counts (bincounts over a tick's transactions, distinct
payer-merchant pairs found by sorting integer keys, per-account windows of past ticks) followed
by IEEE division, multiplication, addition, ``minimum`` and ``maximum`` in a fixed order: no
transcendental function and no float reduction, so NumPy, CuPy and the per-transaction
reference (:func:`reference_features`) agree bit for bit. On CuPy the features of a payment,
its learned score, the score of kept feature rows and the per-payer window sums are one fused
kernel launch each (:mod:`weishang.kernels.fused`: a CUDA body in the NumPy code's order of
operations, beside that NumPy code, which the CPU path runs).

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

from . import fused
from .backend import bin_sums, map_chunks, sorted_unique
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
        shared: (int64[M]) sum of ``fan_out`` over each merchant's distinct payers.
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
    # counts are bin_sums (CuPy's bincount reads its largest bin back), a subset's by weights
    # (a mask's length would be read back)
    micro = merchant < n_micro
    # distinct (payer, merchant) pairs among micro payments: a sort of integer keys
    pairs = sorted_unique((payer * n_merchants + merchant)[micro], xp=xp)
    pair_payer, pair_merchant = pairs // n_merchants, pairs % n_merchants
    fan_out = bin_sums(pair_payer, n_users, xp=xp)
    signal = xp.full(n_users, NO_SIGNAL, dtype=xp.int64)
    if signal_payer is not None and signal_payer.shape[0]:
        signal[signal_payer] = signal_day
    return TickGraph(
        burst=bin_sums(payer, n_users, xp=xp) if burst is None else burst,
        devices=bin_sums(payer, n_users, new_device, xp=xp), fan_out=fan_out,
        today=bin_sums(merchant, n_merchants, xp=xp) if today is None else today,
        new_payers=bin_sums(merchant, n_merchants, micro & new_account, xp=xp),
        fan_in=bin_sums(pair_merchant, n_merchants, xp=xp),
        shared=bin_sums(pair_merchant, n_merchants, fan_out[pair_payer], xp=xp), signal=signal)


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
            payments from new accounts today; shared (int64[M]) see :class:`TickGraph`.
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
    # the payer windows in one fused kernel; a ring passes flat (a view of the C-contiguous ring)
    payments, fan_out_total, devices_total, last_signal = fused.launch(
        _PAYER_WINDOW, rule.past_of, tick.burst, tick.fan_out, tick.devices, graph.last_signal, tick.signal,
        graph.payer_fan_out.ravel(), graph.payer_devices.ravel(), window, int(graph.payer_fan_out.shape[1]), xp=xp)
    return AccountView(
        payments=payments, burst=tick.burst, mean_amount=rule.mean_of, fan_out_total=fan_out_total,
        fan_out=tick.fan_out, devices_total=devices_total, last_signal=last_signal,
        today=tick.today, fan_in=tick.fan_in, new_payers=tick.new_payers, shared=tick.shared,
        merchant_mean=rule.merchant_mean, fan_in_mean=graph.merchant_fan_in.sum(axis=0, dtype=xp.int64) / window)


#: AccountView fields gathered at a payment's payer, and at its merchant (a fused kernel's raw
#: parameters, in this order; all int64 but those in VIEW_FLOATS)
PAYER_VIEW = ("payments", "burst", "mean_amount", "fan_out_total", "fan_out", "devices_total", "last_signal")
MERCHANT_VIEW = ("today", "fan_in", "new_payers", "shared", "merchant_mean", "fan_in_mean")
VIEW_FLOATS = ("mean_amount", "merchant_mean", "fan_in_mean")
#: TickGraph fields, in the order a fused kernel takes a probe's own counts (all int64)
OWN_FIELDS = ("burst", "devices", "fan_out", "today", "new_payers", "fan_in", "shared", "signal")


def gather(view: AccountView, payer: Any, merchant: Any, *, xp: ModuleType,
           own: tuple[TickGraph, Any, Any] | None = None) -> AccountView:
    """The view's values at each payment's payer and merchant (arrays of [T]). ``own``: a
    probe's event counts (a :class:`TickGraph` over compact ids, and each payment's compact payer
    and merchant id), added to the tick's, which the probe's payments are not part of."""
    values = {name: getattr(view, name)[payer] for name in PAYER_VIEW}
    values.update({name: getattr(view, name)[merchant] for name in MERCHANT_VIEW})
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


def features(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
             merchant_flag: Any, view: AccountView, reference_amount: float, new_account_ticks: int, day: int, *,
             xp: ModuleType, rows: Any = None, own: tuple[TickGraph, Any, Any] | None = None) -> Any:
    """(float64[S, N_FEATURES]) feature rows of payments ``rows`` (int64[S]; all T when None)
    of a tick's payments (payer, merchant, amount: int64[T]; scenario: int8[T]; new_device:
    bool[T]; account_age: int64[T]; merchant_flag: bool[M]), against the tick's
    :class:`AccountView`; ``own``: see :func:`gather`. Feature-major underneath (``out.T`` is
    C-contiguous), so each feature is one contiguous column. One fused kernel
    (:data:`_ROWS`, :data:`_ROWS_OWN`), one thread per feature of a row."""
    if rows is None:
        rows = xp.arange(payer.shape[0], dtype=xp.int64)
    n_rows = int(rows.shape[0])
    # a view, no copy: the kernel's [N_FEATURES, S] grid, feature k of row j at [k, j]
    grid = xp.broadcast_to(rows, (N_FEATURES, n_rows))
    args = (grid, payer, merchant, amount, scenario, new_device, account_age, merchant_flag,
            *(getattr(view, name) for name in PAYER_VIEW + MERCHANT_VIEW))
    scalars = (float(reference_amount), int(new_account_ticks), int(day), n_rows)
    if own is None:
        return fused.launch(_ROWS, *args, *scalars, xp=xp).T
    own_tick, own_payer, own_merchant = own
    return fused.launch(_ROWS_OWN, *args, own_payer, own_merchant, *(getattr(own_tick, name) for name in OWN_FIELDS),
                        *scalars, xp=xp).T


#: the score is summed in three parts, each in feature order: the payer's features, the
#: merchant's, then the payment's own (see :func:`linear_scores`); the first two are the same for
#: all of a payer's (a merchant's) payments, so bulk scoring on NumPy computes them once per account
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
    """(float64[n]) the score of the feature rows ``rows_of(0, n)`` (float64[n, N_FEATURES], any
    layout): ``bias + payer part + merchant part``, then each payment feature's term, each part
    summed in feature order (:data:`PAYER_FEATURES`, :data:`MERCHANT_FEATURES`,
    :data:`PAYMENT_FEATURES`). A fixed order, not a matrix product, whose sums each BLAS orders
    its own way. One fused kernel (:data:`_LINEAR_SCORES`) over the rows' columns."""
    x = rows_of(0, n)
    return fused.launch(_LINEAR_SCORES, *(x[:, k] for k in range(N_FEATURES)), float(bias),
                        *(float(c) for c in coef), xp=xp)


def feature_scores(payer: Any, merchant: Any, amount: Any, scenario: Any, new_device: Any, account_age: Any,
                   merchant_flag: Any, view: AccountView, reference_amount: float, new_account_ticks: int, day: int,
                   coef: np.ndarray, bias: float, *, xp: ModuleType) -> Any:
    """(float64[T]) every payment's score, the tick's bulk scoring, without keeping feature rows:
    one fused kernel (:data:`_SCORES`). Equal bit for bit to :func:`linear_scores` of
    :func:`features` (the same operations on the same values in the same order; tested)."""
    return fused.launch(_SCORES, payer, merchant, amount, scenario, new_device, account_age, merchant_flag,
                        *(getattr(view, name) for name in PAYER_VIEW + MERCHANT_VIEW), float(reference_amount),
                        int(new_account_ticks), int(day), float(bias), *(float(c) for c in coef), xp=xp)


def update_graph(graph: GraphState, tick: TickGraph, day: int, *, xp: ModuleType) -> None:
    """Add one tick's counts to the history (in place); slot ``day % W`` is overwritten."""
    slot = day % graph.payer_fan_out.shape[0]
    fan_out, devices, last_signal = fused.launch(_PAYER_DAY, tick.fan_out, tick.devices, tick.signal,
                                                 graph.last_signal, int(day), xp=xp)
    graph.payer_fan_out[slot] = fan_out
    graph.merchant_fan_in[slot] = tick.fan_in  # the assignment casts to the ring's int32
    graph.payer_devices[slot] = devices
    graph.last_signal[...] = last_signal


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


# -- the fused kernels (one launch each on CuPy; see weishang.kernels.fused) ----------------------

def _view(values: tuple[Any, ...]) -> AccountView:
    """An :class:`AccountView` of a kernel's view arguments (:data:`PAYER_VIEW`, then
    :data:`MERCHANT_VIEW`)."""
    return AccountView(**dict(zip(PAYER_VIEW + MERCHANT_VIEW, values)))


def _rows(grid: np.ndarray, payer: np.ndarray, merchant: np.ndarray, amount: np.ndarray, scenario: np.ndarray,
          new_device: np.ndarray, account_age: np.ndarray, merchant_flag: np.ndarray, *rest: Any) -> np.ndarray:
    """The NumPy reference of :data:`_ROWS` and :data:`_ROWS_OWN`: (float64[N_FEATURES, S]) the
    features of rows ``grid[0]`` (``grid``: int64[N_FEATURES, S], the rows broadcast). ``rest``:
    the view's arrays, with :data:`_ROWS_OWN` each payment's compact payer and merchant ids and the
    own :class:`TickGraph`'s arrays (:data:`OWN_FIELDS`), then reference_amount,
    new_account_ticks, day and S."""
    n_view = len(PAYER_VIEW) + len(MERCHANT_VIEW)
    own_arrays, (reference_amount, new_account_ticks, day, _) = rest[n_view:-4], rest[-4:]
    rows = grid[0]
    m = merchant[rows]
    own = None
    if own_arrays:
        own_tick = TickGraph(**dict(zip(OWN_FIELDS, own_arrays[2:])))
        own = (own_tick, own_arrays[0][rows], own_arrays[1][rows])
    g = gather(_view(rest[:n_view]), payer[rows], m, xp=np, own=own)
    columns = feature_columns(g, amount[rows], scenario[rows], new_device[rows], account_age[rows] < new_account_ticks,
                              merchant_flag[m], reference_amount, day, xp=np)
    out = np.empty((N_FEATURES, rows.shape[0]), dtype=np.float64)
    for k, column in enumerate(columns):
        out[k] = column
    return out


def _scores(payer: np.ndarray, merchant: np.ndarray, amount: np.ndarray, scenario: np.ndarray,
            new_device: np.ndarray, account_age: np.ndarray, merchant_flag: np.ndarray, *rest: Any) -> np.ndarray:
    """The NumPy reference of :data:`_SCORES` (``rest``: the view's arrays, reference_amount,
    new_account_ticks, day, bias and the N_FEATURES weights): the payer part once per payer
    (float64[N]) and the merchant part once per merchant (float64[M]), gathered, then the
    payment's own terms, chunk by chunk on the thread pool."""
    n_view = len(PAYER_VIEW) + len(MERCHANT_VIEW)
    view = _view(rest[:n_view])
    reference_amount, new_account_ticks, day, bias = rest[n_view:n_view + 4]
    c = rest[n_view + 4:]
    f64 = np.float64
    n = int(payer.shape[0])
    out = np.empty(n, dtype=f64)
    k = {name: FEATURES.index(name) for name in FEATURES}
    # a row holds float64 features, so each part multiplies its columns as float64
    payer_columns = {k["payer_velocity"]: np.minimum(view.payments, VELOCITY_CAP),
                     k["payer_burst"]: np.minimum(view.burst, BURST_CAP),
                     k["payer_fan_out"]: np.minimum(view.fan_out_total, FAN_CAP),
                     k["signal_recency"]: np.maximum(RECENCY_DAYS - (day - view.last_signal), 0),
                     k["device_changes"]: np.minimum(view.devices_total, DEVICE_CAP)}
    payer_part = _weighted((c[i], payer_columns[i].astype(f64)) for i in PAYER_FEATURES)
    merchant_columns = {
        k["merchant_velocity"]: np.minimum(view.today / np.maximum(view.merchant_mean, 1.0), RATIO_CAP),
        k["merchant_flag"]: merchant_flag.astype(f64),
        k["merchant_fan_in"]: np.minimum(view.fan_in / np.maximum(view.fan_in_mean, 1.0), RATIO_CAP),
        k["merchant_new_payers"]: view.new_payers / np.maximum(view.today, 1),
        k["merchant_shared_buyers"]: view.shared / np.maximum(view.fan_in, 1)}
    merchant_part = _weighted((c[i], merchant_columns[i]) for i in MERCHANT_FEATURES)
    fan_out_today = np.minimum(view.fan_out, FAN_CAP).astype(np.int8)  # a small gather

    def work(start: int, stop: int) -> None:
        p, m, a = payer[start:stop], merchant[start:stop], amount[start:stop]
        new_account = account_age[start:stop] < new_account_ticks
        sc = scenario[start:stop]
        s = np.full(stop - start, float(bias), dtype=f64)
        s = s + payer_part[p]
        s = s + merchant_part[m]
        # the payment's own terms, in PAYMENT_FEATURES order
        s = s + c[k["amount_ratio"]] * np.minimum(a / view.mean_amount[p], RATIO_CAP)
        s = s + c[k["new_account"]] * new_account.astype(f64)
        s = s + c[k["new_device"]] * new_device[start:stop].astype(f64)
        s = s + c[k["mini_program"]] * (sc == 1).astype(f64)
        s = s + c[k["cross_border"]] * (sc == 2).astype(f64)
        s = s + c[k["amount_vs_reference"]] * np.minimum(a / reference_amount, REFERENCE_CAP)
        s = s + c[k["new_account_fan_out"]] * (new_account * fan_out_today[p]).astype(f64)
        out[start:stop] = s

    map_chunks(n, work, xp=np)
    return out


def _linear(*args: Any) -> np.ndarray:
    """The NumPy reference of :data:`_LINEAR_SCORES`: the score of N_FEATURES columns
    (float64[n] each), then bias and the N_FEATURES weights, chunk by chunk on the thread pool."""
    columns, bias, coef = args[:N_FEATURES], args[N_FEATURES], args[N_FEATURES + 1:]
    n = int(columns[0].shape[0])
    out = np.empty(n, dtype=np.float64)

    def work(start: int, stop: int) -> None:
        s = np.full(stop - start, float(bias), dtype=np.float64)
        s = s + _weighted((coef[k], columns[k][start:stop]) for k in PAYER_FEATURES)
        s = s + _weighted((coef[k], columns[k][start:stop]) for k in MERCHANT_FEATURES)
        for k in PAYMENT_FEATURES:
            s = s + float(coef[k]) * columns[k][start:stop]
        out[start:stop] = s

    map_chunks(n, work, xp=np)
    return out


#: NumPy's minimum and maximum against a bound, for integers and doubles: a NaN x stays NaN
#: (the comparison is false), as NumPy propagates it; not fmin/fmax, which drop a NaN
_PREAMBLE = """
__device__ long long weishang_minimum(long long x, long long cap) { return x > cap ? cap : x; }
__device__ long long weishang_maximum(long long x, long long floor) { return x < floor ? floor : x; }
__device__ double weishang_minimum(double x, double cap) { return x > cap ? cap : x; }
__device__ double weishang_maximum(double x, double floor) { return x < floor ? floor : x; }
"""
#: each feature as a C double expression, the operations of :func:`feature_columns` in its order
#: (an integer feature converted to double last, as a row's float64 column converts it); from the
#: payment's amount ``a``, scenario ``sc``, ``new_device``, ``new_account``, merchant ``m``, and
#: the view's values at its payer and merchant (locals named as the fields)
_FEATURE_C = {
    "payer_velocity": f"(double)weishang_minimum(payments, {VELOCITY_CAP}LL)",
    "payer_burst": f"(double)weishang_minimum(burst, {BURST_CAP}LL)",
    "amount_ratio": f"weishang_minimum((double)a / mean_amount, {RATIO_CAP!r})",
    "new_account": "new_account ? 1.0 : 0.0",
    "new_device": "nd ? 1.0 : 0.0",
    "mini_program": "sc == 1 ? 1.0 : 0.0",
    "cross_border": "sc == 2 ? 1.0 : 0.0",
    "merchant_velocity": f"weishang_minimum((double)today / weishang_maximum(merchant_mean, 1.0), {RATIO_CAP!r})",
    "merchant_flag": "merchant_flag[m] ? 1.0 : 0.0",
    "amount_vs_reference": f"weishang_minimum((double)a / reference_amount, {REFERENCE_CAP!r})",
    "payer_fan_out": f"(double)weishang_minimum(fan_out_total, {FAN_CAP}LL)",
    "merchant_fan_in": f"weishang_minimum((double)fan_in / weishang_maximum(fan_in_mean, 1.0), {RATIO_CAP!r})",
    "merchant_new_payers": "(double)new_payers / (double)weishang_maximum(today, 1LL)",
    "merchant_shared_buyers": "(double)shared / (double)weishang_maximum(fan_in, 1LL)",
    "new_account_fan_out": f"(double)(new_account ? weishang_minimum(fan_out, {FAN_CAP}LL) : 0LL)",
    "signal_recency": f"(double)weishang_maximum({RECENCY_DAYS}LL - (day - last_signal), 0LL)",
    "device_changes": f"(double)weishang_minimum(devices_total, {DEVICE_CAP}LL)",
}


def _features_c(own: bool) -> str:
    """C statements setting ``double f[N_FEATURES]`` of the payment of payer ``p`` and merchant
    ``m`` (``own``: plus its event's counts at compact ids ``op`` and ``om``, as :func:`gather`)."""
    c_type = {name: "double" if name in VIEW_FLOATS else "long long" for name in PAYER_VIEW + MERCHANT_VIEW}
    lines = [f"{c_type[name]} {name} = v_{name}[p];" for name in PAYER_VIEW]
    lines += [f"{c_type[name]} {name} = v_{name}[m];" for name in MERCHANT_VIEW]
    if own:
        lines += [f"{name} = {name} + o_{count}[op];" for name, count in OWN_PAYER.items()]
        lines += [f"{name} = {name} + o_{count}[om];" for name, count in OWN_MERCHANT.items()]
        lines.append("last_signal = last_signal < o_signal[op] ? o_signal[op] : last_signal;")
    lines.append(f"double f[{N_FEATURES}];")
    lines += [f"f[{k}] = {_FEATURE_C[name]};" for k, name in enumerate(FEATURES)]
    return "\n".join(lines)


def _score_c() -> str:
    """C statements setting ``score`` from ``f``, ``bias`` and weights ``c0``... in
    :func:`linear_scores`'s order (C adds left to right)."""
    def part(ks: tuple[int, ...]) -> str:
        return " + ".join(f"c{k} * f[{k}]" for k in ks)
    lines = [f"const double payer_part = {part(PAYER_FEATURES)};",
             f"const double merchant_part = {part(MERCHANT_FEATURES)};",
             "double s = bias + payer_part;", "s = s + merchant_part;"]
    lines += [f"s = s + c{k} * f[{k}];" for k in PAYMENT_FEATURES]
    return "\n".join([*lines, "score = s;"])


_VIEW_PARAMS = ", ".join(f"raw {'float64' if name in VIEW_FLOATS else 'int64'} v_{name}"
                         for name in PAYER_VIEW + MERCHANT_VIEW)
_OWN_PARAMS = "raw int64 own_payer, raw int64 own_merchant, " + ", ".join(f"raw int64 o_{name}"
                                                                          for name in OWN_FIELDS)
_WEIGHT_PARAMS = "float64 bias, " + ", ".join(f"float64 c{k}" for k in range(N_FEATURES))
#: a payment's own values, from row ``r`` of the tick's arrays
_ROW_C = """const long long r = row;
const long long p = payer[r], m = merchant[r], a = amount[r];
const int sc = scenario[r];
const bool nd = new_device[r];
const bool new_account = account_age[r] < new_account_ticks;"""


def _rows_kernel(own: bool) -> fused.FusedKernel:
    """:func:`_rows` as one fused kernel over the [N_FEATURES, S] grid: a thread computes a row's
    features and keeps feature ``i / S``."""
    tx = ("int64 row, raw int64 payer, raw int64 merchant, raw int64 amount, raw int8 scenario, raw bool new_device, "
          "raw int64 account_age, raw bool merchant_flag")
    own_params = f", {_OWN_PARAMS}" if own else ""
    body = "\n".join([_ROW_C, "const long long op = own_payer[r], om = own_merchant[r];" if own else "",
                      _features_c(own), "x = f[i / n_rows];"])
    return fused.FusedKernel("weishang_risk_rows_own" if own else "weishang_risk_rows",
                             f"{tx}, {_VIEW_PARAMS}{own_params}, float64 reference_amount, int64 new_account_ticks, "
                             "int64 day, int64 n_rows", "float64 x", body, _rows, _PREAMBLE)


def _payer_window(past: np.ndarray, burst: np.ndarray, fan_out: np.ndarray, devices: np.ndarray,
                  last_signal: np.ndarray, signal: np.ndarray, fan_out_ring: np.ndarray, device_ring: np.ndarray,
                  window: int, n_users: int) -> tuple[np.ndarray, ...]:
    """The NumPy reference of :data:`_PAYER_WINDOW`: (int64[N] each) the payments, distinct micro
    merchants and new-device payments in the window, today's included, and the latest takeover
    signal, from the tick's counts (int64[N]), the history's last signal (int32[N]) and its rings
    (int16 and int8 [W * N], flat: slot w of payer j at w * N + j)."""
    return (past + burst, fan_out_ring.reshape(window, n_users).sum(axis=0, dtype=np.int64) + fan_out,
            device_ring.reshape(window, n_users).sum(axis=0, dtype=np.int64) + devices,
            np.maximum(last_signal.astype(np.int64), signal))


def _payer_day(fan_out: np.ndarray, devices: np.ndarray, signal: np.ndarray, last_signal: np.ndarray,
               day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NumPy reference of :data:`_PAYER_DAY`: what :func:`update_graph` writes per payer, from
    the tick's counts and signals (int64[N]) and the history's last signal (int32[N]): the day's
    fan-out (int16[N]) and new-device payments (int8[N]), saturated, and the last signal with
    today's (int32[N]; a new-device payment is one)."""
    signal = np.maximum(signal, np.where(devices > 0, day, NO_SIGNAL))
    return (np.minimum(fan_out, 2**15 - 1).astype(np.int16), np.minimum(devices, 127).astype(np.int8),
            np.maximum(last_signal, signal).astype(np.int32))


#: a payer's window sums (:func:`account_view`): each thread sums its payer's W ring slots
_PAYER_WINDOW = fused.register(fused.FusedKernel(
    "weishang_payer_window",
    "int64 past, int64 burst, int64 fan_out, int64 devices, int32 last_signal, int64 signal, "
    "raw int16 fan_out_ring, raw int8 device_ring, int64 window, int64 n_users",
    "int64 payments, int64 fan_out_total, int64 devices_total, int64 latest_signal",
    """long long fan_out_sum = 0, device_sum = 0;
       for (long long w = 0; w < window; ++w) {
           fan_out_sum += fan_out_ring[w * n_users + i];
           device_sum += device_ring[w * n_users + i];
       }
       payments = past + burst;
       fan_out_total = fan_out_sum + fan_out;
       devices_total = device_sum + devices;
       latest_signal = (long long)last_signal < signal ? signal : (long long)last_signal;""",
    _payer_window))
#: a payer's day in the history (:func:`update_graph`)
_PAYER_DAY = fused.register(fused.FusedKernel(
    "weishang_payer_day", "int64 fan_out, int64 devices, int64 signal, int32 last_signal, int64 day",
    "int16 fan_out_day, int8 devices_day, int32 latest_signal",
    f"""const long long today = devices > 0 ? day : {NO_SIGNAL}LL;
       const long long s = signal < today ? today : signal;
       fan_out_day = (short)(fan_out > {2**15 - 1} ? {2**15 - 1} : fan_out);
       devices_day = (signed char)(devices > 127 ? 127 : devices);
       latest_signal = (int)((long long)last_signal < s ? s : (long long)last_signal);""",
    _payer_day))
#: feature rows (:func:`features`), and a probe's with its own event's counts
_ROWS = fused.register(_rows_kernel(own=False))
_ROWS_OWN = fused.register(_rows_kernel(own=True))
#: every payment's learned score from its payer's and merchant's view (:func:`feature_scores`)
_SCORES = fused.register(fused.FusedKernel(
    "weishang_risk_scores",
    "int64 payer, int64 merchant, int64 amount, int8 scenario, bool new_device, int64 account_age, "
    f"raw bool merchant_flag, {_VIEW_PARAMS}, float64 reference_amount, int64 new_account_ticks, int64 day, "
    f"{_WEIGHT_PARAMS}", "float64 score",
    "\n".join(["const long long p = payer, m = merchant, a = amount;", "const int sc = scenario;",
               "const bool nd = new_device;", "const bool new_account = account_age < new_account_ticks;",
               _features_c(own=False), _score_c()]),
    _scores, _PREAMBLE))
#: the score of feature rows (:func:`linear_scores`), one column a parameter
_LINEAR_SCORES = fused.register(fused.FusedKernel(
    "weishang_risk_linear_scores", ", ".join(f"float64 x{k}" for k in range(N_FEATURES)) + f", {_WEIGHT_PARAMS}",
    "float64 score",
    "\n".join([f"const double f[{N_FEATURES}] = {{{', '.join(f'x{k}' for k in range(N_FEATURES))}}};", _score_c()]),
    _linear))
