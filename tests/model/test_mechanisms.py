"""Direction tests: a stronger lever moves its outcome the right way (small N, fixed seeds).

Both runs of a pair share every random draw the lever does not touch (common random numbers),
so a difference in the outcome is the lever's effect, not noise.
"""

import pytest

from weishang.model.config import load_config
from weishang.model.run import run_scenario

BASE = ["population.n_users=8000", "population.n_cities=4", "run.n_ticks=6", 'run.backend="numpy"',
        "merchants.post_rate=0.6", "merchants.traffic_cost_per_post=10.95"]  # volumes and costs the tests were sized
#: for (a post a day at the default 900 CNY a post would ruin these merchants), whatever the calibrated default
#: channel shares other than Moments and external links, fixed so a test can trade the two
SHARES = ["channels.share_official_account=0.2", "channels.share_search=0.25", "channels.share_groups=0.1",
          "channels.share_live_stream=0.1", "channels.share_video_account=0.0"]


def summary(tmp_path, name, *overrides):
    config = load_config(overrides=[*BASE, *overrides])
    return run_scenario(config, tmp_path / name).summary


@pytest.mark.parametrize("lever,low,high,outcome", [
    # the induced-sharing ban removes onward reach of inducement posts
    ("platform.induced_sharing_ban", "true", "false", "reach_l2_per_post"),
    # more trust in system recommendations converts more searchers
    ("cascade.trust_stranger", "0.05", "0.4", "conversion_system_rec"),
    # a live demonstration converts better
    ("channels.live_conversion_boost", "1.0", "3.0", "conversion_live_stream"),
    # a stronger price preference in search ranking sends searchers to cheaper offers
    ("channels.search_price_weight", "3.0", "0.0", "aov_search"),
    # quality content keeps more viewers, so more of them buy
    ("cascade.retention_content", "0.2", "0.6", "conversion_friend_rec"),
])
def test_lever_moves_outcome(tmp_path, lever, low, high, outcome):
    weak = summary(tmp_path, "weak", f"{lever}={low}")
    strong = summary(tmp_path, "strong", f"{lever}={high}")
    assert strong[outcome] > weak[outcome]


def test_group_downweight_cuts_big_group_traffic(tmp_path):
    import polars as pl

    def group_visits(name, weight):
        # groups of 286 on average: a threshold of 100 puts most of them over it
        config = load_config(overrides=[*BASE, "platform.group_downweight_threshold=100",
                                        f"platform.group_downweight={weight}"])
        run = run_scenario(config, tmp_path / name).run_dir
        return pl.read_parquet(run / "ticks.parquet")["visits_groups"].sum()

    assert group_visits("mild", 1.0) > group_visits("harsh", 0.1)


def test_external_link_steps_cut_link_traffic(tmp_path):
    import polars as pl

    def link_visits(name, weights):
        config = load_config(overrides=[*BASE, *SHARES, "channels.share_external_link=0.3", "channels.share_moments=0.05",
                                        "merchants.post_rate=3.0", f"platform.external_link_weights={weights}"])
        run = run_scenario(config, tmp_path / name).run_dir
        return pl.read_parquet(run / "ticks.parquet")["visits_external_link"].sum()

    assert link_visits("flat", "[1.0, 1.0, 1.0]") > link_visits("stepped", "[1.0, 0.3, 0.05]")


def test_external_link_orders_are_paid_outside_wechat(tmp_path):
    base = summary(tmp_path, "few", *SHARES, "channels.share_external_link=0.0", "channels.share_moments=0.35")
    many = summary(tmp_path, "many", *SHARES, "channels.share_external_link=0.3", "channels.share_moments=0.05")
    assert many["official_share_of_value"] < base["official_share_of_value"]


def test_common_random_numbers_one_rule_leaves_other_draws_alone(tmp_path):
    import polars as pl

    def tick0(name, *extra):
        run = run_scenario(load_config(overrides=[*BASE, "run.n_ticks=1", *extra]), tmp_path / name).run_dir
        return pl.read_parquet(run / "cascades.parquet").sort("cascade_key")

    stocked = "merchants.initial_demand=1000"  # no stock-outs: every purchase the cascade draws is filled
    base = tick0("base", stocked)
    other = tick0("stranger", stocked, "cascade.p_buy_stranger=0.6")
    # the changed rule moves level-3 purchases only: every post, every exposure and every
    # purchase at levels 1 and 2 are the same draws
    same = ["cascade_key", "channel", "exposures_l1", "exposures_l2", "exposures_l3", "buys_l1", "buys_l2", "shares_l1"]
    assert base.select(same).equals(other.select(same))
    assert other["buys_l3"].sum() > base["buys_l3"].sum()
