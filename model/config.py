"""The scenario config: one typed, validated object built from TOML.

A scenario is a TOML file laid over the default scenario that ships in the package
(``model/scenarios/default.toml``); ``--set section.key=value`` overrides come last. pydantic
validates the merged document into :class:`ScenarioConfig`: unknown keys, wrong types and
out-of-range values raise :class:`ConfigError`, whose message is one line naming the key, the
value given and what is allowed.

Public contract (stable names): ``run.n_ticks``, ``run.seed``, ``run.backend``,
``population.n_users``, ``merchants.n_merchants``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: WeChat monthly active users, 2022 Q4 (SPEC section 1): absolute figures scale by N / this
WECHAT_MAU = 1.289e9
#: micro-commerce practitioners in 2022 (SPEC section 9)
PRACTITIONERS = 23e6


class ConfigError(ValueError):
    """A scenario, override or config value is invalid; the message is one line for the user."""


class _Section(BaseModel):
    # no NaN or infinity anywhere: a NaN weight or rate would silently disable what it drives
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class RunConfig(_Section):
    """What to run: length, seed and array backend."""

    name: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="scenario name, used in the run directory's name")
    n_ticks: int = Field(90, ge=1, le=100_000, description="number of daily ticks")
    seed: int = Field(1, ge=0, le=2**63 - 1, description="base seed of every random stream")
    backend: Literal["auto", "numpy", "cupy"] = Field(
        "auto", description="array backend: auto takes CuPy when a GPU is present, else NumPy")


class PopulationConfig(_Section):
    """Consumers and their friend graph (SPEC section 1)."""

    n_users: int = Field(200_000, ge=100, le=2_000_000_000, description="N, users simulated")
    n_cities: int = Field(100, ge=1, le=100_000, description="cities per region, Zipf-sized")
    region_users: int = Field(
        200_000, ge=100, le=2_000_000_000,
        description="users per region: the population is N / region_users regions of n_cities Zipf-sized "
                    "cities each (a smaller last one), so city sizes, and the local structure that "
                    "depends on them, stay the same at every N")
    cross_region_share: float = Field(
        0.0, ge=0, le=1,
        description="share of cross-city friendships made with users of any region rather than the user's own: "
                    "0 keeps each region a closed social world, so every intensive figure is the same at every N "
                    "(README, \"Size-free mechanisms\"); above 0, cascades reach further in larger populations")
    mean_degree: float = Field(175.0, gt=0, le=5000, description="mean number of friends")
    max_degree: int = Field(5000, ge=1, le=100_000, description="friend limit (WeChat: 5,000)")
    n_categories: int = Field(12, ge=1, le=16, description="product categories / interest tags")
    merchant_sociability: float = Field(
        8.0, ge=1.0, le=1000.0,
        description="friend-making weight of merchants' accounts relative to an average user")
    edge_list: str = Field(
        "", description="optional Parquet or CSV file of friendships (columns src, dst) used "
                        "instead of the generated graph; relative to the scenario file")


class MerchantsConfig(_Section):
    """Merchant agents (SPEC sections 4-9)."""

    n_merchants: int | None = Field(
        None, ge=1, le=10_000_000,
        description="merchant agents; default scales with n_users (23M per 1.289B users)")
    post_rate: float = Field(0.03183, ge=0, le=8, description="mean posts per merchant per tick")
    price_median: float = Field(215.0, gt=0, le=1e5,
                                description="median unit price (CNY); micro-commerce sells everyday goods, not cars")
    price_sigma: float = Field(0.5, ge=0, le=3, description="log-normal spread of merchants' unit prices")
    margin: float = Field(0.35, ge=0, le=1, description="gross margin on revenue")
    traffic_cost_per_post: float = Field(
        900.0, ge=0, le=1e5,
        description="what a paid post's reach costs (CNY): paid promotion, the price of traffic (times the channel's "
                    "channels.traffic_cost_weights entry)")
    fixed_cost_per_tick: float = Field(3.22136, ge=0, le=1e6, description="fixed cost per day (CNY)")
    exit_window: int = Field(38, ge=1, le=10_000,
                             description="a merchant whose profit over this many ticks is negative may exit")
    exit_hazard: float = Field(0.0016, ge=0, le=1,
                               description="daily chance that a merchant whose window profit is negative gives up")
    share_transaction_component: float = Field(
        0.4, ge=0, le=1, description="share of merchants using the transaction component")
    share_no_brand: float = Field(0.03, ge=0, le=1, description="share without brand qualification")
    share_exaggerated: float = Field(0.05, ge=0, le=1, description="share advertising exaggeratedly")
    share_content: float = Field(0.4, ge=0, le=1,
                                 description="share of merchants whose style is content marketing (quality posts)")
    share_inducement: float = Field(0.2, ge=0, le=1,
                                    description="share whose style is induced sharing; the rest post plain ad links")
    share_certified: float = Field(0.521, ge=0, le=1,
                                   description="share of brand-qualified merchants with full (enterprise) certification; "
                                               "the rest are verified only, and merchants without brand qualification "
                                               "are uncertified")
    quality_sigma: float = Field(0.3, ge=0, le=3,
                                 description="log-normal spread of product quality, a conversion multiplier of mean 1")
    traffic_cost_growth: float = Field(0.2, ge=-0.9, le=10,
                                       description="yearly growth of the traffic cost per post (SPEC section 9)")
    competition_elasticity: float = Field(
        1.537, ge=0, le=5,
        description="homogeneous competition: conversion scales with (active merchants in the category at the start / "
                    "now) ** this, so rivals' exits lift the survivors")
    adapt_every: int = Field(7, ge=1, le=10_000, description="ticks between merchants' adaptation decisions")
    adapt_rate: float = Field(0.5, ge=0, le=1,
                              description="adaptation: chance of acting on a payoff gap, times the relative gap")
    budget_step: float = Field(0.1, ge=0, le=1,
                               description="relative step of a merchant's post rate at each adaptation (hill climbing "
                                           "on profit)")
    channel_response: float = Field(
        1.0, ge=0, le=20,
        description="channel choice: how strongly a merchant's target channel mix follows the payoffs it sees (0: keeps "
                    "the habitual mix of the channel shares)")
    channel_imitation: float = Field(
        3.0, ge=0, le=1e4,
        description="channel choice: a merchant weighs what its category's peers earn per post on a channel as much as "
                    "this many of its own posts there")
    channel_adapt_rate: float = Field(
        0.2, ge=0, le=1,
        description="channel choice inertia: the share of the way a merchant moves its mix toward its target at each "
                    "adaptation")
    post_rate_max: float = Field(4.0, ge=0, le=16, description="highest post rate budget growth can reach")
    post_fatigue: float = Field(
        0.7, ge=0, le=5,
        description="friends fold and mute heavy posters: above the default post_rate, each post's level-1 reach "
                    "scales with (post_rate / rate) ** this")
    stock_cover_ticks: float = Field(5.0, gt=0, le=365,
                                     description="ticks of forecast demand a merchant restocks to cover")
    forecast_alpha: float = Field(0.2, gt=0, le=1, description="smoothing of a merchant's demand forecast (EWMA)")
    forecast_sigma: float = Field(0.6, ge=0, le=5,
                                  description="log-normal error of a forecast made without an ERP or analytics")
    safety_z: float = Field(0.662777, ge=0, le=5,
                            description="safety stock: the order-up-to level is the forecast demand of the cover "
                                        "period x exp(safety_z x sigma)")
    initial_demand: float = Field(1.805, ge=0, le=1e6,
                                  description="units a day a new merchant expects to sell between its posts")
    supplier_resupply: float = Field(
        8.0, ge=0, le=1000,
        description="units the merchant's supplier ships the same day (drop shipping) beyond its shelf, as a multiple "
                    "of its order-up-to level; demand beyond both is lost")
    p_wait_backorder: float = Field(
        0.6, ge=0, le=1,
        description="a buyer whose order cannot ship today waits for the next shipment (presale) and pays now; "
                    "otherwise the sale is lost")
    initial_post_demand: float = Field(20.0, ge=0, le=1e6,
                                       description="units a new merchant expects one post (a campaign) to sell")
    holding_cost: float = Field(0.0005916, ge=0, le=1, description="cost per tick of holding stock, share of its cost value")

    @model_validator(mode="after")
    def _shares(self) -> "MerchantsConfig":
        if self.share_no_brand + self.share_exaggerated > 1:
            raise ValueError("share_no_brand + share_exaggerated must be at most 1")
        if self.share_content + self.share_inducement > 1:
            raise ValueError("share_content + share_inducement must be at most 1")
        return self


class ToolsConfig(_Section):
    """Tools and service providers (SPEC sections 5, 7, 8). Shares are inputs; the GMV carried by
    service providers and the tools' effects on sales are outcomes."""

    share_provider: float = Field(0.3948, ge=0, le=1,
                                  description="share of merchants run through a service provider (Weimob- or "
                                              "Youzan-like), which brings marketing tools and an ERP; better "
                                              "merchants are likelier to sign up")
    share_weimob: float = Field(0.55, ge=0, le=1, description="Weimob-like share of provider merchants (the rest Youzan-like)")
    share_marketing_tools: float = Field(0.83, ge=0, le=1,
                                         description="share of all merchants with marketing tools (group buying, price cutting)")
    share_erp: float = Field(0.61, ge=0, le=1, description="share of all merchants with an ERP")
    share_live: float = Field(0.5, ge=0, le=1,
                              description="share of merchants that live-stream; the others post to Moments instead")
    share_ai_service: float = Field(0.4, ge=0, le=1, description="share of merchants with AI customer service")
    share_analytics: float = Field(0.3, ge=0, le=1,
                                   description="share of merchants adopting the official analytics tools during the run")
    no_tools_stranger_reach: float = Field(
        0.3, ge=0, le=1, description="level-3 reach of a post without marketing tools, relative to one with them")
    p_consult: float = Field(0.5, ge=0, le=1, description="a would-be buyer asks a question before buying")
    p_unanswered: float = Field(0.4, ge=0, le=1,
                                description="a question left to the merchant alone goes unanswered in time (sale lost)")
    ai_resolution: float = Field(0.68, ge=0, le=1, description="share of common questions AI customer service resolves")
    erp_forecast_sigma: float = Field(0.35, ge=0, le=5, description="forecast error with an ERP")
    analytics_forecast_sigma: float = Field(0.514944, ge=0, le=5, description="forecast error with the analytics tools")
    analytics_match_boost: float = Field(
        8.819, ge=1, le=20,
        description="deep analytics: interest-matched friends are pushed the post this many times as often")
    analytics_offinterest_keep: float = Field(
        0.5, ge=0, le=1, description="deep analytics: share of off-interest friends still pushed the post")

    @model_validator(mode="after")
    def _provider_fits(self) -> "ToolsConfig":
        for name in ("share_marketing_tools", "share_erp"):
            if getattr(self, name) < self.share_provider:
                raise ValueError(f"{name} must be at least share_provider: every provider merchant has the tool")
        return self


