"""The fused kernels' CUDA bodies equal their NumPy references, checked without a GPU.

Each body is compiled by the host's C++ compiler inside the loop CuPy would wrap it in (an array
parameter bound to its element by reference, as CuPy's ``ElementwiseKernel`` does), with
``-ffp-contract=off`` as NVRTC's ``--fmad=false``, and run on the same inputs as the reference.
Integer wrapping and IEEE float64 ``+ - * /`` round alike on the CPU and the GPU, so equality
here is the GPU's equality up to the compiler; ``pytest -m gpu`` checks CuPy itself.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest

from weishang.kernels import fused, rng
from tests import strict_device

_C_TYPES = {"int64": "long long", "uint64": "unsigned long long", "float64": "double", "bool": "bool",
            "int32": "int", "float32": "float", "int8": "signed char", "uint16": "unsigned short", "int16": "short"}


def _params(spec: str, types: dict[str, str] | None = None) -> list[tuple[bool, str, str]]:
    """(raw, type, name) of each parameter of a CuPy parameter list, type variables bound."""
    out = []
    for p in spec.split(","):
        words = p.split()
        out.append((words[0] == "raw", (types or {}).get(words[-2], words[-2]), words[-1]))
    return out


def _compile(kernel: fused.FusedKernel, tmp_path, types: dict[str, str] | None = None) -> ctypes.CDLL:
    """The body in CuPy's loop: an array parameter bound to its element by reference, a raw one
    a pointer the body indexes itself; ``types`` binds type variables (``{"I": "int32"}``)."""
    ins, outs = _params(kernel.in_params, types), _params(kernel.out_params, types)
    args = [f"const {_C_TYPES[t]}* {n if raw else '_raw_' + n}" for raw, t, n in ins] + \
           [f"{_C_TYPES[t]}* _raw_{n}" for _, t, n in outs]
    binds = [f"const {_C_TYPES[t]} &{n} = _raw_{n}[i];" for raw, t, n in ins if not raw] + \
            [f"{_C_TYPES[t]} &{n} = _raw_{n}[i];" for _, t, n in outs]
    source = "\n".join(["#include <cmath>", "#define __device__", kernel.preamble,
                        f'extern "C" void run(long long size, {", ".join(args)}) {{',
                        "  for (long long i = 0; i < size; ++i) {", *binds, kernel.body, "  }", "}"])
    src, lib = tmp_path / f"{kernel.name}.cpp", tmp_path / f"{kernel.name}.so"
    src.write_text(source)
    subprocess.run(["g++", "-O2", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC",
                    "-o", str(lib), str(src)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _run_compiled(kernel: fused.FusedKernel, library: ctypes.CDLL, *inputs, types: dict[str, str] | None = None):
    """The compiled body on ``inputs``: the non-raw ones broadcast together (to any shape, run
    in C order as CuPy's index ``i`` runs), the outputs of that shape."""
    params = _params(kernel.in_params, types)
    shape = np.broadcast_shapes(*(np.shape(x) for x, (raw, _, _) in zip(inputs, params) if not raw))
    n = int(np.prod(shape))
    arrays = [np.ascontiguousarray(np.asarray(x, dtype=t) if raw else np.broadcast_to(np.asarray(x, dtype=t), shape))
              for x, (raw, t, _) in zip(inputs, params)]
    outs = [np.zeros(shape, dtype=t) for _, t, _ in _params(kernel.out_params, types)]
    library.run(ctypes.c_longlong(n), *[a.ctypes.data_as(ctypes.c_void_p) for a in arrays + outs])
    return outs[0] if len(outs) == 1 else tuple(outs)


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None or sys.platform != "linux",
                                    reason="needs g++ on Linux")

INDEX = np.concatenate([np.arange(5000, dtype=np.int64),
                        np.random.default_rng(3).integers(0, 2**62, 5000, dtype=np.int64)])
KEYS = [rng.stream_key(7, "test.fused", 0), rng.stream_key(2**40, "cascade.buy.l2", 364), 0]


