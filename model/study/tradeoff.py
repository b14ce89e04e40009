"""The risk engine's trade-off, read from a run's or sweep's ``risk_curve`` table: recall,
false-positive rate and precision at each false-positive target of the grid, per scorer and
fraud typology, and the picture of it with each scenario's operating point.

Counts are summed over ticks (from ``from_tick``, past the engine's cold start) and over the
replicates of one scenario and grid point, never across scenarios or points: a curve is one
engine on one world. Recall per typology comes from the run's own fraud (``source =
"payments"``) and from the fraud probe (``"probe"``: the payments standing for the platform's
fraud of each kind, hundreds a day per typology whatever N, so rare typologies have a curve at
200k users too). Precision needs the true mix of fraud and legitimate payments, so it comes from
the run's payments only: for a typology, its intercepted payments over themselves plus the
intercepted legitimate ones.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ..mechanisms.risk.fraud import TYPOLOGIES  # noqa: E402
from ..recorder import read_manifest  # noqa: E402

#: the engine's cold start: the validation's window starts here too
FROM_TICK = 30
KEYS = ["scenario", "point"]


def read_curve(directory: str | Path) -> pl.DataFrame | None:
    """The ``risk_curve`` rows of a run directory or a sweep (with ``scenario``, ``point`` and
    ``replicate``), or None when it has none (runs written before the table existed)."""
    directory = Path(directory)
    if (directory / "runs.parquet").is_file():
        files = list((directory / "risk_curve").glob("**/*.parquet")) if (directory / "risk_curve").is_dir() else []
        if not files:
            return None
        runs = pl.read_parquet(directory / "runs.parquet").filter(pl.col("status") == "complete")
        keep = runs.select(pl.col("scenario"), pl.col("point").cast(pl.Int64), pl.col("replicate").cast(pl.Int64))
        frame = pl.scan_parquet(directory / "risk_curve" / "**" / "*.parquet", hive_partitioning=True)
        frame = frame.with_columns(pl.col("scenario").cast(pl.Utf8), pl.col("point").cast(pl.Int64),
                                   pl.col("replicate").cast(pl.Int64))
        return frame.join(keep.lazy(), on=["scenario", "point", "replicate"]).collect()
    path = directory / "risk_curve.parquet"
    if not path.is_file():
        return None
    scenario = read_manifest(directory)["scenario"]
    return pl.read_parquet(path).with_columns(pl.lit(scenario).alias("scenario"), pl.lit(0, pl.Int64).alias("point"),
                                              pl.lit(0, pl.Int64).alias("replicate"))


def curve_points(curve: pl.DataFrame, from_tick: int = FROM_TICK) -> pl.DataFrame:
    """One row per (scenario, point, scorer, source, typology, target_fpr): ``fpr`` (legitimate
    payments above the threshold over legitimate payments), ``recall`` (the class's payments
    above it over the class's), ``precision`` (payments source: the class's intercepted over
    those plus the intercepted legitimate; null for the probe), and the counts. ``typology``
    "all" is every typology of the run's payments together."""
    keys = [*KEYS, "scorer", "source", "typology", "target_fpr"]
    summed = (curve.filter(pl.col("tick") >= from_tick).group_by(keys)
              .agg(pl.col("n_above").sum(), pl.col("n").sum()))
    fraud_payments = summed.filter((pl.col("source") == "payments") & (pl.col("typology") != "legitimate"))
    every = (fraud_payments.group_by([*KEYS, "scorer", "source", "target_fpr"])
             .agg(pl.col("n_above").sum(), pl.col("n").sum()).with_columns(pl.lit("all").alias("typology")))
    summed = pl.concat([summed, every.select(summed.columns)])
    legit = (summed.filter(pl.col("typology") == "legitimate")
             .select([*KEYS, "scorer", "target_fpr", pl.col("n_above").alias("fp"), pl.col("n").alias("n_legit")]))
    fraud = summed.filter(pl.col("typology") != "legitimate").join(legit, on=[*KEYS, "scorer", "target_fpr"])
    ratio = (lambda a, b: pl.when(b > 0).then(a / b).otherwise(None))
    return fraud.with_columns(
        ratio(pl.col("fp"), pl.col("n_legit")).alias("fpr"),
        ratio(pl.col("n_above"), pl.col("n")).alias("recall"),
        pl.when(pl.col("source") == "payments").then(ratio(pl.col("n_above"), pl.col("n_above") + pl.col("fp")))
        .otherwise(None).alias("precision"),
    ).sort(keys)


#: the ticks columns :func:`operating_points` reads
OPERATING_COLUMNS = ("n_false_positives", "n_fraud", "n_fraud_intercepted", "n_tx_qr", "n_tx_mini_program",
                     "n_tx_cross_border", *(f"n_fraud_{t}" for t in TYPOLOGIES),
                     *(f"n_fraud_intercepted_{t}" for t in TYPOLOGIES))


