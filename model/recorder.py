"""The results writer: one run directory of Parquet tables and a manifest, written atomically.

Layout (DESIGN.md "Results")::

    RUN_DIR/manifest.json      config, seed, versions, backend, device, timings, status
    RUN_DIR/ticks.parquet      one row per tick
    RUN_DIR/merchants.parquet  one row per tick x merchant
    RUN_DIR/cascades.parquet   one row per cascade (post)
    RUN_DIR/transactions/      opt-in: scored transactions, one part file per tick

Tables are streamed: rows are buffered for ``row_group_ticks`` ticks, then written as one row
group, so memory does not grow with the number of ticks. Everything is written inside a hidden
sibling directory ``.NAME.partial-PID`` and renamed to ``RUN_DIR`` only when complete, so a
reader never sees half a run. The resolved config rides in each table's Parquet metadata under
``weishang.config``; each field carries its unit and meaning from :mod:`weishang.model.columns`
(``field.metadata[b"unit"]``, ``[b"meaning"]``), and undefined values are nulls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .columns import REGISTRY
from .errors import RunDirectoryError, RunInterrupted  # noqa: F401  (where they were defined)

CONFIG_METADATA_KEY = b"weishang.config"
MANIFEST = "manifest.json"
#: 2: undefined values are nulls, fields carry unit and meaning
FORMAT_VERSION = 2

_ARROW_TYPES = {"int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
                "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}


def schema(table: str) -> pa.Schema:
    """The Arrow schema of an output table, from the column registry (unit and meaning as field
    metadata)."""
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.dtype], nullable=True,
                               metadata={b"unit": c.unit.encode(), b"meaning": c.meaning.encode()})
                      for c in REGISTRY[table]])


def to_arrow(table: str, columns: dict[str, Any]) -> pa.Table:
    """One batch of rows of ``table`` (column -> array, or -> scalar for a single row) as Arrow,
    typed and ordered by the registry.

    Raises:
        ValueError: the columns are not exactly the registry's, or a column that cannot be
            undefined holds NaN. In a nullable float column, NaN marks an undefined value and is
            written as null; elsewhere None is null.
    """
    declared = REGISTRY[table]
    names = {c.name for c in declared}
    if set(columns) != names:
        missing, extra = sorted(names - set(columns)), sorted(set(columns) - names)
        raise ValueError(f"{table} rows do not match the column registry: missing {missing}, undeclared {extra}")
    arrays = []
    for c in declared:
        value = columns[c.name]
        values = np.asarray([value], dtype=object if value is None else None) if np.ndim(value) == 0 else value
        mask = None
        if c.dtype == "float64" and values.dtype != object:
            nan = np.isnan(values)
            if nan.any():
                if not c.nullable:
                    raise ValueError(f"{table}.{c.name} holds NaN, but it is never undefined")
                mask = nan
        arrays.append(pa.array(values, type=_ARROW_TYPES[c.dtype], mask=mask, from_pandas=False))
    return pa.Table.from_arrays(arrays, schema=schema(table))


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM (a batch scheduler's cancel or time limit) raises
    :class:`RunInterrupted` in the main thread, so the work in hand stops the way Ctrl-C stops it;
    elsewhere (a worker thread) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise RunInterrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OutputLock:
    """An exclusive lock on an output path (a run or sweep directory) for this process, so a
    second process writing the same ``--out`` refuses at once instead of racing the first.

    The lock is ``flock`` on ``.NAME.lock`` beside the path; the kernel releases it when the
    process ends, however it ends. A holder deletes the file as it lets go, so a lock taken on a
    file that was deleted meanwhile is no lock: it is taken again on the file now at the path.
    """

    def __init__(self, path: Path, busy: str | None = None) -> None:
        """``busy``: the error's words when another process holds the lock (a default names the path)."""
        import fcntl  # noqa: PLC0415  (POSIX; the HPC and GPU machines this runs on are)

        self.path = path.parent / f".{path.name}.lock"
        for _ in range(10):
            try:
                self._file = open(self.path, "a")
            except OSError as exc:
                raise RunDirectoryError(f"cannot create {str(self.path)!r}: {exc.strerror or type(exc).__name__}") \
                    from None
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._file.close()
                raise RunDirectoryError(busy or f"another weishang process is writing {str(path)!r} (it holds "
                                                f"{str(self.path)!r}); wait for it or choose another --out") from None
            if self._holds_the_file_at_the_path():
                return
            self._file.close()  # the last holder deleted it between our open and our lock: again
        raise RunDirectoryError(busy or f"{str(self.path)!r} keeps changing: another process is taking it")

    def _holds_the_file_at_the_path(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if not self._file.closed:
            self.path.unlink(missing_ok=True)
            self._file.close()


def partial_dir_for(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{os.getpid()}"


class RunWriter:
    """Streams a run's tables into a hidden directory and publishes it on :meth:`finish`.

    Rows go to closed-ended *segments*: ``.parts/TABLE/part-NNNNNN.parquet``, one per table
    between two checkpoints, each closed (footer written) when a checkpoint is taken, and
    ``transactions/part-TICK.parquet``, one per tick. So everything a checkpoint records is a
    whole file on disk whatever kills the process later, and :meth:`finish` joins each table's
    segments into ``TABLE.parquet`` in order.

    Args:
        final_dir: the run directory to publish; must not exist yet (or be an empty folder).
        config_json: the resolved config, stored in every table's metadata.
        row_group_ticks: ticks buffered per row group.
        resume_from: a partial directory to continue, keeping only ``segments`` (what its
            checkpoint recorded, verified) and dropping everything written after it.
    """

    def __init__(self, final_dir: Path, config_json: str, row_group_ticks: int,
                 resume_from: Path | None = None, segments: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.final_dir = Path(final_dir)
        check_run_dir_free(self.final_dir)
        make_dirs(self.final_dir.parent)
        self._metadata = {CONFIG_METADATA_KEY: config_json.encode()}
        self._row_group_ticks = row_group_ticks
        self._buffers: dict[str, list[pa.Table]] = {}
        self._ticks_buffered: dict[str, int] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._open: dict[str, Path] = {}  # table -> its open segment's path
        #: table -> the closed segments so far: {"file": path relative to tmp_dir, "rows", "sha256"}
        self.segments: dict[str, list[dict[str, Any]]] = {}
        if resume_from is not None:
            self.tmp_dir = Path(resume_from)
            self._adopt(segments or {})
            return
        self.tmp_dir = partial_dir_for(self.final_dir)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        make_dirs(self.tmp_dir)

    def _adopt(self, segments: dict[str, list[dict[str, Any]]]) -> None:
        """Keep exactly the segments a checkpoint recorded, checked against their digests; delete
        whatever was written after it (possibly cut off mid-file by a hard kill)."""
        kept = {seg["file"] for table in segments.values() for seg in table}
        for table, recorded in segments.items():
            for seg in recorded:
                path = self.tmp_dir / seg["file"]
                if not path.is_file() or _sha256(path) != seg["sha256"]:
                    raise RunDirectoryError(f"{str(path)!r}, which the checkpoint recorded, is missing or changed: "
                                            f"the partial run is damaged; delete {str(self.tmp_dir)!r} and start again")
        for folder in (self.tmp_dir / ".parts", self.tmp_dir / "transactions"):
            # a part not recorded, or a temporary one a kill left mid-write
            for path in [*folder.rglob("*.parquet"), *folder.rglob(".*.tmp")] if folder.is_dir() else ():
                if str(path.relative_to(self.tmp_dir)) not in kept:
                    path.unlink()
        self.segments = {table: list(recorded) for table, recorded in segments.items()}

    def checkpoint(self) -> dict[str, list[dict[str, Any]]]:
        """Write every buffered row and close every open segment; returns the segments, which the
        checkpoint records (each a whole file from now on)."""
        for table in list(self._buffers):
            self._flush(table)
        for table, writer in list(self._writers.items()):
            writer.close()
            del self._writers[table]
            self._close_segment(table)
        return {table: list(recorded) for table, recorded in self.segments.items()}

    def _close_segment(self, table: str) -> None:
        path = self._open.pop(table)
        rows = pq.ParquetFile(path).metadata.num_rows
        self.segments.setdefault(table, []).append(
            {"file": str(path.relative_to(self.tmp_dir)), "rows": rows, "sha256": _sha256(path)})

    def append(self, table: str, columns: dict[str, Any]) -> None:
        """Add one tick's rows to ``table`` (column name -> array, or -> scalar for one row)."""
        self._buffers.setdefault(table, []).append(to_arrow(table, columns))
        self._ticks_buffered[table] = self._ticks_buffered.get(table, 0) + 1
        if self._ticks_buffered[table] >= self._row_group_ticks:
            self._flush(table)

    def write_part(self, folder: str, part: str, columns: dict[str, Any]) -> None:
        """Write one part file ``folder/part-PART.parquet`` of the table ``folder`` (for
        partitioned, opt-in tables), through a temporary name."""
        directory = self.tmp_dir / folder
        directory.mkdir(exist_ok=True)
        table = to_arrow(folder, columns)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self._metadata})
        path = directory / f"part-{part}.parquet"
        tmp = directory / f".part-{part}.parquet.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        self.segments.setdefault(folder, []).append(
            {"file": str(path.relative_to(self.tmp_dir)), "rows": table.num_rows, "sha256": _sha256(path)})

    def _flush(self, table: str) -> None:
        chunks = self._buffers.get(table)
        if not chunks:
            return
        arrow = pa.concat_tables(chunks).combine_chunks()
        arrow = arrow.replace_schema_metadata(self._metadata)
        writer = self._writers.get(table)
        if writer is None:
            folder = self.tmp_dir / ".parts" / table
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"part-{len(self.segments.get(table, ())):06d}.parquet"
            writer = pq.ParquetWriter(path, arrow.schema, compression="zstd")
            self._writers[table] = writer
            self._open[table] = path
        writer.write_table(arrow)
        self._buffers[table] = []
        self._ticks_buffered[table] = 0

    def _join_segments(self) -> None:
        """Each table's segments, in order, as one ``TABLE.parquet`` (row groups kept as written)."""
        self.checkpoint()
        for table, recorded in self.segments.items():
            if table == "transactions":
                continue
            paths = [self.tmp_dir / seg["file"] for seg in recorded]
            with pq.ParquetWriter(self.tmp_dir / f"{table}.parquet", pq.read_schema(paths[0]),
                                  compression="zstd") as joined:
                for path in paths:
                    source = pq.ParquetFile(path)
                    for group in range(source.num_row_groups):
                        joined.write_table(source.read_row_group(group))
        shutil.rmtree(self.tmp_dir / ".parts", ignore_errors=True)

    def row_counts(self) -> dict[str, int]:
        """Rows written to each table so far (closed segments)."""
        return {table: sum(seg["rows"] for seg in recorded) for table, recorded in self.segments.items()}

    def finish(self, manifest: dict[str, Any], before_publish: Any = None) -> Path:
        """Join the tables, write the manifest, let ``before_publish(directory, manifest)`` add
        its outputs (validation), and only then publish the run directory."""
        self._join_segments()
        (self.tmp_dir / "checkpoint.pkl").unlink(missing_ok=True)  # only a partial run needs one
        manifest = {**manifest, "rows": self.row_counts()}
        if before_publish is not None:
            before_publish(self.tmp_dir, manifest)
        write_manifest(self.tmp_dir, {**manifest, "status": "complete"})
        if self.final_dir.exists():  # an empty folder the user named with --out
            self.final_dir.rmdir()
        os.replace(self.tmp_dir, self.final_dir)
        return self.final_dir

    def abort(self, manifest: dict[str, Any]) -> Path:
        """Leave the partial run hidden, with a manifest saying why it stopped."""
        try:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()
        finally:
            write_manifest(self.tmp_dir, manifest)
        return self.tmp_dir


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_dirs(path: Path) -> None:
    """``mkdir -p``; a path that cannot be made is a :class:`RunDirectoryError` naming it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirectoryError(f"cannot create {str(path)!r}: {exc.strerror or type(exc).__name__}") from None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` through a temporary file, so it is whole or absent."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2, default=str))
    os.replace(tmp, directory / MANIFEST)


#: the tables a sweep keeps as datasets (``SWEEP/ticks/scenario=.../...``)
DATASETS = ("ticks", "merchants", "cascades", "risk_curve", "transactions")


def check_run_dir_free(path: Path) -> None:
    """Raise :class:`RunDirectoryError` unless ``path`` is absent or an empty directory under a
    folder this process can write, and outside a sweep's datasets (the error names the path and
    what is wrong)."""
    for folder in Path(os.path.abspath(path)).parents:
        # a run inside SWEEP/ticks/ was read as part of the dataset and broke the sweep's report (issue 32)
        sweep = folder.parent
        if folder.name in DATASETS and ((sweep / "runs.parquet").is_file()
                                        or ((sweep / "runs").is_dir() and (sweep / "status").is_dir())):
            raise RunDirectoryError(f"run directory {str(path)!r} lies inside the sweep dataset {str(folder)!r}, "
                                    f"whose readers would take it for part of the sweep; choose a folder outside it")
    try:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunDirectoryError(f"run directory {str(path)!r} already exists and is not empty; choose another "
                                    f"directory (--out on the command line)")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise RunDirectoryError(f"cannot write under {str(parent)!r}: it is a file, not a folder")
        if not os.access(parent, os.W_OK):
            raise RunDirectoryError(f"cannot write under {str(parent)!r}: permission denied")
        # the hidden partial directory is ".NAME.partial-PID": 17 bytes more than NAME, within 255
        if len(path.name.encode()) > 238 or len(str(path.resolve()).encode()) > 4000:
            raise RunDirectoryError(f"run directory name {str(path)[:80]!r}... is too long for the file system")
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        if isinstance(exc, RunDirectoryError):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise RunDirectoryError(f"run directory {str(path)!r} cannot be used: {why}") from None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """A run's manifest, checked: unreadable JSON or another format version is a clear
    :class:`RunDirectoryError`, never a traceback deep in a reader."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(f"{str(path)!r} cannot be read ({type(exc).__name__}); the run is damaged") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise RunDirectoryError(f"{str(run_dir)!r} was written in results format {version!r}; this weishang reads "
                                f"format {FORMAT_VERSION}: rerun it with this version")
    return manifest


def table_path(run_dir: Path, manifest: dict[str, Any], table: str) -> Path:
    """Where a run's table is: ``TABLE.parquet`` in its directory (``transactions/`` for the log),
    or, for a sweep's run, its part of the sweep's dataset (the manifest's ``tables``)."""
    moved = manifest.get("tables", {})
    if table in moved:
        return (run_dir / moved[table]).resolve()
    return run_dir / ("transactions" if table == "transactions" else f"{table}.parquet")


def read_config_metadata(parquet_path: str | Path) -> dict[str, Any]:
    """The resolved config stored in a table's Parquet metadata."""
    metadata = pq.read_schema(parquet_path).metadata or {}
    return json.loads(metadata[CONFIG_METADATA_KEY])
