"""Targets as data, validation of runs and sweeps, and calibration (issue 7)."""

import json
import math
import re
import tomllib
from pathlib import Path

import optuna
import polars as pl
import pytest
from weishang.model.apps.cli import _main
from weishang.model.config import ConfigError, load_config
from weishang.model.recorder import FORMAT_VERSION
from weishang.model.run import run_scenario
from weishang.model.study.calibrate import calibrate, load_spec, loss
from weishang.model.study.ensemble import load_ensemble_spec
from weishang.model.study.sweep import load_sweep, run_sweep
from weishang.model.study.validation import (
    KINDS,
    Measure,
    RunMeasures,
    Target,
    load_targets,
    share_within,
    validate,
    validate_run,
)

SMALL = ["population.n_users=5000", "population.n_cities=10", "run.n_ticks=8", 'run.backend="numpy"',
         "merchants.post_rate=0.6"]
SPEC = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"  # shipped with the repository


def test_targets_file_is_complete_and_well_formed():
    targets = load_targets()
    ids = [t.id for t in targets]
    assert len(ids) == len(set(ids))
    assert {t.kind for t in targets} <= set(KINDS)
    assert {s.strip() for t in targets for s in t.section.split(",")} == {str(i) for i in range(1, 10)}
    for t in targets:
        if t.kind == "target":
            assert t.measure and (t.low is not None or t.high is not None), t.id
            assert (t.low is None or t.low <= t.expected) and (t.high is None or t.expected <= t.high), t.id
        if t.kind == "input":  # reads the parameter back, or measures what it drives within a band
            banded = t.low is not None and t.high is not None and t.low <= t.expected <= t.high
            assert t.measure.source in ("config", "constant") or banded, t.id
        if t.kind == "not_modelled":
            assert t.why, t.id
        if t.kind == "plausibility":  # a bound with its source or argument
            assert t.why and t.measure and t.low is not None and t.high is not None, t.id


def test_every_percentage_of_the_spec_is_listed():
    spec = SPEC.read_text(encoding="utf-8")
    percentages = {float(p) / 100 for p in re.findall(r"(\d+(?:\.\d+)?)%", spec)}
    listed = {round(t.expected, 6) for t in load_targets()} | {round(t.expected - 1, 6) for t in load_targets()}
    # +132% growth is listed as 1.32, +27% as 0.27; "7 points" and "22 points" are differences
    missing = {p for p in percentages if round(p, 6) not in listed and round(p + 1, 6) not in listed}
    assert not missing, f"SPEC percentages without a target row: {sorted(missing)}"


def test_miss_and_loss():
    t = Target(id="x", section="1", figure="", kind="target", expected=1.0, low=0.8, high=1.2, measure=Measure("summary", "x"))
    assert t.miss(1.1) == 0 and t.within(1.1)
    assert t.miss(1.4) == pytest.approx(1.0) and not t.within(1.4)  # 0.2 past the band, half-width 0.2
    assert loss({"x": 1.0}, [t]) == 0
    assert loss({"x": 1.4}, [t]) == pytest.approx(1.0 + 0.01 * 4.0)
    # past 3 half-widths a miss grows the loss linearly: miss 9 -> 3 * (18 - 3) = 45
    assert loss({"x": 3.0}, [t]) == pytest.approx(45.0 + 0.01 * 100.0)
    assert loss({}, [t]) == 100.0  # unmeasured counts as a big miss
    one_sided = Target(id="y", section="6", figure="", kind="target", expected=15, low=0.0, high=15.0, measure=Measure("summary", "y"))
    assert one_sided.within(5.0) and not one_sided.within(16.0)


def test_every_run_writes_its_validation_table(tmp_path):
    result = run_scenario(load_config(overrides=SMALL), tmp_path / "r")
    table = pl.read_parquet(result.run_dir / "validation.parquet")
    for column in ("target", "section", "expected", "low", "high", "simulated", "ci_low", "ci_high", "within"):
        assert column in table.columns
    inputs = table.filter(pl.col("kind") == "input")
    assert inputs["within"].all()  # the default scenario takes the SPEC's inputs
    assert table.filter(pl.col("kind") == "not_modelled")["within"].is_null().all()
    targets = table.filter(pl.col("kind") == "target")
    # the risk figures are measured past a 30-tick cold start, which this short run never leaves
    after_warmup = [t.id for t in load_targets() if t.measure and t.measure.from_tick > 0]
    assert len(after_warmup) == 7  # four targets, three plausibility bounds of the engine
    assert targets.filter(~pl.col("target").is_in(after_warmup))["simulated"].is_not_null().all()
    assert targets.filter(pl.col("target").is_in(after_warmup))["simulated"].is_null().all()
    # a figure read back by hand: the summary's friend-recommendation conversion
    row = targets.filter(pl.col("target") == "conversion_friend_rec")
    assert row["simulated"][0] == pytest.approx(result.summary["conversion_friend_rec"])
    assert table.equals(validate_run(result.run_dir))
    # every field carries its unit and meaning, as the other tables' do
    import pyarrow.parquet as pq

    for field in pq.read_schema(result.run_dir / "validation.parquet"):
        assert field.metadata[b"unit"] and len(field.metadata[b"meaning"]) > 10, field.name


