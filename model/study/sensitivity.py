"""``weishang sensitivity``: a global screen of which levers and parameters move which outcomes.

A spec file (TOML; the shared spec model of :mod:`weishang.model.study.experiment`)::

    [sensitivity]
    method = "morris"                 # Morris elementary effects (a screen), or "sobol" (indices)
    trajectories = 10                 # Morris: trajectories (runs = trajectories x (parameters + 1))
    levels = 4                        # Morris: grid levels
    samples = 64                      # Sobol: base sample size (runs = samples x (2 x parameters + 2))
    seed = 1                          # the sampling's seed
    replicates = 1                    # common seeds per sampled point (their mean is analysed)
    base_seed = 7
    scenarios = ["baseline.toml"]     # optional (one), relative to this file; the built-in default otherwise
    outcomes = ["gmv_cny", "compliant_survival_per_year", "fraud_intercepted", "reach_l1"]
    log = ["merchants.traffic_cost_per_post"]   # optional: screened on its logarithm

    [set]                             # every run's overrides (size, length)
    "population.n_users" = 20000

    [uncertainties]                   # the screened levers and parameters: [low, high]
    "platform.group_downweight" = [0.1, 1.0]
    "merchants.traffic_cost_per_post" = [5.0, 50.0]

An outcome is a run-summary figure, or a target (``target.ID``; a bare id that is not also a
summary figure) as the run's ``validation.parquet`` measures it.

Sampling and analysis are SALib's (``SALib.sample.morris`` / ``sobol``, ``SALib.analyze``); an
integer field takes the rounded value, a true/false field is true above the middle of its range.
The runs are a sweep (:mod:`weishang.model.study.sweep`): resumable, on local workers, a Dask cluster or
as array-job elements. Outputs in ``OUT``: the sweep itself, ``samples.parquet`` (each point's
parameters and outcomes), ``sensitivity.parquet`` (per parameter and outcome: Morris ``mu_star``,
its confidence, ``mu`` and ``sigma``; or Sobol ``S1``, ``ST`` and their confidences) and
``sensitivity.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..config import (
    ConfigError,
    ScenarioConfig,
    load_config,
    split_key,
    whole_number,
)
from ..recorder import read_manifest
from .experiment import read_outcomes
from .sweep import MAX_RUNS, Sweep, build_sweep, is_complete

METHODS = ("morris", "sobol")
DEFAULT_OUTCOMES = ("gmv_cny", "official_share_of_value", "compliant_survival_per_year", "exits",
                    "fraud_intercepted", "false_positives")


@dataclass(frozen=True)
class Screen:
    """A loaded spec: the SALib problem, the sampled points, and the sweep that runs them."""

    method: str
    problem: dict[str, Any]
    samples: np.ndarray  # (float64[P, K]) SALib's sample, one row per point
    outcomes: tuple[str, ...]
    sweep: Sweep
    levels: int
    #: parameters screened on their logarithm (``samples`` holds their logs)
    log: frozenset[str] = frozenset()


def load_screen(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Screen:
    """Read and check a sensitivity spec (:func:`weishang.model.study.experiment.load_experiment`)
    and sample its points; every run's config is validated."""
    from SALib.sample import morris as morris_sample  # noqa: PLC0415
    from SALib.sample import sobol as sobol_sample  # noqa: PLC0415

    from .experiment import load_experiment  # noqa: PLC0415

    spec = load_experiment(path, "sensitivity", overrides, at_least=2)
    head = spec.settings
    method = head.get("method", "morris")
    if method not in METHODS:
        raise ConfigError(f"sensitivity.method = {method!r}: one of {', '.join(METHODS)}")
    # an empty list ran every point, then divided by zero (issue 32)
    outcomes = spec.outcomes or DEFAULT_OUTCOMES
    where = spec.where("uncertainties")
    if not spec.uncertainties:
        raise ConfigError(f"{where}: name at least 2 parameters with their [low, high] range")
    names = list(spec.uncertainties)
    # a log-sampled parameter is screened on its logarithm (its effects per factor, not per unit)
    bounds = [[math.log(b.low), math.log(b.high)] if key in spec.log else [b.low, b.high]
              for key, b in spec.uncertainties.items()]
    problem = {"num_vars": len(names), "names": names, "bounds": bounds}
    seed = _int(head, "seed", 1, 0, 2**32 - 1)
    levels = _int(head, "levels", 4, 2, 100)
    # the run count before sampling: SALib warned about a huge sample before the refusal (issue 32)
    n = _int(head, "trajectories", 10, 2, 10_000) if method == "morris" else _int(head, "samples", 64, 2, 100_000)
    runs = n * (len(names) + (1 if method == "morris" else 2)) * spec.replicates
    if runs > MAX_RUNS:
        raise ConfigError(f"the screen has {runs:,} runs; at most {MAX_RUNS:,}")
    if method == "morris":
        samples = morris_sample.sample(problem, N=n, num_levels=levels, seed=seed)
    else:
        samples = sobol_sample.sample(problem, N=n, calc_second_order=False, seed=seed)
    file = spec.scenarios[0]
    template = load_config(file, spec.common)
    points = [{name: _typed(template, name, math.exp(value) if name in spec.log else value)
               for name, value in zip(names, row)} for row in samples]
    sweep = build_sweep(spec.name, [file], points, spec.replicates, spec.base_seed, spec.common, outcomes)
    return Screen(method, problem, samples, tuple(outcomes), sweep, levels, spec.log)


