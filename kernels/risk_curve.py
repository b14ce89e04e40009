"""The risk engine's trade-off curve, counted on the device: for a grid of false-positive
targets, the threshold each would set (from the same confirmed-legitimate history the engine's
own threshold comes from) and how many payments of each class score above it.

Thresholds and counts stay on the device; only the per-target tables come back to the host
(the thresholds, and integer counts: classes x grid points), so recall, false-positive rate and
precision at every point, per fraud typology, can be summed over ticks and seeds exactly, and the
two backends agree bit for bit (the thresholds are order statistics, the counts integers).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .backend import bin_sums

#: false-positive targets the curve is traced at: 1e-6 to 1e-1, four a decade
FPR_GRID = tuple(float(x) for x in np.round(np.logspace(-6, -1, 21), 12))


def grid_thresholds(legit_scores: Any, fpr_grid: tuple[float, ...], *, xp: ModuleType) -> Any:
    """(float64[G], device) for each target in ``fpr_grid``, the lowest threshold at which at most
    that share of ``legit_scores`` (float64[L]) lie strictly above it (as
    :func:`weishang.kernels.risk.threshold_for_fpr`); +inf where L cannot resolve the target, -inf
    where it lets every score lie above (a target of 1). One
    partition for all targets; which order statistics to take follows from L alone, so nothing
    is read back."""
    n = int(legit_scores.shape[0])
    rank = np.full(len(fpr_grid), -1, dtype=np.int64)  # the order statistic each target takes
    every = np.zeros(len(fpr_grid), dtype=bool)  # targets that let every score lie above
    for i, f in enumerate(fpr_grid):
        if n and n * f >= 1.0:
            allowed = int(np.floor(f * n))
            every[i] = allowed >= n
            rank[i] = -1 if every[i] else n - 1 - allowed
    out = xp.asarray(np.where(every, -np.inf, np.inf))
    resolved = np.flatnonzero(rank >= 0)
    if resolved.shape[0]:
        kth = np.unique(rank[resolved])
        part = xp.partition(legit_scores, kth.tolist())
        out[xp.asarray(resolved)] = part[xp.asarray(rank[resolved])]
    return out


def counts_above(score: Any, label: Any, thresholds: Any, n_classes: int, *, xp: ModuleType) -> Any:
    """(int64[C, G + 1], device) payments of each class (``label``: int64[T] in [0, C)) scoring
    strictly above each of ``thresholds`` (float64[G], device, any order), then in the last
    column each class's total: one small table to read back."""
    g = int(thresholds.shape[0])
    order = xp.argsort(thresholds)  # equal thresholds get equal counts, so ties may fall any way
    # position among the sorted thresholds: the number of thresholds strictly below each score
    below = xp.searchsorted(thresholds[order], score, side="left").astype(xp.int64)
    # a scatter-add (CuPy's bincount would read the largest bin back)
    hist = bin_sums(label * (g + 1) + below, n_classes * (g + 1), xp=xp).reshape(n_classes, g + 1)
    # above the j-th sorted threshold: scores with more than j thresholds below them
    above_sorted = xp.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    out = xp.empty((n_classes, g + 1), dtype=xp.int64)
    out[:, order] = above_sorted[:, 1:]
    out[:, g] = above_sorted[:, 0]
    return out
