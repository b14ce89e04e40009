"""Merchants decide (Mesa): who gives up, and how the rest adapt budget, style and groups.

Every tick, a merchant whose last ``exit_window`` days lost money considers giving up
(:meth:`~weishang.model.merchant.Merchant.consider_exit`); every ``adapt_every`` ticks every
merchant adapts (:meth:`~weishang.model.merchant.Merchant.adapt`), seeing what each marketing
style earned its peers, moves its channel mix toward what posts earn on each channel
(:mod:`weishang.model.mechanisms.channel_choice`, the same rule for all, applied as arrays), then its books
open a new period. The draws are made here for all
merchants at once, from counter-based streams, so no decision depends on the order Mesa steps
the agents in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...kernels import rng
from ..codes import Channel, Compliance, Style
from ..merchant import AdaptDraws, Merchant
from ..plan import Mechanism, TickRecord
from ..schema import CHANNEL, STYLE, Column, T, col, family
from .channel_choice import ChannelMix


@dataclass(frozen=True)
class AdaptationOut:
    """One tick of decisions: ``exits`` (merchants that gave up) and ``groups_split``."""

    exits: int
    groups_split: int


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Adaptation.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "n_active_merchants", "int64", "merchants", "last", "merchants in business at the end of the tick")
    + col(T, "n_exits", "int64", "merchants", "sum", "merchants that gave up (unprofitable)")
    + col(T, "n_active_compliant", "int64", "merchants", "last", "compliant merchants in business")
    + col(T, "mean_post_rate", "float64", "posts", "mean",
          "mean paid posts per tick budgeted by the merchants in business; null when none is", nullable=True)
    + family(T, "effort_{x}", CHANNEL, "float64", "share", "last",
             "mean share of their paid posts the merchants in business put on {what} (their channel mix); null when "
             "none is", nullable=True)
    + family(T, "n_style_{x}", STYLE, "int64", "merchants", "last", "merchants in business whose style is {what}")
    + col(T, "n_groups_split", "int64", "groups", "sum", "groups merchants split into smaller parts"))


class Adaptation(Mechanism):
    name = "adaptation"
    engine = "mesa"
    sections = ("merchants", "platform", "channels", "population")
    uses = ("books", "community")
    does = "losing merchants may exit; every `adapt_every` days each adapts budget, style, channel mix and groups"
    columns = COLUMNS
    #: the agents' own memory (everything else they know is in the merchants' table), and every
    #: merchant's channel mix
    STATE = ("memory", "channels")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.agents: list[Merchant] = list(Merchant.create_agents(model, model.merchants.n,
                                                                   index=list(range(model.merchants.n))))
        self.channels = ChannelMix(model.merchants.n, self.config.population.n_categories,
                                   self.config.channels.channel_shares(), self.config.channels.reference_payoffs)

    @property
    def memory(self) -> list[tuple[Any, ...]]:
        """Each agent's :data:`~weishang.model.merchant.Merchant.MEMORY`, in merchant order."""
        return [tuple(getattr(agent, name) for name in Merchant.MEMORY) for agent in self.agents]

    @memory.setter
    def memory(self, values: list[tuple[Any, ...]]) -> None:
        for agent, saved in zip(self.agents, values):
            for name, value in zip(Merchant.MEMORY, saved):
                setattr(agent, name, value)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """The merchants in business after today's decisions: how many (and how many compliant),
        exits, their budgets, channel mix and styles, groups split."""
        merchants, mix = self.model.merchants, self.channels.mix
        active = merchants.active
        return {"n_active_merchants": int(active.sum()), "n_exits": record.adaptation.exits,
                "n_active_compliant": int((active & (merchants.compliance == Compliance.COMPLIANT)).sum()),
                "mean_post_rate": float(merchants.post_rate[active].mean()) if active.any() else None,
                **{f"effort_{label}": float(mix[active, c].mean()) if active.any() else None
                   for c, label in enumerate(Channel.labels())},
                **{f"n_style_{label}": int((active & (merchants.style == s)).sum())
                   for s, label in enumerate(Style.labels())},
                "n_groups_split": record.adaptation.groups_split}

    def step(self, tick: int) -> AdaptationOut:
        merchants, seed, m = self.model.merchants, self.config.run.seed, self.model.merchants.n
        draw = rng.uniform(rng.stream_key(seed, "merchant.exit", tick), m)
        books = self.model.books.accounts
        window = books.window_profit(tick)
        exits = 0
        if window is not None:
            # only the losing merchants have a decision to make
            losing = np.flatnonzero(merchants.active & (window < 0))
            for index in losing:
                self.agents[index].consider_exit(float(window[index]), float(draw[index]))
            exits = int((~merchants.active[losing]).sum())
        split = 0
        if (tick + 1) % self.config.merchants.adapt_every == 0:
            split = self.adapt(tick)
        return AdaptationOut(exits=exits, groups_split=split)

    def adapt(self, tick: int) -> int:
        """Every merchant adapts (order-free); its chosen group splits are applied and a new
        period opens. Returns how many groups were split."""
        seed, m, merchants = self.config.run.seed, self.model.merchants.n, self.model.merchants
        draws = AdaptDraws(style=rng.uniform(rng.stream_key(seed, "merchant.adapt.style", tick), m),
                           groups=rng.uniform(rng.stream_key(seed, "merchant.adapt.groups", tick), m))
        books, active, parts = self.model.books.accounts, merchants.active, self.model.community.parts
        payoff: dict[Style, float] = {}
        for style in Style:
            peers = active & (merchants.style == style)
            posted = int(books.period_posts[peers].sum())
            if posted:
                payoff[style] = float(books.period_contribution[peers].sum()) / posted
        oversized = parts.oversized()
        splitting = np.fromiter((agent.adapt(payoff, oversized, draws, books) for agent in self.agents),
                                dtype=bool, count=m)
        split = parts.split(splitting & active)
        mc = self.config.merchants
        self.channels.adapt(active, merchants.category, books.channel_posts, books.channel_gross(mc.margin),
                            books.channel_traffic, response=mc.channel_response, imitation=mc.channel_imitation,
                            rate=mc.channel_adapt_rate)
        books.close_period(active)
        return split
