"""Sweeps: scenarios x a parameter grid x replicate seeds, each run addressable by index.

A sweep file (TOML; the shared spec model of :mod:`weishang.model.study.experiment`)::

    [sweep]
    name = "ban"                      # optional
    scenarios = ["baseline.toml", "no_inducement_ban.toml"]   # relative to the sweep file
    replicates = 3
    base_seed = 7
    outcomes = ["posts", "reach_l1"]  # optional: more runs.parquet columns (a target as target.ID)
    samples = 8                       # with [uncertainties]: Latin hypercube samples
    seed = 1                          # ... and their seed

    [set]                             # overrides applied to every run
    "population.n_users" = 20000

    [levers]                          # optional: every combination of these values
    "cascade.p_view_friend" = [0.2, 0.25]

    [uncertainties]                   # optional, instead of [levers]: [low, high] of each sampled
    "cascade.trust_stranger" = [0.05, 0.3]    # parameter (log-uniform when named in log = [...])

    [members]                         # optional, instead of [levers]: the members of a calibration
    file = "calibration/ensemble_members.parquet"   # ensemble (weishang calibrate --ensemble)
    count = 10                        # optional: that many, spread over the ensemble (default all)

Run ``i`` is (scenario, grid point, replicate) in that nesting order. Over an ensemble, the
points are its members (``runs.parquet`` has a ``member`` column), and ``weishang report``
treats them as draws of parameter uncertainty, apart from the replicates' seed uncertainty.
Replicate k's seed is derived from ``base_seed`` and k alone, so replicate k of every scenario
and grid point shares its random streams (common random numbers: paired differences are the
rule's effect).

Layout of ``OUT``::

    OUT/runs.parquet                                    one row per run: typed parameters, seed, status,
                                                        error, main outcomes, timing
    OUT/ticks/scenario=S/point=P/replicate=K/part-0.parquet        one dataset per table, Hive-partitioned:
    OUT/merchants/..., OUT/cascades/..., OUT/transactions/...      each reads as one table
    OUT/runs/scenario=S/point=P/replicate=K/            each run's manifest.json and validation.parquet
    OUT/status/run-000042.json                          each finished, failed or interrupted run's record

pandas, polars, DuckDB, ``pyarrow.dataset`` and Spark each read ``OUT/ticks`` (and the other
tables) as one table with ``scenario``, ``point`` and ``replicate`` columns. A run is written as
any run is, into its run directory, and once published its tables move into the datasets (one
rename each, so a reader sees a run's table whole or not at all); its manifest's ``tables`` says
where they went.

A run's identity is the digest of its resolved config (``config_digest`` in its manifest). A run
is complete when its run directory was published (an atomic rename, after every table and its
validation were written), its manifest carries this run's digest, and its tables hold the rows
the manifest counts; so a sweep that was killed resumes by skipping complete runs and redoing
damaged ones, and a sweep whose file changed refuses to resume over runs made with another
config. ``runs.parquet`` is rebuilt after every run, through a temporary file, from the runs' own
manifests (complete runs) and status records (failed and interrupted ones).

SIGTERM or Ctrl-C stops a sweep as it stops a run: the workers are told to stop, the runs in
flight stay hidden with status ``interrupted``, ``runs.parquet`` is written, and the command exits
143 or 130. Workers also stop by themselves when their parent is gone. A second sweep on the same
``--out`` refuses at once (a lock); array-job elements (``--task-index``) lock only their run.

On one GPU (``run.backend`` cupy, or auto on a machine with a device) N workers share the device.
Before anything starts, :func:`check_memory` counts the N largest pending runs together against
the host's memory and the device's free memory (:func:`weishang.model.preflight.check_workers`),
and refuses naming the most workers that fit. Workers are started with "spawn": each is a fresh
interpreter that makes its own CUDA context (a forked child of a process that had initialised
CUDA could not use the device), and the sweep's own process never initialises CUDA. After each
run a worker gives its CuPy memory pool's cached blocks back to the driver
(:func:`_release_device_memory`), so an idle worker holds only its context, and while it runs its
pool is capped at its even share of the device (:func:`device_share`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ...kernels import rng
from ..codes import Channel
from ..columns import column
from ..config import (
    ConfigError,
    config_digest,
    load_config,
)
from ..recorder import (
    DATASETS,
    OutputLock,
    RunDirectoryError,
    RunInterrupted,
    make_dirs,
    read_manifest,
    sigterm_raises,
    table_path,
    write_manifest,
)
from .space import latin_hypercube

#: the most runs a sweep may have (a grid's product is checked before anything is expanded)
MAX_RUNS = 100_000
#: seeds are 63-bit (run.seed's range)
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    index: int
    scenario: str
    scenario_file: str  # "" for the built-in default
    point: int
    params: dict[str, Any]
    replicate: int
    seed: int
    #: digest of the run's resolved config (:func:`weishang.model.config.config_digest`): its identity
    config_digest: str = ""
    #: its worker may reuse the population its previous run built from the same population config
    #: and seed (:func:`weishang.model.population.population_key`), as an ensemble's samples do
    share_population: bool = False
    #: its tables go into the sweep's datasets; False keeps only its manifest and validation (an
    #: ensemble's hundreds of runs are read for their figures alone)
    keep_tables: bool = True

    def overrides(self, common: dict[str, Any]) -> dict[str, Any]:
        """The run's config values by "section.key": the sweep's ``[set]``, then its point's."""
        return {**common, **self.params}

    def run_dir(self, out: Path) -> Path:
        return out / self.relative_dir

    @property
    def relative_dir(self) -> Path:
        """The run's folder inside the sweep's: what ``runs.parquet`` records, so a sweep can be
        moved or read from another working directory."""
        return Path("runs") / f"scenario={self.scenario}" / f"point={self.point}" / f"replicate={self.replicate}"


