"""Merchants' stock (SPEC section 5: inventory turnover): the shelf and the supplier fill orders,
and each merchant restocks to a forecast of its demand.

A micro-merchant's demand comes in bursts: a post (a campaign) sells within a day or two, and
between posts only repeat buyers order. So a merchant forecasts the two apart, each an EWMA of
units demanded (sold plus lost):

    per_post <- expm1(alpha * log1p(demand / posts) + (1 - alpha) * log1p(per_post))
                                                                   (on days it posted)
    daily    <- alpha * demand + (1 - alpha) * daily                 (on days it did not)

The per-post forecast averages on a log scale (a geometric mean): demand per post is heavy-tailed,
and an arithmetic EWMA jumps after one viral post and fills the shelf for a month of ordinary
ones. It stocks for the campaigns its budget plans in the cover period (at least the next one) plus
the trickle in between, order-up-to with a safety margin that grows with forecast error:

    campaigns  = max(1, (post_rate + group posts a day) * cover)
    estimate   = (per_post * campaigns + daily * cover) * exp(sigma * eps - sigma^2 / 2)
    stock     <- max(stock, ceil(estimate * exp(safety_z * sigma)))

No shelf holds the tail (a viral post sells tens of times the median): micro-merchants mostly
source from brand owners and agents who ship for them the same day (一件代发, drop shipping). So
an order beyond the shelf is filled from the supplier, up to ``supplier_resupply`` times the
merchant's order-up-to level a day; beyond both, a buyer waits for the next shipment with
``p_wait_backorder`` (presale, :mod:`weishang.model.mechanisms.payments`) or the sale is lost. Units the
supplier ships never sit on the merchant's shelf (no holding cost, no turnover).

Stocking to the daily mean instead (an EWMA over all days) loses a burst's demand to stock-outs
and then holds the burst's echo for a month: about 40% of demanded units lost at a daily turnover
near 1% in the calibrated default, both far outside what retailers run (README, plausibility).

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

from ...kernels import rng
from ..plan import Mechanism, TickRecord
from ..schema import Column, T, col
from ..state import Stateful
from ..tools import forecast_sigma

if TYPE_CHECKING:
    from .payments import Orders
    from .posting import PostCounts


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
    # units ordered from the same merchant before this order's group started: the running
    # total before the group's first order
    first = xp.searchsorted(m, m, side="left")
    before_group = (running - q)[first]
    fits = running - before_group <= stock[m]
    filled = xp.empty_like(fits)
    filled[order] = fits
    return filled


class Stock(Stateful):
    """Units on hand and demand forecasts of every merchant (host arrays, length M).

    Attributes:
        units: (int64[M]) on hand at the start of the tick.
        level: (int64[M]) the last order-up-to level (what the supplier's same-day capacity
            scales with).
        forecast: (float64[M]) smoothed units demanded on a day without posts.
        per_post: (float64[M]) smoothed units demanded per post on days with posts.
    """

    STATE = ("units", "level", "forecast", "per_post")

    def __init__(self, n_merchants: int, config: Any) -> None:
        mc = config.merchants
        self.config = config
        self.forecast = np.full(n_merchants, mc.initial_demand, dtype=np.float64)
        self.per_post = np.full(n_merchants, mc.initial_post_demand, dtype=np.float64)
        # a new merchant stocks its first campaign and the cover period's trickle (no safety margin yet)
        first = mc.initial_post_demand + mc.initial_demand * mc.stock_cover_ticks
        self.units = np.full(n_merchants, int(np.ceil(first)), dtype=np.int64)
        self.level = self.units.copy()

    def available(self) -> np.ndarray:
        """(int64[M]) units a merchant can deliver today: its shelf and its supplier's same-day
        shipments (``supplier_resupply`` times its order-up-to level)."""
        resupply = np.floor(self.config.merchants.supplier_resupply * self.level).astype(np.int64)
        return self.units + resupply

    def sell(self, sold: np.ndarray) -> np.ndarray:
        """Take the tick's sales (int64[M] units) off the shelf; what the shelf lacked, the
        supplier shipped (or ships later, to buyers who wait). Returns (int64[M]) the units that
        left the shelf: what inventory turnover counts."""
        from_shelf = np.minimum(self.units, sold)
        self.units = self.units - from_shelf
        return from_shelf

    def restock(self, sold: np.ndarray, lost: np.ndarray, posts: np.ndarray, posts_per_tick: np.ndarray,
                sigma: np.ndarray, seed: int, tick: int) -> None:
        """Update forecasts with the tick's demand and order up to the new level.

        Args:
            sold, lost: (int64[M]) units sold and units demanded but out of stock this tick.
            posts: (int64[M]) posts made this tick (paid and community).
            posts_per_tick: (float64[M]) posts a tick each merchant plans (its budget and its
                community posts).
            sigma: (float64[M]) each merchant's forecast error.
        """
        mc = self.config.merchants
        alpha, demand = mc.forecast_alpha, sold + lost
        posted = posts > 0
        # a geometric (log-scale) average: one viral post must not fill the shelf for the next
        # ten ordinary ones (the supplier and presale serve the tail)
        per_post = np.log1p(demand / np.maximum(posts, 1))
        self.per_post = np.where(posted, np.expm1(alpha * per_post + (1.0 - alpha) * np.log1p(self.per_post)),
                                 self.per_post)
        self.forecast = np.where(posted, self.forecast, alpha * demand + (1.0 - alpha) * self.forecast)
        eps = rng.normal(rng.stream_key(seed, "merchant.forecast", tick), self.units.shape[0])
        campaigns = np.maximum(1.0, posts_per_tick * mc.stock_cover_ticks)
        expected = self.per_post * campaigns + self.forecast * mc.stock_cover_ticks
        estimate = expected * np.exp(sigma * eps - sigma**2 / 2)
        self.level = np.ceil(estimate * np.exp(mc.safety_z * sigma)).astype(np.int64)
        self.units = np.maximum(self.units, self.level)

    def holding_cost(self, unit_cost: np.ndarray) -> np.ndarray:
        """(float64[M]) CNY this tick of holding the stock on hand (call between sell and restock)."""
        return self.units * unit_cost * self.config.merchants.holding_cost


@dataclass(frozen=True)
class Restock:
    """One tick's restocking: ``holding_cost`` (float64[M]) CNY of holding the stock on hand, and
    ``from_shelf`` (int64[M]) units sold off the merchant's own shelf."""

    holding_cost: np.ndarray
    from_shelf: np.ndarray


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Inventory.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "units_from_shelf", "int64", "units", "sum",
          "of those, units off the merchants' own shelves (the rest their suppliers shipped)")
    + col(T, "stock_units", "int64", "units", "last", "units on the merchants' shelves overnight"))