def _int(head: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    return whole_number(head, key, default, low, high, "sensitivity")


def _typed(config: ScenarioConfig, name: str, value: float) -> Any:
    """A sampled value as the config field takes it: rounded for an integer, a threshold for a flag."""
    section, key = split_key(name)
    current = getattr(getattr(config, section), key)
    if isinstance(current, bool):
        return bool(value >= 0.5)
    if isinstance(current, int):
        return int(round(value))
    return float(value)


def analyze(screen: Screen, out: Path) -> pl.DataFrame:
    """The indices per parameter and outcome from the completed runs (each point's replicates
    averaged); writes ``samples.parquet``, ``sensitivity.parquet`` and ``sensitivity.png``."""
    from SALib.analyze import morris as morris_analyze  # noqa: PLC0415
    from SALib.analyze import sobol as sobol_analyze  # noqa: PLC0415

    missing = [spec.index for spec in screen.sweep.runs if not is_complete(spec, out)]
    if missing:
        raise ConfigError(f"{len(missing)} of the screen's runs are not complete (first: run {missing[0]}); "
                          f"finish them with --resume before the analysis")
    values: dict[int, dict[str, list[float]]] = {}
    for spec in screen.sweep.runs:
        measured = read_outcomes(spec.run_dir(out), read_manifest(spec.run_dir(out)), screen.outcomes)
        for outcome in screen.outcomes:
            value = measured[outcome]
            values.setdefault(spec.point, {}).setdefault(outcome, []).append(np.nan if value is None else value)
    n_points = screen.samples.shape[0]
    y = {o: np.array([np.mean(values[p][o]) for p in range(n_points)]) for o in screen.outcomes}
    # each parameter as the runs took it (a log-screened one's logarithm undone)
    table = pl.DataFrame({**{name: np.exp(screen.samples[:, i]) if name in screen.log else screen.samples[:, i]
                             for i, name in enumerate(screen.problem["names"])},
                          **{o: y[o] for o in screen.outcomes}})
    table.write_parquet(out / "samples.parquet")
    rows = []
    for outcome in screen.outcomes:
        target = y[outcome]
        if not np.all(np.isfinite(target)):
            raise ConfigError(f"outcome {outcome!r} is undefined in some runs (e.g. a ratio over nothing); "
                              f"screen another outcome or make the runs longer")
        if screen.method == "morris":
            result = morris_analyze.analyze(screen.problem, screen.samples, target, num_levels=screen.levels,
                                            seed=1, print_to_console=False)
            for i, name in enumerate(screen.problem["names"]):
                rows.append({"parameter": name, "outcome": outcome, "mu_star": float(result["mu_star"][i]),
                             "mu_star_conf": float(result["mu_star_conf"][i]), "mu": float(result["mu"][i]),
                             "sigma": float(result["sigma"][i])})
        else:
            result = sobol_analyze.analyze(screen.problem, target, calc_second_order=False, seed=1,
                                           print_to_console=False)
            for i, name in enumerate(screen.problem["names"]):
                rows.append({"parameter": name, "outcome": outcome, "S1": float(result["S1"][i]),
                             "S1_conf": float(result["S1_conf"][i]), "ST": float(result["ST"][i]),
                             "ST_conf": float(result["ST_conf"][i])})
    indices = pl.DataFrame(rows)
    indices.write_parquet(out / "sensitivity.parquet")
    _plot(indices, screen, out / "sensitivity.png")
    return indices


def _plot(indices: pl.DataFrame, screen: Screen, path: Path) -> None:
    """Per outcome, each parameter's importance (mu* normalised by the largest, or ST) as bars."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    measure = "mu_star" if screen.method == "morris" else "ST"
    names = screen.problem["names"]
    n_cols = min(3, len(screen.outcomes))
    n_rows = -(-len(screen.outcomes) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols + 3.0, n_rows * (0.3 * len(names) + 1.4)),
                             sharey=True, squeeze=False)
    for axis in axes.flat[len(screen.outcomes):]:
        axis.set_visible(False)
    for axis, outcome in zip(axes.flat, screen.outcomes):
        value = indices.filter(pl.col("outcome") == outcome)[measure].to_numpy()
        largest = float(np.nanmax(np.abs(value))) if value.size else 0.0
        axis.barh(np.arange(len(names))[::-1], value / largest if measure == "mu_star" and largest else value)
        axis.set_xlim(0, 1.05)
        if not largest:
            axis.text(0.5, len(names) / 2, "no parameter moved it\nin these runs", ha="center", fontsize=8)
        axis.set_title(outcome, fontsize=9)
        axis.set_xlabel("mu* / largest mu*" if measure == "mu_star" else "total-order index", fontsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    for row in axes:
        row[0].set_yticks(np.arange(len(names))[::-1], names, fontsize=8)
    fig.subplots_adjust(hspace=0.5)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
