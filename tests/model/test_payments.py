import numpy as np
import pytest

from weishang.model.config import load_config
from weishang.model.codes import PaymentScenario
from weishang.model.payments import make_payments
from weishang.model.settlement import SettlementQueue, per_merchant_by_lag

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
    due, fees = per_merchant_by_lag(p, 1, xp=np)
    queue = SettlementQueue(1)
    queue.add(due)
    released = [int(queue.release()[0]) for _ in range(5)]
    assert released == [200, 100, 0, 100, 0]  # QR and off-platform T+0, mini-program T+1, cross-border T+3


def test_orders_that_left_wechat_are_off_platform():
    n = 1000
    key = np.arange(n, dtype=np.int64)
    left = key % 3 == 0
    p = make_payments(key, np.zeros(n, np.int64), np.full(n, 100, np.int64), np.zeros(1, bool), CFG, 1, 0,
                      xp=np, off_platform=left)
    assert np.all(p.scenario[left] == OFF_PLATFORM)
