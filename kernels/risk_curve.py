"""The risk engine's trade-off curve, counted on the device: for a grid of false-positive
targets, the threshold each would set (from the same confirmed-legitimate history the engine's
own threshold comes from) and how many payments of each class score above it.

Only integer counts come back to the host (classes x grid points), so recall, false-positive
rate and precision at every point, per fraud typology, can be summed over ticks and seeds
exactly, and the two backends agree bit for bit (the thresholds are order statistics, the counts
integers).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

#: false-positive targets the curve is traced at: 1e-6 to 1e-1, four a decade
FPR_GRID = tuple(float(x) for x in np.round(np.logspace(-6, -1, 21), 12))


def grid_thresholds(legit_scores: Any, fpr_grid: tuple[float, ...], *, xp: ModuleType) -> np.ndarray:
    """(float64[G]) for each target in ``fpr_grid``, the lowest threshold at which at most that
    share of ``legit_scores`` (float64[L]) lie strictly above it (as
    :func:`weishang.kernels.risk.threshold_for_fpr`); +inf where L cannot resolve the target. One
    partition for all targets."""
    n = int(legit_scores.shape[0])
    out = np.full(len(fpr_grid), np.inf)
    ks = {i: n - 1 - int(np.floor(f * n)) for i, f in enumerate(fpr_grid) if n and n * f >= 1.0}
    if ks:
        kth = sorted(set(ks.values()))
        part = xp.partition(legit_scores, kth)
        values = np.asarray([float(v) for v in part[xp.asarray(np.asarray(kth, dtype=np.int64))].tolist()])
        lookup = dict(zip(kth, values))
        for i, k in ks.items():
            out[i] = lookup[k]
    return out


def counts_above(score: Any, label: Any, thresholds: np.ndarray, n_classes: int, *,
                 xp: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """(int64[C, G], int64[C]) payments of each class (``label``: int64[T] in [0, C)) scoring
    strictly above each of ``thresholds`` (float64[G], any order), and each class's total."""
    order = np.argsort(thresholds, kind="stable")
    ordered = xp.asarray(thresholds[order])
    g = thresholds.shape[0]
    # position among the sorted thresholds: the number of thresholds strictly below each score
    below = xp.searchsorted(ordered, score, side="left").astype(xp.int64)
    hist = xp.bincount(label * (g + 1) + below, minlength=n_classes * (g + 1)).reshape(n_classes, g + 1)
    hist = np.asarray(hist.tolist(), dtype=np.int64)
    # above the j-th sorted threshold: scores with more than j thresholds below them
    above_sorted = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    above = np.empty_like(above_sorted)
    above[:, order] = above_sorted
    return above, hist.sum(axis=1)
