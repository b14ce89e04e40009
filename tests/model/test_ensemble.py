"""The calibration ensemble (history matching), sweeps over it, and reports that keep seed and
parameter uncertainty apart."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from weishang.model.config import ConfigError
from weishang.model.study.effects import two_level
from weishang.model.study.ensemble import (CENTRE, EnsembleSpec, coverage, draw_samples, implausibility,
                                     load_ensemble_spec)
from weishang.model.study.report import write_report
from weishang.model.study.sweep import load_sweep, run_sweep
from weishang.model.study.validation import Measure, Target

TINY = ['"population.n_users" = 3000', '"population.n_cities" = 3', '"run.n_ticks" = 6']


def target(tid: str, expected: float, low: float, high: float | None) -> Target:
    return Target(id=tid, section="1", figure="", kind="target", expected=expected, low=low, high=high,
                  measure=Measure("summary", tid))


def test_implausibility_is_the_distance_outside_the_band_in_seed_deviations():
    t = target("x", 10.0, 8.0, 12.0)
    samples = pl.DataFrame({"sample": [0, 1, 2, 3], "target.x": [9.0, 12.0, 14.0, None]})
    worst = implausibility(samples, [t], {"x": 0.5})
    assert worst[0] == 0.0 and worst[1] == 0.0  # inside the band, edge included
    assert worst[2] == pytest.approx(4.0)  # 2 above the band, seed sd 0.5
    assert math.isinf(worst[3])  # not measured: never in the ensemble
    one_sided = target("r", 50.0, 50.0, None)
    assert implausibility(pl.DataFrame({"target.r": [40.0, 80.0]}), [one_sided], {"r": 5.0}).tolist() == [2.0, 0.0]


def test_coverage_on_a_known_model_holds_and_is_informative():
    """A stand-in simulator with known truth: two targets, linear in two parameters plus seed
    noise. Every sample as the truth: the matched range holds it nearly always, and is much
    narrower than the box (a range as wide as the box would cover trivially)."""
    spec = EnsembleSpec(params={"a.x": (0.0, 1.0), "a.y": (0.0, 1.0)}, samples=400, seed=3)
    points = draw_samples(spec)
    rng = np.random.default_rng(0)
    sigma = 0.02
    rows = [{"sample": i, "replicate_seed": 1, "param.a.x": p["a.x"], "param.a.y": p["a.y"],
             "target.u": p["a.x"] + 0.5 * p["a.y"] + rng.normal(0, sigma),
             "target.v": p["a.x"] - p["a.y"] + rng.normal(0, sigma)} for i, p in enumerate(points)]
    rows += [{"sample": CENTRE, "replicate_seed": k, "param.a.x": 0.5, "param.a.y": 0.5,
              "target.u": 0.75 + rng.normal(0, sigma), "target.v": rng.normal(0, sigma)} for k in range(5)]
    targets = [target("u", 0.75, 0.7, 0.8), target("v", 0.0, -0.05, 0.05)]
    table = coverage(pl.DataFrame(rows), spec, targets, {"u": sigma, "v": sigma})
    assert table["truths"][0] > 300
    assert (table["covered"] >= 0.9).all()
    assert (table["range_of_box"] < 0.4).all()


def test_two_level_separates_parameter_from_seed_uncertainty():
    rng = np.random.default_rng(1)
    members, seeds = rng.normal(5.0, 2.0, 200), rng.normal(0.0, 5.0, 6)
    values = members[:, None] + seeds[None, :] + rng.normal(0.0, 1.0, (200, 6))
    mean, seed_half, param_half = two_level(values)
    assert param_half == pytest.approx(1.96 * 2.0, rel=0.15)  # the members' spread, seeds' shared shifts removed
    assert seed_half > 2.0  # the seeds' shifts stay in the mean's seed interval
    identical = np.tile(rng.normal(0, 5, 4), (7, 1))  # seven identical members, four seeds
    assert two_level(identical)[2] == 0.0
    assert two_level(values[:, :1]) == (pytest.approx(values[:, 0].mean()), None, None)


def test_ensemble_spec_errors_are_one_line(tmp_path):
    bad = tmp_path / "e.toml"
    bad.write_text('[ensemble]\n[ensemble.params]\n"population.n_users" = [1, 2]\n')
    with pytest.raises(Exception, match="would change the population"):
        load_ensemble_spec(bad)
    bad.write_text('[ensemble]\nhold_out = ["nope"]\n[ensemble.params]\n"cascade.p_buy_friend" = [0.1, 0.2]\n')
    with pytest.raises(Exception, match="'nope' is not a measured target"):
        load_ensemble_spec(bad)
    for cutoff in ("nan", "inf", "0.0"):  # NaN and inf would keep every set
        bad.write_text(f'[ensemble]\ncutoff = {cutoff}\n[ensemble.params]\n"cascade.p_buy_friend" = [0.1, 0.2]\n')
        with pytest.raises(Exception, match="positive, finite cutoff"):
            load_ensemble_spec(bad)
    proc = subprocess.run([sys.executable, "-m", "weishang.model.apps.cli", "calibrate", "--ensemble", str(bad),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("line,message", [
    # issue 32: each of these was a traceback, or (a key shaping the population) silently ignored
    ('samples = "abc"', "ensemble.samples = 'abc': a whole number"),
    ("seed = -1", "ensemble.seed = -1: a whole number from 0"),
    ("seed = 1.5", "ensemble.seed = 1.5: a whole number"),
    ("params = 5", "ensemble.params = 5: a table"),
    ("exclude = 5", "ensemble.exclude = 5: a list of names"),
    ('cutoff = "x"', "ensemble.cutoff = 'x': a number"),
    # issue 32: these failed only once runs had started, leaving the output folder behind
    ('[ensemble.params]\n"cascade.p_buy_share" = [0.1, 1.5]', "less than or equal to 1"),
    ('[ensemble.params]\n"merchants.exit_window" = [14, 60]', "whole-number key"),
])
def test_ensemble_settings_that_cannot_run_are_one_line(tmp_path, line, message):
    bad = tmp_path / "e.toml"
    params = "" if "params" in line else '[ensemble.params]\n"cascade.p_buy_friend" = [0.1, 0.2]\n'
    bad.write_text(f"[ensemble]\n{line}\n{params}")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_ensemble_spec(bad)


def test_an_ensemble_box_over_a_key_that_shapes_the_population_is_refused(tmp_path):
    # workers reuse one population per seed, so the box was ignored after a worker's first sample
    bad = tmp_path / "e.toml"
    bad.write_text('[ensemble]\n[ensemble.params]\n"community.group_size_mean" = [100, 400]\n')
    with pytest.raises(ConfigError, match="would change the population"):
        load_ensemble_spec(bad)


def test_calibrate_ensemble_writes_its_tables_and_resumes(tmp_path):
    spec = tmp_path / "e.toml"
    spec.write_text('[ensemble]\nsamples = 4\ncentre_replicates = 2\nhold_out = ["reach_l1"]\n'
                    'exclude = ["analytics_gmv_growth"]\nlog = ["merchants.exit_hazard"]\n[ensemble.params]\n'
                    '"cascade.p_buy_friend" = [0.2, 0.3]\n"merchants.exit_hazard" = [0.001, 0.003]\n')
    args = [sys.executable, "-m", "weishang.model.apps.cli", "calibrate", "--ensemble", str(spec), "--out",
            str(tmp_path / "ens"), "--set", "population.n_users=3000", "--set", "population.n_cities=3",
            "--set", "run.n_ticks=6", "--set", 'run.backend="numpy"']
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    samples = pl.read_parquet(tmp_path / "ens" / "samples.parquet")
    assert samples.height == 6 and (samples["sample"] == CENTRE).sum() == 2
    assert samples["param.merchants.exit_hazard"].is_between(0.001, 0.003).all()
    for name in ("ensemble.parquet", "held_out.parquet", "coverage.parquet", "ranges.parquet", "ensemble.png"):
        assert (tmp_path / "ens" / name).is_file()
    members = pl.read_parquet(tmp_path / "ens" / "ensemble.parquet")
    assert (members["implausibility"] <= 3.0).all()
    assert set(pl.read_parquet(tmp_path / "ens" / "held_out.parquet")["target"]) == {"reach_l1"}
    again = subprocess.run(args, capture_output=True, text=True)  # everything done: no run is redone
    assert again.returncode == 0
    assert pl.read_parquet(tmp_path / "ens" / "samples.parquet").drop("implausibility").equals(
        samples.drop("implausibility"))


@pytest.fixture(scope="module")
def ensemble_sweep(tmp_path_factory):
    """Two scenarios over three members (two of them the same parameters) x three seeds."""
    root = tmp_path_factory.mktemp("ens")
    pl.DataFrame({"member": [0, 1, 2], "param.cascade.p_buy_friend": [0.15, 0.35, 0.35],
                  "param.merchants.traffic_cost_per_post": [900.0, 900.0, 900.0]}).write_parquet(root / "ens.parquet")
    (root / "base.toml").write_text('[run]\nname = "baseline"\n')
    (root / "fee.toml").write_text('[run]\nname = "fee_high"\n[payments]\ntransaction_fee = 0.05\n')
    (root / "s.toml").write_text('[sweep]\nscenarios = ["base.toml", "fee.toml"]\nreplicates = 3\n[set]\n'
                                 + "\n".join(TINY) + '\n[ensemble]\nfile = "ens.parquet"\n')
    run_sweep(load_sweep(root / "s.toml"), root / "out", workers=1)
    return root


def test_a_sweep_over_an_ensemble_runs_each_member(ensemble_sweep):
    runs = pl.read_parquet(ensemble_sweep / "out" / "runs.parquet")
    assert runs.height == 2 * 3 * 3 and set(runs["member"]) == {0, 1, 2}
    by_member = runs.group_by("member").agg(pl.col("param.cascade.p_buy_friend").first()).sort("member")
    assert by_member["param.cascade.p_buy_friend"].to_list() == [0.15, 0.35, 0.35]
    (ensemble_sweep / "two.toml").write_text('[sweep]\nscenarios = ["base.toml"]\n[ensemble]\nfile = "ens.parquet"\n'
                                             'members = 2\n')
    two = load_sweep(ensemble_sweep / "two.toml")
    assert two.members == (0, 2)  # spread over the ensemble, not its first rows
    (ensemble_sweep / "bad.toml").write_text('[sweep]\nscenarios = ["base.toml"]\n[ensemble]\nfile = "none.parquet"\n')
    with pytest.raises(Exception, match="cannot be read"):
        load_sweep(ensemble_sweep / "bad.toml")


def test_the_report_over_an_ensemble_gives_seed_and_parameter_intervals(ensemble_sweep):
    report = write_report(ensemble_sweep / "out").read_text()
    assert "3 ensemble members" in report and "parameter range" in report and "seed 95% interval" in report
    effects = pl.read_parquet(ensemble_sweep / "out" / "report" / "effects.parquet")
    assert {"seed_low", "seed_high", "param_low", "param_high", "relative_mean"} <= set(effects.columns)
    outcomes = pl.read_parquet(ensemble_sweep / "out" / "report" / "outcomes.parquet")
    gmv = outcomes.filter((pl.col("scenario") == "baseline") & (pl.col("outcome") == "gmv")).row(0, named=True)
    # the members' conversion differs (0.15 vs 0.35): GMV moves across them beyond seed noise
    assert gmv["param_high"] > gmv["param_low"]
    # members 1 and 2 have the same parameters and seeds (identical runs): no parameter spread
    runs = pl.read_parquet(ensemble_sweep / "out" / "runs.parquet")
    twins = runs.filter((pl.col("member") > 0) & (pl.col("scenario") == "baseline"))
    values = twins.pivot(on="replicate", index="member", values="gmv").drop("member").to_numpy()
    assert two_level(values)[2] == 0.0


def test_an_ensemble_rerun_with_another_box_or_set_is_refused_not_reused(tmp_path):
    # issue 32: a rerun on the same --out with another box (or --set) reused the old samples while
    # ranges.parquet reported the new box; its runs are a sweep's now, each known by its config's digest
    from weishang.model.study.ensemble import plan_ensemble, run_ensemble, samples_table

    spec = tmp_path / "e.toml"
    spec.write_text('[ensemble]\nsamples = 4\n[ensemble.params]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
    out, tiny = tmp_path / "ens", ["population.n_users=3000", "population.n_cities=3", "run.n_ticks=2"]
    assert run_ensemble(spec, out, overrides=tiny, task_index=0) is None  # one run made, nothing matched yet
    plan_ensemble(spec, out, overrides=tiny)  # the same runs: resumes
    looser = spec.read_text().replace("samples = 4", "samples = 4\ncutoff = 2.0")
    spec.write_text(looser)
    plan_ensemble(spec, out, overrides=tiny)  # another cutoff only re-reads the runs
    spec.write_text(looser.replace("[0.2, 0.3]", "[0.2, 0.4]"))
    with pytest.raises(ConfigError, match="another box"):
        plan_ensemble(spec, out, overrides=tiny)
    spec.write_text(looser)
    with pytest.raises(ConfigError, match="another box"):
        plan_ensemble(spec, out, overrides=[*tiny, "population.n_users=4000"])
    run_ensemble(spec, out, overrides=tiny, task_index=1)  # an array-job element
    with pytest.raises(ConfigError, match="7 of the ensemble's 9 runs are not complete"):
        samples_table(plan_ensemble(spec, out, overrides=tiny))  # matching waits for every run
    earlier = tmp_path / "old"
    earlier.mkdir()
    (earlier / "samples.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="an earlier release"):
        plan_ensemble(spec, earlier, overrides=tiny)


@pytest.mark.parametrize("members,param,message", [
    ([0, 0, 1], [0.2, 0.25, 0.3], "each once"),          # issue 32: 6 runs reported, 4 averaged
    ([0, None, 1], [0.2, 0.25, 0.3], "each once"),
    ([0, 1, 2], [0.2, None, 0.3], "finite numbers in every row"),
    ([0, 1, 2], ["0.2", "x", "0.3"], "finite numbers in every row"),
])
def test_an_ensemble_file_with_repeated_ids_or_bad_cells_is_one_line(tmp_path, members, param, message):
    pl.DataFrame({"member": members, "param.cascade.p_buy_friend": param}).write_parquet(tmp_path / "ens.parquet")
    (tmp_path / "base.toml").write_text('[run]\nname = "baseline"\n')
    (tmp_path / "s.toml").write_text('[sweep]\nscenarios = ["base.toml"]\n[ensemble]\nfile = "ens.parquet"\n')
    with pytest.raises(ConfigError, match=message):
        load_sweep(tmp_path / "s.toml")
