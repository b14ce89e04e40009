"""The held-out lever test: lever effects the source states, predicted by the calibration ensemble.

No lever effect was matched by the ensemble (``weishang calibrate --ensemble``: only the default's
levels), so each of these is a prediction out of sample. The SPEC states three policies'
effects as directions:

* "The platform bans induced sharing, which pushes merchants toward content marketing" (section
  2): lifting the ban (``no_inducement_ban``) leaves fewer merchants marketing with content;
* "Groups above 500 members are down-weighted in traffic, pushing merchants to smaller, finer
  groups" (section 4): a stricter down-weighting (``group_downweight_strict``, above 200) makes
  merchants split more groups;
* "External links get stepwise down-weighting, keeping the transaction loop inside" (section 8):
  lifting it (``external_links_open``) lowers the official payment channel's share of value.

For each: the effect (paired by member and seed) with its seed interval and parameter range
(:func:`weishang.model.study.effects.two_level`), and in how many members it has the stated sign.

    .venv/bin/python experiments/held_out_levers.py results/ensemble_levers [--markdown]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

from weishang.model.study.effects import two_level

#: scenario -> (what the SPEC states, the per-run figure, the sign of the stated effect)
STATED = {
    "no_inducement_ban": ("the ban pushes merchants toward content marketing", "content_share", -1),
    "group_downweight_strict": ("down-weighting large groups pushes merchants to smaller groups", "groups_split", +1),
    "external_links_open": ("down-weighting external links keeps the loop inside", "official_share_of_value", -1),
}
LABELS = {"content_share": "merchants marketing with content (share, points)",
          "groups_split": "groups split into smaller parts", "official_share_of_value": "official share of value (points)"}


def per_run(sweep: Path) -> pl.DataFrame:
    """One row per run: scenario, member, replicate and the three figures."""
    runs = pl.read_parquet(sweep / "runs.parquet").filter(pl.col("status") == "complete")
    ticks = pl.read_parquet(sweep / "ticks" / "**" / "*.parquet", hive_partitioning=True)
    figures = ticks.group_by("scenario", "point", "replicate").agg(
        (pl.col("n_style_content").sort_by("tick").last() / pl.col("n_active_merchants").sort_by("tick").last())
        .alias("content_share"),
        pl.col("n_groups_split").sum().cast(pl.Float64).alias("groups_split"))
    return runs.select("scenario", "point", "member", "replicate", "official_share_of_value").join(
        figures.with_columns(pl.col("point").cast(pl.Int64), pl.col("replicate").cast(pl.Int64)),
        on=["scenario", "point", "replicate"])


def main() -> None:
    sweep = Path(sys.argv[1])
    table = per_run(sweep)
    base = table.filter(pl.col("scenario") == "baseline")
    rows = []
    for scenario, (statement, figure, sign) in STATED.items():
        pairs = table.filter(pl.col("scenario") == scenario).join(base, on=["member", "replicate"], suffix="_base")
        if pairs.height == 0:
            continue
        scale = 100.0 if figure != "groups_split" else 1.0  # shares in points
        diff = pairs.with_columns(((pl.col(figure) - pl.col(f"{figure}_base")) * scale).alias("d"))
        wide = diff.pivot(on="replicate", index="member", values="d").sort("member")
        values = wide.drop("member").to_numpy().astype(float)
        mean, seed_half, param_half = two_level(values)
        agree = int((np.sign(values.mean(axis=1)) == sign).sum())
        rows.append({"lever": scenario, "stated": statement, "figure": LABELS[figure], "effect": mean,
                     "seed_low": None if seed_half is None else mean - seed_half,
                     "seed_high": None if seed_half is None else mean + seed_half,
                     "param_low": None if param_half is None else mean - param_half,
                     "param_high": None if param_half is None else mean + param_half,
                     "members_agreeing": f"{agree} of {values.shape[0]}",
                     "predicted": bool(sign * mean > 0 and seed_half is not None and sign * (mean - sign * seed_half) > 0)})
    result = pl.DataFrame(rows)
    if "--markdown" in sys.argv:
        print("| lever | the SPEC states | figure | effect | seed 95% | parameter range | members with that sign | predicted |")
        print("|---|---|---|---|---|---|---|---|")
        for r in result.iter_rows(named=True):
            print(f"| {r['lever']} | {r['stated']} | {r['figure']} | {r['effect']:+.2f} | "
                  f"{r['seed_low']:+.2f} .. {r['seed_high']:+.2f} | {r['param_low']:+.2f} .. {r['param_high']:+.2f} | "
                  f"{r['members_agreeing']} | {'yes' if r['predicted'] else 'no'} |")
    else:
        with pl.Config(tbl_width_chars=220, fmt_str_lengths=60):
            print(result)
    result.write_parquet(sweep / "held_out_levers.parquet")


if __name__ == "__main__":
    main()