class ChannelsConfig(_Section):
    """Where merchants post (SPEC section 1) and how each channel finds its viewers.

    Social channels reach the merchant's friends (Moments, the official account's followers) or
    its groups; mini-program search is public traffic: the platform matches a searcher's city
    (LBS) and interest tags to the shop, and ranks cheaper offers higher.
    """

    share_moments: float = Field(0.211318, ge=0, le=1, description="share of posts to Moments (friends)")
    share_official_account: float = Field(0.2592, ge=0, le=1,
                                          description="share of posts pushed through the official-account mall")
    share_search: float = Field(0.341202, ge=0, le=1, description="share of posts listed in mini-program search")
    share_groups: float = Field(0.01828, ge=0, le=1, description="share of posts to the merchant's groups")
    share_live_stream: float = Field(
        0.1, ge=0, le=1,
        description="share of a live-streaming merchant's posts that are mini-program live streams; a merchant that "
                    "does not live-stream (tools.share_live) posts these to Moments")
    share_external_link: float = Field(0.05, ge=0, le=1,
                                       description="share of posts linking out to other platforms (Taobao, Pinduoduo)")
    share_video_account: float = Field(
        0.02, ge=0, le=1,
        description="share of posts that are short videos on the merchant's video account (视频号), distributed by the "
                    "recommender's staged traffic pools and by friends' likes and shares")
    video_pool_sizes: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        [300, 1500, 7500], min_length=1, max_length=8,
        description="video accounts: candidates the recommender draws for a video at each stage of its traffic pools "
                    "(kept when interested in the video's category)")
    video_promotion: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        [0.3, 0.45], max_length=7,
        description="video accounts: the watch-through share of a stage's viewers that promotes a video to the next, "
                    "larger pool (one fewer than video_pool_sizes)")
    video_watch: float = Field(0.35, ge=0, le=1,
                               description="video accounts: chance that an interested viewer watches a video through "
                                           "(times the post's retention and the product's quality)")
    video_traffic_share: float = Field(
        1.0, ge=0, le=100,
        description="video accounts: the public traffic the recommender hands to video accounts, as a multiple of the "
                    "pool sizes (a platform lever)")
    video_traffic_growth: float = Field(
        0.0, ge=-0.9, le=100, description="video accounts: yearly growth of that public traffic (the channel's rise)")
    video_social_weight: float = Field(
        1.0, ge=0, le=20,
        description="video accounts: weight of the social signal (friends' likes and shares) against the algorithm: "
                    "scales how often watchers pass a video on to their friends")
    video_commission: float = Field(
        0.0, ge=0, le=0.5,
        description="video accounts: the video shop's commission on its sales, on top of the transaction component's "
                    "fee (a platform lever; 0 at the default, the source gives no figure)")
    video_external_link_share: float = Field(
        0.0, ge=0, le=1,
        description="video accounts: share of a video's buyers who follow a link out of WeChat (to Taobao, Pinduoduo) "
                    "and pay there; 0 while the platform keeps external links out of videos (the default)")
    trust_video: float = Field(0.20492, ge=0, le=1,
                               description="video accounts: conversion of a pool viewer (a stranger who watched the "
                                           "video through) relative to a friend's")
    p_view_live: float = Field(0.1, ge=0, le=1, description="a friend joins the merchant's live stream")
    live_conversion_boost: float = Field(1.59576, ge=0, le=10,
                                         description="conversion multiplier of live demonstration and interaction "
                                                     "(SPEC section 7 reports 19.7% for mini-program live)")
    p_follow_account: float = Field(0.7827, ge=0, le=1, description="a friend follows the merchant's official account")
    search_candidates: int = Field(665, ge=0, le=1_000_000,
                                   description="searchers per listing drawn from the merchant's city before interest matching")
    search_price_weight: float = Field(1.3, ge=0, le=10,
                                       description="search ranking: candidates scale with (price_median / price) ** this")
    max_quantity: int = Field(1, ge=1, le=100, description="most units in an order from a post")
    mall_max_quantity: int = Field(2, ge=1, le=100,
                                   description="most units in an order from the mall, whose catalogue invites baskets")
    reference_payoffs: list[Annotated[float, Field(ge=-3, le=3)]] = Field(
        [0.4683, 0.5598, -0.6969, -0.5944, 0.2352, -0.4005, -0.2567], min_length=7, max_length=7,
        description="each channel's payoff per paid post relative to the mean, at the calibrated default: what the "
                    "habitual mix (share_*) was formed under (measured by experiments/channel_reference.py)")
    traffic_cost_weights: list[Annotated[float, Field(ge=0, le=100)]] = Field(
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], min_length=7, max_length=7,
        description="what a paid post costs on each channel, as a multiple of merchants.traffic_cost_per_post (moments, "
                    "official_account, search, groups, live_stream, external_link, video_account)")

    @model_validator(mode="after")
    def _shares(self) -> "ChannelsConfig":
        total = sum(self.channel_shares())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"the channel shares (share_*) must sum to 1, got {total:g}")
        if len(self.video_promotion) != len(self.video_pool_sizes) - 1:
            raise ValueError("video_promotion needs one entry fewer than video_pool_sizes")
        return self

    def channel_shares(self) -> tuple[float, ...]:
        """Shares of posts by channel, in :data:`weishang.model.mechanisms.traffic.CHANNELS` order."""
        return (self.share_moments, self.share_official_account, self.share_search, self.share_groups,
                self.share_live_stream, self.share_external_link, self.share_video_account)


