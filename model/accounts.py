"""Merchants' books as arrays (length M): the numbers the agents' decisions read.

Booking a day's profit is the same arithmetic for every merchant, so it is done for all of them
at once; the agents (:class:`model.merchant.Merchant`) read their row when they decide whether to
give up or how to adapt. Keeping the books here, not in 20,000 Python objects, is what keeps
Mesa's share of a tick small at a million users.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MerchantAccounts:
    """Running books of every merchant.

    Attributes:
        cum_profit: (float64[M]) CNY of profit so far: settled sales x margin, less fees and costs.
        period_profit, period_contribution: (float64[M]) since the last adaptation; contribution
            is margin less fees and traffic cost: what the posts themselves earned.
        period_posts: (int64[M]) posts since the last adaptation.
        recent: (float64[W, M]) profit of the last W = ``exit_window`` ticks (a ring by tick).
    """

    ARRAYS = ("cum_profit", "period_profit", "period_contribution", "period_posts", "recent")

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

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).copy() for name in self.ARRAYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.ARRAYS:
            getattr(self, name)[...] = state[name]
