"""The cascade: every post spreads through the friend graph, level by level (SPEC section 2).

Level 1 is the channel's viewers (drawn by :mod:`weishang.model.traffic`); level 2, friends of
level-1 sharers; level 3, strangers in a level-2 sharer's city put in front of the post by its
tool (group buying, price cutting, live fission). Each viewer buys, shares, or neither; a user
sees a given post at most once. The work is :func:`weishang.kernels.cascade.propagate`.
"""

from __future__ import annotations

from typing import Any

from ..kernels.cascade import CascadeOutcome, LevelRule, propagate
from .plan import Mechanism
from .traffic import TrafficOut


def level_rules(config: Any) -> tuple[LevelRule, LevelRule, LevelRule]:
    """The three levels' view, buy and share probabilities (``cascade`` section)."""
    c = config.cascade
    return (LevelRule(p_view=1.0, p_buy=c.p_buy_friend, p_share=c.p_share_friend),
            LevelRule(p_view=c.p_view_share, p_buy=c.p_buy_share, p_share=c.p_share_tool),
            LevelRule(p_view=c.p_view_stranger, p_buy=c.p_buy_stranger, p_share=0.0,
                      n_strangers=c.n_stranger_views))


class Cascade(Mechanism):
    name = "cascade"
    engine = "kernel"
    sections = ("cascade",)
    does = "friends, friends of sharers, strangers reached by tools; a user sees a post at most once"

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.levels = level_rules(self.config)

    def step(self, tick: int, traffic: TrafficOut) -> CascadeOutcome:
        pop, posts, traffic_step = self.model.population, traffic.on_device, self.model.traffic
        return propagate(
            pop.indptr, pop.indices, traffic.level1.cascade, traffic.level1.user,
            cascade_key=posts.key, origin=posts.origin, category_bit=posts.category_bit,
            rel_post=posts.rel_post, max_quantity=posts.max_quantity,
            interests=pop.state["interests"], rel_buy=pop.state["rel_buy"],
            rel_off_interest=self.config.cascade.rel_off_interest, levels=self.levels,
            seed=self.config.run.seed, tick=tick, xp=self.xp, city=pop.state["city"],
            city_start=traffic_step.city_start, rel_view=posts.rel_view, rel_share=posts.rel_share,
            rel_tool=posts.rel_tool)
