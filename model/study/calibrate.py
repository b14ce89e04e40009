"""``weishang calibrate``: fit the free mechanism parameters to docs/SPEC.md's targets with Optuna.

What is fitted is declared in ``model/study/calibration.toml``: stages of parameters with their search
ranges (never a target, never a figure the SPEC gives as an input). Each stage runs a TPE study
whose first trial is the scenario's current values; a trial runs the scenario on
``run.replicates`` seeds (common to all trials, :func:`weishang.model.study.sweep.replicate_seed`) and scores
the replicates' mean of every fitted target of ``model/study/targets.toml``:

    loss = sum over the stage's targets of huber(miss)  +  0.01 * sum of ((value - expected) / half-width) ** 2

where ``miss`` is the distance outside the tolerance band in half-widths (0 inside), and
``huber(x)`` is ``x ** 2`` up to 3 and grows linearly beyond: the first term brings targets into
their bands, the small second one prefers the centre. The linear tail keeps a target the
mechanisms cannot reach at this N (level-3 reach of 50,000 in a 200k-user population) from
dragging every other parameter after it, while a far miss still costs more than a near one. A stage fits the
targets it lists (``targets`` in ``calibration.toml``; all when it lists none); every trial
records all of them. The best values of a stage are fixed before the next. Targets named with
``--hold-out`` are left out of every loss, to check how the mechanisms reproduce patterns they
were not fitted to.

Everything is kept in ``OUT/study.db`` (an Optuna SQLite storage): running the command again
with the same ``OUT`` resumes where it stopped, and a stage with enough complete trials is not
run again. Outputs: ``OUT/calibrated.toml`` (a scenario file of the fitted values, loadable as
``weishang run OUT/calibrated.toml``), ``OUT/trials.parquet`` (every trial's parameters and
target values) and ``OUT/importances.parquet`` + ``importances.png`` (fANOVA importance of each
parameter for each target that the stage moves by at least 5% (std / mean over its trials):
which parameters move which targets; ``spread`` says how much the stage moved the target).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..config import (
    ConfigError,
    ScenarioConfig,
    config_field,
    load_config,
    toml_value,
    whole_number,
)
from ..recorder import RunDirectoryError
from .space import common_overrides
from .sweep import dask_client
from .validation import Target, load_targets

#: weight of the pull toward each target's centre, next to the band misses
CENTRE_WEIGHT = 0.01
#: misses beyond this many half-widths grow the loss linearly, not quadratically
HUBER_KNEE = 3.0
#: importances are reported for targets whose trials spread at least this much (std / |mean|)
MIN_SPREAD = 0.05
#: a stage's complete trials needed for its fANOVA importances
MIN_IMPORTANCE_TRIALS = 5


@dataclass
class Stage:
    """One block of parameters fitted together."""

    name: str
    why: str
    params: dict[str, tuple[float, float]]
    log: set[str] = field(default_factory=set)
    integer: set[str] = field(default_factory=set)
    remainder: str = ""
    targets: list[str] = field(default_factory=list)


@dataclass
class CalibrationSpec:
    stages: list[Stage]
    replicates: int
    rounds: int = 1
    #: the spec's scenario (``scenarios``; the command line's wins), None for the built-in default
    scenario: Path | None = None
    #: the spec's ``[set]``, laid under the command line's ``--set``
    common: dict[str, Any] = field(default_factory=dict)


def load_spec(path: str | Path | None = None) -> CalibrationSpec:
    """Read ``calibration.toml`` (the shipped one when ``path`` is None) and check its names
    (:func:`weishang.model.study.experiment.load_experiment`)."""
    from .experiment import load_experiment  # noqa: PLC0415

    if path is None:
        shipped = resources.files(__package__).joinpath("calibration.toml")
        experiment = load_experiment(Path(str(shipped)), "calibration",
                                     default=tomllib.loads(shipped.read_text(encoding="utf-8")))
    else:
        experiment = load_experiment(path, "calibration")
    stages = []
    for block in experiment.stages:
        remainder = block.settings.get("remainder", "")
        if remainder:
            try:
                config_field(remainder)
            except ConfigError as exc:
                raise ConfigError(f"calibration stage {block.name!r} remainder: {exc}") from None
        whole = set(block.settings.get("int", [])) | {key for key, box in block.uncertainties.items() if box.integer}
        stages.append(Stage(block.name, block.why,
                            {key: (box.low, box.high) for key, box in block.uncertainties.items()}, set(block.log),
                            whole, remainder, list(block.outcomes)))
    rounds = whole_number(experiment.settings, "rounds", 1, 1, 100, experiment.where("calibration"))
    return CalibrationSpec(stages=stages, replicates=experiment.replicates, rounds=rounds,
                           scenario=experiment.scenarios[0], common=experiment.common)


def study_name(stage: Stage, round_index: int) -> str:
    """The Optuna study of a stage in a round (round 0 keeps the plain name)."""
    return f"stage-{stage.name}" + (f"-round{round_index + 1}" if round_index else "")


def loss(values: dict[str, float], targets: list[Target]) -> float:
    """The fitting loss of a trial's target values (see the module docstring); a target that a
    trial could not measure counts as a miss of 10 half-widths."""
    total = 0.0
    for t in targets:
        value = values.get(t.id)
        if value is None or not math.isfinite(value):
            total += 100.0
            continue
        miss = t.miss(value)
        total += miss**2 if miss <= HUBER_KNEE else HUBER_KNEE * (2 * miss - HUBER_KNEE)
        lo, hi = t.low, t.high
        if lo is not None and hi is not None and hi > lo:
            total += CENTRE_WEIGHT * ((value - t.expected) / ((hi - lo) / 2)) ** 2
    return total


def _remainder(config: ScenarioConfig, stage: Stage, values: dict[str, Any]) -> dict[str, Any]:
    """Set the stage's remainder share so the channel shares still sum to 1."""
    if not stage.remainder:
        return {}
    section, key = stage.remainder.split(".")
    data = config.model_dump()
    shares = {k: v for k, v in data[section].items() if k.startswith("share_")}
    for name, value in values.items():
        s, k = name.split(".")
        if s == section and k in shares:
            shares[k] = value
    rest = 1.0 - sum(v for k, v in shares.items() if k != key)
    return {stage.remainder: round(rest, 12)}


