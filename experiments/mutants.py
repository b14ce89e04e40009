"""Planted faults: does the suite catch a broken mechanism, and would the fit have noticed?

    python experiments/mutants.py                          # every mutant -> results/mutants.parquet
    python experiments/mutants.py --only level3_view_of_level2 fee_not_deducted
    python experiments/mutants.py --list

Each mutant (:data:`MUTANTS`) is one plausible bug written by hand in a mechanism module or a
kernel: a wrong level, a flipped threshold, a dropped cost, a swapped channel. For each, a copy
of the repository gets the one edit, and then

* **killed**: the tests of :data:`TESTS` run on the copy; the mutant is killed when any fails;
* **moved**: the calibration regression's figures (:mod:`tests.calibration_reference`: the
  default on the suite's small world, 3 seeds) are measured on the copy; the mutant *moves a
  validated figure* when one of the guarded figures changes by more than 5% of its value.

The report gives the share killed, and the share killed among the mutants that move a figure
(the issue's bar: at least 90%); ``docs/mutants.md`` holds the last run. A hand-written list
rather than mutmut or cosmic-ray: those mutate every operator of a module (thousands of
mutants, most of them equivalent or in code paths no figure depends on) and need hours a
mutant-set on two cores; these are the faults a reviewer would plant, each a one-line change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the tests each mutant faces: the mechanism, kernel and planted-fault tests, the calibration
#: regression and the lever magnitudes (about two minutes; the whole suite would be five)
TESTS = ["tests/model/test_planted_faults.py", "tests/model/test_calibration_regression.py",
         "tests/model/test_mechanisms.py", "tests/model/test_payments.py", "tests/model/test_fraud_and_risk.py",
         "tests/model/test_ecosystem.py", "tests/model/test_channel_choice.py", "tests/kernels/test_cascade.py",
         "tests/model/test_video_accounts.py", "tests/kernels/test_risk.py", "tests/kernels/test_video.py",
         "tests/experiments/test_lever_magnitudes.py"]
#: a guarded figure moving by more than this share of its value is a move the fit would see
MOVE = 0.05


@dataclass(frozen=True)
class Mutant:
    """One planted fault: in ``path``, the text ``old`` (found exactly once) becomes ``new``."""

    name: str
    path: str
    old: str
    new: str
    why: str


MUTANTS = (
    Mutant("level3_view_of_level2", "model/mechanisms/cascade.py", "LevelRule(p_view=c.p_view_stranger,",
           "LevelRule(p_view=c.p_view_share,", "level 3 takes level 2's view probability"),
    Mutant("level2_buy_of_level1", "model/mechanisms/cascade.py", "LevelRule(p_view=c.p_view_share, p_buy=c.p_buy_share,",
           "LevelRule(p_view=c.p_view_share, p_buy=c.p_buy_friend,", "level 2 takes level 1's buy probability"),
    Mutant("channel_shares_swapped", "model/config.py",
           "return (self.share_moments, self.share_official_account, self.share_search,",
           "return (self.share_moments, self.share_search, self.share_official_account,",
           "the official-account and search shares swapped"),
    Mutant("fee_not_deducted", "model/mechanisms/books.py",
           "contribution = (settlement.settled * mc.margin - settlement.fees) / 100.0 - traffic_cost",
           "contribution = (settlement.settled * mc.margin) / 100.0 - traffic_cost",
           "the transaction fee not deducted from profit"),
    Mutant("holding_cost_dropped", "model/mechanisms/books.py",
           "profit = contribution - mc.fixed_cost_per_tick - inventory.holding_cost",
           "profit = contribution - mc.fixed_cost_per_tick", "holding costs not booked"),
    Mutant("traffic_cost_dropped", "model/mechanisms/books.py",
           "cost_per_post = traffic_cost_per_post(self.config, tick)", "cost_per_post = 0.0",
           "paid posts cost nothing"),
    Mutant("group_downweight_flipped", "model/mechanisms/community.py",
           "return xp.where(group_size > threshold, daily * downweight, daily)",
           "return xp.where(group_size <= threshold, daily * downweight, daily)",
           "the >500-member down-weighting penalises small groups instead"),
    Mutant("external_link_step_side", "model/mechanisms/traffic.py", 'link_share, side="right")]',
           'link_share, side="left")]', "a share at a step keeps the weight before it"),
    Mutant("buy_ignores_viewer", "kernels/cascade.py",
           "    p = p_buy * rel_buy[user].astype(np.float64) * rel_post[cascade]\n",
           "    p = p_buy * rel_post[cascade]\n", "a viewer's own propensity to buy dropped (NumPy path)"),
    Mutant("off_interest_not_thinned", "kernels/cascade.py", "    p = np.where(match, p, p * rel_off_interest)\n",
           "    p = np.where(match, p, p)\n", "off-interest viewers buy as often as matched ones"),
    Mutant("search_trusted_as_friend", "model/mechanisms/appeal.py",
           "[c.trust_stranger, c.trust_account, self.config.channels.trust_video], 1.0)",
           "[1.0, c.trust_account, self.config.channels.trust_video], 1.0)",
           "searchers trust a post as friends do"),
    Mutant("live_boost_dropped", "model/mechanisms/appeal.py",
           "np.where(posts.channel == Channel.LIVE_STREAM, self.config.channels.live_conversion_boost, 1.0)",
           "np.where(posts.channel == Channel.LIVE_STREAM, 1.0, 1.0)", "live streams convert no better"),
    Mutant("competition_inverted", "model/mechanisms/appeal.py",
           "return (ratio ** self.config.merchants.competition_elasticity)[category]",
           "return (ratio ** -self.config.merchants.competition_elasticity)[category]",
           "crowding raises appeal instead of lowering it"),
    Mutant("private_transfer_inverted", "model/mechanisms/payments.py",
           "official = ~rng.bernoulli(rng.stream_key(seed, \"payments.private_transfer\", tick), order_key,",
           "official = rng.bernoulli(rng.stream_key(seed, \"payments.private_transfer\", tick), order_key,",
           "the private-transfer draw inverted (most orders leave the official channel)"),
    Mutant("cross_border_lag_one", "model/mechanisms/settlement.py", "SETTLEMENT_LAG = np.array([0, 1, 3], dtype=np.int64)",
           "SETTLEMENT_LAG = np.array([0, 1, 1], dtype=np.int64)", "cross-border settles at T+1, not T+3"),
    Mutant("safety_stock_dropped", "model/mechanisms/inventory.py",
           "self.level = np.ceil(estimate * np.exp(mc.safety_z * sigma)).astype(np.int64)",
           "self.level = np.ceil(estimate).astype(np.int64)", "restocking without a safety margin"),
    Mutant("exit_when_profitable", "model/merchant.py", "if self.active and window_profit < 0 and draw <",
           "if self.active and window_profit > 0 and draw <", "merchants exit when they make money"),
    Mutant("removal_ignores_brand", "model/mechanisms/governance.py",
           "removed = confirmed & ((merchants.compliance == Compliance.NO_BRAND) | (merchants.violations > 1))",
           "removed = confirmed & (merchants.violations > 1)",
           "merchants without brand qualification are only rectified"),
    Mutant("risk_threshold_flipped", "model/mechanisms/risk/engine.py", "        intercepted = score > threshold\n",
           "        intercepted = score < threshold\n", "the risk engine intercepts below its threshold"),
    Mutant("laundering_at_ato_rate", "model/mechanisms/risk/fraud.py",
           "rings = self._count(cfg.laundering_per_million, FAN_IN, tick)",
           "rings = self._count(cfg.ato_per_million, FAN_IN, tick)", "laundering rings drawn at the takeover rate"),
    Mutant("video_promotion_flipped", "kernels/video.py",
           "promoted = alive & (viewers > 0) & (watchers >= thresholds[s] * viewers)",
           "promoted = alive & (viewers > 0) & (watchers < thresholds[s] * viewers)",
           "videos that fail their pool are promoted"),
    # subtler: a factor or a term of a few percent
    Mutant("retention_swapped", "model/mechanisms/appeal.py", "c.retention_content, c.retention_ad) / REFERENCE_RETENTION",
           "c.retention_ad, c.retention_content) / REFERENCE_RETENTION", "content keeps viewers as ads do, and back"),
    Mutant("inducement_boost_dropped", "model/mechanisms/appeal.py",
           "np.where(induced, c.inducement_share_boost, 1.0)", "np.where(induced, 1.0, 1.0)",
           "induced sharing spreads no further"),
    Mutant("official_view_without_open_rate", "model/mechanisms/traffic.py",
           "view[OFFICIAL_ACCOUNT] = config.channels.p_follow_account * config.community.push_open_rate",
           "view[OFFICIAL_ACCOUNT] = config.channels.p_follow_account", "every follower opens the push"),
    Mutant("link_view_of_live", "model/mechanisms/traffic.py", "view[EXTERNAL_LINK] = config.cascade.p_view_friend",
           "view[EXTERNAL_LINK] = config.channels.p_view_live", "external links seen as live streams are"),
    Mutant("holding_cost_halved", "model/mechanisms/inventory.py",
           "return self.units * unit_cost * self.config.merchants.holding_cost",
           "return self.units * unit_cost * self.config.merchants.holding_cost * 0.5", "holding costs at half"),
    Mutant("fixed_cost_dropped", "model/mechanisms/books.py",
           "profit = contribution - mc.fixed_cost_per_tick - inventory.holding_cost",
           "profit = contribution - inventory.holding_cost", "fixed costs not booked"),
    Mutant("weekly_active_linear", "model/mechanisms/community.py", "daily = 1.0 - (1.0 - weekly_active) ** (1.0 / 7.0)",
           "daily = weekly_active / 7.0", "a week's activity spread linearly over its days"),
    Mutant("group_push_not_downweighted", "model/mechanisms/community.py",
           "community.push_open_rate * platform.group_downweight, community.push_open_rate)",
           "community.push_open_rate, community.push_open_rate)", "pushes to large groups not down-weighted"),
    Mutant("analytics_match_boost_dropped", "model/mechanisms/traffic.py",
           "return xp.where(targeted[posts], tools.analytics_match_boost, 1.0)",
           "return xp.where(targeted[posts], 1.0, 1.0)", "deep analytics do not lift matched viewers"),
    Mutant("video_vouch_as_trust", "model/mechanisms/appeal.py",
           "vouch = np.where(video, self.config.channels.video_social_weight, trust)", "vouch = trust",
           "video likes weighted as trust, not the social signal"),
    Mutant("traffic_cost_growth_dropped", "model/mechanisms/books.py",
           "return mc.traffic_cost_per_post * (1.0 + mc.traffic_cost_growth) ** (tick / float(TICKS_PER_YEAR))",
           "return mc.traffic_cost_per_post", "traffic cost does not grow"),
    Mutant("virality_mean_not_one", "model/mechanisms/appeal.py",
           "appeal = np.exp(c.virality_sigma * z - c.virality_sigma**2 / 2)", "appeal = np.exp(c.virality_sigma * z)",
           "the virality factor's mean is not one"),
)


def copy_repository(dest: Path) -> Path:
    """A copy of the code and tests, importable as ``weishang`` ahead of the editable install;
    returns the folder to put first on PYTHONPATH."""
    for part in ("model", "kernels", "weishang", "tests", "experiments", "docs"):
        shutil.copytree(ROOT / part, dest / "repo" / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / "repo" / name)
    # the package as the install lays it out: weishang/, with model/ and kernels/ inside
    package = dest / "site" / "weishang"
    shutil.copytree(dest / "repo" / "weishang", package)
    (package / "model").symlink_to(dest / "repo" / "model")
    (package / "kernels").symlink_to(dest / "repo" / "kernels")
    return dest / "site"


def apply(mutant: Mutant, repo: Path) -> None:
    path = repo / mutant.path
    text = path.read_text(encoding="utf-8")
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.name}: its text is found {text.count(mutant.old)} times in "
                         f"{mutant.path} (the code moved: update the mutant)")
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


MEASURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tests.calibration_reference import measure
print(json.dumps({k: sum(v) / len(v) for k, v in measure().items()}))
"""


