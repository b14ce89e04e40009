"""Host allocator tuning for the NumPy path: keep freed memory instead of returning it to the OS.

Why: a tick allocates and frees arrays of tens of megabytes (a million users' exposures, draws
and keys). glibc's malloc serves blocks that large with ``mmap`` and gives them back with
``munmap`` when freed, so every tick faults every page of every temporary in again; on a
virtual machine a page fault is expensive (measured on the 2-core development machine: system
time 14 s of a 61 s run of 1M users x 80 ticks, 5 s with this tuning, ticks 15% faster). With
``M_MMAP_MAX = 0`` large blocks come from the heap, and with ``M_TRIM_THRESHOLD`` at 2 GiB the heap
is not shrunk after each free, so the next tick reuses pages already mapped. The cost is that
the process keeps its peak heap until it exits (peak RSS 2.39 instead of 2.15 GiB there).

A process that runs many runs one after the other (a sweep's or a calibration's worker) must
give the heap back between runs: :func:`release_freed_memory` does (``malloc_trim``), and
``run_scenario`` calls it at the end of every run. Without it (and with Mesa keeping every model
alive, see :class:`weishang.model.merchant.Merchant`) a sweep worker grew by about 0.5 GiB a run
at 200k users, to 7 GiB after 14 runs on the 2-core machine, until the next run's preflight
check found no memory left; 100k-user runs in one process now stay near 0.4 GiB.

Only glibc has ``mallopt``; elsewhere (macOS, musl) this does nothing. Results never depend on
it: it changes where memory comes from, not what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: free memory at the heap's top is given back only beyond this (INT_MAX: mallopt takes an int)
_TRIM_THRESHOLD_BYTES = 2**31 - 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim(0)``), e.g. between runs.

    Returns:
        True if memory was released, False where there is no glibc ``malloc_trim`` or nothing was.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))


@functools.cache
def retain_freed_memory() -> bool:
    """Tell glibc malloc to serve large blocks from the heap and never trim it (once per process).

    Returns:
        True if both settings took effect, False where there is no glibc ``mallopt``.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    trimmed = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
    mapped = mallopt(_M_MMAP_MAX, 0)
    return bool(trimmed == 1 and mapped == 1)
