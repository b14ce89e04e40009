"""Each lever's paired effect against the baseline, as a Markdown table (from a sweep's runs.parquet).

    weishang sweep experiments/sweeps/levers.toml --out results/levers --workers 2
    .venv/bin/python experiments/lever_effects.py results/levers > docs/levers-table.md

Per scenario: the relative change of each outcome against ``baseline``, paired over the common
seeds, with its 95% t interval (the outcome's change in percentage points for shares). A cell is
marked ``=`` where every replicate gave exactly the baseline's value.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl

from weishang.model.effects import t_interval

#: outcome column of runs.parquet -> (label, a share: its change in points, not percent)
OUTCOMES = {"gmv": ("GMV", False), "official_share_of_value": ("official share", True),
            "gmv_external_link": ("external-link GMV", False), "gmv_groups": ("group GMV", False),
            "gmv_live_stream": ("live GMV", False), "profit": ("profit", False), "exits": ("exits", False),
            "removed": ("removed", False), "report_response_minutes": ("report response", False),
            "compliant_survival_per_year": ("compliant survival", True),
            "fraud_intercepted": ("fraud caught", False), "false_positives": ("false positives", False)}


def cell(diff: np.ndarray, base: np.ndarray, share: bool) -> str:
    if not np.any(diff):
        return "="
    if share:
        mean, low, high = t_interval(diff * 100)
        return f"{mean:+.2f} pt [{low:+.2f}, {high:+.2f}]"
    mean, low, high = t_interval(diff / base.mean() * 100) if base.mean() else (np.nan, np.nan, np.nan)
    return f"{mean:+.1f}% [{low:+.1f}, {high:+.1f}]"


def main(sweep_dir: str) -> None:
    runs = pl.read_parquet(f"{sweep_dir}/runs.parquet").filter(pl.col("status") == "complete")
    base = runs.filter(pl.col("scenario") == "baseline").sort("replicate")
    header = "| scenario | " + " | ".join(label for label, _ in OUTCOMES.values()) + " |"
    print(header)
    print("|---" * (len(OUTCOMES) + 1) + "|")
    for scenario in sorted(set(runs["scenario"]) - {"baseline"}):
        mine = runs.filter(pl.col("scenario") == scenario).sort("replicate").join(
            base, on="replicate", suffix="_base")
        cells = [cell((mine[c] - mine[f"{c}_base"]).to_numpy().astype(float), mine[f"{c}_base"].to_numpy()
                      .astype(float), share) for c, (_, share) in OUTCOMES.items()]
        print(f"| {scenario} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
