"""Orders become payments (SPEC section 3): official or off-platform, a payment scenario, a
settlement lag, and the transaction component's fee.

Official payments go through QR code (T+0), mini-program (T+1) or cross-border (T+3) in the
configured mix. Off-platform payments (orders from external links, and private transfers) settle
at once and escape risk control; the official share of value (SPEC: 92.3%) comes out of those two. Per-merchant sums are made on the device; only they cross to the host.

Money is counted in integer fen (0.01 CNY): integer sums are exact in any order, so NumPy and
CuPy (whose scatter-adds run in no fixed order) agree to the fen.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from kernels import rng
from kernels.backend import scatter_add
from model.config import PaymentsConfig

SETTLEMENT_LAG = np.array([0, 1, 3], dtype=np.int64)  # T+0, T+1, T+3
CROSS_BORDER = 2  # scenario code of a cross-border payment
OFF_PLATFORM = 3  # scenario code of an off-platform payment
MAX_LAG = int(SETTLEMENT_LAG.max())


@dataclass
class Payments:
    """One tick's payments, on the device.

    Attributes:
        scenario: (int8[O]) 0 qr, 1 mini_program, 2 cross_border, 3 off-platform.
        amount: (int64[O]) fen.
        fee: (int64[O]) fen of transaction component fee (0 without the component, and off-platform).
        merchant: (int64[O]) merchant index.
    """

    scenario: Any
    amount: Any
    fee: Any
    merchant: Any


def make_payments(order_key: Any, merchant: Any, amount: Any, uses_component: Any,
                  cfg: PaymentsConfig, seed: int, tick: int, *, xp: ModuleType, off_platform: Any = None) -> Payments:
    """Assign each order a payment scenario and fee.

    Args:
        order_key: (int64[O]) stable key of each order (for counter-based draws).
        merchant: (int64[O]) merchant index of each order.
        amount: (int64[O]) order value in fen.
        uses_component: (bool[M]) whether each merchant uses the transaction component.
        off_platform: (bool[O]) optional: orders that left WeChat (external links) and are paid
            outside it whatever the draw says.
    """
    official = ~rng.bernoulli(rng.stream_key(seed, "payments.private_transfer", tick), order_key,
                              cfg.p_private_transfer, xp=xp)
    if off_platform is not None:
        official &= ~off_platform
    u = rng.uniform(rng.stream_key(seed, "payments.scenario", tick), order_key, xp=xp)
    scenario = xp.where(u < cfg.mix_qr, 0, xp.where(u < cfg.mix_qr + cfg.mix_mini_program, 1, 2)).astype(xp.int8)
    scenario = xp.where(official, scenario, xp.int8(OFF_PLATFORM)).astype(xp.int8)
    fee_ppm = round(cfg.transaction_fee * 1_000_000)
    fee = xp.where(official & uses_component[merchant], amount * fee_ppm // 1_000_000, 0)
    return Payments(scenario=scenario, amount=amount, fee=fee, merchant=merchant)


def per_merchant_by_lag(payments: Payments, n_merchants: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Amounts due per merchant per settlement lag, and fees per merchant, in fen.

    Returns:
        due (int64[MAX_LAG+1, M]): gross amounts by ticks until settlement;
        fees (int64[M]): charged when the payment is made.
    """
    lag = xp.asarray(np.append(SETTLEMENT_LAG, 0))[payments.scenario.astype(xp.int64)]
    due = xp.zeros((MAX_LAG + 1) * n_merchants, dtype=xp.int64)
    scatter_add(due, lag * n_merchants + payments.merchant, payments.amount, xp=xp)
    fees = xp.zeros(n_merchants, dtype=xp.int64)
    scatter_add(fees, payments.merchant, payments.fee, xp=xp)
    return due.reshape(MAX_LAG + 1, n_merchants), fees


class SettlementQueue:
    """Fen waiting to settle, by ticks from now (host, int64[MAX_LAG+1, M])."""

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
