"""The risk engine's learned scorer: a logistic model on the risk features
(:mod:`weishang.kernels.risk_features`), fitted on the device from labelled past payments
(:mod:`weishang.kernels.logistic`) and exported as a weight per feature, so scoring stays one
``xp`` expression on the device.

Labels arrive late, as reports and chargebacks do: the payments of tick ``t`` become training
rows at tick ``t + label_delay_ticks``. Every ``retrain_every_ticks`` the model is refitted on
the labelled rows of the last ``train_window_ticks``: a random sample of the legitimate payments
(weighted back to their number), every injected fraud payment, and the tick's fraud probe (the
payments that stand for the whole platform's fraud of each kind, :mod:`weishang.model.mechanisms.risk.fraud`: a
platform learns from millions of reported frauds, not from the few a small population holds, so
the fit sees as many fraud rows at 200k users as at 10M). The two classes weigh the same in the
fit; the threshold, not the model, sets the operating point.

Why logistic regression rather than gradient boosting: its export is a weight per feature, and
scoring is a weighted sum (:func:`weishang.kernels.risk_features.linear_scores`), cheap at a
billion payments a second and bit-identical on NumPy and CuPy; a boosted forest on the device
walks every tree per payment (hundreds of gathers), two orders of magnitude slower on the CPU.
The features carry the non-linearity (caps, ratios, products).

The training rows stay on the device where the features were computed; a refit brings back only
its K + 1 weights (the scorer multiplies by them as Python floats, in a fixed order). On NumPy
fits run on one BLAS thread (``threadpoolctl``: a threaded BLAS on a busy CPU is slower, not
faster, at these sizes) and the exported weights are rounded to float32, so the same rows give
the same weights whatever BLAS a machine has.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....kernels.backend import Backend, resolve_backend
from ....kernels.logistic import MAX_TRIALS, fit_balanced_logistic
from ...state import Stateful

#: device-to-host transfers a refit makes at most: a Newton check per trial step, then the weights
MAX_FIT_READS = MAX_TRIALS + 1
#: inverse regularisation strength of the fit (on standardised features)
C_REGULARISATION = 1.0


@dataclass
class LabelledRows:
    """Feature rows of one tick whose labels the platform will learn (device arrays).

    Attributes:
        tick: the day the payments were made.
        x: (float64[R, K]) feature rows; fraud (bool[R]) the label; weight (float64[R]) how many
            payments each row stands for (1 / sampling rate for legitimate rows, 1 for fraud).
        n_fraud: how many rows are fraud (known on the host: a refit with one class to learn
            from is skipped without reading anything back).
    """

    tick: int
    x: Any
    fraud: Any
    weight: Any
    n_fraud: int

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def fit_logistic(x: Any, fraud: Any, weight: Any, *, backend: Backend | None = None,
                 start: tuple[np.ndarray, float] | None = None, n_fraud: int | None = None) -> tuple[np.ndarray, float]:
    """(float64[K], bias) a logistic model of fraud on feature rows ``x`` (float64[R, K]) with
    labels ``fraud`` (bool[R]) and row weights ``weight`` (float64[R]), on ``backend``'s device
    (NumPy when None), the classes balanced, in raw feature units: score = bias + sum_k coef[k]
    x[:, k]. ``start``: a model (coef, bias) to start the fit from (a faster fit, the same
    weights). ``n_fraud``: the count of fraud rows when the caller knows it (read back to refuse
    one class when None). Besides, only the Newton checks and the K + 1 weights come back to the
    host (:data:`MAX_FIT_READS` transfers at most).

    Raises:
        ValueError: the rows hold only one class.
    """
    from threadpoolctl import threadpool_limits  # noqa: PLC0415  (only when a run learns)

    backend = backend or resolve_backend("numpy")
    n_fraud = int(fraud.sum()) if n_fraud is None else n_fraud
    if n_fraud in (0, int(fraud.shape[0])):
        raise ValueError("the training rows hold only one class")
    initial = None if start is None else backend.to_device(np.append(start[0], start[1]))
    with threadpool_limits(1):
        out = backend.to_host(fit_balanced_logistic(x, fraud, weight, c=C_REGULARISATION, xp=backend.xp,
                                                    start=initial))
    return out[:-1].copy(), float(out[-1])


class LearnedScorer(Stateful):
    """The fitted weights and the labelled rows waiting to be learned from.

    State: ``coef`` (float64[K]) and ``bias`` of the last fit (``fitted_at`` its tick, -1 before
    the first), and the ``pending`` rows (a deque of :class:`LabelledRows`, oldest first).
    """

    STATE = ("coef", "bias", "fitted_at", "pending")

    def __init__(self, n_features: int, label_delay: int, retrain_every: int, train_window: int,
                 backend: Backend | None = None) -> None:
        self.label_delay, self.retrain_every, self.train_window = label_delay, retrain_every, train_window
        self.backend = backend or resolve_backend("numpy")
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
        n_fraud = sum(r.n_fraud for r in known)
        if n_fraud in (0, sum(r.n for r in known)):  # one class: nothing to learn from
            return False
        xp = self.backend.xp
        self.coef, self.bias = fit_logistic(xp.concatenate([r.x for r in known]),
                                            xp.concatenate([r.fraud for r in known]),
                                            xp.concatenate([r.weight for r in known]), backend=self.backend,
                                            start=(self.coef, self.bias) if self.fitted else None,
                                            n_fraud=n_fraud)
        self.fitted_at = tick
        return True