@needs_compiler
def test_every_kernel_is_covered():
    # every kernel the model registers, whatever other tests imported before this one
    import weishang.model.commerce  # noqa: F401  (imports every mechanism and kernel module)

    assert set(fused.KERNELS) == {"weishang_rng_bits", "weishang_rng_uniform", "weishang_rng_bernoulli",
                                  "weishang_rng_integers", "weishang_rng_binomial", "weishang_exposure_outcome",
                                  "weishang_keep_targeted", "weishang_split_fresh", "weishang_edge_views",
                                  "weishang_viewed", "weishang_fraud_batch", "weishang_rule_scores", "weishang_rule_scores_own",
                                  "weishang_mean_amount", "weishang_risk_rows", "weishang_risk_rows_own",
                                  "weishang_risk_scores", "weishang_risk_linear_scores", "weishang_payer_window",
                                  "weishang_payer_day", "weishang_keep_reader", "weishang_home_city_draws",
                                  "weishang_newton_terms", "weishang_logistic_loss", "weishang_row_spans",
                                  "weishang_settlement_bins"}


@needs_compiler
@pytest.mark.parametrize("key", KEYS)
def test_draws_compiled_equal_numpy(tmp_path, key):
    k = np.uint64(key)
    for kernel, extra in ((rng._BITS, ()), (rng._UNIFORM, ())):
        library = _compile(kernel, tmp_path)
        assert np.array_equal(_run_compiled(kernel, library, INDEX, k, *extra), kernel.reference(INDEX, k))
    library = _compile(rng._BERNOULLI, tmp_path)
    probabilities = np.random.default_rng(1).random(INDEX.shape[0])
    for p in (0.0, 1e-9, 0.3, 0.5, 1 - 1e-12, 1.0, 1.5, probabilities):
        expected = rng.bernoulli(key, INDEX, p)  # a scalar p takes NumPy's raw-bits comparison
        assert np.array_equal(_run_compiled(rng._BERNOULLI, library, INDEX, k, p), expected), p
    per_draw = np.array(KEYS, dtype=np.uint64)[INDEX % len(KEYS)]  # a key per draw
    assert np.array_equal(_run_compiled(rng._BERNOULLI, library, INDEX, per_draw, 0.3),
                          rng.bernoulli(per_draw, INDEX, 0.3))
    library = _compile(rng._INTEGERS, tmp_path)
    highs = np.random.default_rng(2).integers(1, 10**6, INDEX.shape[0])
    for high in (1, 7, 1000, 2**53 + 3, 2**62, highs):
        assert np.array_equal(_run_compiled(rng._INTEGERS, library, INDEX, k, high),
                              rng.integers(key, INDEX, high)), high


@needs_compiler
def test_binomial_compiled_equals_numpy(tmp_path):
    library = _compile(rng._BINOMIAL, tmp_path)
    key = KEYS[1]
    spread = np.random.default_rng(4).random(INDEX.shape[0])
    for n in (0, 1, 5, 50, 500, 1000):
        for p in (0.0, 1e-4, 0.2, 0.5, np.nextafter(0.5, 1.0), 0.9, 1.0, spread):
            expected = rng.binomial(key, INDEX, n, p)
            got = _run_compiled(rng._BINOMIAL, library, INDEX, np.uint64(key), n, p)
            assert np.array_equal(got, expected), (n, p)


@needs_compiler
def test_a_planted_flip_is_caught(tmp_path):
    # the check can fail: flipping at p >= 1/2 instead of p > 1/2 draws failures at p = 1/2 (the
    # same law, other draws), which NumPy's inversion does not
    body = rng._BINOMIAL.body.replace("bool flip = p > 0.5;", "bool flip = p >= 0.5;")
    assert body != rng._BINOMIAL.body
    planted = fused.FusedKernel("planted_binomial", rng._BINOMIAL.in_params, rng._BINOMIAL.out_params, body,
                                rng._BINOMIAL.reference, rng._BINOMIAL.preamble)
    library = _compile(planted, tmp_path)
    got = _run_compiled(planted, library, INDEX, np.uint64(KEYS[0]), 40, 0.5)
    assert not np.array_equal(got, rng.binomial(KEYS[0], INDEX, 40, 0.5))


