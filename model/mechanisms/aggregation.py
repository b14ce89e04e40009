"""Aggregation: the tick reduced to what the recorder and the diagnostics need.

Integer sums (counts and fen) on the device, so they are exact on both backends; these are the
only device-to-host copies of a tick's results. The merchants' running diagnostics sums
(:mod:`weishang.model.mechanisms.diagnostics`) and the analytics adopters' before/after windows are kept
here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...kernels.backend import bin_sums
from ..codes import FRIEND_RECOMMENDATION, LEVELS, Channel, PaymentScenario, Provider
from ..plan import Mechanism, Sync, TickRecord
from ..schema import (
    CHANNEL,
    LEVEL,
    RECOMMENDATION,
    SHARING,
    Column,
    Ratio,
    T,
    col,
    family,
    ratio,
)
from ..state import Stateful
from ..tools import analytics_window
from .diagnostics import Diagnostics
from .inventory import Restock
from .payments import Orders
from .risk.engine import Screening
from .traffic import TrafficOut


@dataclass(frozen=True)
class TickAggregates:
    """One tick's results on the host.

    Attributes:
        exposures, shares, buys, matched: (int64[C, 3]) per post and level (buys: filled orders).
        gmv_by_scenario_fen: (int64[4]) completed GMV by :class:`~weishang.model.codes.PaymentScenario`.
        gmv_per_cascade_fen: (int64[C]) completed GMV of each post's orders.
        orders_per_merchant, gmv_per_merchant_fen: (int64[M]) completed orders and their value.
    """

    exposures: np.ndarray
    shares: np.ndarray
    buys: np.ndarray
    matched: np.ndarray
    gmv_by_scenario_fen: np.ndarray
    gmv_per_cascade_fen: np.ndarray
    orders_per_merchant: np.ndarray
    gmv_per_merchant_fen: np.ndarray


class AnalyticsWindows(Stateful):
    """Analytics adopters' sales and stock in the windows before and after adopting.

    ``sums`` (int64[2, 3, M]): [before, after] x [completed GMV (fen), units sold, stock held]
    per merchant. The windows are :func:`weishang.model.tools.analytics_window` ticks before and
    after each adopter's adoption tick; their ratio is the quarter-on-quarter growth SPEC
    section 5 reports for analytics users (+132% GMV, +27% inventory turnover).
    """

    STATE = ("sums",)

    def __init__(self, n_merchants: int, n_ticks: int) -> None:
        self.sums = np.zeros((2, 3, n_merchants), dtype=np.int64)
        self.window = analytics_window(n_ticks)

    def add(self, tick: int, adopted: np.ndarray, active: np.ndarray, gmv_fen: np.ndarray, sold: np.ndarray,
            stock_held: np.ndarray) -> None:
        """Add one tick; ``adopted`` (int64[M]) adoption ticks (-1 never); a merchant that has
        left is no longer a user of anything: only active ticks count."""
        before = active & (adopted >= 0) & (tick >= adopted - self.window) & (tick < adopted)
        after = active & (adopted >= 0) & (tick >= adopted) & (tick < adopted + self.window)
        for side, mask in enumerate((before, after)):
            self.sums[side, 0, mask] += gmv_fen[mask]
            self.sums[side, 1, mask] += sold[mask]
            self.sums[side, 2, mask] += stock_held[mask]


#: levels whose exposures are visits to a channel's link (the post's audience, friends' shares);
#: level 3, strangers put in front of the post by fission tools, is awareness
VISIT_LEVELS = 2

#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Aggregation.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "n_posts", "int64", "posts", "sum", "posts made (paid and community)")
    + [c for lv in LEVELS for c in (
        family(T, "exposures_l{x}", {str(lv): f"level {lv}"}, "int64", "people", "sum",
               "people who saw a post at {what} (1 friends or channel viewers, 2 friends of sharers, 3 strangers)",
               of=LEVEL)
        + family(T, "buys_l{x}", {str(lv): f"level {lv}"}, "int64", "orders", "sum", "filled orders at {what}", of=LEVEL)
        + family(T, "conversion_l{x}", {str(lv): f"level {lv}"}, "float64", "share",
                 lambda x: Ratio(f"buys_l{x}", f"exposures_l{x}"),
                 "buys over exposures at {what}; null without exposures", nullable=True, of=LEVEL)
        + (family(T, "shares_l{x}", {str(lv): f"level {lv}"}, "int64", "people", "sum",
                  "viewers at {what} who shared the post onward", of=SHARING) if lv < LEVELS[-1] else []))]
    + [c for ch, what in CHANNEL.items() for c in (
        family(T, "n_posts_{x}", {ch: what}, "int64", "posts", "sum", "posts to {what}", of=CHANNEL)
        + family(T, "visits_{x}", {ch: what}, "int64", "people", "sum",
                 "visits to {what} posts' links: their audience (level 1) and friends opening a share (level 2)",
                 of=CHANNEL)
        + family(T, "visit_orders_{x}", {ch: what}, "int64", "orders", "sum", "filled orders of {what} visits",
                 of=CHANNEL)
        + family(T, "awareness_{x}", {ch: what}, "int64", "people", "sum",
                 "strangers fission tools put {what} posts in front of (level 3)", of=CHANNEL)
        + family(T, "orders_{x}", {ch: what}, "int64", "orders", "sum", "filled orders of {what} posts, every level",
                 of=CHANNEL)
        + family(T, "gmv_{x}", {ch: what}, "float64", "CNY", "sum",
                 "completed GMV of {what} posts' orders, every level", of=CHANNEL)
        + family(T, "conversion_{x}", {ch: what}, "float64", "share",
                 lambda x: Ratio(f"visit_orders_{x}", f"visits_{x}"),
                 "visit orders over visits of {what}; null without visits", nullable=True, of=CHANNEL)
        + family(T, "aov_{x}", {ch: what}, "float64", "CNY", lambda x: Ratio(f"gmv_{x}", f"orders_{x}"),
                 "average order value of {what} (GMV over orders); null without orders", nullable=True, of=CHANNEL))]
    + [c for rec, what in RECOMMENDATION.items() for c in (
        family(T, "visits_{x}", {rec: what}, "int64", "people", "sum", "level-1 viewers of {what}", of=RECOMMENDATION)
        + family(T, "visit_orders_{x}", {rec: what}, "int64", "orders", "sum", "their filled orders",
                 of=RECOMMENDATION)
        + family(T, "conversion_{x}", {rec: what}, "float64", "share",
                 lambda x: Ratio(f"visit_orders_{x}", f"visits_{x}"),
                 "their conversion; null without viewers", nullable=True, of=RECOMMENDATION))]
    + col(T, "visits_live_viewers", "int64", "people", "sum", "viewers of live streams (their level 1)")
    + col(T, "visit_orders_live_viewers", "int64", "orders", "sum", "live-stream viewers' filled orders")
    + col(T, "n_orders", "int64", "orders", "sum", "filled orders")
    + col(T, "gmv", "float64", "CNY", "sum", "completed GMV: filled orders whose payment was not intercepted")
    + family(T, "gmv_{x}", {label: label.replace("_", " ") for label in PaymentScenario.labels()}, "float64", "CNY", "sum",
             "completed GMV paid by {what}")
    + col(T, "gmv_provider", "float64", "CNY", "sum", "completed GMV of merchants run through a service provider"))


class Aggregation(Mechanism):
    name = "aggregation"
    engine = "arrays"
    sections = ()
    uses = ("inventory",)
    does = "integer reductions for the recorder, diagnostics, analytics windows"
    columns = COLUMNS
    syncs = (Sync("per-merchant completed GMV by scenario and completed orders",
                  "the recorder's tables and the Mesa agents' diagnostics"),
             Sync("per-post exposures, shares, buys, matches and GMV",
                  "the cascades table and the merchants' diagnostics"))
    STATE = ("diagnostics", "analytics")

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.diagnostics = Diagnostics(model.merchants.n)
        self.analytics = AnalyticsWindows(model.merchants.n, self.config.run.n_ticks)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """The funnel (exposures, buys and shares by level; visits, orders and GMV by channel and by
        kind of recommendation) and the tick's completed GMV by payment scenario."""
        agg, posts, merchants = record.aggregation, record.traffic.posts, self.model.merchants
        exposures, shares, buys = agg.exposures, agg.shares, agg.buys
        gmv_fen, cascade_gmv = agg.gmv_by_scenario_fen, agg.gmv_per_cascade_fen
        exp_total, buy_total, share_total = exposures.sum(axis=0), buys.sum(axis=0), shares.sum(axis=0)
        row: dict[str, Any] = {"n_posts": posts.n}
        for lv in LEVELS:
            row[f"exposures_l{lv}"] = int(exp_total[lv - 1])
            row[f"buys_l{lv}"] = int(buy_total[lv - 1])
            row[f"conversion_l{lv}"] = ratio(buy_total[lv - 1], exp_total[lv - 1])
            if lv < LEVELS[-1]:
                row[f"shares_l{lv}"] = int(share_total[lv - 1])
        for channel in Channel:
            mine, name = posts.channel == channel, Channel.label(channel)
            visits, visit_orders = int(exposures[mine, :VISIT_LEVELS].sum()), int(buys[mine, :VISIT_LEVELS].sum())
            orders, gmv = int(buys[mine].sum()), cascade_gmv[mine].sum() / 100.0
            row.update({f"n_posts_{name}": int(mine.sum()), f"visits_{name}": visits,
                        f"visit_orders_{name}": visit_orders,
                        f"awareness_{name}": int(exposures[mine, VISIT_LEVELS:].sum()),
                        f"orders_{name}": orders, f"gmv_{name}": gmv, f"conversion_{name}": ratio(visit_orders, visits),
                        f"aov_{name}": ratio(gmv, orders)})
        for name, posts_of in (("friend_rec", np.isin(posts.channel, FRIEND_RECOMMENDATION)),
                               ("system_rec", posts.channel == Channel.SEARCH)):
            visits, orders = int(exposures[posts_of, 0].sum()), int(buys[posts_of, 0].sum())
            row.update({f"visits_{name}": visits, f"visit_orders_{name}": orders,
                        f"conversion_{name}": ratio(orders, visits)})
        # a live stream's viewers are its level-1 audience (SPEC section 7: viewer conversion)
        live = posts.channel == Channel.LIVE_STREAM
        row["visits_live_viewers"] = int(exposures[live, 0].sum())
        row["visit_orders_live_viewers"] = int(buys[live, 0].sum())
        row.update({"n_orders": int(buy_total.sum()), "gmv": gmv_fen.sum() / 100.0,
                    **{f"gmv_{label}": gmv_fen[s] / 100.0 for s, label in enumerate(PaymentScenario.labels())},
                    "gmv_provider": agg.gmv_per_merchant_fen[merchants.provider != Provider.NONE].sum() / 100.0})
        return row

    def step(self, tick: int, traffic: TrafficOut, payments: Orders, risk: Screening, inventory: Restock) -> TickAggregates:
        xp, host, out, pay = self.xp, self.backend.to_host, payments.outcome, payments.payments
        merchants = self.model.merchants
        m, c, n_scenarios = merchants.n, out.exposures.shape[0], len(PaymentScenario)
        # GMV counts completed orders: an intercepted payment's order did not happen. One pass
        # sums completed GMV by scenario and merchant (rows of M), completed orders by merchant
        # (the row after) and GMV by post (C bins after them).
        passed = risk.legit_passed
        bins = xp.concatenate([pay.scenario.astype(xp.int64) * m + pay.merchant, n_scenarios * m + pay.merchant,
                               (n_scenarios + 1) * m + out.order_cascade])
        amount = xp.where(passed, pay.amount, 0)
        sums = bin_sums(bins, (n_scenarios + 1) * m + c, xp.concatenate([amount, passed, amount]), xp=xp)
        # two copies: the per-merchant rows, and the per-post table (C x 13)
        per_merchant = host(sums[:(n_scenarios + 1) * m]).reshape(n_scenarios + 1, m)
        per_post = host(xp.concatenate([out.exposures.ravel(), out.shares.ravel(), out.buys.ravel(),
                                        out.matched.ravel(), sums[(n_scenarios + 1) * m:]]))
        levels = out.exposures.shape[1]
        exposures, shares, buys, matched = per_post[:4 * c * levels].reshape(4, c, levels)
        gmv_by_scenario_merchant = per_merchant[:n_scenarios]
        agg = TickAggregates(exposures=exposures, shares=shares, buys=buys, matched=matched,
                             gmv_by_scenario_fen=gmv_by_scenario_merchant.sum(axis=1),
                             gmv_per_cascade_fen=per_post[4 * c * levels:],
                             orders_per_merchant=per_merchant[n_scenarios],
                             gmv_per_merchant_fen=gmv_by_scenario_merchant.sum(axis=0))
        self.diagnostics.add(traffic.posts.merchant, agg.exposures, agg.matched, agg.orders_per_merchant,
                             agg.gmv_per_merchant_fen)
        # after restocking: what sits on the shelf overnight
        self.analytics.add(tick, merchants.ti_analytics, merchants.active, agg.gmv_per_merchant_fen,
                           inventory.from_shelf, self.model.inventory.stock.units)
        return agg
