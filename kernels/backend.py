"""Array backends: choosing NumPy or CuPy, moving data between host and device, and the few
operations the two libraries spell differently.

``resolve_backend("auto")`` takes CuPy when it imports and sees a CUDA device, else NumPy, and
says which in ``Backend.reason``. Asking for ``"cupy"`` where there is none raises
:class:`BackendUnavailable`: a clear error, never a silent fallback.

This module is the only place that imports CuPy (lazily, so NumPy-only machines never pay for it)
and the only place that copies arrays between host and device (:meth:`Backend.to_device`,
:meth:`Backend.to_host`). Kernels receive ``xp`` and never call these themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

BACKEND_NAMES = ("auto", "numpy", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


@dataclass(frozen=True)
class Backend:
    """A resolved array backend.

    Attributes:
        name: ``"numpy"`` or ``"cupy"``.
        xp: the array module.
        device: human-readable device description (CPU, or the GPU's name).
        reason: why this backend was chosen (shown to the user for ``auto``).
    """

    name: str
    xp: ModuleType
    device: str
    reason: str

    def to_device(self, array: Any) -> Any:
        """Copy a host array to this backend's device (no copy for NumPy)."""
        if self.name == "numpy":
            return np.asarray(array)
        return self.xp.asarray(array)

    def free_device_bytes(self) -> int | None:
        """Free device memory in bytes (None for NumPy, whose memory is the host's)."""
        if self.name == "numpy":
            return None
        free, _total = self.xp.cuda.runtime.memGetInfo()
        return int(free)

    def to_host(self, array: Any) -> np.ndarray:
        """Copy an array from this backend's device to a NumPy array (no copy for NumPy)."""
        if self.name == "numpy":
            return np.asarray(array)
        return self.xp.asnumpy(array)


def _load_cupy() -> tuple[ModuleType | None, str]:
    """Import CuPy and check for a device; return (module or None, explanation)."""
    try:
        import cupy  # noqa: PLC0415  (lazy by design: NumPy-only machines never import it)
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return None, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy sees no CUDA device ({type(exc).__name__})"
    if n_devices < 1:
        return None, "CuPy sees no CUDA device"
    return cupy, "CuPy imported and a CUDA device is present"


def _cupy_device_name(cupy: ModuleType) -> str:
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def resolve_backend(name: str = "auto") -> Backend:
    """Resolve ``"auto" | "numpy" | "cupy"`` to a :class:`Backend`.

    Raises:
        ValueError: ``name`` is not one of :data:`BACKEND_NAMES`.
        BackendUnavailable: ``"cupy"`` was asked for and CuPy or a device is missing.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend {name!r} is not one of {', '.join(BACKEND_NAMES)}")
    if name == "numpy":
        return Backend("numpy", np, "CPU", "numpy requested")
    cupy, why = _load_cupy()
    if cupy is not None:
        return Backend("cupy", cupy, _cupy_device_name(cupy), why if name == "auto" else "cupy requested")
    if name == "cupy":
        raise BackendUnavailable(f"backend 'cupy' requested but {why}; use --backend numpy or auto")
    return Backend("numpy", np, "CPU", f"auto chose numpy: {why}")


def array_module(array: Any) -> ModuleType:
    """The array module (numpy or cupy) that owns ``array``."""
    module = type(array).__module__
    if module.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy
    return np


def scatter_add(target: Any, indices: Any, values: Any, *, xp: ModuleType) -> None:
    """``target[indices] += values`` with repeated indices accumulated (unbuffered), in place.

    NumPy spells this ``np.add.at`` (slow for floats) or ``bincount``; CuPy spells it
    ``cupyx.scatter_add``. For float64 targets on NumPy we use ``bincount``, which is exact for
    the same summation order as ``add.at`` only up to rounding, so the kernels that need bit
    identity across backends accumulate integers.

    On CuPy an int64 target is added to through its uint64 view (the same bits in two's
    complement): ``cupyx.scatter_add`` takes no int64 before CuPy 14.1.
    """
    if xp is np:
        if target.dtype.kind in "iu" or target.dtype == np.bool_:
            np.add.at(target, indices, values)
        else:
            target += np.bincount(indices, weights=values, minlength=target.shape[0]).astype(
                target.dtype, copy=False
            )
        return
    import cupyx  # noqa: PLC0415

    if target.dtype == xp.int64:
        target = target.view(xp.uint64)
        values = _as_uint64(values, xp) if hasattr(values, "ndim") else np.int64(values).astype(np.uint64)
    cupyx.scatter_add(target, indices, values)


def bin_sums(bins: Any, n_bins: int, weights: Any = None, *, xp: ModuleType) -> Any:
    """(int64[n_bins]) the sum of ``weights`` (int or bool[K], whole numbers; 1 each when
    omitted) falling in each bin of ``bins`` (int64[K], each in ``[0, n_bins)``), exactly and
    without a host synchronisation.

    Several totals come out of one pass by giving each its own range of bins (``row * M +
    merchant``) and cutting the result into rows. NumPy's fastest scatter-add is ``bincount``
    with float64 weights, exact for sums of whole numbers below 2^53 in any order. CuPy's
    ``bincount`` reads back whether a bin is negative and the largest bin before it allocates
    (two synchronisations a call), so there the sums go through ``cupyx.scatter_add`` into a
    zeroed int64 array instead.
    """
    if xp is np:
        # CuPy's scatter wraps a bin past the end round to the start; NumPy's bincount would grow:
        # refuse it here, where it costs one pass, so the CPU tests catch what a GPU would hide
        if bins.shape[0] and int(bins.max()) >= n_bins:
            raise ValueError(f"bin_sums: a bin is {int(bins.max())}, past the last of {n_bins}")
        if weights is None:
            return np.bincount(bins, minlength=n_bins).astype(np.int64, copy=False)
        return np.bincount(bins, weights=weights, minlength=n_bins).astype(np.int64)
    import cupyx  # noqa: PLC0415  (CuPy's, or the strict stand-in's; NumPy-only machines have none)

    # summed as uint64 and read as int64 (the same bits: cupyx.scatter_add takes no int64 before
    # CuPy 14.1); a scalar 1 is broadcast by scatter_add, so no array of ones
    out = xp.zeros(n_bins, dtype=xp.uint64)
    cupyx.scatter_add(out, bins, np.uint64(1) if weights is None else _as_uint64(weights, xp))
    return out.view(xp.int64)


def _as_uint64(values: Any, xp: ModuleType) -> Any:
    """Whole numbers as uint64 for a wrapping sum: int64 reinterpreted (a view), others cast."""
    return values.view(xp.uint64) if values.dtype == xp.int64 else values.astype(xp.uint64)


def repeat_ids(counts: Any, *, xp: ModuleType) -> Any:
    """(int64[sum(counts)]) id ``i`` repeated ``counts[i]`` times, for ``counts`` (int[S]).

    NumPy spells this ``np.repeat(arange, counts)``; CuPy's ``repeat`` takes no array of
    counts, so there we search the cumulative counts instead (one host sync for the length).
    """
    counts = counts.astype(xp.int64, copy=False)
    if xp is np:
        return np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    return _owners(xp.cumsum(counts), xp)


def repeat_ids_and_firsts(counts: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """(:func:`repeat_ids` of ``counts``, and each id's first position in it (int64[S]: the
    counts' exclusive running sum)), from one scan of the counts."""
    counts = counts.astype(xp.int64, copy=False)
    ends = xp.cumsum(counts)
    owner = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts) if xp is np else _owners(ends, xp)
    return owner, ends - counts


def _owners(ends: Any, xp: ModuleType) -> Any:
    """CuPy's spelling of :func:`repeat_ids` from the counts' running sums (int64[S]): a search
    of each output position among them, after one host sync for the length."""
    total = int(ends[-1]) if ends.shape[0] else 0
    return xp.searchsorted(ends, xp.arange(total, dtype=xp.int64), side="right").astype(xp.int64, copy=False)


def sort_in_runs(values: Any, run: Any, *, xp: ModuleType) -> Any:
    """(T[n]) ``values`` (T[n]) ascending, given ``run`` (int[n]) that orders them coarsely.

    Precondition: a value of a lower run is smaller than every value of a higher run (as for a
    key ``run * M + x`` with ``0 <= x < M``). When ``run`` is non-decreasing, the array is cut
    between runs into cache-sized pieces that the thread pool sorts side by side (NumPy's sort
    holds one core; a tick's exposures are millions of keys already laid out cascade by
    cascade). A piece whose keys lie within 2^32 of each other is sorted as 32-bit offsets.
    Otherwise, and on CuPy, one sort.
    """
    n = values.shape[0]
    if xp is not np or n <= 2 * CHUNK or not bool(np.all(run[1:] >= run[:-1])):
        return xp.sort(values)
    cuts = np.searchsorted(run, run[np.arange(CHUNK, n, CHUNK)], side="left")
    bounds = np.unique(np.concatenate([[0], cuts, [n]]))
    out = np.empty_like(values)

    narrow = np.issubdtype(values.dtype, np.integer) and values.dtype.itemsize > 4

    def sort_piece(i: int) -> None:
        piece = values[bounds[i]:bounds[i + 1]]
        low = piece.min()
        if narrow and int(piece.max()) - int(low) < 2**32:
            # a piece spans a few cascades: offsets from its least key fit 32 bits, and a
            # 32-bit sort takes about half the time of a 64-bit one
            offset = np.sort((piece - low).astype(np.uint32))
            np.add(offset, low, out=out[bounds[i]:bounds[i + 1]], dtype=values.dtype)
        else:
            out[bounds[i]:bounds[i + 1]] = np.sort(piece)

    list(_pool().map(sort_piece, range(bounds.shape[0] - 1)))
    return out


def sorted_unique(values: Any, *, xp: ModuleType, run: Any = None) -> Any:
    """(T[k]) the distinct values of ``values`` (T[n]), ascending.

    A sort and a neighbour comparison: NumPy 2's ``unique`` on integers goes through a hash
    table, several times slower than its SIMD sort at the sizes a tick produces. ``run``: see
    :func:`sort_in_runs`.
    """
    ordered = xp.sort(values) if run is None else sort_in_runs(values, run, xp=xp)
    if ordered.shape[0] < 2:
        return ordered
    keep = xp.empty(ordered.shape[0], dtype=xp.bool_)
    keep[0] = True
    xp.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def isin_sorted(values: Any, members: Any, *, xp: ModuleType) -> Any:
    """(bool[n]) which of ``values`` (T[n], sorted, distinct) are among ``members`` (T[m], sorted,
    distinct).

    Binary-searches the shorter array in the longer: ``n log m`` or ``m log n``, whichever is
    less (a tick's last level holds millions of candidate keys against a few hundred thousand
    already seen, and a search's cache misses dominate its cost).
    """
    found = xp.zeros(values.shape[0], dtype=xp.bool_)
    if values.shape[0] == 0 or members.shape[0] == 0:
        return found
    if values.shape[0] <= members.shape[0]:
        pos = xp.minimum(xp.searchsorted(members, values), members.shape[0] - 1)
        return members[pos] == values
    pos = xp.minimum(xp.searchsorted(values, members), values.shape[0] - 1)
    found[pos[values[pos] == members]] = True
    return found


def merge_sorted(a: Any, b: Any, *, xp: ModuleType) -> Any:
    """(T[n+m]) the sorted union (with repeats) of two sorted arrays a (T[n]) and b (T[m]).

    Linear work and a binary search per element of b, instead of sorting n+m elements again.
    """
    if a.shape[0] == 0:
        return b
    if b.shape[0] == 0:
        return a
    slot_b = xp.searchsorted(a, b, side="right") + xp.arange(b.shape[0], dtype=xp.int64)
    out = xp.empty(a.shape[0] + b.shape[0], dtype=a.dtype)
    from_b = xp.zeros(out.shape[0], dtype=xp.bool_)
    from_b[slot_b] = True
    out[slot_b] = b
    out[~from_b] = a
    return out


def repeat_values(values: Any, counts: Any, *, xp: ModuleType) -> Any:
    """(T[sum(counts)]) ``values[i]`` repeated ``counts[i]`` times (CuPy's ``repeat`` takes no
    array of counts, so there it gathers through :func:`repeat_ids`)."""
    if xp is np:
        return np.repeat(values, counts)
    return values[repeat_ids(counts, xp=xp)]


def concat_ranges(start: Any, length: Any, *, xp: ModuleType) -> Any:
    """(int64[sum(length)]) ``start[i], start[i]+1, ..., start[i]+length[i]-1`` for each i in turn.

    The positions of CSR rows laid end to end: one repeat and one add per element, instead of
    two gathers through the owner of each element.
    """
    length = length.astype(xp.int64, copy=False)
    shifts = repeat_values(start.astype(xp.int64) - (xp.cumsum(length) - length), length, xp=xp)
    return shifts + xp.arange(shifts.shape[0], dtype=xp.int64)


#: elements per chunk of :func:`map_chunks` on NumPy: small enough that a chunk's temporaries
#: stay in the L2 cache
CHUNK = 1 << 18
_POOL: ThreadPoolExecutor | None = None


def map_chunks(n: int, work: Callable[[int, int], None], *, xp: ModuleType) -> None:
    """Run ``work(start, stop)`` over [0, n) for elementwise kernels writing into preallocated
    outputs: on NumPy in cache-sized chunks on a thread pool (NumPy releases the GIL inside its
    loops, so both cores work), on CuPy in one piece (the GPU is the parallelism). ``work`` must
    make each element's result depend on that element alone, so chunking never changes a result.
    """
    if xp is not np or n <= CHUNK:
        work(0, n)
        return
    list(_pool().map(lambda start: work(start, min(start + CHUNK, n)), range(0, n, CHUNK)))


def _pool() -> ThreadPoolExecutor:
    """The NumPy path's worker threads, started on first use."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    return _POOL
