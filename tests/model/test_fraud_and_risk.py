"""Fraud injection and the risk engine inside a run."""

import numpy as np
import polars as pl
import pytest

from weishang.model.config import WECHAT_MAU, load_config
from weishang.model.mechanisms.risk.everyday import daily_everyday_counts, draw_everyday
from weishang.model.mechanisms.risk.fraud import PROBE_PAYMENTS, TYPOLOGIES, FraudInjector
from weishang.model.run import run_scenario


#: fraud volumes the tests were sized for (the calibrated default's are far smaller)
VOLUMES = {"ato_per_million": 3.0, "burst_per_million": 2.0, "laundering_per_million": 0.3}


def injector(**overrides):
    cfg = load_config(overrides=[f"fraud.{k}={v}" for k, v in {**VOLUMES, **overrides}.items()]).fraud
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


def test_brushing_rings_share_their_sockpuppets_and_takeovers_leave_signals():
    f = injector(brushing_orders=40)  # 10 fraud merchants: two rings of five, 400 orders
    batch = f.draw(3)
    brushing = batch.typology == 1
    ring = np.searchsorted(f.fraud_merchants, batch.merchant[brushing]) // f.cfg.brushing_ring
    for r in (0, 1):
        puppets = batch.payer[brushing][ring == r]
        assert np.unique(puppets).shape[0] <= f.cfg.brushing_pool  # a pool, not fresh accounts
        shops = {p: set(batch.merchant[brushing][ring == r][puppets == p].tolist()) for p in np.unique(puppets)}
        assert np.mean([len(v) > 1 for v in shops.values()]) > 0.5  # puppets pay several of the ring's shops
    size = f.cfg.brushing_pool
    pools = [set(f.puppets(np.full(size, f.fraud_merchants[5 * r]), (np.arange(size) + 0.5) / size).tolist())
             for r in (0, 1)]
    assert pools[0].isdisjoint(pools[1])
    for day in (3, 4):  # the same pools from day to day
        other = f.draw(day)
        mine = other.typology == 1
        other_ring = np.searchsorted(f.fraud_merchants, other.merchant[mine]) // f.cfg.brushing_ring
        for r in (0, 1):
            assert set(other.payer[mine][other_ring == r].tolist()) <= pools[r]
    assert set(batch.scenario[brushing].tolist()) == {0, 1}  # the shop's mini-program or a personal QR code
    ato = batch.typology == 0
    assert np.all(batch.signal_lag[ato] == 0) and np.all(batch.signal_lag[~ato] == -1)  # today, before adapting
    payers, days = batch.signals(3)
    assert np.array_equal(payers, np.unique(batch.payer[ato])) and np.all(days == 3)
    f.react(np.array([1.0, 0.0, 0.0, 0.0, 0.0]))
    f.react(np.array([1.0, 0.0, 0.0, 0.0, 0.0]))
    later = f.draw(9)
    assert later.signal_lag[later.typology == 0].max() > 0  # adapted takeovers wait before cashing out


def test_interception_makes_fraud_quieter_and_rarer():
    f = injector()
    before = f.draw(1)
    caught = np.array([1.0, 0.5, 1.0, 0.0, np.nan])  # no probe of fan-out: it does not react
    f.react(caught)
    after = f.draw(1)
    assert np.all(f.intensity[[0, 1, 2]] < 1.0) and np.all(f.stealth[[0, 1, 2]] > 0.0)
    assert f.intensity[0] < f.intensity[1]  # caught more, stopped more
    assert np.all(f.intensity[[3, 4]] == 1.0) and np.all(f.stealth[[3, 4]] == 0.0)
    ato_before = before.amount[before.typology == 0].mean()
    ato_after = after.amount[after.typology == 0].mean()
    assert ato_after < ato_before  # adapted: smaller cash-outs


