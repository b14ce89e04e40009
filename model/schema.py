"""The vocabulary of output columns: a :class:`Column` (name, table, dtype, unit, how a run
reduces it, meaning), the helpers that declare one (:func:`col`) or a family (:func:`family`),
the reductions, and the labels families are made over (levels, channels, scenarios, styles,
typologies). Each mechanism declares its ``ticks`` columns with these
(:attr:`~weishang.model.plan.Mechanism.columns`); :mod:`weishang.model.columns` gathers every
table's columns into the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .codes import (
    LEVELS,
    OFFICIAL_SCENARIOS,
    Channel,
    PaymentScenario,
    Style,
)
from .mechanisms.risk.fraud import TYPOLOGIES

if TYPE_CHECKING:
    from .columns import RunTotals

#: the ``ticks`` table's name, as the mechanisms' column declarations write it
T = "ticks"
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

