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
            "int32": "int", "float32": "float", "int8": "signed char", "uint16": "unsigned short"}


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
    source = "\n".join(["#define __device__", kernel.preamble,
                        f'extern "C" void run(long long size, {", ".join(args)}) {{',
                        "  for (long long i = 0; i < size; ++i) {", *binds, kernel.body, "  }", "}"])
    src, lib = tmp_path / f"{kernel.name}.cpp", tmp_path / f"{kernel.name}.so"
    src.write_text(source)
    subprocess.run(["g++", "-O2", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC",
                    "-o", str(lib), str(src)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _run_compiled(kernel: fused.FusedKernel, library: ctypes.CDLL, *inputs, types: dict[str, str] | None = None):
    params = _params(kernel.in_params, types)
    n = max(np.size(x) for x, (raw, _, _) in zip(inputs, params) if not raw)
    arrays = [np.ascontiguousarray(np.asarray(x, dtype=t) if raw else np.broadcast_to(np.asarray(x, dtype=t), (n,)))
              for x, (raw, t, _) in zip(inputs, params)]
    outs = [np.zeros(n, dtype=t) for _, t, _ in _params(kernel.out_params, types)]
    library.run(ctypes.c_longlong(n), *[a.ctypes.data_as(ctypes.c_void_p) for a in arrays + outs])
    return outs[0] if len(outs) == 1 else tuple(outs)


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None or sys.platform != "linux",
                                    reason="needs g++ on Linux")

INDEX = np.concatenate([np.arange(5000, dtype=np.int64),
                        np.random.default_rng(3).integers(0, 2**62, 5000, dtype=np.int64)])
KEYS = [rng.stream_key(7, "test.fused", 0), rng.stream_key(2**40, "cascade.buy.l2", 364), 0]


@needs_compiler
def test_every_kernel_is_covered():
    import weishang.kernels.cascade  # noqa: F401  (registers its kernel)
    import weishang.model.tools  # noqa: F401

    assert set(fused.KERNELS) == {"weishang_rng_bits", "weishang_rng_uniform", "weishang_rng_bernoulli",
                                  "weishang_rng_integers", "weishang_rng_binomial", "weishang_exposure_outcome",
                                  "weishang_keep_targeted", "weishang_split_fresh", "weishang_edge_views",
                                  "weishang_viewed"}


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


@needs_compiler
def test_exposure_outcome_compiled_equals_numpy(tmp_path):
    from weishang.kernels import cascade

    kernel = cascade._EXPOSURE_OUTCOME
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(5)
    n_users, n_cascades, x = 5000, 40, 20_000
    cascade_key = gen.integers(0, 10**6, n_cascades)
    interests = gen.integers(0, 2**16, n_users).astype(np.uint16)
    category_bit = (1 << gen.integers(0, 16, n_cascades)).astype(np.uint16)
    rel_buy = gen.lognormal(0, 0.5, n_users).astype(np.float32)
    rel_post, rel_share = gen.lognormal(0, 1, n_cascades), gen.lognormal(0, 1, n_cascades)
    c, u = gen.integers(0, n_cascades, x), gen.integers(0, n_users, x)
    for p_buy, p_share in ((0.02, 0.1), (0.6, 0.9), (0.0, 0.0), (1.0, 1.0)):
        args = (c, u, cascade_key, interests, category_bit, rel_buy, rel_post, rel_share, p_buy, p_share, 0.25,
                n_users, np.uint64(KEYS[0]), np.uint64(KEYS[1]))
        expected = kernel.reference(*args)
        assert np.array_equal(_run_compiled(kernel, library, *args), expected), (p_buy, p_share)
        assert 0 < np.count_nonzero(expected) or p_buy == p_share == 0.0


@needs_compiler
def test_keep_targeted_compiled_equals_numpy(tmp_path):
    from weishang.model import tools

    kernel = tools._KEEP_TARGETED
    library = _compile(kernel, tmp_path)
    gen = np.random.default_rng(6)
    n_users, n_cascades, x = 5000, 40, 20_000
    targeted = gen.random(n_cascades) < 0.5
    category_bit = (1 << gen.integers(0, 16, n_cascades)).astype(np.uint16)
    interests = gen.integers(0, 2**16, n_users).astype(np.uint16)
    cascade_key = gen.integers(0, 10**6, n_cascades)
    c, u = gen.integers(0, n_cascades, x), gen.integers(0, n_users, x)
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
