"""A class-balanced, L2-penalised logistic regression fitted by Newton's method on the device.

The objective is scikit-learn's ``LogisticRegression(C=c)`` (lbfgs, L2, intercept not
penalised) fitted on standardised features with ``sample_weight = R * w``, where ``w`` is the
rows' weight normalised to sum to one within each class (the classes weigh the same, whatever
their counts) and R the number of rows:

    minimise over (b, beta):  sum_i R w_i [log(1 + exp(eta_i)) - y_i eta_i] + |beta|^2 / (2 c),
    eta_i = b + sum_k beta_k z_ik,   z_ik = (x_ik - mean_k) / sd_k  (w-weighted mean and sd)

It is strictly convex, so Newton's method reaches the one minimum, quadratically once near it.
Each iteration solves the (K+1) x (K+1) float64 normal equations of the iteratively reweighted
least squares step and takes the full step unless it decreases the objective too little, then
half of it, and so on (backtracking: it keeps the first steps from overshooting where the classes
nearly separate, the probe's bursts and fan-out rings). The iteration stops when the Newton
decrement is below ``tol``, after ``max_iter`` iterations, or after :data:`MAX_TRIALS` trial steps
in all. Each trial step reads three numbers back (the decrement and the objective before and
after, one transfer): about a dozen a fit, every week, and never more than :data:`MAX_TRIALS`.

Why not scikit-learn: its fit runs on the host and needs the rows there, a copy of every training
row off the device at each refit; this is ``xp`` code, the rows stay where they were made and
only the K+1 weights come back. scikit-learn stays the reference the tests compare against.

The weights are folded back to raw feature units and rounded to float32, so fits whose sums a
machine (or a BLAS) orders differently in the last bits export the same weights.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import fused

#: the share of the predicted decrease a step must achieve (Armijo's condition) to be taken
ARMIJO = 1e-4
#: times the line search halves a step that decreases the objective too little, at most
MAX_HALVINGS = 30
#: iterations at most; Newton needs about fifteen from zero on the engine's rows, five from last
#: week's model
MAX_ITER = 50
#: trial steps (full Newton steps and halvings, each one read-back) a fit takes at most, whatever
#: ``max_iter``: the bound on a refit's transfers (the engine's fits take about a dozen)
MAX_TRIALS = 40
#: the Newton decrement (the objective's predicted decrease, per unit of row weight) at which
#: the fit stops: far below what float32 weights can resolve
TOLERANCE = 1e-14


def fit_balanced_logistic(x: Any, label: Any, weight: Any, *, c: float, xp: ModuleType, start: Any = None,
                          max_iter: int = MAX_ITER, tol: float = TOLERANCE) -> Any:
    """(float64[K + 1], device) the coefficients of a logistic model of ``label`` (bool[R]) on
    the rows ``x`` (float64[R, K]) weighted by ``weight`` (float64[R], positive), the classes
    balanced (see the module docstring), in raw feature units and rounded to float32:
    ``score = out[K] + sum_k out[k] x[:, k]``.

    ``start`` (float64[K + 1], device, the same layout; zero when None): where Newton's method
    starts, e.g. the last fit's weights. The minimum is unique, so the start changes how many
    steps the fit takes (a third as many from last week's model), not where it ends, to within
    the float32 rounding of the result.

    The caller makes sure both classes are present (the model knows its counts on the host);
    with one class the fit would run to the penalty's bound, and the sums to NaN.
    """
    f64 = xp.float64
    n_rows, n_features = int(x.shape[0]), int(x.shape[1])
    y = label.astype(f64)
    w = weight.astype(f64)
    # each class's weights sum to one: balanced classes, as class_weight="balanced" with weights
    fraud_total = (w * y).sum()
    w = w / xp.where(label, fraud_total, w.sum() - fraud_total)
    mean = (x * w[:, None]).sum(axis=0) / 2.0
    sd = xp.sqrt((((x - mean) ** 2) * w[:, None]).sum(axis=0) / 2.0)
    sd = xp.where(sd > 0, sd, 1.0)
    # the design: a column of ones (the intercept) then the standardised features
    design = xp.empty((n_rows, n_features + 1), dtype=f64)
    design[:, 0] = 1.0
    design[:, 1:] = (x - mean) / sd
    # scikit-learn's sample weights are R w; dividing the objective by their total (2 R) keeps
    # its terms near one whatever R, and moves no minimum: the penalty becomes 1 / (2 R c)
    s = w / 2.0
    penalty = xp.full(n_features + 1, 1.0 / (2.0 * n_rows * c), dtype=f64)
    penalty[0] = 0.0  # the intercept is not penalised
    mm = xp.matmul  # not the @ operator, which the strict stand-in's arrays do not take
    theta = xp.zeros(n_features + 1, dtype=f64)
    if start is not None:  # raw units to standardised ones
        theta[1:] = start[:n_features] * sd
        theta[0] = start[n_features] + (start[:n_features] * mean).sum()
    eta = mm(design, theta)
    objective = _objective(s, y, eta, theta, penalty, xp)
    trials = 0
    for _ in range(max_iter):
        residual, curvature = fused.launch(_NEWTON_TERMS, eta, s, y, xp=xp)
        gradient = mm(design.T, residual) + penalty * theta
        root = design * curvature[:, None]
        hessian = mm(root.T, root) + xp.diag(penalty)  # a product of an array with itself: BLAS's syrk
        newton = xp.linalg.solve(hessian, gradient)
        along = mm(design, newton)
        step = 1.0
        for _ in range(MAX_HALVINGS + 1):
            candidate, margins = theta - step * newton, eta - step * along
            trial = _objective(s, y, margins, candidate, penalty, xp)
            decrement, now, before = xp.stack([mm(gradient, newton), trial, objective]).tolist()
            trials += 1
            # converged (the decrease is below what the objective's rounding resolves), or enough
            # decrease (Armijo's condition), or out of halvings or trials: take the step
            accepted = decrement < tol or now <= before - ARMIJO * step * decrement
            if accepted or trials >= MAX_TRIALS:
                break
            step /= 2.0
        if accepted:  # out of trials with too little decrease: the last good coefficients stand
            theta, eta, objective = candidate, margins, trial
        if decrement < tol or trials >= MAX_TRIALS:
            break
    coef = theta[1:] / sd
    out = xp.empty(n_features + 1, dtype=f64)
    out[:n_features] = coef
    out[n_features] = theta[0] - (coef * mean).sum()
    return out.astype(xp.float32).astype(f64)


def _objective(s: Any, y: Any, eta: Any, theta: Any, penalty: Any, xp: ModuleType) -> Any:
    """(float64, 0-d) the objective per unit of row weight at coefficients ``theta`` (float64[K+1])
    whose margins are ``eta`` (float64[R])."""
    return xp.matmul(s, fused.launch(_LOSS, eta, y, xp=xp)) + 0.5 * xp.matmul(penalty, theta * theta)


def _newton_terms_reference(eta: Any, s: Any, y: Any) -> tuple[Any, Any]:
    """Each row's gradient term ``s (p - y)`` and Hessian root ``sqrt(s p (1 - p))`` (float64[R]
    each) at margins ``eta`` (p the logistic of eta; ``s`` the row weights, ``y`` the labels)."""
    p = 1.0 / (1.0 + np.exp(-eta))
    return s * (p - y), np.sqrt(s * p * (1.0 - p))


def _loss_reference(z: Any, y: Any) -> Any:
    """Each row's log-loss ``log(1 + exp(z)) - y z`` (float64[R]), the softplus without overflow
    (NumPy's logaddexp is slower)."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z


# One launch each on CuPy. exp and log1p are the device's, as in CuPy's own ufuncs, and agree with
# NumPy's to an ulp, not bit for bit: the fit's weights are rounded to float32 for that reason.
_NEWTON_TERMS = fused.register(fused.FusedKernel(
    "weishang_newton_terms", "float64 eta, float64 s, float64 y", "float64 residual, float64 curvature",
    """double p = 1.0 / (1.0 + exp(-eta));
       residual = s * (p - y);
       curvature = sqrt(s * p * (1.0 - p));""",
    _newton_terms_reference))
_LOSS = fused.register(fused.FusedKernel(
    "weishang_logistic_loss", "float64 z, float64 y", "float64 loss",
    "loss = (z > 0.0 ? z : 0.0) + log1p(exp(-fabs(z))) - y * z;",
    _loss_reference))
