"""CommerceModel is a Mesa citizen: Mesa's own tools drive it (issue 15)."""

import mesa
import pytest

from weishang.model.commerce import CommerceModel
from weishang.model.config import ConfigError
from weishang.model.merchant import Merchant

SMALL = {"population.n_users": 3000, "population.n_cities": 4, "run.n_ticks": 3, "run.backend": "numpy"}


def test_constructed_the_mesa_way_with_a_seed_and_overrides(small_config):
    model = CommerceModel(small_config, seed=7)
    assert model.config.run.seed == 7 and model._seed == 7
    assert CommerceModel(small_config).config.run.seed == small_config.run.seed  # the config's seed otherwise
    by_keyword = CommerceModel(**SMALL, cascade__p_view_friend=0.2)
    assert by_keyword.config.cascade.p_view_friend == 0.2 and by_keyword.config.population.n_users == 3000
    with pytest.raises(ConfigError, match="unknown section"):
        CommerceModel(**{"nosuch.key": 1})


def test_run_model_stops_after_n_ticks_and_the_datacollector_has_every_tick():
    model = CommerceModel(**SMALL)
    assert model.gmv is None  # no tick yet
    model.run_model()
    assert model.steps == 3 and not model.running
    frame = model.datacollector.get_model_vars_dataframe()
    assert len(frame) == 3 and frame["gmv"].iloc[-1] == model.gmv
    assert frame["n_orders"].sum() > 0 and (frame["n_active_merchants"] > 0).all()
    merchants = model.agents_by_type[Merchant]
    assert len(merchants) == model.n_merchants
    assert sum(agent.active for agent in merchants) == model.n_active_merchants


def test_batch_run_over_two_values_and_two_iterations():
    parameters = {**SMALL, "merchants.post_rate": 1.0, "cascade.p_view_friend": [0.05, 0.8]}
    rows = mesa.batch_run(CommerceModel, parameters=parameters, iterations=2, max_steps=10, display_progress=False)
    assert len(rows) == 4  # 2 values x 2 iterations, the last step of each
    assert {row["cascade.p_view_friend"] for row in rows} == {0.05, 0.8}
    assert all(row["Step"] == 2 and row["gmv"] is not None and row["gmv"] >= 0 for row in rows)
    every_step = mesa.batch_run(CommerceModel, parameters=parameters, iterations=2, max_steps=10,
                                data_collection_period=1, display_progress=False)
    orders: dict[tuple[float, int], float] = {}
    for row in every_step:
        key = (row["cascade.p_view_friend"], row["iteration"])
        orders[key] = orders.get(key, 0) + row["n_orders"]
    # the same seed and parameters give the same run; a wider Moments audience sells more
    assert orders[(0.05, 0)] == orders[(0.05, 1)] and orders[(0.8, 0)] == orders[(0.8, 1)]
    assert orders[(0.8, 0)] > orders[(0.05, 0)]


def test_iterations_differ_when_batch_run_varies_the_seed():
    rows = mesa.batch_run(CommerceModel, parameters={**SMALL, "seed": [1, 2]}, iterations=1, max_steps=10,
                          display_progress=False)
    assert rows[0]["n_orders"] != rows[1]["n_orders"] or rows[0]["gmv"] != rows[1]["gmv"]


def test_a_finished_model_is_freed(tmp_path):
    """Mesa 3.3 keeps every model in ``Agent._ids`` (mesa#3179); the merchants count their ids
    per model weakly, so a sweep worker does not keep every run it made."""
    import gc
    import weakref

    model = CommerceModel(**SMALL)
    model.step()
    assert model.adaptation.agents[1].unique_id == 2  # ids still count per model, from 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_run_continues_under_new_rules_from_the_next_tick():
    """with_rules: the same world under other rules from the next tick; with none, the same run."""
    rules = {**SMALL, "run.n_ticks": 10, "population.n_users": 6000}
    model = CommerceModel(**rules)
    for _ in range(4):
        model.step()
    same = model.with_rules()
    dearer = model.with_rules(**{"payments.transaction_fee": 0.05, "merchants.traffic_cost_per_post": 2000.0})
    assert same.population is model.population and dearer.steps == model.steps == 4
    model.step()
    same.step()
    dearer.step()
    keep = {k: v for k, v in model.rows.ticks.items() if k != "seconds"}
    assert {k: v for k, v in same.rows.ticks.items() if k != "seconds"} == keep
    assert dearer.config.payments.transaction_fee == 0.05 and model.config.payments.transaction_fee != 0.05
    assert dearer.rows.ticks["fees"] > model.rows.ticks["fees"]
    assert dearer.rows.ticks["cost_traffic"] > model.rows.ticks["cost_traffic"]
    assert dearer.rows.ticks["n_posts"] == model.rows.ticks["n_posts"]  # the posts of tick 5 were planned alike
    with pytest.raises(ConfigError, match="cannot change during a run"):
        model.with_rules(**{"population.n_users": 9000})


def test_one_post_traced_spreads_as_it_did_in_the_tick():
    """trace_post runs one post again on its own: the same exposures, buys and shares per level
    as the tick counted for it, for the tick's largest cascades."""
    import numpy as np

    from weishang.model.mechanisms.cascade import trace_post

    model = CommerceModel(**{**SMALL, "population.n_users": 6000, "run.n_ticks": 3, "merchants.post_rate": 1.0})
    model.step()
    model.step()
    outcome = model.record.cascade
    exposures, buys, shares = (np.asarray(outcome.exposures), np.asarray(outcome.buys), np.asarray(outcome.shares))
    largest = np.argsort(-(exposures[:, 1:].sum(axis=1) * 10**6 + exposures[:, 0]), kind="stable")[:5]
    assert exposures[largest[0], 1:].sum() > 0  # the largest reaches past level 1
    for post in largest.tolist():
        traced = trace_post(model, post)
        for level in (1, 2, 3):
            at = traced["level"] == level
            assert at.sum() == exposures[post, level - 1]
            assert traced["bought"][at].sum() == buys[post, level - 1]
            assert traced["shared"][at].sum() == shares[post, level - 1]
        assert traced["origin"] not in set(traced["user"].tolist())  # never the merchant's own account
    with pytest.raises(ValueError, match="the last tick had posts"):
        trace_post(model, 10**9)


def test_agent_reporters_collect_each_merchant_each_tick():
    """Opt-in Mesa agent reporters (issue 31: get_agent_vars_dataframe() only warned): a row per
    merchant a tick, its value the merchants' table's at that tick."""
    model = CommerceModel(agent_reporters={"post_rate": "post_rate", "active": "active"},
                          **{**SMALL, "run.n_ticks": 3})
    model.run_model()
    frame = model.datacollector.get_agent_vars_dataframe()
    assert len(frame) == 3 * model.n_merchants
    last = frame.xs(3, level="Step")["post_rate"].to_numpy()
    assert (last == model.merchants.post_rate).all()