def run_one(mutant: Mutant | None, workdir: Path) -> dict:
    """The mutant's outcome (None: the unmutated copy, the control)."""
    site = copy_repository(workdir)
    repo = workdir / "repo"
    if mutant is not None:
        apply(mutant, repo)
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{repo}", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                           cwd=repo, env=env, capture_output=True, text=True)
    failed = [line.split(" ")[1] for line in tests.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    figures = subprocess.run([sys.executable, "-c", MEASURE, str(repo)], cwd=repo, env=env, capture_output=True,
                             text=True)
    measured = json.loads(figures.stdout.strip().splitlines()[-1]) if figures.returncode == 0 else None
    return {"mutant": mutant.name if mutant else "control", "why": mutant.why if mutant else "no change",
            "killed": tests.returncode != 0, "failed_test": failed[0] if failed else "",
            "figures": measured, "crashed": figures.returncode != 0, "seconds": time.perf_counter() - started}


def markdown(path: Path) -> str:
    """A finished run's table (``--out``) as Markdown: each mutant, whether a test killed it and
    which, and the guarded figure it moved most."""
    import polars as pl  # noqa: PLC0415

    table = pl.read_parquet(path)
    why = {m.name: (m.path, m.why) for m in MUTANTS}
    lines = ["| mutant | where | fault | killed by | largest move of a guarded figure |", "|---|---|---|---|---|"]
    for r in table.iter_rows(named=True):
        where, fault = why.get(r["mutant"], ("?", r["why"]))
        test = r["failed_test"].split("::")[-1] if r["killed"] else "**survived**"
        move = "the run crashed" if r["crashed"] else (
            f"{r['largest_move_figure']} no longer defined (NaN)" if r["largest_move"] != r["largest_move"]
            else f"{r['largest_move_figure']} {r['largest_move']:+.1%}")
        lines.append(f"| `{r['mutant']}` | `{where}` | {fault} | {test} | {move} |")
    killed, moving = int(table["killed"].sum()), table.filter(pl.col("moves_a_figure"))
    lines += ["", f"Killed {killed} of {table.height} ({killed / table.height:.0%}); of the {moving.height} that move a "
                  f"guarded figure by more than {MOVE:.0%} (or crash the run), {int(moving['killed'].sum())} killed "
                  f"({moving['killed'].mean():.0%})."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "mutants.parquet")
    parser.add_argument("--markdown", type=Path, metavar="PARQUET", help="print a finished run's table as Markdown")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:28s} {m.path:22s} {m.why}")
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        print(f"error: unknown mutant(s) {sorted(unknown)}; --list names them", file=sys.stderr)
        return 2
    import polars as pl  # noqa: PLC0415

    sys.path.insert(0, str(ROOT))
    from tests.calibration_reference import load_reference  # noqa: PLC0415

    guarded = {name: entry["mean"] for name, entry in load_reference().items() if entry["guarded"]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="weishang-mutants-") as tmp:
        control = run_one(None, Path(tmp) / "control")
        if control["killed"] or control["figures"] is None:
            print(f"the unmutated copy fails ({control['failed_test']}): fix the suite first", file=sys.stderr)
            return 1
        base = control["figures"]
        for i, mutant in enumerate(chosen):
            outcome = run_one(mutant, Path(tmp) / f"m{i}")
            figures = outcome.pop("figures")
            moves = {} if figures is None else {
                name: (figures.get(name, float("nan")) - base[name]) / abs(base[name])
                for name in guarded if base.get(name)}
            largest = max(moves.items(), key=lambda kv: abs(kv[1]) if kv[1] == kv[1] else float("inf"),
                          default=("", 0.0))
            outcome.update(largest_move_figure=largest[0], largest_move=largest[1],
                           moves_a_figure=outcome["crashed"] or any(not abs(v) <= MOVE for v in moves.values()),
                           moves=json.dumps(moves))
            rows.append(outcome)
            print(f"{mutant.name:28s} killed={outcome['killed']!s:5s} {outcome['failed_test'][:60]:60s} "
                  f"largest move {largest[0]} {largest[1]:+.1%}", flush=True)
    table = pl.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    table.write_parquet(tmp_out)
    os.replace(tmp_out, args.out)
    killed, moving = table["killed"].sum(), table.filter(pl.col("moves_a_figure"))
    print(f"killed {killed} of {table.height} ({killed / table.height:.0%}); of the {moving.height} that move a "
          f"guarded figure by more than {MOVE:.0%}: {moving['killed'].sum()} killed; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
