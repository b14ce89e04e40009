"""Video-account adopters against the other merchants, per scenario, from a sweep's merchants table.

    .venv/bin/python experiments/video_adopters.py results/video

An adopter is a merchant that posted at least one video during the run (``video_adopter`` at its
last tick). Per scenario and replicate: the share of merchants that adopted, each group's mean
GMV per merchant over the run, and the share still in business at the end; then the mean over
replicates with a 95% t interval. Adopters are not a random group (a merchant that posts more is
likelier to have posted a video), so the gap is a description, not the effect of adopting; the
effect of the channel's rise is the paired comparison of scenarios (``lever_effects.py``).
"""

from __future__ import annotations

import sys

import duckdb
import numpy as np
import polars as pl

from weishang.model.study.effects import t_interval

QUERY = """
with last as (
    select scenario, replicate, merchant, arg_max(video_adopter, tick) as adopter, arg_max(active, tick) as active,
           sum(gmv) as gmv
    from read_parquet('{root}/merchants/**/*.parquet', hive_partitioning = true)
    group by scenario, replicate, merchant)
select scenario, replicate, adopter, count(*) as merchants, avg(gmv) as gmv_per_merchant,
       avg(active::int) as in_business
from last group by scenario, replicate, adopter order by scenario, replicate, adopter
"""


def summary(sweep_dir: str) -> pl.DataFrame:
    """One row per scenario and group (adopters or not) with each figure's mean and interval."""
    per_run = duckdb.sql(QUERY.format(root=sweep_dir)).pl()
    shares = per_run.group_by("scenario", "replicate").agg(
        (pl.col("merchants").filter(pl.col("adopter")).sum() / pl.col("merchants").sum()).alias("adopted"))
    rows = []
    for (scenario, adopter), part in per_run.group_by("scenario", "adopter", maintain_order=True):
        row: dict[str, object] = {"scenario": scenario, "adopters": adopter}
        for name in ("gmv_per_merchant", "in_business"):
            mean, low, high = t_interval(part[name].to_numpy().astype(float))
            row[name] = f"{mean:,.3g} [{low:,.3g}, {high:,.3g}]"
        adopted = shares.filter(pl.col("scenario") == scenario)["adopted"].to_numpy().astype(float)
        row["share_adopted"] = f"{np.mean(adopted):.1%}"
        rows.append(row)
    return pl.DataFrame(rows).sort("scenario", "adopters")


def main(sweep_dir: str) -> None:
    table = summary(sweep_dir)
    print("| scenario | adopters | merchants adopting | GMV per merchant [95% CI] | in business at the end [95% CI] |")
    print("|---|---|---|---|---|")
    for row in table.iter_rows(named=True):
        print(f"| {row['scenario']} | {'yes' if row['adopters'] else 'no'} | {row['share_adopted']} | "
              f"{row['gmv_per_merchant']} | {row['in_business']} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