class CascadeConfig(_Section):
    """Social fission through the friend graph (SPEC section 2): three levels.

    Level 1: the channel's viewers (the merchant's friends, or searchers). Level 2: friends of
    level-1 sharers. Level 3: strangers reached by level-2 sharers' tools (group buying, price
    cutting, live fission). Conversion falls with distance because trust does.
    """

    p_view_friend: float = Field(0.34713, ge=0, le=1, description="a friend sees a merchant's Moments post")
    p_buy_friend: float = Field(0.311, ge=0, le=1, description="base conversion of a level-1 viewer (a friend)")
    p_share_friend: float = Field(0.02063, ge=0, le=1, description="a level-1 viewer shares the post")
    p_view_share: float = Field(0.25899, ge=0, le=1, description="a sharer's friend sees the share")
    p_buy_share: float = Field(0.15868, ge=0, le=1, description="base conversion of a level-2 viewer")
    p_share_tool: float = Field(0.02, ge=0, le=1,
                                description="a level-2 viewer shares through a tool (group buying, price cutting, live fission)")
    # at most 1000: the viewers a tool share gets are drawn by binomial inversion (kernels.rng.binomial),
    # exact for small n; the bound said 100,000 and a run past 1000 failed mid-run (issue 32)
    n_stranger_views: int = Field(174, ge=0, le=1000,
                                  description="strangers in the sharer's city a tool share is put in front of")
    p_view_stranger: float = Field(0.5, ge=0, le=1, description="a stranger shown a tool share looks at it")
    p_buy_stranger: float = Field(0.06, ge=0, le=1, description="base conversion of a level-3 viewer")
    retention_content: float = Field(0.38, ge=0, le=1, description="share of viewers a quality content post keeps")
    retention_ad: float = Field(0.16, ge=0, le=1, description="share of viewers a plain ad link keeps")
    inducement_share_boost: float = Field(3.0, ge=1, le=100,
                                          description="share multiplier of an induced-sharing post (rewards for sharing)")
    virality_sigma: float = Field(2.502, ge=0, le=5,
                                  description="log-normal spread of posts' share appeal (a few posts go viral)")
    trust_account: float = Field(0.76093, ge=0, le=1,
                                 description="trust in a brand broadcast from an official account relative to a "
                                             "merchant's personal post")
    trust_stranger: float = Field(0.182921, ge=0, le=1,
                                  description="trust in a system recommendation relative to a friend's (search viewers)")
    rel_off_interest: float = Field(0.25, ge=0, le=1,
                                    description="conversion multiplier when the category is not among the viewer's interests")
    price_elasticity: float = Field(0.8, ge=0, le=5,
                                    description="conversion multiplier is (price_median / price) ** elasticity")