def test_sweep_validation_has_replicate_intervals(tmp_path):
    (tmp_path / "base.toml").write_text('[run]\nname = "base"\n', encoding="utf-8")
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('[sweep]\nname = "v"\nscenarios = ["base.toml"]\nreplicates = 3\n[set]\n'
                          + "\n".join(f'"{o.split("=")[0]}" = {o.split("=", 1)[1]}' for o in SMALL) + "\n",
                          encoding="utf-8")
    run_sweep(load_sweep(sweep_file), tmp_path / "out", workers=1)
    table, path = validate(tmp_path / "out")
    assert path.is_file()
    assert set(table["replicates"]) == {3}
    measured = table.filter(pl.col("simulated").is_not_null() & (pl.col("kind") == "target"))
    assert (measured["ci_low"] <= measured["simulated"]).all() and (measured["simulated"] <= measured["ci_high"]).all()
    assert (measured["ci_high"] > measured["ci_low"]).any()


def test_validate_cli_and_bad_directory(tmp_path, capsys):
    run_dir = run_scenario(load_config(overrides=SMALL), tmp_path / "r").run_dir
    assert _main(["validate", str(run_dir)]) == 0
    assert "fitted outputs within tolerance" in capsys.readouterr().out
    assert _main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "neither a run directory" in err and "\n" not in err


def test_calibration_spec_names_only_free_config_keys():
    spec = load_spec()
    targets = {t.id for t in load_targets()}
    inputs = {t.measure.name for t in load_targets() if t.kind == "input" and t.measure.source == "config"}
    for stage in spec.stages:
        for name, (lo, hi) in stage.params.items():
            assert lo < hi, name
            assert name not in inputs, f"{name} is a SPEC input, not a free parameter"
            assert name.split(".")[1] not in targets


def test_the_default_lies_inside_every_box_of_the_fits_that_produced_it():
    # issue 30: virality_sigma, p_private_transfer, laundering and target_fpr sat outside the box
    # of the fit said to have produced them
    default = load_config().resolved()
    root = Path(__file__).resolve().parents[2]
    boxes = [("calibration.toml " + stage.name, stage.params) for stage in load_spec().stages]
    ensemble = load_ensemble_spec(root / "experiments" / "calibration" / "ensemble.toml").params
    boxes.append(("ensemble.toml", ensemble))
    for where, box in boxes:
        for name, (lo, hi) in box.items():
            section, key = name.split(".")
            assert lo <= default[section][key] <= hi, f"{where}: {name} = {default[section][key]} outside [{lo}, {hi}]"


def test_fitted_outputs_exclude_inputs_and_both_friend_figures_read_one_channel_set():
    from weishang.model.codes import FRIEND_RECOMMENDATION, Channel  # noqa: PLC0415

    targets = {t.id: t for t in load_targets()}
    fitted = [t for t in targets.values() if t.kind == "target"]
    assert len(fitted) == 27
    # a figure that reads back a parameter is an input, whatever band it has
    assert targets["false_positive_rate"].kind == targets["report_response_minutes"].kind == "input"
    friend = {Channel.label(c) for c in FRIEND_RECOMMENDATION}
    assert set(targets["reach_l1"].measure.channels) == friend == {"moments", "live_stream", "external_link"}
    # every alternative reading names a fitted target and is never counted
    alternatives = [t for t in targets.values() if t.kind == "alternative"]
    assert {t.of for t in alternatives} >= {"reach_l2", "reach_l3", "interception_qr"}
    # an alternative within its band never lifts the count of a fitted output that misses
    table = pl.DataFrame({"target": ["a", "b"], "kind": ["target", "alternative"], "within": [False, True]})
    assert share_within(table) == (0, 1)


