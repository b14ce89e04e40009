"""The risk engine's graph and sequence features against their slow references, on NumPy, the
strict stand-in and (marked gpu) CuPy; the trade-off curve's counts against a direct count."""

import sys

import numpy as np
import pytest

from weishang.kernels.risk import RiskState, threshold_for_fpr, tick_view, update_state
from weishang.kernels.risk_curve import FPR_GRID, counts_above, grid_thresholds
from weishang.kernels.risk_features import (
    FEATURES, NO_SIGNAL, GraphState, account_view, feature_scores, features, linear_scores, reference_features,
    tick_graph, update_graph,
)

N_USERS, N_MICRO = 120, 12
N_SLOTS = N_MICRO + 1  # the everyday shops' slot
NEW_ACCOUNT_TICKS = 30
REFERENCE = 21_500.0


def random_tick(rs, t=400):
    payer = rs.integers(0, N_USERS, t).astype(np.int64)
    payer[: t // 10] = payer[0]  # a payer fanning out over many merchants
    merchant = rs.integers(0, N_SLOTS, t).astype(np.int64)  # the last slot: everyday payments
    merchant[t // 10: t // 5] = 3  # a merchant many payers pay (fan-in)
    return dict(payer=payer, merchant=merchant, amount=rs.integers(100, 5_000_000, t).astype(np.int64),
                scenario=rs.integers(0, 3, t).astype(np.int8), new_device=rs.random(t) < 0.1,
                account_age=rs.integers(0, 90, t).astype(np.int64))


def run_ticks(xp, to_device, to_host, seed=0, ticks=9):
    """Each tick's features from the kernel (host copies) and from the reference."""
    rs = np.random.default_rng(seed)
    state, graph = RiskState.empty(N_USERS, N_SLOTS, 7, xp=xp), GraphState.empty(N_USERS, N_SLOTS, 7, xp=xp)
    host_state, host_graph = RiskState.empty(N_USERS, N_SLOTS, 7, xp=np), GraphState.empty(N_USERS, N_SLOTS, 7, xp=np)
    flag = rs.random(N_SLOTS) < 0.2
    out = []
    for day in range(ticks):
        tx = random_tick(rs)
        signal_payer = np.unique(rs.integers(0, N_USERS, 5)).astype(np.int64)
        signal_day = day - rs.integers(0, 4, signal_payer.shape[0]).astype(np.int64)
        dev = {k: to_device(v) for k, v in tx.items()}
        rule = tick_view(dev["payer"], dev["merchant"], state, REFERENCE, xp=xp)  # as the engine: counted once
        tg = tick_graph(dev["payer"], dev["merchant"], dev["account_age"] < NEW_ACCOUNT_TICKS, dev["new_device"],
                        N_USERS, N_SLOTS, N_MICRO, xp=xp, signal_payer=to_device(signal_payer),
                        signal_day=to_device(signal_day), burst=rule.burst_of, today=rule.merchant_today)
        view = account_view(tg, rule, graph, xp=xp)
        common = dict(merchant_flag=to_device(flag), view=view, reference_amount=REFERENCE,
                      new_account_ticks=NEW_ACCOUNT_TICKS, day=day, xp=xp)
        rows = features(**dev, **common)
        got = to_host(rows)
        coef = np.linspace(-1.0, 2.0, len(FEATURES))
        scores = feature_scores(**dev, **common, coef=coef, bias=-3.0)  # without keeping the rows
        assert np.array_equal(to_host(scores), to_host(linear_scores(lambda a, b: rows[a:b], got.shape[0], coef,
                                                                     -3.0, xp=xp)))
        ref = reference_features(**tx, merchant_flag=flag, state=host_state, graph=host_graph,
                                 reference_amount=REFERENCE, new_account_ticks=NEW_ACCOUNT_TICKS, n_micro=N_MICRO,
                                 day=day, signals=dict(zip(signal_payer.tolist(), signal_day.tolist())))
        out.append((got, ref))
        update_state(state, dev["payer"], dev["merchant"], dev["amount"], day, xp=xp)
        update_graph(graph, tg, day, xp=xp)
        host_tg = tick_graph(tx["payer"], tx["merchant"], tx["account_age"] < NEW_ACCOUNT_TICKS, tx["new_device"],
                             N_USERS, N_SLOTS, N_MICRO, xp=np, signal_payer=signal_payer, signal_day=signal_day)
        update_state(host_state, tx["payer"], tx["merchant"], tx["amount"], day, xp=np)
        update_graph(host_graph, host_tg, day, xp=np)
    return out


def test_features_equal_their_reference_bit_for_bit():
    for got, ref in run_ticks(np, np.asarray, np.asarray):
        assert got.shape == (len(ref), len(FEATURES))
        assert got.tolist() == ref  # identical floats, every feature, every payment


def test_graph_features_see_fan_out_fan_in_and_shared_buyers():
    # three puppets each pay the same two brushing shops (0, 1); an honest buyer pays shop 2 twice
    payer = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.int64)
    merchant = np.array([0, 1, 0, 1, 0, 1, 2, 2], dtype=np.int64)
    age = np.array([1, 1, 2, 2, 3, 3, 400, 400], dtype=np.int64)
    new_device = np.zeros(8, bool)
    state, graph = RiskState.empty(5, 4, 7, xp=np), GraphState.empty(5, 4, 7, xp=np)
    tg = tick_graph(payer, merchant, age < 30, new_device, 5, 4, 3, xp=np)
    x = features(payer, merchant, np.full(8, 10_000), np.ones(8, np.int8), new_device, age, np.zeros(4, bool),
                 account_view(tg, tick_view(payer, merchant, state, 10_000.0, xp=np), graph, xp=np), 10_000.0, 30, day=0, xp=np)
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    assert col["payer_fan_out"].tolist() == [2, 2, 2, 2, 2, 2, 1, 1]
    assert col["merchant_fan_in"].tolist() == [3, 3, 3, 3, 3, 3, 1, 1]
    assert col["merchant_new_payers"].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert col["merchant_shared_buyers"].tolist() == [2, 2, 2, 2, 2, 2, 1, 1]
    assert col["new_account_fan_out"].tolist() == [2, 2, 2, 2, 2, 2, 0, 0]


def test_sequence_features_remember_signals_and_devices():
    state, graph = RiskState.empty(3, 2, 7, xp=np), GraphState.empty(3, 2, 7, xp=np)
    one = np.array([0], dtype=np.int64)
    # day 0: payer 0 pays from a new device; payer 1's account is taken over (a signal, no payment)
    tg = tick_graph(one, one, np.array([False]), np.array([True]), 3, 2, 1, xp=np,
                    signal_payer=np.array([1]), signal_day=np.array([0]))
    update_graph(graph, tg, 0, xp=np)
    assert graph.last_signal.tolist() == [0, 0, NO_SIGNAL]
    payer = np.array([0, 1, 2], dtype=np.int64)
    tg = tick_graph(payer, np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, bool), 3, 2, 1, xp=np)
    view = account_view(tg, tick_view(payer, np.zeros(3, np.int64), state, 100.0, xp=np), graph, xp=np)
    x = features(payer, np.zeros(3, np.int64), np.full(3, 100), np.zeros(3, np.int8), np.zeros(3, bool),
                 np.full(3, 400), np.zeros(2, bool), view, 100.0, 30, day=2, xp=np)
    recency, devices = x[:, FEATURES.index("signal_recency")], x[:, FEATURES.index("device_changes")]
    assert recency.tolist() == [5, 5, 0]  # two days after a signal; never
    assert devices.tolist() == [1, 0, 0]