def test_the_probe_is_the_same_at_every_size_and_counts_its_events():
    """The probe that fraudsters learn from holds at least PROBE_PAYMENTS of each typology at
    any N (a ring every ten days at 200k users would teach them nothing in most ticks), and
    each payment knows what its own event adds to its payer's and merchant's counts."""
    for n_users in (200_000, 10_000_000):
        f = FraudInjector(load_config().fraud, n_users, np.arange(n_users // 3000, dtype=np.int64), n_users // 60,
                          21_500, seed=2)
        probe = f.probe(4)
        tried = np.bincount(probe.typology, minlength=len(TYPOLOGIES))
        assert np.all(tried >= PROBE_PAYMENTS) and np.all(tried < PROBE_PAYMENTS + 20)
        own_payer, own_merchant = probe.own_counts()
        ato, fan_in, fan_out = probe.typology == 0, probe.typology == 3, probe.typology == 4
        assert np.all(own_payer[ato] == load_config().fraud.ato_payments)  # a takeover's payments, one victim
        assert np.all(own_merchant[fan_in] == np.bincount(probe.event[fan_in])[probe.event[fan_in]])  # one hub
        assert np.all(own_payer[fan_out] == np.bincount(probe.event[fan_out])[probe.event[fan_out]])
        assert np.all(own_merchant[probe.typology == 1] == 1)  # a brushing order is its own event
    real = FraudInjector(load_config().fraud, 200_000, np.arange(60, dtype=np.int64), 3_000, 21_500, seed=2).draw(4)
    assert not np.array_equal(real.payer[:10], probe.payer[:10])  # streams of its own


def test_same_seed_same_fraud():
    a, b = injector().draw(5), injector().draw(5)
    assert np.array_equal(a.payer, b.payer) and np.array_equal(a.amount, b.amount)


@pytest.fixture(scope="module")
def risk_run(tmp_path_factory):
    config = load_config(overrides=["population.n_users=30000", "population.n_cities=10", "run.n_ticks=20",
                                    'run.backend="numpy"', "fraud.ato_per_million=100", "fraud.burst_per_million=60",
                                    # enough legitimate payments for a week of history to set the threshold
                                    "merchants.post_rate=0.6", "risk.threshold_history_ticks=7"])
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


def test_transactions_log_full_and_reproducible_sample(tmp_path):
    base = ["population.n_users=8000", "population.n_cities=4", "run.n_ticks=4", 'run.backend="numpy"']

    def log(name, *extra):
        run = run_scenario(load_config(overrides=[*base, *extra]), tmp_path / name).run_dir
        return pl.read_parquet(run / "transactions" / "*.parquet"), pl.read_parquet(run / "ticks.parquet")

    full, ticks = log("full", 'output.transactions="full"')
    scored = sum(ticks[f"n_tx_{s}"].sum() for s in ("qr", "mini_program", "cross_border"))
    assert full.height == scored
    assert full["is_fraud"].sum() == ticks["n_fraud"].sum()
    assert full["intercepted"].sum() == sum(ticks[f"n_intercepted_{s}"].sum() for s in ("qr", "mini_program", "cross_border"))
    everyday = full.filter(pl.col("merchant") == -1)  # everyday payments go to shops outside micro-commerce
    assert everyday.height == ticks["n_everyday"].sum() > 0 and not everyday["is_fraud"].any()
    sample, _ = log("sample", 'output.transactions="sample"', "output.transactions_sample=0.2")
    again, _ = log("again", 'output.transactions="sample"', "output.transactions_sample=0.2")
    assert sample.equals(again)
    assert set(sample["key"]) <= set(full["key"])
    # a binomial share of 0.2: 5 standard errors at this size
    assert abs(sample.height / full.height - 0.2) < 5 * (0.2 * 0.8 / full.height) ** 0.5
    none_run = run_scenario(load_config(overrides=base), tmp_path / "none").run_dir
    assert not (none_run / "transactions").exists()


def test_fx_exposure_follows_rate_moves():
    from weishang.model.mechanisms.fx import CURRENCIES, LOCK_TICKS, FxDesk

    still = FxDesk(0.0, seed=1)
    moving = FxDesk(0.01, seed=1)
    value = np.full(len(CURRENCIES), 1000.0)
    exposures = [(still.step(t, value)[1], moving.step(t, value)[1]) for t in range(LOCK_TICKS + 3)]
    assert all(e == 0.0 for e, _ in exposures)  # no rate move, no exposure
    assert all(e == 0.0 for _, e in exposures[:LOCK_TICKS])  # nothing settles before T+3
    assert any(e != 0.0 for _, e in exposures[LOCK_TICKS:])
    # the measured exposure is the value times the currencies' moves since the lock
    desk = FxDesk(0.01, seed=2)
    rates = []
    for t in range(LOCK_TICKS + 1):
        _, exposure = desk.step(t, value if t == 0 else np.zeros(len(CURRENCIES)))
        rates.append(desk.log_rate.copy())
    assert exposure == pytest.approx(float(np.sum(value * np.expm1(rates[-1] - rates[0]))))


def test_everyday_payments_top_each_scenario_up_to_the_payment_table():
    config = load_config(overrides=["population.n_users=1289000"])  # 1/1000 of WeChat
    orders = np.array([1000, 50, 20_000])
    counts = daily_everyday_counts(config, 1_289_000, orders)
    assert counts.tolist() == [120_000 - 1000, 85_000 - 50, 0]  # cross-border already over its volume
    first = draw_everyday(config, 1_289_000, orders, tick=3, xp=np)
    again = draw_everyday(config, 1_289_000, orders, tick=3, xp=np)
    assert np.array_equal(first.amount, again.amount) and np.array_equal(first.payer, again.payer)
    assert np.bincount(first.scenario, minlength=3).tolist() == counts.tolist()
    assert np.unique(first.key).shape[0] == first.n
    qr = first.amount[first.scenario == 0]
    assert abs(np.median(qr) / 100.0 - config.payments.everyday_median_qr) < 0.05 * config.payments.everyday_median_qr
    # the same payments come back when the micro-commerce orders before them change
    fewer = draw_everyday(config, 1_289_000, orders + np.array([500, 0, 0]), tick=3, xp=np)
    assert np.array_equal(fewer.amount[fewer.scenario == 0], qr[: qr.shape[0] - 500])


def test_risk_engine_screens_the_scenarios_full_volume(risk_run):
    t = pl.read_parquet(risk_run / "ticks.parquet")
    config = load_config(overrides=["population.n_users=30000"])
    table = {"qr": config.payments.daily_tx_qr, "mini_program": config.payments.daily_tx_mini_program,
             "cross_border": config.payments.daily_tx_cross_border}
    for name, daily in table.items():  # orders plus everyday payments make the table; fraud comes on top
        screened = t[f"n_tx_{name}"].to_numpy()
        assert (screened >= round(daily * 30000 / WECHAT_MAU)).all()
    # this run's orders (post rate 0.6) outgrow the table in later ticks; then no top-up is needed
    assert t["n_everyday"][0] > 0 and (t["n_everyday"] >= 0).all()


def test_fraud_drawn_on_the_strict_stand_in_equals_numpy(monkeypatch):
    # the batches are drawn on the device: the same payments, own counts and signals as on NumPy
    import sys

    from tests import strict_device

    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    dev = strict_device.backend()
    cfg = load_config(overrides=[f"fraud.{k}={v}" for k, v in {**VOLUMES, "laundering_per_million": 4.0}.items()]).fraud
    host, device = (FraudInjector(cfg, 1_000_000, np.arange(10, dtype=np.int64), 500, 21_500, seed=1, xp=xp)
                    for xp in (np, dev.xp))
    for f in (host, device):
        f.react(np.array([1.0, 0.5, 1.0, 0.3, 0.2]))  # adapted: takeovers wait, pools grow
    for tick in (0, 3):
        for h, d in ((host.draw(tick), device.draw(tick)), (host.probe(tick), device.probe(tick))):
            assert h.n > 0 and set(np.unique(h.typology).tolist()) == set(range(len(TYPOLOGIES)))
            for name in ("payer", "merchant", "amount", "scenario", "new_device", "account_age", "typology", "event",
                         "signal_lag"):
                assert np.array_equal(getattr(h, name), dev.to_host(getattr(d, name))), name
            for a, b in zip((*h.own_counts(), *h.signals(tick)),
                            (*d.own_counts(xp=dev.xp), *d.signals(tick, xp=dev.xp))):
                assert np.array_equal(a, dev.to_host(b))


def test_own_counts_and_signals_equal_a_direct_count():
    f = injector(laundering_per_million=4.0, brushing_orders=40)
    f.react(np.array([1.0, 0.0, 0.0, 0.0, 0.0]))  # takeovers wait: signals of several days
    batch = f.draw(2)
    own_payer, own_merchant = batch.own_counts()
    pairs = list(zip(batch.event.tolist(), batch.payer.tolist()))
    assert own_payer.tolist() == [pairs.count(p) for p in pairs]
    pairs = list(zip(batch.event.tolist(), batch.merchant.tolist()))
    assert own_merchant.tolist() == [pairs.count(p) for p in pairs]
    latest: dict[int, int] = {}
    for p, lag in zip(batch.payer.tolist(), batch.signal_lag.tolist()):
        if lag >= 0:
            latest[p] = max(latest.get(p, -1), 2 - lag)
    payers, days = batch.signals(2)
    assert payers.tolist() == sorted(latest) and days.tolist() == [latest[p] for p in sorted(latest)]
