"""The cascade: every post spreads through the friend graph, level by level (SPEC section 2).

Level 1 is the channel's viewers (drawn by :mod:`weishang.model.mechanisms.traffic`); level 2, friends of
level-1 sharers; level 3, strangers in a level-2 sharer's city put in front of the post by its
tool (group buying, price cutting, live fission). Each viewer buys, shares, or neither; a user
sees a given post at most once. The work is :func:`weishang.kernels.cascade.propagate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...kernels.cascade import CascadeOutcome, LevelRule, propagate
from ..plan import Mechanism, Sync
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
    uses = ("traffic",)
    does = "friends, friends of sharers, strangers reached by tools; a user sees a post at most once"
    syncs = (
        Sync("friend edges of the level-1 sharers", "the host sizes the list of edges to draw level-2 views on "
             "(a CSR hop)"),
        Sync("strangers reached", "the host sizes the list of stranger draws (a binomial count per level-2 "
             "sharer, drawn on the device)"),
    )

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.levels = level_rules(self.config)

    def step(self, tick: int, traffic: TrafficOut) -> CascadeOutcome:
        return self.spread(tick, traffic.on_device, traffic.level1.cascade, traffic.level1.user)

    def spread(self, tick: int, posts: Any, level1_cascade: Any, level1_user: Any,
               trace: bool = False) -> CascadeOutcome:
        """The tick's cascades of ``posts`` (a :class:`~weishang.model.mechanisms.traffic.PostArrays`, or
        some of its rows) from their level-1 exposures (local post index and user, int64[X])."""
        pop, traffic_step = self.model.population, self.model.traffic
        return propagate(
            pop.indptr, pop.indices, level1_cascade, level1_user,
            cascade_key=posts.key, origin=posts.origin, category_bit=posts.category_bit,
            rel_post=posts.rel_post, max_quantity=posts.max_quantity,
            interests=pop.state["interests"], rel_buy=pop.state["rel_buy"],
            rel_off_interest=self.config.cascade.rel_off_interest, levels=self.levels,
            seed=self.config.run.seed, tick=tick, xp=self.xp, city=pop.state["city"],
            city_start=traffic_step.city_start, rel_view=posts.rel_view, rel_share=posts.rel_share,
            rel_tool=posts.rel_tool, trace=trace)


def trace_post(model: Any, post: int) -> dict[str, np.ndarray]:
    """Every exposure of one post of the tick the model last ran, on the host: ``user``
    (int64[X]), ``level`` (int8[X], 1-based), ``bought`` and ``shared`` (bool[X]), with the
    post's ``merchant`` account (``origin``). The post is spread again on its own: its draws
    depend on its key, not on the other posts, so it reaches, sells and is shared exactly as it
    did in the tick (tested against the tick's counts). For looking at one cascade (the
    dashboard's drawing of it); ``post`` is its row in the tick's posts.
    """
    from dataclasses import fields  # noqa: PLC0415

    record, xp, host = model.record, model.xp, model.backend.to_host
    if record is None:
        raise ValueError("no tick has run yet: step the model first")
    traffic = record.traffic
    n_posts = traffic.posts.n
    if not 0 <= post < n_posts:
        raise ValueError(f"post {post}: the last tick had posts 0 .. {n_posts - 1}")
    one = xp.asarray([post], dtype=xp.int64)
    posts = type(traffic.on_device)(**{f.name: getattr(traffic.on_device, f.name)[one]
                                       for f in fields(traffic.on_device)})
    mine = xp.flatnonzero(traffic.level1.cascade == post)
    outcome = model.cascade.spread(model.tick, posts, xp.zeros(mine.shape[0], dtype=xp.int64),
                                   traffic.level1.user[mine], trace=True)
    result = {name: host(values) for name, values in outcome.trace.items() if name != "cascade"}
    result["origin"] = int(host(posts.origin)[0])
    return result
