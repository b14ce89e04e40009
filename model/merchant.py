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
    import numpy as np

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
        price: unit price (CNY); quality: product quality (a conversion multiplier, mean 1).
        compliance: one of :data:`COMPLIANCE_TYPES`.
        certification: 0 none, 1 verified, 2 certified (sets the data tier).
        provider: service provider, one of :data:`model.tools.PROVIDERS`.
        uses_transaction_component: onboards in hours instead of days, pays the transaction fee.
        style: one of :data:`MARKETING_STYLES`; changes by :meth:`adapt`.
        post_rate: mean posts per tick, the merchant's traffic budget; changes by :meth:`adapt`.
        ti_onboarded: first tick the merchant can post.
        active: False once exited or removed; exit_reason then says why
            ("unprofitable" or "removed").
        n_posts: posts decided this tick.
        cum_profit: CNY of profit so far: settled sales times margin, less fees and costs.
        period_profit, period_contribution, period_posts: sums since the last adaptation
            (contribution is margin less fees and traffic cost: what the posts themselves earned).
        last_period_profit, budget_direction: the budget rule's memory (see :meth:`adapt`).
        violations: confirmed violations; ti_rectify_until: end of a rectification period.
        wants_split: the merchant decided to split its oversized groups (read by the model).
    """

    def __init__(self, model: "CommerceModel", index: int, uid: int, category: int, price: float,
                 quality: float, compliance: str, certification: int, provider: str,
                 uses_transaction_component: bool, style: str) -> None:
        super().__init__(model)
        self.index = index
        self.uid = uid
        self.category = category
        self.price = price
        self.quality = quality
        self.compliance = compliance
        self.certification = certification
        self.provider = provider
        self.uses_transaction_component = uses_transaction_component
        self.style = style
        self.post_rate = model.config.merchants.post_rate
        self.ti_onboarded = 0 if uses_transaction_component else ONBOARDING_TICKS
        self.active = True
        self.exit_reason = ""
        self.n_posts = 0
        self.cum_profit = 0.0
        self.period_profit = 0.0
        self.period_contribution = 0.0
        self.period_posts = 0
        self.last_period_profit: float | None = None
        self.budget_direction = 1
        self.violations = 0
        self.ti_rectify_until = -1
        self.wants_split = False
        self.profit_window: deque[float] = deque(maxlen=model.config.merchants.exit_window)
        self.window_profit = 0.0  # running sum of profit_window (a sum per tick would cost O(window))

    def can_post(self, tick: int) -> bool:
        return self.active and tick >= self.ti_onboarded and tick >= self.ti_rectify_until

    def decide(self) -> None:
        """Choose this tick's number of posts: the post rate, stochastically rounded."""
        tick = self.model.tick
        if not self.can_post(tick):
            self.n_posts = 0
            return
        rate = self.post_rate
        draw = self.model.merchant_draws["posts"][self.index]
        self.n_posts = min(MAX_POSTS_PER_TICK, int(rate) + (1 if draw < rate - int(rate) else 0))

    def book(self, profit: float, contribution: float) -> None:
        """Record this tick's profit (settled margin less all costs) and the posts' contribution,
        and exit if the window lost money.

        A merchant whose profit summed over the last ``exit_window`` ticks is negative (which
        rising traffic cost and thin sales under homogeneous competition bring about) gives up
        with probability ``exit_hazard`` a day: merchants differ in how long they hold on, so
        exits spread out instead of falling on the day the window first fills.
        """
        if not self.active:
            return
        self.cum_profit += profit
        self.period_profit += profit
        self.period_contribution += contribution
        self.period_posts += self.n_posts
        window = self.profit_window
        if len(window) == window.maxlen:
            self.window_profit -= window[0]
        window.append(profit)
        self.window_profit += profit
        if len(window) == window.maxlen and self.window_profit < 0 and \
                self.model.merchant_draws["exit"][self.index] < self.model.config.merchants.exit_hazard:
            self.leave("unprofitable")

    def adapt(self, style_payoff: dict[str, float], oversized: "np.ndarray") -> None:
        """Move budget, style and groups toward what paid (every ``merchants.adapt_every`` ticks).

        ``style_payoff`` maps each style to its peers' contribution per post this period;
        ``oversized`` (bool[M]) says which merchants have a group part over the threshold.

        The rule, with ``rate = merchants.adapt_rate`` and this period's sums:

        * **style**: compare its own contribution per post with the best style's among all
          active merchants (``style_payoff``, what the merchant sees its peers earn); switch to
          that style with probability ``rate * gap``, where ``gap = (best - own) /
          (|best| + |own|)`` is the relative payoff gap in [0, 1]. So after the induced-sharing
          ban, inducement merchants drift toward content as their reach collapses.
        * **budget**: hill climbing on profit. The post rate moves by a factor ``1 +
          budget_step`` in its current direction (up at first, down when the first period lost
          money); when a period's profit falls below the previous period's, the direction
          reverses. Friends' fatigue with heavy posters (``post_fatigue``) makes returns to
          posting diminish, so budgets settle where the marginal post stops paying.
        * **groups**: a merchant with a group over the down-weighting threshold splits it with
          probability ``rate * (1 - platform.group_downweight)``: the harsher the down-weight,
          the likelier it moves to smaller groups.
        """
        if not self.active:
            return
        model, mc = self.model, self.model.config.merchants
        draws = model.merchant_draws
        if self.period_posts > 0 and style_payoff:
            own = self.period_contribution / self.period_posts
            best = max(style_payoff, key=lambda name: (style_payoff[name], name))
            scale = abs(style_payoff[best]) + abs(own)
            gap = (style_payoff[best] - own) / scale if scale > 0 else 0.0
            if best != self.style and draws["adapt.style"][self.index] < mc.adapt_rate * gap:
                self.style = best
        if self.last_period_profit is None:
            self.budget_direction = 1 if self.period_profit > 0 else -1
        elif self.period_profit < self.last_period_profit:
            self.budget_direction = -self.budget_direction
        self.last_period_profit = self.period_profit
        self.post_rate = min(self.post_rate * (1.0 + mc.budget_step) ** self.budget_direction, mc.post_rate_max)
        downweight = model.config.platform.group_downweight
        self.wants_split = bool(oversized[self.index]) and \
            draws["adapt.groups"][self.index] < mc.adapt_rate * (1.0 - downweight)
        self.period_profit = self.period_contribution = 0.0
        self.period_posts = 0

    def leave(self, reason: str) -> None:
        self.active = False
        self.n_posts = 0
        self.exit_reason = reason
        self.model.merchant_active[self.index] = False  # the array phases' mirror
