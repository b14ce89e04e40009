"""Preflight: estimate a run's memory from its config, before building anything, and refuse a
run that will not fit (DESIGN.md; issue 9). ``--skip-preflight`` overrides.

The estimate uses figures measured here (README, "The population"): the graph build peaks at
about 10.5 bytes per directed edge plus 250 per user; a running model holds 4 bytes per edge plus
about 70 per user for the population, the risk engine's windows (4 bytes per user per window
tick, 16 per user of amount history; the learned scorer 3 more per window tick and about 140
while a tick is scored), and per-tick temporaries bounded by the posts' reach.
Merchants' groups cost about 64 bytes per member slot while they are drawn (keys sorted and made
unique in int64) and 8 while the run holds them (membership both ways, int32), and each merchant
a few kilobytes (a Mesa agent, its row of the tables, per-merchant rows of each tick). A tick's
injected fraud costs about 600 bytes a payment while it is drawn, paid and scored
(:func:`fraud_payments_per_tick` bounds how many a tick can have: heavy brushing, every merchant
placing 10,000 fake orders a tick, is 36 million payments at 200k users).

What is available honours the limits the process runs under, not only the machine's free
memory: ``ulimit -v`` (``RLIMIT_AS``) and the cgroup's ``memory.max`` (what SLURM's ``--mem`` and
containers set).

A sweep runs several runs at once (``--workers N``), so :func:`check_workers` counts the N
largest of its runs together: their host memory against what is available, and with CuPy their
device memory against the device's free memory, each worker a process with its own CUDA context
(:data:`DEVICE_CONTEXT_BYTES`). The device's free memory is read in a short-lived spawned child
(:func:`probe_device`), so the sweep's own process never initialises CUDA and holds no context
for the sweep's length.
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
#: bytes a tick's fraud payment holds while the batch is drawn, paid and scored (its columns, the
#: risk engine's features and scores): 614 measured here between 1.4M and 2.9M brushing orders a
#: tick (20k users, every merchant a fraud merchant, peak RSS)
FRAUD_BYTES_PER_PAYMENT = 640
#: the interpreter, NumPy, Mesa and pyarrow before any model state
BASELINE_BYTES = 300 * 2**20
#: device memory a process holds once CuPy has made its CUDA context, before any array: each
#: sweep worker on a GPU pays it (524-527 MiB measured on an H200, CuPy 14.2, CUDA 13)
DEVICE_CONTEXT_BYTES = 540 * 2**20
#: a CuPy run's device memory over the run-state model (``run`` in :func:`estimate`): the model
#: counts what a run holds between ticks, while on the device a tick's temporaries (the cascade's
#: keys, the risk engine's features) are alive at once. Measured on an H200 (CuPy 14.2, 10 ticks,
#: before the population was built on the device,
#: the model 1,038 MiB at 1M users and 208 MiB at 200k): with the pool capped at 8 times the model
#: (as a sweep's workers are, :func:`weishang.model.study.sweep.device_share`) both runs finished, their
#: pools peaking at 7,774 and 1,548 MiB; capped at 6 times, the 1M run ran out (7,210 MiB live at
#: once). Uncapped, CuPy's pool kept 13,943 and 2,295 MiB (13 and 11 times), hoarding freed blocks
DEVICE_PEAK_RATIO = 8
#: host bytes per user of a CuPy run's build: the float work kept on the host so every backend
#: gets the same bits (sociability and its per-user inflation, rel_buy's normal draws and their
#: temporaries: five float64 arrays of N)
HOST_FLOAT_BYTES_PER_USER = 40


class PreflightError(ValueError):
    """The run will not fit; the message is one line with the estimate and the limit."""


@dataclass(frozen=True)
class MemoryEstimate:
    host_bytes: int
    device_bytes: int  # 0 for the NumPy backend


def fraud_payments_per_tick(config: ScenarioConfig) -> int:
    """The most fraud payments one tick can inject (:mod:`weishang.model.mechanisms.risk.fraud`, every typology at
    full intensity, each count at its rounding up), and the tick's probe."""
    f, n = config.fraud, config.population.n_users
    # imported here: the mechanisms package loads Mesa and SciPy, which the CLI's start need not
    from .mechanisms.risk.fraud import PROBE_PAYMENTS, fraud_merchant_count  # noqa: PLC0415

    fraud_merchants = fraud_merchant_count(f.share_fraud_merchants, config.n_merchants)
    per_million = n / 1e6
    events = (fraud_merchants * (f.brushing_orders + 1) if fraud_merchants else 0)
    if fraud_merchants:
        events += (f.ato_per_million * per_million + 1) * f.ato_payments
        events += (f.laundering_per_million * per_million + 1) * f.laundering_fan
    events += (f.burst_per_million * per_million + 1) * f.burst_orders
    probe = 5 * (PROBE_PAYMENTS + max(f.ato_payments, f.burst_orders, f.laundering_fan))
    return int(events + probe)


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
    # a tick's fraud is drawn on the device where it is scored; its settlement reads it back
    fraud = FRAUD_BYTES_PER_PAYMENT * fraud_payments_per_tick(config)
    if backend_name == "cupy":
        # the population is built on the device (the graph's pairs and keys: the build model), then
        # the run state lives there; the host keeps the build's float work (sociability weights
        # and their inflation, rel_buy's normals: a few float64 arrays of N)
        return MemoryEstimate(host_bytes=int(BASELINE_BYTES + HOST_FLOAT_BYTES_PER_USER * n + fraud),
                              device_bytes=int(max(build, DEVICE_PEAK_RATIO * run + fraud)))
    return MemoryEstimate(host_bytes=int(BASELINE_BYTES + max(build, run + fraud)), device_bytes=0)


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