def test_on_the_stand_in_a_draw_is_one_launch_and_cupy_dtypes_are_enforced(monkeypatch):
    xp = strict_device.xp
    index = xp.arange(1000, dtype=xp.int64)
    key = KEYS[0]
    with strict_device.counting() as tally:
        draws = rng.binomial(key, index, 500, 0.2, xp=xp)
    assert tally.launches == 1 and tally.transfers == 0
    assert np.array_equal(draws.get(), rng.binomial(key, np.arange(1000), 500, 0.2))
    with pytest.raises(TypeError, match="mismatched"):
        fused.launch(rng._UNIFORM, index.astype(xp.int32), np.uint64(key), xp=xp)
    with pytest.raises(TypeError):
        fused.launch(rng._UNIFORM, np.arange(10), np.uint64(key), xp=xp)  # a host array


def _exposures(gen, n_users: int = 5000, n_cascades: int = 40, x: int = 20_000):
    """A tick's posts and exposures for a kernel test: (n_users, cascade_key (int64[C]),
    interests (uint16[N]), category_bit (uint16[C]), cascade and user of each exposure (int64[X]))."""
    cascade_key = gen.integers(0, 10**6, n_cascades)
    interests = gen.integers(0, 2**16, n_users).astype(np.uint16)
    category_bit = (1 << gen.integers(0, 16, n_cascades)).astype(np.uint16)
    return n_users, cascade_key, interests, category_bit, gen.integers(0, n_cascades, x), gen.integers(0, n_users, x)


@needs_compiler
def test_exposure_outcome_compiled_equals_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._EXPOSURE_OUTCOME
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(5)
    n_users, cascade_key, interests, category_bit, c, u = _exposures(gen)
    rel_buy = gen.lognormal(0, 0.5, n_users).astype(np.float32)
    rel_post, rel_share = gen.lognormal(0, 1, cascade_key.shape[0]), gen.lognormal(0, 1, cascade_key.shape[0])
    for p_buy, p_share in ((0.02, 0.1), (0.6, 0.9), (0.0, 0.0), (1.0, 1.0)):
        args = (c, u, cascade_key, interests, category_bit, rel_buy, rel_post, rel_share, p_buy, p_share, 0.25,
                n_users, np.uint64(KEYS[0]), np.uint64(KEYS[1]), 3, 1)
        code, bins = kernel.reference(*args)
        got_code, got_bins = _run_compiled(kernel, library, *args)
        assert np.array_equal(got_code, code) and np.array_equal(got_bins, bins), (p_buy, p_share)
        assert 0 < np.count_nonzero(code) or p_buy == p_share == 0.0
        assert np.array_equal(bins, (c * 3 + 1) * 8 + code)


@needs_compiler
def test_keep_targeted_compiled_equals_numpy(tmp_path):
    from weishang.model import tools

    kernel = tools._KEEP_TARGETED
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(6)
    n_users, cascade_key, interests, category_bit, c, u = _exposures(gen)
    targeted = gen.random(cascade_key.shape[0]) < 0.5
    for keep in (0.0, 0.3, 1.0):
        args = (c, u, targeted, category_bit, interests, cascade_key, keep, n_users, np.uint64(KEYS[2]))
        expected = kernel.reference(*args)
        assert np.array_equal(_run_compiled(kernel, library, *args), expected), keep
        assert expected.all() == (keep == 1.0)


