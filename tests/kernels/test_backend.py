import numpy as np
import pytest

from weishang.kernels.backend import BackendUnavailable, repeat_ids, resolve_backend, scatter_add
from tests.conftest import cupy_backend


def test_numpy_backend():
    b = resolve_backend("numpy")
    assert b.name == "numpy" and b.xp is np
    a = np.arange(3)
    assert b.to_host(b.to_device(a)) is not None and np.array_equal(b.to_host(b.to_device(a)), a)


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="not one of"):
        resolve_backend("gpu")


def test_auto_says_why():
    b = resolve_backend("auto")
    if cupy_backend() is None:
        assert b.name == "numpy" and b.reason.startswith("auto chose numpy")
    else:
        assert b.name == "cupy"


def test_cupy_request_without_gpu_is_an_error_not_a_fallback():
    if cupy_backend() is not None:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailable, match="cupy"):
        resolve_backend("cupy")


def test_repeat_ids():
    assert list(repeat_ids(np.array([2, 0, 1]), xp=np)) == [0, 0, 2]
    assert repeat_ids(np.array([], dtype=np.int64), xp=np).shape == (0,)


def test_scatter_add_accumulates_repeats():
    target = np.zeros(4, dtype=np.int64)
    scatter_add(target, np.array([1, 1, 3, 1]), np.array([5, 6, 7, 8]), xp=np)
    assert list(target) == [0, 19, 0, 7]
    ftarget = np.zeros(3)
    scatter_add(ftarget, np.array([2, 2]), np.array([0.5, 0.25]), xp=np)
    assert list(ftarget) == [0.0, 0.0, 0.75]


@pytest.mark.gpu
def test_helpers_identical_on_cupy(gpu_backend):
    xp = gpu_backend.xp
    counts = np.array([3, 0, 2, 5], dtype=np.int64)
    assert np.array_equal(gpu_backend.to_host(repeat_ids(xp.asarray(counts), xp=xp)), repeat_ids(counts, xp=np))
    target = xp.zeros(4, dtype=xp.int64)
    scatter_add(target, xp.asarray([1, 1, 3]), xp.asarray([2, 3, 4], dtype=xp.int64), xp=xp)
    assert list(gpu_backend.to_host(target)) == [0, 5, 0, 4]


def test_concat_ranges():
    from weishang.kernels.backend import concat_ranges

    got = concat_ranges(np.array([5, 0, 9]), np.array([2, 0, 3]), xp=np)
    assert got.tolist() == [5, 6, 9, 10, 11]


def test_merge_sorted_and_sorted_unique():
    from weishang.kernels.backend import merge_sorted, sorted_unique

    rs = np.random.default_rng(0)
    a, b = np.sort(rs.integers(0, 50, 40)), np.sort(rs.integers(0, 50, 25))
    assert np.array_equal(merge_sorted(a, b, xp=np), np.sort(np.concatenate([a, b])))
    assert np.array_equal(merge_sorted(a[:0], b, xp=np), b) and np.array_equal(merge_sorted(a, b[:0], xp=np), a)
    assert np.array_equal(sorted_unique(np.concatenate([a, b]), xp=np), np.unique(np.concatenate([a, b])))


@pytest.mark.parametrize("n_values,n_members", [(200, 30), (30, 200), (0, 10), (10, 0), (1, 1)])
def test_isin_sorted_either_way_round(n_values, n_members):
    from weishang.kernels.backend import isin_sorted

    rs = np.random.default_rng(n_values + n_members)
    values = np.unique(rs.integers(0, 300, n_values))
    members = np.unique(rs.integers(0, 300, n_members))
    assert np.array_equal(isin_sorted(values, members, xp=np), np.isin(values, members))


@pytest.mark.gpu
def test_isin_sorted_identical_on_cupy(gpu_backend):
    from weishang.kernels.backend import isin_sorted

    xp = gpu_backend.xp
    rs = np.random.default_rng(1)
    for n_values, n_members in ((5000, 300), (300, 5000)):
        values = np.unique(rs.integers(0, 10_000, n_values))
        members = np.unique(rs.integers(0, 10_000, n_members))
        got = isin_sorted(xp.asarray(values), xp.asarray(members), xp=xp)
        assert np.array_equal(gpu_backend.to_host(got), np.isin(values, members))


@pytest.mark.parametrize("shuffled_runs,scale", [(False, 1000), (True, 1000), (False, 2**40)])
def test_sort_in_runs_equals_one_sort(shuffled_runs, scale):
    from weishang.kernels.backend import CHUNK, sort_in_runs, sorted_unique

    rs = np.random.default_rng(3)
    n = 5 * CHUNK + 17
    # one very long run (longer than a piece) among short ones, keys run * M + x; pieces of a
    # small M are sorted as 32-bit offsets, of a large M as they are
    run = np.sort(np.concatenate([rs.integers(0, 40, n - 2 * CHUNK), np.full(2 * CHUNK, 17)]))
    if shuffled_runs:
        run = rs.permutation(run)
    keys = run * scale + rs.integers(0, scale, n)
    assert np.array_equal(sort_in_runs(keys, run, xp=np), np.sort(keys))
    assert np.array_equal(sorted_unique(keys, xp=np, run=run), np.unique(keys))
