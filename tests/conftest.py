"""Shared fixtures: small configs and an optional CuPy backend (GPU tests skip without one)."""

from __future__ import annotations

import pytest

from weishang.kernels.backend import BackendUnavailable, resolve_backend
from weishang.model.config import load_config


def cupy_backend():
    try:
        return resolve_backend("cupy")
    except BackendUnavailable:
        return None


@pytest.fixture
def gpu_backend():
    backend = cupy_backend()
    if backend is None:
        pytest.skip("needs CuPy and a CUDA device")
    return backend


@pytest.fixture
def small_config():
    """A scenario small enough for a unit test: 5k users, 10 cities, 6 ticks, NumPy."""
    return load_config(overrides=["population.n_users=5000", "population.n_cities=10",
                                  "run.n_ticks=6", 'run.backend="numpy"'])