def test_linear_scores_add_the_payer_merchant_and_payment_parts_in_order():
    x = np.random.default_rng(2).random((1000, len(FEATURES)))
    coef = np.linspace(-1, 1, len(FEATURES))
    got = linear_scores(lambda a, b: x[a:b], 1000, coef, 0.25, xp=np)
    term = {name: coef[i] * x[:, i] for i, name in enumerate(FEATURES)}
    payer = (((term["payer_velocity"] + term["payer_burst"]) + term["payer_fan_out"]) + term["signal_recency"]) \
        + term["device_changes"]
    merchant = (((term["merchant_velocity"] + term["merchant_flag"]) + term["merchant_fan_in"])
                + term["merchant_new_payers"]) + term["merchant_shared_buyers"]
    expected = (np.full(1000, 0.25) + payer) + merchant
    for name in ("amount_ratio", "new_account", "new_device", "mini_program", "cross_border", "amount_vs_reference",
                 "new_account_fan_out"):
        expected = expected + term[name]
    assert got.tolist() == expected.tolist()
    assert np.allclose(got, 0.25 + x @ coef)  # the same sum, in a fixed order


def test_curve_counts_equal_a_direct_count():
    rs = np.random.default_rng(4)
    legit_history = rs.normal(size=50_000)
    score = np.concatenate([rs.normal(size=20_000), rs.normal(2.0, 1.0, size=300)])
    label = np.concatenate([np.zeros(20_000, np.int64), rs.integers(1, 4, 300)])
    thresholds = grid_thresholds(legit_history, FPR_GRID, xp=np)
    for f, t in zip(FPR_GRID, thresholds):
        if np.isfinite(t):
            assert (legit_history > t).mean() <= f  # each holds its target on the history
    assert not np.isfinite(thresholds[0])  # 50,000 scores cannot resolve 1e-6
    assert thresholds.tolist() == [threshold_for_fpr(legit_history, f, xp=np) for f in FPR_GRID]  # one selection
    table = counts_above(score, label, thresholds, 4, xp=np)
    for c in range(4):
        assert table[c, -1] == (label == c).sum()
        for g, t in enumerate(thresholds):
            assert table[c, g] == ((label == c) & (score > t)).sum()


