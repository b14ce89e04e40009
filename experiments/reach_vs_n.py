"""How cascade reach per level scales with the number of users N.

Runs the default scenario for a few ticks at several N and writes one row per (N, level) to
``results/reach_vs_n.parquet``: mean exposures per post, and per post that reached the level.

    .venv/bin/python experiments/reach_vs_n.py [N ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

from weishang.model.config import load_config
from weishang.model.run import run_scenario

SIZES = [int(x) for x in sys.argv[1:]] or [50_000, 200_000, 1_000_000]
TICKS = 5


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            config = load_config(overrides=[f"population.n_users={n}", f"run.n_ticks={TICKS}", 'run.backend="numpy"'])
            run = run_scenario(config, Path(tmp) / f"n{n}").run_dir
            cascades = pl.read_parquet(run / "cascades.parquet")
            for level in (1, 2, 3):
                col = cascades[f"exposures_l{level}"]
                rows.append({"n_users": n, "level": level, "reach_per_post": col.mean(),
                             "reach_per_reaching_post": col.filter(col > 0).mean(),
                             "p99_reach": col.quantile(0.99), "max_reach": col.max()})
            print(f"N={n:,} done", file=sys.stderr)
    out = Path("results/reach_vs_n.parquet")
    out.parent.mkdir(exist_ok=True)
    table = pl.DataFrame(rows)
    table.write_parquet(out)
    print(table)


if __name__ == "__main__":
    main()
