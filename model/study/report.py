"""``weishang report DIR``: ``DIR/report/report.md`` with its plots, for one run or a sweep.

What it answers, for each scenario and grid point (never pooled across points; over a
calibration ensemble, pooled across its members as draws of parameter uncertainty, with the
seed and the parameter uncertainty given apart):

* the outcomes of a run (GMV, orders, fraud caught and missed, fraud loss, false positives,
  exits, merchants in business at the end) with 95% intervals over replicates;
* for a sweep with several scenarios, each scenario's effect against the baseline at each grid
  point, paired over common seeds, absolute and relative (:mod:`weishang.model.study.effects`), as a
  table and a forest plot; the baseline is the scenario named ``baseline``, else the first;
* for a grid, each outcome along each swept parameter, with bands over replicates;
* time series with bands: GMV by channel, merchants in business; the distribution of cascade
  sizes; fraud caught, missed and false positives per scenario.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter  # noqa: E402

from ..codes import Channel  # noqa: E402
from ..columns import column, display  # noqa: E402
from ..config import ConfigError  # noqa: E402
from .effects import (  # noqa: E402
    KEYS,
    OUTCOMES,
    ensemble_effects,
    ensemble_outcomes,
    paired_effects,
    run_outcomes,
    summarize_outcomes,
    t_interval,
)

OUTCOME = {o.name: o for o in OUTCOMES}
from ..recorder import RunDirectoryError, read_manifest, table_path  # noqa: E402
from . import tradeoff  # noqa: E402
from .sweep import check_tables_kept  # noqa: E402

CHANNELS = Channel.labels()
LINESTYLES = ("-", "--", ":", "-.")
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
                     "figure.dpi": 110})


class SweepTables:
    """The tables a report reads: per-tick rows, merchants in business per tick, cascade sizes,
    the parameters of each grid point (empty for one run), and the risk engine's curve rows
    (None where the runs have none). All are read before anything is written."""

    def __init__(self, ticks: pl.DataFrame, active: pl.DataFrame, sizes: pl.DataFrame, points: pl.DataFrame,
                 baseline: str, members: dict[int, int] | None = None, curve: pl.DataFrame | None = None) -> None:
        self.ticks, self.active, self.sizes, self.points, self.baseline = ticks, active, sizes, points, baseline
        #: over an ensemble: the member each point is (point -> member); None for a grid
        self.members = members
        self.curve = curve
        self.scenarios = sorted(set(ticks["scenario"]), key=lambda s: (s != baseline, s))


def _read(directory: Path) -> SweepTables:
    """A missing or damaged table is a one-line :class:`RunDirectoryError` naming the directory."""
    try:
        return _read_tables(directory)
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise RunDirectoryError(f"{str(directory)!r}: a table is missing or damaged ({first})") from None


def _scan(source: str | Path, columns: list[str], hive: bool) -> pl.LazyFrame:
    """The columns of a table or dataset; the risk engine's operating-point counts only where the
    files have them (runs written before issue 23 lack the per-typology ones: the report then
    leaves out its trade-off section)."""
    frame = pl.scan_parquet(source, hive_partitioning=hive)
    optional = set(tradeoff.OPERATING_COLUMNS) & set(columns)
    if optional:
        names = set(frame.collect_schema().names())
        columns = [c for c in columns if c not in optional or c in names]
    return frame.select(columns)


def _read_tables(directory: Path) -> SweepTables:
    size = (pl.col("exposures_l1") + pl.col("exposures_l2") + pl.col("exposures_l3")).alias("size")
    if (directory / "runs.parquet").is_file():
        check_tables_kept(directory)
        runs = pl.read_parquet(directory / "runs.parquet")
        done = runs.filter(pl.col("status") == "complete")
        if done.height == 0:
            raise ConfigError(f"{str(directory)!r}: the sweep has no complete run yet")
        for run_dir in done["run_dir"]:
            read_manifest(directory / run_dir)  # relative to the sweep; an absolute path (older sweeps) stays as it is
        keep = done.select(pl.col("scenario"), pl.col("point").cast(pl.Int64), pl.col("replicate").cast(pl.Int64))

        def dataset(table: str, columns: list[str]) -> pl.LazyFrame:
            frame = _scan(directory / table / "**" / "*.parquet", [*KEYS, *columns], hive=True)
            frame = frame.with_columns(pl.col("scenario").cast(pl.Utf8), pl.col("point").cast(pl.Int64),
                                       pl.col("replicate").cast(pl.Int64))
            return frame.join(keep.lazy(), on=KEYS)

        ticks = dataset("ticks", _tick_columns()).collect()
        active = dataset("merchants", ["tick", "active"]).group_by([*KEYS, "tick"]).agg(
            pl.col("active").mean()).collect()
        sizes = dataset("cascades", ["exposures_l1", "exposures_l2", "exposures_l3"]).select(
            "scenario", "point", size).collect()
        params = [c for c in runs.columns if c.startswith("param.")]
        points = runs.select(["point", *params]).unique("point").sort("point")
        names = runs["scenario"].unique(maintain_order=True).to_list()
        members = None
        if "member" in runs.columns:
            pairs = runs.select(pl.col("point").cast(pl.Int64), pl.col("member").cast(pl.Int64)).unique("point")
            members = dict(zip(pairs["point"].to_list(), pairs["member"].to_list()))
        return SweepTables(ticks, active, sizes, points, "baseline" if "baseline" in names else names[0], members,
                           tradeoff.read_curve(directory))
    if (directory / "manifest.json").is_file():
        manifest = read_manifest(directory)
        if manifest.get("status") != "complete":
            raise ConfigError(f"{str(directory)!r}: the run is not complete (status {manifest.get('status')!r})")
        label = [pl.lit(manifest["scenario"]).alias("scenario"), pl.lit(0, pl.Int64).alias("point"),
                 pl.lit(0, pl.Int64).alias("replicate")]

        def table(name: str, columns: list[str]) -> pl.LazyFrame:
            return _scan(table_path(directory, manifest, name), columns, hive=False).with_columns(label)

        ticks = table("ticks", _tick_columns()).collect()
        active = table("merchants", ["tick", "active"]).group_by([*KEYS, "tick"]).agg(pl.col("active").mean()).collect()
        sizes = table("cascades", ["exposures_l1", "exposures_l2", "exposures_l3"]).select(
            "scenario", "point", size).collect()
        return SweepTables(ticks, active, sizes, pl.DataFrame({"point": [0]}), manifest["scenario"],
                           curve=tradeoff.read_curve(directory))
    raise ConfigError(f"{str(directory)!r} is neither a run directory (manifest.json) nor a sweep (runs.parquet)")


def _tick_columns() -> list[str]:
    return ["tick", *sorted({o.column for o in OUTCOMES} - {"fraud_missed"} | {"n_fraud"}
                            | set(tradeoff.OPERATING_COLUMNS)), *(f"gmv_{c}" for c in CHANNELS)]


# ------------------------------------------------------------------ formatting

def _fmt(value: float | None, outcome: str) -> str:
    """An outcome's value (or a mean or difference of it) by its declared unit."""
    return display(column("ticks", OUTCOME[outcome].unit_column), value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _cny(axis: plt.Axes) -> None:
    """Money axes in plain CNY with thousands separators (no offset or 1e6 factor)."""
    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _days(axis: plt.Axes) -> None:
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("day")


def _band(axis: plt.Axes, per_tick: pl.DataFrame, column: str, **style) -> None:
    """A line at the replicates' mean per tick, and a band between their min and max."""
    stats_ = per_tick.group_by("tick").agg(pl.col(column).mean().alias("mean"), pl.col(column).min().alias("lo"),
                                          pl.col(column).max().alias("hi")).sort("tick")
    line, = axis.plot(stats_["tick"], stats_["mean"], **style)
    if per_tick["replicate"].n_unique() > 1:
        axis.fill_between(stats_["tick"], stats_["lo"], stats_["hi"], color=line.get_color(), alpha=0.2, lw=0)


def _save(fig: plt.Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _point_label(tables: SweepTables, point: int) -> str:
    if tables.members is not None:
        return f"member {tables.members.get(point, point)}"
    row = tables.points.filter(pl.col("point") == point)
    params = [c for c in tables.points.columns if c.startswith("param.")]
    if not params or row.height == 0:
        return f"point {point}"
    return ", ".join(f"{c.removeprefix('param.')}={row[c][0]:g}" if isinstance(row[c][0], float)
                     else f"{c.removeprefix('param.')}={row[c][0]}" for c in params)


# ------------------------------------------------------------------ the figures

def _gmv_by_channel(tables: SweepTables, out: Path) -> str:
    points = sorted(set(tables.ticks["point"]))[:4]
    fig, axes = plt.subplots(len(points), len(tables.scenarios), figsize=(4.2 * len(tables.scenarios),
                                                                          2.8 * len(points)),
                             squeeze=False, sharex=True, sharey=True)
    for row, point in enumerate(points):
        for col, scenario in enumerate(tables.scenarios):
            axis = axes[row][col]
            runs = tables.ticks.filter((pl.col("scenario") == scenario) & (pl.col("point") == point))
            for c in CHANNELS:
                _band(axis, runs, f"gmv_{c}", label=c.replace("_", " "))
            axis.set_title(f"{scenario}\n{_point_label(tables, point)}" if len(points) > 1 else scenario)
            _cny(axis)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[row][0].set_ylabel("GMV a day (CNY)")
    for axis in axes[-1]:
        axis.set_xlabel("day")
    fig.subplots_adjust(hspace=0.45)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return _save(fig, out / "gmv_by_channel.png")


def _cascade_sizes(tables: SweepTables, out: Path) -> str:
    fig, axis = plt.subplots(figsize=(5.5, 3.6))
    for i, scenario in enumerate(tables.scenarios):
        size = np.sort(tables.sizes.filter(pl.col("scenario") == scenario)["size"].to_numpy())
        size = size[size > 0]
        if size.shape[0] == 0:
            continue
        ccdf = 1.0 - np.arange(size.shape[0]) / size.shape[0]
        axis.step(size, ccdf, where="post", ls=LINESTYLES[i % 4], label=scenario)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("people a post reached (all three levels)")
    axis.set_ylabel("share of posts reaching at least that many")
    axis.legend(frameon=False)
    return _save(fig, out / "cascade_sizes.png")


def _fraud(outcomes: pl.DataFrame, tables: SweepTables, out: Path) -> str:
    kinds = (("fraud_intercepted", "fraud caught"), ("fraud_missed", "fraud missed"),
             ("false_positives", "legitimate payments intercepted"))
    fig, axis = plt.subplots(figsize=(max(5.0, 1.6 * len(tables.scenarios) + 2.5), 3.6))
    x = np.arange(len(tables.scenarios))
    width = 0.26
    for k, (name, label) in enumerate(kinds):
        means, errs = [], []
        for scenario in tables.scenarios:
            mean, low, high = t_interval(outcomes.filter(pl.col("scenario") == scenario)[name].to_numpy(), True)
            means.append(mean)
            errs.append((mean - low, high - mean) if low is not None else (0.0, 0.0))
        axis.bar(x + (k - 1) * width, means, width, yerr=np.array(errs).T, capsize=3, label=label)
    axis.set_xticks(x, tables.scenarios)
    axis.set_ylabel("payments per run")
    if not outcomes["fraud_intercepted"].sum() + outcomes["fraud_missed"].sum():
        axis.text(0.5, 0.5, "no fraud was injected in these runs", transform=axis.transAxes, ha="center")
    axis.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out / "fraud.png")


def _survival(tables: SweepTables, out: Path) -> str:
    fig, axis = plt.subplots(figsize=(6.5, 3.6))
    for i, scenario in enumerate(tables.scenarios):
        for j, point in enumerate(sorted(set(tables.active["point"]))[:4]):
            runs = tables.active.filter((pl.col("scenario") == scenario) & (pl.col("point") == point))
            label = scenario if tables.points.height <= 1 else f"{scenario}, {_point_label(tables, point)}"
            final = runs.filter(pl.col("tick") == runs["tick"].max())["active"].mean()
            _band(axis, runs, "active", ls=LINESTYLES[(i + j) % 4], lw=1.6, label=f"{label} ({final:.1%} at the end)")
    # a short run loses a fraction of a point: at least 2 points of axis, so a dip looks its size,
    # and as many decimals as the axis needs (every tick read "100%" before)
    low, high = axis.get_ylim()
    high = min(high, 1.0 + (high - low) * 0.05)
    axis.set_ylim(max(0.0, min(low, high - 0.02)), high)
    axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    axis.set_ylabel("merchants in business")
    _days(axis)
    axis.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out / "survival.png")


