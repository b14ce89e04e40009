"""Traffic allocation (SPEC sections 1, 2, 4): turning merchants' posts into cascades and their
level-1 exposures, "social first".

Channels modelled so far:

* ``moments``: the post appears in the merchant's friends' Moments feeds; each friend sees it
  with ``cascade.p_view_friend``.
* ``official_account``: the mall pushes the post to the account's followers: each friend follows
  with ``channels.p_follow_account`` and opens a push with ``community.push_open_rate``.
* ``search``: mini-program search, public traffic ("system recommendation"): searchers are drawn
  from the merchant's city (LBS) and kept when the post's category is among their interest tags;
  the ranking gives cheaper offers more searchers (``channels.search_price_weight``). Searchers
  are strangers, so they trust the post less (``cascade.trust_stranger``).
* ``groups``: the post goes to one part of one of the merchant's groups; members read it that
  day or get it as a targeted push, down-weighted in parts over the threshold (see
  :mod:`weishang.model.mechanisms.community`). Besides the paid posts drawn for groups, a merchant running a group
  operates it with free community posts (``community.group_post_rate`` a day), and buyers it
  recruited into the group read them too (private traffic).
* ``live_stream``: a mini-program live stream, by merchants that live-stream (``tools.share_live``;
  the others post to Moments instead); friends join with ``channels.p_view_live`` and convert
  better while watching (``channels.live_conversion_boost``); its level-3 (live fission)
  reaches strangers like any other post's.
* ``video_account``: a short video on the merchant's video account (视频号). The recommender
  shows it to staged traffic pools of users interested in its category
  (:func:`weishang.kernels.video.pool_exposures`: ``channels.video_pool_sizes`` times
  ``video_traffic_share``, growing ``video_traffic_growth`` a year), promoting it to the next,
  larger pool when enough of a pool watch it through (``video_promotion``); who watched it through
  are its level-1 viewers (strangers, ``trust_video``), and they pass it on to their friends by
  liking it (``video_social_weight``: the social signal against the algorithm). Its orders go
  through the video shop, a mini-program payment.
* ``external_link``: a Moments post linking out to another platform; its reach is down-weighted
  step by step as links make up more of the merchant's recent paid posts
  (``platform.external_link_share_steps`` and ``external_link_weights``, over
  ``external_link_window_ticks``), and its orders are paid outside WeChat.

Social channels are allocated first: a merchant's friends and groups see its posts before any
public traffic does. Which channel each paid post goes to is drawn from the merchant's own
channel mix (:mod:`weishang.model.mechanisms.channel_choice`), which follows what posts earn under the
platform's rules. A merchant with deep analytics targets the pushes of its friend channels
and its groups (:func:`weishang.model.tools.target_exposures`).

On a GPU the step is a fixed number of launches whatever the number of posts: the tick's post
arrays go to the device in two uploads, and the four friend channels draw their viewers in one
pass, each channel with its own view probability and stream of draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import rng
from ...kernels.backend import concat_ranges
from ...kernels.cascade import draw_in_home_city, expose_neighbours
from ...kernels.video import STAGE_STRIDE, pool_exposures
from ..codes import TICKS_PER_YEAR, Channel
from ..plan import Mechanism, Sync
from ..tools import target_exposures
from .appeal import PostAppeal
from .community import group_exposures
from .posting import MAX_POSTS_PER_TICK, PostCounts

CHANNELS = Channel.labels()
MOMENTS, OFFICIAL_ACCOUNT, SEARCH, GROUPS, LIVE_STREAM, EXTERNAL_LINK, VIDEO_ACCOUNT = Channel
#: channels whose level-1 viewers are the merchant's friends, each seeing a post with the
#: channel's view probability (:func:`friend_view_probabilities`)
FRIEND_CHANNELS = (MOMENTS, OFFICIAL_ACCOUNT, LIVE_STREAM, EXTERNAL_LINK)


@dataclass
class TickPosts:
    """The tick's cascades (host arrays, one entry per post).

    Attributes:
        key: (int64[C]) stable cascade key: merchant index * MAX_POSTS_PER_TICK + post slot.
        merchant: (int64[C]) merchant index.
        origin: (int64[C]) merchant's account.
        channel: (int8[C]) index into :data:`CHANNELS`.
        group: (int64[C]) group part posted to (see :class:`weishang.model.mechanisms.community.GroupParts`), -1 for
            other channels.
        paid: (bool[C]) a paid post (its traffic is bought), not a free community post.
    """

    key: np.ndarray
    merchant: np.ndarray
    origin: np.ndarray
    channel: np.ndarray
    group: np.ndarray
    paid: np.ndarray

    @property
    def n(self) -> int:
        return int(self.key.shape[0])


@dataclass(frozen=True)
class PostArrays:
    """The tick's posts on the device, with what the channels and the cascade need (length C).

    Attributes:
        key, merchant, origin, group (int64), channel (int8): :class:`TickPosts`' fields.
        category_bit: (uint16[C]) the merchant's category as an interest bit.
        search_candidates: (int64[C]) searchers drawn for a search listing (0 for other channels).
        rel_post, rel_share, rel_view, rel_tool: (float64[C]) conversion, sharing, onward-reach
            and level-3 multipliers (see :mod:`weishang.model.mechanisms.appeal`).
        reach_weight: (float64[C]) level-1 reach: the external-link step weight times fatigue.
        targeted: (bool[C]) posts of merchants with deep analytics.
        max_quantity: (int64[C]) most units in one order.
        watch: (float64[C]) chance an interested viewer watches the post's video through (video
            posts; 0 for the others).
    """

    key: Any
    merchant: Any
    origin: Any
    channel: Any
    group: Any
    category_bit: Any
    search_candidates: Any
    rel_post: Any
    rel_share: Any
    rel_view: Any
    rel_tool: Any
    reach_weight: Any
    targeted: Any
    max_quantity: Any
    watch: Any


@dataclass(frozen=True)
class Exposures:
    """Who saw which post: (cascade (int64[X]) local post index, user (int64[X])) on the device."""

    cascade: Any
    user: Any


@dataclass(frozen=True)
class TrafficOut:
    """The traffic step's output: the posts (host and device) and their level-1 exposures."""

    posts: TickPosts
    on_device: PostArrays
    level1: Exposures