@dataclass(frozen=True)
class Sweep:
    name: str
    runs: tuple[RunSpec, ...]
    common: dict[str, Any]
    #: over an ensemble: the member (``member`` of ensemble.parquet) each point is; None otherwise
    members: tuple[int, ...] | None = None
    #: the spec's outcomes: extra ``runs.parquet`` columns (a target as ``target.ID``)
    outcomes: tuple[str, ...] = ()


def replicate_seed(base_seed: int, replicate: int) -> int:
    """Seed of replicate k: a hash of (base seed, k), the same for every scenario and point."""
    return rng.stream_key(base_seed, "sweep.replicate", replicate) >> 2  # fits run.seed's range


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read and check a sweep file (:func:`weishang.model.study.experiment.load_experiment`);
    every run's config is validated now, before anything runs.

    ``overrides``: ``"section.key=value"`` strings laid over the file's ``[set]`` (the CLI's
    ``--set``, e.g. to shrink a sweep for a trial without writing another file).
    """
    from .experiment import load_experiment  # noqa: PLC0415

    spec = load_experiment(path, "sweep", overrides)
    sampled = bool(spec.uncertainties) or "uncertainties" in spec.spelled
    over_members = bool(spec.members) or "members" in spec.spelled
    if sampled and over_members:
        raise ConfigError(f"sweep spec: use one of [{spec.where('uncertainties')}] and [{spec.where('members')}] "
                          f"(each gives the points' parameter values)")
    if spec.levers and over_members:
        # the report pools the members as draws of parameter uncertainty: lever values would be pooled too
        raise ConfigError(f"sweep spec: [{spec.where('levers')}] over [{spec.where('members')}] would pool the lever's "
                          f"values with the members; give each lever value its own scenario file")
    both = sorted(set(spec.levers) & set(spec.uncertainties))
    if both:
        raise ConfigError(f"sweep spec: {both[0]!r} is both a lever and an uncertainty")
    scenarios, replicates, common = spec.scenarios, spec.replicates, spec.common
    n_levers = math.prod(len(values) for values in spec.levers.values())
    n_design = spec.settings.get("samples") if sampled and isinstance(spec.settings.get("samples"), int) else 1
    if n_levers * n_design * len(scenarios) * replicates > MAX_RUNS:  # counted before anything is expanded
        raise ConfigError(f"the sweep has {n_levers * n_design * len(scenarios) * replicates:,} runs ({n_levers:,} "
                          f"lever points x {n_design:,} samples x {len(scenarios)} scenarios x {replicates} "
                          f"replicates); at most {MAX_RUNS:,}: split it")
    lever_points = [dict(zip(spec.levers, combo)) for combo in itertools.product(*spec.levers.values())] or [{}]
    members = None
    if sampled:
        design = _sampled_points(spec)
    elif over_members:
        design, members = ensemble_points(spec.members, spec.path.parent, spec.where("members"))
        if len(design) * len(scenarios) * replicates > MAX_RUNS:
            raise ConfigError(f"the sweep has {len(design) * len(scenarios) * replicates:,} runs; at most {MAX_RUNS:,}")
    else:
        design = [{}]
        for key in ("log", "samples", "seed"):  # the Latin hypercube's settings, with nothing to draw
            if getattr(spec, key, None) or spec.settings.get(key) is not None:
                raise ConfigError(f"sweep.{key}: draws [uncertainties], and the sweep has none")
    # every lever point with every sample (EMA's policies x scenarios): levers outer, samples inner
    points = [{**lever, **drawn} for lever in lever_points for drawn in design]
    # a run's seed derives from sweep.base_seed and its replicate (common random numbers across
    # scenarios and points): a seed given per point or for every run would be silently replaced
    seeded = [place for place, keys in (("[set] or --set", common), ("the points", points[0] if points else {}))
              if "run.seed" in keys]
    if seeded:
        raise ConfigError(f"run.seed in {seeded[0]}: a sweep derives each run's seed from sweep.base_seed and its "
                          f"replicate; set sweep.base_seed, or sweep.replicates for more seeds")
    sweep = build_sweep(spec.name, list(scenarios), points, replicates, spec.base_seed, common, spec.outcomes)
    return sweep if members is None else replace(sweep, members=tuple(members))


def _sampled_points(spec: Any) -> list[dict[str, Any]]:
    """The points of a sweep's ``[uncertainties]``: ``samples`` Latin hypercube draws (seeded by
    ``seed``), log-uniform for the keys in ``log``."""
    old = spec.where("uncertainties") == "samples"  # an earlier release's [samples] n = ..., seed = ...
    where_n, where_seed = ("samples.n", "samples.seed") if old else ("sweep.samples", "sweep.seed")
    n, seed = spec.settings.get("samples"), spec.settings.get("seed", 0)
    if n is None:
        raise ConfigError(f"{where_n}: how many Latin hypercube samples to draw from [{spec.where('uncertainties')}] "
                          f"is required (e.g. {'n' if old else 'samples'} = 20)")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise ConfigError(f"{where_n} = {n!r}: must be an integer from 1 to 100000")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{where_seed} = {seed!r}: must be an integer from 0 to 2**63 - 1")
    if not spec.uncertainties:
        raise ConfigError(f"{spec.where('uncertainties')}: name at least one parameter with its [low, high] range")
    return latin_hypercube(spec.uncertainties, n, seed, spec.log)


def ensemble_points(section: dict[str, Any], base: Path, where: str = "members"
                    ) -> tuple[list[dict[str, float]], list[int]]:
    """The points of a ``[members]`` section (``file``: an ensemble.parquet, ``count``: how many of
    its members): each chosen member's parameters, and its member id. ``where``: how the file
    spells the section (an earlier release's ``[ensemble]``, whose ``members`` is the count)."""
    import numpy as np  # noqa: PLC0415
    import polars as pl  # noqa: PLC0415

    count = "members" if where == "ensemble" else "count"
    unknown = set(section) - {"file", "count"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (allowed: file, {count})")
    name = section.get("file")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.file: the ensemble.parquet of `weishang calibrate --ensemble` is required")
    file = (base / name).resolve()
    try:
        table = pl.read_parquet(file)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"{where}.file {str(file)!r}: cannot be read ({type(exc).__name__}); "
                          f"write it with weishang calibrate --ensemble") from None
    params = [c for c in table.columns if c.startswith("param.")]
    if "member" not in table.columns or not params:
        raise ConfigError(f"{where}.file {str(file)!r}: not an ensemble (needs member and param.* columns)")
    if table.height == 0:
        raise ConfigError(f"{where}.file {str(file)!r}: has no members (no parameter set met the targets)")
    # issue 32: repeated ids merged members in the report (6 runs averaged as 4), and a null or text
    # cell was a traceback
    if not table.schema["member"].is_integer() or table["member"].null_count() or table["member"].n_unique() < table.height:
        raise ConfigError(f"{where}.file {str(file)!r}: member ids must be whole numbers, each once")
    for c in params:
        if not table.schema[c].is_numeric() or table[c].null_count() or not table[c].cast(pl.Float64).is_finite().all():
            raise ConfigError(f"{where}.file {str(file)!r}: {c} must be finite numbers in every row")
    table = table.sort("member")
    wanted = section.get("count", table.height)
    if not isinstance(wanted, int) or isinstance(wanted, bool) or not 1 <= wanted <= table.height:
        raise ConfigError(f"{where}.{count} = {wanted!r}: a whole number from 1 to {table.height} (the ensemble's "
                          f"members)")
    # spread over the ensemble (members are in sample order, which is random): evenly spaced rows
    rows = np.unique(np.round(np.linspace(0, table.height - 1, wanted)).astype(int))
    chosen = table[rows.tolist()]
    points = [{c.removeprefix("param."): float(r[c]) for c in params} for r in chosen.iter_rows(named=True)]
    return points, [int(m) for m in chosen["member"]]


def build_sweep(name: str, scenario_files: list[Path | None], points: list[dict[str, Any]],
                replicates: int | list[int], base_seed: int, common: dict[str, Any], outcomes: tuple[str, ...] = (),
                **options: bool) -> Sweep:
    """The runs of scenarios x points x replicates, every config validated now (None: the
    built-in default scenario). Replicate k's seed is the same in every scenario and point.
    ``replicates``: per point when a list (an ensemble's centre has several, its samples one);
    ``options``: :class:`RunSpec`'s ``share_population`` and ``keep_tables``."""
    per_point = replicates if isinstance(replicates, list) else [replicates] * len(points)
    runs = []
    names = []
    for file in scenario_files:
        scenario = load_config(file).run.name  # validates the file
        if scenario in names:
            raise ConfigError(f"sweep.scenarios: two scenarios are named {scenario!r}; give each its own run.name")
        names.append(scenario)
        for p, params in enumerate(points):
            config = load_config(file, {**common, **params})  # every run's config is valid, or nothing starts
            for k in range(per_point[p]):
                seed = replicate_seed(base_seed, k)
                digest = config_digest(config.model_copy(update={"run": config.run.model_copy(update={"seed": seed})}))
                runs.append(RunSpec(len(runs), scenario, str(file) if file else "", p, params, k, seed, digest,
                                    **options))
    return Sweep(name=name, runs=tuple(runs), common=common, outcomes=outcomes)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def _record(spec: RunSpec, out: Path, **fields: Any) -> dict[str, Any]:
    return {"run_id": spec.index, "scenario": spec.scenario, "point": spec.point, "replicate": spec.replicate,
            "seed": spec.seed, "params": json.dumps(spec.params, sort_keys=True), "run_dir": spec.relative_dir.as_posix(),
            "config_digest": spec.config_digest, "error": None, "seconds": None, **fields}


def claim_run(spec: RunSpec, out: Path) -> OutputLock:
    """Hold run ``spec`` of the sweep at ``out`` for this process: a ``flock`` on
    ``OUT/status/.run-NNNNNN.lock``, which the kernel drops when the process ends, however it ends.
    Two processes making one run (two array-job elements given the same ``--task-index``, or an
    element beside a whole sweep) would each delete the other's partial directory as stale; the
    second is refused instead, before it touches anything of the run.

    Raises:
        RunDirectoryError: another process holds the run, or ``OUT/status`` cannot be made.
    """
    status_dir = out / "status"
    make_dirs(status_dir)
    return OutputLock(status_dir / f"run-{spec.index:06d}",
                      busy=f"run {spec.index} of {str(out)!r} is being made by another process (an array-job "
                           f"element with the same --task-index?); wait for it to finish")


def execute(spec: RunSpec, common: dict[str, Any], out: str, claimed: bool = False) -> dict[str, Any]:
    """Run one sweep run (in any process); returns its status record. A run's own error is
    recorded (the sweep carries on); an interruption is recorded and raised (the sweep stops).
    ``claimed``: the caller holds the run's lock (:func:`claim_run`); otherwise it is taken here.

    Another process making the same run (an array element) is recorded as this run's failure
    (``--resume`` makes it again if that process did not finish it)."""
    try:
        lock = None if claimed else claim_run(spec, Path(out))
    except RunDirectoryError as exc:  # an array element is making it: recorded, and the sweep carries on
        record = _record(spec, Path(out), status="failed", error=_one_line(str(exc)))
        _write_json(Path(out) / "status" / f"run-{spec.index:06d}.json", record)  # its status until it finishes
        return record
    try:
        return _execute(spec, common, Path(out))
    finally:
        if lock is not None:
            lock.release()


def _execute(spec: RunSpec, common: dict[str, Any], out_path: Path) -> dict[str, Any]:
    from ..run import run_scenario  # noqa: PLC0415  (imported in the worker)

    started = time.perf_counter()
    run_dir = spec.run_dir(out_path)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    status_dir = out_path / "status"
    status_dir.mkdir(parents=True, exist_ok=True)
    (status_dir / f"run-{spec.index:06d}.started").touch()  # lets the pool tell in-flight runs apart
    # partials of this run can only be a killed attempt's: whoever makes the run holds its lock
    for stale in run_dir.parent.glob(f".{run_dir.name}.partial-*"):  # left by a killed attempt
        shutil.rmtree(stale, ignore_errors=True)
    if run_state(spec, out_path) != "complete":
        _remove_run(spec, out_path)  # a damaged or half-moved earlier attempt: made again
    try:
        config = load_config(spec.scenario_file or None, spec.overrides(common), seed=spec.seed)
        if spec.share_population:
            _run_on_shared_population(config, run_dir)
        else:
            run_scenario(config, run_dir)
        _move_into_datasets(spec, out_path)
        record = _record(spec, out_path, status="complete")
    except (KeyboardInterrupt, RunInterrupted) as exc:
        record = _record(spec, out_path, status="interrupted", error=type(exc).__name__,
                         seconds=time.perf_counter() - started)
        _write_json(status_dir / f"run-{spec.index:06d}.json", record)
        if _IN_POOL_WORKER:
            os._exit(143)  # a stopped worker takes no further run the pool had queued for it
        raise
    except Exception as exc:  # a failed run is recorded and the sweep carries on
        record = _record(spec, out_path, status="failed", error=_one_line(f"{type(exc).__name__}: {exc}"))
    finally:
        _release_device_memory()
    record["seconds"] = time.perf_counter() - started
    _write_json(status_dir / f"run-{spec.index:06d}.json", record)
    return record


#: the population this process built last, as (its key, the population); the lock makes the
#: check, the build and the read one step for threads that share the process (a Dask worker's)
_LAST_POPULATION: list[tuple[str, Any]] = []
_POPULATION_LOCK = threading.Lock()


def _run_on_shared_population(config: Any, run_dir: Path) -> None:
    """Run ``config`` on the population this process built for its previous run when it has the
    same :func:`~weishang.model.population.population_key` (a population is read-only: no run
    changes it), built otherwise. The run's own checks, its memory preflight included, come first,
    so a run that does not fit is refused before anything is built; a population of another key
    is let go before them, so a process never holds two. A run on the held population skips the
    preflight, which would count the population in hand twice: the sweep's preflight counted it.
    """
    from ..population import build_population, population_key  # noqa: PLC0415
    from ..run import prepare_run, run_scenario  # noqa: PLC0415

    key = population_key(config)
    with _POPULATION_LOCK:
        if _LAST_POPULATION and _LAST_POPULATION[0][0] != key:
            _LAST_POPULATION.clear()
        held = _LAST_POPULATION[0][1] if _LAST_POPULATION else None
        prepared = prepare_run(config, run_dir, preflight=held is None)
        try:
            if held is None:
                held = build_population(prepared.config, prepared.backend, graph=prepared.graph)
                _LAST_POPULATION.append((key, held))
        except BaseException:
            prepared.lock.release()
            raise
    run_scenario(config, run_dir, population=held, prepared=prepared)


def release_shared_population() -> None:
    """Let go of the population held for runs that share one (when a sweep ends in this process)."""
    with _POPULATION_LOCK:
        _LAST_POPULATION.clear()


def _release_device_memory() -> None:
    """Give the memory CuPy's pools cached during a run back to the driver.

    CuPy's default pool keeps every block it has freed for reuse, so a worker would go on holding
    its run's peak of device memory: between runs, after its last run, and against the next run's
    own preflight, which reads the device's free memory. The run's model is collected first (its
    Mesa agents hold reference cycles, so its device arrays outlive the run until the collector
    runs). A process whose runs never imported CuPy has nothing to release and imports nothing.
    """
    cupy = sys.modules.get("cupy")  # imported by the run's backend (kernels/backend.py), never here
    if cupy is None:
        return
    import gc  # noqa: PLC0415

    gc.collect()
    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()




def partition(spec: RunSpec) -> str:
    """The run's Hive partition: ``scenario=S/point=P/replicate=K``."""
    return f"scenario={spec.scenario}/point={spec.point}/replicate={spec.replicate}"


def _move_into_datasets(spec: RunSpec, out: Path) -> None:
    """Move a published run's tables into the sweep's datasets and record where they went."""
    run_dir = spec.run_dir(out)
    manifest = read_manifest(run_dir)
    moved = {}
    for table in DATASETS:
        source = table_path(run_dir, manifest, table)
        if not source.exists():
            continue  # the transaction log is opt-in
        if not spec.keep_tables:  # the transaction log is a folder of parts, every other table a file
            if source.is_dir():
                shutil.rmtree(source)
            else:
                source.unlink()
            continue
        folder = out / table / partition(spec)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder if table == "transactions" else folder / "part-0.parquet"
        if table == "transactions":
            folder.rmdir()  # the run's folder of parts takes its place
        os.replace(source, target)
        moved[table] = os.path.relpath(target, run_dir)
    dropped = {} if spec.keep_tables else {"dropped": sorted(set(manifest.get("rows", {})) & set(DATASETS))}
    write_manifest(run_dir, {**manifest, "tables": moved, **dropped})


def _remove_run(spec: RunSpec, out: Path) -> None:
    shutil.rmtree(spec.run_dir(out), ignore_errors=True)
    for table in DATASETS:
        shutil.rmtree(out / table / partition(spec), ignore_errors=True)


def _one_line(text: str) -> str:
    return text.splitlines()[0][:500] if text else ""


def check_tables_kept(directory: Path) -> None:
    """Refuse a sweep folder whose runs kept no tables (a calibration ensemble's: the report and the
    validation read tables), in one line that says where its figures are.

    Raises:
        ConfigError: the runs' manifests say their tables were dropped (:attr:`RunSpec.keep_tables`).
    """
    for path in (directory / "runs").glob("scenario=*/point=*/replicate=*/manifest.json"):
        try:
            dropped = "dropped" in json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if dropped:
            raise ConfigError(f"{str(directory)!r} holds a calibration ensemble's runs, which keep only their "
                              f"figures, no tables: read its samples.parquet, ensemble.parquet and held_out.parquet; "
                              f"sweep over its members ([members]) to report or validate them")
        return


def run_state(spec: RunSpec, out: Path) -> str:
    """"absent", "complete", "changed" (published from another config: the sweep file was
    edited) or "damaged" (published, but a table is missing, truncated or unreadable)."""
    run_dir = spec.run_dir(out)
    if not (run_dir / "manifest.json").is_file():
        return "absent"
    try:
        manifest = read_manifest(run_dir)
    except RunDirectoryError:
        return "damaged"
    if manifest.get("status") != "complete":
        return "damaged"
    if manifest.get("config_digest") != spec.config_digest:
        return "changed"
    if "tables" not in manifest:
        return "damaged"  # published, but stopped before its tables reached the datasets
    for table, rows in manifest.get("rows", {}).items():
        if table in manifest.get("dropped", ()):
            continue  # a run whose tables were not kept (RunSpec.keep_tables)
        path = table_path(run_dir, manifest, table)
        try:
            if table == "transactions":
                found = sum(pq.ParquetFile(p).metadata.num_rows for p in path.glob("*.parquet"))
            else:
                found = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):
            return "damaged"
        if found != rows:
            return "damaged"
    return "complete" if (run_dir / "validation.parquet").is_file() else "damaged"


