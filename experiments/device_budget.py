"""Print what a tick asks of a GPU, per mechanism, counted on the strict CuPy stand-in.

    python experiments/device_budget.py                      # 20k and 200k users, 8 ticks
    python experiments/device_budget.py --users 20000 --ticks 15 --out results/device_budget.parquet

For each mechanism of the tick plan (and ``rows``, the tables' rows): array operations a tick
(each at least one kernel launch on a GPU), explicit device-to-host transfers a tick (each a
synchronisation) and their bytes, and CuPy's implicit size synchronisations (boolean masks,
``nonzero``, ``unique``): mean over the ticks and the most in one tick. Run from the repository
root (the stand-in lives in ``tests/``). The counts do not depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.device_budget import measure  # noqa: E402


def table(n_users: int, n_ticks: int) -> pl.DataFrame:
    rows = [vars(t) for t in measure(n_users, n_ticks)]
    frame = pl.DataFrame(rows).with_columns(pl.lit(n_users).alias("n_users"))
    order = {name: i for i, name in enumerate(frame["mechanism"].unique(maintain_order=True))}
    per_tick = frame.group_by("n_users", "mechanism").agg(
        pl.col("launches").mean().alias("launches_mean"), pl.col("launches").max().alias("launches_max"),
        pl.col("transfers").mean().alias("transfers_mean"), pl.col("transfers").max().alias("transfers_max"),
        pl.col("transfer_bytes").mean().alias("bytes_mean"), pl.col("transfer_bytes").max().alias("bytes_max"),
        pl.col("size_syncs").mean().alias("size_syncs_mean"), pl.col("size_syncs").max().alias("size_syncs_max"))
    return per_tick.sort(pl.col("mechanism").replace_strict(order))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--ticks", type=int, default=8)
    parser.add_argument("--out", type=Path, help="also write the table as Parquet")
    args = parser.parse_args()
    frames = [table(n, args.ticks) for n in args.users]
    result = pl.concat(frames)
    with pl.Config(tbl_rows=200, tbl_cols=20, tbl_width_chars=200):
        for frame in frames:
            total = frame.select(pl.exclude("n_users", "mechanism").sum())
            print(frame)
            print("a tick in all:", total.to_dicts()[0])
    if args.out:
        result.write_parquet(args.out)


if __name__ == "__main__":
    main()