@needs_compiler
def test_split_fresh_compiled_equals_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._SPLIT_FRESH
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(7)
    n_users, n_cascades = 5000, 40
    origin = gen.integers(0, n_users, n_cascades)
    keys = np.concatenate([gen.integers(0, n_users * n_cascades, 20_000), np.arange(n_cascades) * n_users + origin])
    seen = gen.random(keys.shape[0]) < 0.3
    args = (keys, seen, origin, n_users)
    got, expected = _run_compiled(kernel, library, *args), kernel.reference(*args)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert not expected[2][-n_cascades:].any() and expected[2].any()  # an account never sees its own post


@needs_compiler
def test_edge_views_compiled_equals_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._EDGE_VIEWS
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(8)
    n_sources, n_cascades, n_indices = 300, 40, 90_000
    length = gen.integers(0, 60, n_sources)
    start = gen.integers(0, n_indices - 60, n_sources)
    first = np.cumsum(length) - length
    owner = np.repeat(np.arange(n_sources), length)
    cascade_of = gen.integers(0, n_cascades, n_sources)
    cascade_key = gen.integers(0, 10**6, n_cascades)
    p_view = gen.random(n_sources)
    key = np.array(KEYS, dtype=np.uint64)[gen.integers(0, len(KEYS), n_sources)]
    args = (owner, start, first, cascade_of, cascade_key, p_view, key, n_indices)
    (edge, hit), (want_edge, want_hit) = _run_compiled(kernel, library, *args), kernel.reference(*args)
    assert np.array_equal(edge, want_edge) and np.array_equal(hit, want_hit)
    assert np.array_equal(edge, np.concatenate([np.arange(s, s + n) for s, n in zip(start, length)]))
    viewed = cascade._VIEWED
    for itype in ("int32", "int64"):  # the friend graph's targets, and group members'
        types = {"I": itype}
        indices = gen.integers(0, 10**6, n_indices).astype(itype)
        args = (np.flatnonzero(hit), owner, edge, cascade_of, indices)
        (tmp_path / itype).mkdir()
        library = _compile(viewed, tmp_path / itype, types)
        got, want = _run_compiled(viewed, library, *args, types=types), viewed.reference(*args)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)) and want[0].shape[0] > 0


#: the risk kernels' inputs divide by zero on purpose (a NaN and an inf ratio must agree too)
_ZERO_DENOMINATORS = pytest.mark.filterwarnings("ignore:.*encountered in divide:RuntimeWarning")


def _same_floats(got: np.ndarray, want: np.ndarray) -> bool:
    """The same float64 bits wherever ``want`` is a number, and NaN where it is NaN (a GPU's NaN
    of 0/0 has other bits than the CPU's)."""
    nan = np.isnan(want)
    return got.shape == want.shape and np.array_equal(np.isnan(got), nan) and \
        np.array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


def _edgy_counts(gen, n, high, cap):
    """(int64[n]) counts in [0, high] with 0, cap - 1, cap and cap + 1 among them."""
    values = gen.integers(0, high + 1, n)
    values[:4] = (0, cap - 1, cap, cap + 1)
    return values.astype(np.int64)


def _edgy_means(gen, n):
    """(float64[n]) means with zero (a zero denominator), below 1, exactly 1 and fractions."""
    values = gen.integers(0, 40, n) / 7.0
    values[:4] = (0.0, 0.5, 1.0, 3.0)
    return values


def _risk_payments(gen, t, n_users, n_merchants):
    """A tick's payments (payer, merchant, amount, scenario, new_device, account_age) with the
    edge values: amount 0 (0/0 against a zero mean: NaN) and amounts at the caps."""
    amount = gen.integers(0, 10_000_000, t)
    amount[:6] = (0, 1, 21_500 * 300, 21_500 * 300 + 1, 10**12, 50)
    payer, merchant = gen.integers(0, n_users, t), gen.integers(0, n_merchants, t)
    payer[:4], merchant[:4] = 0, 0  # amount 0 against the zero mean at index 0: NaN
    return (payer, merchant, amount, gen.integers(0, 3, t).astype(np.int8), gen.random(t) < 0.3,
            gen.integers(25, 35, t))


