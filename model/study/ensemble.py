"""``weishang calibrate --ensemble SPEC``: the parameter sets consistent with the targets.

The point calibration (:mod:`weishang.model.study.calibrate`) gives one set of values; several others
reproduce the SPEC's figures as well, and a policy answer should carry that uncertainty. This
module finds them by **history matching** (Craig et al. 1997; Vernon et al. 2010; Andrianakis et
al. 2015 for an agent-based model), run by direct simulation:

1. ``samples`` parameter sets are drawn by Latin hypercube over the spec's box (log-uniform for
   the parameters named in ``log``), and each is run once at 200k users and 90 days on a common
   seed (every trial shares one population, as the point calibration's do). The scenario itself
   is run on ``centre_replicates`` seeds: the spread of each figure over seeds (sigma_t).
2. A set's implausibility on target t is its distance outside the SPEC's band in seed standard
   deviations, ``I_t = max(0, low - value, value - high) / sigma_t`` (zero inside the band: the
   band already is the tolerance the SPEC's figures get), and its implausibility is the largest
   over the matched targets. Sets with ``I <= cutoff`` (3: a one-seed run that misses its band
   by less than three seed deviations may be in it) form the ensemble.
3. Targets named in ``exclude`` (structurally out of reach at every point of the box; README)
   and in ``hold_out`` are not matched. The held-out ones are then *predicted* by the ensemble:
   out of sample (``held_out.parquet``).
4. **Coverage on synthetic truths**: each sample in turn is taken as the truth, its own figures
   as the observations (with the SPEC's band widths around them), and the other samples are
   matched against them as above; the truth's parameters should fall inside the matched sets'
   range. ``coverage.parquet`` says, per parameter, how often they did, and how much narrower
   than the box the range was (a range as wide as the box covers trivially), at the SPEC's band
   widths and at a quarter of them (where the figures pin the parameters down more).

Why not ABC-SMC (pyabc): sequential populations of a few hundred runs each, several
generations, at ~5 s a run on 2 cores, is hours for one fit, and a coverage check would need a
fit per synthetic truth. History matching's one wave of runs serves the ensemble, the held-out
prediction and every synthetic truth at once; a second wave (a new box around the first
ensemble) narrows it when the first keeps too many. The ensemble is a set of plausible values,
not a posterior: members are equally weighted, and the report treats them as draws of parameter
uncertainty (:func:`weishang.model.study.effects.ensemble_effects`).

Outputs in ``OUT``: ``samples.parquet`` (every run: parameters, figures, implausibility; kept as
runs finish, so a stopped fit resumes), ``ensemble.parquet`` (the members: ``member``, one
``param.*`` column per parameter, their figures), ``held_out.parquet``, ``coverage.parquet``,
``ensemble.png`` (each parameter's box and the ensemble's range). A sweep runs a scenario over
the members with ``[ensemble] file = ".../ensemble.parquet"`` (:mod:`weishang.model.study.sweep`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..config import (
    ConfigError,
    ScenarioConfig,
    read_toml_file,
    whole_number,
)
from .calibrate import (
    _exit_with_parent,
    evaluate,
    prepare,
)
from .space import parameter_box
from .validation import Target, load_targets

#: the sample index of the scenario's own values run on replicate seeds (for the seed spread)
CENTRE = -1
#: the synthetic-truth check's band widths, as multiples of the SPEC's
COVERAGE_SCALES = (1.0, 0.25)


@dataclass
class EnsembleSpec:
    """What ``[ensemble]`` of a spec file declares (see the module docstring)."""

    params: dict[str, tuple[float, float]]
    log: set[str] = field(default_factory=set)
    samples: int = 200
    seed: int = 1
    centre_replicates: int = 5
    cutoff: float = 3.0
    exclude: list[str] = field(default_factory=list)
    hold_out: list[str] = field(default_factory=list)


def load_ensemble_spec(path: str | Path) -> EnsembleSpec:
    doc = read_toml_file(path, "ensemble spec")
    section = doc.get("ensemble")
    if not isinstance(section, dict):
        raise ConfigError(f"ensemble spec {str(path)!r}: needs an [ensemble] table with [ensemble.params]")
    allowed = {"params", "log", "samples", "seed", "centre_replicates", "cutoff", "exclude", "hold_out"}
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"ensemble.{sorted(unknown)[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    # workers reuse one population per seed (a key that shapes it was ignored after the first
    # sample); a box's ends are checked now, not when a run starts (issue 32)
    params = {key: (box.low, box.high) for key, box in
              parameter_box(section.get("params", {}), "ensemble.params", shared_population=True,
                            integers=False, whole_config=True).items()}
    # each setting of its type, refused in one line (a traceback before: issue 32)
    spec = EnsembleSpec(params=params, log=set(_names(section, "log")),
                        samples=whole_number(section, "samples", 200, 1, 100_000, "ensemble"),
                        seed=whole_number(section, "seed", 1, 0, 2**63 - 1, "ensemble"),
                        centre_replicates=whole_number(section, "centre_replicates", 5, 2, 100, "ensemble"),
                        cutoff=_number(section, "cutoff", 3.0), exclude=_names(section, "exclude"),
                        hold_out=_names(section, "hold_out"))
    known = {t.id for t in load_targets() if t.kind in ("target", "plausibility") and t.measure}
    for name in [*spec.exclude, *spec.hold_out]:
        if name not in known:
            raise ConfigError(f"ensemble: {name!r} is not a measured target (allowed: {', '.join(sorted(known))})")
    for name in spec.log:
        if name not in params or params[name][0] <= 0:
            raise ConfigError(f"ensemble.log: {name!r} must be a parameter with a positive range")
    # a NaN or infinite cutoff would keep every set (NaN compares false, inf admits all)
    if not math.isfinite(spec.cutoff) or spec.cutoff <= 0:
        raise ConfigError(f"ensemble.cutoff = {spec.cutoff}: must be a positive, finite cutoff")
    return spec


#: what the runs of ``OUT/samples.parquet`` were made with (the box, the draws, the config)
RUNS_STAMP = "ensemble_runs.json"


def check_same_runs(out: Path, spec: EnsembleSpec, config: ScenarioConfig) -> None:
    """Refuse to resume into ``out`` runs made with another box, sample count, seed or config (a
    rerun with another box or ``--set`` reused the old samples and reported the new box: issue
    32); stamp a new directory. The cutoff and the targets matched or held out may change: they
    only re-read the runs."""
    import json  # noqa: PLC0415

    wanted = {"params": {name: list(bounds) for name, bounds in spec.params.items()}, "log": sorted(spec.log),
              "samples": spec.samples, "seed": spec.seed, "centre_replicates": spec.centre_replicates,
              "config": config.model_dump(mode="json")}
    stamp = out / RUNS_STAMP
    if stamp.is_file():
        if json.loads(stamp.read_text(encoding="utf-8")) != wanted:
            raise ConfigError(f"{str(out)!r} holds ensemble runs of another box, sample count, seed or config "
                              f"(--set, scenario): choose another --out, or rerun with what made them")
        return
    if (out / "samples.parquet").exists():
        raise ConfigError(f"{str(out)!r} holds ensemble runs that do not say what made them: choose another --out")
    tmp = stamp.with_name(f".{stamp.name}.tmp")
    tmp.write_text(json.dumps(wanted, sort_keys=True), encoding="utf-8")
    tmp.replace(stamp)


def _number(section: dict[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"ensemble.{key} = {value!r}: a number")
    return float(value)


def _names(section: dict[str, Any], key: str) -> list[str]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"ensemble.{key} = {value!r}: a list of names, e.g. [\"reach_l1\"]")
    return value


def draw_samples(spec: EnsembleSpec) -> list[dict[str, float]]:
    """The Latin hypercube over the box (scipy's qmc, seeded); log-uniform where asked."""
    from scipy.stats import qmc  # noqa: PLC0415

    names = list(spec.params)
    unit = qmc.LatinHypercube(d=len(names), seed=spec.seed).random(spec.samples)
    points = []
    for row in unit:
        point = {}
        for name, u in zip(names, row):
            lo, hi = spec.params[name]
            point[name] = float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if name in spec.log
                                else lo + u * (hi - lo))
        points.append(point)
    return points


