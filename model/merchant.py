"""Merchant agents (``mesa.Agent``): the accounts that post, sell, pay for traffic and exit.

A merchant's decisions are Python methods: whether to give up (:meth:`Merchant.consider_exit`),
how to adapt its budget, style and groups (:meth:`Merchant.adapt`), and what a penalty does to it
(:meth:`Merchant.leave`, rectification set by the model's governance). Its running numbers live
in the model's arrays, read through properties: the daily post count (the budget rule applied,
:func:`posts_today`) and the books (:class:`model.accounts.MerchantAccounts`) are the same
arithmetic for every merchant, done for all at once. Random decisions read per-tick draws the
model made for all merchants from counter-based streams (index = merchant index), so a
merchant's draws do not depend on the order Mesa steps the agents in, nor on which other
merchants exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

if TYPE_CHECKING:
    from model.commerce import CommerceModel

COMPLIANCE_TYPES = ("compliant", "no_brand", "exaggerated")
#: marketing styles: quality content posts, plain ad links, induced sharing
MARKETING_STYLES = ("content", "ad", "inducement")
#: at most this many posts per merchant per tick; part of each post's stable cascade key
MAX_POSTS_PER_TICK = 16
#: onboarding takes 3 days, or 2 hours (inside the first day) with the transaction component
ONBOARDING_TICKS = 3


def posts_today(post_rate: np.ndarray, can_post: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """(int64[M]) each merchant's posts this tick: its post rate, stochastically rounded (the
    integer part, plus one with the fractional part's probability), none when it cannot post,
    at most :data:`MAX_POSTS_PER_TICK`.

    Args:
        post_rate: (float64[M]) budgets; can_post (bool[M]); draw (float64[M]) uniform draws.
    """
    whole = np.floor(post_rate)
    n = whole.astype(np.int64) + (draw < post_rate - whole)
    return np.where(can_post, np.minimum(n, MAX_POSTS_PER_TICK), 0)


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
        active: False once exited or removed; exit_reason then says why
            ("unprofitable" or "removed").
        violations: confirmed violations.
        last_period_profit, budget_direction: the budget rule's memory (see :meth:`adapt`).
        wants_split: the merchant decided to split its oversized groups (read by the model).

    Read from the model's arrays: ``ti_onboarded``, ``ti_rectify_until`` (end of a rectification
    period), ``n_posts`` (this tick), ``cum_profit`` and the period sums.
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
        self.active = True
        self.exit_reason = ""
        self.violations = 0
        self.last_period_profit: float | None = None
        self.budget_direction = 1
        self.wants_split = False

    # the model's arrays, seen from the agent
    @property
    def ti_onboarded(self) -> int:
        return int(self.model.ti_onboarded[self.index])

    @property
    def ti_rectify_until(self) -> int:
        return int(self.model.rectify_until[self.index])

    @ti_rectify_until.setter
    def ti_rectify_until(self, tick: int) -> None:
        self.model.rectify_until[self.index] = tick

    @property
    def n_posts(self) -> int:
        n_posts = self.model.data.n_posts
        return int(n_posts[self.index]) if n_posts is not None else 0

    @property
    def cum_profit(self) -> float:
        return float(self.model.accounts.cum_profit[self.index])

    def consider_exit(self, window_profit: float) -> None:
        """Give up when the last ``exit_window`` ticks lost money, with probability
        ``exit_hazard`` a day.

        Losses come from rising traffic cost and thin sales under homogeneous competition;
        merchants differ in how long they hold on, so exits spread out instead of falling on
        the day the window first fills.
        """
        if self.active and window_profit < 0 and \
                self.model.merchant_draws["exit"][self.index] < self.model.config.merchants.exit_hazard:
            self.leave("unprofitable")

    def adapt(self, style_payoff: dict[str, float], oversized: np.ndarray) -> None:
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
        model, mc, i = self.model, self.model.config.merchants, self.index
        draws, books = model.merchant_draws, model.accounts
        posts, profit = int(books.period_posts[i]), float(books.period_profit[i])
        if posts > 0 and style_payoff:
            own = float(books.period_contribution[i]) / posts
            best = max(style_payoff, key=lambda name: (style_payoff[name], name))
            scale = abs(style_payoff[best]) + abs(own)
            gap = (style_payoff[best] - own) / scale if scale > 0 else 0.0
            if best != self.style and draws["adapt.style"][i] < mc.adapt_rate * gap:
                self.style = best
        if self.last_period_profit is None:
            self.budget_direction = 1 if profit > 0 else -1
        elif profit < self.last_period_profit:
            self.budget_direction = -self.budget_direction
        self.last_period_profit = profit
        self.post_rate = min(self.post_rate * (1.0 + mc.budget_step) ** self.budget_direction, mc.post_rate_max)
        downweight = model.config.platform.group_downweight
        self.wants_split = bool(oversized[i]) and draws["adapt.groups"][i] < mc.adapt_rate * (1.0 - downweight)

    def leave(self, reason: str) -> None:
        self.active = False
        self.exit_reason = reason
        self.model.merchant_active[self.index] = False  # the array phases' mirror
