"""Validation: how a run (or a sweep's replicates) compares with every figure of docs/SPEC.md.

The figures live in ``model/study/targets.toml`` (:func:`load_targets`); each names how it is measured
from a run's outputs as a :class:`Measure` over entries of the column registry
(:mod:`weishang.model.columns`), checked when the targets load. :func:`validate_run` measures one run directory; :func:`validate` measures a
run or a sweep (with a 95% t interval over replicates per scenario and point) and writes
``validation.parquet`` with the columns ``target, section, kind, figure, expected, low, high, simulated,
ci_low, ci_high, within`` (plus ``seeds_within, within_by_replicate, scenario, point, replicates``
for a sweep: the per-seed truth beside the mean). Kinds: ``target`` (the fitted outputs, the only
ones counted), ``input``, ``not_modelled``, ``plausibility`` and ``alternative`` (another reading
of an ambiguous figure, reported beside the fitted one).

``within`` is null for figures the model does not produce (``not_modelled``) and for runs that
lack a measure's table; a target is within when its simulated value lies in ``[low, high]``.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..codes import Channel
from ..columns import column
from ..config import PRACTITIONERS, WECHAT_MAU, ScenarioConfig, load_config
from ..mechanisms.fx import CURRENCIES
from ..mechanisms.settlement import SETTLEMENT_LAG
from ..merchant import ONBOARDING_TICKS
from ..recorder import RunDirectoryError, read_manifest, table_path
from .effects import t_interval
from .small_world import size_notes

#: the code's constants a target can read as an input
CONSTANTS = {"WECHAT_MAU": WECHAT_MAU, "PRACTITIONERS": PRACTITIONERS, "N_CURRENCIES": len(CURRENCIES),
             "CROSS_BORDER_LAG": int(SETTLEMENT_LAG[2]), "ONBOARDING_TICKS": ONBOARDING_TICKS}
KINDS = ("target", "input", "not_modelled", "plausibility", "alternative")
COLUMNS = ("target", "section", "kind", "figure", "expected", "low", "high", "simulated", "ci_low", "ci_high", "within")


#: what each source of a :class:`Measure` can be reduced by
REDUCTIONS = {"summary": ("value",), "ticks": ("mean", "ratio"), "cascades": ("mean_reached", "quantile_reached"),
              "config": ("value",), "constant": ("value",)}


@dataclass(frozen=True)
class Measure:
    """Which output of a run a target is measured on (see ``model/study/targets.toml``).

    Attributes:
        source: "summary", "ticks", "cascades" (registry tables), "config" or "constant".
        name: the registry column (or ``section.key``, or constant name).
        reduce: how: one of :data:`REDUCTIONS` for the source.
        over: the denominator column of a ticks ratio; from_tick: ticks before it are left out.
        q: the quantile of ``quantile_reached``; channels: the posts' channels (all when empty).
    """

    source: str
    name: str
    reduce: str = "value"
    over: str = ""
    from_tick: int = 0
    q: float | None = None
    channels: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: dict[str, Any], where: str) -> "Measure":
        """A measure from its TOML table, checked against the registry, the config and the
        constants; a ValueError names what is wrong."""
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: measure must be a table such as {{ summary = \"gmv_cny\" }}")
        sources = [key for key in REDUCTIONS if key in spec]
        if len(sources) != 1:
            raise ValueError(f"{where}: measure names exactly one of {', '.join(REDUCTIONS)}")
        source = sources[0]
        extra = set(spec) - {source, "reduce", "over", "from_tick", "q", "channels"}
        if extra:
            raise ValueError(f"{where}: measure has unknown key(s) {sorted(extra)}")
        measure = cls(source, spec[source], spec.get("reduce", "value"), spec.get("over", ""),
                      spec.get("from_tick", 0), spec.get("q"), tuple(spec.get("channels", ())))
        measure.check(where)
        return measure

    def check(self, where: str) -> None:
        if self.reduce not in REDUCTIONS[self.source]:
            raise ValueError(f"{where}: a {self.source} measure reduces by {' or '.join(REDUCTIONS[self.source])}, "
                             f"not {self.reduce!r}")
        if self.source in ("summary", "ticks", "cascades"):
            column(self.source, self.name)
            if self.over:
                column(self.source, self.over)
            if self.reduce == "ratio" and not self.over:
                raise ValueError(f"{where}: a ratio measure needs over = COLUMN")
            if self.reduce == "quantile_reached" and not (self.q is not None and 0 <= self.q <= 1):
                raise ValueError(f"{where}: quantile_reached needs q in [0, 1]")
            unknown = set(self.channels) - set(Channel.labels())
            if unknown:
                raise ValueError(f"{where}: unknown channel(s) {sorted(unknown)}")
        elif self.source == "config":
            section, _, key = self.name.partition(".")
            fields = ScenarioConfig.model_fields
            if section not in fields or key not in fields[section].annotation.model_fields:
                raise ValueError(f"{where}: {self.name!r} is not a config key")
        elif self.name not in CONSTANTS:
            raise ValueError(f"{where}: unknown constant {self.name!r} (known: {', '.join(CONSTANTS)})")


@dataclass(frozen=True)
class Target:
    """One figure of docs/SPEC.md (see ``model/study/targets.toml`` for the fields)."""

    id: str
    section: str
    figure: str
    kind: str
    expected: float
    low: float | None = None
    high: float | None = None
    measure: Measure | None = None
    scale: str = "none"
    why: str = ""
    of: str = ""

    def within(self, value: float) -> bool | None:
        if self.kind == "not_modelled" or value is None or not math.isfinite(value):
            return None
        if self.kind == "input" and self.low is None and self.high is None:
            return bool(np.isclose(value, self.expected))  # a config value or constant: read back exactly
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def bounds(self) -> tuple[float | None, float | None]:
        """The values the measured figure can take (scaled figures and reaches are non-negative,
        a ratio of counts is a share), from the column registry."""
        m = self.measure
        if m is None or m.source in ("config", "constant"):
            return None, None
        if m.source == "ticks" and m.reduce == "ratio":
            return 0.0, 1.0 if m.name.startswith("n_") and m.over.startswith("n_") else None
        return column(m.source, m.name).bounds

    def miss(self, value: float) -> float:
        """Distance outside the band in units of the band's half-width (0 inside; for fitting)."""
        lo = self.low if self.low is not None else -math.inf
        hi = self.high if self.high is not None else math.inf
        if lo <= value <= hi:
            return 0.0
        width = (hi - lo) / 2 if math.isfinite(hi - lo) else abs(self.expected) * 0.1 or 1.0
        return (lo - value) / width if value < lo else (value - hi) / width