# ------------------------------------------------------------------ matching


def matched_targets(spec: EnsembleSpec, targets: list[Target] | None = None) -> list[Target]:
    """The targets and plausibility bounds a member must meet: every measured one with a band,
    less the excluded and the held-out."""
    targets = targets if targets is not None else load_targets()
    return [t for t in targets if t.kind in ("target", "plausibility") and t.measure
            and (t.low is not None or t.high is not None) and t.id not in spec.exclude and t.id not in spec.hold_out]


def outside(value: Any, low: float | None, high: float | None) -> Any:
    """Distance of ``value`` (a number or float64[n]) outside [low, high] (0 inside; NaN stays NaN)."""
    below = (low - value) if low is not None else 0.0 * value
    above = (value - high) if high is not None else 0.0 * value
    return np.maximum(np.maximum(below, above), 0.0 * value)


def seed_sigma(samples: pl.DataFrame, targets: list[Target]) -> dict[str, float]:
    """Each target's standard deviation over the centre's replicate seeds (a floor of 1e-9 of
    its scale, so a figure that does not vary over seeds is matched exactly)."""
    centre = samples.filter(pl.col("sample") == CENTRE)
    sigma = {}
    for t in targets:
        values = centre[f"target.{t.id}"].drop_nulls().to_numpy() if f"target.{t.id}" in centre.columns else []
        sd = float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
        sigma[t.id] = max(sd, 1e-9 * max(abs(t.expected), 1.0))
    return sigma