def plan_posts(n_posts: np.ndarray, merchant_uid: np.ndarray, group_start: np.ndarray,
               group_count: np.ndarray, channel_mix: np.ndarray | tuple[float, ...],
               seed: int, tick: int, live: np.ndarray | None = None,
               n_group_posts: np.ndarray | None = None) -> TickPosts:
    """Lay out the tick's posts and pick each post's channel.

    Args:
        n_posts: (int64[M]) paid posts each merchant makes this tick; their channels are drawn.
        n_group_posts: (int64[M]) community posts each merchant makes to its own groups (channel
            ``groups``), after its paid posts in slot order, so a paid post's key and draws do
            not depend on them. ``n_posts + n_group_posts`` must not exceed
            :data:`~weishang.model.merchant.MAX_POSTS_PER_TICK`.
        merchant_uid: (int64[M]) merchants' accounts.
        group_start, group_count: (int64[M]) each merchant's group parts are
            ``group_start[m] .. group_start[m] + group_count[m] - 1``.
        channel_mix: (float64[M, 7]) each merchant's shares of paid posts by channel, in
            :data:`CHANNELS` order, or one row of shares for all; a post drawn for groups by a
            merchant without a group goes to Moments.
        live: (bool[M]) merchants that live-stream (all when omitted); a live post drawn by a
            merchant that does not goes to Moments.
    """
    n_group_posts = np.zeros_like(n_posts) if n_group_posts is None else n_group_posts
    total = n_posts + n_group_posts
    merchant = np.repeat(np.arange(n_posts.shape[0], dtype=np.int64), total)
    slot = concat_ranges(np.zeros_like(total), total, xp=np)  # 0, 1, ... within each merchant
    key = merchant * MAX_POSTS_PER_TICK + slot
    u = rng.uniform(rng.stream_key(seed, "traffic.channel", tick), key)
    mix = np.asarray(channel_mix, dtype=np.float64)
    cumulative = np.cumsum(mix, axis=-1)
    cumulative = cumulative[merchant] if mix.ndim == 2 else cumulative[None, :]
    # the channel whose cumulative share first exceeds the draw (searchsorted, side="right", per row)
    channel = np.minimum((cumulative <= u[:, None]).sum(axis=1), len(CHANNELS) - 1)
    paid = slot < n_posts[merchant]
    channel[~paid] = GROUPS
    channel[(channel == GROUPS) & (group_count[merchant] == 0)] = MOMENTS
    if live is not None:
        channel[(channel == LIVE_STREAM) & ~live[merchant]] = MOMENTS
    which = rng.integers(rng.stream_key(seed, "traffic.group", tick), key, np.maximum(group_count[merchant], 1))
    group = np.where(channel == GROUPS, group_start[merchant] + which, -1)
    return TickPosts(key=key, merchant=merchant, origin=merchant_uid[merchant],
                     channel=channel.astype(np.int8), group=group, paid=paid)