@needs_compiler
@_ZERO_DENOMINATORS
def test_rule_scores_compiled_equal_numpy(tmp_path):
    from weishang.kernels import risk

    gen = np.random.default_rng(9)
    n_users, n_merchants, t = 300, 40, 20_000
    tx = _risk_payments(gen, t, n_users, n_merchants)
    counts = (_edgy_counts(gen, n_users, 40, risk.BURST_CAP), _edgy_counts(gen, n_users, 80, risk.VELOCITY_CAP),
              _edgy_means(gen, n_users) * 1e4, _edgy_counts(gen, n_merchants, 200, 50),
              _edgy_means(gen, n_merchants), gen.random(n_merchants) < 0.3)
    own = (gen.integers(1, 30, t), gen.integers(1, 30, t))
    libraries = {kernel.name: _compile(kernel, tmp_path) for kernel in (risk._RULE_SCORES, risk._RULE_SCORES_OWN)}
    negative = risk.RiskWeights(-0.5, -0.05, 0.3, -0.3, 4.0, -3.0, 0.02, -0.8, (-1.0, 0.2, 0.5))
    for w in (risk.RiskWeights(), negative):
        scalars = (w.bias, w.payer_velocity, w.payer_burst, w.amount_ratio, w.new_account, w.new_device, *w.scenario,
                   w.merchant_velocity, w.merchant_flag, 30)
        for kernel, extra in ((risk._RULE_SCORES, ()), (risk._RULE_SCORES_OWN, own)):
            args = (*tx, *extra, *counts, *scalars)
            want = kernel.reference(*args)
            assert _same_floats(_run_compiled(kernel, libraries[kernel.name], *args), want), kernel.name
            assert np.isnan(want).any() and np.isfinite(want).sum() > t // 2


def _risk_view(gen, n_users, n_merchants, day):
    """An AccountView's arrays (kernels.risk_features.PAYER_VIEW, then MERCHANT_VIEW) with the
    edge values: counts at the caps, zero denominators, signals never, long ago, today and later."""
    from weishang.kernels import risk_features as rf

    last_signal = day - gen.integers(-3, 12, n_users)
    last_signal[:3] = (rf.NO_SIGNAL, day, day - rf.RECENCY_DAYS)
    today = _edgy_counts(gen, n_merchants, 60, 1)
    fan_in = np.minimum(_edgy_counts(gen, n_merchants, 60, 1), today)
    return (_edgy_counts(gen, n_users, 80, rf.VELOCITY_CAP), _edgy_counts(gen, n_users, 40, rf.BURST_CAP),
            _edgy_means(gen, n_users) * 1e4, _edgy_counts(gen, n_users, 80, rf.FAN_CAP),
            _edgy_counts(gen, n_users, 80, rf.FAN_CAP), _edgy_counts(gen, n_users, 40, rf.DEVICE_CAP), last_signal,
            today, fan_in, gen.integers(0, 2, n_merchants) * today, fan_in * gen.integers(0, 6, n_merchants),
            _edgy_means(gen, n_merchants), _edgy_means(gen, n_merchants))


def _risk_own(gen, t, n_payers, n_merchants, day):
    """A probe's compact ids and own TickGraph's arrays (kernels.risk_features.OWN_FIELDS)."""
    signal = np.where(gen.random(n_payers) < 0.5, day - gen.integers(0, 3, n_payers), -(2**30))
    fan_in = gen.integers(0, 4, n_merchants)
    return (gen.integers(0, n_payers, t), gen.integers(0, n_merchants, t), gen.integers(0, 30, n_payers),
            gen.integers(0, 3, n_payers), gen.integers(0, 60, n_payers), gen.integers(0, 30, n_merchants),
            gen.integers(0, 3, n_merchants), fan_in, fan_in * 2, signal)