class PaymentsConfig(_Section):
    """Payment scenarios and settlement (SPEC section 3)."""

    p_private_transfer: float = Field(
        0.0544268, ge=0, le=1,
        description="an order placed inside WeChat is settled by private transfer outside the official channel; "
                    "with external links' orders, this makes the off-platform share of value (SPEC: 7.7%)")
    mix_qr: float = Field(0.552, ge=0, le=1, description="share of official payments by QR code (T+0)")
    mix_mini_program: float = Field(0.392, ge=0, le=1, description="share by mini-program (T+1)")
    mix_cross_border: float = Field(0.056, ge=0, le=1, description="share cross-border (T+3)")
    daily_tx_qr: float = Field(1.2e8, ge=0, le=1e9, description="QR-code payments a day at full scale, all of WeChat Pay's "
                               "(SPEC section 3: 12,000 x 10k); everyday payments top micro-commerce's up to it")
    daily_tx_mini_program: float = Field(8.5e7, ge=0, le=1e9,
                                         description="mini-program payments a day at full scale (at most 1e9: "
                                                     "every user paying almost once a day)")
    daily_tx_cross_border: float = Field(1.2e7, ge=0, le=1e9,
                                         description="cross-border payments a day at full scale")
    everyday_median_qr: float = Field(27.53, gt=0, le=1e6,
                                      description="median CNY of an everyday (non-micro-commerce) QR payment")
    everyday_median_mini_program: float = Field(56.33, gt=0, le=1e6,
                                                description="median CNY of an everyday mini-program payment")
    everyday_median_cross_border: float = Field(95.67, gt=0, le=1e6,
                                                description="median CNY of an everyday cross-border payment")
    everyday_amount_sigma: float = Field(0.4406, ge=0, le=5,
                                         description="log-normal spread of everyday payment amounts")
    transaction_fee: float = Field(0.006, ge=0, le=0.2,
                                   description="technical service fee of the transaction component")
    fx_daily_vol: float = Field(0.005, ge=0, le=0.2,
                                description="daily volatility of the 28 settlement currencies against CNY")

    @model_validator(mode="after")
    def _mix(self) -> "PaymentsConfig":
        total = self.mix_qr + self.mix_mini_program + self.mix_cross_border
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"mix_qr + mix_mini_program + mix_cross_border must sum to 1, got {total:g}")
        return self


