"""Sweeps: scenarios x a parameter grid x replicate seeds, each run addressable by index.

A sweep file (TOML)::

    [sweep]
    name = "ban"                      # optional
    scenarios = ["baseline.toml", "no_inducement_ban.toml"]   # relative to the sweep file
    replicates = 3
    base_seed = 7

    [set]                             # overrides applied to every run
    "population.n_users" = 20000

    [grid]                            # optional: every combination of these values
    "cascade.p_view_friend" = [0.2, 0.25]

    [samples]                         # optional, instead of [grid]: Latin hypercube samples
    n = 8
    seed = 1
    "cascade.trust_stranger" = [0.05, 0.3]    # [low, high] of each sampled parameter

Run ``i`` is (scenario, grid point, replicate) in that nesting order. Replicate k's seed is
derived from ``base_seed`` and k alone, so replicate k of every scenario and grid point shares
its random streams (common random numbers: paired differences are the rule's effect).

Layout of ``OUT``::

    OUT/runs.parquet                               one row per run: parameters, seed, status, error, timings
    OUT/runs/scenario=S/point=P/replicate=K/       a run directory (ticks.parquet, ...)
    OUT/status/run-000042.json                     each finished or failed run's record

Hive-style directories let DuckDB, polars and pyarrow read the whole sweep as one table. A run
is complete when its run directory exists (it is published by an atomic rename), so a sweep that
was killed resumes by skipping complete runs, and no run is written twice. ``runs.parquet`` is
rebuilt from the status records after every run, through a temporary file.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ..kernels import rng
from .config import ConfigError, load_config, read_toml_file
from .recorder import read_manifest


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    index: int
    scenario: str
    scenario_file: str
    point: int
    params: dict[str, Any]
    replicate: int
    seed: int

    def overrides(self, common: dict[str, Any]) -> list[str]:
        merged = {**common, **self.params}
        return [f"{key}={json.dumps(value)}" for key, value in merged.items()]

    def run_dir(self, out: Path) -> Path:
        return out / "runs" / f"scenario={self.scenario}" / f"point={self.point}" / f"replicate={self.replicate}"


@dataclass(frozen=True)
class Sweep:
    name: str
    runs: tuple[RunSpec, ...]
    common: dict[str, Any]


def replicate_seed(base_seed: int, replicate: int) -> int:
    """Seed of replicate k: a hash of (base seed, k), the same for every scenario and point."""
    return rng.stream_key(base_seed, "sweep.replicate", replicate) >> 2  # fits run.seed's range


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; every run's config is validated now, before anything runs."""
    path = Path(path)
    doc = read_toml_file(path, "sweep file")
    unknown = set(doc) - {"sweep", "set", "grid", "samples"}
    if unknown:
        raise ConfigError(f"sweep file: unknown section [{sorted(unknown)[0]}] (allowed: sweep, set, grid, samples)")
    if "grid" in doc and "samples" in doc:
        raise ConfigError("sweep file: use [grid] or [samples], not both")
    head = doc.get("sweep", {})
    allowed = {"name", "scenarios", "replicates", "base_seed"}
    if set(head) - allowed:
        raise ConfigError(f"sweep.{sorted(set(head) - allowed)[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    scenarios = head.get("scenarios", [])
    if not isinstance(scenarios, list) or not scenarios or not all(isinstance(s, str) for s in scenarios):
        raise ConfigError("sweep.scenarios: a non-empty list of scenario files is required")
    replicates = head.get("replicates", 1)
    if not isinstance(replicates, int) or isinstance(replicates, bool) or not 1 <= replicates <= 10_000:
        raise ConfigError(f"sweep.replicates = {replicates!r}: must be an integer from 1 to 10000")
    base_seed = head.get("base_seed", 1)
    if not isinstance(base_seed, int) or isinstance(base_seed, bool) or base_seed < 0:
        raise ConfigError(f"sweep.base_seed = {base_seed!r}: must be a non-negative integer")
    common = doc.get("set", {})
    grid = doc.get("grid", {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: must be a non-empty list of values")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    if "samples" in doc:
        points = latin_hypercube(doc["samples"])
    runs = []
    names = []
    for scenario in scenarios:
        file = (path.parent / scenario).resolve()
        name = load_config(file).run.name  # validates the file
        if name in names:
            raise ConfigError(f"sweep.scenarios: two scenarios are named {name!r}; give each its own run.name")
        names.append(name)
        for p, params in enumerate(points):
            overrides = [f"{k}={json.dumps(v)}" for k, v in {**common, **params}.items()]
            load_config(file, overrides)  # every run's config is valid, or the sweep does not start
            for k in range(replicates):
                runs.append(RunSpec(len(runs), name, str(file), p, params, k, replicate_seed(base_seed, k)))
    return Sweep(name=head.get("name", path.stem), runs=tuple(runs), common=common)


def latin_hypercube(section: dict[str, Any]) -> list[dict[str, float]]:
    """Points of a ``[samples]`` section: ``n`` Latin hypercube samples (scipy's qmc, seeded)
    over the ``[low, high]`` range of each parameter."""
    from scipy.stats import qmc  # noqa: PLC0415

    spec = dict(section)
    n = spec.pop("n", None)
    seed = spec.pop("seed", 0)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
        raise ConfigError(f"samples.n = {n!r}: must be an integer from 1 to 100000")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"samples.seed = {seed!r}: must be a non-negative integer")
    if not spec:
        raise ConfigError("samples: name at least one parameter with its [low, high] range")
    for key, bounds in spec.items():
        if (not isinstance(bounds, list) or len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds)
                or bounds[0] >= bounds[1]):
            raise ConfigError(f"samples.{key} = {bounds!r}: must be [low, high] with low < high")
    unit = qmc.LatinHypercube(d=len(spec), seed=seed).random(n)
    lows = [b[0] for b in spec.values()]
    highs = [b[1] for b in spec.values()]
    scaled = qmc.scale(unit, lows, highs)
    return [{key: float(value) for key, value in zip(spec, row)} for row in scaled]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def execute(spec: RunSpec, common: dict[str, Any], out: str) -> dict[str, Any]:
    """Run one sweep run (in any process); returns its status record, never raises for a run error."""
    from .run import run_scenario  # noqa: PLC0415  (imported in the worker)

    out_path = Path(out)
    record: dict[str, Any] = {"run_id": spec.index, "scenario": spec.scenario, "point": spec.point,
                              "replicate": spec.replicate, "seed": spec.seed,
                              "params": json.dumps(spec.params, sort_keys=True), "run_dir": str(spec.run_dir(out_path))}
    started = time.perf_counter()
    run_dir = spec.run_dir(out_path)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    status_dir = out_path / "status"
    status_dir.mkdir(parents=True, exist_ok=True)
    (status_dir / f"run-{spec.index:06d}.started").touch()  # lets the pool tell in-flight runs apart
    for stale in run_dir.parent.glob(f".{run_dir.name}.partial-*"):  # left by a killed attempt
        shutil.rmtree(stale, ignore_errors=True)
    try:
        config = load_config(spec.scenario_file, spec.overrides(common), seed=spec.seed)
        result = run_scenario(config, spec.run_dir(out_path))
        record.update(status="complete", error=None, gmv=result.summary["gmv_cny"])
    except Exception as exc:  # a failed run is recorded and the sweep carries on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500], gmv=None)
    record["seconds"] = time.perf_counter() - started
    _write_json(status_dir / f"run-{spec.index:06d}.json", record)
    return record


def is_complete(spec: RunSpec, out: Path) -> bool:
    """A run is complete when its run directory was published (a damaged or older-format one
    raises :class:`~weishang.model.recorder.RunDirectoryError` rather than being silently redone)."""
    run_dir = spec.run_dir(out)
    return (run_dir / "manifest.json").is_file() and read_manifest(run_dir).get("status") == "complete"


def write_runs_table(sweep: Sweep, out: Path) -> Path:
    """Rebuild ``runs.parquet`` from the status records (pending runs included), atomically."""
    records = {}
    status_dir = out / "status"
    if status_dir.is_dir():
        for f in status_dir.glob("run-*.json"):
            rec = json.loads(f.read_text())
            records[rec["run_id"]] = rec
    rows = []
    for spec in sweep.runs:
        rec = records.get(spec.index)
        if rec is None or (rec["status"] == "failed" and is_complete(spec, out)):
            rec = {"status": "complete" if is_complete(spec, out) else "pending", "error": None, "seconds": None,
                   "gmv": None}
        rows.append({"run_id": spec.index, "scenario": spec.scenario, "point": spec.point,
                     "replicate": spec.replicate, "seed": spec.seed, "params": json.dumps(spec.params, sort_keys=True),
                     **{f"param.{k}": v for k, v in spec.params.items()},
                     "status": rec["status"], "error": rec.get("error") or None, "seconds": rec.get("seconds"),
                     "gmv": rec.get("gmv"), "run_dir": str(spec.run_dir(out))})
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    # typed even when every value is null so far (no run failed, none finished)
    for name, kind in (("error", pa.string()), ("seconds", pa.float64()), ("gmv", pa.float64())):
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    target = out / "runs.parquet"
    tmp = out / f".runs.parquet.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def _run_on_dask(todo: list[RunSpec], sweep: Sweep, out: Path, scheduler: str,
                 on_done: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """Run ``todo`` on a Dask distributed cluster whose workers see ``out`` (a shared file system)."""
    try:
        from dask.distributed import Client, as_completed as dask_completed  # noqa: PLC0415
    except ImportError:
        raise ConfigError("--scheduler needs Dask: pip install 'weishang[dist]'") from None
    done = []
    with Client(scheduler) as client:
        # pure=False: each run executes once; keys name the run so the dashboard reads well
        futures = [client.submit(execute, spec, sweep.common, str(out), key=f"weishang-run-{spec.index}", pure=False)
                   for spec in todo]
        for future in dask_completed(futures):
            done.append(future.result())
            write_runs_table(sweep, out)
            if on_done:
                on_done(done[-1])
    return done


#: times a run may be in flight in a worker that died before it is recorded as failed
MAX_ATTEMPTS = 2


def _run_on_pool(todo: list[RunSpec], sweep: Sweep, out: Path, workers: int,
                 on_done: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """Run ``todo`` on a local process pool, surviving dead workers.

    When a worker dies (killed, out of memory), the pool breaks and every unfinished run comes
    back. Runs that had started (their ``.started`` marker exists) count an attempt; the pool is
    rebuilt and the unfinished runs go again. A run caught in ``MAX_ATTEMPTS`` dead workers is
    recorded as failed, so no run is lost silently and a run that kills its worker cannot stall
    the sweep.
    """
    import multiprocessing as mp  # noqa: PLC0415

    done: list[dict[str, Any]] = []
    attempts: dict[int, int] = {}
    pending = list(todo)
    while pending:
        for spec in pending:  # markers from earlier rounds (or an earlier process) do not count
            (out / "status" / f"run-{spec.index:06d}.started").unlink(missing_ok=True)
        finished: set[int] = set()
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(execute, spec, sweep.common, str(out)): spec for spec in pending}
            try:
                for future in as_completed(futures):
                    record = future.result()
                    finished.add(record["run_id"])
                    done.append(record)
                    write_runs_table(sweep, out)
                    if on_done:
                        on_done(record)
            except BrokenProcessPool:
                pass
        retry = []
        for spec in pending:
            if spec.index in finished or is_complete(spec, out):
                continue
            if (out / "status" / f"run-{spec.index:06d}.started").exists():
                attempts[spec.index] = attempts.get(spec.index, 0) + 1
            if attempts.get(spec.index, 0) >= MAX_ATTEMPTS:
                record = _failed_record(spec, out, f"worker process died {MAX_ATTEMPTS} times while running it")
                done.append(record)
                if on_done:
                    on_done(record)
            else:
                retry.append(spec)
        pending = retry
        write_runs_table(sweep, out)
    return done


def _failed_record(spec: RunSpec, out: Path, error: str) -> dict[str, Any]:
    record = {"run_id": spec.index, "scenario": spec.scenario, "point": spec.point, "replicate": spec.replicate,
              "seed": spec.seed, "params": json.dumps(spec.params, sort_keys=True), "run_dir": str(spec.run_dir(out)),
              "status": "failed", "error": error, "gmv": None, "seconds": None}
    _write_json(out / "status" / f"run-{spec.index:06d}.json", record)
    return record


def run_sweep(sweep: Sweep, out: Path, workers: int = 1, task_index: int | None = None,
              on_done: Callable[[dict[str, Any]], None] | None = None,
              scheduler: str | None = None) -> list[dict[str, Any]]:
    """Run the sweep's pending runs (or only run ``task_index``) on ``workers`` local processes,
    or on the Dask cluster at ``scheduler`` (an address such as ``tcp://host:8786``)."""
    out.mkdir(parents=True, exist_ok=True)
    if task_index is not None:
        if not 0 <= task_index < len(sweep.runs):
            raise ConfigError(f"--task-index {task_index}: the sweep has runs 0 to {len(sweep.runs) - 1}")
        todo = [sweep.runs[task_index]]
    else:
        todo = list(sweep.runs)
    todo = [spec for spec in todo if not is_complete(spec, out)]
    done: list[dict[str, Any]] = []
    if scheduler is not None:
        done = _run_on_dask(todo, sweep, out, scheduler, on_done)
    elif workers <= 1 or len(todo) <= 1:
        for spec in todo:
            done.append(execute(spec, sweep.common, str(out)))
            write_runs_table(sweep, out)
            if on_done:
                on_done(done[-1])
    else:
        done = _run_on_pool(todo, sweep, out, workers, on_done)
    write_runs_table(sweep, out)
    return done
