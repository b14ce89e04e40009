"""Running a scenario end to end: build, tick, record, publish.

:func:`run_scenario` is what ``weishang run`` and scripts call. It checks the run directory and
the backend before building anything, streams each tick's rows to the :class:`RunWriter`, and
publishes the run directory only when the run completed; an interrupted or failed run stays
hidden with a manifest that says why.
"""

from __future__ import annotations

import datetime as dt
import gc
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weishang import __version__

from ..kernels.backend import Backend, resolve_backend
from ..kernels.host_allocator import release_freed_memory, retain_freed_memory
from . import checkpoint
from .columns import SUMMARY, RunTotals
from .commerce import CommerceModel
from .config import ScenarioConfig, config_digest
from .graph_io import with_edge_list
from .preflight import check as memory_check
from .preflight import peak_rss_bytes
from .recorder import (
    OutputLock,
    RunDirectoryError,
    RunInterrupted,
    RunWriter,
    check_run_dir_free,
    make_dirs,
    read_manifest,
    sigterm_raises,
    table_path,
)

if TYPE_CHECKING:
    import pyarrow

@dataclass
class RunResult:
    """A finished run: where it is and its headline numbers."""

    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]

    def table(self, name: str) -> "pyarrow.Table":
        """One of the run's tables (``ticks``, ``merchants``, ``cascades``, ``validation``, or
        ``transactions`` when logged) as an Arrow table."""
        import pyarrow.dataset as ds  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        names = ("ticks", "merchants", "cascades", "risk_curve", "validation", "transactions")
        if name not in names:
            raise ValueError(f"table {name!r}: a run has {', '.join(names)}")
        path = self.run_dir / "validation.parquet" if name == "validation" else table_path(
            self.run_dir, self.manifest, name)
        if not path.exists():
            hint = (": this run kept no transaction log; set output.transactions = \"full\" or \"sample\" "
                    "(weishang run --set 'output.transactions=\"full\"')" if name == "transactions" else "")
            raise FileNotFoundError(f"{path} does not exist{hint}")
        return ds.dataset(path, format="parquet").to_table() if name == "transactions" else pq.read_table(path)


def default_run_dir(config: ScenarioConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output.dir) / f"{config.run.name}-seed{config.run.seed}-{stamp}"


def _versions(backend_name: str) -> dict[str, str]:
    import mesa  # noqa: PLC0415
    import pyarrow  # noqa: PLC0415

    versions = {"weishang": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "mesa": mesa.__version__, "pyarrow": pyarrow.__version__}
    if backend_name == "cupy":
        import cupy  # noqa: PLC0415

        versions["cupy"] = cupy.__version__
    return versions


def summarize(totals: RunTotals, model: CommerceModel) -> dict[str, Any]:
    """Headline numbers of a run (shown by the CLI and stored in the manifest): the ``summary``
    entries of :mod:`weishang.model.columns`, each its reduction of the run's ticks (None when
    undefined)."""
    summary: dict[str, Any] = {}
    for column in SUMMARY:
        value = column.reduction.value(totals, model)
        summary[column.name] = None if value is None else (int(value) if column.dtype == "int64" else float(value))
    return summary


@dataclass
class PreparedRun:
    """What :func:`prepare_run` checked and read: the run directory (locked for this process),
    the backend, the config as the run uses it (an edge list sets ``population.n_users``), the
    edge list's graph, and the checkpoint to resume from."""

    final_dir: Path
    backend: Backend
    config: ScenarioConfig
    graph: tuple[np.ndarray, np.ndarray] | None
    lock: OutputLock
    config_digest: str
    resume_dir: Path | None = None
    saved: dict[str, Any] | None = None


def prepare_run(config: ScenarioConfig, out_dir: str | Path | None,
                preflight: bool = True, resume: bool = False) -> PreparedRun:
    """Check and read everything a run needs before anything is printed, built or written: the
    run directory (and lock it against a second process), the edge list, the checkpoint to resume
    from, the backend, and (unless ``preflight`` is False) that the run fits in memory.

    Raises the user errors of :func:`run_scenario`.
    """
    final_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    if resume and (final_dir / "manifest.json").is_file():
        raise RunDirectoryError(f"{str(final_dir)!r} is a finished run: nothing to resume")
    check_run_dir_free(final_dir)
    digest = config_digest(config)  # of the config as given: a sweep knows its runs by it
    config, graph = with_edge_list(config)
    backend = resolve_backend(config.run.backend)
    if preflight:
        memory_check(config, backend.name, backend.free_device_bytes())
    make_dirs(final_dir.parent)
    lock = OutputLock(final_dir)
    try:
        resume_dir = saved = None
        if resume:
            resume_dir = checkpoint.find(final_dir)
            if resume_dir is None:
                raise RunDirectoryError(f"nothing to resume: no checkpoint of {str(final_dir)!r} was found "
                                        f"(was the run started with --checkpoint-every?)")
            saved = checkpoint.load(resume_dir, config.to_json())  # damaged or from another config: say so now
    except BaseException:
        lock.release()
        raise
    return PreparedRun(final_dir, backend, config, graph, lock, digest, resume_dir, saved)


