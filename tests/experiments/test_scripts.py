"""Smoke runs of the experiment scripts at a tiny size."""

import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]


def test_reach_vs_n_writes_parquet(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "reach_vs_n.py"), "3000", "6000"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pl.read_parquet(tmp_path / "results" / "reach_vs_n.parquet")
    assert table.height == 6 and set(table["level"]) == {1, 2, 3}
    assert (table["reach_per_reaching_post"] >= table["reach_per_post"]).all()