@needs_compiler
@_ZERO_DENOMINATORS
def test_feature_rows_and_scores_compiled_equal_numpy(tmp_path):
    from weishang.kernels import risk_features as rf

    gen = np.random.default_rng(10)
    n_users, n_merchants, t, day = 300, 40, 5_000, 12
    tx = _risk_payments(gen, t, n_users, n_merchants)
    flag = gen.random(n_merchants) < 0.3
    view = _risk_view(gen, n_users, n_merchants, day)
    own = _risk_own(gen, t, 50, 20, day)
    rows = np.concatenate([gen.integers(0, t, 2_000), np.arange(8)])  # repeats, and the edge payments
    grid = np.broadcast_to(rows, (rf.N_FEATURES, rows.shape[0]))
    scalars = (21_500.0, 30, day, rows.shape[0])
    for kernel, extra in ((rf._ROWS, ()), (rf._ROWS_OWN, own)):
        args = (grid, *tx, flag, *view, *extra, *scalars)
        want = kernel.reference(*args)
        assert want.shape == (rf.N_FEATURES, rows.shape[0])
        assert _same_floats(_run_compiled(kernel, _compile(kernel, tmp_path), *args), want), kernel.name
        assert np.isnan(want).any()
    x = rf._ROWS.reference(grid, *tx, flag, *view, *scalars).T
    scores, linear = _compile(rf._SCORES, tmp_path), _compile(rf._LINEAR_SCORES, tmp_path)
    for coef, bias in ((np.linspace(-1.0, 2.0, rf.N_FEATURES), -3.0), (gen.normal(size=rf.N_FEATURES), 0.5)):
        weights = (bias, *coef.tolist())
        args = (*tx, flag, *view, 21_500.0, 30, day, *weights)
        want = rf._SCORES.reference(*args)
        assert _same_floats(_run_compiled(rf._SCORES, scores, *args), want)
        columns = [x[:, k] for k in range(rf.N_FEATURES)]
        want_linear = rf._LINEAR_SCORES.reference(*columns, *weights)
        assert _same_floats(_run_compiled(rf._LINEAR_SCORES, linear, *columns, *weights), want_linear)
        assert _same_floats(want_linear, want[rows])  # the rows' scores are the payments' scores


@needs_compiler
@_ZERO_DENOMINATORS
def test_a_planted_cap_is_caught(tmp_path):
    # the check can fail: the burst capped at the velocity cap instead of its own
    from weishang.kernels import risk_features as rf

    body = rf._SCORES.body.replace(f"weishang_minimum(burst, {rf.BURST_CAP}LL)",
                                   f"weishang_minimum(burst, {rf.VELOCITY_CAP}LL)")
    assert body != rf._SCORES.body
    planted = fused.FusedKernel("planted_scores", rf._SCORES.in_params, rf._SCORES.out_params, body,
                                rf._SCORES.reference, rf._SCORES.preamble)
    gen = np.random.default_rng(11)
    args = (*_risk_payments(gen, 2_000, 300, 40), gen.random(40) < 0.3, *_risk_view(gen, 300, 40, 12), 21_500.0,
            30, 12, -3.0, *np.linspace(-1.0, 2.0, rf.N_FEATURES).tolist())
    assert not _same_floats(_run_compiled(planted, _compile(planted, tmp_path), *args), rf._SCORES.reference(*args))