def load_targets(path: str | Path | None = None) -> list[Target]:
    """The SPEC's figures from ``targets.toml`` (the shipped one when ``path`` is None)."""
    if path is None:
        text = resources.files(__package__).joinpath("targets.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    targets = []
    for entry in tomllib.loads(text)["target"]:
        where = f"target {entry.get('id', '?')}"
        if "measure" in entry:
            entry = {**entry, "measure": Measure.parse(entry["measure"], where)}
        t = Target(**entry)
        if t.kind not in KINDS:
            raise ValueError(f"{where}: kind {t.kind!r} is not one of {', '.join(KINDS)}")
        targets.append(t)
    fitted = {t.id for t in targets if t.kind == "target"}
    for t in targets:
        if t.kind == "alternative" and t.of not in fitted:
            raise ValueError(f"target {t.id}: an alternative names the fitted target it reads (of = ID); "
                             f"{t.of!r} is not one")
        if t.kind != "alternative" and t.of:
            raise ValueError(f"target {t.id}: only an alternative names another target (of = ...)")
    return targets


class RunMeasures:
    """Reads a run directory's outputs once and measures targets on them.

    ``manifest``: the run's manifest when it is not on disk yet (a run validates itself before it
    is published); read from the directory otherwise, and it must say the run completed.
    """

    def __init__(self, run_dir: Path, manifest: dict[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        if manifest is None:
            if not (run_dir / "manifest.json").is_file():
                raise RunDirectoryError(f"{str(run_dir)!r} is not a run directory (no manifest.json)")
            manifest = read_manifest(run_dir)
            if manifest.get("status") != "complete":
                raise RunDirectoryError(f"run {str(run_dir)!r} did not complete (status {manifest.get('status')!r})")
        self.manifest = manifest
        self.summary = manifest["summary"]
        self.config = manifest["config"]
        # absolute figures scale by the users actually simulated (an edge list sets them, not n_users)
        users = manifest.get("population", {}).get("users", self.config["population"]["n_users"])
        self.scale = users / WECHAT_MAU
        self._ticks: pl.DataFrame | None = None
        self._cascades: pl.DataFrame | None = None

    @property
    def ticks(self) -> pl.DataFrame:
        if self._ticks is None:
            self._ticks = read_table(table_path(self.run_dir, self.manifest, "ticks"))
        return self._ticks

    def reached(self, level: int, quantile: float | None, channels: tuple[str, ...] = ()) -> float | None:
        """Level-``level`` exposures of the posts that reached that level (of the given channels,
        all when none): their mean, or a quantile; None when no post reached it."""
        if self._cascades is None:
            self._cascades = read_table(table_path(self.run_dir, self.manifest, "cascades"),
                                        ["channel", *(f"exposures_l{lv}" for lv in (1, 2, 3))])
        exposures = f"exposures_l{level}"
        posts = self._cascades.filter(pl.col(exposures) > 0)
        if channels:
            posts = posts.filter(pl.col("channel").cast(pl.Utf8).is_in(list(channels)))
        reached = posts[exposures]
        if reached.len() == 0:
            return None
        return float(reached.mean()) if quantile is None else float(reached.quantile(quantile, "linear"))

    def measure(self, target: Target) -> float | None:
        """The run's value of ``target`` (None when the run lacks it, e.g. a ticks measure past
        ``from_tick`` on a shorter run)."""
        m = target.measure
        if target.kind == "not_modelled" or m is None:
            return None
        if m.source == "summary":
            value = self.summary.get(m.name)
        elif m.source == "ticks":
            ticks = self.ticks.filter(pl.col("tick") >= m.from_tick)
            if ticks.height == 0:
                return None
            # exact sums (math.fsum): a figure must not depend on how the table's rows were chunked
            values = ticks[m.name].drop_nulls().to_list()
            if m.reduce == "mean":
                value = math.fsum(values) / len(values) if values else None
            else:
                total = math.fsum(ticks[m.over].drop_nulls().to_list())
                value = math.fsum(values) / total if total else None
        elif m.source == "cascades":
            level = int(m.name.removeprefix("exposures_l"))
            value = self.reached(level, m.q if m.reduce == "quantile_reached" else None, m.channels)
        elif m.source == "config":
            section, key = m.name.split(".")
            value = self.config[section][key]
        else:
            value = CONSTANTS[m.name]
        if value is None:
            return None
        value = float(value)
        return value / self.scale if target.scale == "full" else value


def read_table(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """A run's table; a missing or damaged one is a :class:`RunDirectoryError` naming it."""
    try:
        return pl.read_parquet(path, columns=columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirectoryError(f"{str(path)!r} is missing or cannot be read ({first[:120]}): the run is damaged") \
            from None


def validate_run(run_dir: str | Path, targets: list[Target] | None = None,
                 manifest: dict[str, Any] | None = None) -> pl.DataFrame:
    """One row per target for one run (``ci_low``/``ci_high`` equal ``simulated``); ``manifest``
    as in :class:`RunMeasures`."""
    targets = targets if targets is not None else load_targets()
    measures = RunMeasures(Path(run_dir), manifest)
    rows = []
    for t in targets:
        value = measures.measure(t)
        rows.append(_row(t, value, value, value))
    return pl.DataFrame(rows, schema=_schema(), orient="row")


def _row(t: Target, value: float | None, ci_low: float | None, ci_high: float | None) -> tuple:
    return (t.id, t.section, t.kind, t.figure, float(t.expected), t.low, t.high, value, ci_low, ci_high,
            t.within(value) if value is not None else None)


def _schema() -> dict[str, Any]:
    return {"target": pl.Utf8, "section": pl.Utf8, "kind": pl.Utf8, "figure": pl.Utf8, "expected": pl.Float64,
            "low": pl.Float64, "high": pl.Float64, "simulated": pl.Float64, "ci_low": pl.Float64,
            "ci_high": pl.Float64, "within": pl.Boolean}


def _sweep_runs(sweep_dir: Path) -> list[tuple[str, str, Path]]:
    runs = []
    # in replicate order (replicate=10 after replicate=9), as within_by_replicate reports them
    paths = sorted((sweep_dir / "runs").glob("scenario=*/point=*/replicate=*"),
                   key=lambda p: (p.parent.parent.name, p.parent.name, int(p.name.split("=", 1)[1])))
    for path in paths:
        if (path / "manifest.json").is_file():
            scenario = path.parent.parent.name.split("=", 1)[1]
            point = path.parent.name.split("=", 1)[1]
            runs.append((scenario, point, path))
    return runs


def validate_sweep(sweep_dir: str | Path, targets: list[Target] | None = None) -> pl.DataFrame:
    """Per scenario and point: the replicates' mean and its 95% t interval for each target, and
    how many replicates lie within the band on their own (``seeds_within``; which ones in
    ``within_by_replicate``, in replicate order, null where a replicate lacks the figure)."""
    targets = targets if targets is not None else load_targets()
    groups: dict[tuple[str, str], list[RunMeasures]] = {}
    for scenario, point, path in _sweep_runs(Path(sweep_dir)):
        try:
            groups.setdefault((scenario, point), []).append(RunMeasures(path))
        except RunDirectoryError:
            continue  # failed or unfinished replicates are left out (runs.parquet says which)
    if not groups:
        raise RunDirectoryError(f"{str(sweep_dir)!r} holds no completed runs")
    frames = []
    for (scenario, point), runs in sorted(groups.items()):
        rows, by_replicate = [], []
        for t in targets:
            measured = [r.measure(t) for r in runs]
            by_replicate.append([t.within(v) if v is not None else None for v in measured])
            values = [v for v in measured if v is not None and math.isfinite(v)]
            if not values:
                rows.append(_row(t, None, None, None))
                continue
            mean, low, high = t_interval(values)
            lower, upper = t.bounds()
            # the t interval met with the values the figure can take: never below zero for a count
            low = mean if low is None else max(low, lower) if lower is not None else low
            high = mean if high is None else min(high, upper) if upper is not None else high
            rows.append(_row(t, mean, low, high))
        seeds_within = [sum(1 for w in each if w) if any(w is not None for w in each) else None for each in by_replicate]
        frame = pl.DataFrame(rows, schema=_schema(), orient="row")
        frames.append(frame.with_columns(pl.Series("seeds_within", seeds_within, dtype=pl.Int64),
                                         pl.Series("within_by_replicate", by_replicate, dtype=pl.List(pl.Boolean)),
                                         pl.lit(scenario).alias("scenario"), pl.lit(point).alias("point"),
                                         pl.lit(len(runs)).alias("replicates")))
    return pl.concat(frames)


def validate(directory: str | Path, targets: list[Target] | None = None) -> tuple[pl.DataFrame, Path]:
    """Validate a run or a sweep directory and write its ``validation.parquet`` (atomically)."""
    directory = Path(directory)
    if (directory / "manifest.json").is_file():
        table = validate_run(directory, targets)
    elif (directory / "runs").is_dir():
        from .sweep import check_tables_kept  # noqa: PLC0415

        check_tables_kept(directory)
        table = validate_sweep(directory, targets)
    else:
        raise RunDirectoryError(f"{str(directory)!r} is neither a run directory (manifest.json) "
                                f"nor a sweep directory (runs/)")
    return table, write_validation(table, directory)


#: each column of ``validation.parquet``: (unit, meaning), written as field metadata as every
#: other table's are (``field.metadata[b"unit"]``, ``[b"meaning"]``)
VALIDATION_COLUMNS = {
    "target": ("-", "the figure's name in model/study/targets.toml"),
    "section": ("-", "the SPEC sections the figure comes from"),
    "kind": ("-", "input (a value the model takes), target (fitted), plausibility (a bound), not_modelled"),
    "figure": ("-", "the SPEC's wording of the figure"),
    "expected": ("the figure's unit", "the SPEC's value (units in model/study/targets.toml)"),
    "low": ("the figure's unit", "the tolerance band's lower end"),
    "high": ("the figure's unit", "the tolerance band's upper end"),
    "simulated": ("the figure's unit", "the run's value (a sweep: the mean over replicates)"),
    "ci_low": ("the figure's unit", "a sweep's 95% t interval over replicates, lower end, within the values the "
                                    "figure can take; null for one run"),
    "ci_high": ("the figure's unit", "the same interval's upper end"),
    "within": ("-", "simulated lies in [low, high]; null when not measured"),
    "scenario": ("-", "a sweep's scenario"),
    "point": ("-", "a sweep's grid point"),
    "replicates": ("runs", "the replicates the mean is over"),
    "seeds_within": ("runs", "a sweep's replicates whose own value lies in [low, high]; null when none measured it"),
    "within_by_replicate": ("-", "each completed replicate's own within, in replicate order (a failed replicate "
                                 "is left out: runs.parquet says which; null: not measured)"),
}


def write_validation(table: pl.DataFrame, directory: Path) -> Path:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    arrow = table.to_arrow()
    fields = [f.with_metadata({b"unit": VALIDATION_COLUMNS[f.name][0].encode(),
                               b"meaning": VALIDATION_COLUMNS[f.name][1].encode()}) if f.name in VALIDATION_COLUMNS
              else f for f in arrow.schema]
    arrow = arrow.cast(pa.schema(fields))
    target = directory / "validation.parquet"
    tmp = directory / f".validation.parquet.tmp-{os.getpid()}"
    pq.write_table(arrow, tmp)
    os.replace(tmp, target)
    return target


def manifests_of(directory: str | Path) -> list[dict[str, Any]]:
    """The manifests of a run directory, or of a sweep directory's completed runs."""
    directory = Path(directory)
    if (directory / "manifest.json").is_file():
        return [read_manifest(directory)]
    found = []
    for _scenario, _point, path in _sweep_runs(directory):
        try:
            manifest = read_manifest(path)
        except RunDirectoryError:
            continue
        if manifest.get("status") == "complete":
            found.append(manifest)
    return found


def default_config() -> ScenarioConfig:
    """The shipped default scenario: the one the targets were calibrated on."""
    return load_config()


def validation_warnings(manifests: list[dict[str, Any]], targets: list[Target] | None = None) -> list[str]:
    """What a reader of a validation must know: targets a run is too short to measure, and runs
    other than the calibrated default (another size, length or scenario). One line each."""
    targets = targets if targets is not None else load_targets()
    default = default_config()
    warnings = []
    for manifest in _distinct(manifests):
        config, name = manifest["config"], manifest.get("scenario", "the run")
        ticks = config["run"]["n_ticks"]
        short = [t.id for t in targets if t.measure is not None and t.measure.from_tick >= ticks]
        if short:
            warnings.append(f"{name}: {len(short)} targets ({', '.join(short)}) are measured from tick "
                            f"{max(t.measure.from_tick for t in targets if t.id in short)}, past the risk engine's "
                            f"warm-up; the run has {ticks} ticks, so they are not measured")
        users = manifest.get("population", {}).get("users", config["population"]["n_users"])
        region = config["population"].get("region_users", default.population.region_users)
        # the calibration holds at any whole number of regions (size-free mechanisms, README)
        if users % region or ticks < default.run.n_ticks:
            warnings.append(f"{name}: the default is calibrated on whole regions of {region:,} users x "
                            f"{default.run.n_ticks} ticks; this run has {users:,} users x {ticks} ticks, and figures "
                            f"that depend on the size of the last region or on the run's length may leave their bands")
        warnings += [f"{name}: {note}" for note in size_notes(config, users)]
        changed = _changed_settings(config, default)
        if changed:
            warnings.append(f"{name}: {len(changed)} setting{'s differ' if len(changed) > 1 else ' differs'} from the "
                            f"calibrated default "
                            f"({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''}); the targets describe "
                            f"the default")
    return list(dict.fromkeys(warnings))  # grid points of one scenario say the same things once


def _distinct(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One manifest per scenario and configuration (replicates differ only in their seeds)."""
    seen, out = set(), []
    for manifest in manifests:
        config = {**manifest["config"], "run": {**manifest["config"]["run"], "seed": None}}
        key = json.dumps(config, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(manifest)
    return out


#: settings that do not change the modelled ecosystem (where and how results are written, the
#: run's name, seed and backend, its size and length, reported separately)
_NEUTRAL = {("run", "name"), ("run", "seed"), ("run", "backend"), ("run", "n_ticks"), ("population", "n_users"),
            ("merchants", "n_merchants"), ("population", "edge_list")}


def _changed_settings(config: dict[str, Any], default: Any) -> list[str]:
    reference = default.resolved()
    return [f"{section}.{key}" for section, values in config.items() if section != "output"
            for key, value in values.items()
            if (section, key) not in _NEUTRAL and reference.get(section, {}).get(key) != value]


def share_within(table: pl.DataFrame) -> tuple[int, int]:
    """(targets within tolerance, targets measured) of a validation table (targets only)."""
    measured = table.filter((pl.col("kind") == "target") & pl.col("within").is_not_null())
    return int(measured["within"].sum()), measured.height


def per_replicate_within(table: pl.DataFrame, kind: str = "target") -> list[tuple[int, int]]:
    """(within, measured) of each replicate of one sweep point's table, over the figures of
    ``kind`` (the fitted targets by default): the per-seed truth beside the mean."""
    if table.select("scenario", "point").n_unique() != 1:
        raise ValueError("per_replicate_within takes one scenario and grid point: partition the table first")
    rows = table.filter(pl.col("kind") == kind)["within_by_replicate"].to_list()
    counts = []
    for replicate in range(max((len(r) for r in rows if r is not None), default=0)):
        marks = [r[replicate] for r in rows if r is not None and r[replicate] is not None]
        counts.append((sum(marks), len(marks)))
    return counts


def format_value(value: float | None) -> str:
    """A figure for a table: 4 significant digits, 3 in exponent form when very large or small,
    "-" when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_ci(row: dict[str, Any]) -> str:
    """A row's interval as "low .. high", or "-" for a single run (no interval)."""
    if row["ci_low"] is None or row["ci_low"] == row["ci_high"]:
        return "-"
    return f"{format_value(row['ci_low'])} .. {format_value(row['ci_high'])}"


def to_markdown(table: pl.DataFrame) -> str:
    """A validation table as Markdown (for READMEs and reports); one run or one sweep point."""
    sweep = "seeds_within" in table.columns
    lines = ["| target | section | expected | band | simulated | 95% CI | within |" + (" seeds within |" if sweep else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if sweep else "")]
    for row in table.iter_rows(named=True):
        if row["kind"] not in ("target", "alternative"):
            continue
        band = f"{format_value(row['low'])} .. {format_value(row['high'])}"
        within = "-" if row["within"] is None else ("yes" if row["within"] else "**no**")
        name = row["target"] if row["kind"] == "target" else f"({row['target']}, not counted)"
        seeds = f" {row['seeds_within']} of {row['replicates']} |" if sweep and row["seeds_within"] is not None else \
            (" - |" if sweep else "")
        lines.append(f"| {name} | {row['section']} | {format_value(row['expected'])} | {band} | "
                     f"{format_value(row['simulated'])} | {format_ci(row)} | {within} |{seeds}")
    return "\n".join(lines)