#: the outcomes a forest plot of effects shows, one panel each
FOREST = ("gmv", "orders", "fraud_intercepted", "fraud_missed", "fraud_loss", "false_positives", "exits",
          "active_merchants_at_end")


def _forest_plot(effects: pl.DataFrame, labels: list[str], mid: str, intervals: list[tuple[str, str, str]],
                 path: Path) -> str:
    """Relative effects (%), a panel per outcome of :data:`FOREST` in rows of three, a row per
    label (the ``gmv`` rows' order): the point ``mid`` and each interval ``(low, high, label)``,
    side by side when there are several (seed and parameter ranges). A panel where no scenario
    moves, or where the change is undefined (the baseline has none), says so in words."""
    shown = [o for o in OUTCOMES if o.name in FOREST]
    n_cols = 3
    n_rows = -(-len(shown) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols + 2.5, n_rows * (0.45 * len(labels) + 1.6)),
                             sharey=True, squeeze=False, layout="constrained")
    offsets = np.linspace(0.14, -0.14, len(intervals)) if len(intervals) > 1 else [0.0]
    for axis, o in zip(axes.flat, shown):
        rows = effects.filter(pl.col("outcome") == o.name)
        y = np.arange(rows.height)[::-1]
        centre = rows[mid].fill_null(np.nan).to_numpy() * 100
        ends = [(rows[lo].fill_null(np.nan).to_numpy() * 100, rows[hi].fill_null(np.nan).to_numpy() * 100)
                for lo, hi, _ in intervals]
        axis.set_title(o.label)
        axis.axvline(0, color="grey", lw=0.8)
        values = np.concatenate([centre, *(e for pair in ends for e in pair)])
        if np.isnan(centre).all() or not np.nanmax(np.abs(values), initial=0.0):
            words = "undefined: the baseline has none" if np.isnan(centre).all() else "no change in any scenario"
            axis.text(0.5, 0.5, words, transform=axis.transAxes, ha="center", va="center", color="grey")
            axis.set_xticks([])
            continue
        for (lo, hi), shift, (_, _, label), color in zip(ends, offsets, intervals, ("C0", "C1")):
            axis.errorbar(centre, y + shift, xerr=[np.nan_to_num(centre - lo), np.nan_to_num(hi - centre)], fmt="o",
                          capsize=3, color=color, label=label if len(intervals) > 1 else None)
        axis.set_xlabel("change vs baseline (%)")
    for axis in axes.flat[len(shown):]:  # the last row's spare panels
        axis.set_visible(False)
    labelled = [axis for axis in axes.flat if axis.get_legend_handles_labels()[0]]
    if len(intervals) > 1 and labelled:  # the first panel with bars names them
        labelled[0].legend(fontsize=7, loc="best")
    for row in axes:
        row[0].set_yticks(np.arange(len(labels))[::-1], labels)
    return _save(fig, path)