@needs_compiler
@_ZERO_DENOMINATORS
def test_risk_account_kernels_compiled_equal_numpy(tmp_path):
    from weishang.kernels import risk
    from weishang.kernels import risk_features as rf

    gen = np.random.default_rng(12)
    n, window, day = 5_000, 7, 40
    count = _edgy_counts(gen, n, 30, 1)
    amount_sum = count * gen.integers(0, 100_000, n)
    amount_sum[:2] = (5, 0)  # a sum without a count; a zero mean
    for reference in (21_500.0, 0.0):
        args = (amount_sum, count, reference)
        assert _same_floats(_run_compiled(risk._MEAN_AMOUNT, _compile(risk._MEAN_AMOUNT, tmp_path), *args),
                            risk._MEAN_AMOUNT.reference(*args))
    fan_out, devices = _edgy_counts(gen, n, 40_000, 2**15 - 1), _edgy_counts(gen, n, 300, 127)
    devices[4:2_000] = 0  # most pay from known devices
    signal = np.where(gen.random(n) < 0.3, day - gen.integers(0, 3, n), rf.NO_SIGNAL)
    last_signal = np.where(gen.random(n) < 0.5, day - gen.integers(0, 30, n), rf.NO_SIGNAL).astype(np.int32)
    fan_out_ring = gen.integers(0, 2**15, (window, n)).astype(np.int16)
    device_ring = gen.integers(0, 128, (window, n)).astype(np.int8)
    args = (gen.integers(0, 400, n), gen.integers(0, 60, n), fan_out, devices, last_signal, signal,
            fan_out_ring.ravel(), device_ring.ravel(), window, n)
    got = _run_compiled(rf._PAYER_WINDOW, _compile(rf._PAYER_WINDOW, tmp_path), *args)
    assert all(np.array_equal(a, b) for a, b in zip(got, rf._PAYER_WINDOW.reference(*args), strict=True))
    args = (fan_out, devices, signal, last_signal, day)
    got, want = _run_compiled(rf._PAYER_DAY, _compile(rf._PAYER_DAY, tmp_path), *args), rf._PAYER_DAY.reference(*args)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert want[0].max() == 2**15 - 1 and want[1].max() == 127  # saturated


@needs_compiler
def test_fraud_batch_compiled_equals_numpy(tmp_path):
    from weishang.model.mechanisms.risk import fraud
    from weishang.model.config import load_config

    kernel = fraud._FRAUD_BATCH
    library = _compile(kernel, tmp_path)
    cfg = load_config(overrides=["fraud.ato_per_million=40.0", "fraud.burst_per_million=30.0",
                                 "fraud.laundering_per_million=8.0"]).fraud
    gen = np.random.default_rng(9)
    seen: set[int] = set()
    for k, stealth in ((40, 0.0), (37, 0.8), (0, 0.4)):
        shops = np.sort(gen.choice(500, k, replace=False)).astype(np.int64)
        injector = fraud.FraudInjector(cfg, 1_000_000, shops, 500, 21_500, seed=3)
        injector.stealth[:] = stealth * gen.random(len(fraud.TYPOLOGIES))
        tables = []

        def capture(tick, stream, events, ends, injector=injector):
            tables.append(injector.batch_table(tick, stream, events, ends))
            return fraud.FraudInjector._batch(injector, tick, stream, events, ends)

        injector._batch = capture
        for tick in (0, 9):
            injector.draw(tick)
            injector.probe(tick)
        for table in tables:
            last = fraud.HEADER + fraud.SEGMENT * (len(fraud.SEGMENTS) - 1)
            j = np.arange(int(table[last]) + int(table[last + 1]), dtype=np.int64)
            got, want = _run_compiled(kernel, library, j, table, shops), kernel.reference(j, table, shops)
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want))
            seen |= set(want[6].tolist())
    assert seen == set(range(len(fraud.TYPOLOGIES)))


@needs_compiler
def test_keep_reader_compiled_equals_numpy(tmp_path):
    from weishang.model.mechanisms import community

    kernel = community._KEEP_READER
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(9)
    n_users, n_cascades, n_posts, x = 5000, 60, 25, 20_000
    post = np.sort(gen.choice(n_cascades, n_posts, replace=False)).astype(np.int64)
    p_read, p_push = gen.random(n_posts) * 0.6, gen.random(n_posts)
    p_read[:3], p_push[:3] = 0.0, 0.0  # a post nobody reads: ratio 0, not 0/0
    p_high = np.maximum(p_read, p_push)
    profile = gen.random(n_users) < 0.5
    interests = gen.integers(0, 2**16, n_users).astype(np.uint16)
    category_bit = (1 << gen.integers(0, 16, n_cascades)).astype(np.uint16)
    cascade_key = gen.integers(0, 10**6, n_cascades)
    c, u = post[gen.integers(0, n_posts, x)], gen.integers(0, n_users, x)
    args = (c, u, post, p_read, p_push, p_high, profile, interests, category_bit, cascade_key, n_posts, n_users,
            np.uint64(KEYS[1]))
    expected = kernel.reference(*args)
    assert np.array_equal(_run_compiled(kernel, library, *args), expected)
    assert 0 < expected.sum() < x and not expected[np.isin(c, post[:3])].any()


