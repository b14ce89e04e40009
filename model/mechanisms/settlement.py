"""Settlement (SPEC section 3): payments that passed risk control are queued by their lag and
settle into merchants' accounts T+0 (QR), T+1 (mini-program) or T+3 (cross-border); off-platform
payments settle at once. Cross-border payments lock their exchange rate at the order, and the
exposure is measured when they settle (:mod:`weishang.model.mechanisms.fx`). Fees are charged when paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import fused
from ...kernels.backend import bin_sums
from ..codes import PaymentScenario
from ..plan import Mechanism, Sync, TickRecord
from ..schema import Column, T, col
from ..state import Stateful
from .fx import CURRENCIES, FxDesk, currency_cdf, currency_of
from .payments import Orders, PaymentBatch
from .risk.engine import Screening

#: ticks from payment to settlement of each official scenario: T+0, T+1, T+3
SETTLEMENT_LAG = np.array([0, 1, 3], dtype=np.int64)
MAX_LAG = int(SETTLEMENT_LAG.max())
#: rows of M of a tick's per-merchant sums: fen due by ticks until settlement, then fees
ROWS = MAX_LAG + 2


def settlement_bins(payments: PaymentBatch, settles: Any, n_merchants: int, lag_of: Any, *,
                    xp: ModuleType) -> tuple[Any, Any]:
    """The bins (int64[2O]) and weights (int64[2O], fen) of the payments' per-merchant sums, for
    :func:`~weishang.kernels.backend.bin_sums` over ``ROWS * M`` bins: row ``lag`` holds the
    amounts due in ``lag`` ticks (off-platform: 0), row ``MAX_LAG + 1`` the fees (charged when
    the payment is made). Payments that do not settle (``settles``, bool[O]) weigh nothing.

    ``lag_of``: (int64[4], device) ticks to settlement by payment scenario code.
    """
    due_bin, fee_bin, due, fee = fused.launch(_SETTLEMENT_BINS, payments.scenario, payments.merchant, payments.amount,
                                              payments.fee, settles, lag_of, int(n_merchants), MAX_LAG + 1, xp=xp)
    return xp.concatenate([due_bin, fee_bin]), xp.concatenate([due, fee])


def _settlement_bins_reference(scenario: Any, merchant: Any, amount: Any, fee: Any, settles: Any, lag_of: Any,
                               n_merchants: int, fee_row: int) -> tuple[Any, Any, Any, Any]:
    """Each payment's bin of the amount due, bin of the fee, and the two amounts (int64[O] each)."""
    lag = lag_of[scenario.astype(np.int64)]
    return (lag * n_merchants + merchant, fee_row * n_merchants + merchant, np.where(settles, amount, 0),
            np.where(settles, fee, 0))


#: a batch's settlement bins and amounts in one launch on CuPy
_SETTLEMENT_BINS = fused.register(fused.FusedKernel(
    "weishang_settlement_bins",
    "int8 scenario, int64 merchant, int64 amount, int64 fee, bool settles, raw int64 lag_of, int64 n_merchants, "
    "int64 fee_row",
    "int64 due_bin, int64 fee_bin, int64 due, int64 fee_due",
    """due_bin = lag_of[(long long)scenario] * n_merchants + merchant;
       fee_bin = fee_row * n_merchants + merchant;
       due = settles ? amount : 0;
       fee_due = settles ? fee : 0;""",
    _settlement_bins_reference))


class SettlementQueue(Stateful):
    """Fen waiting to settle, by ticks from now (``pending``: host, int64[MAX_LAG+1, M])."""

    STATE = ("pending",)

    def __init__(self, n_merchants: int) -> None:
        self.pending = np.zeros((MAX_LAG + 1, n_merchants), dtype=np.int64)

    def add(self, due: np.ndarray) -> None:
        self.pending += due

    def release(self) -> np.ndarray:
        """Fen settling this tick (int64[M]); the queue moves one tick on."""
        today = self.pending[0].copy()
        self.pending[:-1] = self.pending[1:]
        self.pending[-1] = 0
        return today


