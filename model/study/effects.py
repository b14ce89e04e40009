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


# ------------------------------------------------------------------ over an ensemble


def two_level(values: np.ndarray) -> tuple[float, float | None, float | None]:
    """(mean, seed half-width, parameter half-width) of values (float64[M, K]): K replicate
    seeds of each of M ensemble members, replicate k on the same random streams in every member
    (common random numbers).

    The mean is over members and replicates. With common seeds a value is a member's effect plus
    a seed's effect plus noise (two-way layout, v[m, k] = mu + a_m + b_k + e), so:

    * seed: the 95% t interval half-width of the mean from the replicates' spread (the K
      replicate means over members): what more replicates would shrink;
    * parameters: 1.96 sd of the members' effects a_m: the spread of the member means less the
      share the noise e explains (residual mean square / K, at least 0): how far the answer moves
      across parameter sets consistent with the targets, which no number of replicates shrinks.

    None where there are too few members or replicates (K >= 2 for either; M >= 2 for parameters).
    """
    values = np.asarray(values, dtype=float)
    m, k = values.shape
    grand = float(values.mean())
    if k < 2:
        return grand, None, None
    member_means = values.mean(axis=1)
    replicate_means = values.mean(axis=0)
    seed_half = float(stats.t.ppf(0.975, k - 1) * replicate_means.std(ddof=1) / np.sqrt(k))
    if m < 2:
        return grand, seed_half, None
    residual = values - member_means[:, None] - replicate_means[None, :] + grand
    noise = float((residual**2).sum() / ((m - 1) * (k - 1)))
    spread = float(member_means.var(ddof=1)) - noise / k
    return grand, seed_half, float(1.96 * np.sqrt(max(spread, 0.0)))


def _by_member(frame: pl.DataFrame, column: str, members: dict[int, int]) -> np.ndarray:
    """(float64[M, K]) a column laid out member by replicate (replicates every member has)."""
    frame = frame.with_columns(pl.col("point").replace_strict(members, return_dtype=pl.Int64).alias("member"))
    wide = frame.pivot(on="replicate", index="member", values=column, aggregate_function="first").sort("member")
    return wide.drop("member").drop_nulls().to_numpy().astype(float)


def _ensemble_row(values: np.ndarray, reference: float | None, nonnegative: bool) -> dict[str, float | None]:
    mean, seed_half, param_half = two_level(values)
    row: dict[str, float | None] = {"mean": mean}
    for name, half in (("seed", seed_half), ("param", param_half)):
        low = None if half is None else mean - half
        if low is not None and nonnegative:
            low = max(low, 0.0)
        row[f"{name}_low"], row[f"{name}_high"] = low, (None if half is None else mean + half)
    if reference:
        for key in ("mean", "seed_low", "seed_high", "param_low", "param_high"):
            row[f"relative_{key}"] = None if row[key] is None else row[key] / reference
        for key in ("relative_seed_low", "relative_param_low"):  # a figure >= 0 falls by at most all of it
            if row[key] is not None:
                row[key] = max(row[key], -1.0)
    return row


def ensemble_outcomes(outcomes: pl.DataFrame, members: dict[int, int]) -> pl.DataFrame:
    """Per scenario and outcome, over an ensemble (``members``: point -> member): the mean over
    members, its seed interval and the parameter range (:func:`two_level`)."""
    rows = []
    for (scenario,), group in outcomes.group_by(["scenario"], maintain_order=True):
        for o in OUTCOMES:
            values = _by_member(group, o.name, members)
            row = _ensemble_row(values, None, nonnegative=True)
            rows.append({"scenario": scenario, "outcome": o.name, "unit": o.unit, "members": values.shape[0],
                         "replicates": values.shape[1], **{k: row[k] for k in ("mean", "seed_low", "seed_high",
                                                                               "param_low", "param_high")}})
    return pl.DataFrame(rows, schema_overrides={k: pl.Float64 for k in ("seed_low", "seed_high", "param_low",
                                                                         "param_high")})


def ensemble_effects(outcomes: pl.DataFrame, baseline: str, members: dict[int, int]) -> pl.DataFrame:
    """Each other scenario minus ``baseline``, paired by member and replicate (common seeds), over
    an ensemble: the mean effect, its seed interval and its parameter range, absolute and relative
    to the baseline's mean over the ensemble (:func:`two_level`)."""
    base = outcomes.filter(pl.col("scenario") == baseline)
    rows = []
    for scenario in sorted(set(outcomes["scenario"]) - {baseline}):
        pairs = outcomes.filter(pl.col("scenario") == scenario).join(base, on=["point", "replicate"], suffix="_base")
        for o in OUTCOMES:
            diff = pairs.with_columns((pl.col(o.name) - pl.col(f"{o.name}_base")).cast(pl.Float64).alias("d"))
            values = _by_member(diff, "d", members)
            reference = float(_by_member(pairs, f"{o.name}_base", members).mean())
            row = _ensemble_row(values, reference, nonnegative=False)
            rows.append({"scenario": scenario, "outcome": o.name, "unit": o.unit, "members": values.shape[0],
                         "replicates": values.shape[1], "delta": row["mean"],
                         **{k: row.get(k) for k in ("seed_low", "seed_high", "param_low", "param_high",
                                                    "relative_mean", "relative_seed_low", "relative_seed_high",
                                                    "relative_param_low", "relative_param_high")}})
    floats = ("delta", "seed_low", "seed_high", "param_low", "param_high", "relative_mean", "relative_seed_low",
              "relative_seed_high", "relative_param_low", "relative_param_high")
    return pl.DataFrame(rows, schema_overrides={k: pl.Float64 for k in floats}) if rows else pl.DataFrame()
