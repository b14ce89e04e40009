"""How far a small world's figures are from the calibrated world's: the factors
``weishang.model.small_world.MEASURED`` states (issue 30, "small worlds").

    weishang sweep experiments/sweeps/validation.toml --out results/validation --workers 2
    python experiments/small_world.py results/validation            # 20k x 30 days, seeds 1-3

Per user and day: GMV, fraud loss (the value of fraud that passed) and fraudulent payments, at
20k users x 30 days with the default's 100 cities and with 10 (the calibrated density), over the
mean of the validation sweep's runs (200k x 90 days).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from weishang.model.config import load_config
from weishang.model.run import run_scenario


def per_user_day(ticks: pl.DataFrame, users: int) -> dict[str, float]:
    days = ticks.height
    return {"GMV per user-day": ticks["gmv"].sum() / users / days,
            "fraud loss per user-day": ticks["fraud_loss"].sum() / users / days,
            "fraud payments per user-day": ticks["n_fraud"].sum() / users / days}


def small(extra: list[str], out: Path) -> dict[str, float]:
    rows = []
    for seed in (1, 2, 3):
        config = load_config(overrides=["population.n_users=20000", "run.n_ticks=30", f"run.seed={seed}",
                                        'output.transactions="none"', *extra])
        run = run_scenario(config, out / f"{len(extra)}-{seed}").run_dir
        rows.append(per_user_day(pl.read_parquet(run / "ticks.parquet"), 20_000))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "ticks").is_dir():
        print("usage: python experiments/small_world.py SWEEP_DIR (a 200k validation sweep)", file=sys.stderr)
        return 2
    parts = sorted((Path(argv[0]) / "ticks").glob("scenario=*/point=*/replicate=*"))
    big = [per_user_day(pl.read_parquet(p / "*.parquet"), 200_000) for p in parts]
    reference = {k: float(np.mean([b[k] for b in big])) for k in big[0]}
    with tempfile.TemporaryDirectory() as tmp:
        sparse, dense = small([], Path(tmp)), small(["population.n_cities=10"], Path(tmp))
    print(f"{'per user and day':30s} {'200k x 90':>12s} {'20k x 30':>12s} {'factor':>7s} {'10 cities':>12s} {'factor':>7s}")
    for k, ref in reference.items():
        print(f"{k:30s} {ref:12.4g} {sparse[k]:12.4g} {sparse[k] / ref:7.2f} {dense[k]:12.4g} {dense[k] / ref:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
