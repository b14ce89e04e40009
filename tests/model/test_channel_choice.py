"""Merchants' channel choice, the share-based external-link tiers, and campaign stocking."""

import numpy as np
import polars as pl
import pytest

from weishang.model.mechanisms.channel_choice import ChannelMix, relative_payoff, shrunk_payoff, target_mix
from weishang.model.codes import Channel
from weishang.model.config import ConfigError, load_config
from weishang.model.mechanisms.inventory import Stock
from weishang.model.run import run_scenario
from weishang.model.mechanisms.traffic import external_link_weight, plan_posts

HABIT = np.array([0.3, 0.25, 0.23, 0.05, 0.1, 0.05, 0.02])


def test_shrunk_payoff_weighs_own_posts_against_the_prior():
    contribution = np.array([[300.0, 0.0, 50.0]])
    posts = np.array([[3, 0, 0]])
    prior = np.array([[200.0, 80.0, np.nan]])
    seen = shrunk_payoff(contribution, posts, prior, weight=1.0)
    # (300 + 1 * 200) / (3 + 1); the prior alone; no posts and no prior: unknown
    assert seen[0, 0] == pytest.approx(125.0)
    assert seen[0, 1] == pytest.approx(80.0)
    assert np.isnan(seen[0, 2])


GROSS = np.array([[300.0, 350.0, 120.0, 150.0, 320.0, 140.0, 200.0]])
SEEN = GROSS - 100.0  # every channel's post costs 100


def test_target_is_the_habit_when_payoffs_are_what_merchants_are_used_to():
    reference = relative_payoff(HABIT, SEEN, GROSS)[0]
    assert target_mix(HABIT, SEEN, GROSS, 2.0, reference)[0] == pytest.approx(HABIT)
    # no response: the habit whatever the payoffs
    assert target_mix(HABIT, SEEN * [1, 1, 5, 1, 1, 1, 1], GROSS, 0.0, reference)[0] == pytest.approx(HABIT)


def test_a_cost_every_channel_pays_alike_leaves_the_mix_alone():
    reference = relative_payoff(HABIT, SEEN, GROSS)[0]
    dearer = GROSS - 1000.0  # net payoffs all negative now
    assert target_mix(HABIT, dearer, GROSS, 2.0, reference)[0] == pytest.approx(HABIT)


def test_a_channel_that_pays_less_than_usual_loses_effort_and_unknown_channels_keep_theirs():
    reference = relative_payoff(HABIT, SEEN, GROSS)[0]
    cut = SEEN.copy()
    cut[0, Channel.EXTERNAL_LINK] -= 100.0  # a rule cuts what an external link earns
    target = target_mix(HABIT, cut, GROSS, 1.0, reference)[0]
    assert target[Channel.EXTERNAL_LINK] < HABIT[Channel.EXTERNAL_LINK]
    assert target.sum() == pytest.approx(1.0)
    unknown = SEEN.copy()
    unknown[0, Channel.GROUPS] = np.nan
    kept = target_mix(HABIT, unknown, GROSS, 1.0, reference)[0][Channel.GROUPS]
    assert kept == pytest.approx(HABIT[Channel.GROUPS], rel=0.2)


def test_mix_moves_part_of_the_way_toward_its_target_and_only_for_merchants_in_business():
    mix = ChannelMix(n_merchants=2, n_categories=1, habit=tuple(HABIT), reference=[0.0] * 7)
    posts = np.array([[10, 10, 10, 10, 10, 10, 10]] * 2)
    gross = posts * np.array([100.0, 100.0, 100.0, 100.0, 100.0, 1000.0, 100.0])
    traffic = posts * 50.0
    active = np.array([True, False])
    mix.adapt(active, np.array([0, 0]), posts, gross, traffic, response=1.0, imitation=3.0, rate=0.5)
    assert mix.mix[0, Channel.EXTERNAL_LINK] > HABIT[Channel.EXTERNAL_LINK]
    assert mix.mix[0].sum() == pytest.approx(1.0)
    assert mix.mix[1] == pytest.approx(HABIT)  # gone: its mix stays
    # half the way: the new share lies strictly between the habit and the full target
    per_post = gross[:1] / posts[:1]
    full = target_mix(HABIT, per_post - 50.0, per_post, 1.0, np.zeros(7))[0, Channel.EXTERNAL_LINK]
    assert HABIT[Channel.EXTERNAL_LINK] < mix.mix[0, Channel.EXTERNAL_LINK] < full


def test_each_merchant_draws_channels_from_its_own_mix():
    mix = np.zeros((2, 7))
    mix[0, Channel.SEARCH] = 1.0
    mix[1, Channel.OFFICIAL_ACCOUNT] = 1.0
    posts = plan_posts(np.array([5, 5]), np.array([10, 20]), np.array([0, 0]), np.array([0, 0]), mix, seed=1, tick=0)
    assert (posts.channel[posts.merchant == 0] == Channel.SEARCH).all()
    assert (posts.channel[posts.merchant == 1] == Channel.OFFICIAL_ACCOUNT).all()
    assert posts.paid.all()


def test_one_row_of_shares_draws_as_a_mix_of_identical_rows():
    shares = tuple(HABIT)
    args = (np.array([7, 3, 9]), np.array([1, 2, 3]), np.array([0, 1, 2]), np.array([1, 1, 1]))
    one = plan_posts(*args, shares, seed=4, tick=2)
    rows = plan_posts(*args, np.tile(HABIT, (3, 1)), seed=4, tick=2)
    assert (one.channel == rows.channel).all()


