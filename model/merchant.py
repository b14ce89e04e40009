"""Merchants: their table of numbers, declared once, and the Mesa agents that decide.

Every merchant's numbers live in one struct-of-arrays :class:`MerchantTable` (the columns of
:data:`MERCHANT_STATE`), which the mechanisms and kernels read and write for all merchants at
once. A :class:`Merchant` agent keeps only its decision memory (:data:`Merchant.MEMORY`) and sees
its row of the table through attributes (``merchant.style``, ``merchant.active``, ...): its
decisions, whether to give up (:meth:`Merchant.consider_exit`) and how to adapt budget, style and
groups (:meth:`Merchant.adapt`), are Python. Random decisions read per-tick draws made for all
merchants from counter-based streams (index = merchant index), so a merchant's draws depend
neither on the order Mesa steps the agents in nor on which other merchants exist.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mesa
import numpy as np

from ..kernels import rng
from .codes import Certification, Compliance, ExitReason, Provider, Style
from .population import draw_categories
from .state import StateField, Stateful
from .tools import draw_tools

if TYPE_CHECKING:
    from .commerce import CommerceModel
    from .mechanisms.books import MerchantAccounts

#: onboarding takes 3 days, or 2 hours (inside the first day) with the transaction component
ONBOARDING_TICKS = 3

#: The merchants' numbers: the only place they are declared. ``changes`` marks the columns a run
#: changes (a checkpoint carries them); the rest are drawn once from the config and seed.
MERCHANT_STATE: tuple[StateField, ...] = (
    StateField("uid", "int64", -1, "the merchant's account (user id)"),
    StateField("category", "int16", 0, "product category, 0 the most popular"),
    StateField("price", "float64", 0.0, "unit price (CNY), log-normal around merchants.price_median"),
    StateField("quality", "float64", 1.0, "product quality: a conversion multiplier of mean 1"),
    StateField("compliance", "int8", Compliance.COMPLIANT, "a Compliance code"),
    StateField("certification", "int8", Certification.NONE, "a Certification code (sets the data tier)"),
    StateField("uses_component", "bool", False,
               "uses the transaction component: onboards in hours, pays the technical service fee"),
    StateField("provider", "int8", Provider.NONE, "a Provider code: the service provider it runs through"),
    StateField("marketing_tools", "bool", False, "has marketing tools (group buying, price cutting)"),
    StateField("erp", "bool", False, "has an ERP"),
    StateField("live", "bool", False, "live-streams"),
    StateField("ai_service", "bool", False, "has AI customer service"),
    StateField("ti_analytics", "int64", -1, "tick it adopts the official analytics tools, -1 for never"),
    StateField("ti_onboarded", "int64", 0, "tick its shop opens (posting starts)"),
    StateField("active", "bool", True, "still in business", changes=True),
    StateField("exit_reason", "int8", ExitReason.ACTIVE, "an ExitReason code", changes=True),
    StateField("violations", "int32", 0, "confirmed violations", changes=True),
    StateField("ti_rectify_until", "int64", -1, "end of its rectification period (no posting before)",
               changes=True),
    StateField("style", "int8", Style.CONTENT, "a Style code: its marketing style", changes=True),
    StateField("post_rate", "float64", 0.0, "mean paid posts per tick: its traffic budget", changes=True),
)

class MerchantTable(Stateful):
    """Every merchant's numbers, one host array of length M per :data:`MERCHANT_STATE` column."""

    STATE = tuple(f.name for f in MERCHANT_STATE if f.changes)

    def __init__(self, n_merchants: int) -> None:
        for f in MERCHANT_STATE:
            setattr(self, f.name, np.full(n_merchants, f.default, dtype=f.dtype))

    @property
    def n(self) -> int:
        return int(self.uid.shape[0])

    def analytics(self, tick: int) -> np.ndarray:
        """(bool[M]) merchants using the analytics tools at ``tick``."""
        return (self.ti_analytics >= 0) & (self.ti_analytics <= tick)

    def can_post(self, tick: int) -> np.ndarray:
        """(bool[M]) active, onboarded and not rectifying."""
        return self.active & (tick >= self.ti_onboarded) & (tick >= self.ti_rectify_until)

    def leave(self, merchants: Any, reason: ExitReason) -> None:
        """Take the given merchants (mask or indices) out of business for ``reason``."""
        self.active[merchants] = False
        self.exit_reason[merchants] = reason


