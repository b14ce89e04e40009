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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .codes import LEVELS, OFFICIAL_SCENARIOS, TICKS_PER_YEAR, Channel, Compliance, PaymentScenario, Style
from .mechanisms.risk.fraud import TYPOLOGIES

TABLES = ("ticks", "merchants", "cascades", "risk_curve", "transactions", "summary")
#: figures that take either sign
SIGNED = {"fx_exposure", "cum_profit", "profit", "merchant_profit_cny"}
#: figures that can be negative but never above 1: a margin (profit over sales) is a loss
#: without bound below (issue 32: net margin -8.6 was reported with an interval [0, -5.9])
AT_MOST_ONE = {"net_margin"}
#: Arrow type names the registry uses
DTYPES = ("int8", "int16", "int32", "int64", "float64", "bool", "string")


# ------------------------------------------------------------------ reductions

class Reduction:
    """How a run's ticks reduce to one figure (see :class:`RunTotals`)."""

    def value(self, totals: "RunTotals", model: Any) -> float | None:
        raise NotImplementedError

    def columns(self) -> tuple[str, ...]:
        """The ``ticks`` columns it reads."""
        return ()


@dataclass(frozen=True)
class Total(Reduction):
    """The column's sum over the run's ticks (rounded to ``digits`` decimals when given)."""

    column: str
    digits: int | None = None

    def value(self, totals: "RunTotals", model: Any) -> float:
        total = totals.sums[self.column]
        return total if self.digits is None else round(total, self.digits)

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class Final(Reduction):
    """The column's value at the last tick (a stock, or a running figure)."""

    column: str

    def value(self, totals: "RunTotals", model: Any) -> float | None:
        return totals.last[self.column]

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class Mean(Reduction):
    """The column's mean over the run's ticks."""

    column: str

    def value(self, totals: "RunTotals", model: Any) -> float | None:
        return totals.sums[self.column] / totals.n_ticks if totals.n_ticks else None

    def columns(self) -> tuple[str, ...]:
        return (self.column,)


@dataclass(frozen=True)
class Ratio(Reduction):
    """One reduction over another (a column name means its :class:`Total`); null over nothing."""

    numerator: Reduction | str
    denominator: Reduction | str

    def _parts(self) -> tuple[Reduction, Reduction]:
        return tuple(Total(p) if isinstance(p, str) else p for p in (self.numerator, self.denominator))

    def value(self, totals: "RunTotals", model: Any) -> float | None:
        num, den = (p.value(totals, model) for p in self._parts())
        return ratio(num, den)

    def columns(self) -> tuple[str, ...]:
        return tuple(c for p in self._parts() for c in p.columns())


@dataclass(frozen=True)
class Derived(Reduction):
    """A formula over the run's totals and the model at the end (``how`` says which)."""

    formula: Callable[["RunTotals", Any], float | None]
    how: str
    uses: tuple[str, ...] = ()

    def value(self, totals: "RunTotals", model: Any) -> float | None:
        return self.formula(totals, model)

    def columns(self) -> tuple[str, ...]:
        return self.uses


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None (undefined) when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or not denominator:
        return None
    return float(numerator / denominator)


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


# ------------------------------------------------------------------ columns

