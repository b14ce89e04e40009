"""Compare the tables of two run directories: a refactor that should not change results proves it.

For each table (ticks, merchants, cascades, the risk curve, the transactions log) it prints a content digest of
each side and, where they differ, which columns differ and how. A column whose only differences
are undefined values written as nulls on the new side (where the old side wrote 0.0, NaN or an
empty string) is reported as such, not as a change of results. Wall-clock columns are ignored.

    .venv/bin/python experiments/compare_runs.py OLD_RUN_DIR NEW_RUN_DIR

Exit code 0 when every table is identical up to such nulls, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

TABLES = ("ticks", "merchants", "cascades", "risk_curve", "transactions")
#: wall-clock columns: the one thing allowed to differ between identical runs
WALL_CLOCK = {"seconds"}


def read(run_dir: Path, name: str) -> pa.Table | None:
    path = run_dir / name
    if name == "transactions":
        return ds.dataset(path, format="parquet").to_table().sort_by("key") if path.is_dir() else None
    file = path.with_suffix(".parquet")
    return pq.read_table(file) if file.is_file() else None


def digest(table: pa.Table) -> str:
    """sha256 of the table's column names and values (not its schema metadata, nor the columns'
    order: a table whose columns were reordered holds the same results)."""
    h = hashlib.sha256()
    for name in sorted(table.column_names):
        if name not in WALL_CLOCK:
            h.update(name.encode())
            h.update(repr(table.column(name).to_pylist()).encode())
    return h.hexdigest()[:16]


def _undefined(value: object) -> bool:
    return value == "" or value == 0 or (isinstance(value, float) and math.isnan(value))


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def compare_column(old: list, new: list) -> str:
    """'same', 'nulls' (only undefined values became null) or a description of the difference."""
    if len(old) != len(new):
        return f"{len(old)} rows before, {len(new)} after"
    changed = [(a, b) for a, b in zip(old, new) if not _same(a, b)]
    if not changed:
        return "same"
    real = [(a, b) for a, b in changed if not (b is None and _undefined(a))]
    if not real:
        return "nulls"
    return f"{len(real)} values differ (e.g. {real[0][0]!r} -> {real[0][1]!r})"


def main(old_dir: str, new_dir: str) -> int:
    old_run, new_run = Path(old_dir), Path(new_dir)
    identical = True
    for name in TABLES:
        old, new = read(old_run, name), read(new_run, name)
        if old is None and new is None:
            continue
        if old is None or new is None:
            print(f"{name}: only on one side")
            identical = False
            continue
        print(f"{name}: {old.num_rows} rows, digest {digest(old)} -> {digest(new)}")
        for column in sorted(set(old.column_names) | set(new.column_names)):
            if column in WALL_CLOCK:
                continue
            if column not in new.column_names or column not in old.column_names:
                print(f"  {column}: {'dropped' if column in old.column_names else 'added'}")
                identical = False
                continue
            how = compare_column(old.column(column).to_pylist(), new.column(column).to_pylist())
            kind = (old.schema.field(column).type, new.schema.field(column).type)
            if kind[0] != kind[1]:
                print(f"  {column}: type {kind[0]} -> {kind[1]}")
            if how == "nulls":
                print(f"  {column}: undefined values are now null")
            elif how != "same":
                print(f"  {column}: {how}")
                identical = False
    print("identical up to undefined values written as null" if identical else "DIFFERENT")
    return 0 if identical else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
