"""Fraud injection and the risk engine inside a run."""

import numpy as np
import polars as pl
import pytest

from model.config import load_config
from model.fraud import TYPOLOGIES, FraudInjector
from model.run import run_scenario


def injector(**overrides):
    cfg = load_config(overrides=[f"fraud.{k}={v}" for k, v in overrides.items()]).fraud
    return FraudInjector(cfg, 1_000_000, np.arange(10, dtype=np.int64), 500, 21_500, seed=1)


def test_every_typology_appears_with_its_signature():
    f = injector(laundering_per_million=4.0)
    batch = f.draw(0)
    kinds = set(batch.typology.tolist())
    assert kinds == set(range(len(TYPOLOGIES)))
    laundering = np.isin(batch.typology, [3, 4])
    assert np.all(batch.scenario[laundering] == 2)  # cross-border
    assert np.all(batch.amount[laundering] < 5_000_000)  # just under 50,000 CNY
    brushing = batch.typology == 1
    assert np.all(np.isin(batch.merchant[brushing], np.arange(10)))  # fraud merchants
    assert np.all(batch.account_age[brushing] <= 30)  # fresh sockpuppets


def test_interception_makes_fraud_quieter_and_rarer():
    f = injector()
    before = f.draw(1)
    attempted = np.bincount(before.typology, minlength=len(TYPOLOGIES))
    f.react(attempted, attempted)  # everything was caught
    after = f.draw(1)
    tried = attempted > 0
    assert tried.sum() >= 3
    assert np.all(f.intensity[tried] < 1.0) and np.all(f.stealth[tried] > 0.0)
    assert np.all(f.intensity[~tried] == 1.0)  # a typology that was not caught does not react
    ato_before = before.amount[before.typology == 0].mean()
    ato_after = after.amount[after.typology == 0].mean()
    assert ato_after < ato_before  # adapted: smaller cash-outs


def test_same_seed_same_fraud():
    a, b = injector().draw(5), injector().draw(5)
    assert np.array_equal(a.payer, b.payer) and np.array_equal(a.amount, b.amount)


@pytest.fixture(scope="module")
def risk_run(tmp_path_factory):
    config = load_config(overrides=["population.n_users=30000", "population.n_cities=10", "run.n_ticks=20",
                                    'run.backend="numpy"', "fraud.ato_per_million=100", "fraud.burst_per_million=60"])
    return run_scenario(config, tmp_path_factory.mktemp("risk") / "r").run_dir


def test_threshold_holds_fpr_and_catches_fraud(risk_run):
    t = pl.read_parquet(risk_run / "ticks.parquet").filter(pl.col("tick") >= 7)
    n_tx = sum(t[f"n_tx_{s}"].sum() for s in ("qr", "mini_program", "cross_border"))
    fpr = t["n_false_positives"].sum() / (n_tx - t["n_fraud"].sum())
    # the threshold is set from past legitimate scores for a 0.02% target; a new tick can exceed
    # it a little, but not by a multiple, and must stay under the SPEC's 0.03% ceiling
    assert fpr < 0.0003
    assert t["n_fraud_intercepted"].sum() > 0
    assert 0 < t["recall"].mean() <= 1 and t["illicit_share"].mean() > 0


def test_intercepted_payments_do_not_settle(risk_run):
    t = pl.read_parquet(risk_run / "ticks.parquet")
    m = pl.read_parquet(risk_run / "merchants.parquet")
    # settled money (QR and off-platform settle at once, others later) never exceeds what was paid
    # and not intercepted: legitimate GMV plus fraud that got through
    assert m["settled"].sum() <= t["gmv"].sum() + t["fraud_loss"].sum() + 1e-6


def test_stricter_fpr_target_intercepts_less(tmp_path):
    def intercepted(name, target):
        config = load_config(overrides=["population.n_users=20000", "population.n_cities=5", "run.n_ticks=14",
                                        'run.backend="numpy"', f"risk.target_fpr={target}"])
        t = pl.read_parquet(run_scenario(config, tmp_path / name).run_dir / "ticks.parquet")
        return sum(t[f"n_intercepted_{s}"].sum() for s in ("qr", "mini_program", "cross_border"))

    assert intercepted("loose", 0.002) > intercepted("strict", 0.0001)
