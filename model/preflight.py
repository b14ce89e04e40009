"""Preflight: estimate a run's memory from its config, before building anything, and refuse a
run that will not fit (DESIGN.md; issue 9). ``--skip-preflight`` overrides.

The estimate uses figures measured here (README, "The population"): the graph build peaks at
about 10.5 bytes per directed edge plus 250 per user; a running model holds 4 bytes per edge plus
about 70 per user for the population, the risk engine's windows (4 bytes per user per window
tick, 16 per user of amount history), and per-tick temporaries bounded by the posts' reach.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .config import ScenarioConfig

GIB = 2**30
BUILD_BYTES_PER_EDGE = 10.5
BUILD_BYTES_PER_USER = 250
RUN_BYTES_PER_EDGE = 4
RUN_BYTES_PER_USER = 70 + 16
#: the interpreter, NumPy, Mesa and pyarrow before any model state
BASELINE_BYTES = 300 * 2**20


class PreflightError(ValueError):
    """The run will not fit; the message is one line with the estimate and the limit."""


@dataclass(frozen=True)
class MemoryEstimate:
    host_bytes: int
    device_bytes: int  # 0 for the NumPy backend


def estimate(config: ScenarioConfig, backend_name: str) -> MemoryEstimate:
    """Peak bytes the run needs on the host and (for CuPy) on the device."""
    n = config.population.n_users
    edges = n * config.population.mean_degree
    build = BUILD_BYTES_PER_EDGE * edges + BUILD_BYTES_PER_USER * n
    run = RUN_BYTES_PER_EDGE * edges + (RUN_BYTES_PER_USER + 4 * config.risk.window_ticks) * n
    if backend_name == "cupy":
        # the graph is built on the host, then the run state lives on the device
        return MemoryEstimate(host_bytes=int(BASELINE_BYTES + build), device_bytes=int(run))
    return MemoryEstimate(host_bytes=int(BASELINE_BYTES + max(build, run)), device_bytes=0)


def _proc_kib(path: str, field: str) -> int | None:
    """A ``Field:  N kB`` line of a Linux /proc file, in bytes; None where there is no /proc."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_host_bytes() -> int:
    """Memory available to a new allocation now (MemAvailable on Linux, else physical memory)."""
    available = _proc_kib("/proc/meminfo", "MemAvailable")
    return available if available is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check(config: ScenarioConfig, backend_name: str, device_free_bytes: int | None = None) -> MemoryEstimate:
    """Raise :class:`PreflightError` if the estimate exceeds what is available."""
    need = estimate(config, backend_name)
    have = available_host_bytes()
    if need.host_bytes > have:
        raise PreflightError(f"the run needs about {need.host_bytes / GIB:.1f} GiB of host memory but "
                             f"{have / GIB:.1f} GiB is available; lower population.n_users or "
                             f"population.mean_degree, or pass --skip-preflight to try anyway")
    if device_free_bytes is not None and need.device_bytes > device_free_bytes:
        raise PreflightError(f"the run needs about {need.device_bytes / GIB:.1f} GiB of device memory but "
                             f"{device_free_bytes / GIB:.1f} GiB is free; lower population.n_users, use "
                             f"--backend numpy, or pass --skip-preflight to try anyway")
    return need


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes. VmHWM belongs to the process's own address
    space; ``ru_maxrss`` would carry a parent's peak over into a spawned child on Linux."""
    peak = _proc_kib("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource  # noqa: PLC0415  (not on Windows)

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