def expose_searchers(origin: Any, category_bit: Any, n_candidates: Any, city: Any, city_start: Any,
                     interests: Any, cascade: Any, cascade_key: Any, key: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Searchers matched to listings: candidates from the merchant's city, kept on interest match.

    Args:
        origin: (int64[S]) merchants' accounts of the listed posts; category_bit (uint16[S]).
        n_candidates: (int64[S]) searchers drawn per listing.
        city (int32[N]), city_start (int64[K+1]): cities, contiguous in user id.
        interests: (uint16[N]) interest bitmasks.
        cascade: (int64[S]) local cascade index of each listing; cascade_key (int64[C]).
        key: stream key; candidate j of post k has draw index ``k * 2^20 + j``.

    Returns:
        (cascade (int64[X]), user (int64[X])) of matched searchers.
    """
    owner, user = draw_in_home_city(origin, n_candidates, cascade_key[cascade] * (1 << 20), city, city_start, key,
                                    xp=xp)
    match = (interests[user] & category_bit[owner]) != 0
    return cascade[owner][match], user[match]


def level1_exposures(post_arrays: PostArrays, pop: Any, config: Any, group_parts: Any, city_start: Any,
                     seed: int, tick: int, *, xp: ModuleType,
                     recruits: tuple[Any, Any] | None = None) -> Exposures:
    """The channels' level-1 exposures, on the device.

    Args:
        post_arrays: the tick's :class:`PostArrays`.
        pop: the :class:`~weishang.model.population.Population`.
        config: the :class:`~weishang.model.config.ScenarioConfig`.
        group_parts: the :class:`~weishang.model.mechanisms.community.GroupParts` group posts go to.
        city_start: (int64[K+1]) first user of each city.
        recruits: merchant -> buyers CSR of buyers recruited into the merchant's group (they
            read its group posts), see :func:`weishang.model.mechanisms.community.group_exposures`.
    """
    channel = post_arrays.channel
    keys = post_arrays.key
    tools = config.tools
    targeted = post_arrays.targeted

    def boost(posts: Any) -> Any:
        """(float64[S]) deep-analytics merchants push harder (matched viewers keep all of it,
        off-interest viewers are thinned by ``targeted_only``)."""
        return xp.where(targeted[posts], tools.analytics_match_boost, 1.0)

    def targeted_only(cascade: Any, user: Any, stream: str) -> tuple[Any, Any]:
        return target_exposures(cascade, user, targeted, post_arrays.category_bit, pop.state["interests"],
                                tools.analytics_offinterest_keep / tools.analytics_match_boost, keys,
                                rng.stream_key(seed, stream, tick), xp=xp)

    # the friend channels in one pass: a post's friends see it with its channel's view probability
    # (times a weight: its external-link step and fatigue), drawn from its channel's stream. The
    # probabilities and stream keys by channel code go over in one upload (the probabilities'
    # bits carried as uint64 beside the keys, viewed back as float64 on the device)
    tables = xp.asarray(np.stack([friend_view_probabilities(config).view(np.uint64), np.array(
        [rng.stream_key(seed, f"traffic.{CHANNELS[ch]}.view", tick) for ch in Channel], dtype=np.uint64)]))
    view, view_key = tables[0].view(xp.float64), tables[1]
    post_view = view[channel]
    posts = xp.flatnonzero(post_view >= 0.0)
    p = post_view[posts] * post_arrays.reach_weight[posts] * boost(posts)
    friend_cascade, friend_user = expose_neighbours(pop.indptr, pop.indices, post_arrays.origin[posts], posts, keys,
                                                    xp.minimum(p, 1.0), view_key[channel[posts]], xp=xp)
    parts = [targeted_only(friend_cascade, friend_user, "traffic.analytics.target")]
    posts = xp.flatnonzero(channel == SEARCH)
    parts.append(expose_searchers(post_arrays.origin[posts], post_arrays.category_bit[posts],
                                  post_arrays.search_candidates[posts], pop.state["city"], city_start,
                                  pop.state["interests"], posts, keys,
                                  rng.stream_key(seed, "traffic.search.candidates", tick), xp=xp))
    posts = xp.flatnonzero(channel == GROUPS)
    # deep analytics target group pushes as they do friend pushes (a stream of their own)
    group_cascade, group_user = group_exposures(
        group_parts, pop.group_members, post_arrays.group[posts], posts, keys, post_arrays.category_bit,
        pop.state["profile_complete"], pop.state["interests"], seed, tick, xp=xp,
        reach_weight=post_arrays.reach_weight[posts] * boost(posts), recruits=recruits,
        merchant=post_arrays.merchant[posts])
    parts.append(targeted_only(group_cascade, group_user, "traffic.analytics.target_groups"))
    parts.append(video_exposures(post_arrays, xp.flatnonzero(channel == VIDEO_ACCOUNT), pop.state["interests"], config,
                                 seed, tick, xp=xp))
    return Exposures(xp.concatenate([c for c, _ in parts]), xp.concatenate([u for _, u in parts]))


def friend_view_probabilities(config: Any) -> np.ndarray:
    """(float64[7]) by channel code, the chance a friend sees a post of a friend channel
    (:data:`FRIEND_CHANNELS`); -1 for the other channels."""
    view = np.full(len(Channel), -1.0)
    view[MOMENTS] = config.cascade.p_view_friend
    view[OFFICIAL_ACCOUNT] = config.channels.p_follow_account * config.community.push_open_rate
    view[LIVE_STREAM] = config.channels.p_view_live
    view[EXTERNAL_LINK] = config.cascade.p_view_friend
    return view


def video_pool_sizes(config: Any, tick: int) -> list[int]:
    """Candidates at each stage of a video's traffic pools at ``tick``: the configured sizes
    times the recommender's traffic share, grown at ``video_traffic_growth`` a year (at most
    :data:`~weishang.kernels.video.STAGE_STRIDE` - 1 a stage, the draws' room)."""
    ch = config.channels
    scale = ch.video_traffic_share * (1.0 + ch.video_traffic_growth) ** (tick / float(TICKS_PER_YEAR))
    return [min(max(int(round(size * scale)), 0), STAGE_STRIDE - 1) for size in ch.video_pool_sizes]