# ------------------------------------------------------------------ trials (in worker processes)

_POPULATIONS: dict[str, Any] = {}


def _population(config: ScenarioConfig) -> Any:
    """The population of this config, built once per worker for each seed the trials run and
    shared by them (a population is read-only: no run changes it); keyed by everything it is
    built from (:func:`~weishang.model.population.population_key`)."""
    from ...kernels.backend import resolve_backend  # noqa: PLC0415
    from ..population import build_population, population_key  # noqa: PLC0415

    key = population_key(config)
    if key not in _POPULATIONS:
        _POPULATIONS[key] = build_population(config, resolve_backend(config.run.backend))
    return _POPULATIONS[key]


def evaluate(base: dict[str, Any], scenario: str | None, values: dict[str, Any], seeds: list[int],
             targets: list[Target]) -> dict[str, float]:
    """Run the scenario with ``values`` on each seed; the replicates' mean of every target."""
    from ..run import run_scenario  # noqa: PLC0415

    wanted = {t.id for t in targets}
    per_target: dict[str, list[float]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="weishang-calibrate-"))
    try:
        for seed in seeds:
            config = load_config(scenario, {**base, **values}, seed=seed)
            result = run_scenario(config, scratch / f"seed{seed}", preflight=False, population=_population(config))
            # every run measures itself against the targets (validation.parquet): read, not redo
            measured = pl.read_parquet(result.run_dir / "validation.parquet", columns=["target", "simulated"])
            for tid, value in zip(measured["target"], measured["simulated"]):
                if tid in wanted and value is not None and math.isfinite(value):
                    per_target.setdefault(tid, []).append(value)
            shutil.rmtree(result.run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {tid: float(np.mean(v)) for tid, v in per_target.items()}


def _exit_with_parent(parent: int) -> None:
    """Stop this worker when the calibration that started it is gone (killed, even by SIGKILL),
    so no orphan keeps writing trials into the study."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _work(storage: str, name: str, stage: Stage, base: dict[str, Any], scenario: str | None,
          fixed: dict[str, Any], seeds: list[int], fitted: list[str], n_trials: int, parent: int | None,
          sampler_seed: int = 0) -> None:
    """One worker's trials of a stage's study. ``sampler_seed``: its TPE sampler's seed (the
    scenario's seed plus the worker's index), so one worker's fit is reproducible and two workers
    do not propose the same values. ``parent``: the calibration's process, which a local worker
    outlives by nothing; None on a Dask worker, a process of its own cluster, which lets go of its
    populations when its trials end."""
    import optuna  # noqa: PLC0415

    if parent is not None:
        _exit_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    targets = load_targets()
    fit = [t for t in targets if t.id in fitted and (not stage.targets or t.id in stage.targets)]
    measured = [t for t in targets if t.kind == "target" and t.measure]
    # a loaded study gets an unseeded sampler unless given one: the same fit twice differed
    study = optuna.load_study(study_name=name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=10))
    base_config = load_config(scenario, {**base, **fixed})

    def objective(trial: optuna.Trial) -> float:
        values: dict[str, Any] = {}
        for name, (lo, hi) in stage.params.items():
            if name in stage.integer:
                values[name] = trial.suggest_int(name, int(lo), int(hi), log=name in stage.log)
            else:
                values[name] = trial.suggest_float(name, lo, hi, log=name in stage.log)
        values.update(_remainder(base_config, stage, values))
        if stage.remainder and values[stage.remainder] < 0:
            raise optuna.TrialPruned(f"{stage.remainder} would be negative")
        try:
            result = evaluate(base, scenario, {**fixed, **values}, seeds, measured)
        except ConfigError as exc:
            raise optuna.TrialPruned(str(exc)) from None
        for tid, value in result.items():
            trial.set_user_attr(tid, value)
        return loss(result, fit)

    try:
        study.optimize(objective, n_trials=n_trials)
    finally:
        if parent is None:
            _POPULATIONS.clear()


# ------------------------------------------------------------------ the driver


@dataclass
class CalibrationResult:
    scenario_file: Path
    fitted: dict[str, Any]
    losses: dict[str, float]
    trials_file: Path
    importances_file: Path | None


def _complete(study: Any) -> int:
    import optuna  # noqa: PLC0415

    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _fail_stale(study: Any) -> None:
    """Trials left RUNNING by a killed calibration are marked failed before resuming."""
    import optuna  # noqa: PLC0415

    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


@dataclass
class CalibrationPlan:
    """A checked calibration: what :func:`plan_calibration` read, before anything is created."""

    spec: CalibrationSpec
    out: Path
    scenario: str | None
    #: the spec's [set] under the command line's --set, as parsed values by "section.key"
    base: dict[str, Any]
    base_config: ScenarioConfig
    chosen: list[Stage]
    fitted: list[str]
    hold_out: list[str]


def plan_calibration(out: str | Path, scenario: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                     trials: int = 60, workers: int = 1, hold_out: list[str] | None = None,
                     stages: list[str] | None = None, spec_path: str | Path | None = None) -> CalibrationPlan:
    """Read and check everything a calibration needs, creating nothing: the spec, the targets held
    out, the stages chosen, the scenario (the command line's, else the spec's ``scenarios``) and
    the overrides (the spec's ``[set]``, then ``--set``).

    Raises:
        ConfigError: in one line, the first thing that is wrong.
    """
    spec = load_spec(spec_path)
    targets = load_targets()
    known = {t.id for t in targets if t.kind == "target" and t.measure}
    hold_out = list(hold_out or [])
    unknown = [h for h in hold_out if h not in known]
    if unknown:
        raise ConfigError(f"--hold-out {', '.join(unknown)}: not a measured target "
                          f"(allowed: {', '.join(sorted(known))})")
    for stage in spec.stages:
        strangers = [t for t in stage.targets if t not in known]
        if strangers:
            raise ConfigError(f"calibration stage {stage.name!r}: {', '.join(strangers)} is not a measured target")
    chosen = [s for s in spec.stages if stages is None or s.name in stages]
    if stages is not None and len(chosen) != len(stages):
        names = ", ".join(s.name for s in spec.stages)
        raise ConfigError(f"--stages {', '.join(stages)}: unknown stage (allowed: {names})")
    if trials < 1 or workers < 1:
        raise ConfigError("--trials and --workers must be at least 1")
    scenario = str(scenario) if scenario is not None else (str(spec.scenario) if spec.scenario else None)
    base = common_overrides({"set": spec.common}, overrides)
    base_config = load_config(scenario, base)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"cannot create calibration directory {str(out)!r}: a file is in the way")
    return CalibrationPlan(spec, out, scenario, base, base_config, chosen, sorted(known - set(hold_out)), hold_out)


def calibrate(out: str | Path, scenario: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
              trials: int = 60, workers: int = 1, replicates: int | None = None, hold_out: list[str] | None = None,
              stages: list[str] | None = None, spec_path: str | Path | None = None,
              on_progress: Callable[[str, int, int], None] | None = None,
              planned: CalibrationPlan | None = None, scheduler: str | None = None) -> CalibrationResult:
    """Fit the stages in order; see the module docstring. Returns what was written. ``planned``:
    what :func:`plan_calibration` returned for these arguments (the CLI checks before its bars).
    ``scheduler``: a Dask scheduler's address; each of the ``workers`` runs its share of a stage's
    trials there, against ``OUT/study.db``, which its workers must see (a shared file system, as a
    sweep's ``--out``)."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = planned or plan_calibration(out, scenario, overrides, trials, workers, hold_out, stages, spec_path)
    spec, out, scenario, base, base_config = plan.spec, plan.out, plan.scenario, plan.base, plan.base_config
    chosen, fitted, hold_out = plan.chosen, plan.fitted, plan.hold_out
    targets = load_targets()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create calibration directory {str(out)!r}: {exc.strerror}") from None
    from .sweep import replicate_seed  # noqa: PLC0415

    seeds = [replicate_seed(base_config.run.seed, k) for k in range(replicates or spec.replicates)]
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    fixed: dict[str, Any] = {}
    losses: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")
    studies: list[tuple[Stage, str]] = []
    # stages interact (merchants' survival changes traffic): later rounds refit every stage
    # from the previous round's best values
    for stage, name in [(stage, study_name(stage, r)) for r in range(spec.rounds) for stage in chosen]:
        studies.append((stage, name))
        sampler = optuna.samplers.TPESampler(seed=base_config.run.seed % 2**32, n_startup_trials=10)
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                    sampler=sampler)
        _fail_stale(study)
        if not study.trials:
            # the first trial is the scenario as it stands (clipped into the search ranges)
            start = load_config(scenario, {**base, **fixed}).model_dump()
            study.enqueue_trial({param: min(max(start[param.split(".")[0]][param.split(".")[1]], lo), hi)
                                 for param, (lo, hi) in stage.params.items()})
        remaining = trials - _complete(study)
        if remaining > 0:
            per_worker = [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]
            shares = [(i, n) for i, n in enumerate(per_worker) if n > 0]
            args = (storage, name, stage, base, scenario, fixed, seeds, fitted)

            def tell() -> None:
                if on_progress is not None:
                    on_progress(name, _complete(study), trials)

            if scheduler is not None:  # the same workers, on a Dask cluster (as a sweep's runs)
                with dask_client(scheduler) as client:
                    futures = [client.submit(_work, *args, n, None, (base_config.run.seed + i) % 2**32,
                                             key=f"weishang-{name}-worker-{i}", pure=False) for i, n in shares]
                    _follow(futures, tell, dask=True)
            else:
                with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    futures = [pool.submit(_work, *args, n, os.getpid(), (base_config.run.seed + i) % 2**32)
                               for i, n in shares]
                    _follow(futures, tell)
        if on_progress is not None:
            on_progress(name, _complete(study), trials)
        best = study.best_trial
        before = load_config(scenario, {**base, **fixed})
        fixed.update(best.params)
        fixed.update(_remainder(before, stage, best.params))
        losses[name] = float(best.value)
    scenario_file = write_scenario(out / "calibrated.toml", fixed, losses, hold_out,
                                   spec_name=str(spec_path) if spec_path else "model/study/calibration.toml",
                                   fitted_on=(scenario, base))
    trials_file = write_trials(out, storage, [name for _, name in studies])
    importances_file = write_importances(out, storage, studies, targets)
    return CalibrationResult(scenario_file, fixed, losses, trials_file, importances_file)


def _follow(futures: list[Any], tell: Callable[[], Any], dask: bool = False) -> None:
    """Wait for a stage's workers (local or Dask futures), telling the progress every 2 s and at
    once when they end; a worker's error is raised here."""
    if dask:
        from dask.distributed import wait as dask_wait  # noqa: PLC0415

        def pause() -> None:
            try:
                dask_wait(futures, timeout=2.0)
            except TimeoutError:  # Dask's wait raises when its timeout passes; the loop asks again
                pass
    else:
        def pause() -> None:
            wait(futures, timeout=2.0)
    while not all(f.done() for f in futures):
        tell()
        pause()
    for f in futures:
        f.result()


def write_scenario(path: Path, values: dict[str, Any], losses: dict[str, float], hold_out: list[str],
                   spec_name: str = "model/study/calibration.toml",
                   fitted_on: tuple[str | None, dict[str, Any]] = (None, {})) -> Path:
    """The fitted values as a scenario file (sections of keys), written atomically. ``fitted_on``:
    the scenario and overrides the fit ran on, said in the header (the file holds the fitted
    values alone, laid on the built-in default)."""
    sections: dict[str, dict[str, Any]] = {}
    for name, value in sorted(values.items()):
        section, key = name.split(".")
        sections.setdefault(section, {})[key] = value
    lines = [f"# Written by `weishang calibrate`: the fitted free parameters ({spec_name}).",
             "# Best loss per stage: " + ", ".join(f"{k} {v:.4g}" for k, v in losses.items()),
             f"# Held out of the fit: {', '.join(hold_out) if hold_out else 'nothing'}",
             f"# Fitted on: {fitted_on[0] or 'the built-in default'}, with "
             + (", ".join(f"{k}={toml_value(v)}" for k, v in fitted_on[1].items()) or "no overrides")
             + " (this file holds the fitted values alone)", ""]
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            if isinstance(value, float):
                value = float(f"{value:.6g}")
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def write_trials(out: Path, storage: str, study_names: list[str]) -> Path:
    import optuna  # noqa: PLC0415
    import polars as pl  # noqa: PLC0415

    frames = []
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage)
        rows = [{"study": name, "trial": t.number, "state": t.state.name, "loss": t.value,
                 **{f"param.{k}": float(v) for k, v in t.params.items()},
                 **{f"target.{k}": float(v) for k, v in t.user_attrs.items()}} for t in study.trials]
        if rows:
            frames.append(pl.DataFrame(rows))
    path = out / "trials.parquet"
    tmp = out / ".trials.parquet.tmp"
    pl.concat(frames, how="diagonal").write_parquet(tmp)
    tmp.replace(path)
    return path


