"""Merchants' books as arrays (length M): the numbers the agents' decisions read.

Booking a day's profit is the same arithmetic for every merchant, so it is done for all of them
at once; the agents (:class:`weishang.model.merchant.Merchant`) read their row when they decide
whether to give up or how to adapt. Keeping the books here, not in 20,000 Python objects, is what
keeps Mesa's share of a tick small at a million users.

A day's contribution is the settled sales' margin less fees and the traffic its paid posts cost;
its profit also pays the fixed and holding costs. The books also keep, for the period since the
last adaptation, what each merchant's paid posts on each channel brought in (their orders' value
and fees, at order time) and cost: what the channel choice
(:mod:`weishang.model.mechanisms.channel_choice`) reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...kernels.backend import bin_sums
from ..codes import TICKS_PER_YEAR, Channel
from ..plan import Mechanism, Sync, TickRecord
from ..schema import Column, T, col
from ..state import Stateful
from .inventory import Restock
from .payments import Orders
from .posting import PostCounts
from .settlement import SettlementOut
from .traffic import TrafficOut

N_CHANNELS = len(Channel)


class MerchantAccounts(Stateful):
    """Running books of every merchant.

    Attributes:
        cum_profit: (float64[M]) CNY of profit so far: settled sales x margin, less fees and costs.
        period_profit, period_contribution: (float64[M]) since the last adaptation; contribution
            is margin less fees and traffic cost: what the posts themselves earned.
        period_posts: (int64[M]) posts since the last adaptation.
        recent: (float64[W, M]) profit of the last W = ``exit_window`` ticks (a ring by tick).
        channel_posts: (int64[M, C]) paid posts since the last adaptation, by channel.
        channel_sales, channel_fees: (int64[M, C]) fen of those posts' orders and their fees.
        channel_traffic: (float64[M, C]) CNY those posts' traffic cost.
    """

    STATE = ("cum_profit", "period_profit", "period_contribution", "period_posts", "recent",
             "channel_posts", "channel_sales", "channel_fees", "channel_traffic")

    def __init__(self, n_merchants: int, exit_window: int) -> None:
        self.cum_profit = np.zeros(n_merchants, dtype=np.float64)
        self.period_profit = np.zeros(n_merchants, dtype=np.float64)
        self.period_contribution = np.zeros(n_merchants, dtype=np.float64)
        self.period_posts = np.zeros(n_merchants, dtype=np.int64)
        self.recent = np.zeros((exit_window, n_merchants), dtype=np.float64)
        self.channel_posts = np.zeros((n_merchants, N_CHANNELS), dtype=np.int64)
        self.channel_sales = np.zeros((n_merchants, N_CHANNELS), dtype=np.int64)
        self.channel_fees = np.zeros((n_merchants, N_CHANNELS), dtype=np.int64)
        self.channel_traffic = np.zeros((n_merchants, N_CHANNELS), dtype=np.float64)

    def book(self, active: np.ndarray, profit: np.ndarray, contribution: np.ndarray, n_posts: np.ndarray,
             tick: int) -> None:
        """Book tick ``tick`` for the active merchants (bool[M]); the others' books stay closed."""
        profit = np.where(active, profit, 0.0)
        self.cum_profit += profit
        self.period_profit += profit
        self.period_contribution += np.where(active, contribution, 0.0)
        self.period_posts += np.where(active, n_posts, 0)
        self.recent[tick % self.recent.shape[0]] = profit

    def window_profit(self, tick: int) -> np.ndarray | None:
        """(float64[M]) profit over the last ``exit_window`` ticks, or None before the window is
        full (every merchant opens its books at tick 0)."""
        if tick + 1 < self.recent.shape[0]:
            return None
        return self.recent.sum(axis=0)

    def close_period(self, merchants: np.ndarray) -> None:
        """Start a new adaptation period for the given merchants (bool[M])."""
        self.period_profit[merchants] = 0.0
        self.period_contribution[merchants] = 0.0
        self.period_posts[merchants] = 0
        for books in (self.channel_posts, self.channel_sales, self.channel_fees, self.channel_traffic):
            books[merchants] = 0

    def channel_gross(self, margin: float) -> np.ndarray:
        """(float64[M, C]) CNY each merchant's paid posts on each channel earned this period
        before their traffic: their orders' margin less fees."""
        return (self.channel_sales * margin - self.channel_fees) / 100.0


def traffic_cost_per_post(config: Any, tick: int) -> float:
    """CNY per post at ``tick``: the base cost grown at ``traffic_cost_growth`` a year."""
    mc = config.merchants
    return mc.traffic_cost_per_post * (1.0 + mc.traffic_cost_growth) ** (tick / float(TICKS_PER_YEAR))