def is_complete(spec: RunSpec, out: Path) -> bool:
    return run_state(spec, out) == "complete"


def check_task_index(sweep: Sweep, task_index: int | None, what: str = "sweep") -> None:
    """Refuse a task index outside the runs (``what``: the study, as the message names it)."""
    if task_index is not None and not 0 <= task_index < len(sweep.runs):
        raise ConfigError(f"--task-index {task_index}: the {what} has runs 0 to {len(sweep.runs) - 1}")


def check_unchanged(sweep: Sweep, out: Path) -> None:
    """Refuse to resume over runs made from another config (the sweep file changed since)."""
    changed = [spec for spec in sweep.runs if run_state(spec, out) == "changed"]
    if changed:
        named = ", ".join(f"{s.index} ({s.scenario}, point {s.point}, replicate {s.replicate})" for s in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ConfigError(f"{str(out)!r} holds runs made from another version of the sweep file or other --set "
                          f"values: run {named}{more}; resume with the file and --set they were made with, or choose "
                          f"another --out")


def _status_records(out: Path) -> dict[int, dict[str, Any]]:
    records = {}
    status_dir = out / "status"
    for f in sorted(status_dir.glob("run-*.json")) if status_dir.is_dir() else ():
        try:
            rec = json.loads(f.read_text())
            records[int(rec["run_id"])] = rec
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged record: the run counts as pending and is redone
    return records


def write_runs_table(sweep: Sweep, out: Path) -> Path:
    """Rebuild ``runs.parquet``, atomically: one row per run, typed columns for every parameter.
    A complete run's row comes from its own manifest (its seed and config, its GMV); the others'
    from their status records, or ``pending``."""
    from .experiment import outcome_column, read_outcomes  # noqa: PLC0415

    records = _status_records(out)
    # the spec's outcomes, each a column by its own name (a target's is target.ID), but for those
    # the standing columns already hold under that name
    extra = tuple(name for name in sweep.outcomes if outcome_column(name) not in OUTCOME_COLUMNS)
    rows = []
    for spec in sweep.runs:
        state = run_state(spec, out)
        row = {"run_id": spec.index, "scenario": spec.scenario, "point": spec.point, "replicate": spec.replicate}
        if state in ("complete", "changed"):
            manifest = read_manifest(spec.run_dir(out))
            config = manifest["config"]
            summary = manifest["summary"]
            row.update(seed=manifest["seed"], **{f"param.{k}": _lookup(config, k) for k in spec.params},
                       status=state, error=None, seconds=records.get(spec.index, {}).get("seconds"),
                       **{name: summary.get(key) for name, key in OUTCOME_COLUMNS.items()},
                       **{outcome_column(name): value for name, value in
                          read_outcomes(spec.run_dir(out), manifest, extra).items()})
        else:
            rec = records.get(spec.index, {})
            status = rec.get("status") if rec.get("status") in ("failed", "interrupted") else "pending"
            row.update(seed=spec.seed, **{f"param.{k}": v for k, v in spec.params.items()}, status=status,
                       error=rec.get("error") if status != "pending" else None, seconds=rec.get("seconds"),
                       **{name: None for name in OUTCOME_COLUMNS}, **{outcome_column(name): None for name in extra})
        if sweep.members is not None:
            row["member"] = sweep.members[spec.point]
        row["run_dir"] = spec.relative_dir.as_posix()  # relative to the sweep: the folder may move
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    # typed even when every value is null so far (no run failed, none finished)
    types = {"error": pa.string(), "seconds": pa.float64(),
             **{name: _ARROW[column("summary", key).dtype] for name, key in OUTCOME_COLUMNS.items()},
             **{outcome_column(name): pa.float64() for name in extra}}
    for name, kind in types.items():
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    target = out / "runs.parquet"
    tmp = out / f".runs.parquet.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


#: runs.parquet's outcome columns: name -> the run summary's figure (see weishang.model.columns)
OUTCOME_COLUMNS = {"gmv": "gmv_cny", **{f"gmv_{label}": f"gmv_{label}_cny" for label in Channel.labels()},
                   "orders": "orders", "official_share_of_value": "official_share_of_value",
                   "active_merchants_at_end": "active_merchants_at_end", "exits": "exits", "removed": "removed",
                   "profit": "merchant_profit_cny", "report_response_minutes": "report_response_minutes",
                   "compliant_survival_per_year": "compliant_survival_per_year",
                   "fraud_intercepted": "fraud_intercepted", "fraud_missed": "fraud_missed",
                   "false_positives": "false_positives"}
_ARROW = {"int64": pa.int64(), "float64": pa.float64()}


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    section, key = dotted.split(".")
    return config[section][key]


def _probe_tcp(address: str) -> None:
    """Raise OSError at once when a ``tcp://host:port`` address refuses connections (Dask's
    client retries a refused address until its timeout: ten silent seconds before the same error).
    Other schemes are left to Dask."""
    import socket  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(address)
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()


def dask_client(scheduler: str) -> Any:
    """A client of the Dask scheduler at ``scheduler`` (``tcp://host:8786``), for a study's runs.

    Raises:
        ConfigError: Dask is not installed, or nothing answers at the address (at once for a
            refused ``tcp://`` address, where Dask would retry for ten silent seconds).
    """
    try:
        from dask.distributed import Client  # noqa: PLC0415
    except ImportError:
        raise ConfigError("--scheduler needs Dask: pip install 'weishang[dist]'") from None
    try:
        _probe_tcp(scheduler)
        return Client(scheduler, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--scheduler {scheduler!r}: cannot reach a Dask scheduler there "
                          f"({_one_line(str(exc)) or type(exc).__name__})") from None


def _run_on_dask(todo: list[RunSpec], sweep: Sweep, out: Path, scheduler: str,
                 on_done: Callable[[dict[str, Any]], None] | None, claimed: bool = False) -> list[dict[str, Any]]:
    """Run ``todo`` on a Dask distributed cluster whose workers see ``out`` (a shared file system)."""
    client = dask_client(scheduler)
    from dask.distributed import as_completed as dask_completed  # noqa: PLC0415

    done = []
    with client:
        # pure=False: each run executes once; keys name the run so the dashboard reads well
        # a Dask worker lives on after the sweep (and may run threads): it builds each run's own
        # population, never holding one between runs
        futures = [client.submit(execute, replace(spec, share_population=False), sweep.common, str(out), claimed,
                                 key=f"weishang-run-{spec.index}", pure=False)
                   for spec in todo]
        try:
            for future in dask_completed(futures):
                done.append(future.result())
                write_runs_table(sweep, out)
                if on_done:
                    on_done(done[-1])
        except BaseException:
            client.cancel(futures)
            raise
    return done


#: times a run may be in flight in a worker that died before it is recorded as failed
MAX_ATTEMPTS = 2
#: seconds the workers get to stop their runs (hidden, interrupted) before they are killed
STOP_GRACE_SECONDS = 5.0


#: how pool workers start: a fresh interpreter each, never a fork. CUDA cannot be used in a
#: forked child of a process that had initialised it, and a fresh worker inherits no state
WORKER_START_METHOD = "spawn"


def check_memory(sweep: Sweep, out: Path, workers: int, task_index: int | None = None) -> int | None:
    """Refuse, before anything runs, a sweep whose runs at once would not fit in memory together;
    returns the device's free bytes when the runs use CuPy (None otherwise), for :func:`run_sweep`.

    The runs still to do (one with ``task_index``) and at most ``workers`` of them at once: their
    host memory, and on a GPU their device memory against the device's free memory read in a
    spawned child (:func:`weishang.model.preflight.probe_device`). A sweep sent to a Dask cluster
    is not checked here: each run's own preflight runs on the worker that takes it.

    Raises:
        PreflightError: they do not fit (the message names the most workers that do).
        BackendUnavailable: a run asks for ``cupy`` on a machine without CuPy or a device.
    """
    from ..preflight import check_workers, probe_device  # noqa: PLC0415

    todo = [sweep.runs[task_index]] if task_index is not None else [s for s in sweep.runs if not is_complete(s, out)]
    configs = {}  # the replicates of a point share its config, bar the seed the estimate ignores
    for spec in todo:
        key = (spec.scenario_file, spec.point)
        if key not in configs:
            configs[key] = load_config(spec.scenario_file or None, spec.overrides(sweep.common))
    resolved = {}  # run.backend as asked -> (the backend it resolves to, the device's free bytes)
    for config in configs.values():
        if config.run.backend not in resolved:
            resolved[config.run.backend] = probe_device(config.run.backend)
    runs = []
    for spec in todo:
        config = configs[(spec.scenario_file, spec.point)]
        runs.append((config, resolved[config.run.backend][0]))
    free = next((free for name, free in resolved.values() if name == "cupy"), None)
    check_workers(runs, workers, free)
    return free


def _may_use_device(spec: RunSpec, sweep: Sweep) -> bool:
    """Whether the run asks for CuPy (``cupy``, or ``auto`` on a machine where the preflight found
    a device)."""
    backend = load_config(spec.scenario_file or None, spec.overrides(sweep.common)).run.backend
    return backend in ("cupy", "auto")


def device_share(free_device_bytes: int, workers: int) -> int:
    """Each CuPy worker's pool limit: its even share of the device's free memory, less its context.

    Why a limit: CuPy's pool keeps the blocks a run frees, and frees them only when an allocation
    of its own process fails, never for another process; uncapped, a 1M-user run's pool kept
    13,943 MiB on an H200, where 7,774 MiB sufficed under a cap. Under the limit a worker's pool
    gives its cached blocks back before it goes over, so no worker starves its neighbours; the
    preflight has checked that the share holds each run's estimate.
    """
    from ..preflight import DEVICE_CONTEXT_BYTES  # noqa: PLC0415

    return free_device_bytes // workers - DEVICE_CONTEXT_BYTES


#: set in pool workers (see :func:`_worker_start`)
_IN_POOL_WORKER = False


def _worker_start(parent: int, device_limit: int | None = None) -> None:
    """In each pool worker: Ctrl-C is the parent's to handle (it stops the workers), and a worker
    whose parent is gone stops its run as SIGTERM would, then exits: no orphan goes on running.
    ``device_limit``: bytes the worker's CuPy pool may hold (:func:`device_share`), set before the
    spawned worker imports CuPy; a ``CUPY_GPU_MEMORY_LIMIT`` the user set wins."""
    global _IN_POOL_WORKER
    _IN_POOL_WORKER = True
    if device_limit is not None:
        os.environ.setdefault("CUPY_GPU_MEMORY_LIMIT", str(device_limit))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_SECONDS)
        os._exit(143)

    threading.Thread(target=watch, daemon=True).start()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started; SIGTERM every worker (its run stops, hidden, interrupted);
    kill what is still there after the grace period."""
    processes = list(getattr(pool, "_processes", {}).values())  # CPython's executor keeps its workers here
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0.0))
        if process.is_alive():
            process.kill()
            process.join()


def _mark_interrupted(specs: list[RunSpec], out: Path) -> None:
    """Runs that had started but have no record from this attempt (their worker was killed
    before it could write one) are recorded as interrupted."""
    for spec in specs:
        started = out / "status" / f"run-{spec.index:06d}.started"
        record = out / "status" / f"run-{spec.index:06d}.json"
        fresh = record.is_file() and started.is_file() and record.stat().st_mtime >= started.stat().st_mtime
        if started.is_file() and not fresh and not is_complete(spec, out):
            _write_json(record, _record(spec, out, status="interrupted", error="stopped with the sweep"))


def _run_on_pool(todo: list[RunSpec], sweep: Sweep, out: Path, workers: int,
                 on_done: Callable[[dict[str, Any]], None] | None,
                 device_limit: int | None = None) -> list[dict[str, Any]]:
    """Run ``todo`` on a local process pool, surviving dead workers, stopping on SIGTERM or Ctrl-C.

    When a worker dies (killed, out of memory), the pool breaks and every unfinished run comes
    back. Runs that had started (their ``.started`` marker exists) count an attempt; the pool is
    rebuilt and the unfinished runs go again. A run caught in ``MAX_ATTEMPTS`` dead workers is
    recorded as failed, so no run is lost silently and a run that kills its worker cannot stall
    the sweep. An interruption of this process stops the workers (:func:`_stop_pool`) and is
    raised once the runs in flight are recorded as interrupted.
    """
    import multiprocessing as mp  # noqa: PLC0415

    done: list[dict[str, Any]] = []
    attempts: dict[int, int] = {}
    pending = list(todo)
    while pending:
        for spec in pending:  # markers from earlier rounds (or an earlier process) do not count
            (out / "status" / f"run-{spec.index:06d}.started").unlink(missing_ok=True)
        finished: set[int] = set()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(WORKER_START_METHOD),
                                   initializer=_worker_start, initargs=(os.getpid(), device_limit))
        try:
            futures = {pool.submit(execute, spec, sweep.common, str(out)): spec for spec in pending}
            for future in as_completed(futures):
                record = future.result()
                finished.add(record["run_id"])
                done.append(record)
                write_runs_table(sweep, out)
                if on_done:
                    on_done(record)
        except BrokenProcessPool:
            pass
        except BaseException:
            _stop_pool(pool)
            _mark_interrupted(pending, out)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        retry = []
        for spec in pending:
            if spec.index in finished or is_complete(spec, out):
                continue
            if (out / "status" / f"run-{spec.index:06d}.started").exists():
                attempts[spec.index] = attempts.get(spec.index, 0) + 1
            if attempts.get(spec.index, 0) >= MAX_ATTEMPTS:
                record = _record(spec, out, status="failed",
                                 error=f"worker process died {MAX_ATTEMPTS} times while running it")
                _write_json(out / "status" / f"run-{spec.index:06d}.json", record)
                done.append(record)
                if on_done:
                    on_done(record)
            else:
                retry.append(spec)
        pending = retry
        write_runs_table(sweep, out)
    return done


def run_sweep(sweep: Sweep, out: Path, workers: int = 1, task_index: int | None = None,
              on_done: Callable[[dict[str, Any]], None] | None = None,
              scheduler: str | None = None, preflight: bool = True,
              device_free_bytes: int | None = None, claimed: OutputLock | None = None) -> list[dict[str, Any]]:
    """Run the sweep's pending runs (or only run ``task_index``) on ``workers`` local processes,
    or on the Dask cluster at ``scheduler`` (an address such as ``tcp://host:8786``).
    ``preflight``: first check that ``workers`` runs fit in memory together (:func:`check_memory`);
    ``device_free_bytes``: what such a check already read (the CLI checks before its progress bar).
    ``claimed``: with ``task_index``, the run's lock the caller already holds (:func:`claim_run`;
    released here). CuPy workers each get an even share of the device (:func:`device_share`).

    Raises:
        ConfigError: the task index is out of range, or ``out`` holds runs made from another
            version of the sweep file (nothing is created or changed then).
        PreflightError, BackendUnavailable: see :func:`check_memory` (nothing created then).
        RunDirectoryError: another sweep holds ``out``, or another process the run ``task_index``.
        RunInterrupted, KeyboardInterrupt: SIGTERM or Ctrl-C; the runs in flight are recorded as
            interrupted and ``runs.parquet`` is written first.
    """
    check_task_index(sweep, task_index)
    todo = list(sweep.runs) if task_index is None else [sweep.runs[task_index]]
    check_unchanged(Sweep(sweep.name, tuple(todo), sweep.common), out)
    if preflight and scheduler is None:
        device_free_bytes = check_memory(sweep, out, workers, task_index)
    make_dirs(out)
    # array-job elements share the sweep directory on purpose; each locks only its own run
    if task_index is None:
        lock = OutputLock(out)
    else:
        lock = claimed or claim_run(sweep.runs[task_index], out)
    done: list[dict[str, Any]] = []
    try:
        with sigterm_raises():
            todo = [spec for spec in todo if not is_complete(spec, out)]
            if scheduler is not None:
                done = _run_on_dask(todo, sweep, out, scheduler, on_done, claimed=task_index is not None)
            elif workers <= 1 or len(todo) <= 1:
                for spec in todo:
                    done.append(execute(spec, sweep.common, str(out), claimed=task_index is not None))
                    write_runs_table(sweep, out)
                    if on_done:
                        on_done(done[-1])
            else:
                limit = None
                if device_free_bytes is not None:  # shared by the runs that may be on the device at once
                    on_device = min(workers, sum(1 for spec in todo if _may_use_device(spec, sweep)))
                    limit = device_share(device_free_bytes, on_device) if on_device else None
                done = _run_on_pool(todo, sweep, out, workers, on_done, limit)
    finally:
        release_shared_population()  # runs made in this process (one worker, or one run) held it
        write_runs_table(sweep, out)
        lock.release()
    return done