class RiskConfig(_Section):
    """The platform's bulk transaction risk scoring (SPEC section 3); see :mod:`weishang.kernels.risk`.

    Feature weights lie in [-100, 100]: beyond that one feature is the whole score."""

    target_fpr: float = Field(0.00003, ge=0, le=1,
                              description="largest share of legitimate payments the threshold may intercept")
    window_ticks: int = Field(7, ge=1, le=365, description="ticks of velocity history the features look back on")
    threshold_history_ticks: int = Field(30, ge=1, le=365,
                                         description="ticks of confirmed-legitimate scores the threshold is set from")
    new_account_ticks: int = Field(30, ge=0, le=10_000, description="an account younger than this is new")
    p_new_device: float = Field(0.02, ge=0, le=1,
                                description="a legitimate payment comes from a device or place new to the payer")
    w_payer_velocity: float = Field(0.05, ge=-100, le=100, description="weight of the payer's trailing transaction count")
    w_payer_burst: float = Field(0.3, ge=-100, le=100, description="weight of the payer's transactions this tick")
    w_amount_ratio: float = Field(0.5631, ge=-100, le=100, description="weight of amount over the payer's mean")
    w_new_account: float = Field(4.0, ge=-100, le=100, description="weight of a new account")
    w_new_device: float = Field(3.0, ge=-100, le=100, description="weight of a new device or place")
    w_merchant_velocity: float = Field(0.02, ge=-100, le=100, description="weight of the merchant's volume spike")
    w_merchant_flag: float = Field(0.8, ge=-100, le=100, description="weight of a merchant under governance action or new")
    w_scenario_mini_program: float = Field(0.1338, ge=-100, le=100, description="weight of a mini-program payment (QR is 0)")
    w_scenario_cross_border: float = Field(0.8583, ge=-100, le=100, description="weight of a cross-border payment")
    scorer: Literal["learned", "linear"] = Field(
        "learned", description="the engine's score: 'learned' (a logistic model on the graph and sequence features, "
                               "refitted on labelled past ticks; the linear rule until its first fit) or 'linear' "
                               "(the hand-set rule above)")
    label_delay_ticks: int = Field(7, ge=1, le=365,
                                   description="ticks before a payment's label (a report, a chargeback) is known")
    retrain_every_ticks: int = Field(7, ge=1, le=365, description="ticks between refits of the learned scorer")
    train_window_ticks: int = Field(28, ge=1, le=365, description="ticks of labelled payments a refit learns from")
    train_legit_per_tick: int = Field(2000, ge=10, le=10_000_000,
                                      description="legitimate payments a tick kept (at random) to train on")
    history_legit_per_tick: int = Field(20_000, ge=100, le=100_000_000,
                                        description="legitimate payments a tick kept (at random) to set the learned "
                                                    "scorer's threshold from")