def implausibility(samples: pl.DataFrame, targets: list[Target], sigma: dict[str, float],
                   bands: dict[str, tuple[float | None, float | None]] | None = None) -> np.ndarray:
    """(float64[S]) each sample's largest implausibility over ``targets``; an unmeasured figure
    counts as infinitely implausible. ``bands`` replaces the SPEC's bands (synthetic truths)."""
    worst = np.zeros(samples.height)
    for t in targets:
        low, high = bands[t.id] if bands is not None else (t.low, t.high)
        column = f"target.{t.id}"
        values = samples[column].cast(pl.Float64).fill_null(np.nan).to_numpy() if column in samples.columns \
            else np.full(samples.height, np.nan)
        score = outside(values, low, high) / sigma[t.id]
        worst = np.maximum(worst, np.where(np.isfinite(score), score, np.inf))
    return worst


def coverage(samples: pl.DataFrame, spec: EnsembleSpec, targets: list[Target], sigma: dict[str, float],
             min_matches: int = 5, band_scale: float = 1.0) -> pl.DataFrame:
    """Synthetic truths: each sample as the truth, the others matched to its figures within the
    SPEC's band widths (times ``band_scale``) around them; per parameter, how often the truth
    lies within the matched samples' range and how wide that range is against the box (see the
    module docstring). Truths with fewer than ``min_matches`` matches are left out."""
    runs = samples.filter(pl.col("sample") != CENTRE).sort("sample")
    names = list(spec.params)
    theta = runs.select([f"param.{n}" for n in names]).to_numpy()
    covered = {n: [] for n in names}
    width = {n: [] for n in names}
    truths = 0
    for j in range(runs.height):
        bands = {}
        for t in targets:
            value = runs[f"target.{t.id}"][j]
            if value is None or not math.isfinite(value):
                bands = None
                break
            bands[t.id] = (value - band_scale * (t.expected - t.low) if t.low is not None else None,
                           value + band_scale * (t.high - t.expected) if t.high is not None else None)
        if bands is None:
            continue
        worst = implausibility(runs, targets, sigma, bands)
        worst[j] = np.inf  # the truth itself is not among the candidates
        matched = theta[worst <= spec.cutoff]
        if matched.shape[0] < min_matches:
            continue
        truths += 1
        for i, name in enumerate(names):
            lo, hi = matched[:, i].min(), matched[:, i].max()
            covered[name].append(lo <= theta[j, i] <= hi)
            box_lo, box_hi = spec.params[name]
            if name in spec.log:
                width[name].append((math.log(hi) - math.log(lo)) / (math.log(box_hi) - math.log(box_lo)))
            else:
                width[name].append((hi - lo) / (box_hi - box_lo))
    return pl.DataFrame({"param": names, "band_scale": [band_scale] * len(names), "truths": [truths] * len(names),
                         "covered": [float(np.mean(covered[n])) if covered[n] else None for n in names],
                         "range_of_box": [float(np.mean(width[n])) if width[n] else None for n in names]})


