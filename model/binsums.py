"""Exact sums by bin, on either backend, without a host synchronisation.

The tick's per-merchant and per-post totals are sums of whole numbers (units, orders, fen) by a
bin index. Several such totals are made in one pass by giving each its own range of bins
(``row * M + merchant``) and cutting the result into rows afterwards.

NumPy's fastest scatter-add is ``bincount`` with float64 weights; sums of whole numbers below
2^53 are exact in float64 in any order, so the result, cast back to int64, is exact. CuPy's
``bincount`` reads the largest bin back to the host (and checks for negative bins) before it
allocates: two synchronisations a call, and it fails on an empty input. There the sums go
through ``cupyx.scatter_add`` into a zeroed int64 array instead: no synchronisation, and empty
inputs add nothing.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def bin_sums(bins: Any, n_bins: int, weights: Any = None, *, xp: ModuleType) -> Any:
    """(int64[n_bins]) the sum of ``weights`` (int or bool[K], whole numbers; 1 each when
    omitted) falling in each bin of ``bins`` (int64[K], each in ``[0, n_bins)``)."""
    if xp is np:
        if weights is None:
            return np.bincount(bins, minlength=n_bins).astype(np.int64, copy=False)
        return np.bincount(bins, weights=weights, minlength=n_bins).astype(np.int64)
    import cupyx  # CuPy, or the strict stand-in's (imported late: NumPy-only machines have none)

    out = xp.zeros(n_bins, dtype=xp.int64)
    cupyx.scatter_add(out, bins, xp.ones(bins.shape[0], dtype=xp.int64) if weights is None
                      else weights.astype(xp.int64, copy=False))
    return out
