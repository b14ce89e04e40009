"""Merchant agents (``mesa.Agent``): the accounts that post, sell, pay for traffic and exit.

A merchant's decisions are Python; its numbers are plain attributes that the model gathers into
arrays once per tick for the kernels. Random decisions read per-tick draws the model made for all
merchants at once from counter-based streams (index = merchant index), so a merchant's draws do
not depend on the order Mesa steps the agents in, nor on which other merchants exist.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import mesa

if TYPE_CHECKING:
    from model.commerce import CommerceModel

COMPLIANCE_TYPES = ("compliant", "no_brand", "exaggerated")
#: marketing styles: quality content posts, plain ad links, induced sharing
MARKETING_STYLES = ("content", "ad", "inducement")
#: at most this many posts per merchant per tick; part of each post's stable cascade key
MAX_POSTS_PER_TICK = 16
#: onboarding takes 3 days, or 2 hours (inside the first day) with the transaction component
ONBOARDING_TICKS = 3


class Merchant(mesa.Agent):
    """One merchant, owning an account in the friend graph.

    Attributes:
        index: position in the model's merchant arrays (0..M-1), stable for the run.
        uid: the merchant's account (user id).
        category: product category (0..n_categories-1).
        price: unit price (CNY).
        compliance: one of :data:`COMPLIANCE_TYPES`.
        uses_transaction_component: onboards fast, pays the transaction fee.
        style: one of :data:`MARKETING_STYLES`.
        ti_onboarded: first tick the merchant can post.
        active: False once exited or removed; exit_reason then says why
            ("unprofitable" or "removed").
        n_posts: posts decided this tick.
        cum_profit: CNY of profit so far: settled sales times margin, less fees and costs.
        violations: times flagged by review; ti_rectify_until: end of a rectification period.
    """

    def __init__(self, model: "CommerceModel", index: int, uid: int, category: int, price: float,
                 compliance: str, uses_transaction_component: bool, style: str) -> None:
        super().__init__(model)
        self.index = index
        self.uid = uid
        self.category = category
        self.price = price
        self.compliance = compliance
        self.uses_transaction_component = uses_transaction_component
        self.style = style
        self.ti_onboarded = 0 if uses_transaction_component else ONBOARDING_TICKS
        self.active = True
        self.exit_reason = ""
        self.n_posts = 0
        self.cum_profit = 0.0
        self.violations = 0
        self.ti_rectify_until = -1
        self.profit_window: deque[float] = deque(maxlen=model.config.merchants.exit_window)

    def can_post(self, tick: int) -> bool:
        return self.active and tick >= self.ti_onboarded and tick >= self.ti_rectify_until

    def decide(self) -> None:
        """Choose this tick's number of posts: the post rate, stochastically rounded."""
        tick = self.model.tick
        if not self.can_post(tick):
            self.n_posts = 0
            return
        rate = self.model.config.merchants.post_rate
        draw = self.model.merchant_draws["posts"][self.index]
        self.n_posts = min(MAX_POSTS_PER_TICK, int(rate) + (1 if draw < rate - int(rate) else 0))

    def book(self, profit: float) -> None:
        """Record this tick's profit (settled margin less costs) and exit if the window lost money.

        A merchant exits when its profit summed over the last ``exit_window`` ticks is negative,
        which rising traffic cost and thin sales (homogeneous competition) bring about.
        """
        if not self.active:
            return
        self.cum_profit += profit
        self.profit_window.append(profit)
        window = self.profit_window
        if len(window) == window.maxlen and sum(window) < 0:
            self.leave("unprofitable")

    def leave(self, reason: str) -> None:
        self.active = False
        self.n_posts = 0
        self.exit_reason = reason