def test_curve_on_the_strict_stand_in_equals_numpy_and_reads_nothing_back(monkeypatch):
    from tests import strict_device

    rs = np.random.default_rng(5)
    history = rs.normal(size=30_000)
    history[:50] = 9.0  # ties among the top scores: equal thresholds
    score = np.concatenate([rs.normal(size=5_000), np.full(20, 9.0), rs.normal(2.0, 1.0, size=200)])
    label = np.concatenate([np.zeros(5_020, np.int64), rs.integers(1, 3, 200)])
    grid = (3e-5, *FPR_GRID)
    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)  # bin_sums' scatter-add
    dev = strict_device.backend()
    with strict_device.counting() as tally:
        thresholds = grid_thresholds(dev.to_device(history), grid, xp=dev.xp)
        table = counts_above(dev.to_device(score), dev.to_device(label), thresholds, 3, xp=dev.xp)
    assert tally.transfers == 0 and tally.size_syncs == 0
    host_thresholds = grid_thresholds(history, grid, xp=np)
    assert np.array_equal(dev.to_host(thresholds), host_thresholds)
    assert np.array_equal(dev.to_host(table), counts_above(score, label, host_thresholds, 3, xp=np))


def test_features_on_the_strict_stand_in_equal_numpy(monkeypatch):
    from tests import strict_device

    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    dev = strict_device.backend()
    host = run_ticks(np, np.asarray, np.asarray, seed=5, ticks=4)
    strict = run_ticks(dev.xp, dev.to_device, dev.to_host, seed=5, ticks=4)
    for (h, _), (s, _) in zip(host, strict):
        assert np.array_equal(h, s)


@pytest.mark.gpu
def test_cupy_features_identical(gpu_backend):
    host = run_ticks(np, np.asarray, np.asarray, seed=6, ticks=5)
    device = run_ticks(gpu_backend.xp, gpu_backend.to_device, gpu_backend.to_host, seed=6, ticks=5)
    for (h, ref), (d, _) in zip(host, device):
        assert np.array_equal(h, d) and d.tolist() == ref
