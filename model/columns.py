"""Every output column, declared once: name, table, dtype, unit, how a run reduces it, meaning.

The recorder builds each table's Arrow schema from here (types, field metadata with unit and
meaning) and refuses a row that does not match; the run summary is computed from the
``summary`` entries' reductions; ``weishang validate`` measures targets on registry entries;
the CLI formats numbers by their unit; the README's and ``docs/outputs.md``'s column tables are
generated from it (``python -m weishang.model.apps.docs``).

An undefined value (a ratio over nothing, the LTV of a merchant without customers, the exit
reason of a merchant still in business) is null, never 0, NaN or an empty string; ``nullable``
columns say when.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

from .codes import TICKS_PER_YEAR, Compliance
from .mechanisms import TICK_PLAN
from .schema import (  # noqa: F401
    AT_MOST_ONE,
    CHANNEL,
    DTYPES,
    LEVEL,
    RECOMMENDATION,
    SCENARIO,
    SHARING,
    SIGNED,
    STYLE,
    TABLES,
    TYPOLOGY,
    Column,
    Derived,
    Final,
    Mean,
    Ratio,
    Reduction,
    Total,
    col,
    family,
    ratio,
)


class RunTotals:
    """What a run's ticks add up to so far: each numeric ``ticks`` column's sum and last value.

    Kept while the run goes (and in checkpoints); the summary's reductions read it.
    """

    def __init__(self) -> None:
        self.n_ticks = 0
        self.sums: dict[str, float] = {}
        self.last: dict[str, Any] = {}

    def add(self, ticks_row: dict[str, Any]) -> None:
        self.n_ticks += 1
        for column in TICKS:
            value = ticks_row[column.name]
            self.last[column.name] = value
            if column.dtype != "string" and value is not None:
                self.sums[column.name] = self.sums.get(column.name, 0.0) + float(value)


T = "ticks"
#: the ``ticks`` table: the day, each mechanism's columns in the order of the plan (declared with
#: the mechanism, :attr:`~weishang.model.plan.Mechanism.columns`), and the tick's wall time
TICKS: tuple[Column, ...] = tuple(
    col(T, "tick", "int64", "tick", "none", "the day, 0-based")
    + list(chain.from_iterable(mechanism.columns for mechanism in TICK_PLAN))
    + col(T, "seconds", "float64", "s", "sum", "wall time of the tick (the one column identical runs differ in)"))

M = "merchants"
MERCHANTS: tuple[Column, ...] = tuple(
    col(M, "tick", "int32", "tick", "none", "the day")
    + col(M, "merchant", "int32", "id", "none", "merchant index (stable for the run)")
    + col(M, "uid", "int64", "id", "none", "the merchant's account (user id)")
    + col(M, "active", "bool", "flag", "last", "in business")
    + col(M, "n_posts", "int64", "posts", "sum", "paid posts today")
    + col(M, "n_orders", "int64", "orders", "sum", "completed orders today")
    + col(M, "gmv", "float64", "CNY", "sum", "completed GMV today")
    + col(M, "settled", "float64", "CNY", "sum", "sales settled today")
    + col(M, "cum_profit", "float64", "CNY", "last", "profit so far: settled margin less fees, traffic, fixed and "
                                                    "holding costs")
    + col(M, "violations", "int32", "violations", "last", "confirmed violations so far")
    + col(M, "exit_reason", "string", "label", "last",
          "why it left: unprofitable or removed; null while in business", nullable=True)
    + col(M, "category", "int16", "code", "none", "product category, 0 the most popular")
    + col(M, "quality", "float64", "multiplier", "none", "product quality, a conversion multiplier of mean 1")
    + col(M, "compliance", "string", "label", "none", "compliant, no_brand or exaggerated")
    + col(M, "certification", "int8", "code", "none", "0 none, 1 verified, 2 certified (the data tier)")
    + col(M, "provider", "string", "label", "none", "service provider: none, weimob or youzan")
    + col(M, "marketing_tools", "bool", "flag", "none", "has marketing tools (group buying, price cutting)")
    + col(M, "erp", "bool", "flag", "none", "has an ERP")
    + col(M, "live", "bool", "flag", "none", "live-streams")
    + col(M, "ai_service", "bool", "flag", "none", "has AI customer service")
    + col(M, "analytics", "bool", "flag", "last", "uses the official analytics tools today")
    + col(M, "style", "string", "label", "last", "marketing style: content, ad or inducement")
    + col(M, "video_adopter", "bool", "flag", "last", "has posted a video on its video account")
    + col(M, "post_rate", "float64", "posts", "last", "budget: mean paid posts per tick")
    + col(M, "stock_units", "int64", "units", "last", "units on the shelf overnight")
    + col(M, "units_sold", "int64", "units", "sum", "units sold today")
    + col(M, "units_lost", "int64", "units", "sum", "units demanded beyond stock today")
    + col(M, "customers", "int64", "people", "last", "buyers with a completed order so far")
    + col(M, "repeat_customers", "int64", "people", "last", "buyers who came back at least once")
    + col(M, "ltv", "float64", "CNY", "last",
          "customer lifetime value: margin x AOV / (1 - retention); null before its first order", nullable=True)
    + col(M, "sii", "float64", "ratio", "last",
          "social influence index: level 2 and 3 over level-1 exposures; null before any viewer", nullable=True)
    + col(M, "cmd", "float64", "share", "last",
          "category match degree: level-1 viewers interested in its category; null before any viewer",
          nullable=True))

C = "cascades"
CASCADES: tuple[Column, ...] = tuple(
    col(C, "tick", "int32", "tick", "none", "the day of the post")
    + col(C, "cascade_key", "int64", "id", "none", "stable key: merchant x 16 + post slot")
    + col(C, "merchant", "int32", "id", "none", "merchant index")
    + col(C, "channel", "string", "label", "none", "the channel the post went to")
    + family(C, "exposures_l{x}", LEVEL, "int64", "people", "sum", "people who saw the post at {what}")
    + family(C, "shares_l{x}", SHARING, "int64", "people", "sum",
             "viewers at {what} who shared it onward")
    + family(C, "buys_l{x}", LEVEL, "int64", "orders", "sum", "filled orders at {what}")
    + col(C, "gmv", "float64", "CNY", "sum", "completed GMV of its orders"))

R = "risk_curve"
RISK_CURVE: tuple[Column, ...] = tuple(
    col(R, "tick", "int32", "tick", "none", "the day")
    + col(R, "scorer", "string", "label", "none",
          "linear (the rule) or learned (the logistic model, once fitted); both score the same payments")
    + col(R, "source", "string", "label", "none",
          "payments (the run's) or probe (the payments standing for the platform's fraud of each kind)")
    + col(R, "typology", "string", "label", "none", "legitimate, or the fraud typology")
    + col(R, "target_fpr", "float64", "share", "none",
          "the false-positive target of the grid point (1e-6 to 1e-1, four a decade)")
    + col(R, "threshold", "float64", "score", "none",
          "the threshold that target sets from the scorer's legitimate history; null while too few to resolve it",
          nullable=True)
    + col(R, "n_above", "int64", "payments", "sum", "payments of the class scoring above the threshold")
    + col(R, "n", "int64", "payments", "sum", "payments of the class"))

X = "transactions"
TRANSACTIONS: tuple[Column, ...] = tuple(
    col(X, "tick", "int32", "tick", "none", "the day")
    + col(X, "key", "int64", "id", "none", "stable key: an order's, an everyday payment's (from 2^61) or a fraud "
                                           "payment's (from 2^60)")
    + col(X, "payer", "int64", "id", "none", "paying user")
    + col(X, "merchant", "int64", "id", "none", "merchant index; -1 for everyday payments to shops outside "
                                                "micro-commerce")
    + col(X, "amount", "float64", "CNY", "sum", "amount")
    + col(X, "scenario", "int8", "code", "none", "0 QR, 1 mini-program, 2 cross-border")
    + col(X, "new_device", "bool", "flag", "none", "paid from a device or place new to the payer")
    + col(X, "account_age", "int64", "ticks", "none", "the paying account's age (a sockpuppet's stated age)")
    + col(X, "score", "float64", "score", "none", "risk score")
    + col(X, "intercepted", "bool", "flag", "sum", "score above the threshold: the payment did not go through")
    + col(X, "is_fraud", "bool", "flag", "sum", "injected fraud (ground truth)")
    + col(X, "typology", "int8", "code", "none", "fraud typology (index into ato_mule, brushing, burst, "
                                                 "laundering_fan_in, laundering_fan_out), -1 for legitimate"))


def _survival(totals: RunTotals, model: Any) -> float | None:
    compliant = int((model.merchants.compliance == Compliance.COMPLIANT).sum())
    share = ratio(totals.last["n_active_compliant"], compliant)
    return None if share is None else share ** (TICKS_PER_YEAR / totals.n_ticks)


def _analytics_growth(totals: RunTotals, model: Any) -> float | None:
    gmv = model.aggregation.analytics.sums[:, 0].sum(axis=1).astype(float)
    growth = ratio(gmv[1], gmv[0])
    return None if growth is None else growth - 1.0


def _analytics_turnover(totals: RunTotals, model: Any) -> float | None:
    sums = model.aggregation.analytics.sums.sum(axis=2).astype(float)  # [before, after] x [gmv, sold, stock]
    before, after = ratio(sums[0, 1], sums[0, 2]), ratio(sums[1, 1], sums[1, 2])
    gain = ratio(after, before)
    return None if gain is None else gain - 1.0


S = "summary"
SUMMARY: tuple[Column, ...] = tuple(
    col(S, "ticks", "int64", "ticks", Derived(lambda t, m: t.n_ticks, "ticks run"), "ticks run")
    + col(S, "users", "int64", "people", Derived(lambda t, m: m.population.n_users, "N"), "users simulated (N)")
    + col(S, "merchants", "int64", "merchants", Derived(lambda t, m: m.merchants.n, "M"), "merchant agents")
    + col(S, "active_merchants_at_end", "int64", "merchants", Final("n_active_merchants"), "merchants in business "
                                                                                           "at the end")
    + col(S, "gmv_cny", "float64", "CNY", Total("gmv", digits=2), "completed GMV of the run, to the fen")
    + family(S, "gmv_{x}_cny", CHANNEL, "float64", "CNY", lambda x: Total(f"gmv_{x}", digits=2),
             "completed GMV of {what} posts' orders, every level, to the fen")
    + col(S, "orders", "int64", "orders", Total("n_orders"), "filled orders of the run")
    + col(S, "posts", "int64", "posts", Total("n_posts"), "posts of the run")
    + family(S, "reach_l{x}_per_post", LEVEL, "float64", "people", lambda x: Ratio(f"exposures_l{x}", "n_posts"),
             "people reached at {what} per post", nullable=True)
    + family(S, "conversion_l{x}", LEVEL, "float64", "share", lambda x: Ratio(f"buys_l{x}", f"exposures_l{x}"),
             "conversion at {what}", nullable=True)
    + family(S, "conversion_{x}", {**RECOMMENDATION, **CHANNEL}, "float64", "share",
             lambda x: Ratio(f"visit_orders_{x}", f"visits_{x}"), "conversion of {what} visits", nullable=True)
    + family(S, "aov_{x}", CHANNEL, "float64", "CNY", lambda x: Ratio(f"gmv_{x}", f"orders_{x}"),
             "average order value of {what}", nullable=True)
    + col(S, "official_share_of_value", "float64", "share",
          Derived(lambda t, m: None if not t.sums["gmv"] else 1.0 - t.sums["gmv_off_platform"] / t.sums["gmv"],
                  "1 - gmv_off_platform / gmv", ("gmv", "gmv_off_platform")),
          "share of GMV paid through the official channel (SPEC: 92.3%)", nullable=True)
    + col(S, "conversion_live_viewers", "float64", "share", Ratio("visit_orders_live_viewers", "visits_live_viewers"),
          "live-stream viewers' conversion (SPEC: 19.7%)", nullable=True)
    + col(S, "provider_share_of_gmv", "float64", "share", Ratio("gmv_provider", "gmv"),
          "share of GMV carried by service-provider merchants (SPEC: 47%)", nullable=True)
    + col(S, "fraud_intercepted", "int64", "payments", Total("n_fraud_intercepted"), "fraudulent payments intercepted")
    + col(S, "fraud_missed", "int64", "payments",
          Derived(lambda t, m: t.sums["n_fraud"] - t.sums["n_fraud_intercepted"], "n_fraud - n_fraud_intercepted",
                  ("n_fraud", "n_fraud_intercepted")), "fraudulent payments that went through")
    + col(S, "false_positives", "int64", "payments", Total("n_false_positives"), "legitimate payments intercepted")
    + col(S, "exits", "int64", "merchants", Total("n_exits"), "merchants that gave up")
    + col(S, "merchant_profit_cny", "float64", "CNY", Total("profit", 2), "the merchants' profit over the run")
    + col(S, "traffic_share_of_revenue", "float64", "share", Ratio("cost_traffic", "settled"),
          "traffic cost over settled sales: what reach costs the merchants", nullable=True)
    + col(S, "net_margin", "float64", "share", Ratio("profit", "settled"),
          "the merchants' profit over their settled sales; null without sales", nullable=True)
    + col(S, "posts_per_merchant_day", "float64", "posts", Ratio("n_posts", "n_active_merchants"),
          "posts (paid and community) per merchant in business, a day; null without merchants", nullable=True)
    + col(S, "removed", "int64", "merchants", Total("n_removed"), "merchants removed by governance")
    + col(S, "exit_rate_per_year", "float64", "share",
          Derived(lambda t, m: ratio(t.sums["n_exits"] * TICKS_PER_YEAR / t.n_ticks, m.merchants.n),
                  "exits a year (the run's rate) over merchants", ("n_exits",)),
          "share of the merchants that give up in a year, at the run's rate", nullable=True)
    + col(S, "mesa_share_of_tick_time", "float64", "share",
          Derived(lambda t, m: m.plan.share_of_time("mesa"), "Mesa steps' share of the ticks' wall time"),
          "share of tick time spent in Mesa agents' decisions (wall clock)", nullable=True)
    + col(S, "bans_per_year_full_scale", "float64", "merchants",
          Derived(lambda t, m: t.sums["n_removed"] * TICKS_PER_YEAR / t.n_ticks / m.config.scale,
                  "removals a year, divided by N / 1.289e9", ("n_removed",)),
          "merchants removed a year at full scale (SPEC: 230,000 in 2022)")
    + col(S, "compliant_survival_per_year", "float64", "share",
          Derived(_survival, "(compliant in business at the end / compliant) ** (365 / ticks)",
                  ("n_active_compliant",)),
          "compliant merchants' survival compounded to a year (SPEC: 81%)", nullable=True)
    + col(S, "report_response_minutes", "float64", "minutes", Mean("report_response_minutes"),
          "mean response time to a report at full scale (SPEC: under 15)")
    + col(S, "repurchase_rate_members", "float64", "share", Final("repurchase_rate_members"),
          "community members' repurchase rate at the end", nullable=True)
    + col(S, "repurchase_rate_others", "float64", "share", Final("repurchase_rate_others"),
          "other customers' repurchase rate at the end", nullable=True)
    + col(S, "repurchase_ratio_members", "float64", "ratio",
          Ratio(Final("repurchase_rate_members"), Final("repurchase_rate_others")),
          "members' repurchase rate over others' (SPEC: 4.2x)", nullable=True)
    + col(S, "analytics_gmv_growth", "float64", "share",
          Derived(_analytics_growth, "analytics adopters' GMV after / before adopting - 1"),
          "analytics adopters' GMV growth over the window after adopting (SPEC: +132%)", nullable=True)
    + col(S, "analytics_turnover_gain", "float64", "share",
          Derived(_analytics_turnover, "adopters' inventory turnover after / before - 1"),
          "analytics adopters' inventory turnover gain (SPEC: +27%)", nullable=True)
    + col(S, "stockout_share", "float64", "share",
          Ratio("units_lost", Derived(lambda t, m: t.sums["units_sold"] + t.sums["units_lost"], "units demanded",
                                      ("units_sold", "units_lost"))),
          "units demanded beyond stock over units demanded", nullable=True)
    + col(S, "inventory_turnover", "float64", "ratio", Ratio("units_from_shelf", "stock_units"),
          "units sold off the shelf per unit of stock held a tick", nullable=True)
    + family(S, "share_{x}_style_at_end", {"content": "content", "inducement": "inducement"}, "float64", "share",
             lambda x: Ratio(Final(f"n_style_{x}"), Final("n_active_merchants")),
             "share of merchants in business whose style is {what}, at the end", nullable=True))

REGISTRY: dict[str, tuple[Column, ...]] = {"ticks": TICKS, "merchants": MERCHANTS, "cascades": CASCADES,
                                          "risk_curve": RISK_CURVE, "transactions": TRANSACTIONS, "summary": SUMMARY}
#: model-level figures a Mesa DataCollector reads from :class:`~weishang.model.commerce.CommerceModel`
MODEL_FIGURES = ("gmv", "n_orders", "n_posts", "n_active_merchants", "n_exits", "n_removed", "conversion_friend_rec",
                 "conversion_system_rec", "n_fraud", "n_fraud_intercepted", "n_false_positives", "fraud_loss",
                 "settled", "units_lost")


def display(column: Column, value: Any) -> str:
    """A value for a person, by the column's unit: shares as percentages, money in CNY to the fen,
    counts with thousands separators, "-" where undefined."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if column.unit == "share":
        return f"{value:.2%}"
    if column.dtype in ("int8", "int16", "int32", "int64"):  # a count, or a mean of counts
        return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    if column.unit == "CNY":
        return f"{value:,.2f} CNY"
    if column.unit in ("minutes", "s"):
        return f"{value:,.4g} {'min' if column.unit == 'minutes' else 's'}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def column(table: str, name: str) -> Column:
    """The registry entry, or a ValueError naming the table's columns."""
    for c in REGISTRY[table]:
        if c.name == name:
            return c
    raise ValueError(f"{table} has no column {name!r}")


def _check() -> None:
    for table, columns in REGISTRY.items():
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{table}: a column is declared twice")
        for c in columns:
            if c.dtype not in DTYPES:
                raise ValueError(f"{table}.{c.name}: dtype {c.dtype!r}")
            if isinstance(c.reduction, Reduction):
                for used in c.reduction.columns():
                    column("ticks", used)


_check()