def test_external_link_tiers_step_by_the_share_of_links():
    share = np.array([0.0, 0.19, 0.2, 0.49, 0.5, 1.0])
    weights = external_link_weight(share, [0.2, 0.5], [1.0, 0.5, 0.2])
    assert weights.tolist() == [1.0, 1.0, 0.5, 0.5, 0.2, 0.2]


def test_external_link_tiers_must_increase():
    with pytest.raises(ConfigError, match="external_link_share_steps"):
        load_config(overrides=["platform.external_link_share_steps=[0.5, 0.2]"])


SMALL = ["population.n_users=20000", "population.n_cities=4", "run.n_ticks=35", 'run.backend="numpy"']


def run_small(tmp_path, name, *overrides):
    return run_scenario(load_config(overrides=[*SMALL, *overrides]), tmp_path / name)


def ticks_of(run):
    return pl.from_arrow(run.table("ticks"))


def test_lifting_the_external_link_tiers_moves_gmv_out_of_the_official_channel(tmp_path):
    """At the calibrated post rate (a post a month) the tiers bind: most merchants' links are
    a large share of their few paid posts."""
    stepped = run_small(tmp_path, "stepped")
    lifted = run_small(tmp_path, "lifted", "platform.external_link_weights=[1.0, 1.0, 1.0]")
    ticks = {name: ticks_of(run) for name, run in (("stepped", stepped), ("lifted", lifted))}
    assert ticks["lifted"]["visits_external_link"].sum() > ticks["stepped"]["visits_external_link"].sum()
    assert ticks["lifted"]["gmv_external_link"].sum() > ticks["stepped"]["gmv_external_link"].sum()
    assert lifted.summary["official_share_of_value"] < stepped.summary["official_share_of_value"]
    # and merchants move effort toward links once they pay
    assert ticks["lifted"]["effort_external_link"][-1] > ticks["stepped"]["effort_external_link"][-1]


def test_a_costlier_channel_loses_effort(tmp_path):
    cheap = ticks_of(run_small(tmp_path, "cheap"))
    dear = ticks_of(run_small(tmp_path, "dear", "channels.traffic_cost_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 1.0]"))
    assert dear["effort_external_link"][-1] < cheap["effort_external_link"][-1]
    assert dear["effort_external_link"][-1] < load_config().channels.share_external_link  # below its habit
    # the books charge the channel's weight: the same posts cost more
    assert dear["cost_traffic"].sum() > cheap["cost_traffic"].sum()


def test_no_channel_response_keeps_every_mix_at_the_habit(tmp_path):
    ticks = ticks_of(run_small(tmp_path, "still", "merchants.channel_response=0"))
    habit = load_config().channels.channel_shares()
    last = [ticks[f"effort_{label}"][-1] for label in Channel.labels()]
    assert last == pytest.approx(habit)


def stock(**merchants):
    config = load_config(overrides=[f"merchants.{k}={v}" for k, v in merchants.items()])
    return Stock(3, config)


def test_stock_forecasts_campaigns_apart_from_the_trickle_between_them():
    s = stock(forecast_alpha=0.5, initial_post_demand=10, initial_demand=2, safety_z=0)
    sold, lost = np.array([30, 0, 4]), np.array([10, 0, 0])
    posts = np.array([2, 0, 0])
    s.restock(sold, lost, posts, np.zeros(3), np.zeros(3), seed=1, tick=0)
    # a post day updates the per-post forecast (40 units over 2 posts, averaged on a log scale),
    # the others the daily one
    per_post = np.expm1(0.5 * np.log1p(20) + 0.5 * np.log1p(10))
    assert s.per_post == pytest.approx([per_post, 10.0, 10.0])
    assert s.forecast.tolist() == [2.0, 1.0, 3.0]
    # a viral day moves the per-post forecast far less than an arithmetic average would
    assert per_post < 15.0
    # with no forecast error: stock for one campaign and the cover period's trickle
    cover = load_config().merchants.stock_cover_ticks
    assert s.level.tolist() == [int(np.ceil(per_post + 2 * cover)), int(np.ceil(10 + cover)),
                                int(np.ceil(10 + 3 * cover))]


def test_the_supplier_ships_beyond_the_shelf_and_the_shelf_never_goes_negative():
    s = stock(supplier_resupply=2)
    s.units[:] = [5, 5, 5]
    s.level[:] = [10, 0, 3]
    assert s.available().tolist() == [25, 5, 11]
    shelf = s.sell(np.array([20, 3, 11]))
    assert shelf.tolist() == [5, 3, 5] and s.units.tolist() == [0, 2, 0]


def test_buyers_who_wait_for_the_next_shipment_are_not_lost_sales(tmp_path):
    scarce = ["merchants.supplier_resupply=0", "merchants.initial_post_demand=0", "merchants.initial_demand=0"]
    lose = run_small(tmp_path, "lose", *scarce, "merchants.p_wait_backorder=0", "run.n_ticks=5")
    wait = run_small(tmp_path, "wait", *scarce, "merchants.p_wait_backorder=1", "run.n_ticks=5")
    assert ticks_of(lose)["units_lost"].sum() > 0
    assert ticks_of(wait)["units_lost"].sum() == 0
    assert ticks_of(wait)["gmv"].sum() > ticks_of(lose)["gmv"].sum()
