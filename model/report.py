"""``weishang report DIR``: a Markdown report with matplotlib plots, for one run or a sweep.

Plots: GMV by channel over time, the distribution of cascade sizes, fraud caught and missed,
merchant survival, and (for a sweep) each scenario's difference from the baseline with 95%
confidence intervals over paired replicates. The baseline is the scenario named ``baseline``,
else the sweep's first scenario. Replicate k of every scenario shares its random streams, so the
paired difference removes the noise common to both (a t interval on the per-replicate deltas).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from scipy import stats  # noqa: E402

from .config import ConfigError  # noqa: E402
from .recorder import RunDirectoryError, read_manifest  # noqa: E402
from .codes import Channel  # noqa: E402

CHANNELS = Channel.labels()

#: per-run outcomes compared across scenarios: (column, how a run's ticks reduce to one number)
OUTCOMES = {
    "gmv": ("gmv", "sum"),
    "orders": ("n_orders", "sum"),
    "fraud_intercepted": ("n_fraud_intercepted", "sum"),
    "fraud_loss": ("fraud_loss", "sum"),
    "false_positives": ("n_false_positives", "sum"),
    "active_merchants_at_end": ("n_active_merchants", "last"),
}


def _load(directory: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, bool]:
    """(ticks, merchants-per-tick summary, cascades) with scenario/point/replicate columns; a
    missing or damaged table is a one-line :class:`RunDirectoryError` naming the directory."""
    try:
        return _read_tables(directory)
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunDirectoryError(f"{str(directory)!r}: a table is missing or damaged ({first})") from None


def _read_tables(directory: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, bool]:
    if (directory / "runs.parquet").is_file():
        runs = pl.read_parquet(directory / "runs.parquet")
        if not (runs["status"] == "complete").any():
            raise ConfigError(f"{str(directory)!r}: the sweep has no complete run yet")
        for run_dir in runs.filter(pl.col("status") == "complete")["run_dir"]:
            read_manifest(run_dir)
        pattern = str(directory / "runs" / "*" / "*" / "*")

        def scan(table: str) -> pl.DataFrame:
            return pl.scan_parquet(f"{pattern}/{table}.parquet", hive_partitioning=True).collect()

        return scan("ticks"), scan("merchants"), scan("cascades"), True
    if (directory / "manifest.json").is_file():
        manifest = read_manifest(directory)
        if manifest.get("status") != "complete":
            raise ConfigError(f"{str(directory)!r}: the run is not complete (status {manifest.get('status')!r})")

        def read(table: str) -> pl.DataFrame:
            return pl.read_parquet(directory / f"{table}.parquet").with_columns(
                pl.lit(manifest["scenario"]).alias("scenario"), pl.lit(0).alias("point"), pl.lit(0).alias("replicate"))

        return read("ticks"), read("merchants"), read("cascades"), False
    raise ConfigError(f"{str(directory)!r} is neither a run directory (manifest.json) nor a sweep (runs.parquet)")


def run_outcomes(ticks: pl.DataFrame) -> pl.DataFrame:
    """One row per run (scenario, point, replicate) with the :data:`OUTCOMES`."""
    aggs = [(pl.col(col).sort_by("tick").last() if how == "last" else pl.col(col).sum()).alias(name)
            for name, (col, how) in OUTCOMES.items()]
    return ticks.group_by(["scenario", "point", "replicate"]).agg(aggs)


def paired_deltas(outcomes: pl.DataFrame, baseline: str) -> pl.DataFrame:
    """Scenario minus baseline per (point, replicate); mean and 95% t interval per outcome."""
    base = outcomes.filter(pl.col("scenario") == baseline)
    rows = []
    for scenario in sorted(set(outcomes["scenario"]) - {baseline}):
        joined = outcomes.filter(pl.col("scenario") == scenario).join(base, on=["point", "replicate"], suffix="_base")
        for name in OUTCOMES:
            d = (joined[name] - joined[f"{name}_base"]).to_numpy().astype(float)
            n = d.shape[0]
            mean = float(d.mean()) if n else float("nan")
            half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            rows.append({"scenario": scenario, "outcome": name, "replicates": n, "delta": mean,
                         "ci_low": mean - half, "ci_high": mean + half})
    return pl.DataFrame(rows)


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_report(directory: str | Path) -> Path:
    """Write ``DIR/report/report.md`` and its PNG plots; returns the Markdown file."""
    directory = Path(directory)
    ticks, merchants, cascades, is_sweep = _load(directory)
    out = directory / "report"
    out.mkdir(exist_ok=True)
    scenarios = sorted(set(ticks["scenario"]))
    lines = [f"# weishang report: {directory.name}", ""]

    fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 3.6), squeeze=False, sharey=True)
    for ax, scenario in zip(axes[0], scenarios):
        mean = ticks.filter(pl.col("scenario") == scenario).group_by("tick").agg(
            [pl.col(f"gmv_{c}").mean() for c in CHANNELS]).sort("tick")
        ax.stackplot(mean["tick"].to_numpy(), *[mean[f"gmv_{c}"].to_numpy() for c in CHANNELS], labels=CHANNELS)
        ax.set_title(scenario)
        ax.set_xlabel("tick (day)")
    axes[0][0].set_ylabel("GMV per day (CNY)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    lines += ["## GMV by channel", "", f"![GMV by channel]({_save(fig, out / 'gmv_by_channel.png')})", ""]

    fig, ax = plt.subplots(figsize=(6, 3.6))
    size = cascades.with_columns((pl.col("exposures_l1") + pl.col("exposures_l2") + pl.col("exposures_l3")).alias("size"))
    bins = np.logspace(0, np.log10(max(2, size["size"].max() + 1)), 40)
    for scenario in scenarios:
        ax.hist(size.filter(pl.col("scenario") == scenario)["size"].to_numpy() + 1, bins=bins, histtype="step", label=scenario)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cascade size + 1 (people exposed to a post)")
    ax.set_ylabel("posts")
    ax.legend(fontsize=7)
    lines += ["## Cascade sizes", "", f"![cascade sizes]({_save(fig, out / 'cascade_sizes.png')})", ""]

    outcomes = run_outcomes(ticks)
    fraud = outcomes.group_by("scenario").agg(pl.col("fraud_intercepted").mean(), pl.col("fraud_loss").mean(),
                                              pl.col("false_positives").mean()).sort("scenario")
    n_fraud = ticks.group_by(["scenario", "point", "replicate"]).agg(pl.col("n_fraud").sum()).group_by("scenario").agg(
        pl.col("n_fraud").mean()).sort("scenario")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(scenarios))
    caught = fraud["fraud_intercepted"].to_numpy()
    ax.bar(x, caught, label="fraud intercepted")
    ax.bar(x, n_fraud["n_fraud"].to_numpy() - caught, bottom=caught, label="fraud missed")
    ax.bar(x + 0.4, fraud["false_positives"].to_numpy(), width=0.3, label="false positives")
    ax.set_xticks(x, scenarios, rotation=20, fontsize=7)
    ax.set_ylabel("payments per run")
    ax.legend(fontsize=7)
    lines += ["## Fraud caught and missed", "", f"![fraud]({_save(fig, out / 'fraud.png')})", ""]

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for scenario in scenarios:
        alive = merchants.filter(pl.col("scenario") == scenario).group_by(["tick", "replicate", "point"]).agg(
            pl.col("active").mean()).group_by("tick").agg(pl.col("active").mean()).sort("tick")
        ax.plot(alive["tick"], alive["active"], label=scenario)
    ax.set_xlabel("tick (day)")
    ax.set_ylabel("share of merchants active")
    ax.legend(fontsize=7)
    lines += ["## Merchant survival", "", f"![survival]({_save(fig, out / 'survival.png')})", ""]

    lines += ["## Outcomes per run (mean over replicates)", "", "| scenario | " + " | ".join(OUTCOMES) + " |",
              "|---|" + "---|" * len(OUTCOMES)]
    for row in outcomes.group_by("scenario").agg([pl.col(k).mean() for k in OUTCOMES]).sort("scenario").iter_rows(named=True):
        lines.append(f"| {row['scenario']} | " + " | ".join(f"{row[k]:,.1f}" for k in OUTCOMES) + " |")
    lines.append("")

    if is_sweep and len(scenarios) > 1:
        baseline = "baseline" if "baseline" in scenarios else pl.read_parquet(directory / "runs.parquet")["scenario"][0]
        deltas = paired_deltas(outcomes, baseline)
        deltas.write_parquet(out / "deltas.parquet")
        others = [s for s in scenarios if s != baseline]
        fig, axes = plt.subplots(1, len(OUTCOMES), figsize=(3.2 * len(OUTCOMES), 3.2), squeeze=False)
        for ax, name in zip(axes[0], OUTCOMES):
            d = deltas.filter(pl.col("outcome") == name).sort("scenario")
            y = np.arange(d.height)
            ax.errorbar(d["delta"], y, xerr=[d["delta"] - d["ci_low"], d["ci_high"] - d["delta"]], fmt="o", capsize=3)
            ax.axvline(0, color="grey", lw=0.8)
            ax.set_yticks(y, d["scenario"].to_list(), fontsize=7)
            ax.set_title(name, fontsize=8)
        lines += [f"## Scenario minus {baseline} (paired replicates, 95% CI)", "",
                  f"![deltas]({_save(fig, out / 'deltas.png')})", "",
                  "| scenario | outcome | replicates | delta | 95% CI |", "|---|---|---|---|---|"]
        for r in deltas.filter(pl.col("scenario").is_in(others)).iter_rows(named=True):
            lines.append(f"| {r['scenario']} | {r['outcome']} | {r['replicates']} | {r['delta']:,.1f} | "
                         f"[{r['ci_low']:,.1f}, {r['ci_high']:,.1f}] |")
        lines.append("")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