@dataclass(frozen=True)
class BooksOut:
    """The tick's profit and costs of the merchants in business (CNY): ``profit``,
    ``traffic_cost``, ``fixed_cost``, ``holding_cost``."""

    profit: float
    traffic_cost: float
    fixed_cost: float
    holding_cost: float


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Books.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "traffic_cost_per_post", "float64", "CNY", "mean", "what one post's traffic costs today")
    + col(T, "cost_traffic", "float64", "CNY", "sum", "what the paid posts' traffic cost the merchants in business")
    + col(T, "cost_fixed", "float64", "CNY", "sum", "fixed costs of the merchants in business")
    + col(T, "cost_holding", "float64", "CNY", "sum", "their cost of holding stock")
    + col(T, "profit", "float64", "CNY", "sum", "profit of the merchants in business today: settled margin less fees, "
                                                "traffic, fixed and holding costs"))


class Books(Mechanism):
    name = "books"
    engine = "arrays"
    sections = ("merchants", "channels")
    does = "each merchant's books: settled margin less fees, traffic, fixed and holding costs"
    columns = COLUMNS
    syncs = (Sync("per-merchant, per-channel sales and fees of paid posts",
                  "the channel choice of the Mesa agents reads them"),)
    STATE = ("accounts",)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.accounts = MerchantAccounts(model.merchants.n, self.config.merchants.exit_window)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """Today's price of a paid post, and the merchants' costs beyond the goods and profit."""
        out = record.books
        return {"traffic_cost_per_post": traffic_cost_per_post(self.config, record.tick),
                "cost_traffic": out.traffic_cost, "cost_fixed": out.fixed_cost, "cost_holding": out.holding_cost,
                "profit": out.profit}

    def step(self, tick: int, posting: PostCounts, traffic: TrafficOut, payments: Orders, settlement: SettlementOut,
             inventory: Restock) -> BooksOut:
        mc, m = self.config.merchants, self.model.merchants.n
        posts = traffic.posts
        # what each paid post's reach cost, by merchant and channel
        flat = posts.merchant[posts.paid] * N_CHANNELS + posts.channel[posts.paid]
        weight = np.asarray(self.config.channels.traffic_cost_weights)[posts.channel[posts.paid]]
        cost_per_post = traffic_cost_per_post(self.config, tick)
        channel_traffic = np.bincount(flat, weights=weight * cost_per_post, minlength=m * N_CHANNELS)
        channel_traffic = channel_traffic.reshape(m, N_CHANNELS)
        traffic_cost = channel_traffic.sum(axis=1)
        contribution = (settlement.settled * mc.margin - settlement.fees) / 100.0 - traffic_cost
        profit = contribution - mc.fixed_cost_per_tick - inventory.holding_cost
        active = self.model.merchants.active
        self.accounts.book(active, profit, contribution, posting.paid, tick)
        self.book_channels(active, flat, channel_traffic, traffic, payments)
        return BooksOut(profit=float(profit[active].sum()), traffic_cost=float(traffic_cost[active].sum()),
                        fixed_cost=float(mc.fixed_cost_per_tick * active.sum()),
                        holding_cost=float(inventory.holding_cost[active].sum()))

    def book_channels(self, active: np.ndarray, flat: np.ndarray, channel_traffic: np.ndarray, traffic: TrafficOut,
                      payments: Orders) -> None:
        """Book the tick's paid posts, their traffic and their orders by merchant and channel.

        Orders' values and fees are summed in integer fen on the device (exact in any order, so
        both backends agree), for orders of paid posts only: free community posts cost nothing
        and are not the channel's paid reach."""
        xp, m, accounts = self.xp, self.model.merchants.n, self.accounts
        posts, pay = traffic.on_device, payments.payments
        cascade = payments.outcome.order_cascade
        paid = self.backend.to_device(traffic.posts.paid)[cascade]
        # one pass for both tables: sales in bins [0, M*C), fees in [M*C, 2*M*C); orders of
        # free posts weigh nothing (no boolean mask: CuPy would read its count back)
        index = posts.merchant[cascade] * N_CHANNELS + posts.channel[cascade].astype(xp.int64)
        sums = bin_sums(xp.concatenate([index, index + m * N_CHANNELS]), 2 * m * N_CHANNELS,
                        xp.concatenate([xp.where(paid, pay.amount, 0), xp.where(paid, pay.fee, 0)]), xp=xp)
        sales, fees = self.backend.to_host(sums).reshape(2, m, N_CHANNELS)
        keep = active[:, None]
        accounts.channel_posts += np.where(keep, np.bincount(flat, minlength=m * N_CHANNELS).reshape(m, -1), 0)
        accounts.channel_traffic += np.where(keep, channel_traffic, 0.0)
        accounts.channel_sales += np.where(keep, sales, 0)
        accounts.channel_fees += np.where(keep, fees, 0)