def operating_points(ticks: pl.DataFrame, from_tick: int = FROM_TICK) -> pl.DataFrame:
    """Each (scenario, point)'s realised false-positive rate, precision and recall (all fraud
    and per typology) from ``ticks`` rows (with scenario and point columns), replicates pooled."""
    s = (ticks.filter(pl.col("tick") >= from_tick).group_by(KEYS, maintain_order=True)
         .agg([pl.col(c).sum() for c in OPERATING_COLUMNS]))
    n_legit = pl.col("n_tx_qr") + pl.col("n_tx_mini_program") + pl.col("n_tx_cross_border") - pl.col("n_fraud")
    ratio = (lambda a, b: pl.when(b > 0).then(a / b).otherwise(None))
    return s.with_columns(
        ratio(pl.col("n_false_positives"), n_legit).alias("fpr"),
        ratio(pl.col("n_fraud_intercepted"), pl.col("n_fraud_intercepted") + pl.col("n_false_positives"))
        .alias("precision"),
        ratio(pl.col("n_fraud_intercepted"), pl.col("n_fraud")).alias("recall"),
        *(ratio(pl.col(f"n_fraud_intercepted_{t}"), pl.col(f"n_fraud_{t}")).alias(f"recall_{t}") for t in TYPOLOGIES),
    )


def recall_at(points: pl.DataFrame, fpr: float) -> float | None:
    """The highest recall among ``points`` (one curve's rows) whose false-positive rate is at
    most ``fpr``; None when none is."""
    ok = points.filter(pl.col("fpr").is_not_null() & (pl.col("fpr") <= fpr) & pl.col("recall").is_not_null())
    return None if ok.height == 0 else float(ok["recall"].max())


def derived_range() -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((recall low, high), (precision low, high)): the operating range derived from the SPEC's
    figures (docs/risk.md), as the validation's plausibility bounds hold it."""
    from .validation import load_targets  # noqa: PLC0415

    bounds = {t.id: (t.low, t.high) for t in load_targets() if t.id in ("risk_recall", "risk_precision")}
    return (bounds["risk_recall"], bounds["risk_precision"]) if len(bounds) == 2 else None


def recall_interpolated(points: pl.DataFrame, fpr: float) -> float | None:
    """The curve's recall at false-positive rate ``fpr``, interpolated linearly in log(fpr)
    between the grid points around it (the curve is traced at four points a decade); None
    outside the traced range."""
    ok = (points.filter(pl.col("fpr").is_not_null() & (pl.col("fpr") > 0) & pl.col("recall").is_not_null())
          .group_by("fpr").agg(pl.col("recall").max()).sort("fpr"))
    if ok.height == 0 or not ok["fpr"][0] <= fpr <= ok["fpr"][-1]:
        return None
    return float(np.interp(np.log(fpr), np.log(ok["fpr"].to_numpy()), ok["recall"].to_numpy()))


