"""Each lever's paired effect against the baseline, as Markdown tables (from a sweep's runs.parquet).

    weishang sweep experiments/sweeps/levers.toml --out results/levers --workers 2
    .venv/bin/python experiments/lever_effects.py results/levers           # every outcome (docs/levers.md)
    .venv/bin/python experiments/lever_effects.py results/levers --summary # lever -> its outcome (README)

Per scenario: the relative change of each outcome against ``baseline``, paired over the common
seeds, with its 95% t interval (the outcome's change in percentage points for shares). A cell is
marked ``=`` where every replicate gave exactly the baseline's value. ``--summary`` gives each
lever's own outcome (:data:`OWN`: the one its file's question names), the direction the source
states or the model predicts, and whether the interval excludes zero in that direction.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl

from weishang.model.study.effects import relative_change, t_interval

#: outcome column of runs.parquet -> (label, a share: its change in points, not percent)
OUTCOMES = {"gmv": ("GMV", False), "official_share_of_value": ("official share", True),
            "gmv_external_link": ("external-link GMV", False), "gmv_groups": ("group GMV", False),
            "gmv_live_stream": ("live GMV", False), "gmv_video_account": ("video GMV", False),
            "gmv_moments": ("Moments GMV", False), "profit": ("profit", False), "exits": ("exits", False),
            "removed": ("removed", False), "report_response_minutes": ("report response", False),
            "compliant_survival_per_year": ("compliant survival", True),
            "fraud_intercepted": ("fraud caught", False), "false_positives": ("false positives", False)}

#: outcomes that can turn negative (every other one is a count, a sum of money or a share)
SIGNED = {"profit"}

#: each lever file's own outcome (what its question asks about), the sign of the change the
#: source states (or, where it states none, the model predicts), and the reason
OWN: dict[str, tuple[str, int, str]] = {
    "content_marketing": ("compliant_survival_per_year", +1, "content keeps customers (38% vs 16% retention)"),
    "data_open": ("gmv", +1, "deep data lets merchants target (analytics users +132% GMV)"),
    "external_links_open": ("official_share_of_value", -1, "the down-weighting keeps the loop inside WeChat"),
    "group_downweight_strict": ("gmv_groups", -1, "down-weighted groups reach fewer members"),
    "live_stream_push": ("gmv_live_stream", +1, "live viewers convert at 19.7%"),
    "no_inducement_ban": ("gmv", +1, "induced sharing spreads posts further (the ban protects users, at a cost)"),
    "review_capacity_low": ("report_response_minutes", +1, "fewer reviewers, longer queues"),
    "review_strict": ("removed", +1, "more detection removes more violators"),
    "risk_threshold_loose": ("fraud_intercepted", +1, "a lower threshold intercepts more"),
    "tools_adoption": ("gmv", +1, "tools lift sales (AI service, analytics)"),
    "traffic_cost_high": ("exits", +1, "rising traffic cost squeezes merchants (SPEC section 9)"),
    "transaction_fee_high": ("profit", -1, "the fee comes out of the merchants' margin"),
    "video_rise": ("gmv_video_account", +1, "more public traffic to videos sells more through them"),
}
#: outcomes shown beside each lever's own in the summary
CONTEXT = ("gmv", "official_share_of_value", "profit", "exits", "fraud_intercepted", "false_positives")


def paired(runs: pl.DataFrame, scenario: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(scenario - baseline, baseline) of one outcome, replicate by replicate."""
    base = runs.filter(pl.col("scenario") == "baseline").sort("replicate")
    mine = runs.filter(pl.col("scenario") == scenario).sort("replicate").join(base, on="replicate", suffix="_base")
    return (mine[column] - mine[f"{column}_base"]).to_numpy().astype(float), mine[f"{column}_base"].to_numpy().astype(float)


def effect(diff: np.ndarray, base: np.ndarray, share: bool, signed: bool = False) -> tuple[float, float, float]:
    """Mean and 95% interval of the change: points for shares, percent otherwise (a non-negative
    outcome's interval stops at -100%: it cannot fall by more than all of it)."""
    if share:
        return t_interval(diff * 100)
    change = relative_change(diff, base, nonnegative=not signed)
    return tuple(np.nan if v is None else v * 100 for v in change)


def cell(diff: np.ndarray, base: np.ndarray, share: bool, signed: bool = False) -> str:
    if not np.any(diff):
        return "="
    mean, low, high = effect(diff, base, share, signed)
    if share:
        return f"{mean:+.2f} pt [{low:+.2f}, {high:+.2f}]"
    return f"{mean:+.1f}% [{low:+.1f}, {high:+.1f}]"


def table(runs: pl.DataFrame, scenarios: list[str], columns: list[str]) -> list[str]:
    lines = ["| scenario | " + " | ".join(OUTCOMES[c][0] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for scenario in scenarios:
        lines.append(f"| {scenario} | " + " | ".join(cell(*paired(runs, scenario, c), OUTCOMES[c][1], c in SIGNED)
                                                   for c in columns) + " |")
    return lines


def summary(runs: pl.DataFrame, scenarios: list[str]) -> list[str]:
    """Each lever's own outcome and whether it moves the stated way with an interval excluding zero."""
    lines = ["| lever | its outcome | expected | effect [95% CI] | as expected | "
             + " | ".join(OUTCOMES[c][0] for c in CONTEXT) + " |", "|---" * (5 + len(CONTEXT)) + "|"]
    for scenario in scenarios:
        column, sign, _why = OWN[scenario]
        diff, base = paired(runs, scenario, column)
        _, low, high = effect(diff, base, OUTCOMES[column][1], column in SIGNED)
        moved = "yes" if (low > 0 if sign > 0 else high < 0) else "**no**"
        context = [cell(*paired(runs, scenario, c), OUTCOMES[c][1], c in SIGNED) for c in CONTEXT]
        lines.append(f"| {scenario} | {OUTCOMES[column][0]} | {'up' if sign > 0 else 'down'} | "
                     f"{cell(diff, base, OUTCOMES[column][1], column in SIGNED)} | {moved} | " + " | ".join(context) + " |")
    return lines


def main(sweep_dir: str, short: bool = False) -> None:
    runs = pl.read_parquet(f"{sweep_dir}/runs.parquet").filter(pl.col("status") == "complete")
    scenarios = sorted(set(runs["scenario"]) - {"baseline"})
    unknown = [s for s in scenarios if s not in OWN]
    if short and unknown:
        sys.exit(f"no named outcome for {', '.join(unknown)}: add it to OWN in {__file__}")
    print("\n".join(summary(runs, scenarios) if short else table(runs, scenarios, list(OUTCOMES))))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--summary"]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], short="--summary" in sys.argv[1:])