def run_scenario(config: ScenarioConfig, out_dir: str | Path | None = None, *,
                 on_build_step: Callable[[str], None] | None = None,
                 on_tick: Callable[[int, int], None] | None = None,
                 preflight: bool = True, resume: bool = False, population: Any = None,
                 prepared: PreparedRun | None = None) -> RunResult:
    """Run a scenario and publish its run directory.

    Args:
        config: the validated scenario.
        out_dir: the run directory itself; a fresh name under ``output.dir`` when omitted.
        on_build_step: told about each population build step (for progress display).
        on_tick: called with (ticks done, ticks total) after every tick.
        preflight: refuse a run whose memory estimate exceeds what is available.
        resume: continue from the newest checkpoint of this run directory (see
            :mod:`weishang.model.checkpoint`); the result is identical to an uninterrupted run.
        population: a population already built from this config's population section and
            seed (calibration reuses one across trials: a population is read-only).
        prepared: what :func:`prepare_run` returned for these arguments (the CLI checks everything
            before printing); prepared here when omitted.

    Raises:
        RunDirectoryError: the run directory exists and is not empty, or cannot be written.
        BackendUnavailable: ``cupy`` was requested without CuPy or a GPU.
        PreflightError: the run will not fit in memory.
        RunInterrupted: SIGTERM arrived (SIGINT raises KeyboardInterrupt); either way the partial
            run stays hidden with status "interrupted".
    """
    prepared = prepared or prepare_run(config, out_dir, preflight, resume)
    try:
        return _run(prepared, on_build_step, on_tick, population)
    finally:
        prepared.lock.release()


def _tick(prepared: PreparedRun, writer: RunWriter, manifest: dict[str, Any],
          on_build_step: Callable[[str], None] | None, on_tick: Callable[[int, int], None] | None,
          population: Any) -> tuple[CommerceModel, RunTotals]:
    """Build the model (or restore it from the checkpoint) and run every tick, streaming rows."""
    config, saved = prepared.config, prepared.saved
    model = CommerceModel(config, backend=prepared.backend, population=population, progress=on_build_step,
                          graph=prepared.graph)
    pop = model.population
    manifest["population"] = {"users": pop.n_users, "directed_edges": pop.n_edges, "merchants": model.n_merchants,
                              "groups": pop.n_groups, "bytes": pop.nbytes()}
    totals = RunTotals()
    if saved is not None:
        model.load_state_dict(saved["model"])
        totals = saved["totals"]
        manifest["resumed_from_tick"] = saved["tick"]
    while model.running:
        model.step()
        rows = model.rows
        writer.append("ticks", rows.ticks)
        writer.append("merchants", rows.merchants)
        writer.append("cascades", rows.cascades)
        writer.append("risk_curve", rows.risk_curve)
        if rows.transactions is not None:
            writer.write_part("transactions", f"{model.tick:06d}", rows.transactions)
        totals.add(rows.ticks)
        every = config.output.checkpoint_every
        if every and (model.tick + 1) % every == 0 and model.running:
            checkpoint.save(writer.tmp_dir, {"tick": model.tick, "config_json": config.to_json(),
                                             "model": model.state_dict(), "totals": totals,
                                             "segments": writer.checkpoint()})
        if on_tick is not None:
            on_tick(model.tick + 1, config.run.n_ticks)
    return model, totals


def _run(prepared: PreparedRun, on_build_step: Callable[[str], None] | None,
         on_tick: Callable[[int, int], None] | None, population: Any) -> RunResult:
    config, final_dir, backend, saved = prepared.config, prepared.final_dir, prepared.backend, prepared.saved
    from .study.validation import validate_run, write_validation  # noqa: PLC0415

    if backend.name == "numpy":
        retain_freed_memory()  # ticks reuse mapped pages instead of faulting them in again
    started = dt.datetime.now(dt.timezone.utc)
    writer = RunWriter(final_dir, config.to_json(), config.output.row_group_ticks,
                       resume_from=prepared.resume_dir, segments=saved["segments"] if saved else None)
    manifest: dict[str, Any] = {
        "run_dir": str(final_dir), "scenario": config.run.name, "seed": config.run.seed,
        "config": config.resolved(), "config_digest": prepared.config_digest, "versions": _versions(backend.name),
        "backend": {"name": backend.name, "device": backend.device, "reason": backend.reason},
        "started_at": started.isoformat(),
    }
    with sigterm_raises():
        try:
            model, totals = _tick(prepared, writer, manifest, on_build_step, on_tick, population)
            summary = summarize(totals, model)
            manifest.update({
                "summary": summary,
                "timings": {"build_seconds": model.build_seconds, "build_steps": model.population.timings,
                            "tick_seconds_total": sum(model.plan.seconds.values()),
                            "phase_seconds": dict(model.plan.seconds)},
                "peak_rss_bytes": peak_rss_bytes(),
                "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            })
            # every run carries its validation against docs/SPEC.md's figures (`weishang validate` redoes
            # it), written before the run is published: a visible run is a whole run
            run_dir = writer.finish(manifest, before_publish=lambda directory, complete: write_validation(
                validate_run(directory, manifest=complete), directory))
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, (KeyboardInterrupt, RunInterrupted)) else "failed"
            writer.abort({**manifest, "status": status, "error": f"{type(exc).__name__}: {exc}",
                          "finished_at": dt.datetime.now(dt.timezone.utc).isoformat()})
            raise
    del model
    if backend.name == "numpy":
        # give the run's heap back (its agents and model form cycles: collect them first), so a
        # process running runs one after another (a sweep's worker, a calibration) stays flat
        gc.collect()
        release_freed_memory()
    return RunResult(run_dir=run_dir, summary=summary, manifest=read_manifest(run_dir))