def video_exposures(post_arrays: PostArrays, posts: Any, interests: Any, config: Any, seed: int, tick: int, *,
                    xp: ModuleType) -> tuple[Any, Any]:
    """(cascade (int64[X]), user (int64[X])) the tick's videos' level-1 viewers: the users of their
    traffic pools who watched them through."""
    if posts.shape[0] == 0:
        return xp.zeros(0, dtype=xp.int64), xp.zeros(0, dtype=xp.int64)
    pools = pool_exposures(post_arrays.key[posts], post_arrays.category_bit[posts], post_arrays.watch[posts],
                           interests, video_pool_sizes(config, tick), config.channels.video_promotion,
                           rng.stream_key(seed, "traffic.video.pool", tick),
                           rng.stream_key(seed, "traffic.video.watch", tick), xp=xp)
    return posts[pools.video[pools.watched]], pools.user[pools.watched]


def external_link_weight(link_share: np.ndarray, steps: list[float], weights: list[float]) -> np.ndarray:
    """(float64[M]) reach weight of a merchant's external links, stepped by the share of its
    recent paid posts that link out of WeChat.

    Args:
        link_share: (float64[M]) external links over paid posts in the trailing window (today's
            included); 0 for a merchant without paid posts.
        steps: shares at which the weight steps down (increasing); a share at a step is past it.
        weights: one more weight than steps: below the first step, between steps, from the last on.
    """
    return np.asarray(weights, dtype=np.float64)[np.searchsorted(np.asarray(steps), link_share, side="right")]