def draw_merchants(config: Any, uids: np.ndarray) -> MerchantTable:
    """The merchants' table at the start of a run: every column drawn from counter-based streams."""
    seed, mc = config.run.seed, config.merchants
    m = uids.shape[0]
    table = MerchantTable(m)
    table.uid[:] = uids
    table.category[:] = draw_categories(rng.uniform(rng.stream_key(seed, "merchant.category"), m),
                                        config.population.n_categories)
    z = rng.normal(rng.stream_key(seed, "merchant.price"), m)
    # to the fen, and at least one: a price rounded to zero divided the price response by zero and
    # crashed a run with a tiny valid price_median (issue 32)
    table.price[:] = np.maximum(np.round(mc.price_median * np.exp(mc.price_sigma * z), 2), 0.01)
    u = rng.uniform(rng.stream_key(seed, "merchant.compliance"), m)
    table.compliance[:] = np.where(u < mc.share_no_brand, Compliance.NO_BRAND,
                                   np.where(u < mc.share_no_brand + mc.share_exaggerated, Compliance.EXAGGERATED,
                                            Compliance.COMPLIANT))
    table.uses_component[:] = rng.bernoulli(rng.stream_key(seed, "merchant.transaction_component"), m,
                                            mc.share_transaction_component)
    u = rng.uniform(rng.stream_key(seed, "merchant.style"), m)
    table.style[:] = np.where(u < mc.share_content, Style.CONTENT,
                              np.where(u < 1.0 - mc.share_inducement, Style.AD, Style.INDUCEMENT))
    z = rng.normal(rng.stream_key(seed, "merchant.quality"), m)
    table.quality[:] = np.exp(mc.quality_sigma * z - mc.quality_sigma**2 / 2)
    # no brand qualification, no certification; the rest are certified or only verified
    certified = rng.bernoulli(rng.stream_key(seed, "merchant.certified"), m, mc.share_certified)
    table.certification[:] = np.where(table.compliance == Compliance.NO_BRAND, Certification.NONE,
                                      np.where(certified, Certification.CERTIFIED, Certification.VERIFIED))
    for name, column in draw_tools(config, table.quality, seed).items():
        getattr(table, name)[:] = column
    table.ti_onboarded[:] = np.where(table.uses_component, 0, ONBOARDING_TICKS)
    table.post_rate[:] = mc.post_rate
    return table


class _Row:
    """A column of the model's :class:`MerchantTable`, seen from one agent (a Python number; a
    coded column's code is a plain int, see :mod:`weishang.model.codes`); setting it writes the
    table."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, agent: "Merchant | None", owner: type) -> Any:
        if agent is None:
            return self
        return getattr(agent.model.merchants, self.name)[agent.index].item()

    def __set__(self, agent: "Merchant", value: Any) -> None:
        getattr(agent.model.merchants, self.name)[agent.index] = value


@dataclass(frozen=True)
class AdaptDraws:
    """One adaptation's uniform draws (float64[M] each, index = merchant index)."""

    style: np.ndarray
    groups: np.ndarray


class _CountersPerModel(weakref.WeakKeyDictionary):
    """Mesa's per-model counters of agent ids, holding the models weakly.

    Mesa 3.3's ``Agent._ids`` is a class-level ``defaultdict`` keyed by model, so every model
    that ever created an agent stays alive for the life of the process (mesa#3179, fixed upstream
    by mesa#3180): a sweep worker grew by a whole model, ~0.5 GiB at 200k users, per run.
    """

    def __getitem__(self, model: Any) -> Any:
        try:
            return super().__getitem__(model)
        except KeyError:
            counter = itertools.count(1)
            self[model] = counter
            return counter


class Merchant(mesa.Agent):
    """One merchant, owning an account in the friend graph.

    Its numbers are its row of the model's :class:`MerchantTable`, read and written as
    attributes (``uid``, ``category``, ``price``, ``quality``, ``compliance``, ``certification``,
    ``provider``, the tools, ``active``, ``exit_reason``, ``violations``, ``style``,
    ``post_rate``, ...; see :data:`MERCHANT_STATE`). Its own memory is the budget rule's:
    ``last_period_profit`` (None before the first adaptation) and ``budget_direction``.
    """

    #: the agent's own state: the budget rule's memory
    MEMORY = ("last_period_profit", "budget_direction")
    #: unique ids count per model, as in Mesa, without keeping finished models alive
    _ids = _CountersPerModel()

    def __init__(self, model: "CommerceModel", index: int) -> None:
        super().__init__(model)
        self.index = index
        self.last_period_profit: float | None = None
        self.budget_direction = 1

    def consider_exit(self, window_profit: float, draw: float) -> None:
        """Give up when the last ``exit_window`` ticks lost money, with probability
        ``exit_hazard`` a day (``draw`` is this tick's uniform draw).

        Losses come from rising traffic cost and thin sales under homogeneous competition;
        merchants differ in how long they hold on, so exits spread out instead of falling on
        the day the window first fills.
        """
        if self.active and window_profit < 0 and draw < self.model.config.merchants.exit_hazard:
            self.model.merchants.leave(self.index, ExitReason.UNPROFITABLE)

    def adapt(self, style_payoff: dict[Style, float], oversized: np.ndarray, draws: AdaptDraws,
              books: "MerchantAccounts") -> bool:
        """Move budget, style and groups toward what paid (every ``merchants.adapt_every`` ticks);
        returns whether the merchant splits its oversized groups.

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
            return False
        mc, i = self.model.config.merchants, self.index
        posts, profit = int(books.period_posts[i]), float(books.period_profit[i])
        if posts > 0 and style_payoff:
            own = float(books.period_contribution[i]) / posts
            best = max(style_payoff, key=lambda style: (style_payoff[style], Style.label(style)))
            scale = abs(style_payoff[best]) + abs(own)
            gap = (style_payoff[best] - own) / scale if scale > 0 else 0.0
            if best != self.style and draws.style[i] < mc.adapt_rate * gap:
                self.style = best
        if self.last_period_profit is None:
            self.budget_direction = 1 if profit > 0 else -1
        elif profit < self.last_period_profit:
            self.budget_direction = -self.budget_direction
        self.last_period_profit = profit
        self.post_rate = min(self.post_rate * (1.0 + mc.budget_step) ** self.budget_direction, mc.post_rate_max)
        downweight = self.model.config.platform.group_downweight
        return bool(oversized[i]) and draws.groups[i] < mc.adapt_rate * (1.0 - downweight)


for _field in MERCHANT_STATE:
    setattr(Merchant, _field.name, _Row(_field.name))