def plot_tradeoff(points: pl.DataFrame, operating: pl.DataFrame | None, path: Path, title: str = "") -> Path:
    """ROC per typology (the probe's, learned scorer solid, linear rule dashed; log false-positive
    axis) and precision against recall of the run's payments, with the operating points."""
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(13.5, 4.6))
    for i, typology in enumerate(TYPOLOGIES):
        for scorer, style in (("learned", "-"), ("linear", "--")):
            rows = points.filter((pl.col("source") == "probe") & (pl.col("typology") == typology)
                                 & (pl.col("scorer") == scorer) & pl.col("fpr").is_not_null() & (pl.col("fpr") > 0))
            if rows.height:
                roc.plot(rows["fpr"], rows["recall"], style, color=f"C{i}", lw=1.6,
                         label=typology if scorer == "learned" else None)
    for scorer, style in (("learned", "-"), ("linear", "--")):
        rows = points.filter((pl.col("source") == "payments") & (pl.col("typology") == "all")
                             & (pl.col("scorer") == scorer) & pl.col("fpr").is_not_null() & (pl.col("fpr") > 0))
        if rows.height:
            roc.plot(rows["fpr"], rows["recall"], style, color="k", lw=1.2,
                     label="the run's fraud" if scorer == "learned" else "dashed: the linear rule")
    for scorer, style in (("learned", "-"), ("linear", "--")):
        rows = points.filter((pl.col("source") == "payments") & (pl.col("typology") == "all")
                             & (pl.col("scorer") == scorer) & pl.col("precision").is_not_null())
        if rows.height:
            pr.plot(rows["recall"], rows["precision"], style + "o", color="k", ms=3, lw=1.4,
                    label=f"all fraud, {scorer}")
    if operating is not None:
        for j, r in enumerate(operating.iter_rows(named=True)):
            label = r["scenario"] + ("" if operating["point"].n_unique() == 1 else f" #{r['point']}")
            if r["fpr"] and r["recall"] is not None:  # named in the right panel's legend
                roc.plot(r["fpr"], r["recall"], "*", color=f"C{(j + 5) % 10}", ms=11, mec="k")
            if r["precision"] is not None and r["recall"] is not None:
                pr.plot(r["recall"], r["precision"], "*", color=f"C{(j + 5) % 10}", ms=11, mec="k", label=label)
    roc.set_xscale("log")
    roc.set_xlabel("false-positive rate (legitimate payments intercepted)")
    roc.set_ylabel("recall (fraud intercepted)")
    roc.set_title("ROC per typology (probe; learned scorer solid); stars: all fraud")
    roc.axvline(3e-4, color="grey", lw=0.8, ls=":")
    roc.text(3e-4, 0.02, " SPEC: < 0.03%", color="grey", fontsize=7)
    roc.legend(fontsize=7.5, loc="best", framealpha=0.9)
    box = derived_range()
    if box is not None:
        (r_low, r_high), (p_low, p_high) = box
        pr.add_patch(plt.Rectangle((r_low, p_low), r_high - r_low, p_high - p_low, color="C2", alpha=0.12,
                                   label="range derived from the SPEC"))
    pr.set_xlabel("recall (the run's fraud)")
    pr.set_ylabel("precision (fraud among interceptions)")
    pr.set_title("precision and recall (the run's payments)")
    pr.set_xlim(0, 1)
    pr.set_ylim(0, 1.02)
    pr.legend(fontsize=8, loc="best", framealpha=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def report_section(curve: pl.DataFrame | None, ticks: pl.DataFrame, baseline: str, out: Path) -> list[str]:
    """The report's Markdown on the risk engine's trade-off (and ``tradeoff.png``,
    ``tradeoff.parquet`` in ``out``) from the runs' ``curve`` rows (:func:`read_curve`): the
    baseline's curve at its first grid point, every scenario's operating point on it at that grid
    point. Empty without a ``risk_curve`` table; a line saying so when the baseline has none."""
    if curve is None or curve.height == 0 or not set(OPERATING_COLUMNS) <= set(ticks.columns):
        return []
    # past the engine's cold start; a run too short to leave it is read whole (and says so)
    from_tick = FROM_TICK if int(curve["tick"].max()) >= FROM_TICK else 0
    points = curve_points(curve, from_tick)
    points.write_parquet(out / "tradeoff.parquet")
    if points.filter(pl.col("scenario") == baseline).height == 0:
        return ["## The risk engine's trade-off", "",
                f"The {baseline} scenario's runs have no risk_curve rows, so there is no curve to place the "
                f"scenarios on (their curves are in tradeoff.parquet).", ""]
    point = int(points.filter(pl.col("scenario") == baseline)["point"].min())
    base = points.filter((pl.col("scenario") == baseline) & (pl.col("point") == point))
    operating = operating_points(ticks.filter(pl.col("point") == point), from_tick)
    days = ("from day 30, after the engine's warm-up" if from_tick
            else "every day: the runs are shorter than the 30-day warm-up")
    plot_tradeoff(base, operating, out / "tradeoff.png",
                  f"{baseline}, {days}, replicates pooled; stars: each scenario's operating point")
    engine = "learned" if base.filter(pl.col("scorer") == "learned").height else "linear"
    all_fraud = base.filter((pl.col("scorer") == engine) & (pl.col("source") == "payments")
                            & (pl.col("typology") == "all"))
    lines = ["## The risk engine's trade-off", "",
             f"Left: recall against false-positive rate for each fraud typology (the probe), the {baseline} "
             "scenario's learned scorer (solid) and linear rule (dashed); right: precision against recall of the "
             "run's fraud. A scenario that moves the threshold moves along the curve.", "",
             "![trade-off](tradeoff.png)", "",
             f"| scenario | false-positive rate | precision | recall | {baseline}'s curve at that rate | "
             + " | ".join(f"recall {t}" for t in TYPOLOGIES) + " |",
             "|---|---|---|---|---|" + "---|" * len(TYPOLOGIES)]

    def pct(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}%}"

    for r in operating.iter_rows(named=True):
        on_curve = None if r["fpr"] is None else recall_interpolated(all_fraud, r["fpr"])
        lines.append(f"| {r['scenario']} | {pct(r['fpr'], 4)} | {pct(r['precision'])} | {pct(r['recall'])} | "
                     f"{pct(on_curve)} | " + " | ".join(pct(r[f'recall_{t}']) for t in TYPOLOGIES) + " |")
    return [*lines, ""]
