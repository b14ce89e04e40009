"""Aggregation: the tick reduced to what the recorder and the diagnostics need.

Integer sums (counts and fen) on the device, so they are exact on both backends; these are the
only device-to-host copies of a tick's results. The merchants' running diagnostics sums
(:mod:`weishang.model.diagnostics`) and the analytics adopters' before/after windows are kept
here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernels.backend import scatter_add
from .codes import PaymentScenario
from .diagnostics import Diagnostics
from .inventory import Restock
from .payments import Orders
from .plan import Mechanism
from .risk_engine import Screening
from .state import Stateful
from .tools import analytics_window
from .traffic import TrafficOut


@dataclass(frozen=True)
class TickAggregates:
    """One tick's results on the host.

    Attributes:
        exposures, shares, buys, matched: (int64[C, 3]) per post and level (buys: filled orders).
        gmv_by_scenario_fen: (int64[4]) completed GMV by :class:`~weishang.model.codes.PaymentScenario`.
        gmv_per_cascade_fen: (int64[C]) completed GMV of each post's orders.
        orders_per_merchant, gmv_per_merchant_fen: (int64[M]) completed orders and their value.
    """

    exposures: np.ndarray
    shares: np.ndarray
    buys: np.ndarray
    matched: np.ndarray
    gmv_by_scenario_fen: np.ndarray
    gmv_per_cascade_fen: np.ndarray
    orders_per_merchant: np.ndarray
    gmv_per_merchant_fen: np.ndarray


class AnalyticsWindows(Stateful):
    """Analytics adopters' sales and stock in the windows before and after adopting.

    ``sums`` (int64[2, 3, M]): [before, after] x [completed GMV (fen), units sold, stock held]
    per merchant. The windows are :func:`weishang.model.tools.analytics_window` ticks before and
    after each adopter's adoption tick; their ratio is the quarter-on-quarter growth SPEC
    section 5 reports for analytics users (+132% GMV, +27% inventory turnover).
    """

    STATE = ("sums",)

    def __init__(self, n_merchants: int, n_ticks: int) -> None:
        self.sums = np.zeros((2, 3, n_merchants), dtype=np.int64)
        self.window = analytics_window(n_ticks)

    def add(self, tick: int, adopted: np.ndarray, active: np.ndarray, gmv_fen: np.ndarray, sold: np.ndarray,
            stock_held: np.ndarray) -> None:
        """Add one tick; ``adopted`` (int64[M]) adoption ticks (-1 never); a merchant that has
        left is no longer a user of anything: only active ticks count."""
        before = active & (adopted >= 0) & (tick >= adopted - self.window) & (tick < adopted)
        after = active & (adopted >= 0) & (tick >= adopted) & (tick < adopted + self.window)
        for side, mask in enumerate((before, after)):
            self.sums[side, 0, mask] += gmv_fen[mask]
            self.sums[side, 1, mask] += sold[mask]
            self.sums[side, 2, mask] += stock_held[mask]


class Aggregation(Mechanism):
    name = "aggregation"
    engine = "arrays"
    sections = ()
    does = "integer reductions for the recorder (the only device-to-host copies), diagnostics, analytics windows"
    STATE = ("diagnostics", "analytics")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.diagnostics = Diagnostics(model.merchants.n)
        self.analytics = AnalyticsWindows(model.merchants.n, self.config.run.n_ticks)

    def step(self, tick: int, traffic: TrafficOut, payments: Orders, risk: Screening, inventory: Restock) -> TickAggregates:
        xp, host, out, pay = self.xp, self.backend.to_host, payments.outcome, payments.payments
        merchants = self.model.merchants
        n = merchants.n
        # GMV counts completed orders: an intercepted payment's order did not happen
        passed = risk.legit_passed
        amount = xp.where(passed, pay.amount, 0)
        gmv_by_scenario = xp.zeros(len(PaymentScenario), dtype=xp.int64)
        scatter_add(gmv_by_scenario, pay.scenario.astype(xp.int64), amount, xp=xp)
        orders_per_merchant = xp.zeros(n, dtype=xp.int64)
        scatter_add(orders_per_merchant, pay.merchant, passed.astype(xp.int64), xp=xp)
        gmv_per_merchant = xp.zeros(n, dtype=xp.int64)
        scatter_add(gmv_per_merchant, pay.merchant, amount, xp=xp)
        gmv_per_cascade = xp.zeros(out.exposures.shape[0], dtype=xp.int64)
        scatter_add(gmv_per_cascade, out.order_cascade, amount, xp=xp)
        agg = TickAggregates(exposures=host(out.exposures), shares=host(out.shares), buys=host(out.buys),
                             matched=host(out.matched), gmv_by_scenario_fen=host(gmv_by_scenario),
                             gmv_per_cascade_fen=host(gmv_per_cascade),
                             orders_per_merchant=host(orders_per_merchant),
                             gmv_per_merchant_fen=host(gmv_per_merchant))
        self.diagnostics.add(traffic.posts.merchant, agg.exposures, agg.matched, agg.orders_per_merchant,
                             agg.gmv_per_merchant_fen)
        # after restocking: what sits on the shelf overnight
        self.analytics.add(tick, merchants.ti_analytics, merchants.active, agg.gmv_per_merchant_fen,
                           inventory.from_shelf, self.model.inventory.stock.units)
        return agg
