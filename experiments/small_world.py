"""How far a small world's figures are from the calibrated world's: the factors
``weishang.model.study.small_world.MEASURED`` states (issue 30, "small worlds").

    weishang sweep experiments/sweeps/validation.toml --out results/validation --workers 2
    python experiments/small_world.py results/validation            # 20k users, seeds 1-3

Per user and day: GMV, fraud loss (the value of fraud that passed) and fraudulent payments, at
20k users with the default's 100 cities and with 10 (the calibrated density), over 30 days and
over 90 (so size and length are told apart), against the mean of the validation sweep's runs
(200k x 90 days) over all 90 days and over their first 30.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from weishang.model.config import load_config
from weishang.model.run import run_scenario


def per_user_day(ticks: pl.DataFrame, users: int, days: int | None = None) -> dict[str, float]:
    """The figures per user and day over the first ``days`` ticks (all when None)."""
    ticks = ticks.sort("tick").head(days) if days else ticks
    days = ticks.height
    return {"GMV per user-day": ticks["gmv"].sum() / users / days,
            "fraud loss per user-day": ticks["fraud_loss"].sum() / users / days,
            "fraud payments per user-day": ticks["n_fraud"].sum() / users / days}


def small(extra: list[str], ticks: int, out: Path) -> dict[str, float]:
    rows = []
    for seed in (1, 2, 3):
        config = load_config(overrides=["population.n_users=20000", f"run.n_ticks={ticks}", f"run.seed={seed}",
                                        'output.transactions="none"', *extra])
        run = run_scenario(config, out / f"{len(extra)}-{ticks}-{seed}").run_dir
        rows.append(per_user_day(pl.read_parquet(run / "ticks.parquet"), 20_000))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "ticks").is_dir():
        print("usage: python experiments/small_world.py SWEEP_DIR (a 200k validation sweep)", file=sys.stderr)
        return 2
    parts = sorted((Path(argv[0]) / "ticks").glob("scenario=*/point=*/replicate=*"))
    tables = [pl.read_parquet(p / "*.parquet") for p in parts]
    reference = {days: {k: float(np.mean([per_user_day(t, 200_000, days)[k] for t in tables]))
                        for k in per_user_day(tables[0], 200_000)} for days in (30, 90)}
    with tempfile.TemporaryDirectory() as tmp:
        worlds = {(days, label): small(extra, days, Path(tmp)) for days in (30, 90)
                  for label, extra in (("100 cities", []), ("10 cities", ["population.n_cities=10"]))}
    print(f"20k users against 200k over the same days (200k's first 30 of its 90 for 30 days):")
    print(f"{'per user and day':28s} {'days':>5s} {'200k':>10s} {'20k, 100 cities':>16s} {'x':>6s} "
          f"{'20k, 10 cities':>15s} {'x':>6s}")
    for days in (30, 90):
        for k, ref in reference[days].items():
            a, b = worlds[(days, "100 cities")][k], worlds[(days, "10 cities")][k]
            print(f"{k:28s} {days:5d} {ref:10.4g} {a:16.4g} {a / ref:6.2f} {b:15.4g} {b / ref:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
