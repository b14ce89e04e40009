"""The device logistic fit against scikit-learn's (the reference), on NumPy and the strict stand-in."""

import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from weishang.kernels.logistic import fit_balanced_logistic


def sklearn_fit(x, label, weight, c):
    """(float64[K + 1]) scikit-learn's fit of the same objective, run to a tight tolerance: the
    classes balanced through the weights, features standardised, folded back to raw units."""
    w = np.where(label, weight / weight[label].sum(), weight / weight[~label].sum())
    mean = np.average(x, axis=0, weights=w)
    sd = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    sd = np.where(sd > 0, sd, 1.0)
    model = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    model.fit((x - mean) / sd, label.astype(np.int8), sample_weight=w * w.shape[0])
    coef = model.coef_[0] / sd
    return np.append(coef, model.intercept_[0] - np.sum(coef * mean))


def dataset(seed, n=5000, k=6, fraud_share=0.1, separation=1.0):
    rs = np.random.default_rng(seed)
    label = rs.random(n) < fraud_share
    x = rs.normal(size=(n, k)) + separation * label[:, None] * np.linspace(-1.0, 2.0, k)
    x[:, 1] = rs.random(n) < np.where(label, 0.6, 0.05)  # a binary feature, as new_device
    x[:, 2] = 0.0  # a feature that never fires: its sd is zero
    weight = np.where(label, 1.0, rs.choice([1.0, 40.0], n))  # sampled legitimate rows weigh more
    return x, label, weight


def assert_close(got, want):
    # float32 weights: equal to the reference to about float32's precision
    assert np.allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max()), np.abs(got - want).max()


@pytest.mark.parametrize("seed, kw, c", [
    (0, {}, 1.0),
    (1, {"fraud_share": 0.01, "n": 20_000}, 1.0),   # rare fraud: the class weights decide
    (2, {"separation": 4.0}, 1.0),                  # nearly separable: large weights, damped steps
    (3, {"n": 300, "fraud_share": 0.3}, 0.01),       # few rows, strong penalty: the intercept is free
])
def test_fit_equals_scikit_learn(seed, kw, c):
    x, label, weight = dataset(seed, **kw)
    got = fit_balanced_logistic(x, label, weight, c=c, xp=np)
    assert_close(got, sklearn_fit(x, label, weight, c))
    assert np.array_equal(got, got.astype(np.float32).astype(np.float64))  # exported as float32


def test_fit_equals_scikit_learn_on_the_models_own_training_sample():
    from weishang.model.commerce import CommerceModel
    from weishang.model.config import load_config

    config = load_config(overrides=["population.n_users=20000", "run.n_ticks=8", 'run.backend="numpy"'])
    model = CommerceModel(config)
    for _ in range(8):
        model.step()
    scorer = model.risk.scorer
    assert scorer.fitted and len(scorer.pending) >= 2
    x, label, weight = (np.concatenate([getattr(r, f) for r in scorer.pending]) for f in ("x", "fraud", "weight"))
    assert 0 < label.sum() < label.shape[0] and len(np.unique(weight)) > 1
    got = fit_balanced_logistic(x, label, weight, c=1.0, xp=np)
    assert_close(got, sklearn_fit(x, label, weight, 1.0))
    # from last week's model (a warm start) it reaches the same weights
    start = fit_balanced_logistic(x[: x.shape[0] // 2], label[: x.shape[0] // 2], weight[: x.shape[0] // 2], c=1.0,
                                  xp=np)
    assert np.array_equal(fit_balanced_logistic(x, label, weight, c=1.0, xp=np, start=start), got)


def test_fit_on_the_strict_stand_in_equals_numpy_and_reads_back_only_scalars(monkeypatch):
    from tests import strict_device

    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    dev = strict_device.backend()
    x, label, weight = dataset(4, separation=3.0)
    host = fit_balanced_logistic(x, label, weight, c=1.0, xp=np)
    with strict_device.counting() as tally:
        on_device = fit_balanced_logistic(dev.to_device(x), dev.to_device(label), dev.to_device(weight), c=1.0,
                                          xp=dev.xp, start=dev.to_device(np.zeros(x.shape[1] + 1)))
    assert np.array_equal(dev.to_host(on_device), host)
    # three numbers a trial step (the decrement, the objective before and after), nothing per row
    assert tally.size_syncs == 0 and tally.transfer_bytes == 3 * 8 * tally.transfers and tally.transfers <= 30