class Traffic(Mechanism):
    """The platform allocates traffic: lays out the tick's posts, picks their channels, weighs
    their reach, and draws their level-1 viewers.

    State: each merchant's paid posts and external-link posts in each of the trailing window's
    ticks (``recent_posts``, ``recent_links``), for the stepwise down-weighting.

    Why a share and not a count: a merchant posts about once a month at the calibrated budget, so
    a count of links in a week never reaches a step, and the rule would bind nowhere; the share
    of its paid posts that send buyers out of WeChat is what the platform wants to keep low, and it
    binds at any post rate.
    """

    name = "traffic"
    engine = "arrays"
    sections = ("channels", "cascade", "platform", "tools", "community", "merchants", "population")
    uses = ("community", "adaptation")
    does = "posts go to seven channels, social first; level-1 viewers drawn per channel (group reads and pushes, analytics targeting, video traffic pools)"
    STATE = ("recent_posts", "recent_links", "video_adopted")
    syncs = (
        Sync("friend edges of the friend-channel posts", "the host sizes the list of edges to draw views on "
             "(a CSR hop: how many friends the posts' accounts have)"),
        Sync("group members reached", "the host sizes the group members' and recruited buyers' lists to draw "
             "reads on (a CSR hop each)", most=2),
        Sync("searchers drawn", "the host sizes the list of searcher draws (a count per listing, drawn on the "
             "device)"),
        Sync("video promotion", "the host decides whether any video goes on to the next traffic pool (a "
             "decision; the loop stops early when none does)", most=3),
    )

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        m = model.merchants.n
        window = self.config.platform.external_link_window_ticks
        #: (int16[W, M]) paid posts, and external-link posts, per merchant in each of the last W
        #: ticks (rings by tick; at most MAX_POSTS_PER_TICK a tick)
        self.recent_posts = np.zeros((window, m), dtype=np.int16)
        self.recent_links = np.zeros((window, m), dtype=np.int16)
        #: (bool[M]) merchants that have posted a video on their video account
        self.video_adopted = np.zeros(m, dtype=bool)
        self.appeal = PostAppeal(self.config, model.merchants, model.population, model.backend)
        mc, ch = self.config.merchants, self.config.channels
        # search ranks cheaper offers higher: more searchers see a cheaper merchant's listing
        self.search_rank = (mc.price_median / model.merchants.price) ** ch.search_price_weight
        self.category_bit = (np.uint16(1) << model.merchants.category.astype(np.uint16)).astype(np.uint16)
        city_sizes = np.bincount(self.backend.to_host(model.population.state["city"]))
        self.city_start = self.backend.to_device(np.concatenate([[0], np.cumsum(city_sizes)]).astype(np.int64))

    def step(self, tick: int, posting: PostCounts) -> TrafficOut:
        cfg, seed, merchants = self.config, self.config.run.seed, self.model.merchants
        ch, plat = cfg.channels, cfg.platform
        parts = self.model.community.parts
        posts = plan_posts(posting.paid, merchants.uid, parts.part_start, parts.part_count,
                           self.model.adaptation.channels.mix, seed, tick, live=merchants.live,
                           n_group_posts=posting.community)
        # stepwise down-weighting by the share of the merchant's recent paid posts (today's
        # included) that link out of WeChat
        self.video_adopted[posts.merchant[posts.channel == VIDEO_ACCOUNT]] = True
        ring = tick % self.recent_links.shape[0]
        self.recent_posts[ring] = posting.paid
        self.recent_links[ring] = np.bincount(posts.merchant[posts.channel == EXTERNAL_LINK], minlength=merchants.n)
        paid_posts = self.recent_posts.sum(axis=0, dtype=np.int64)
        link_share = self.recent_links.sum(axis=0, dtype=np.int64) / np.maximum(paid_posts, 1)
        link_weight = external_link_weight(link_share, plat.external_link_share_steps,
                                           plat.external_link_weights)[posts.merchant]
        fatigue = self.appeal.fatigue()[posts.merchant]
        reach_weight = np.where(posts.channel == EXTERNAL_LINK, link_weight, 1.0) * fatigue
        expected = ch.search_candidates * self.search_rank[posts.merchant] * fatigue
        search_candidates = np.floor(expected + rng.uniform(rng.stream_key(seed, "traffic.search.n", tick), posts.key))
        search_candidates[posts.channel != SEARCH] = 0
        max_quantity = np.where(posts.channel == OFFICIAL_ACCOUNT, ch.mall_max_quantity, ch.max_quantity)
        rel_post, rel_share, rel_view = self.appeal.post_multipliers(posts, tick)
        # tiered data access: only merchants certified enough act on deep analytics (targeting)
        deep = merchants.analytics(tick) & (merchants.certification >= plat.deep_data_min_certification)
        on_device = self._upload(posts, search_candidates, max_quantity, reach_weight, rel_post, rel_share, rel_view,
                                 deep)
        level1 = level1_exposures(on_device, self.model.population, cfg, parts, self.city_start, seed, tick,
                                  xp=self.xp, recruits=self.model.community.ledger.recruit_index())
        return TrafficOut(posts=posts, on_device=on_device, level1=level1)

    def _upload(self, posts: TickPosts, search_candidates: np.ndarray, max_quantity: np.ndarray,
                reach_weight: np.ndarray, rel_post: np.ndarray, rel_share: np.ndarray, rel_view: np.ndarray,
                deep: np.ndarray) -> PostArrays:
        """The tick's post arrays on the device in two copies (one of integers, one of floats),
        not fifteen: on a GPU each copy is a transfer and a wait."""
        m = posts.merchant
        ints = self.backend.to_device(np.stack([
            posts.key, m, posts.origin, posts.group, search_candidates.astype(np.int64), max_quantity.astype(np.int64),
            posts.channel, self.category_bit[m], deep[m]]).astype(np.int64, copy=False))
        floats = self.backend.to_device(np.stack([
            rel_post, rel_share, rel_view, self.appeal.rel_tool[m], reach_weight,
            np.where(posts.channel == VIDEO_ACCOUNT, self.appeal.watch_through(posts), 0.0)]).astype(np.float64,
                                                                                                   copy=False))
        xp = self.xp
        return PostArrays(key=ints[0], merchant=ints[1], origin=ints[2], group=ints[3], search_candidates=ints[4],
                          max_quantity=ints[5], channel=ints[6].astype(xp.int8), category_bit=ints[7].astype(xp.uint16),
                          targeted=ints[8].astype(xp.bool_), rel_post=floats[0], rel_share=floats[1],
                          rel_view=floats[2], rel_tool=floats[3], reach_weight=floats[4], watch=floats[5])
