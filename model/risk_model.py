"""The risk engine's learned scorer: a logistic model on the risk features
(:mod:`weishang.kernels.risk_features`), fitted on the host from labelled past payments and
exported as arrays, so scoring stays one ``xp`` expression on the device.

Labels arrive late, as reports and chargebacks do: the payments of tick ``t`` become training
rows at tick ``t + label_delay_ticks``. Every ``retrain_every_ticks`` the model is refitted on
the labelled rows of the last ``train_window_ticks``: a random sample of the legitimate payments
(weighted back to their number), every injected fraud payment, and the tick's fraud probe (the
payments that stand for the whole platform's fraud of each kind, :mod:`weishang.model.fraud`: a
platform learns from millions of reported frauds, not from the few a small population holds, so
the fit sees as many fraud rows at 200k users as at 10M). The two classes weigh the same in the
fit; the threshold, not the model, sets the operating point.

Why logistic regression rather than gradient boosting: its export is a weight per feature, and
scoring is a weighted sum (:func:`weishang.kernels.risk_features.linear_scores`), cheap at a
billion payments a second and bit-identical on NumPy and CuPy; a boosted forest on the device
walks every tree per payment (hundreds of gathers), two orders of magnitude slower on the CPU.
The features carry the non-linearity (caps, ratios, products).

Fits run single-threaded (``threadpoolctl``) and the exported weights are rounded to float32
precision, so the same rows give the same weights whatever BLAS threads a machine has.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .state import Stateful

#: inverse regularisation strength of the fit (on standardised features)
C_REGULARISATION = 1.0


@dataclass
class LabelledRows:
    """Feature rows of one tick whose labels the platform will learn (host arrays).

    Attributes:
        tick: the day the payments were made.
        x: (float64[R, K]) feature rows; fraud (bool[R]) the label; weight (float64[R]) how many
            payments each row stands for (1 / sampling rate for legitimate rows, 1 for fraud).
    """

    tick: int
    x: np.ndarray
    fraud: np.ndarray
    weight: np.ndarray


def fit_logistic(x: np.ndarray, fraud: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """(float64[K], bias) a logistic model of fraud on feature rows ``x`` (float64[R, K]), the
    classes balanced, folded back to raw feature units: score = bias + sum_k coef[k] x[:, k].

    Raises:
        ValueError: the rows hold only one class.
    """
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415  (only when a run learns)
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    if fraud.all() or not fraud.any():
        raise ValueError("the training rows hold only one class")
    w = weight.astype(np.float64)
    w = np.where(fraud, w / w[fraud].sum(), w / w[~fraud].sum())  # the classes weigh the same
    mean = np.average(x, axis=0, weights=w)
    sd = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    sd = np.where(sd > 0, sd, 1.0)
    with threadpool_limits(1):
        model = LogisticRegression(C=C_REGULARISATION, max_iter=1000)
        model.fit((x - mean) / sd, fraud.astype(np.int8), sample_weight=w * w.shape[0])
    coef = model.coef_[0] / sd
    bias = float(model.intercept_[0] - np.sum(coef * mean))
    return coef.astype(np.float32).astype(np.float64), float(np.float32(bias))


class LearnedScorer(Stateful):
    """The fitted weights and the labelled rows waiting to be learned from.

    State: ``coef`` (float64[K]) and ``bias`` of the last fit (``fitted_at`` its tick, -1 before
    the first), and the ``pending`` rows (a deque of :class:`LabelledRows`, oldest first).
    """

    STATE = ("coef", "bias", "fitted_at", "pending")

    def __init__(self, n_features: int, label_delay: int, retrain_every: int, train_window: int) -> None:
        self.label_delay, self.retrain_every, self.train_window = label_delay, retrain_every, train_window
        self.coef = np.zeros(n_features)
        self.bias = 0.0
        self.fitted_at = -1
        self.pending: deque[LabelledRows] = deque()

    @property
    def fitted(self) -> bool:
        return self.fitted_at >= 0

    def add(self, rows: LabelledRows) -> None:
        self.pending.append(rows)

    def maybe_refit(self, tick: int) -> bool:
        """Refit at ``tick`` when due, on the rows labelled by then (made at most
        ``label_delay`` ticks ago) within the training window; True when it refitted."""
        known_until = tick - self.label_delay  # rows of ticks <= this have labels
        while self.pending and self.pending[0].tick < known_until - self.train_window + 1:
            self.pending.popleft()
        due = not self.fitted or tick - self.fitted_at >= self.retrain_every
        known = [r for r in self.pending if r.tick <= known_until]
        if not due or not known:
            return False
        fraud = np.concatenate([r.fraud for r in known])
        if fraud.all() or not fraud.any():
            return False
        self.coef, self.bias = fit_logistic(np.concatenate([r.x for r in known]), fraud,
                                            np.concatenate([r.weight for r in known]))
        self.fitted_at = tick
        return True