class FraudConfig(_Section):
    """Injected fraud with ground-truth labels (typologies of PaySim, AMLSim and brushing).

    Rates are per million users per tick, so fraud scales with N like everything else.
    """

    ato_per_million: float = Field(8.0, ge=0, le=1e4, description="account takeovers, each cashed out to a mule merchant")
    ato_payments: int = Field(3, ge=1, le=100, description="payments per takeover")
    ato_amount_multiple: float = Field(8.0, ge=0, le=1000, description="cash-out amount over the median price")
    share_fraud_merchants: float = Field(0.002, ge=0, le=1,
                                         description="merchants that brush fake orders and serve as mules")
    brushing_orders: int = Field(5, ge=0, le=10_000, description="fake orders per brushing merchant per tick")
    brushing_ring: int = Field(5, ge=1, le=10_000, description="fraudulent merchants brushing together as one ring")
    brushing_share_qr: float = Field(0.5, ge=0, le=1, description="brushing orders paid to the merchant's personal "
                                                                   "QR code (the rest in its mini-program shop)")
    brushing_pool: int = Field(12, ge=1, le=800, description="sockpuppets a brushing ring shares (before it adapts)")
    burst_per_million: float = Field(5.0, ge=0, le=1e4, description="payers placing a burst of large orders")
    burst_orders: int = Field(6, ge=1, le=1000, description="orders in a burst")
    burst_amount_multiple: float = Field(5.0, ge=0, le=1000, description="burst order amount over the median price")
    laundering_per_million: float = Field(5.0, ge=0, le=1e4, description="cross-border laundering rings (fan-in or fan-out)")
    laundering_fan: int = Field(12, ge=2, le=1000, description="payers (fan-in) or merchants (fan-out) of a ring")
    p_stop_after_interception: float = Field(0.3, ge=0, le=1,
                                             description="intensity a typology loses per unit of intercepted share")
    adapt_step: float = Field(0.3, ge=0, le=1,
                              description="stealth a typology gains per unit of intercepted share (smaller, quieter fraud)")
    entry_rate: float = Field(0.05, ge=0, le=1,
                              description="share of a typology's stopped volume new rings replace each tick: fraud that "
                                          "interception stops recovers when interception eases, and never dies out "
                                          "(not fitted: no SPEC figure; README, \"Size-free mechanisms\")")


class CommunityConfig(_Section):
    """Merchant groups (SPEC section 4)."""

    group_size_mean: float = Field(286.0, ge=2, le=100_000, description="mean members of a merchant group")
    groups_per_merchant: float = Field(1.0, ge=0, le=100, description="mean groups run by a merchant")
    weekly_active: float = Field(0.67, ge=0, le=1, description="share of members active in a week")
    push_open_rate: float = Field(0.41, ge=0, le=1, description="share of targeted pushes opened")
    profile_completeness: float = Field(
        0.89, ge=0, le=1,
        description="share of users whose customer profile enterprise-WeChat linkage completes; a group member with a "
                    "complete profile and a matching interest gets the group post as a targeted push")
    group_post_rate: float = Field(
        0.0240346, ge=0, le=4,
        description="free community posts a day a merchant running a group makes to it (community operation), "
                    "besides its paid posts; they cost no traffic")
    recruit_leave_rate: float = Field(
        0.01, ge=0, le=1,
        description="a buyer recruited into a merchant's group leaves it again, a day (not fitted: no SPEC figure; "
                    "it bounds a merchant's private audience)")
    p_join_after_purchase: float = Field(
        0.119315, ge=0, le=1,
        description="a new buyer of a merchant that runs a group is invited in and joins (private traffic); it then "
                    "reads the merchant's group posts like a member")


class GovernanceConfig(_Section):
    """Review and penalties (SPEC section 6)."""

    machine_review_coverage: float = Field(0.95, ge=0, le=1, description="share of posts machine-reviewed")
    p_detect_violation: float = Field(0.0034, ge=0, le=1,
                                      description="a reviewed post of a violating merchant is flagged")
    rectification_ticks: int = Field(14, ge=0, le=10_000,
                                     description="ticks an exaggerated advertiser has to rectify")
    p_false_flag: float = Field(0.001, ge=0, le=1, description="a reviewed post of a compliant merchant is flagged")
    human_review_per_day: float = Field(30_000.0, ge=0, le=1e9,
                                        description="cases human review closes a day at full scale (scaled by N / 1.289e9)")
    human_review_minutes: float = Field(5.0, gt=0, le=10_000, description="minutes to handle one case")
    p_report: float = Field(9.336e-05, ge=0, le=1, description="a viewer of a violating merchant's post reports it")


class PlatformConfig(_Section):
    """The platform's traffic rules (SPEC sections 2, 4, 8)."""

    external_link_share_steps: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        [0.2, 0.5], max_length=10,
        description="shares of a merchant's paid posts in the trailing window (external_link_window_ticks, today's "
                    "included) that link out of WeChat, at which its external links are down-weighted a step")
    external_link_window_ticks: int = Field(
        30, ge=1, le=365, description="ticks of a merchant's past posts the external-link down-weighting counts")
    external_link_weights: list[float] = Field(
        [1.0, 0.5, 0.2], min_length=1, max_length=11,
        description="reach multiplier of an external link below the first step, between steps, and from the last on")
    induced_sharing_ban: bool = Field(True, description="ban induced sharing (e.g. template-message abuse)")
    inducement_penalty: float = Field(0.8, ge=0, le=1,
                                      description="under the ban, the share of an inducement post's onward reach removed")
    group_downweight_threshold: int = Field(500, ge=1, le=1_000_000, description="groups above this many members are down-weighted")
    group_downweight: float = Field(0.5, ge=0, le=1, description="reach multiplier of a down-weighted group")
    deep_data_min_certification: int = Field(
        2, ge=0, le=3,
        description="tiered data access: the certification level (0 none, 1 verified, 2 certified) a merchant needs "
                    "for deep user-behaviour analytics (targeting); 3 closes it to all, 0 opens it to all")

    @model_validator(mode="after")
    def _steps(self) -> "PlatformConfig":
        steps = self.external_link_share_steps
        if len(self.external_link_weights) != len(steps) + 1:
            raise ValueError("external_link_weights needs one more entry than external_link_share_steps")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("external_link_share_steps must increase")
        if any(not 0 <= w <= 1 for w in self.external_link_weights):
            raise ValueError("external_link_weights must lie in [0, 1]")
        return self