@dataclass(frozen=True)
class Column:
    """One output column.

    Attributes:
        name, table (one of :data:`TABLES`), dtype (one of :data:`DTYPES`).
        unit: what a value counts or measures ("CNY", "people", "share" (0 to 1), ...).
        reduction: how a run's ticks reduce it: "sum", "last", "mean", "none", or a
            :class:`Reduction` (summary entries).
        meaning: one sentence; says when the value is null for ``nullable`` columns.
        family: the template it was generated from (``"exposures_l{x}"``), and family_meaning
            the meaning of the whole family, for the docs.
    """

    name: str
    table: str
    dtype: str
    unit: str
    reduction: str | Reduction
    meaning: str
    nullable: bool = False
    family: str = ""
    family_meaning: str = ""

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The values the figure can take: shares lie in [0, 1] (a margin only below 1), growths
        and gains are above -1, scores and what is signed by nature (exchange-rate exposure,
        profit) are unbounded, and everything else (counts, money, times) is non-negative."""
        if self.name in SIGNED or self.unit == "score":
            return None, None
        if self.name in AT_MOST_ONE:
            return None, 1.0
        if self.name.endswith(("_growth", "_gain")):
            return -1.0, None
        return (0.0, 1.0) if self.unit == "share" else (0.0, None)


def col(table: str, name: str, dtype: str, unit: str, reduction: str | Reduction, meaning: str,
        nullable: bool = False) -> list[Column]:
    return [Column(name, table, dtype, unit, reduction, meaning, nullable)]


def family(table: str, template: str, values: dict[str, str], dtype: str, unit: str,
           reduction: str | Callable[[str], Reduction], meaning: str, nullable: bool = False,
           of: dict[str, str] | None = None) -> list[Column]:
    """One column per value: ``template`` and ``meaning`` are formatted with ``{x}`` (the value) and
    ``{what}`` (its description); a callable reduction gets the value. ``of``: the whole family's
    values when ``values`` is a part of it (to interleave families column by column)."""
    whole = meaning.format(x="{x}", what=" / ".join((of or values).values()))
    return [Column(template.format(x=x), table, dtype, unit, reduction(x) if callable(reduction) else reduction,
                   meaning.format(x=x, what=what), nullable, template, whole)
            for x, what in values.items()]


LEVEL = {str(lv): f"level {lv}" for lv in LEVELS}
#: the levels whose viewers can share onward (level 3's strangers do not)
SHARING = {k: v for k, v in LEVEL.items() if int(k) < LEVELS[-1]}
CHANNEL = {label: label.replace("_", " ") for label in Channel.labels()}
SCENARIO = {PaymentScenario.label(s): PaymentScenario.label(s).replace("_", " ") for s in OFFICIAL_SCENARIOS}
STYLE = {label: label for label in Style.labels()}
TYPOLOGY = {t: t.replace("_", " ") for t in TYPOLOGIES}
RECOMMENDATION = {"friend_rec": "the channels where a friend recommends personally (Moments, live, external "
                                "links)",
                  "system_rec": "search (system recommendation)"}

T = "ticks"
TICKS: tuple[Column, ...] = tuple(
    col(T, "tick", "int64", "tick", "none", "the day, 0-based")
    + col(T, "n_active_merchants", "int64", "merchants", "last", "merchants in business at the end of the tick")
    + col(T, "n_posts", "int64", "posts", "sum", "posts made (paid and community)")
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
    + [c for s, what in SCENARIO.items() for c in (
        family(T, "n_tx_{x}", {s: what}, "int64", "payments", "sum",
               "{what} payments the risk engine screened (orders, everyday payments and fraud)", of=SCENARIO)
        + family(T, "n_intercepted_{x}", {s: what}, "int64", "payments", "sum", "of those, intercepted", of=SCENARIO)
        + family(T, "interception_rate_{x}", {s: what}, "float64", "share",
                 lambda x: Ratio(f"n_intercepted_{x}", f"n_tx_{x}"),
                 "intercepted over screened {what} payments; null without any", nullable=True, of=SCENARIO))]
    + col(T, "n_everyday", "int64", "payments", "sum",
          "everyday WeChat Pay payments screened besides micro-commerce orders")
    + col(T, "n_orders_intercepted", "int64", "payments", "sum", "micro-commerce orders intercepted (all legitimate)")
    + col(T, "n_screened", "int64", "payments", "sum", "payments the risk engine screened (every scenario)")
    + col(T, "n_intercepted", "int64", "payments", "sum", "payments the risk engine intercepted (every scenario)")
    + col(T, "n_fraud", "int64", "payments", "sum", "injected fraudulent payments")
    + col(T, "n_fraud_intercepted", "int64", "payments", "sum", "fraudulent payments intercepted")
    + col(T, "n_false_positives", "int64", "payments", "sum", "legitimate payments intercepted")
    + col(T, "false_positive_rate", "float64", "share", Ratio("n_false_positives", Derived(
          lambda t, m: t.sums["n_tx_qr"] + t.sums["n_tx_mini_program"] + t.sums["n_tx_cross_border"]
          - t.sums["n_fraud"], "screened payments less fraud")),
          "legitimate payments intercepted over legitimate payments screened; null without any", nullable=True)
    + col(T, "precision", "float64", "share", Ratio("n_fraud_intercepted", Derived(
          lambda t, m: t.sums["n_fraud_intercepted"] + t.sums["n_false_positives"], "interceptions")),
          "fraud among the intercepted payments; null when nothing was intercepted", nullable=True)
    + col(T, "recall", "float64", "share", Ratio("n_fraud_intercepted", "n_fraud"),
          "fraudulent payments intercepted over fraudulent payments; null without fraud", nullable=True)
    + col(T, "illicit_share", "float64", "share", "mean",
          "fraudulent over all screened payments; null without any", nullable=True)
    + col(T, "fraud_loss", "float64", "CNY", "sum", "value of the fraud that passed")
    + col(T, "risk_threshold", "float64", "score", "none",
          "score above which payments are intercepted (infinite while the engine has no history)")
    + family(T, "n_fraud_{x}", TYPOLOGY, "int64", "payments", "sum", "injected {what} payments")
    + family(T, "n_fraud_intercepted_{x}", TYPOLOGY, "int64", "payments", "sum", "intercepted {what} payments")
    + col(T, "learned_scoring", "bool", "flag", "last",
          "the learned scorer decided the tick (false: the linear rule, before the first fit or by config)")
    + col(T, "n_orders", "int64", "orders", "sum", "filled orders")
    + col(T, "gmv", "float64", "CNY", "sum", "completed GMV: filled orders whose payment was not intercepted")
    + family(T, "gmv_{x}", {label: label.replace("_", " ") for label in PaymentScenario.labels()}, "float64", "CNY", "sum",
             "completed GMV paid by {what}")
    + col(T, "fees", "float64", "CNY", "sum", "transaction-component fees charged")
    + col(T, "fx_locked", "float64", "CNY", "sum", "cross-border value locked at today's exchange rates")
    + col(T, "fx_exposure", "float64", "CNY", "sum",
          "exchange-rate gain (positive) or loss of the cross-border value settling today")
    + col(T, "settled", "float64", "CNY", "sum", "sales settled into merchants' accounts today")
    + col(T, "gmv_provider", "float64", "CNY", "sum", "completed GMV of merchants run through a service provider")
    + col(T, "n_flagged", "int64", "merchants", "sum", "merchants machine review flagged")
    + col(T, "n_false_flags", "int64", "merchants", "sum", "of those, compliant ones")
    + col(T, "n_reports", "int64", "reports", "sum", "user reports against merchants")
    + col(T, "n_reviewed", "int64", "merchants", "sum", "merchants human review settled")
    + col(T, "n_cleared", "int64", "merchants", "sum", "reviewed and found compliant")
    + col(T, "review_backlog_reports", "int64", "merchants", "last", "merchants with reports waiting for review")
    + col(T, "review_backlog_flags", "int64", "merchants", "last", "merchants with only machine flags waiting")
    + col(T, "report_response_minutes", "float64", "minutes", "mean",
          "response time to a report at full scale (a fluid-queue estimate; infinite without review capacity)")
    + col(T, "n_removed", "int64", "merchants", "sum", "merchants removed by governance")
    + col(T, "n_rectifications", "int64", "merchants", "sum", "merchants given a rectification period")
    + col(T, "n_exits", "int64", "merchants", "sum", "merchants that gave up (unprofitable)")
    + col(T, "n_active_compliant", "int64", "merchants", "last", "compliant merchants in business")
    + col(T, "traffic_cost_per_post", "float64", "CNY", "mean", "what one post's traffic costs today")
    + col(T, "mean_post_rate", "float64", "posts", "mean",
          "mean paid posts per tick budgeted by the merchants in business; null when none is", nullable=True)
    + family(T, "effort_{x}", CHANNEL, "float64", "share", "last",
             "mean share of their paid posts the merchants in business put on {what} (their channel mix); null when "
             "none is", nullable=True)
    + col(T, "cost_traffic", "float64", "CNY", "sum", "what the paid posts' traffic cost the merchants in business")
    + col(T, "cost_fixed", "float64", "CNY", "sum", "fixed costs of the merchants in business")
    + col(T, "cost_holding", "float64", "CNY", "sum", "their cost of holding stock")
    + col(T, "profit", "float64", "CNY", "sum", "profit of the merchants in business today: settled margin less fees, "
                                                "traffic, fixed and holding costs")
    + family(T, "n_style_{x}", STYLE, "int64", "merchants", "last", "merchants in business whose style is {what}")
    + col(T, "units_sold", "int64", "units", "sum", "units sold")
    + col(T, "units_from_shelf", "int64", "units", "sum",
          "of those, units off the merchants' own shelves (the rest their suppliers shipped)")
    + col(T, "units_lost", "int64", "units", "sum", "units demanded beyond stock (lost sales)")
    + col(T, "stock_units", "int64", "units", "last", "units on the merchants' shelves overnight")
    + col(T, "customers", "int64", "pairs", "last", "(merchant, buyer) pairs with a completed order so far")
    + col(T, "repurchase_rate_members", "float64", "share", "last",
          "share of community members' (merchant, buyer) pairs that bought again; null without any", nullable=True)
    + col(T, "repurchase_rate_others", "float64", "share", "last",
          "the same for customers outside the merchant's community; null without any", nullable=True)
    + col(T, "n_group_parts_oversized", "int64", "groups", "last", "group parts over the down-weighting threshold")
    + col(T, "n_groups_split", "int64", "groups", "sum", "groups merchants split into smaller parts")
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
