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

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .columns import REGISTRY

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


class RunInterrupted(Exception):
    """SIGTERM arrived during a run (a batch scheduler's cancel or time limit)."""


class RunDirectoryError(ValueError):
    """The run directory cannot be created; the message is one line for the user."""


def partial_dir_for(final: Path) -> Path:
    return final.parent / f".{final.name}.partial-{os.getpid()}"


class RunWriter:
    """Streams a run's tables into a hidden directory and publishes it on :meth:`finish`.

    Args:
        final_dir: the run directory to publish; must not exist yet (or be an empty folder).
        config_json: the resolved config, stored in every table's metadata.
        row_group_ticks: ticks buffered per row group.
    """

    def __init__(self, final_dir: Path, config_json: str, row_group_ticks: int,
                 resume_from: Path | None = None, rows_written: dict[str, int] | None = None) -> None:
        self.final_dir = Path(final_dir)
        check_run_dir_free(self.final_dir)
        self.final_dir.parent.mkdir(parents=True, exist_ok=True)
        self._metadata = {CONFIG_METADATA_KEY: config_json.encode()}
        self._row_group_ticks = row_group_ticks
        self._buffers: dict[str, list[pa.Table]] = {}
        self._ticks_buffered: dict[str, int] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows_written: dict[str, int] = {}
        if resume_from is not None:
            self.tmp_dir = Path(resume_from)
            self._adopt(rows_written or {})
            return
        self.tmp_dir = partial_dir_for(self.final_dir)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir()

    def _adopt(self, rows_written: dict[str, int]) -> None:
        """Continue a checkpointed partial run: keep each table's first ``rows_written`` rows
        (what the checkpoint had flushed) and drop anything written after it."""
        for path in self.tmp_dir.glob("*.parquet"):
            table = path.stem
            kept = pq.read_table(path).slice(0, rows_written.get(table, 0))
            path.unlink()
            if kept.num_rows:
                writer = pq.ParquetWriter(self.tmp_dir / f"{table}.parquet", kept.schema, compression="zstd")
                writer.write_table(kept)
                self._writers[table] = writer
            self.rows_written[table] = kept.num_rows

    def flush(self) -> dict[str, int]:
        """Write every buffered row (a checkpoint is about to record how many rows exist)."""
        for table in list(self._buffers):
            self._flush(table)
        return dict(self.rows_written)

    def append(self, table: str, columns: dict[str, Any]) -> None:
        """Add one tick's rows to ``table`` (column name -> array, or -> scalar for one row)."""
        self._buffers.setdefault(table, []).append(to_arrow(table, columns))
        self._ticks_buffered[table] = self._ticks_buffered.get(table, 0) + 1
        if self._ticks_buffered[table] >= self._row_group_ticks:
            self._flush(table)

    def write_part(self, folder: str, part: str, columns: dict[str, Any]) -> None:
        """Write one part file ``folder/part-PART.parquet`` of the table ``folder`` (for
        partitioned, opt-in tables)."""
        directory = self.tmp_dir / folder
        directory.mkdir(exist_ok=True)
        table = to_arrow(folder, columns)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self._metadata})
        pq.write_table(table, directory / f"part-{part}.parquet", compression="zstd")

    def _flush(self, table: str) -> None:
        chunks = self._buffers.get(table)
        if not chunks:
            return
        arrow = pa.concat_tables(chunks).combine_chunks()
        arrow = arrow.replace_schema_metadata(self._metadata)
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(self.tmp_dir / f"{table}.parquet", arrow.schema, compression="zstd")
            self._writers[table] = writer
        writer.write_table(arrow)
        self.rows_written[table] = self.rows_written.get(table, 0) + arrow.num_rows
        self._buffers[table] = []
        self._ticks_buffered[table] = 0

    def _close_tables(self) -> None:
        for table in list(self._buffers):
            self._flush(table)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Close every table, write the manifest, and publish the run directory."""
        self._close_tables()
        (self.tmp_dir / "checkpoint.pkl").unlink(missing_ok=True)  # only a partial run needs one
        write_manifest(self.tmp_dir, {**manifest, "status": "complete"})
        if self.final_dir.exists():  # an empty folder the user named with --out
            self.final_dir.rmdir()
        os.replace(self.tmp_dir, self.final_dir)
        return self.final_dir

    def abort(self, manifest: dict[str, Any]) -> Path:
        """Leave the partial run hidden, with a manifest saying why it stopped."""
        try:
            self._close_tables()
        finally:
            write_manifest(self.tmp_dir, manifest)
        return self.tmp_dir


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` through a temporary file, so it is whole or absent."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"format_version": FORMAT_VERSION, **manifest}, indent=2, default=str))
    os.replace(tmp, directory / MANIFEST)


def check_run_dir_free(path: Path) -> None:
    """Raise :class:`RunDirectoryError` unless ``path`` is absent or an empty directory."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirectoryError(f"run directory {str(path)!r} already exists and is not empty; choose another --out")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise RunDirectoryError(f"cannot write under {str(parent)!r}: permission denied")


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


def read_config_metadata(parquet_path: str | Path) -> dict[str, Any]:
    """The resolved config stored in a table's Parquet metadata."""
    metadata = pq.read_schema(parquet_path).metadata or {}
    return json.loads(metadata[CONFIG_METADATA_KEY])
