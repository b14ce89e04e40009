"""Merchants' stock (SPEC section 5: inventory turnover): orders beyond stock are lost, and each
merchant restocks to a forecast of its demand.

The stocking rule is order-up-to with a safety margin that grows with forecast error:

    forecast  <- alpha * demand + (1 - alpha) * forecast              (EWMA of units demanded)
    estimate   = forecast * exp(sigma * eps - sigma^2 / 2)             (the merchant's noisy view)
    stock     <- max(stock, ceil(estimate * cover * exp(safety_z * sigma)))

``sigma`` is the merchant's forecast error, set by its tools (:func:`weishang.model.tools.forecast_sigma`):
a merchant who forecasts badly holds more idle safety stock, and, for the same safety margin,
runs out more often (its estimate falls short more often), so sharper forecasts (ERP,
analytics) raise inventory turnover (units sold / mean stock) and, at a given ``safety_z``,
lower lost sales. Restocked units arrive by the next tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels import rng
from .plan import Mechanism
from .state import Stateful
from .tools import forecast_sigma

if TYPE_CHECKING:
    from .payments import Orders


def fill_orders(merchant: Any, quantity: Any, stock: Any, *, xp: ModuleType) -> Any:
    """(bool[O]) orders the merchants' stock can fill, first come first served.

    Orders are served in the order given (level 1 before level 2 before level 3, then by
    cascade), so an order is filled when the units of its merchant's orders up to and including
    it fit in the merchant's stock.

    Args:
        merchant: (int64[O]) merchant of each order; quantity (int64[O]) units.
        stock: (int64[M]) units each merchant has on hand.
    """
    if merchant.shape[0] == 0:
        return xp.zeros(0, dtype=xp.bool_)
    n = merchant.shape[0]
    # unique keys make any sort stable (CuPy's argsort takes no `kind`)
    order = xp.argsort(merchant * n + xp.arange(n, dtype=xp.int64))
    m, q = merchant[order], quantity[order]
    running = xp.cumsum(q)
    # units ordered from the same merchant before this order's group started
    first = xp.searchsorted(m, m, side="left")
    before_group = xp.where(first > 0, running[xp.maximum(first - 1, 0)], 0)
    fits = running - before_group <= stock[m]
    filled = xp.empty_like(fits)
    filled[order] = fits
    return filled


class Stock(Stateful):
    """Units on hand and demand forecasts of every merchant (host arrays, length M).

    Attributes:
        units: (int64[M]) on hand at the start of the tick.
        forecast: (float64[M]) smoothed units demanded per tick.
    """

    STATE = ("units", "forecast")

    def __init__(self, n_merchants: int, config: Any) -> None:
        mc = config.merchants
        self.config = config
        self.forecast = np.full(n_merchants, mc.initial_demand, dtype=np.float64)
        # a new merchant stocks its expected demand for the cover period (no safety margin yet)
        self.units = np.full(n_merchants, int(np.ceil(mc.initial_demand * mc.stock_cover_ticks)), dtype=np.int64)

    def sell(self, sold: np.ndarray) -> None:
        """Take the tick's sales (int64[M] units) off the shelf."""
        self.units -= sold

    def restock(self, sold: np.ndarray, lost: np.ndarray, sigma: np.ndarray, seed: int, tick: int) -> None:
        """Update forecasts with the tick's demand and order up to the new level.

        Args:
            sold, lost: (int64[M]) units sold and units demanded but out of stock this tick.
            sigma: (float64[M]) each merchant's forecast error.
        """
        mc = self.config.merchants
        self.forecast = mc.forecast_alpha * (sold + lost) + (1.0 - mc.forecast_alpha) * self.forecast
        eps = rng.normal(rng.stream_key(seed, "merchant.forecast", tick), self.units.shape[0])
        estimate = self.forecast * np.exp(sigma * eps - sigma**2 / 2)
        target = np.ceil(estimate * mc.stock_cover_ticks * np.exp(mc.safety_z * sigma)).astype(np.int64)
        self.units = np.maximum(self.units, target)

    def holding_cost(self, unit_cost: np.ndarray) -> np.ndarray:
        """(float64[M]) CNY this tick of holding the stock on hand (call between sell and restock)."""
        return self.units * unit_cost * self.config.merchants.holding_cost


@dataclass(frozen=True)
class Restock:
    """One tick's restocking: ``holding_cost`` (float64[M]) CNY of holding the stock on hand."""

    holding_cost: np.ndarray


class Inventory(Mechanism):
    name = "inventory"
    engine = "arrays"
    sections = ("merchants", "tools")
    does = "sales leave the shelf, holding costs, forecasts, restocking"
    STATE = ("stock",)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.stock = Stock(model.merchants.n, self.config)
        self.unit_cost = model.merchants.price * (1.0 - self.config.merchants.margin)

    def step(self, tick: int, payments: "Orders") -> Restock:
        merchants = self.model.merchants
        self.stock.sell(payments.units_sold)
        holding_cost = self.stock.holding_cost(self.unit_cost)
        sigma = forecast_sigma(merchants.erp, merchants.analytics(tick), self.config)
        self.stock.restock(payments.units_sold, payments.units_lost, sigma, self.config.run.seed, tick)
        return Restock(holding_cost=holding_cost)
