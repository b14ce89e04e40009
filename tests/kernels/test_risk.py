import numpy as np
import pytest

from weishang.kernels.risk import RiskState, RiskWeights, reference_scores, score_transactions, threshold_for_fpr, update_state


def random_tick(rs, n_users, n_merchants, t):
    payer = rs.integers(0, n_users, t).astype(np.int64)
    payer[: t // 10] = payer[0]  # one bursting payer
    return dict(payer=payer, merchant=rs.integers(0, n_merchants, t).astype(np.int64),
                amount=rs.integers(100, 200_000, t).astype(np.int64), scenario=rs.integers(0, 3, t).astype(np.int8),
                new_device=rs.random(t) < 0.05, account_age=rs.integers(0, 400, t).astype(np.int64))


def test_kernel_scores_equal_reference_bit_for_bit():
    rs = np.random.default_rng(0)
    n_users, n_merchants = 300, 20
    state = RiskState.empty(n_users, n_merchants, 7, xp=np)
    flag = rs.random(n_merchants) < 0.2
    weights = RiskWeights()
    for tick in range(10):
        tx = random_tick(rs, n_users, n_merchants, 400)
        got = score_transactions(**tx, merchant_flag=flag, state=state, weights=weights, reference_amount=21_500.0,
                                 new_account_ticks=30, xp=np)
        ref = reference_scores(**tx, merchant_flag=flag, state=state, weights=weights, reference_amount=21_500.0,
                               new_account_ticks=30)
        assert got.tolist() == ref  # identical floats, not merely close
        update_state(state, tx["payer"], tx["merchant"], tx["amount"], tick, xp=np)


def test_features_move_the_score_the_right_way():
    state = RiskState.empty(10, 3, 7, xp=np)
    update_state(state, np.array([1, 1]), np.array([0, 0]), np.array([10_000, 10_000]), 0, xp=np)
    base = dict(payer=np.array([1]), merchant=np.array([0]), amount=np.array([10_000]), scenario=np.array([0], np.int8),
                new_device=np.array([False]), account_age=np.array([300]))
    kw = dict(merchant_flag=np.zeros(3, bool), state=state, weights=RiskWeights(), reference_amount=10_000.0,
              new_account_ticks=30, xp=np)
    s0 = score_transactions(**base, **kw)[0]
    assert score_transactions(**{**base, "amount": np.array([200_000])}, **kw)[0] > s0
    assert score_transactions(**{**base, "new_device": np.array([True])}, **kw)[0] > s0
    assert score_transactions(**{**base, "account_age": np.array([3])}, **kw)[0] > s0
    assert score_transactions(**{**base, "scenario": np.array([2], np.int8)}, **kw)[0] > s0


def test_threshold_holds_the_false_positive_rate():
    scores = np.random.default_rng(1).normal(size=100_000)
    thr = threshold_for_fpr(scores, 0.0003, xp=np)
    assert (scores > thr).mean() <= 0.0003
    assert (scores >= thr).mean() > 0.0002  # and is not needlessly strict
    assert threshold_for_fpr(scores[:100], 0.0003, xp=np) == float("inf")
    allowed = int(np.floor(0.0003 * scores.shape[0]))  # 29: 0.0003 * 1e5 rounds just below 30
    assert thr == np.sort(scores)[scores.shape[0] - 1 - allowed]  # the order statistic (a selection, not a sort)


@pytest.mark.gpu
def test_cupy_scores_identical(gpu_backend):
    xp, dev = gpu_backend.xp, gpu_backend.to_device
    rs = np.random.default_rng(3)
    state_h = RiskState.empty(200, 10, 7, xp=np)
    state_d = RiskState.empty(200, 10, 7, xp=xp)
    flag = rs.random(10) < 0.3
    for tick in range(5):
        tx = random_tick(rs, 200, 10, 300)
        h = score_transactions(**tx, merchant_flag=flag, state=state_h, weights=RiskWeights(),
                               reference_amount=1e4, new_account_ticks=30, xp=np)
        d = score_transactions(**{k: dev(v) for k, v in tx.items()}, merchant_flag=dev(flag), state=state_d,
                               weights=RiskWeights(), reference_amount=1e4, new_account_ticks=30, xp=xp)
        assert np.array_equal(h, gpu_backend.to_host(d))
        update_state(state_h, tx["payer"], tx["merchant"], tx["amount"], tick, xp=np)
        update_state(state_d, dev(tx["payer"]), dev(tx["merchant"]), dev(tx["amount"]), tick, xp=xp)


def test_a_looser_false_positive_target_never_blocks_fewer_up_to_one():
    # issue 32: at a target of 1 the threshold's rank wrapped round to the largest score, so the
    # loosest setting blocked almost nothing; the count above must grow with the target to all
    from weishang.kernels.risk import threshold_for_fpr
    from weishang.kernels.risk_curve import grid_thresholds

    scores = np.random.default_rng(3).normal(size=2000)
    targets = (0.001, 0.1, 0.5, 0.9, 0.999, 1.0)
    above = [int((scores > threshold_for_fpr(scores, t, xp=np)).sum()) for t in targets]
    assert above == sorted(above) and above[-1] == scores.shape[0], above
    grid = grid_thresholds(scores, targets, xp=np)
    assert [int((scores > g).sum()) for g in grid] == above
