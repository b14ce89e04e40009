"""What makes a post reach, convert and spread (SPEC sections 2, 7, 9): the per-post multipliers
the traffic step hands the cascade.

* fatigue: friends fold and mute merchants who post more than the default rate;
* homogeneous competition: a category more crowded than the market converts worse;
* retention, trust, live demonstration, price, quality, answered questions, share appeal and
  the induced-sharing ban (see :meth:`PostAppeal.post_multipliers`).

All of it derives from the merchants' table and the config; nothing here is state of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...kernels import rng
from ..codes import Channel, Style
from ..tools import consultation_multiplier

#: retention at which the cascade's conversion and share parameters are quoted: the SPEC's
#: quality content post (section 2)
REFERENCE_RETENTION = 0.38


class PostAppeal:
    """Per-merchant and per-post multipliers (host arrays).

    Args:
        config: the scenario; merchants: the :class:`~weishang.model.merchant.MerchantTable`;
        population: the users (their interests set each category's audience); backend: theirs.
    """

    def __init__(self, config: Any, merchants: Any, population: Any, backend: Any) -> None:
        self.config, self.merchants = config, merchants
        mc, t = config.merchants, config.tools
        self.rel_price = (mc.price_median / merchants.price) ** config.cascade.price_elasticity
        self.consultation = consultation_multiplier(merchants.ai_service, t.p_consult, t.p_unanswered,
                                                    t.ai_resolution)
        #: (float64[M]) level-3 reach of the merchant's posts: marketing tools carry them to strangers
        self.rel_tool = np.where(merchants.marketing_tools, 1.0, t.no_tools_stranger_reach)
        # homogeneous competition: merchants per interested user in each category, relative to the
        # whole market's at the start (see crowding)
        interests = backend.to_host(population.state["interests"])
        bits = 1 << np.arange(config.population.n_categories, dtype=np.uint16)
        self.interested = np.array([np.count_nonzero(interests & b) for b in bits], dtype=np.float64)
        self.market_density = merchants.n / max(self.interested.sum(), 1.0)

    def fatigue(self) -> np.ndarray:
        """(float64[M]) level-1 reach multiplier of each merchant's posts: ``min(1, (post_rate /
        rate) ** post_fatigue)``. Friends fold and mute a merchant who posts more than the
        default rate, so its extra posts reach fewer of them (diminishing returns to budget)."""
        mc = self.config.merchants
        rate = self.merchants.post_rate
        return np.minimum(1.0, (mc.post_rate / np.maximum(rate, 1e-12)) ** mc.post_fatigue)

    def crowding(self) -> np.ndarray:
        """(float64[M]) homogeneous competition: conversion multiplier of each merchant's category.

        ``(density at the start / density now of its category) ** competition_elasticity``, where
        density is active merchants per user interested in the category and the start is the
        whole market's: a category more crowded than the market converts worse, and exits lift
        the survivors.
        """
        category, active = self.merchants.category, self.merchants.active
        per_category = np.bincount(category[active], minlength=self.interested.shape[0])
        density = per_category / np.maximum(self.interested, 1.0)
        ratio = self.market_density / np.maximum(density, 1e-12)
        return (ratio ** self.config.merchants.competition_elasticity)[category]

    def watch_through(self, posts: Any) -> np.ndarray:
        """(float64[C]) chance that an interested viewer watches a post's video through:
        ``channels.video_watch`` times the post's retention (content keeps viewers) and the
        product's quality, at most 1."""
        watch = self.config.channels.video_watch * self.retention(posts) * self.merchants.quality[posts.merchant]
        return np.minimum(watch, 1.0)

    def retention(self, posts: Any) -> np.ndarray:
        """(float64[C]) the share of its viewers a post keeps (``retention_content`` for a
        quality content post, ``retention_ad`` otherwise), over :data:`REFERENCE_RETENTION`."""
        c = self.config.cascade
        style = self.merchants.style[posts.merchant]
        return np.where(style == Style.CONTENT, c.retention_content, c.retention_ad) / REFERENCE_RETENTION

    def post_multipliers(self, posts: Any, tick: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-post multipliers (float64[C]) of conversion, sharing and onward reach.

        * retention: a quality content post keeps ``retention_content`` of its viewers, a plain
          ad link or inducement post ``retention_ad``; only viewers who read on buy or share.
          Conversion and share parameters are quoted for a post that keeps
          :data:`REFERENCE_RETENTION` of its viewers, so a post scales by its retention over it.
        * trust: searchers meet the post as a stranger's (system) recommendation, and pass it on
          as seldom as they trust it; an official-account push is a brand broadcast, trusted
          less than the merchant's personal post.
        * live: watching a live demonstration lifts conversion (``live_conversion_boost``).
        * price: cheaper than the median converts better (``price_elasticity``).
        * the merchant: product quality, sales not lost to unanswered questions (AI customer
          service, :func:`weishang.model.tools.consultation_multiplier`), and its category's crowding.
        * share appeal: log-normal per post (a few go viral), times the inducement boost.
        * under the induced-sharing ban, inducement posts lose ``inducement_penalty`` of the
          reach their shares would have had.

        Args:
            posts: the tick's :class:`~weishang.model.mechanisms.traffic.TickPosts`.
        """
        c, plat, seed = self.config.cascade, self.config.platform, self.config.run.seed
        style = self.merchants.style[posts.merchant]
        retention = self.retention(posts)
        video = posts.channel == Channel.VIDEO_ACCOUNT
        trust = np.select([posts.channel == Channel.SEARCH, posts.channel == Channel.OFFICIAL_ACCOUNT, video],
                          [c.trust_stranger, c.trust_account, self.config.channels.trust_video], 1.0)
        live = np.where(posts.channel == Channel.LIVE_STREAM, self.config.channels.live_conversion_boost, 1.0)
        merchant_factor = self.rel_price * self.merchants.quality * self.consultation * self.crowding()
        rel_post = merchant_factor[posts.merchant] * trust * retention * live
        z = rng.normal(rng.stream_key(seed, "traffic.virality", tick), posts.key)
        appeal = np.exp(c.virality_sigma * z - c.virality_sigma**2 / 2)
        induced = style == Style.INDUCEMENT
        # a searcher owes the shop nothing: it vouches for it to friends as rarely as it trusts it;
        # a video's watcher passes it on by liking it, weighted by the social signal
        vouch = np.where(video, self.config.channels.video_social_weight, trust)
        rel_share = retention * vouch * appeal * np.where(induced, c.inducement_share_boost, 1.0)
        penalty = plat.inducement_penalty if plat.induced_sharing_ban else 0.0
        rel_view = np.where(induced, 1.0 - penalty, 1.0)
        return rel_post, rel_share, rel_view