def write_importances(out: Path, storage: str, studies: list[tuple[Stage, str]],
                      targets: list[Target]) -> Path | None:
    """fANOVA importance of each stage parameter for each target (table and heat map), from
    each stage's last round."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import optuna  # noqa: PLC0415
    import polars as pl  # noqa: PLC0415

    rows = []
    last = {stage.name: (stage, name) for stage, name in studies}
    for stage, name in last.values():
        study = optuna.load_study(study_name=name, storage=storage)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < MIN_IMPORTANCE_TRIALS:
            continue
        for t in targets:
            if not all(t.id in trial.user_attrs for trial in complete):
                continue
            values = np.asarray([trial.user_attrs[t.id] for trial in complete])
            # importances are shares of the target's variance across the stage's trials; a target
            # the stage hardly moves would show its noise as importance, so it is left out
            spread = float(values.std() / abs(values.mean())) if values.mean() else float(values.std())
            if spread < MIN_SPREAD:
                continue
            importance = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=lambda trial, tid=t.id: trial.user_attrs[tid])
            rows += [{"stage": stage.name, "param": p, "target": t.id, "importance": float(v), "spread": spread}
                     for p, v in importance.items()]
    if not rows:
        return None
    table = pl.DataFrame(rows)
    path = out / "importances.parquet"
    tmp = out / ".importances.parquet.tmp"
    table.write_parquet(tmp)
    tmp.replace(path)
    wide = table.pivot(on="target", index="param", values="importance", aggregate_function="max").fill_null(0.0)
    params, names = wide["param"].to_list(), [c for c in wide.columns if c != "param"]
    grid = wide.select(names).to_numpy()
    fig, ax = plt.subplots(figsize=(0.38 * len(names) + 4, 0.32 * len(params) + 2))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(params)), params, fontsize=7)
    fig.colorbar(im, ax=ax, label="fANOVA importance")
    ax.set_title("which parameters move which targets")
    fig.tight_layout()
    fig.savefig(out / "importances.png", dpi=110)
    plt.close(fig)
    return path