def held_out_predictions(members: pl.DataFrame, spec: EnsembleSpec, targets: list[Target]) -> pl.DataFrame:
    """Each held-out target as the ensemble predicts it: members' mean, 5-95% range, and whether
    the mean lies within the SPEC's band."""
    rows = []
    for t in targets:
        if t.id not in spec.hold_out:
            continue
        column = f"target.{t.id}"
        values = members[column].drop_nulls().to_numpy() if column in members.columns else np.zeros(0)
        mean = float(values.mean()) if values.size else None
        rows.append({"target": t.id, "low": t.low, "high": t.high, "predicted": mean,
                     "p05": float(np.quantile(values, 0.05)) if values.size else None,
                     "p95": float(np.quantile(values, 0.95)) if values.size else None,
                     "members_within": float(np.mean([t.within(v) for v in values])) if values.size else None,
                     "within": t.within(mean) if mean is not None else None})
    return pl.DataFrame(rows, schema={"target": pl.Utf8, "low": pl.Float64, "high": pl.Float64,
                                      "predicted": pl.Float64, "p05": pl.Float64, "p95": pl.Float64,
                                      "members_within": pl.Float64, "within": pl.Boolean})


# ------------------------------------------------------------------ running


def _evaluate_sample(base: list[str], scenario: str | None, values: dict[str, float], seed: int,
                     targets: list[Target], parent: int) -> dict[str, float]:
    _exit_with_parent(parent)
    return evaluate(base, scenario, values, [seed], targets)


def _write(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp)
    tmp.replace(path)


@dataclass
class EnsembleResult:
    members: int
    samples: int
    ensemble_file: Path
    held_out: pl.DataFrame
    coverage: pl.DataFrame
    ranges: pl.DataFrame


def run_ensemble(spec_path: str | Path, out: str | Path, scenario: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), workers: int = 1,
                 on_progress: Callable[[int, int], None] | None = None) -> EnsembleResult:
    """Run the samples and the centre's replicates (resuming from ``OUT/samples.parquet``), then
    match, predict the held-out targets, check coverage and write everything to ``OUT``."""
    spec = load_ensemble_spec(spec_path)
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    out, scenario, base, base_config = prepare(out, scenario, overrides)
    from .sweep import replicate_seed  # noqa: PLC0415

    targets = load_targets()
    measured = [t for t in targets if t.kind in ("target", "plausibility") and t.measure]
    points = draw_samples(spec)
    seed = replicate_seed(base_config.run.seed, 0)
    jobs: dict[int, tuple[dict[str, float], int]] = {i: (p, seed) for i, p in enumerate(points)}
    centre = {name: float(base_config.model_dump()[name.split(".")[0]][name.split(".")[1]]) for name in spec.params}
    for k in range(spec.centre_replicates):  # the centre's replicates: sample -1 - k
        jobs[CENTRE - k] = (centre, replicate_seed(base_config.run.seed, k))
    path = out / "samples.parquet"
    check_same_runs(out, spec, base_config)
    rows: list[dict[str, Any]] = []
    if path.exists():
        previous = pl.read_parquet(path)
        if set(previous.columns) >= {f"param.{n}" for n in spec.params}:
            rows = previous.to_dicts()
    done = {(r["sample"], r["replicate_seed"]) for r in rows}
    pending = [(i, v, s) for i, (v, s) in jobs.items() if (CENTRE if i <= CENTRE else i, s) not in done]
    total = len(jobs)
    if on_progress is not None:
        on_progress(total - len(pending), total)
    if pending:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_evaluate_sample, base, scenario, v, s, measured, os.getpid()): (i, v, s)
                       for i, v, s in pending}
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in finished:
                    i, values, s = futures[future]
                    result = future.result()
                    rows.append({"sample": CENTRE if i <= CENTRE else i, "replicate_seed": s,
                                 **{f"param.{n}": values[n] for n in spec.params},
                                 **{f"target.{t.id}": result.get(t.id) for t in measured}})
                _write(pl.DataFrame(rows, infer_schema_length=None), path)
                if on_progress is not None:
                    on_progress(total - len(remaining), total)
    samples = pl.DataFrame(rows, infer_schema_length=None).sort("sample", "replicate_seed")
    return summarise(samples, spec, out)


