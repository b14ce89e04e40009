"""The sweep's memory preflight: N workers' host and device memory counted together (issue 29).

The device's free memory comes from the strict CuPy stand-in's ``memGetInfo``, so the arithmetic
and the refusals are checked without a GPU; nothing here builds a population.
"""

import importlib.util

import pytest

from tests import strict_device
from weishang.model import preflight
from weishang.model.config import load_config
from weishang.model.preflight import DEVICE_CONTEXT_BYTES, GIB, PreflightError, check_workers, estimate

ONE_M = load_config(overrides=["population.n_users=1000000"])
SMALL = load_config(overrides=["population.n_users=200000"])


@pytest.fixture
def device_free(monkeypatch):
    """Set the stand-in device's free bytes; returns what ``Backend.free_device_bytes`` reads."""
    backend = strict_device.backend()

    def set_free(free: int) -> int:
        monkeypatch.setattr(strict_device.xp.cuda.runtime, "memGetInfo", lambda: (free, 141 * GIB))
        return backend.free_device_bytes()

    return set_free


@pytest.fixture(autouse=True)
def roomy_host(monkeypatch):
    """A host with room for anything, so only the device can refuse (unless a test says otherwise)."""
    monkeypatch.setattr(preflight, "available_host_bytes", lambda: (10**15, "available on the machine"))


def per_worker(config):
    return estimate(config, "cupy").device_bytes + DEVICE_CONTEXT_BYTES


def test_n_workers_count_n_times_the_device_estimate(device_free):
    free = device_free(2 * per_worker(ONE_M) + per_worker(ONE_M) // 2)  # room for two and a half
    check_workers([(ONE_M, "cupy")] * 8, 2, free)
    with pytest.raises(PreflightError) as info:
        check_workers([(ONE_M, "cupy")] * 8, 4, free)
    message = str(info.value)
    assert message == (f"4 workers need about {4 * per_worker(ONE_M) / GIB:.1f} GiB of device memory, "
                       f"{free / GIB:.1f} GiB is free: use at most 2 workers")
    assert "\n" not in message


def test_the_largest_runs_are_counted_together(device_free):
    # a grid over the population: the 1M run and one 200k run can be in flight at once
    runs = [(SMALL, "cupy"), (ONE_M, "cupy"), (SMALL, "cupy")]
    both = per_worker(ONE_M) + per_worker(SMALL)
    check_workers(runs, 2, device_free(both))
    with pytest.raises(PreflightError, match="2 workers need .* use at most 1 workers"):
        check_workers(runs, 2, device_free(both - 1))
    # more workers than runs: only the runs there are run at once
    check_workers(runs, 16, device_free(both + per_worker(SMALL)))


def test_one_run_that_cannot_fit_on_the_device_says_so(device_free):
    with pytest.raises(PreflightError, match=r"a run needs about .* GiB of device memory but .* GiB is free; "
                                             r".*use --backend numpy"):
        check_workers([(ONE_M, "cupy")] * 3, 3, device_free(per_worker(ONE_M) - 1))


def test_numpy_runs_need_no_device_memory(device_free):
    check_workers([(ONE_M, "numpy")] * 64, 64, device_free(0))


def test_host_memory_is_counted_for_n_workers_too(monkeypatch):
    host = estimate(ONE_M, "cupy").host_bytes
    monkeypatch.setattr(preflight, "available_host_bytes", lambda: (3 * host + 1, "allowed by ulimit -v"))
    check_workers([(ONE_M, "cupy")] * 5, 3, None)
    with pytest.raises(PreflightError, match=r"^5 workers need about .* GiB of host memory, .* GiB is allowed by "
                                             r"ulimit -v: use at most 3 workers$"):
        check_workers([(ONE_M, "cupy")] * 5, 5, None)


def test_the_device_estimate_covers_the_measured_peak():
    # H200, CuPy 14.2, 1M users x 10 ticks (DEVICE_PEAK_RATIO): 7,210 MiB live at once; its pool
    # peaked at 7,774 MiB under a cap of the estimate, and kept 13,943 MiB uncapped
    device = estimate(ONE_M, "cupy").device_bytes
    assert 7774 * 2**20 <= device < 13943 * 2**20
    assert estimate(ONE_M, "numpy").device_bytes == 0


def test_probing_numpy_starts_no_process(monkeypatch):
    import concurrent.futures

    def refuse(*_args, **_kwargs):
        raise AssertionError("no child process for numpy")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", refuse)
    assert preflight.probe_device("numpy") == ("numpy", None)
    if importlib.util.find_spec("cupy") is None:
        assert preflight.probe_device("auto") == ("numpy", None)
