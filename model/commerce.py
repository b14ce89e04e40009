"""``CommerceModel``: the Mesa model that owns the merchants, the platform's rules and the
consumer arrays, and runs the tick plan.

The tick plan is written out once, in order, in :meth:`CommerceModel.plan`; every phase is
timed (``model.phase_seconds``), so a user can print where a tick's time goes. Phases that no
mechanism fills yet say so in their docstring and do nothing; none is faked.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mesa
import numpy as np

from kernels import rng
from kernels.backend import Backend, resolve_backend, scatter_add
from kernels.cascade import CascadeOutcome, LevelRule, propagate
from model.accounts import MerchantAccounts
from model.community import GroupParts
from model.config import ScenarioConfig
from model.customers import CustomerLedger
from model.diagnostics import Diagnostics
from model.governance import ReviewDesk, ReviewOutcome, flag_merchants, user_reports
from model.fx import FxDesk, value_by_currency
from model.inventory import Stock, fill_orders
from model.merchant import (COMPLIANCE_TYPES, MARKETING_STYLES, MAX_POSTS_PER_TICK, ONBOARDING_TICKS, Merchant,
                            posts_today)
from model.payments import CROSS_BORDER, Payments, SettlementQueue, make_payments, per_merchant_by_lag
from model.population import Population, build_population, draw_categories
from model.risk_engine import RiskEngine, Screening
from model.tools import PROVIDERS, analytics_window, consultation_multiplier, draw_tools, forecast_sigma
from model.traffic import (EXTERNAL_LINK, LIVE_STREAM, OFFICIAL_ACCOUNT, SEARCH, TickPosts, external_link_weight,
                           level1_exposures, plan_posts)


#: a merchant onboarded fewer ticks ago than this is new to the risk engine
NEW_MERCHANT_TICKS = 7

#: retention at which the cascade's conversion and share parameters are quoted: the SPEC's
#: quality content post (section 2)
REFERENCE_RETENTION = 0.38


@dataclass(frozen=True)
class Phase:
    """One step of the tick plan: a name, what runs it (``mesa`` or ``arrays``), the method."""

    name: str
    engine: str
    run: Callable[[], None]


@dataclass
class TickData:
    """What the phases of one tick hand each other (reset every tick)."""

    n_posts: np.ndarray | None = None  # (int64[M]) paid posts each merchant decided on this tick
    n_group_posts: np.ndarray | None = None  # (int64[M]) its free posts to its own groups this tick
    posts: TickPosts | None = None
    posts_dev: dict[str, Any] = field(default_factory=dict)
    level1: tuple[Any, Any] | None = None
    outcome: CascadeOutcome | None = None
    payments: Payments | None = None
    order_key: Any = None
    fx_locked: float = 0.0
    fx_exposure: float = 0.0
    screening: Screening | None = None
    fees: np.ndarray | None = None
    settled: np.ndarray | None = None
    orders_per_merchant: np.ndarray | None = None
    gmv_per_merchant: np.ndarray | None = None
    flagged: np.ndarray | None = None
    reports: np.ndarray | None = None
    review: ReviewOutcome | None = None
    removed: int = 0
    rectifications: int = 0
    exits: int = 0
    units_sold: np.ndarray | None = None  # (int64[M]) units sold this tick
    units_lost: np.ndarray | None = None  # (int64[M]) units demanded beyond stock
    holding_cost: np.ndarray | None = None  # (float64[M]) CNY of holding stock this tick
    groups_split: int = 0
    aggregates: dict[str, Any] = field(default_factory=dict)


class CommerceModel(mesa.Model):
    """The micro-commerce ecosystem: merchants (Mesa agents) over a consumer population (arrays).

    Args:
        config: the validated scenario.
        backend: array backend (resolved from ``config.run.backend`` when omitted).
        population: a pre-built population (built from the config when omitted).
    """

    def __init__(self, config: ScenarioConfig, backend: Backend | None = None,
                 population: Population | None = None, progress: Callable[[str], None] | None = None) -> None:
        super().__init__(seed=config.run.seed)
        self.config = config
        self.backend = backend or resolve_backend(config.run.backend)
        self.xp = self.backend.xp
        t0 = time.perf_counter()
        self.population = population or build_population(config, self.backend, progress)
        self.build_seconds = time.perf_counter() - t0
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self._create_merchants()
        m = self.n_merchants
        self.settlement = SettlementQueue(m)
        self.fx = FxDesk(config.payments.fx_daily_vol, config.run.seed)
        self.merchant_draws: dict[str, np.ndarray] = {}
        self.data = TickData()
        #: external-link posts per merchant in each of the last 7 ticks (a ring buffer)
        self._recent_links = np.zeros((7, m), dtype=np.int64)
        pop = self.population
        self.accounts = MerchantAccounts(m, config.merchants.exit_window)
        self.group_parts = GroupParts(pop, m, config, self.backend)
        self.stock = Stock(m, config)
        runs_group = self.backend.to_device(self.group_parts.part_count > 0)
        community = config.community
        self.customers = CustomerLedger(pop.n_users, m, xp=self.xp, p_join=community.p_join_after_purchase,
                                        runs_group=runs_group, seed=config.run.seed,
                                        p_leave=community.recruit_leave_rate)
        self.diagnostics = Diagnostics(m)
        self.review_desk = ReviewDesk(m, config)
        #: adopters' [before, after] adoption windows: completed GMV (fen), units sold, stock held
        self.analytics_sums = np.zeros((2, 3, m), dtype=np.int64)
        # homogeneous competition: merchants per interested user in each category, relative to
        # the whole market's at the start (see _crowding)
        interests = self.backend.to_host(pop.state["interests"])
        bits = 1 << np.arange(config.population.n_categories, dtype=np.uint16)
        self._interested = np.array([np.count_nonzero(interests & b) for b in bits], dtype=np.float64)
        self._market_density = m / max(self._interested.sum(), 1.0)
        c = config.cascade
        self.levels = (LevelRule(p_view=1.0, p_buy=c.p_buy_friend, p_share=c.p_share_friend),
                       LevelRule(p_view=c.p_view_share, p_buy=c.p_buy_share, p_share=c.p_share_tool),
                       LevelRule(p_view=c.p_view_stranger, p_buy=c.p_buy_stranger, p_share=0.0,
                                 n_strangers=c.n_stranger_views))
        n_fraud = round(config.fraud.share_fraud_merchants * self.n_merchants)
        fraud_merchants = np.sort(np.argsort(rng.uniform(rng.stream_key(config.run.seed, "fraud.merchants"),
                                                         self.n_merchants), kind="stable")[:n_fraud])
        self.risk = RiskEngine(config, self.backend, pop.n_users, fraud_merchants.astype(np.int64),
                               self.n_merchants, pop.state["ti_created"])
        city_sizes = np.bincount(self.backend.to_host(pop.state["city"]))
        self.city_start = self.backend.to_device(np.concatenate([[0], np.cumsum(city_sizes)]).astype(np.int64))

    # ------------------------------------------------------------------ set-up

    def _create_merchants(self) -> None:
        cfg, seed = self.config, self.config.run.seed
        uids = self.population.merchant_uids
        m = uids.shape[0]
        category = draw_categories(rng.uniform(rng.stream_key(seed, "merchant.category"), m),
                                   cfg.population.n_categories)
        z = rng.normal(rng.stream_key(seed, "merchant.price"), m)
        price = np.round(cfg.merchants.price_median * np.exp(0.5 * z), 2)
        u = rng.uniform(rng.stream_key(seed, "merchant.compliance"), m)
        mc = cfg.merchants
        compliance = np.where(u < mc.share_no_brand, 1, np.where(u < mc.share_no_brand + mc.share_exaggerated, 2, 0))
        uses_tc = rng.bernoulli(rng.stream_key(seed, "merchant.transaction_component"), m, mc.share_transaction_component)
        u = rng.uniform(rng.stream_key(seed, "merchant.style"), m)
        style = np.where(u < mc.share_content, 0, np.where(u < 1.0 - mc.share_inducement, 1, 2))
        z = rng.normal(rng.stream_key(seed, "merchant.quality"), m)
        quality = np.exp(mc.quality_sigma * z - mc.quality_sigma**2 / 2)
        # no brand qualification, no certification; the rest are certified or only verified
        certified = rng.bernoulli(rng.stream_key(seed, "merchant.certified"), m, mc.share_certified)
        certification = np.where(compliance == 1, 0, np.where(certified, 2, 1))
        self.tools = draw_tools(cfg, quality, seed)
        # arrays the agents read through properties
        self.ti_onboarded = np.where(uses_tc, 0, ONBOARDING_TICKS).astype(np.int64)
        self.rectify_until = np.full(m, -1, dtype=np.int64)
        for i in range(m):
            Merchant(self, i, int(uids[i]), int(category[i]), float(price[i]), float(quality[i]),
                     COMPLIANCE_TYPES[compliance[i]], int(certification[i]), PROVIDERS[self.tools.provider[i]],
                     bool(uses_tc[i]), MARKETING_STYLES[style[i]])
        self.merchant_list: list[Merchant] = sorted(self.agents_by_type[Merchant], key=lambda a: a.index)
        self._mirror_merchants()
        self.category = category
        self.price_fen = np.round(price * 100).astype(np.int64)
        self.unit_cost = price * (1.0 - mc.margin)
        self.category_bit = (1 << category).astype(np.uint16)
        self.rel_price = (mc.price_median / price) ** cfg.cascade.price_elasticity
        # search ranks cheaper offers higher: more searchers see a cheaper merchant's listing
        self.search_rank = (mc.price_median / price) ** cfg.channels.search_price_weight
        self.quality = quality
        self.certification = certification
        self.uses_component = uses_tc
        self.violating = compliance != 0
        t = cfg.tools
        self.consultation = consultation_multiplier(self.tools.ai_service, t.p_consult, t.p_unanswered, t.ai_resolution)
        self.rel_tool = np.where(self.tools.marketing_tools, 1.0, t.no_tools_stranger_reach)

    @property
    def n_merchants(self) -> int:
        return int(self.population.merchant_uids.shape[0])

    @property
    def tick(self) -> int:
        """The current tick, 0-based (Mesa's ``steps`` counts ticks started)."""
        return max(self.steps - 1, 0)

    # ------------------------------------------------------------------ checkpoints

    #: merchant attributes that change during a run (the rest follow from the config)
    MERCHANT_STATE = ("active", "exit_reason", "violations", "style", "post_rate", "last_period_profit",
                      "budget_direction")

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes during a run, as host data (for a checkpoint)."""
        host = self.backend.to_host
        risk = self.risk
        return {
            "steps": self.steps,
            "random": self.random.getstate(),
            "rng": self.rng.bit_generator.state,
            "population": {name: host(array) for name, array in self.population.state.items()},
            "merchants": [{k: getattr(m, k) for k in self.MERCHANT_STATE} for m in self.merchant_list],
            "accounts": self.accounts.state_dict(),
            "rectify_until": self.rectify_until.copy(),
            "settlement": self.settlement.pending.copy(),
            "recent_links": self._recent_links.copy(),
            "risk_state": {k: host(v) for k, v in vars(risk.state).items()},
            "risk_history": [host(s) for s in risk.legit_history],
            "fraud": {"intensity": risk.fraud.intensity.copy(), "stealth": risk.fraud.stealth.copy()},
            "fx": {"log_rate": self.fx.log_rate.copy(), "locked": list(self.fx.locked)},
            "stock": {"units": self.stock.units.copy(), "forecast": self.stock.forecast.copy()},
            "customers": self.customers.state_dict(host),
            "diagnostics": self.diagnostics.state_dict(),
            "review_desk": self.review_desk.state_dict(),
            "group_parts": self.group_parts.n_parts.copy(),
            "analytics_sums": self.analytics_sums.copy(),
            "phase_seconds": dict(self.phase_seconds),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, into a model built from the same config."""
        dev = self.backend.to_device
        self.steps = state["steps"]
        self.random.setstate(state["random"])
        self.rng.bit_generator.state = state["rng"]
        for name, array in state["population"].items():
            self.population.state[name][...] = dev(array)
        for m, saved in zip(self.merchant_list, state["merchants"]):
            for k in self.MERCHANT_STATE:
                setattr(m, k, saved[k])
        self.accounts.load_state_dict(state["accounts"])
        self.rectify_until[...] = state["rectify_until"]
        self.settlement.pending[...] = state["settlement"]
        self._recent_links[...] = state["recent_links"]
        for k, v in state["risk_state"].items():
            getattr(self.risk.state, k)[...] = dev(v)
        self.risk.legit_history.clear()
        self.risk.legit_history.extend(dev(s) for s in state["risk_history"])
        self.risk.fraud.intensity[...] = state["fraud"]["intensity"]
        self.risk.fraud.stealth[...] = state["fraud"]["stealth"]
        self.fx.log_rate = state["fx"]["log_rate"].copy()
        self.fx.locked = list(state["fx"]["locked"])
        self.stock.units[...] = state["stock"]["units"]
        self.stock.forecast[...] = state["stock"]["forecast"]
        self.customers.load_state_dict(state["customers"], dev)
        self.diagnostics.load_state_dict(state["diagnostics"])
        self.review_desk.load_state_dict(state["review_desk"])
        self.group_parts.n_parts[...] = state["group_parts"]
        self.group_parts.rebuild()
        self.analytics_sums[...] = state["analytics_sums"]
        self._mirror_merchants()
        self.phase_seconds.update(state["phase_seconds"])

    # ------------------------------------------------------------------ the tick plan

    def plan(self) -> tuple[Phase, ...]:
        """The phases of one tick, in the order they run."""
        return (
            Phase("merchants_post", "arrays", self.merchants_post),
            Phase("allocate_traffic", "arrays", self.allocate_traffic),
            Phase("propagate_cascades", "arrays", self.propagate_cascades),
            Phase("make_payments", "arrays", self.make_payments),
            Phase("score_risk", "arrays", self.score_risk),
            Phase("settle", "arrays", self.settle),
            Phase("govern", "arrays", self.govern),
            Phase("community", "arrays", self.community),
            Phase("restock", "arrays", self.restock),
            Phase("book", "arrays", self.book),
            Phase("merchants_act", "mesa", self.merchants_act),
            Phase("aggregate", "arrays", self.aggregate),
        )

    def step(self) -> None:
        """One tick: run every phase of :meth:`plan` in order, timing each."""
        self.data = TickData()
        for phase in self.plan():
            t0 = time.perf_counter()
            phase.run()
            self.phase_seconds[phase.name] += time.perf_counter() - t0

    def merchants_post(self) -> None:
        """Each merchant's posts today: its budget (post rate, set by its adaptation) applied by
        :func:`model.merchant.posts_today`; none while onboarding, rectifying or gone."""
        seed, tick = self.config.run.seed, self.tick
        can_post = self.merchant_active & (tick >= self.ti_onboarded) & (tick >= self.rectify_until)
        draw = rng.uniform(rng.stream_key(seed, "merchant.posts", tick), self.n_merchants)
        self.data.n_posts = posts_today(self.merchant_post_rate, can_post, draw)
        # community operation: group posts cost no traffic, so they are not part of the budget
        draw = rng.uniform(rng.stream_key(seed, "merchant.group_posts", tick), self.n_merchants)
        group_rate = np.full(self.n_merchants, self.config.community.group_post_rate)
        n_group = posts_today(group_rate, can_post & (self.group_parts.part_count > 0), draw)
        self.data.n_group_posts = np.minimum(n_group, MAX_POSTS_PER_TICK - self.data.n_posts)

    def allocate_traffic(self) -> None:
        """Platform: lay out the posts, choose their channels, draw level-1 exposures."""
        cfg, seed, tick, xp = self.config, self.config.run.seed, self.tick, self.xp
        ch = cfg.channels
        parts = self.group_parts
        posts = plan_posts(self.data.n_posts, self.population.merchant_uids, parts.part_start, parts.part_count,
                           ch.channel_shares(), seed, tick, live=self.tools.live, n_group_posts=self.data.n_group_posts)
        # stepwise down-weighting: a merchant's links this tick are weighted by its trailing count
        plat = cfg.platform
        link_weight = external_link_weight(self._recent_links.sum(axis=0), plat.external_link_steps,
                                           plat.external_link_weights)[posts.merchant]
        self._recent_links[tick % self._recent_links.shape[0]] = np.bincount(
            posts.merchant[posts.channel == EXTERNAL_LINK], minlength=self.n_merchants)
        fatigue = self._fatigue()[posts.merchant]
        reach_weight = np.where(posts.channel == EXTERNAL_LINK, link_weight, 1.0) * fatigue
        expected = ch.search_candidates * self.search_rank[posts.merchant] * fatigue
        search_candidates = np.floor(expected + rng.uniform(rng.stream_key(seed, "traffic.search.n", tick), posts.key))
        search_candidates[posts.channel != SEARCH] = 0
        max_quantity = np.where(posts.channel == OFFICIAL_ACCOUNT, ch.mall_max_quantity, ch.max_quantity)
        rel_post, rel_share, rel_view = self._post_multipliers(posts)
        # tiered data access: only merchants certified enough act on deep analytics (targeting)
        deep = self.tools.analytics(tick) & (self.certification >= plat.deep_data_min_certification)
        dev = self.backend.to_device
        self.data.posts = posts
        self.data.posts_dev = {"key": dev(posts.key), "origin": dev(posts.origin),
                               "channel": dev(posts.channel), "group": dev(posts.group),
                               "merchant": dev(posts.merchant),
                               "category_bit": dev(self.category_bit[posts.merchant]),
                               "search_candidates": dev(search_candidates.astype(np.int64)),
                               "rel_post": dev(rel_post), "rel_share": dev(rel_share), "rel_view": dev(rel_view),
                               "rel_tool": dev(self.rel_tool[posts.merchant]),
                               "reach_weight": dev(reach_weight), "targeted": dev(deep[posts.merchant]),
                               "max_quantity": dev(max_quantity.astype(np.int64))}
        self.data.level1 = level1_exposures(self.data.posts_dev, self.population, cfg, parts,
                                            self.city_start, seed, tick, xp=xp,
                                            recruits=self.customers.recruit_index())

    def _fatigue(self) -> np.ndarray:
        """(float64[M]) level-1 reach multiplier of each merchant's posts: ``min(1, (post_rate /
        rate) ** post_fatigue)``. Friends fold and mute a merchant who posts more than the
        default rate, so its extra posts reach fewer of them (diminishing returns to budget)."""
        mc = self.config.merchants
        rate = self.merchant_post_rate
        return np.minimum(1.0, (mc.post_rate / np.maximum(rate, 1e-12)) ** mc.post_fatigue)

    def _crowding(self) -> np.ndarray:
        """(float64[M]) homogeneous competition: conversion multiplier of each merchant's category.

        ``(density at the start / density now of its category) ** competition_elasticity``, where
        density is active merchants per user interested in the category and the start is the
        whole market's: a category more crowded than the market converts worse, and exits lift
        the survivors.
        """
        active = self.merchant_active
        per_category = np.bincount(self.category[active], minlength=self._interested.shape[0])
        density = per_category / np.maximum(self._interested, 1.0)
        ratio = self._market_density / np.maximum(density, 1e-12)
        return (ratio ** self.config.merchants.competition_elasticity)[self.category]

    def _post_multipliers(self, posts: TickPosts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
          service, :func:`model.tools.consultation_multiplier`), and its category's crowding.
        * share appeal: log-normal per post (a few go viral), times the inducement boost.
        * under the induced-sharing ban, inducement posts lose ``inducement_penalty`` of the
          reach their shares would have had.
        """
        c, plat, seed = self.config.cascade, self.config.platform, self.config.run.seed
        style = self.style[posts.merchant]
        retention = np.where(style == 0, c.retention_content, c.retention_ad) / REFERENCE_RETENTION
        trust = np.select([posts.channel == SEARCH, posts.channel == OFFICIAL_ACCOUNT],
                          [c.trust_stranger, c.trust_account], 1.0)
        live = np.where(posts.channel == LIVE_STREAM, self.config.channels.live_conversion_boost, 1.0)
        merchant_factor = self.rel_price * self.quality * self.consultation * self._crowding()
        rel_post = merchant_factor[posts.merchant] * trust * retention * live
        z = rng.normal(rng.stream_key(seed, "traffic.virality", self.tick), posts.key)
        appeal = np.exp(c.virality_sigma * z - c.virality_sigma**2 / 2)
        induced = style == 2
        # a searcher owes the shop nothing: it vouches for it to friends as rarely as it trusts it
        rel_share = retention * trust * appeal * np.where(induced, c.inducement_share_boost, 1.0)
        penalty = plat.inducement_penalty if plat.induced_sharing_ban else 0.0
        rel_view = np.where(induced, 1.0 - penalty, 1.0)
        return rel_post, rel_share, rel_view

    def propagate_cascades(self) -> None:
        """Kernel: spread every post through friends (1), friends of friends (2), strangers (3)."""
        cfg, xp = self.config, self.xp
        pop, posts = self.population, self.data.posts_dev
        self.data.outcome = propagate(
            pop.indptr, pop.indices, *self.data.level1,
            cascade_key=posts["key"], origin=posts["origin"], category_bit=posts["category_bit"],
            rel_post=posts["rel_post"], max_quantity=posts["max_quantity"],
            interests=pop.state["interests"], rel_buy=pop.state["rel_buy"],
            rel_off_interest=cfg.cascade.rel_off_interest, levels=self.levels,
            seed=cfg.run.seed, tick=self.tick, xp=xp, city=pop.state["city"], city_start=self.city_start,
            rel_view=posts["rel_view"], rel_share=posts["rel_share"], rel_tool=posts["rel_tool"])

    def make_payments(self) -> None:
        """Stock fills orders (the rest are lost sales); filled orders become payments: official
        or off-platform, scenario, fee."""
        xp, out, posts = self.xp, self.data.outcome, self.data.posts_dev
        merchant = posts["merchant"][out.order_cascade]
        filled = fill_orders(merchant, out.order_quantity, self.backend.to_device(self.stock.units), xp=xp)
        n = self.n_merchants
        sold, lost = xp.zeros(n, dtype=xp.int64), xp.zeros(n, dtype=xp.int64)
        scatter_add(sold, merchant[filled], out.order_quantity[filled], xp=xp)
        scatter_add(lost, merchant[~filled], out.order_quantity[~filled], xp=xp)
        self.data.units_sold, self.data.units_lost = self.backend.to_host(sold), self.backend.to_host(lost)
        if not bool(filled.all()):
            out = self.data.outcome = _keep_orders(out, filled, xp=xp)
            merchant = merchant[filled]
        amount = self.backend.to_device(self.price_fen)[merchant] * out.order_quantity
        self.data.order_key = posts["key"][out.order_cascade] * self.population.n_users + out.order_buyer
        outside = posts["channel"][out.order_cascade] == EXTERNAL_LINK
        self.data.payments = make_payments(self.data.order_key, merchant, amount,
                                           self.backend.to_device(self.uses_component), self.config.payments,
                                           self.config.run.seed, self.tick, xp=xp, off_platform=outside)
        state = self.population.state
        buyer = out.order_buyer
        state["n_purchases"][buyer] += 1  # a user buys at most once per cascade, maybe from several
        state["ti_last_purchase"][buyer] = self.tick

    def score_risk(self) -> None:
        """Kernel: score official payments and injected fraud in bulk; intercepted ones never settle."""
        tick = self.tick
        flag = (self.rectify_until > tick) | (tick - self.ti_onboarded < NEW_MERCHANT_TICKS)
        self.data.screening = self.risk.screen(self.data.payments, self.data.order_key,
                                               self.data.outcome.order_buyer, flag, tick)

    def settle(self) -> None:
        """Payments that passed are queued by settlement lag; those due today settle (T+0/1/3)."""
        xp, pay, screening = self.xp, self.data.payments, self.data.screening
        passed = screening.legit_passed
        fraud, dev = screening.fraud, self.backend.to_device
        completed = Payments(
            scenario=xp.concatenate([pay.scenario[passed], dev(fraud.scenario)[screening.fraud_passed]]),
            amount=xp.concatenate([pay.amount[passed], dev(fraud.amount)[screening.fraud_passed]]),
            fee=xp.concatenate([pay.fee[passed], xp.zeros(int(screening.fraud_passed.sum()), dtype=xp.int64)]),
            merchant=xp.concatenate([pay.merchant[passed], dev(fraud.merchant)[screening.fraud_passed]]))
        due, fees = per_merchant_by_lag(completed, self.n_merchants, xp=xp)
        self.settlement.add(self.backend.to_host(due))
        self.data.fees = self.backend.to_host(fees)
        self.data.settled = self.settlement.release()
        # legitimate cross-border payments lock their exchange rate until T+3
        cross = passed & (pay.scenario == CROSS_BORDER)
        locked = value_by_currency(self.data.order_key[cross], pay.amount[cross], self.config.run.seed, self.tick, xp=xp)
        self.data.fx_locked, self.data.fx_exposure = self.fx.step(self.tick, self.backend.to_host(locked))

    def govern(self) -> None:
        """Machine review and user reports open cases; human review confirms them up to its
        capacity; penalties by compliance type (see :mod:`model.governance`)."""
        gov, seed, tick, xp = self.config.governance, self.config.run.seed, self.tick, self.xp
        active = self.merchant_active
        reviewed_posts = self.data.n_posts + self.data.n_group_posts  # community posts are content too
        flagged = flag_merchants(reviewed_posts, self.violating, gov.machine_review_coverage, gov.p_detect_violation,
                                 gov.p_false_flag, seed, tick)
        viewers = xp.zeros(self.n_merchants, dtype=xp.int64)
        scatter_add(viewers, self.data.posts_dev["merchant"], self.data.outcome.exposures[:, 0], xp=xp)
        reports = user_reports(self.backend.to_host(viewers), self.violating, gov.p_report, seed, tick)
        review = self.review_desk.review(flagged, reports, self.violating, active, seed, tick)
        removed = rectified = 0
        for index in np.flatnonzero(review.confirmed):
            merchant = self.merchant_list[index]
            merchant.violations += 1
            if merchant.compliance == "no_brand" or merchant.violations > 1:
                merchant.leave("removed")
                removed += 1
            else:
                merchant.ti_rectify_until = tick + 1 + gov.rectification_ticks
                rectified += 1
        self.data.flagged, self.data.reports, self.data.review = flagged, reports, review
        self.data.removed, self.data.rectifications = removed, rectified

    def community(self) -> None:
        """Record who bought from whom (completed orders): merchants invite new buyers into their
        groups (private traffic), and the ledger keeps the repurchase of group members versus
        other customers and the customer counts behind LTV (see :mod:`model.customers`)."""
        screening, pay = self.data.screening, self.data.payments
        passed = screening.legit_passed
        self.customers.churn_recruits(self.tick)
        self.customers.record(pay.merchant[passed], self.data.outcome.order_buyer[passed], self.population,
                              self.backend.to_host)

    def traffic_cost(self) -> float:
        """CNY per post this tick: the base cost grown at ``traffic_cost_growth`` a year."""
        mc = self.config.merchants
        return mc.traffic_cost_per_post * (1.0 + mc.traffic_cost_growth) ** (self.tick / 365.0)

    def restock(self) -> None:
        """Merchants' stock: sales leave the shelf, holding costs accrue, forecasts update and
        each merchant orders up to its new level (see :mod:`model.inventory`)."""
        tick = self.tick
        self.stock.sell(self.data.units_sold)
        self.data.holding_cost = self.stock.holding_cost(self.unit_cost)
        sigma = forecast_sigma(self.tools.erp, self.tools.analytics(tick), self.config)
        self.stock.restock(self.data.units_sold, self.data.units_lost, sigma, self.config.run.seed, tick)

    def book(self) -> None:
        """Every active merchant's books: settled margin less fees, traffic, fixed and holding
        costs (see :class:`model.accounts.MerchantAccounts`)."""
        mc = self.config.merchants
        contribution = (self.data.settled * mc.margin - self.data.fees) / 100.0 - self.data.n_posts * self.traffic_cost()
        profit = contribution - mc.fixed_cost_per_tick - self.data.holding_cost
        self.accounts.book(self.merchant_active, profit, contribution, self.data.n_posts, self.tick)

    def merchants_act(self) -> None:
        """Mesa: merchants whose last ``exit_window`` days lost money consider giving up; every
        ``adapt_every`` ticks every merchant adapts budget, style and groups."""
        mc, tick = self.config.merchants, self.tick
        self.merchant_draws["exit"] = rng.uniform(rng.stream_key(self.config.run.seed, "merchant.exit", tick),
                                                  self.n_merchants)
        window = self.accounts.window_profit(tick)
        exits = 0
        if window is not None:
            # only the losing merchants have a decision to make
            for index in np.flatnonzero(self.merchant_active & (window < 0)):
                merchant = self.merchant_list[index]
                merchant.consider_exit(float(window[index]))
                exits += not merchant.active
        self.data.exits = exits
        if (tick + 1) % mc.adapt_every == 0:
            self._adapt()

    def _adapt(self) -> None:
        """Mesa: every merchant adapts (order-free, see :meth:`merchants_post`); then the model
        applies their choices and opens a new period."""
        seed, tick, m = self.config.run.seed, self.tick, self.n_merchants
        self.merchant_draws["adapt.style"] = rng.uniform(rng.stream_key(seed, "merchant.adapt.style", tick), m)
        self.merchant_draws["adapt.groups"] = rng.uniform(rng.stream_key(seed, "merchant.adapt.groups", tick), m)
        books, active = self.accounts, self.merchant_active
        payoff: dict[str, float] = {}
        for code, style in enumerate(MARKETING_STYLES):
            peers = active & (self.style == code)
            posted = int(books.period_posts[peers].sum())
            if posted:
                payoff[style] = float(books.period_contribution[peers].sum()) / posted
        self.agents_by_type[Merchant].do("adapt", payoff, self.group_parts.oversized())
        splitting = np.fromiter((mm.wants_split for mm in self.merchant_list), dtype=bool, count=m)
        self.data.groups_split = self.group_parts.split(splitting & active)
        books.close_period(active)
        self._gather_styles()

    def _gather_styles(self) -> None:
        self.style = np.fromiter((MARKETING_STYLES.index(mm.style) for mm in self.merchant_list), dtype=np.int64,
                                 count=self.n_merchants)
        self.merchant_post_rate = np.fromiter((mm.post_rate for mm in self.merchant_list), dtype=np.float64,
                                              count=self.n_merchants)

    def _mirror_merchants(self) -> None:
        """Array mirrors of the agents' attributes the array phases read every tick: ``active``
        (kept current by :meth:`Merchant.leave`), and the style and post rate, which change only
        when merchants adapt."""
        self.merchant_active = np.fromiter((mm.active for mm in self.merchant_list), dtype=bool,
                                           count=self.n_merchants)
        self._gather_styles()

    def aggregate(self) -> None:
        """Reduce the tick to the recorder's aggregates: the only device-to-host copies of results.

        Sums are integer (counts and fen), so they are exact on both backends.
        """
        xp, host, out, pay = self.xp, self.backend.to_host, self.data.outcome, self.data.payments
        n = self.n_merchants
        # GMV counts completed orders: an intercepted payment's order did not happen
        amount = xp.where(self.data.screening.legit_passed, pay.amount, 0)
        gmv_by_scenario = xp.zeros(4, dtype=xp.int64)
        scatter_add(gmv_by_scenario, pay.scenario.astype(xp.int64), amount, xp=xp)
        orders_per_merchant = xp.zeros(n, dtype=xp.int64)
        scatter_add(orders_per_merchant, pay.merchant, self.data.screening.legit_passed.astype(xp.int64), xp=xp)
        gmv_per_merchant = xp.zeros(n, dtype=xp.int64)
        scatter_add(gmv_per_merchant, pay.merchant, amount, xp=xp)
        self.data.orders_per_merchant = host(orders_per_merchant)
        self.data.gmv_per_merchant = host(gmv_per_merchant)
        gmv_per_cascade = xp.zeros(out.exposures.shape[0], dtype=xp.int64)
        scatter_add(gmv_per_cascade, out.order_cascade, amount, xp=xp)
        self.data.aggregates = {
            "exposures": host(out.exposures), "shares": host(out.shares), "buys": host(out.buys),
            "matched": host(out.matched),
            "gmv_by_scenario_fen": host(gmv_by_scenario), "gmv_per_cascade_fen": host(gmv_per_cascade),
            "risk": self.data.screening.metrics,
        }
        agg = self.data.aggregates
        self.diagnostics.add(self.data.posts.merchant, agg["exposures"], agg["matched"],
                             self.data.orders_per_merchant, self.data.gmv_per_merchant)
        self._track_analytics_adopters()

    def _track_analytics_adopters(self) -> None:
        """Add the tick to adopters' before/after windows: completed GMV, units sold, stock held.

        The windows are :func:`model.tools.analytics_window` ticks before and after each
        adopter's adoption tick; their ratio is the quarter-on-quarter growth SPEC section 5
        reports for analytics users (+132% GMV, +27% inventory turnover).
        """
        adopted = self.tools.analytics_tick
        window, tick = analytics_window(self.config.run.n_ticks), self.tick
        # a merchant that has left is no longer a user of anything: only active ticks count
        active = self.merchant_active
        before = active & (adopted >= 0) & (tick >= adopted - window) & (tick < adopted)
        after = active & (adopted >= 0) & (tick >= adopted) & (tick < adopted + window)
        stock_held = self.stock.units  # after restocking: what sits on the shelf overnight
        for side, mask in enumerate((before, after)):
            self.analytics_sums[side, 0, mask] += self.data.gmv_per_merchant[mask]
            self.analytics_sums[side, 1, mask] += self.data.units_sold[mask]
            self.analytics_sums[side, 2, mask] += stock_held[mask]


def _keep_orders(out: CascadeOutcome, keep: Any, *, xp: Any) -> CascadeOutcome:
    """The outcome with only the kept orders (bool[O]), purchases recounted per cascade and level."""
    n_cascades, n_levels = out.buys.shape
    cascade, level = out.order_cascade[keep], out.order_level[keep]
    flat = cascade * n_levels + (level.astype(xp.int64) - 1)
    buys = xp.bincount(flat, minlength=n_cascades * n_levels).reshape(n_cascades, n_levels).astype(xp.int64)
    return CascadeOutcome(out.exposures, out.shares, buys, out.matched, cascade, out.order_buyer[keep], level,
                          out.order_quantity[keep])
