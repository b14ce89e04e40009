import numpy as np
import pytest

from kernels.backend import BackendUnavailable, repeat_ids, resolve_backend, scatter_add
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
    from kernels.backend import concat_ranges

    got = concat_ranges(np.array([5, 0, 9]), np.array([2, 0, 3]), xp=np)
    assert got.tolist() == [5, 6, 9, 10, 11]


def test_merge_sorted_and_sorted_unique():
    from kernels.backend import merge_sorted, sorted_unique

    rs = np.random.default_rng(0)
    a, b = np.sort(rs.integers(0, 50, 40)), np.sort(rs.integers(0, 50, 25))
    assert np.array_equal(merge_sorted(a, b, xp=np), np.sort(np.concatenate([a, b])))
    assert np.array_equal(merge_sorted(a[:0], b, xp=np), b) and np.array_equal(merge_sorted(a, b[:0], xp=np), a)
    assert np.array_equal(sorted_unique(np.concatenate([a, b]), xp=np), np.unique(np.concatenate([a, b])))
