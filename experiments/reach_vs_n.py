"""How cascade reach, and the figures that follow from it, depend on the number of users N.

Runs the default scenario for a few ticks at several N under three population layouts:

* ``regions`` (the default): N / 200k regions of the same 100 cities, each a closed social world;
* ``cross_region``: the same regions, cross-city friendships made in any region
  (``population.cross_region_share = 1``): one connected world of cities that do not grow;
* ``cities_grow``: one region of everyone (``population.region_users = N``): 100 cities whose
  sizes grow with N, the layout before regions.

Writes one row per (layout, N, level) to ``results/reach_vs_n.parquet`` (mean exposures per post,
per post that reached the level, and the top 1% of those: the SPEC's reach measure) with the
run's intensive figures (GMV and visits per user a day, conversion on Moments), each the mean of
the seeds' runs, and plots reach and GMV per user against N to ``results/figures/reach_vs_n.png``.

    .venv/bin/python experiments/reach_vs_n.py [N ...]   # default 200k, 600k, 1M; 30 days, 2 seeds
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from weishang.model.config import load_config  # noqa: E402
from weishang.model.run import run_scenario  # noqa: E402

SIZES = [int(x) for x in sys.argv[1:]] or [200_000, 600_000, 1_000_000]
TICKS = 30
SEEDS = (1, 2)
LAYOUTS = {
    "regions": lambda n: [],
    "cross_region": lambda n: ["population.cross_region_share=1.0"],
    "cities_grow": lambda n: [f"population.region_users={n}"],
}


def measure(layout: str, n: int, seed: int, tmp: Path) -> list[dict]:
    config = load_config(overrides=[f"population.n_users={n}", f"run.n_ticks={TICKS}", 'run.backend="numpy"',
                                    'output.transactions="none"', f"run.seed={seed}", *LAYOUTS[layout](n)])
    result = run_scenario(config, tmp / f"{layout}-n{n}-s{seed}")
    cascades = pl.read_parquet(result.run_dir / "cascades.parquet")
    ticks = pl.read_parquet(result.run_dir / "ticks.parquet")
    per_user_day = {"gmv_per_user_day": float(ticks["gmv"].sum()) / n / TICKS,
                    "visits_per_user_day": float(sum(ticks[c].sum() for c in ticks.columns if c.startswith("visits_")
                                                     and c.removeprefix("visits_") in ("moments", "official_account",
                                                                                      "search"))) / n / TICKS,
                    "conversion_moments": result.summary["conversion_moments"]}
    rows = []
    for level in (1, 2, 3):
        col = cascades[f"exposures_l{level}"]
        reached = col.filter(col > 0)
        rows.append({"layout": layout, "n_users": n, "level": level, "reach_per_post": col.mean(),
                     "reach_per_reaching_post": reached.mean(), "top1pct_reach": reached.quantile(0.99),
                     "max_reach": col.max(), **per_user_day})
    print(f"{layout} N={n:,} seed {seed} done", file=sys.stderr)
    return rows


def plot(table: pl.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    styles = {"regions": dict(color="C0", marker="o"), "cross_region": dict(color="C1", marker="s"),
              "cities_grow": dict(color="C3", marker="^", linestyle="--")}
    for layout, style in styles.items():
        rows = table.filter(pl.col("layout") == layout).sort("n_users")
        for level, axis in zip((1, 2, 3), axes[:3]):
            r = rows.filter(pl.col("level") == level)
            value = "reach_per_reaching_post" if level == 1 else "top1pct_reach"
            axis.plot(r["n_users"], r[value], label=layout, **style)
        r = rows.filter(pl.col("level") == 1)
        axes[3].plot(r["n_users"], r["gmv_per_user_day"], label=layout, **style)
    titles = ["level 1: mean reach, all posts", "level 2: top 1% of posts (SPEC 3,000-5,000)",
              "level 3: top 1% of posts (SPEC 50,000+)", "GMV per user a day (CNY)"]
    sizes = sorted(set(table["n_users"]))
    for axis, title in zip(axes, titles):
        axis.set_xscale("log")
        axis.minorticks_off()
        axis.set_xticks(sizes, [f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k" for n in sizes])
        axis.set_xlabel("users N")
        axis.set_title(title, fontsize=9)
        axis.set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in LAYOUTS:
            for n in SIZES:
                for seed in SEEDS:
                    rows += measure(layout, n, seed, Path(tmp))
    keys = ["layout", "n_users", "level"]
    table = pl.DataFrame(rows).group_by(keys, maintain_order=True).mean()
    out = Path("results/reach_vs_n.parquet")
    out.parent.mkdir(exist_ok=True)
    table.write_parquet(out)
    plot(table, Path("results/figures/reach_vs_n.png"))
    with pl.Config(tbl_rows=100, tbl_width_chars=200):
        print(table.select("layout", "n_users", "level", "reach_per_reaching_post", "top1pct_reach",
                           "gmv_per_user_day", "visits_per_user_day", "conversion_moments"))


if __name__ == "__main__":
    main()
