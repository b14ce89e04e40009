"""Settlement (SPEC section 3): payments that passed risk control are queued by their lag and
settle into merchants' accounts T+0 (QR), T+1 (mini-program) or T+3 (cross-border); off-platform
payments settle at once. Cross-border payments lock their exchange rate at the order, and the
exposure is measured when they settle (:mod:`weishang.model.fx`). Fees are charged when paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..kernels.backend import scatter_add
from .codes import PaymentScenario
from .fx import FxDesk, value_by_currency
from .payments import Orders, PaymentBatch
from .plan import Mechanism
from .risk_engine import Screening
from .state import Stateful

#: ticks from payment to settlement of each official scenario: T+0, T+1, T+3
SETTLEMENT_LAG = np.array([0, 1, 3], dtype=np.int64)
MAX_LAG = int(SETTLEMENT_LAG.max())


def per_merchant_by_lag(payments: PaymentBatch, n_merchants: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Amounts due per merchant per settlement lag, and fees per merchant, in fen.

    Returns:
        due (int64[MAX_LAG+1, M]): gross amounts by ticks until settlement (off-platform: 0);
        fees (int64[M]): charged when the payment is made.
    """
    lag = xp.asarray(np.append(SETTLEMENT_LAG, 0))[payments.scenario.astype(xp.int64)]
    due = xp.zeros((MAX_LAG + 1) * n_merchants, dtype=xp.int64)
    scatter_add(due, lag * n_merchants + payments.merchant, payments.amount, xp=xp)
    fees = xp.zeros(n_merchants, dtype=xp.int64)
    scatter_add(fees, payments.merchant, payments.fee, xp=xp)
    return due.reshape(MAX_LAG + 1, n_merchants), fees


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


class Settlement(Mechanism):
    name = "settlement"
    engine = "arrays"
    sections = ("payments",)
    does = "passed payments settle by lag into merchants' accounts; cross-border rates locked until T+3"
    STATE = ("queue", "fx")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.queue = SettlementQueue(model.merchants.n)
        self.fx = FxDesk(self.config.payments.fx_daily_vol, self.config.run.seed)

    def step(self, tick: int, payments: Orders, risk: Screening) -> SettlementOut:
        xp, dev, host = self.xp, self.backend.to_device, self.backend.to_host
        pay, screening = payments.payments, risk
        passed = screening.legit_passed
        fraud = screening.fraud
        completed = PaymentBatch(
            scenario=xp.concatenate([pay.scenario[passed], dev(fraud.scenario)[screening.fraud_passed]]),
            amount=xp.concatenate([pay.amount[passed], dev(fraud.amount)[screening.fraud_passed]]),
            fee=xp.concatenate([pay.fee[passed], xp.zeros(int(screening.fraud_passed.sum()), dtype=xp.int64)]),
            merchant=xp.concatenate([pay.merchant[passed], dev(fraud.merchant)[screening.fraud_passed]]))
        due, fees = per_merchant_by_lag(completed, self.model.merchants.n, xp=xp)
        self.queue.add(host(due))
        settled = self.queue.release()
        # legitimate cross-border payments lock their exchange rate until T+3
        cross = passed & (pay.scenario == int(PaymentScenario.CROSS_BORDER))
        locked = value_by_currency(payments.key[cross], pay.amount[cross], self.config.run.seed, tick, xp=xp)
        fx_locked, fx_exposure = self.fx.step(tick, host(locked))
        return SettlementOut(fees=host(fees), settled=settled, fx_locked=fx_locked, fx_exposure=fx_exposure)
