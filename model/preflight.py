"""Preflight: estimate a run's memory from its config, before building anything, and refuse a
run that will not fit (DESIGN.md; issue 9). ``--skip-preflight`` overrides.

The estimate uses figures measured here (README, "The population"): the graph build peaks at
about 10.5 bytes per directed edge plus 250 per user; a running model holds 4 bytes per edge plus
about 70 per user for the population, the risk engine's windows (4 bytes per user per window
tick, 16 per user of amount history; the learned scorer 3 more per window tick and about 140
while a tick is scored), and per-tick temporaries bounded by the posts' reach.
Merchants' groups cost about 64 bytes per member slot while they are drawn (keys sorted and made
unique in int64) and 8 while the run holds them (membership both ways, int32), and each merchant
a few kilobytes (a Mesa agent, its row of the tables, per-merchant rows of each tick).

What is available honours the limits the process runs under, not only the machine's free
memory: ``ulimit -v`` (``RLIMIT_AS``) and the cgroup's ``memory.max`` (what SLURM's ``--mem`` and
containers set).
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
#: the learned risk scorer: its graph windows (int16 fan-out and int8 device changes a window
#: tick, an int32 last signal) and the tick's per-payer counts and score parts (about 17 int64 or
#: float64 arrays of N while the tick is scored)
LEARNED_BYTES_PER_USER_WINDOW = 3
LEARNED_BYTES_PER_USER = 4 + 17 * 8
BUILD_BYTES_PER_MEMBER = 64
RUN_BYTES_PER_MEMBER = 8
RUN_BYTES_PER_MERCHANT = 4096
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
    # group sizes are clipped at the population (a group cannot hold more than everyone)
    members = config.n_merchants * config.community.groups_per_merchant * min(config.community.group_size_mean, n)
    build = BUILD_BYTES_PER_EDGE * edges + BUILD_BYTES_PER_USER * n + BUILD_BYTES_PER_MEMBER * members
    per_user = RUN_BYTES_PER_USER + 4 * config.risk.window_ticks
    if config.risk.scorer == "learned":
        per_user += LEARNED_BYTES_PER_USER + LEARNED_BYTES_PER_USER_WINDOW * config.risk.window_ticks
    run = (RUN_BYTES_PER_EDGE * edges + per_user * n + RUN_BYTES_PER_MEMBER * members
           + RUN_BYTES_PER_MERCHANT * config.n_merchants)
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


def _read_int(path: str) -> int | None:
    """An integer file such as a cgroup's ``memory.max``; None for "max", absent or unreadable."""
    try:
        text = open(path, encoding="ascii").read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup still allows (``memory.max`` less ``memory.current``), if limited."""
    try:
        lines = open("/proc/self/cgroup", encoding="ascii").read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = f"/sys/fs/cgroup{path.rstrip('/')}"
            limit, used = _read_int(f"{base}/memory.max"), _read_int(f"{base}/memory.current")
        elif "memory" in controllers.split(","):  # cgroup v1
            base = f"/sys/fs/cgroup/memory{path.rstrip('/')}"
            limit, used = _read_int(f"{base}/memory.limit_in_bytes"), _read_int(f"{base}/memory.usage_in_bytes")
        else:
            continue
        if limit is not None and limit < 1 << 60:  # v1 writes "no limit" as a huge number
            return max(limit - (used or 0), 0)
    return None


def _address_space_room() -> int | None:
    """Bytes ``ulimit -v`` (RLIMIT_AS) still allows this process, if it is set."""
    import resource  # noqa: PLC0415  (POSIX)

    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - (_proc_kib("/proc/self/status", "VmSize") or 0), 0)


def available_host_bytes() -> tuple[int, str]:
    """Memory a new allocation can have now, and what bounds it: the machine's available memory
    (MemAvailable on Linux, else physical memory), ``ulimit -v``, or the cgroup's ``memory.max``."""
    available = _proc_kib("/proc/meminfo", "MemAvailable")
    found = [(available if available is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
              "available on the machine")]
    for room, what in ((_address_space_room(), "allowed by ulimit -v"), (_cgroup_room(), "left under the cgroup's "
                                                                                         "memory.max")):
        if room is not None:
            found.append((room, what))
    return min(found)


def check(config: ScenarioConfig, backend_name: str, device_free_bytes: int | None = None) -> MemoryEstimate:
    """Raise :class:`PreflightError` if the estimate exceeds what is available."""
    need = estimate(config, backend_name)
    have, bound = available_host_bytes()
    if need.host_bytes > have:
        raise PreflightError(f"the run needs about {need.host_bytes / GIB:.1f} GiB of host memory but "
                             f"{have / GIB:.1f} GiB is {bound}; lower population.n_users, population.mean_degree, "
                             f"merchants or their groups, or pass --skip-preflight to try anyway")
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