def _refuse_unless_side_by_side(needs: list[int], per_worker: int, have: int, memory: str, have_is: str) -> None:
    """Raise :class:`PreflightError` unless runs needing ``needs`` bytes each (the largest first),
    each worker also holding ``per_worker``, fit in ``have`` bytes of ``memory`` together."""
    total = sum(needs) + per_worker * len(needs)
    if total <= have:
        return
    fit, used = 0, 0
    for need in needs:
        used += need + per_worker
        if used > have:
            break
        fit += 1
    if fit == 0:
        raise PreflightError(f"a run needs about {(needs[0] + per_worker) / GIB:.1f} GiB of {memory} memory but "
                             f"{have / GIB:.1f} GiB is {have_is}; lower population.n_users, population.mean_degree, "
                             f"merchants or their groups" + (", or use --backend numpy" if memory == "device" else ""))
    raise PreflightError(f"{len(needs)} workers need about {total / GIB:.1f} GiB of {memory} memory, "
                         f"{have / GIB:.1f} GiB is {have_is}: use at most {fit} workers")


def check_workers(runs: list[tuple[ScenarioConfig, str]], workers: int, device_free_bytes: int | None = None) -> None:
    """Raise :class:`PreflightError` unless ``workers`` of these runs fit in memory side by side.

    ``runs``: each run's config and the backend it resolves to ("numpy" or "cupy"). The runs at
    once are the ``workers`` largest (a grid over ``population.n_users`` can put the big ones
    together); each needs its :func:`estimate` on the host, and a CuPy run on the device, where
    its worker also holds its own CUDA context (:data:`DEVICE_CONTEXT_BYTES`).
    ``device_free_bytes``: the device's free memory now (:func:`probe_device`). The message names
    the most workers that fit, or says that one run alone does not.
    """
    at_once = min(workers, len(runs))
    estimates = [(estimate(config, name), name) for config, name in runs]
    have, bound = available_host_bytes()
    host = sorted((need.host_bytes for need, _ in estimates), reverse=True)[:at_once]
    if host:
        _refuse_unless_side_by_side(host, 0, have, "host", bound)
    device = sorted((need.device_bytes for need, name in estimates if name == "cupy"), reverse=True)[:at_once]
    if device and device_free_bytes is not None:
        _refuse_unless_side_by_side(device, DEVICE_CONTEXT_BYTES, device_free_bytes, "device", "free")


def _probe_child(requested: str) -> tuple[str, int | None]:
    from ..kernels.backend import resolve_backend  # noqa: PLC0415  (in the probe's own process)

    backend = resolve_backend(requested)
    return backend.name, backend.free_device_bytes()


def probe_device(requested: str) -> tuple[str, int | None]:
    """The backend ``requested`` ("auto", "numpy" or "cupy") resolves to, and its free device
    bytes (None for NumPy), asked in a spawned child process that exits at once.

    Why a child: reading the free memory needs a CUDA context, which would stay in this process
    for the sweep's length, holding device memory its workers could use; and a process that has
    initialised CUDA can never fork a child that uses it. "auto" without CuPy installed needs no
    child. Raises :class:`weishang.kernels.backend.BackendUnavailable` as the run would.
    """
    import importlib.util  # noqa: PLC0415
    import multiprocessing as mp  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    if requested == "numpy" or (requested == "auto" and importlib.util.find_spec("cupy") is None):
        return "numpy", None
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as child:
        return child.submit(_probe_child, requested).result()


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes. VmHWM belongs to the process's own address
    space; ``ru_maxrss`` would carry a parent's peak over into a spawned child on Linux."""
    peak = _proc_kib("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource  # noqa: PLC0415  (not on Windows)

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