@dataclass(frozen=True)
class SettlementOut:
    """One tick's settlement.

    Attributes:
        fees, settled: (int64[M], host) fen of fees charged and of sales settled per merchant.
        fx_locked, fx_exposure: CNY of cross-border value locked today, and the exchange-rate
            exposure of the value settled today.
    """

    fees: np.ndarray
    settled: np.ndarray
    fx_locked: float
    fx_exposure: float


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Settlement.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "fees", "float64", "CNY", "sum", "transaction-component fees charged")
    + col(T, "fx_locked", "float64", "CNY", "sum", "cross-border value locked at today's exchange rates")
    + col(T, "fx_exposure", "float64", "CNY", "sum",
          "exchange-rate gain (positive) or loss of the cross-border value settling today")
    + col(T, "settled", "float64", "CNY", "sum", "sales settled into merchants' accounts today"))


class Settlement(Mechanism):
    name = "settlement"
    engine = "arrays"
    sections = ("payments",)
    does = "passed payments settle by lag into merchants' accounts; cross-border rates locked until T+3"
    columns = COLUMNS
    syncs = (Sync("per-merchant fen due by lag and fees",
                  "the settlement queue and the Mesa agents' books are on the host"),
             Sync("cross-border value by currency (28)", "the exchange-rate desk and the ticks table"))
    STATE = ("queue", "fx")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.queue = SettlementQueue(model.merchants.n)
        self.fx = FxDesk(self.config.payments.fx_daily_vol, self.config.run.seed)
        dev = self.backend.to_device
        self.lag_of = dev(np.append(SETTLEMENT_LAG, 0))  # off-platform (code 3) settles at once
        self.currency_cdf = dev(currency_cdf())

    def row(self, record: TickRecord) -> dict[str, Any]:
        """Fees charged, cross-border value locked and its exchange-rate exposure, sales settled."""
        out = record.settlement
        return {"fees": out.fees.sum() / 100.0, "fx_locked": out.fx_locked, "fx_exposure": out.fx_exposure,
                "settled": out.settled.sum() / 100.0}

    def step(self, tick: int, payments: Orders, risk: Screening) -> SettlementOut:
        xp, host, m = self.xp, self.backend.to_host, self.model.merchants.n
        pay, passed, fraud = payments.payments, risk.legit_passed, risk.fraud
        # the fraud that got through settles like a legitimate payment, without a fee
        fraud_pay = PaymentBatch(scenario=fraud.scenario, amount=fraud.amount, fee=xp.zeros_like(fraud.amount),
                                 merchant=fraud.merchant)
        legit_bins, legit_weights = settlement_bins(pay, passed, m, self.lag_of, xp=xp)
        fraud_bins, fraud_weights = settlement_bins(fraud_pay, risk.fraud_passed, m, self.lag_of, xp=xp)
        # legitimate cross-border payments lock their exchange rate until T+3: their value by
        # currency goes in the 28 bins after the per-merchant rows. Drawn for those few payments
        # alone (one size synchronisation): a draw for every payment costs NumPy more.
        cross = xp.flatnonzero(passed & (pay.scenario == int(PaymentScenario.CROSS_BORDER)))
        currency = currency_of(payments.key[cross], self.currency_cdf, self.config.run.seed, tick, xp=xp)
        sums = bin_sums(xp.concatenate([legit_bins, fraud_bins, ROWS * m + currency]), ROWS * m + len(CURRENCIES),
                        xp.concatenate([legit_weights, fraud_weights, pay.amount[cross]]), xp=xp)
        per_merchant = host(sums[:ROWS * m]).reshape(ROWS, m)
        self.queue.add(per_merchant[:MAX_LAG + 1])
        settled = self.queue.release()
        fx_locked, fx_exposure = self.fx.step(tick, host(sums[ROWS * m:]) / 100.0)
        return SettlementOut(fees=per_merchant[MAX_LAG + 1], settled=settled, fx_locked=fx_locked,
                             fx_exposure=fx_exposure)
