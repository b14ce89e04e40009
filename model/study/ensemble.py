"""``weishang calibrate --ensemble SPEC``: the parameter sets consistent with the targets.

The point calibration (:mod:`weishang.model.study.calibrate`) gives one set of values; several others
reproduce the SPEC's figures as well, and a policy answer should carry that uncertainty. This
module finds them by **history matching** (Craig et al. 1997; Vernon et al. 2010; Andrianakis et
al. 2015 for an agent-based model), run by direct simulation:

1. ``samples`` parameter sets are drawn by Latin hypercube over the spec's box (log-uniform for
   the parameters named in ``log``), and each is run once at 200k users and 90 days on a common
   seed (the samples share one population in each worker, as the point calibration's trials
   do). The scenario itself is run on ``centre_replicates`` seeds: the spread of each figure over
   seeds (sigma_t).
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

The runs are a sweep's (:func:`plan_ensemble`): ``OUT/runs.parquet`` and ``OUT/runs/`` hold them
as they finish (each run's manifest and ``validation.parquet`` only), so a stopped fit resumes,
and they run on local workers, as array-job elements or on a Dask cluster. Outputs in ``OUT``:
``samples.parquet`` (every run: parameters, figures, implausibility), ``ensemble.parquet`` (the
members: ``member``, one ``param.*`` column per parameter, their figures), ``held_out.parquet``,
``coverage.parquet``, ``ensemble.png`` (each parameter's box and the ensemble's range). A sweep
runs a scenario over the members with ``[members] file = ".../ensemble.parquet"``
(:mod:`weishang.model.study.sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..config import (
    ConfigError,
    load_config,
    whole_number,
)
from .space import Box, common_overrides, latin_hypercube
from .sweep import Sweep, build_sweep, check_unchanged, is_complete, run_sweep
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
    #: the targets matched (empty: every measured one with a band, less ``exclude`` and ``hold_out``)
    outcomes: list[str] = field(default_factory=list)
    #: the spec as the shared model reads it (scenarios, [set]); None for a spec made in code
    experiment: Any = None


def load_ensemble_spec(path: str | Path) -> EnsembleSpec:
    """Read and check an ensemble spec (:func:`weishang.model.study.experiment.load_experiment`)."""
    from .experiment import load_experiment  # noqa: PLC0415

    # workers reuse one population per seed (a key that shapes it was ignored after the first
    # sample); a box's ends are checked now, not when a run starts (issue 32)
    experiment = load_experiment(path, "ensemble", shared_population=True, integers=False, whole_config=True)
    section = experiment.settings
    if not experiment.uncertainties:
        raise ConfigError(f"ensemble spec {str(path)!r}: needs [uncertainties] (or [ensemble.params]) of "
                          f"\"section.key\" = [low, high]")
    # each setting of its type, refused in one line (a traceback before: issue 32)
    spec = EnsembleSpec(params={key: (box.low, box.high) for key, box in experiment.uncertainties.items()},
                        log=set(experiment.log),
                        samples=whole_number(section, "samples", 200, 1, 100_000, "ensemble"),
                        seed=whole_number(section, "seed", 1, 0, 2**63 - 1, "ensemble"),
                        centre_replicates=whole_number(section, "centre_replicates", 5, 2, 100, "ensemble"),
                        cutoff=_number(section, "cutoff", 3.0), exclude=_names(section, "exclude"),
                        hold_out=_names(section, "hold_out"), outcomes=list(experiment.outcomes),
                        experiment=experiment)
    known = {t.id for t in load_targets() if t.kind in ("target", "plausibility") and t.measure}
    for name in [*spec.exclude, *spec.hold_out]:
        if name not in known:
            raise ConfigError(f"ensemble: {name!r} is not a measured target (allowed: {', '.join(sorted(known))})")
    both = [name for name in spec.outcomes if name in spec.exclude or name in spec.hold_out]
    if both:
        raise ConfigError(f"ensemble.outcomes: {both[0]!r} is also excluded or held out; a target is matched, "
                          f"held out or excluded")
    if not matched_targets(spec):  # nothing to match would keep every set
        raise ConfigError("ensemble: no target is left to match (every outcome is excluded or held out)")
    # a NaN or infinite cutoff would keep every set (NaN compares false, inf admits all)
    if not math.isfinite(spec.cutoff) or spec.cutoff <= 0:
        raise ConfigError(f"ensemble.cutoff = {spec.cutoff}: must be a positive, finite cutoff")
    return spec


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
    """The Latin hypercube over the box (log-uniform where asked): the sweep's own draw
    (:func:`weishang.model.study.space.latin_hypercube`)."""
    boxes = {name: Box(name, lo, hi, False) for name, (lo, hi) in spec.params.items()}
    return latin_hypercube(boxes, spec.samples, spec.seed, spec.log)


# ------------------------------------------------------------------ matching


def matched_targets(spec: EnsembleSpec, targets: list[Target] | None = None) -> list[Target]:
    """The targets and plausibility bounds a member must meet: every measured one with a band,
    less the excluded and the held-out."""
    targets = targets if targets is not None else load_targets()
    return [t for t in targets if t.kind in ("target", "plausibility") and t.measure
            and (t.low is not None or t.high is not None) and t.id not in spec.exclude and t.id not in spec.hold_out
            and (not spec.outcomes or t.id in spec.outcomes)]


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
    #: per matched target: how many samples it puts beyond the cutoff (``ruled_out``), and how many
    #: of those could not measure it (``unmeasured``), most first: why sets were not kept
    ruled_out: pl.DataFrame | None = None
    #: runs made by this call, and runs complete before it
    made: int = 0
    already: int = 0


@dataclass(frozen=True)
class EnsembleRuns:
    """An ensemble's runs as a sweep: its samples (point i, one seed) and its centre (the last
    point, ``centre_replicates`` seeds), each recording every measured target."""

    spec: EnsembleSpec
    sweep: Sweep
    out: Path


def plan_ensemble(spec_path: str | Path, out: str | Path, scenario: str | Path | None = None,
                  overrides: list[str] | tuple[str, ...] = ()) -> EnsembleRuns:
    """Read the spec and lay its runs out as a sweep (:mod:`weishang.model.study.sweep`), so they
    run as any sweep's do: on local workers, as array-job elements or on a Dask cluster, resumable,
    each run's identity its config's digest. ``scenario`` (the command line's) wins over the
    spec's ``scenarios``; ``overrides`` (``--set``) come after its ``[set]``.

    Every sample runs on replicate 0's seed of the scenario's ``run.seed`` and the centre on
    replicates 0..k-1 (common random numbers), and runs that share a seed share one population in
    each worker (:attr:`RunSpec.share_population`). Only each run's manifest and
    ``validation.parquet`` are kept (:attr:`RunSpec.keep_tables`).

    Raises:
        ConfigError: a bad spec, scenario or override, or ``out`` holds runs made with another box,
            sample count, seed, scenario or ``--set`` (the digests differ), or an earlier
            release's ensemble runs.
    """
    spec = load_ensemble_spec(spec_path)
    out = Path(out)
    if (out / "samples.parquet").exists() and not (out / "runs.parquet").exists():
        raise ConfigError(f"{str(out)!r} holds ensemble runs of an earlier release, which do not say what made "
                          f"them: choose another --out")
    experiment = spec.experiment
    scenario_file = Path(scenario).resolve() if scenario is not None else experiment.scenarios[0]
    common = common_overrides({"set": experiment.common}, overrides)
    base_config = load_config(scenario_file, common)
    if "run.seed" in common:  # the seeds derive from it: taken as the base, not laid over every run
        common = {key: value for key, value in common.items() if key != "run.seed"}
    points = draw_samples(spec)
    values = base_config.model_dump()
    centre = {name: float(values[name.split(".")[0]][name.split(".")[1]]) for name in spec.params}
    # every measured target, as its measure (target.ID: a bare id that is a summary figure is the figure)
    measured = tuple(f"target.{t.id}" for t in load_targets() if t.kind in ("target", "plausibility") and t.measure)
    sweep = build_sweep(experiment.name, [scenario_file], [*points, centre],
                        [1] * len(points) + [spec.centre_replicates], base_config.run.seed, common, measured,
                        share_population=True, keep_tables=False)
    try:
        check_unchanged(sweep, out)
    except ConfigError:  # issue 32: a rerun with another box reused the old samples and reported the new box
        raise ConfigError(f"{str(out)!r} holds ensemble runs made with another box, sample count, seed, scenario "
                          f"or --set: choose another --out, or rerun with what made them") from None
    return EnsembleRuns(spec, sweep, out)


def samples_table(runs: EnsembleRuns) -> pl.DataFrame:
    """Every run's parameters and measured targets from the sweep's ``runs.parquet``: ``sample``
    (the centre's replicates are ``CENTRE``), ``replicate_seed``, ``param.*``, ``target.*``.

    Raises:
        ConfigError: a run is not complete (it names how many and the first failure).
    """
    table = pl.read_parquet(runs.out / "runs.parquet")
    unfinished = table.filter(pl.col("status") != "complete")
    if unfinished.height:
        first = unfinished.row(0, named=True)
        why = f": {first['error']}" if first["error"] else ""
        raise ConfigError(f"{unfinished.height} of the ensemble's {table.height} runs are not complete (run "
                          f"{first['run_id']} {first['status']}{why}); run the command again to finish them")
    n_samples = runs.spec.samples
    return table.select(
        pl.when(pl.col("point") < n_samples).then(pl.col("point")).otherwise(CENTRE).cast(pl.Int64).alias("sample"),
        pl.col("seed").alias("replicate_seed"),
        *[pl.col(f"param.{n}").cast(pl.Float64) for n in runs.spec.params],
        pl.col("^target\\..*$"),
    ).sort("sample", "replicate_seed")


def run_ensemble(spec_path: str | Path, out: str | Path, scenario: str | Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), workers: int = 1,
                 on_progress: Callable[[int, int], None] | None = None, task_index: int | None = None,
                 scheduler: str | None = None, planned: EnsembleRuns | None = None,
                 preflight: bool = True) -> EnsembleResult | None:
    """Run the samples and the centre's replicates as a sweep in ``OUT`` (resuming what is
    complete), then match, predict the held-out targets, check coverage and write everything to
    ``OUT``. ``task_index``: make only that run (an array-job element) and return None;
    ``scheduler``: a Dask scheduler's address; ``planned``: what :func:`plan_ensemble` returned
    for these arguments; ``preflight``: check that ``workers`` runs fit in memory together first
    (:func:`weishang.model.study.sweep.check_memory`)."""
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    runs = planned or plan_ensemble(spec_path, out, scenario, overrides)
    todo = runs.sweep.runs if task_index is None else runs.sweep.runs[task_index:task_index + 1]
    done = already = sum(is_complete(spec, runs.out) for spec in todo)
    if on_progress is not None:
        on_progress(done, len(todo))

    def advance(_record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(todo))

    run_sweep(runs.sweep, runs.out, workers, task_index, on_done=advance, scheduler=scheduler, preflight=preflight)
    if task_index is not None:
        return None
    result = summarise(samples_table(runs), runs.spec, runs.out)
    return replace(result, made=done - already, already=already)


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
    return EnsembleResult(members.height, runs.height, ensemble_file, held, cover, ranges,
                          ruled_out(runs, matched, sigma, spec.cutoff))


def ruled_out(runs: pl.DataFrame, targets: list[Target], sigma: dict[str, float], cutoff: float) -> pl.DataFrame:
    """Per target, the samples it alone puts beyond ``cutoff`` (implausibility over that target),
    and of those, the ones that could not measure it (too few events in a short or small run):
    most first, so an ensemble that keeps nothing says why."""
    rows = []
    for t in targets:
        score = implausibility(runs, [t], sigma)
        column = f"target.{t.id}"
        values = runs[column].cast(pl.Float64).fill_null(np.nan).to_numpy() if column in runs.columns \
            else np.full(runs.height, np.nan)
        rows.append({"target": t.id, "ruled_out": int((score > cutoff).sum()),
                     "unmeasured": int((~np.isfinite(values)).sum())})
    return pl.DataFrame(rows, schema={"target": pl.Utf8, "ruled_out": pl.Int64, "unmeasured": pl.Int64}).sort(
        "ruled_out", descending=True)


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
