"""The statistics a report states: each run's outcomes, their means per scenario and grid point,
and the paired effects of each scenario against the baseline at each point.

Replicate k of every scenario and point shares its random streams (common random numbers), so a
scenario's effect is estimated on the per-replicate differences from the baseline *at the same
grid point*: never pooled across points, whose outcomes differ by design. Intervals are 95%
Student t intervals from :mod:`scipy.stats` over replicates (the paired differences, or the runs
of one scenario and point); a figure that cannot be negative gets an interval clipped at zero,
and one replicate gets none (null).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

KEYS = ["scenario", "point", "replicate"]


@dataclass(frozen=True)
class Outcome:
    """A per-run outcome: its name, the ``ticks`` column it reduces, how, its unit, a label for
    people, and the registry column whose unit and type format it."""

    name: str
    column: str
    how: str  # "sum" over the run's ticks, or the "last" tick's value
    unit: str
    label: str
    unit_column: str = ""

    def __post_init__(self) -> None:
        if not self.unit_column:
            object.__setattr__(self, "unit_column", self.column)


OUTCOMES = (
    Outcome("gmv", "gmv", "sum", "CNY", "GMV"),
    Outcome("orders", "n_orders", "sum", "orders", "orders"),
    Outcome("fraud_intercepted", "n_fraud_intercepted", "sum", "payments", "fraud caught"),
    Outcome("fraud_missed", "fraud_missed", "sum", "payments", "fraud missed", unit_column="n_fraud"),
    Outcome("fraud_loss", "fraud_loss", "sum", "CNY", "fraud loss"),
    Outcome("false_positives", "n_false_positives", "sum", "payments", "false positives"),
    Outcome("exits", "n_exits", "sum", "merchants", "exits"),
    Outcome("active_merchants_at_end", "n_active_merchants", "last", "merchants", "merchants in business at the end"),
)


def run_outcomes(ticks: pl.DataFrame) -> pl.DataFrame:
    """One row per run (scenario, point, replicate) with every :data:`OUTCOMES` column."""
    ticks = ticks.with_columns((pl.col("n_fraud") - pl.col("n_fraud_intercepted")).alias("fraud_missed"))
    aggs = [(pl.col(o.column).sort_by("tick").last() if o.how == "last" else pl.col(o.column).sum()).alias(o.name)
            for o in OUTCOMES]
    return ticks.group_by(KEYS).agg(aggs).sort(KEYS)


def t_interval(values: np.ndarray, nonnegative: bool = False) -> tuple[float, float | None, float | None]:
    """(mean, low, high): the 95% t interval of the mean; (mean, None, None) for one value; the
    low end clipped at 0 for a figure that cannot be negative."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.shape[0] < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.975, values.shape[0] - 1) * values.std(ddof=1) / np.sqrt(values.shape[0]))
    low = mean - half
    return mean, (max(low, 0.0) if nonnegative else low), mean + half


def relative_change(diff: np.ndarray, base: np.ndarray,
                    nonnegative: bool = True) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high) of paired differences (float64[R]) relative to the baseline's mean of its
    R replicates (``base``), a fraction: 0.1 is +10%; all None when the baseline's mean is 0.
    A figure that cannot be negative cannot fall by more than all of it: its low end stops at -1."""
    reference = float(np.mean(base))
    if not reference:
        return None, None, None
    mean, low, high = t_interval(np.asarray(diff, dtype=float) / reference)
    if low is not None and nonnegative:
        low = max(low, -1.0)
    return mean, low, high


def summarize_outcomes(outcomes: pl.DataFrame) -> pl.DataFrame:
    """Per scenario, point and outcome: replicates, mean and 95% interval (never below zero)."""
    rows = []
    for (scenario, point), group in outcomes.group_by(["scenario", "point"], maintain_order=True):
        for o in OUTCOMES:
            mean, low, high = t_interval(group[o.name].to_numpy(), nonnegative=True)
            rows.append({"scenario": scenario, "point": point, "outcome": o.name, "unit": o.unit,
                         "replicates": group.height, "mean": mean, "ci_low": low, "ci_high": high})
    return pl.DataFrame(rows, schema_overrides={"ci_low": pl.Float64, "ci_high": pl.Float64})


def paired_effects(outcomes: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """Each other scenario minus ``baseline`` at each grid point, paired by replicate.

    Columns: scenario, point, outcome, unit, replicates (pairs), delta and its 95% interval,
    and the relative effect (delta over the baseline's mean at that point) with its interval.
    """
    base = outcomes.filter(pl.col("scenario") == baseline)
    rows = []
    for scenario in sorted(set(outcomes["scenario"]) - {baseline}):
        joined = outcomes.filter(pl.col("scenario") == scenario).join(base, on=["point", "replicate"],
                                                                      suffix="_base")
        for (point,), pairs in joined.group_by(["point"], maintain_order=True):
            for o in OUTCOMES:
                d = (pairs[o.name] - pairs[f"{o.name}_base"]).to_numpy().astype(float)
                mean, low, high = t_interval(d)
                relative = relative_change(d, pairs[f"{o.name}_base"].to_numpy())  # every outcome here is >= 0
                rows.append({"scenario": scenario, "point": point, "outcome": o.name, "unit": o.unit,
                             "replicates": int(d.shape[0]), "delta": mean, "ci_low": low, "ci_high": high,
                             "relative": relative[0], "relative_low": relative[1], "relative_high": relative[2]})
    schema = {name: pl.Float64 for name in ("delta", "ci_low", "ci_high", "relative", "relative_low",
                                            "relative_high")}
    return pl.DataFrame(rows, schema_overrides=schema) if rows else pl.DataFrame()