class OutputConfig(_Section):
    """Where and how results are written."""

    dir: str = Field("results", min_length=1, description="parent folder of run directories")
    row_group_ticks: int = Field(30, ge=1, le=100_000, description="ticks buffered per Parquet row group")
    checkpoint_every: int = Field(0, ge=0, le=100_000,
                                  description="write a checkpoint every this many ticks (0: never); see --resume")
    transactions: Literal["none", "sample", "full"] = Field(
        "none", description="write the scored transactions: none, a reproducible sample, or the full log")
    transactions_sample: float = Field(0.01, gt=0, le=1, description="share of transactions kept by 'sample'")


class ScenarioConfig(_Section):
    """A whole scenario. ``weishang config schema`` prints its JSON schema."""

    run: RunConfig = RunConfig()
    population: PopulationConfig = PopulationConfig()
    merchants: MerchantsConfig = MerchantsConfig()
    channels: ChannelsConfig = ChannelsConfig()
    cascade: CascadeConfig = CascadeConfig()
    payments: PaymentsConfig = PaymentsConfig()
    risk: RiskConfig = RiskConfig()
    fraud: FraudConfig = FraudConfig()
    tools: ToolsConfig = ToolsConfig()
    community: CommunityConfig = CommunityConfig()
    governance: GovernanceConfig = GovernanceConfig()
    platform: PlatformConfig = PlatformConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _merchants_fit(self) -> "ScenarioConfig":
        n = self.merchants.n_merchants
        if n is not None and n > self.population.n_users:
            raise ValueError(f"merchants.n_merchants = {n}: must be at most population.n_users "
                             f"({self.population.n_users}): every merchant owns a user account")
        return self

    @property
    def scale(self) -> float:
        """N / 1.289e9: the factor on absolute real-world figures."""
        return self.population.n_users / WECHAT_MAU

    @property
    def n_merchants(self) -> int:
        """Merchant agents: the configured number, or the practitioners' share of N."""
        if self.merchants.n_merchants is not None:
            return self.merchants.n_merchants
        return max(1, round(self.population.n_users * PRACTITIONERS / WECHAT_MAU))

    def resolved(self) -> dict[str, Any]:
        """The config as plain data with derived defaults filled in (what a run used)."""
        data = self.model_dump(mode="json")
        data["merchants"]["n_merchants"] = self.n_merchants
        return data

    def to_json(self) -> str:
        return json.dumps(self.resolved(), sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Loading


def default_document() -> dict[str, Any]:
    """The shipped default scenario as a TOML document (nested dicts)."""
    text = resources.files(__package__).joinpath("scenarios/default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def whole_number(table: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    """``table[key]`` (``default`` when absent) as a whole number in ``[low, high]``; otherwise a
    :class:`ConfigError` naming ``where.key``, the value and what is allowed (specs' counts and seeds)."""
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}.{key} = {value!r}: a whole number from {low} to {high}")
    return value


def split_key(dotted: str) -> tuple[str, str]:
    """``"section.key"`` (or ``section__key``) as (section, key); a ConfigError names the key otherwise."""
    path = [part.strip() for part in dotted.replace("__", ".").split(".")]
    if len(path) != 2 or not all(path):
        raise ConfigError(f"{dotted!r}: a config key is section.key (for example population.n_users)")
    return path[0], path[1]


def config_field(key: str) -> Any:
    """The pydantic field (type, bounds, description) of config key ``"section.key"`` (or
    ``section__key``); a ConfigError names the key when the config has none."""
    section, name = split_key(key)
    fields = ScenarioConfig.model_fields
    if section not in fields or name not in fields[section].annotation.model_fields:
        raise ConfigError(f"{section}.{name}: not a config key (`weishang config schema` lists them)")
    return fields[section].annotation.model_fields[name]


def flatten_keys(table: dict[str, Any]) -> dict[str, Any]:
    """A TOML table of overrides with dotted keys written either way: ``"population.n_users" = 5``
    or ``population.n_users = 5`` (which TOML reads as a nested table) both give
    ``{"population.n_users": 5}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
        else:
            flat[key] = value
    return flat


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` into (path, value); the value is read as TOML, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    path = [part.strip() for part in dotted.strip().split(".")]
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key (for example population.n_users)")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: let validation say whether a string is allowed here
    return path, value


def _describe_error(err: dict[str, Any], sections: dict[str, type[BaseModel]]) -> str:
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) if loc else "(scenario)"
    given = err.get("input")
    if err["type"] == "extra_forbidden":
        if len(loc) == 1:
            allowed = ", ".join(sections)
            return f"{key}: unknown section (allowed sections: {allowed})"
        model = sections.get(loc[0])
        allowed = ", ".join(model.model_fields) if model is not None else ""
        return f"{key}: unknown key (allowed keys in [{loc[0]}]: {allowed or 'none yet'})"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if not loc:
        return msg
    if isinstance(given, dict):
        return f"{key}: {msg}"
    return f"{key} = {json.dumps(given, default=str)}: {msg}"


def validate_document(doc: dict[str, Any]) -> ScenarioConfig:
    """Validate a merged TOML document; raise :class:`ConfigError` with the first problem."""
    try:
        return ScenarioConfig.model_validate(doc)
    except ValidationError as exc:
        sections = {name: field.annotation for name, field in ScenarioConfig.model_fields.items()}
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(_describe_error(errors[0], sections) + more) from None


def read_toml_file(path: str | Path, what: str = "scenario file") -> dict[str, Any]:
    """Read a TOML file (a scenario or a sweep); a missing, unreadable or malformed file raises
    :class:`ConfigError` naming ``what`` it was meant to be."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{what} {str(path)!r} nests tables or arrays too deeply to be a scenario") from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {exc.strerror or type(exc).__name__}") from None


def toml_value(value: Any) -> str:
    """A scalar as TOML writes it: a flag is ``true``/``false`` (not Python's ``True``), a text is
    quoted and escaped, a number as Python writes it (which TOML reads back to the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


#: the head tables of experiment specs (weishang.model.study.experiment), and what runs each
EXPERIMENT_TABLES = {"sweep": "weishang sweep", "sensitivity": "weishang sensitivity",
                     "ensemble": "weishang calibrate --ensemble", "calibration": "weishang calibrate --spec",
                     "stage": "weishang calibrate --spec"}


def load_config(
    scenario: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] | dict[str, Any] = (),
    **shortcuts: Any,
) -> ScenarioConfig:
    """Build the config: default, then the scenario file, then overrides, then shortcuts.

    Args:
        scenario: a TOML scenario file, or None for the default.
        overrides: ``"section.key=value"`` strings (the CLI's ``--set``, values read as TOML), or a
            dict of Python values by ``"section.key"`` (``{"population.n_users": 50_000}``).
        shortcuts: ``seed=``, ``backend=`` (the CLI's ``--seed`` and ``--backend``); None is ignored.
    """
    doc = default_document()
    if scenario is not None:
        user = read_toml_file(scenario)
        study = next((name for name in EXPERIMENT_TABLES if name in user), None)
        if study is not None:  # an experiment spec (docs/experiments.md) given where a scenario goes
            raise ConfigError(f"{str(scenario)!r} is an experiment spec (it has [{study}]), not a scenario file: run "
                              f"it with {EXPERIMENT_TABLES[study]}")
        if "population" in user and isinstance(user["population"], dict) and user["population"].get("edge_list"):
            edge_list = Path(user["population"]["edge_list"])
            if not edge_list.is_absolute():
                user["population"]["edge_list"] = str(Path(scenario).parent / edge_list)
        doc = _merge(doc, user)
    pairs = overrides.items() if isinstance(overrides, dict) else (parse_override(text) for text in overrides)
    for dotted, value in pairs:
        section, key = dotted if isinstance(dotted, list) else split_key(dotted)
        if not isinstance(doc.get(section), dict):
            doc.setdefault(section, {})
        if isinstance(doc[section], dict):
            doc[section][key] = value
    for key, value in shortcuts.items():
        if value is not None:
            doc.setdefault("run", {})[key] = value
    return validate_document(doc)


def config_digest(config: ScenarioConfig) -> str:
    """A run's identity: sha256 of its resolved config (seed included), as its manifest records it."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:32]


def configure(config: ScenarioConfig | str | Path | None = None, seed: int | None = None,
              **overrides: Any) -> ScenarioConfig:
    """A config from a :class:`ScenarioConfig`, a scenario file or the default, with Python values
    laid over it: ``overrides`` by ``"section.key"`` (or ``section__key``, for keyword calls) and
    ``seed`` for ``run.seed``. How :class:`~weishang.model.commerce.CommerceModel` (and so
    ``mesa.batch_run``) takes its parameters.

    Raises:
        ConfigError: an override names no config key, or a value is invalid.
    """
    if isinstance(config, ScenarioConfig):
        if seed is None and not overrides:
            return config
        doc = config.model_dump(mode="json")
    else:
        doc = load_config(config).model_dump(mode="json")
    for name, value in {**overrides, **({"run.seed": seed} if seed is not None else {})}.items():
        section, key = split_key(name)
        if not isinstance(doc.get(section), dict):
            raise ConfigError(f"{name}: unknown section (allowed sections: {', '.join(ScenarioConfig.model_fields)})")
        doc[section][key] = value
    return validate_document(doc)