@needs_compiler
def test_home_city_draws_compiled_equal_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._HOME_CITY_DRAWS
    library = _compile(kernel, tmp_path, {"I": "int32"})
    gen = np.random.default_rng(10)
    sizes = gen.integers(1, 400, 30)
    city_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    city = np.repeat(np.arange(30, dtype=np.int32), sizes)
    source = gen.integers(0, city.shape[0], 500)
    count = gen.integers(0, 40, 500)
    owner = np.repeat(np.arange(500), count)
    first = np.cumsum(count) - count
    index_base = gen.integers(0, 2**40, 500)
    args = (owner, first, index_base, source, city, city_start, np.uint64(KEYS[0]))
    user = _run_compiled(kernel, library, *args, types={"I": "int32"})
    assert np.array_equal(user, kernel.reference(*args))
    assert np.array_equal(city[user], city[source[owner]])  # every draw in its source's city


@needs_compiler
def test_logistic_terms_compiled_agree_with_numpy_to_an_ulp(tmp_path):
    # exp and log1p are the only functions not correctly rounded by contract: the C library's and
    # NumPy's may differ in the last bit, so these two kernels are held to a few ulps (the fit's
    # weights are rounded to float32, far coarser); everything else about them must match
    from weishang.kernels import logistic

    gen = np.random.default_rng(11)
    eta = np.concatenate([gen.normal(0, 5, 20_000), [0.0, -0.0, 700.0, -700.0, 40.0, -40.0]])
    s, y = gen.random(eta.shape[0]) / eta.shape[0], (gen.random(eta.shape[0]) < 0.3).astype(np.float64)
    for kernel, args in ((logistic._NEWTON_TERMS, (eta, s, y)), (logistic._LOSS, (eta, y))):
        got, want = _run_compiled(kernel, _compile(kernel, tmp_path), *args), kernel.reference(*args)
        for a, b in zip(np.atleast_2d(got) if isinstance(got, np.ndarray) else got,
                        np.atleast_2d(want) if isinstance(want, np.ndarray) else want):
            # p - y cancels where p is near y: an ulp of p is then a larger share of the term
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15 * s.max())
            assert np.isfinite(a).all()


@needs_compiler
def test_row_spans_compiled_equal_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._ROW_SPANS
    indptr = np.concatenate([[0], np.cumsum(np.random.default_rng(12).integers(0, 50, 1000))]).astype(np.int64)
    rows = np.random.default_rng(13).integers(0, 1000, 3000)
    got, want = _run_compiled(kernel, _compile(kernel, tmp_path), rows, indptr), kernel.reference(rows, indptr)
    assert all(np.array_equal(a, b) for a, b in zip(got, want)) and want[1].sum() > 0


@needs_compiler
def test_settlement_bins_compiled_equal_numpy(tmp_path):
    from weishang.model.mechanisms import settlement

    kernel = settlement._SETTLEMENT_BINS
    gen = np.random.default_rng(14)
    o = 5000
    args = (gen.integers(0, 4, o).astype(np.int8), gen.integers(0, 300, o), gen.integers(100, 10**7, o),
            gen.integers(0, 5000, o), gen.random(o) < 0.9, np.array([0, 1, 3, 0], dtype=np.int64), 300, 4)
    got, want = _run_compiled(kernel, _compile(kernel, tmp_path), *args), kernel.reference(*args)
    assert all(np.array_equal(a, b) for a, b in zip(got, want)) and (want[2] == 0).any()
