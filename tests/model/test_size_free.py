"""Intensive figures do not depend on N: the same world at two sizes gives the same answers.

The population is N / region_users regions of the same cities (population.region_users), and
fraudsters learn from a probe of fixed size, so conversions, reach, shares and per-user rates
(absolute figures scaled by 1.289e9 / N) agree between one region and three, within each
target's tolerance. Scaled down to what the suite affords: regions of 20k users in 10 cities
(the default's are 200k in 100), 30 ticks, three seeds per size. A contrast run with the cities
growing with N (one region holding everyone, as before regions) shows the check can fail.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from weishang.model.config import load_config
from weishang.model.run import run_scenario
from weishang.model.study.validation import load_targets, validate_run

REGION = 20_000
SMALL_WORLD = ["population.n_cities=10", f"population.region_users={REGION}", "run.n_ticks=30",
               'run.backend="numpy"', 'output.transactions="none"']
SEEDS = (1, 2, 3)
#: targets too rare to compare at this size: analytics adopters (a handful of merchants), the
#: risk figures (measured past a 30-tick cold start), the viral tail and yearly counts of bans
NOISY = {"analytics_gmv_growth", "analytics_turnover_gain", "interception_qr", "interception_mini_program",
         "interception_cross_border", "false_positive_rate", "reach_l3", "bans_per_year", "report_response_minutes"}


def figures(tmp_path, n_users: int, region_users: int, seed: int) -> dict[str, float]:
    config = load_config(overrides=[*SMALL_WORLD, f"population.n_users={n_users}", f"run.seed={seed}",
                                    f"population.region_users={region_users}"])
    run = run_scenario(config, tmp_path / f"n{n_users}-r{region_users}-s{seed}").run_dir
    table = validate_run(run).filter((pl.col("kind") == "target") & pl.col("simulated").is_not_null())
    return dict(zip(table["target"], table["simulated"]))


def mean_figures(tmp_path, n_users: int, region_users: int) -> dict[str, float]:
    runs = [figures(tmp_path, n_users, region_users, seed) for seed in SEEDS]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0] if all(k in r for r in runs)}


def misses(a: dict[str, float], b: dict[str, float]) -> dict[str, tuple[float, float, float]]:
    """Targets whose values differ by more than the target's tolerance (half its band)."""
    out = {}
    for t in load_targets():
        if t.kind != "target" or t.id in NOISY or t.high is None or t.id not in a or t.id not in b:
            continue
        tolerance = (t.high - t.low) / 2
        if abs(a[t.id] - b[t.id]) > tolerance:
            out[t.id] = (a[t.id], b[t.id], tolerance)
    return out


@pytest.fixture(scope="module")
def one_region(tmp_path_factory):
    return mean_figures(tmp_path_factory.mktemp("size"), REGION, REGION)


def test_intensive_figures_agree_between_one_region_and_three(one_region, tmp_path):
    three_regions = mean_figures(tmp_path, 3 * REGION, REGION)
    compared = [t.id for t in load_targets() if t.kind == "target" and t.id not in NOISY and t.high is not None]
    assert len(set(compared) & set(one_region) & set(three_regions)) >= 15
    assert misses(one_region, three_regions) == {}


def test_cities_that_grow_with_n_change_the_answers(one_region, tmp_path):
    """Before regions: three times the users in the same ten cities (each three times larger)."""
    grown = {k: v for k, v in figures(tmp_path, 3 * REGION, 3 * REGION, SEEDS[0]).items()}
    assert misses(one_region, grown) != {}
