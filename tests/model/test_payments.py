import numpy as np
import pytest
from weishang.kernels.backend import bin_sums
from weishang.model.codes import PaymentScenario
from weishang.model.config import load_config
from weishang.model.mechanisms.payments import make_payments
from weishang.model.mechanisms.settlement import (
    MAX_LAG,
    ROWS,
    SETTLEMENT_LAG,
    SettlementQueue,
    settlement_bins,
)

OFF_PLATFORM = PaymentScenario.OFF_PLATFORM

CFG = load_config().payments


def test_official_share_and_scenario_mix():
    n = 400_000
    key = np.arange(n, dtype=np.int64) * 7919
    merchant = np.arange(n, dtype=np.int64) % 10
    amount = np.full(n, 19_800, dtype=np.int64)
    p = make_payments(key, merchant, amount, np.zeros(10, bool), CFG, seed=1, tick=0, xp=np)
    official = p.scenario != OFF_PLATFORM
    # binomial standard error at n=4e5 is about 2e-4; 5 standard errors
    assert official.mean() == pytest.approx(1 - CFG.p_private_transfer, abs=1e-3)
    mix = np.bincount(p.scenario[official], minlength=3) / official.sum()
    assert mix == pytest.approx([0.552, 0.392, 0.056], abs=4e-3)
    assert p.fee.sum() == 0  # nobody uses the transaction component here


def test_fee_only_for_component_users_on_official_payments():
    key = np.arange(1000, dtype=np.int64)
    merchant = key % 2
    amount = np.full(1000, 10_000, dtype=np.int64)  # 100 CNY
    p = make_payments(key, merchant, amount, np.array([True, False]), CFG, seed=2, tick=0, xp=np)
    charged = p.fee > 0
    assert np.all(merchant[charged] == 0) and np.all(p.scenario[charged] != OFF_PLATFORM)
    assert np.all(p.fee[charged] == 60)  # 0.6% of 100 CNY = 0.60 CNY = 60 fen
    assert charged.sum() == ((merchant == 0) & (p.scenario != OFF_PLATFORM)).sum()


def test_settlement_lags():
    key = np.arange(4, dtype=np.int64)
    p = make_payments(key, np.zeros(4, np.int64), np.full(4, 100, np.int64), np.zeros(1, bool), CFG, 1, 0, xp=np)
    p.scenario[:] = np.array([0, 1, 2, OFF_PLATFORM], dtype=np.int8)  # one payment of each kind
    lag_of = np.append(SETTLEMENT_LAG, 0)
    bins, weights = settlement_bins(p, np.ones(4, bool), 1, lag_of, xp=np)
    sums = bin_sums(bins, ROWS, weights, xp=np).reshape(ROWS, 1)
    queue = SettlementQueue(1)
    queue.add(sums[:MAX_LAG + 1])
    released = [int(queue.release()[0]) for _ in range(5)]
    assert released == [200, 100, 0, 100, 0]  # QR and off-platform T+0, mini-program T+1, cross-border T+3
    assert sums[MAX_LAG + 1, 0] == p.fee.sum() == 0


def test_settlement_sums_rows_per_merchant():
    # two merchants: a payment's amount lands in its lag's row, its fee in the last row, and a
    # payment that does not settle (intercepted) weighs nothing
    p = make_payments(np.arange(4, dtype=np.int64), np.array([0, 1, 1, 0]), np.array([100, 200, 300, 400]),
                      np.ones(2, bool), CFG, 1, 0, xp=np)
    p.scenario[:] = np.array([0, 1, 2, 0], dtype=np.int8)
    p.fee[:] = np.array([1, 2, 3, 4])
    bins, weights = settlement_bins(p, np.array([True, True, True, False]), 2, np.append(SETTLEMENT_LAG, 0), xp=np)
    sums = bin_sums(bins, ROWS * 2, weights, xp=np).reshape(ROWS, 2)
    assert sums.tolist() == [[100, 0], [0, 200], [0, 0], [0, 300], [1, 5]]


def test_orders_that_left_wechat_are_off_platform():
    n = 1000
    key = np.arange(n, dtype=np.int64)
    left = key % 3 == 0
    p = make_payments(key, np.zeros(n, np.int64), np.full(n, 100, np.int64), np.zeros(1, bool), CFG, 1, 0,
                      xp=np, off_platform=left)
    assert np.all(p.scenario[left] == OFF_PLATFORM)


def test_aggregates_of_one_pass_agree_with_each_other():
    # the aggregation sums GMV by scenario and merchant, orders by merchant and GMV by post in
    # one pass over offset bins: each total must come out the same whichever way it is cut
    from weishang.model.commerce import CommerceModel

    config = load_config(overrides=["population.n_users=5000", "population.n_cities=10", "run.n_ticks=3",
                                    'run.backend="numpy"'])
    model = CommerceModel(config)
    for _ in range(config.run.n_ticks):
        model.step()
        agg, pay, passed = model.record.aggregation, model.record.payments.payments, model.record.risk.legit_passed
        gmv = int(pay.amount[passed].sum())
        assert gmv > 0
        assert agg.gmv_by_scenario_fen.sum() == agg.gmv_per_merchant_fen.sum() == agg.gmv_per_cascade_fen.sum() == gmv
        assert agg.orders_per_merchant.sum() == passed.sum()
        assert np.array_equal(agg.orders_per_merchant, np.bincount(pay.merchant[passed], minlength=model.n_merchants))
        assert np.array_equal(agg.buys, model.record.payments.outcome.buys)