class Inventory(Mechanism):
    name = "inventory"
    engine = "arrays"
    sections = ("merchants", "tools", "community")
    uses = ("community",)
    does = "sales leave the shelf, holding costs, forecasts, restocking"
    columns = COLUMNS
    STATE = ("stock",)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.stock = Stock(model.merchants.n, self.config)
        self.unit_cost = model.merchants.price * (1.0 - self.config.merchants.margin)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """Units sold off the merchants' own shelves, and the stock left overnight."""
        return {"units_from_shelf": int(record.inventory.from_shelf.sum()), "stock_units": int(self.stock.units.sum())}

    def step(self, tick: int, posting: "PostCounts", payments: "Orders") -> Restock:
        merchants, config = self.model.merchants, self.config
        from_shelf = self.stock.sell(payments.units_sold)
        holding_cost = self.stock.holding_cost(self.unit_cost)
        sigma = forecast_sigma(merchants.erp, merchants.analytics(tick), config)
        has_group = self.model.community.parts.part_count > 0
        planned = merchants.post_rate + np.where(has_group, config.community.group_post_rate, 0.0)
        self.stock.restock(payments.units_sold, payments.units_lost, posting.reviewed, planned, sigma,
                           config.run.seed, tick)
        # a merchant that left sold off its shelf: it holds nothing and restocks nothing
        self.stock.units[~merchants.active] = 0
        return Restock(holding_cost=holding_cost, from_shelf=from_shelf)