def summarise(samples: pl.DataFrame, spec: EnsembleSpec, out: Path) -> EnsembleResult:
    """Match, predict and check coverage from the runs in ``samples``; write the outputs."""
    targets = load_targets()
    matched = matched_targets(spec, targets)
    sigma = seed_sigma(samples, matched + [t for t in targets if t.id in spec.hold_out])
    runs = samples.filter(pl.col("sample") != CENTRE)
    worst = implausibility(runs, matched, sigma)
    runs = runs.with_columns(pl.Series("implausibility", worst))
    _write(pl.concat([runs, samples.filter(pl.col("sample") == CENTRE).with_columns(
        pl.Series("implausibility", implausibility(samples.filter(pl.col("sample") == CENTRE), matched, sigma)))],
        how="diagonal"), out / "samples.parquet")
    members = runs.filter(pl.col("implausibility") <= spec.cutoff).sort("sample").with_row_index("member")
    members = members.with_columns(pl.col("member").cast(pl.Int64))
    ensemble_file = out / "ensemble.parquet"
    _write(members, ensemble_file)
    held = held_out_predictions(members, spec, targets)
    _write(held, out / "held_out.parquet")
    # at the SPEC's widths, and at a quarter of them: a range as wide as the box covers trivially,
    # so the narrower bands show the matching finds the truth when the figures do pin it down
    cover = pl.concat([coverage(samples, spec, matched, sigma, band_scale=scale) for scale in COVERAGE_SCALES])
    _write(cover, out / "coverage.parquet")
    ranges = pl.DataFrame([{"param": n, "box_low": lo, "box_high": hi,
                            "low": float(members[f"param.{n}"].min()) if members.height else None,
                            "high": float(members[f"param.{n}"].max()) if members.height else None}
                           for n, (lo, hi) in spec.params.items()])
    _write(ranges, out / "ranges.parquet")
    plot_ranges(ranges, runs, members, spec, out / "ensemble.png")
    return EnsembleResult(members.height, runs.height, ensemble_file, held, cover, ranges)


def plot_ranges(ranges: pl.DataFrame, runs: pl.DataFrame, members: pl.DataFrame, spec: EnsembleSpec,
                path: Path) -> None:
    """Each parameter on its box (scaled to 0-1, log where sampled so): every sample in grey,
    the members in colour."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(spec.params)

    def unit(name: str, values: np.ndarray) -> np.ndarray:
        lo, hi = spec.params[name]
        if name in spec.log:
            return (np.log(values) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (values - lo) / (hi - lo)

    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.4))
    for row, name in enumerate(names):
        ax.scatter(unit(name, runs[f"param.{name}"].to_numpy()), np.full(runs.height, row), s=6, color="0.8",
                   label="samples" if row == 0 else None)
        if members.height:
            ax.scatter(unit(name, members[f"param.{name}"].to_numpy()), np.full(members.height, row), s=14,
                       color="C0", label=f"ensemble ({members.height})" if row == 0 else None)
    ax.set_yticks(range(len(names)), [f"{n}\n[{spec.params[n][0]:g}, {spec.params[n][1]:g}]" for n in names],
                  fontsize=7)
    ax.set_xlabel("position in the box (log scale for log-sampled parameters)")
    ax.set_xlim(-0.02, 1.02)
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(names)), ncol=2, fontsize=8, frameon=False)
    ax.set_title("parameter sets consistent with the targets (history matching)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