def test_calibrate_writes_a_loadable_scenario_and_resumes(tmp_path):
    small = ["population.n_users=3000", "population.n_cities=4", "run.n_ticks=4", 'run.backend="numpy"']
    spec = tmp_path / "spec.toml"  # one round of the risk stage keeps the test short
    spec.write_text('[run]\nreplicates = 1\nrounds = 1\n[[stage]]\nname = "risk"\n[stage.params]\n'
                    '"risk.w_scenario_mini_program" = [0.0, 2.0]\n"fraud.ato_per_million" = [0.1, 5.0]\n',
                    encoding="utf-8")
    out = tmp_path / "cal"
    first = calibrate(out, overrides=small, trials=3, workers=1, stages=["risk"], spec_path=spec)
    config = load_config(first.scenario_file, small)
    for name, value in first.fitted.items():
        section, key = name.split(".")
        assert getattr(getattr(config, section), key) == pytest.approx(value, rel=1e-5)
    fitted_text = tomllib.loads(first.scenario_file.read_text(encoding="utf-8"))
    assert set(fitted_text) == {"fraud", "risk"}
    again = calibrate(out, overrides=small, trials=4, workers=1, stages=["risk"], spec_path=spec)
    study = optuna.load_study(study_name="stage-risk", storage=f"sqlite:///{out / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # the second call topped the study up by one trial
    trials = pl.read_parquet(again.trials_file)
    assert trials.height == 4 and "target.conversion_friend_rec" in trials.columns
    assert all(math.isfinite(v) for v in trials["loss"])


def test_a_calibration_worker_is_reproducible(tmp_path):
    # the workers loaded the study with an unseeded sampler: the same fit twice proposed other values
    import os

    from weishang.model.study.calibrate import Stage, _work

    stage = Stage("risk", "", {"risk.w_scenario_mini_program": (0.0, 2.0), "fraud.ato_per_million": (0.1, 5.0)})
    small = {"population.n_users": 2000, "population.n_cities": 2, "run.n_ticks": 2, "run.backend": "numpy"}
    proposed = []
    for name in ("a", "b"):
        storage = f"sqlite:///{tmp_path / name}.db"
        optuna.create_study(study_name="s", storage=storage)
        # in this process (its parent's id never changes under it), three trials, seeded alike
        _work(storage, "s", stage, small, None, {}, [1], ["daily_gmv"], 3, os.getppid(), sampler_seed=5)
        proposed.append([t.params for t in optuna.load_study(study_name="s", storage=storage).trials])
    assert len(proposed[0]) == 3 and proposed[0] == proposed[1]


def test_a_calibration_runs_its_workers_on_dask(tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    small = ["population.n_users=2000", "population.n_cities=2", "run.n_ticks=2", 'run.backend="numpy"']
    spec = tmp_path / "spec.toml"
    spec.write_text('[calibration]\nreplicates = 1\n[[stage]]\nname = "risk"\n[stage.uncertainties]\n'
                    '"risk.w_scenario_mini_program" = [0.0, 2.0]\n')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = calibrate(tmp_path / "c", overrides=small, trials=4, workers=2, spec_path=spec,
                           scheduler=cluster.scheduler_address)
    trials = pl.read_parquet(result.trials_file)
    assert trials.height == 4 and (trials["state"] == "COMPLETE").all()
    assert _main(["calibrate", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --scheduler") and err.count("\n") == 1 and not (tmp_path / "none").exists()


def test_calibrate_rejects_unknown_targets_and_stages(tmp_path):
    with pytest.raises(ConfigError, match="not a measured target"):
        calibrate(tmp_path / "c", hold_out=["no_such_target"])
    with pytest.raises(ConfigError, match="unknown stage"):
        calibrate(tmp_path / "c", stages=["nope"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[[stage]]\nname = "x"\n[stage.params]\n"cascade.p_buy_friend" = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="must be \\[low, high\\], two finite numbers with low < high"):
        calibrate(tmp_path / "c", spec_path=bad)
    bad.write_text('[[stage]]\nname = "x"\n[stage.params]\n"community.groups_per_merchant" = [0.5, 2.0]\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="would change the population"):
        calibrate(tmp_path / "c", spec_path=bad)
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_measures_past_a_warmup_skip_the_first_ticks(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "status": "complete",
                                                        "summary": {},
                                                        "config": {"population": {"n_users": 1289}}}))
    pl.DataFrame({"tick": [0, 1, 2, 3], "n_intercepted_qr": [9, 9, 1, 3], "n_tx_qr": [10, 10, 100, 100]}).write_parquet(
        tmp_path / "ticks.parquet")
    measures = RunMeasures(tmp_path)

    def target(**spec):
        measure = Measure.parse(spec, "target x")
        return Target(id="x", section="3", figure="", kind="target", expected=0.02, low=0.0, high=1.0, measure=measure)

    ratio = {"ticks": "n_intercepted_qr", "over": "n_tx_qr", "reduce": "ratio"}
    assert measures.measure(target(**ratio)) == pytest.approx(22 / 220)
    assert measures.measure(target(**ratio, from_tick=2)) == pytest.approx(4 / 200)
    assert measures.measure(target(ticks="n_intercepted_qr", reduce="mean", from_tick=3)) == 3.0
    # the run never left its warm-up
    assert measures.measure(target(ticks="n_intercepted_qr", reduce="mean", from_tick=9)) is None


@pytest.mark.parametrize("spec,message", [
    ({"summary": "gmv"}, "summary has no column 'gmv'"),
    ({"ticks": "visits_moments", "reduce": "median"}, "reduces by mean or ratio"),
    ({"ticks": "n_intercepted_qr", "reduce": "ratio"}, "needs over = COLUMN"),
    ({"cascades": "exposures_l2", "reduce": "quantile_reached"}, "needs q in"),
    ({"config": "cascade.p_fly"}, "not a config key"),
    ({"constant": "PI"}, "unknown constant"),
    ({"summary": "gmv_cny", "ticks": "gmv"}, "exactly one of"),
    ("summary:gmv_cny", "must be a table"),
])
def test_measures_refer_to_registry_entries_checked_on_load(spec, message):
    with pytest.raises(ValueError, match=message):
        Measure.parse(spec, "target x")


def test_validation_intervals_respect_bounds_and_short_runs_warn(tmp_path, capsys):
    # issue 17: intervals below zero for non-negative figures; short runs dropped targets silently
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nscenarios = ["' + str(Path(__file__).resolve().parents[2] / "experiments" / "baseline.toml")
                    + '"]\nreplicates = 3\n[set]\n' + "\n".join(f'"{o.split("=")[0]}" = {o.split("=")[1]}' for o in SMALL))
    run_sweep(load_sweep(path), tmp_path / "out")
    table = pl.read_parquet(validate(tmp_path / "out")[1])
    bounds = {t.id: t.bounds() for t in load_targets()}
    for row in table.filter(pl.col("ci_low").is_not_null()).iter_rows(named=True):
        low, high = bounds[row["target"]]
        assert low is None or row["ci_low"] >= low, row
        assert high is None or row["ci_high"] <= high, row
    assert _main(["validate", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "are measured from tick 30" in captured.err
    assert "calibrated on whole regions of 200,000 users x 90 ticks" in captured.err
    assert "24 of 27 measured" in captured.out  # the three interception rates start at tick 30
    # per-seed truth: each replicate's own count, as its own run directory's validation says
    own = [pl.read_parquet(tmp_path / "out" / "runs" / "scenario=baseline" / "point=0" / f"replicate={r}"
                           / "validation.parquet") for r in range(3)]
    for row in table.iter_rows(named=True):
        each = [o.filter(pl.col("target") == row["target"])["within"][0] for o in own]
        assert row["within_by_replicate"] == each, row["target"]
        assert row["seeds_within"] == (sum(bool(w) for w in each) if any(w is not None for w in each) else None)
    counts = [int(o.filter((pl.col("kind") == "target") & pl.col("within"))["within"].len()) for o in own]
    assert "each seed on its own: " + ", ".join(f"{c} of 24" for c in counts) in captured.out


def test_a_loss_making_sweep_keeps_its_margin_inside_its_interval(tmp_path):
    # issue 32: net margin -8.6 was shown with the interval [0, -5.9]: the registry bounded a
    # margin to [0, 1] and profit to >= 0, and the interval was clipped past its own mean
    from weishang.model.columns import column

    assert column("summary", "net_margin").bounds == (None, 1.0)
    assert column("summary", "merchant_profit_cny").bounds == (None, None)
    path = tmp_path / "sweep.toml"
    path.write_text('[sweep]\nscenarios = ["' + str(Path(__file__).resolve().parents[2] / "experiments" / "baseline.toml")
                    + '"]\nreplicates = 2\n[set]\n' + "\n".join(f'"{o.split("=")[0]}" = {o.split("=")[1]}' for o in SMALL)
                    + '\n"merchants.traffic_cost_per_post" = 100000.0\n')
    run_sweep(load_sweep(path), tmp_path / "out")
    row = validate(tmp_path / "out")[0].filter(pl.col("target") == "net_margin").row(0, named=True)
    assert row["simulated"] < 0  # a loss, as the cost makes it
    assert row["ci_low"] <= row["simulated"] <= row["ci_high"] <= 1.0