def _forest(effects: pl.DataFrame, tables: SweepTables, out: Path) -> str:
    labels = [f"{r['scenario']}  ({_point_label(tables, r['point'])})" if tables.points.height > 1 else r["scenario"]
              for r in effects.filter(pl.col("outcome") == "gmv").iter_rows(named=True)]
    return _forest_plot(effects, labels, "relative", [("relative_low", "relative_high", "95% interval")],
                        out / "effects.png")


def _along_grid(summary: pl.DataFrame, tables: SweepTables, out: Path) -> str | None:
    params = [c for c in tables.points.columns if c.startswith("param.")
              and tables.points[c].dtype.is_numeric() and tables.points[c].n_unique() > 1]
    if not params:
        return None
    shown = [o for o in OUTCOMES if o.name in ("gmv", "orders", "exits", "active_merchants_at_end")]
    fig, axes = plt.subplots(len(params), len(shown), figsize=(3.3 * len(shown), 2.8 * len(params)), squeeze=False)
    for r, param in enumerate(params):
        for c, o in enumerate(shown):
            axis = axes[r][c]
            for i, scenario in enumerate(tables.scenarios):
                rows = summary.filter((pl.col("scenario") == scenario) & (pl.col("outcome") == o.name)).join(
                    tables.points.select("point", param), on="point").sort(param)
                x = rows[param].to_numpy()
                line, = axis.plot(x, rows["mean"], marker="o", ls=LINESTYLES[i % 4], label=scenario)
                if rows["ci_low"].null_count() == 0:
                    axis.fill_between(x, rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
            axis.set_xlabel(param.removeprefix("param."))
            axis.set_title(o.label if o.unit in o.label else f"{o.label} ({o.unit})")
            if o.unit == "CNY":
                _cny(axis)
    axes[0][-1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out / "along_grid.png")


# ------------------------------------------------------------------ the report

def _size_section(directory: Path) -> list[str]:
    """The report's lines on figures its runs are too small or short to carry (none when the
    runs are calibrated-size): :func:`weishang.model.study.small_world.manifest_notes`."""
    from .small_world import manifest_notes  # noqa: PLC0415
    from .validation import manifests_of  # noqa: PLC0415

    notes = manifest_notes(manifests_of(directory))
    if not notes:
        return []
    return ["## What this size cannot show", "", *[f"* {note}." for note in notes], ""]


def write_report(directory: str | Path) -> Path:
    """Write ``DIR/report/report.md``, its plots and ``outcomes.parquet`` (and ``effects.parquet``
    for a sweep of several scenarios); returns the Markdown file.

    Every table is read first (a damaged one is a one-line error before anything is written);
    the report is made in a hidden ``DIR/.report.partial-PID/`` and takes the place of an older
    ``DIR/report/`` in one rename, so a failed or interrupted report leaves the older one whole.

    Raises:
        RunDirectoryError: a table is missing or damaged, or ``DIR/report`` is not a folder.
        ConfigError: ``DIR`` is not a complete run or a sweep with a complete run.
    """
    directory = Path(directory)
    final = directory / "report"
    if final.exists() and not final.is_dir():
        raise RunDirectoryError(f"{str(final)!r} exists and is not a folder: move it away (the report is written "
                                f"there)")
    tables = _read(directory)
    out = directory / f".report.partial-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        out.mkdir()
        name = (_ensemble_report if tables.members is not None else _grid_report)(directory, tables, out)
        _publish(out, final)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return final / name


def _publish(made: Path, final: Path) -> None:
    """Put the folder ``made`` in the place of ``final``: the older report is moved aside, the new
    one renamed in, the older one removed. Only between the two renames is there no report."""
    older = final.with_name(f".report.old-{os.getpid()}")
    if final.exists():
        final.rename(older)
    try:
        made.rename(final)
    except BaseException:  # interrupted between the renames: the older report goes back
        if older.exists() and not final.exists():
            older.rename(final)
        raise
    shutil.rmtree(older, ignore_errors=True)


def _grid_report(directory: Path, tables: SweepTables, out: Path) -> str:
    """The report of a run or a sweep over scenarios and a grid, written in ``out``; returns the
    Markdown file's name."""
    outcomes = run_outcomes(tables.ticks)
    summary = summarize_outcomes(outcomes)
    summary.write_parquet(out / "outcomes.parquet")
    lines = [f"# weishang report: {directory.name}", "",
             f"{outcomes.height} runs: {len(tables.scenarios)} scenario(s) x {tables.points.height} grid point(s), "
             f"{outcomes.group_by(['scenario', 'point']).len()['len'].max()} replicate(s) each. Intervals are 95% "
             f"t intervals over replicates (none with one replicate); nothing is pooled across grid points.", ""]
    lines += _size_section(directory)
    lines += ["## Outcomes per scenario and grid point", "",
              "| scenario | grid point | outcome | mean | 95% interval | replicates |", "|---|---|---|---|---|---|"]
    for r in summary.iter_rows(named=True):
        interval = _interval(r["ci_low"], r["ci_high"], r["outcome"])
        lines.append(f"| {r['scenario']} | {_point_label(tables, r['point'])} | {OUTCOME[r['outcome']].label} | "
                     f"{_fmt(r['mean'], r['outcome'])} | {interval} | {r['replicates']} |")
    lines.append("")
    if len(tables.scenarios) > 1:
        effects = paired_effects(outcomes, tables.baseline)
        effects.write_parquet(out / "effects.parquet")
        lines += [f"## Effects against {tables.baseline} (paired over common seeds, per grid point)", "",
                  f"![effects]({_forest(effects, tables, out)})", "",
                  "| scenario | grid point | outcome | change | 95% interval | relative | 95% interval | pairs |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in effects.iter_rows(named=True):
            interval = _interval(r["ci_low"], r["ci_high"], r["outcome"])
            relative = "-" if r["relative_low"] is None else f"{_pct(r['relative_low'])} .. {_pct(r['relative_high'])}"
            lines.append(f"| {r['scenario']} | {_point_label(tables, r['point'])} | {OUTCOME[r['outcome']].label} | "
                         f"{_fmt(r['delta'], r['outcome'])} | {interval} | {_pct(r['relative'])} | {relative} | "
                         f"{r['replicates']} |")
        lines.append("")
    grid = _along_grid(summary, tables, out)
    if grid:
        lines += ["## Along the grid", "", f"![outcomes along the grid]({grid})", ""]
    lines += ["## GMV by channel", "", f"![GMV by channel]({_gmv_by_channel(tables, out)})", "",
              "## Cascade sizes", "", f"![cascade sizes]({_cascade_sizes(tables, out)})", "",
              "## Fraud caught and missed, and false positives", "", f"![fraud]({_fraud(outcomes, tables, out)})", "",
              "## Merchants in business", "", f"![survival]({_survival(tables, out)})", ""]
    lines += tradeoff.report_section(tables.curve, tables.ticks, tables.baseline, out)
    (out / "report.md").write_text("\n".join(lines))
    return "report.md"


# ------------------------------------------------------------------ over an ensemble

def _interval(low: float | None, high: float | None, outcome: str) -> str:
    return "-" if low is None else f"{_fmt(low, outcome)} .. {_fmt(high, outcome)}"


def _ensemble_report(directory: Path, tables: SweepTables, out: Path) -> str:
    """The report of a sweep over a calibration ensemble: every figure pooled over the members,
    with its seed interval and its parameter range apart (:func:`weishang.model.study.effects.two_level`)."""
    outcomes = run_outcomes(tables.ticks)
    members = tables.members or {}
    summary = ensemble_outcomes(outcomes, members)
    summary.write_parquet(out / "outcomes.parquet")
    n_members = len(set(members.values()))
    replicates = outcomes.group_by(["scenario", "point"]).len()["len"].min()
    lines = [f"# weishang report: {directory.name}", "",
             f"{outcomes.height} runs: {len(tables.scenarios)} scenario(s) x {n_members} ensemble members "
             f"(parameter sets consistent with the targets) x {replicates} replicate seed(s). Each figure is the "
             "mean over members. **Seed**: its 95% interval from run-to-run noise alone (more replicates shrink "
             "it). **Parameters**: the range, 95% of members, over which the figure moves across the parameter "
             "sets the targets cannot tell apart, seed noise removed (no number of replicates shrinks it).", "",
             *_size_section(directory),
             "## Outcomes per scenario", "",
             "| scenario | outcome | mean | seed 95% interval | parameter range | members x replicates |",
             "|---|---|---|---|---|---|"]
    for r in summary.iter_rows(named=True):
        lines.append(f"| {r['scenario']} | {OUTCOME[r['outcome']].label} | {_fmt(r['mean'], r['outcome'])} | "
                     f"{_interval(r['seed_low'], r['seed_high'], r['outcome'])} | "
                     f"{_interval(r['param_low'], r['param_high'], r['outcome'])} | {r['members']} x {r['replicates']} |")
    lines.append("")
    if len(tables.scenarios) > 1:
        effects = ensemble_effects(outcomes, tables.baseline, members)
        effects.write_parquet(out / "effects.parquet")
        lines += [f"## Effects against {tables.baseline} (paired by member and seed)", "",
                  f"![effects]({_ensemble_forest(effects, out)})", "",
                  "| scenario | outcome | change | seed 95% interval | parameter range | relative | seed | parameters |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in effects.iter_rows(named=True):
            lines.append(
                f"| {r['scenario']} | {OUTCOME[r['outcome']].label} | {_fmt(r['delta'], r['outcome'])} | "
                f"{_interval(r['seed_low'], r['seed_high'], r['outcome'])} | "
                f"{_interval(r['param_low'], r['param_high'], r['outcome'])} | {_pct(r['relative_mean'])} | "
                + ("-" if r["relative_seed_low"] is None else f"{_pct(r['relative_seed_low'])} .. {_pct(r['relative_seed_high'])}")
                + " | "
                + ("-" if r["relative_param_low"] is None else f"{_pct(r['relative_param_low'])} .. {_pct(r['relative_param_high'])}")
                + " |")
        lines.append("")
    lines += ["## GMV by channel (the first members)", "", f"![GMV by channel]({_gmv_by_channel(tables, out)})", "",
              "## Merchants in business (the first members)", "", f"![survival]({_survival(tables, out)})", ""]
    (out / "report.md").write_text("\n".join(lines))
    return "report.md"


def _ensemble_forest(effects: pl.DataFrame, out: Path) -> str:
    """Relative effects: the seed interval (above) and the parameter range (below) of each."""
    labels = effects.filter(pl.col("outcome") == "gmv")["scenario"].to_list()
    return _forest_plot(effects, labels, "relative_mean",
                        [("relative_seed_low", "relative_seed_high", "seed 95%"),
                         ("relative_param_low", "relative_param_high", "parameter range")], out / "effects.png")