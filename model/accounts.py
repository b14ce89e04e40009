"""Merchants' books as arrays (length M): the numbers the agents' decisions read.

Booking a day's profit is the same arithmetic for every merchant, so it is done for all of them
at once; the agents (:class:`weishang.model.merchant.Merchant`) read their row when they decide
whether to give up or how to adapt. Keeping the books here, not in 20,000 Python objects, is what
keeps Mesa's share of a tick small at a million users.

A day's contribution is the settled sales' margin less fees and the traffic its paid posts cost;
its profit also pays the fixed and holding costs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .codes import TICKS_PER_YEAR
from .inventory import Restock
from .plan import Mechanism
from .posting import PostCounts
from .settlement import SettlementOut
from .state import Stateful


class MerchantAccounts(Stateful):
    """Running books of every merchant.

    Attributes:
        cum_profit: (float64[M]) CNY of profit so far: settled sales x margin, less fees and costs.
        period_profit, period_contribution: (float64[M]) since the last adaptation; contribution
            is margin less fees and traffic cost: what the posts themselves earned.
        period_posts: (int64[M]) posts since the last adaptation.
        recent: (float64[W, M]) profit of the last W = ``exit_window`` ticks (a ring by tick).
    """

    STATE = ("cum_profit", "period_profit", "period_contribution", "period_posts", "recent")

    def __init__(self, n_merchants: int, exit_window: int) -> None:
        self.cum_profit = np.zeros(n_merchants, dtype=np.float64)
        self.period_profit = np.zeros(n_merchants, dtype=np.float64)
        self.period_contribution = np.zeros(n_merchants, dtype=np.float64)
        self.period_posts = np.zeros(n_merchants, dtype=np.int64)
        self.recent = np.zeros((exit_window, n_merchants), dtype=np.float64)

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


def traffic_cost_per_post(config: Any, tick: int) -> float:
    """CNY per post at ``tick``: the base cost grown at ``traffic_cost_growth`` a year."""
    mc = config.merchants
    return mc.traffic_cost_per_post * (1.0 + mc.traffic_cost_growth) ** (tick / float(TICKS_PER_YEAR))


class Books(Mechanism):
    name = "books"
    engine = "arrays"
    sections = ("merchants",)
    does = "each merchant's books: settled margin less fees, traffic, fixed and holding costs"
    STATE = ("accounts",)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.accounts = MerchantAccounts(model.merchants.n, self.config.merchants.exit_window)

    def step(self, tick: int, posting: PostCounts, settlement: SettlementOut, inventory: Restock) -> None:
        mc = self.config.merchants
        contribution = ((settlement.settled * mc.margin - settlement.fees) / 100.0
                        - posting.paid * traffic_cost_per_post(self.config, tick))
        profit = contribution - mc.fixed_cost_per_tick - inventory.holding_cost
        self.accounts.book(self.model.merchants.active, profit, contribution, posting.paid, tick)
