"""The calibrated default's figures on a world the suite can afford, held to a stored reference.

A mechanism that breaks moves the figures the calibration rests on: a level taking another
level's probability moved GMV by 10-12% and nothing in the suite noticed (issue 30). This
module measures the figures of ``model/study/targets.toml`` (fitted targets, plausibility bounds and
alternative readings) on :data:`WORLD`: one region of 20k users in 10 cities (the default's
density of 2,000 users a city, so a scaled copy of the default's region, see
``tests/model/test_size_free.py``), 60 ticks, seeds :data:`SEEDS`, with every other setting the
calibrated default's.

The reference (``tests/model/calibration_reference.json``) holds each figure's mean over the
seeds and its standard error, written by ``python experiments/calibration_reference.py
--write`` and reviewed against the 200k bands when written. A figure is guarded when its seed
spread is small (relative standard error at most :data:`MAX_RELATIVE_SE`) and it is not a risk
figure (:data:`NOT_GUARDED`); its tolerance is :data:`TOLERANCE_SE` standard errors, with a floor of
:data:`FLOOR` of its value: at most 12% of the value, under 10% for most guarded figures (GMV
5.7%), over it for net margin and Moments conversion (about 11%), which the books and funnel
tests guard more closely. The seeds are fixed and every draw is keyed by its stream, so a
broken mechanism shifts the figures coherently (common random numbers) while a change that
only redraws moves them by about one standard error.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from weishang.model.config import load_config
from weishang.model.run import run_scenario
from weishang.model.study.validation import validate_run

REFERENCE = Path(__file__).resolve().parent / "model" / "calibration_reference.json"
WORLD = ["population.n_users=20000", "population.n_cities=10", "population.region_users=20000", "run.n_ticks=60",
         'run.backend="numpy"', 'output.transactions="none"']
SEEDS = (1, 2, 3)
KINDS = ("target", "plausibility", "alternative")
#: a figure whose mean over the seeds is this uncertain (standard error / |mean|) is not guarded
MAX_RELATIVE_SE = 0.04
#: never guarded at this size: the risk figures count a handful of fraud rings and bursts in a
#: 20k world (a change anywhere in the economy moves them by 10-15% in steps of one event), and
#: the warm-up leaves half the run out of the fitted ones; the 200k validation holds them
NOT_GUARDED = frozenset({"interception_qr", "interception_mini_program", "interception_cross_border",
                         "interception_qr_all_ticks", "interception_mini_program_all_ticks",
                         "interception_cross_border_all_ticks", "risk_precision", "risk_recall", "illicit_share"})
#: how far a guarded figure may move: this many of its standard errors ...
TOLERANCE_SE = 3.0
#: ... and never less than this share of its value (a figure the seeds barely move)
FLOOR = 0.01


def measure(overrides: list[str] | None = None, seeds: tuple[int, ...] = SEEDS) -> dict[str, list[float]]:
    """Each figure's value per seed on :data:`WORLD` (with ``overrides`` on top); figures some
    seed does not measure are left out."""
    per_seed: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="weishang-reference-") as tmp:
        for seed in seeds:
            config = load_config(overrides=[*WORLD, f"run.seed={seed}", *(overrides or [])])
            run = run_scenario(config, Path(tmp) / f"seed{seed}").run_dir
            table = validate_run(run).filter(pl.col("kind").is_in(KINDS) & pl.col("simulated").is_not_null())
            per_seed.append(dict(zip(table["target"], table["simulated"])))
    names = [name for name in per_seed[0] if all(name in s and math.isfinite(s[name]) for s in per_seed)]
    return {name: [s[name] for s in per_seed] for name in names}


def reference_of(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """The stored form: mean, standard error of the mean, and whether the figure is guarded."""
    out = {}
    for name, v in values.items():
        mean = float(np.mean(v))
        se = float(np.std(v, ddof=1) / math.sqrt(len(v)))
        guarded = name not in NOT_GUARDED and mean != 0 and se / abs(mean) <= MAX_RELATIVE_SE
        out[name] = {"mean": mean, "se": se, "guarded": bool(guarded)}
    return out


def tolerance(entry: dict[str, float]) -> float:
    return max(TOLERANCE_SE * entry["se"], FLOOR * abs(entry["mean"]))


def load_reference() -> dict[str, dict[str, float]]:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))["figures"]


def compare(values: dict[str, list[float]], reference: dict[str, dict[str, float]]) -> list[tuple[str, float, float, float]]:
    """The guarded figures that left their tolerance: (name, reference mean, mean now, tolerance);
    a guarded figure no longer measured counts as left."""
    out = []
    for name, entry in reference.items():
        if not entry["guarded"]:
            continue
        now = float(np.mean(values[name])) if name in values else math.nan
        if not abs(now - entry["mean"]) <= tolerance(entry):
            out.append((name, entry["mean"], now, tolerance(entry)))
    return out
