"""Video accounts' recommender levers, paired against the default point (from a grid sweep).

    weishang sweep experiments/sweeps/video_levers.toml --out results/video_levers --workers 2
    .venv/bin/python experiments/video_grid.py results/video_levers

Per grid point (social weight x public traffic share): the relative change against the point
where both are 1 (the default), replicate by replicate over the common seeds, with its 95% t
interval (stopped at -100%, the most a non-negative figure can fall), of video GMV, the mean level-1 and level-2 reach of a video post, total GMV, and the
merchants' effort on video posts and on Moments at the last tick (in points).
"""

from __future__ import annotations

import sys

import duckdb
import polars as pl

from weishang.model.study.effects import relative_change, t_interval

SOCIAL, TRAFFIC = "param.channels.video_social_weight", "param.channels.video_traffic_share"


def per_run(sweep_dir: str) -> pl.DataFrame:
    """One row per run: its grid point's parameters and the figures compared."""
    runs = pl.read_parquet(f"{sweep_dir}/runs.parquet").select("point", "replicate", SOCIAL, TRAFFIC, "gmv",
                                                                "gmv_video_account")
    reach = duckdb.sql(f"""select point, replicate, avg(exposures_l1) as reach_l1, avg(exposures_l2) as reach_l2
        from read_parquet('{sweep_dir}/cascades/**/*.parquet', hive_partitioning = true)
        where channel = 'video_account' group by point, replicate""").pl()
    effort = duckdb.sql(f"""select point, replicate, avg(effort_video_account) as effort_video,
        avg(effort_moments) as effort_moments
        from read_parquet('{sweep_dir}/ticks/**/*.parquet', hive_partitioning = true)
        where tick = (select max(tick) from read_parquet('{sweep_dir}/ticks/**/*.parquet', hive_partitioning = true))
        group by point, replicate""").pl()
    return runs.join(reach, on=["point", "replicate"]).join(effort, on=["point", "replicate"])


def effects(table: pl.DataFrame) -> list[str]:
    base = table.filter((pl.col(SOCIAL) == 1.0) & (pl.col(TRAFFIC) == 1.0)).sort("replicate")
    if base.is_empty():
        sys.exit("the grid has no point with both levers at 1.0 to compare against")
    relative = ("gmv_video_account", "reach_l1", "reach_l2", "gmv")
    points = ("effort_video", "effort_moments")
    lines = ["| social weight | traffic share | video GMV | video reach l1 | video reach l2 | GMV | effort on video | "
             "effort on Moments |", "|---" * 8 + "|"]
    for (social, traffic), part in sorted(table.group_by(SOCIAL, TRAFFIC), key=lambda kv: kv[0]):
        if social == 1.0 and traffic == 1.0:
            continue
        part = part.sort("replicate").join(base, on="replicate", suffix="_base")
        cells = []
        for name in relative:
            diff, ref = part[name] - part[f"{name}_base"], part[f"{name}_base"]
            # none of these can fall by more than all of it: the interval stops at -100%
            mean, low, high = (v * 100 for v in relative_change(diff.to_numpy().astype(float), ref.to_numpy()))
            cells.append(f"{mean:+.0f}% [{low:+.0f}, {high:+.0f}]")
        for name in points:
            mean, low, high = t_interval((part[name] - part[f"{name}_base"]).to_numpy().astype(float) * 100)
            cells.append(f"{mean:+.1f} pt [{low:+.1f}, {high:+.1f}]")
        lines.append(f"| {social:g} | {traffic:g} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print("\n".join(effects(per_run(sys.argv[1]))))
