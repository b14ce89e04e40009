"""One experiment model (issue 31): every spec is the same sections (scenarios, levers,
uncertainties, outcomes, [set]) read by one loader, whichever study it is; the names of earlier
releases load as the same experiment; an ensemble's runs are a sweep's."""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from weishang.model.config import ConfigError
from weishang.model.study.calibrate import load_spec
from weishang.model.study.ensemble import draw_samples, load_ensemble_spec
from weishang.model.study.experiment import load_experiment, spec_kind
from weishang.model.study.sensitivity import load_screen
from weishang.model.study.sweep import load_sweep, run_sweep
from weishang.model.study.validation import load_targets

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "experiments" / "baseline.toml"
SPECS = sorted(p for p in (ROOT / "experiments").rglob("*.toml") if spec_kind(tomllib.loads(p.read_text())))


def test_the_shipped_specs_are_written_in_the_shared_sections():
    assert len(SPECS) >= 12
    earlier = {"grid", "samples", "parameters", "params", "targets", "run"}
    for path in [*SPECS, ROOT / "model" / "study" / "calibration.toml"]:
        doc = tomllib.loads(path.read_text())
        kind = spec_kind(doc)
        experiment = load_experiment(path, kind)
        assert experiment.spelled == {}, f"{path.name} uses an earlier name: {experiment.spelled}"
        tables = set(doc) | {key for stage in doc.get("stage", []) for key in stage}
        assert not tables & earlier, path.name


def _same_runs(a, b) -> bool:
    return [(r.scenario, r.params, r.seed, r.config_digest) for r in a.runs] == \
        [(r.scenario, r.params, r.seed, r.config_digest) for r in b.runs]


def test_a_sweep_in_earlier_names_is_the_same_sweep(tmp_path):
    head = f'[sweep]\nscenarios = ["{BASELINE}"]\nreplicates = 2\n'
    pairs = {
        "grid": ('[grid]\n"cascade.p_buy_friend" = [0.2, 0.3]\n', '[levers]\n"cascade.p_buy_friend" = [0.2, 0.3]\n'),
        "samples": ('[samples]\nn = 5\nseed = 3\n"cascade.p_buy_friend" = [0.2, 0.3]\n"cascade.n_stranger_views" = [5, 20]\n',
                    'samples = 5\nseed = 3\n[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n'
                    '"cascade.n_stranger_views" = [5, 20]\n'),
    }
    for old, new in pairs.values():
        (tmp_path / "old.toml").write_text(head + old)
        (tmp_path / "new.toml").write_text(head + new)
        assert _same_runs(load_sweep(tmp_path / "old.toml"), load_sweep(tmp_path / "new.toml"))
    (tmp_path / "both.toml").write_text(head + pairs["grid"][0] + pairs["grid"][1])
    with pytest.raises(ConfigError, match=r"\[grid\] is the earlier name of \[levers\]"):
        load_sweep(tmp_path / "both.toml")


def test_a_screen_an_ensemble_and_a_calibration_in_earlier_names_are_the_same(tmp_path):
    boxes = '"cascade.p_buy_friend" = [0.2, 0.3]\n"merchants.exit_hazard" = [0.001, 0.01]\n'
    (tmp_path / "old.toml").write_text(f'[sensitivity]\nscenario = "{BASELINE}"\ntrajectories = 2\n[parameters]\n{boxes}')
    (tmp_path / "new.toml").write_text(f'[sensitivity]\nscenarios = ["{BASELINE}"]\ntrajectories = 2\n'
                                       f'[uncertainties]\n{boxes}')
    old, new = load_screen(tmp_path / "old.toml"), load_screen(tmp_path / "new.toml")
    assert np.array_equal(old.samples, new.samples) and _same_runs(old.sweep, new.sweep)

    (tmp_path / "old.toml").write_text(f'[ensemble]\nsamples = 6\nlog = ["merchants.exit_hazard"]\n[ensemble.params]\n{boxes}')
    (tmp_path / "new.toml").write_text(f'[ensemble]\nsamples = 6\nlog = ["merchants.exit_hazard"]\n[uncertainties]\n{boxes}')
    assert draw_samples(load_ensemble_spec(tmp_path / "old.toml")) == draw_samples(load_ensemble_spec(tmp_path / "new.toml"))

    (tmp_path / "old.toml").write_text(f'[run]\nreplicates = 3\n[[stage]]\nname = "a"\ntargets = ["daily_gmv"]\n'
                                       f'[stage.params]\n{boxes}')
    (tmp_path / "new.toml").write_text(f'[calibration]\nreplicates = 3\n[[stage]]\nname = "a"\noutcomes = ["daily_gmv"]\n'
                                       f'[stage.uncertainties]\n{boxes}')
    assert load_spec(tmp_path / "old.toml") == load_spec(tmp_path / "new.toml")


def test_a_spec_given_to_another_study_names_the_command_that_runs_it(tmp_path):
    spec = ROOT / "experiments" / "calibration" / "ensemble.toml"
    with pytest.raises(ConfigError, match=r"is an ensemble spec .*weishang calibrate --ensemble"):
        load_sweep(spec)
    with pytest.raises(ConfigError, match=r"is a sweep spec .*weishang sweep"):
        load_screen(ROOT / "experiments" / "sweeps" / "ban.toml")
    (tmp_path / "none.toml").write_text('[set]\n"run.n_ticks" = 3\n')
    with pytest.raises(ConfigError, match=r"names no study; start it with a \[sweep\] table"):
        load_sweep(tmp_path / "none.toml")
    proc = subprocess.run([sys.executable, "-m", "weishang.model.apps.cli", "sensitivity", str(spec), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "weishang calibrate --ensemble" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("study,table", [
    ("sweep", '[sweep]\nscenarios = ["{b}"]\noutcomes = ["nope"]\n'),
    ("sensitivity", '[sensitivity]\noutcomes = ["nope"]\n[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n'
                    '"cascade.p_buy_share" = [0.1, 0.2]\n'),
    ("ensemble", '[ensemble]\noutcomes = ["gmv_cny"]\n[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n'),
    ("calibration", '[[stage]]\nname = "a"\noutcomes = ["gmv_cny"]\n[stage.uncertainties]\n'
                    '"cascade.p_buy_friend" = [0.2, 0.3]\n'),
])
def test_outcomes_are_checked_alike(tmp_path, study, table):
    # an ensemble and a calibration match targets: a run-summary figure has no band to match
    (tmp_path / "s.toml").write_text(table.format(b=BASELINE))
    with pytest.raises(ConfigError, match="is not a (run-summary figure|measured target)"):
        load_experiment(tmp_path / "s.toml", study)


def test_a_sweep_records_its_outcomes_summary_figures_and_targets(tmp_path):
    (tmp_path / "s.toml").write_text(
        f'[sweep]\nscenarios = ["{BASELINE}"]\nreplicates = 2\noutcomes = ["orders", "posts", "daily_gmv", '
        f'"official_share_of_value"]\n[set]\n"population.n_users" = 3000\n"population.n_cities" = 3\n'
        f'"run.n_ticks" = 3\n')
    out = tmp_path / "out"
    run_sweep(load_sweep(tmp_path / "s.toml"), out)
    runs = pl.read_parquet(out / "runs.parquet")
    # "orders" already has its column; "posts" is a summary figure; the others are targets
    assert {"orders", "posts", "target.daily_gmv", "target.official_share_of_value"} <= set(runs.columns)
    assert "official_share_of_value" in runs.columns  # the summary's own figure stays beside the target's measure
    for row in runs.iter_rows(named=True):
        measured = pl.read_parquet(out / row["run_dir"] / "validation.parquet")
        daily = measured.filter(pl.col("target") == "daily_gmv")["simulated"][0]
        assert row["target.daily_gmv"] == pytest.approx(daily) and row["posts"] > 0


def test_log_uniform_uncertainties_in_a_sweep_and_a_screen(tmp_path):
    (tmp_path / "s.toml").write_text(f'[sweep]\nscenarios = ["{BASELINE}"]\nsamples = 400\nlog = ["merchants.exit_hazard"]\n'
                                     f'[uncertainties]\n"merchants.exit_hazard" = [0.0001, 0.1]\n')
    draws = np.array([r.params["merchants.exit_hazard"] for r in load_sweep(tmp_path / "s.toml").runs])
    assert draws.min() >= 0.0001 and draws.max() <= 0.1
    # log-uniform: the median is the box's geometric middle (0.0032), where a uniform draw's is 0.05
    assert math.log10(np.median(draws)) == pytest.approx(-2.5, abs=0.15)
    (tmp_path / "p.toml").write_text('[sensitivity]\ntrajectories = 3\nlog = ["merchants.exit_hazard"]\n'
                                     '[uncertainties]\n"merchants.exit_hazard" = [0.0001, 0.1]\n'
                                     '"cascade.p_buy_friend" = [0.2, 0.3]\n')
    screen = load_screen(tmp_path / "p.toml")
    taken = np.array([r.params["merchants.exit_hazard"] for r in screen.sweep.runs])
    assert taken.min() >= 0.0001 * (1 - 1e-9) and taken.max() <= 0.1 * (1 + 1e-9)
    assert screen.problem["bounds"][0] == [math.log(0.0001), math.log(0.1)]  # screened on its logarithm
    (tmp_path / "bad.toml").write_text(f'[sweep]\nscenarios = ["{BASELINE}"]\nlog = ["merchants.exit_hazard"]\n')
    with pytest.raises(ConfigError, match="must be an uncertainty"):
        load_sweep(tmp_path / "bad.toml")


def test_an_ensemble_runs_as_a_sweep_on_shared_populations(tmp_path):
    """The ensemble's runs are a sweep's (resumable, on the pool, an array job or Dask): each
    sample's figures are the ones a lone run of its parameters measures, with only its manifest
    and validation kept."""
    from weishang.model.config import load_config
    from weishang.model.run import run_scenario
    from weishang.model.study.ensemble import plan_ensemble, run_ensemble

    spec = tmp_path / "e.toml"
    spec.write_text('[ensemble]\nsamples = 3\ncentre_replicates = 2\n[uncertainties]\n'
                    '"cascade.p_buy_friend" = [0.2, 0.4]\n')
    tiny = ["population.n_users=3000", "population.n_cities=3", "run.n_ticks=4", 'run.backend="numpy"']
    result = run_ensemble(spec, tmp_path / "ens", overrides=tiny)
    assert result.samples == 3
    samples = pl.read_parquet(tmp_path / "ens" / "samples.parquet")
    planned = plan_ensemble(spec, tmp_path / "ens", overrides=tiny)
    assert {r.share_population and not r.keep_tables for r in planned.sweep.runs} == {True}
    assert not (tmp_path / "ens" / "ticks").exists()  # no table kept
    sample = planned.sweep.runs[1]
    alone = run_scenario(load_config(None, {**planned.sweep.common, **sample.params}, seed=sample.seed),
                         tmp_path / "alone")
    measured = pl.read_parquet(alone.run_dir / "validation.parquet")
    row = samples.filter(pl.col("sample") == 1).row(0, named=True)
    for target in load_targets():
        value = measured.filter(pl.col("target") == target.id)["simulated"]
        if f"target.{target.id}" in row and value.len() and value[0] is not None:
            assert row[f"target.{target.id}"] == value[0], target.id


def test_a_sweep_with_sampling_settings_and_nothing_to_draw_is_refused(tmp_path):
    for line in ("samples = 5", "seed = 2", 'log = ["merchants.exit_hazard"]'):
        (tmp_path / "s.toml").write_text(f'[sweep]\nscenarios = ["{BASELINE}"]\n{line}\n')
        with pytest.raises(ConfigError, match="the sweep has none|must be an uncertainty"):
            load_sweep(tmp_path / "s.toml")


def test_a_calibration_takes_its_specs_scenario_and_set_under_the_command_line(tmp_path, monkeypatch):
    from weishang.model.study import calibrate as calibration

    (tmp_path / "mine.toml").write_text('[run]\nname = "mine"\n')
    (tmp_path / "c.toml").write_text('[calibration]\nscenarios = ["mine.toml"]\n[set]\n"run.n_ticks" = 3\n'
                                     '"population.n_users" = 3000\n[[stage]]\nname = "a"\n[stage.uncertainties]\n'
                                     '"cascade.p_buy_friend" = [0.2, 0.3]\n')
    seen = []

    def prepare(out, scenario, overrides):
        seen.append((scenario, list(overrides)))
        raise KeyboardInterrupt  # stop before any trial

    monkeypatch.setattr(calibration, "prepare", prepare)
    with pytest.raises(KeyboardInterrupt):
        calibration.calibrate(tmp_path / "out", spec_path=tmp_path / "c.toml", overrides=["run.n_ticks=5"])
    with pytest.raises(KeyboardInterrupt):
        calibration.calibrate(tmp_path / "out", scenario=BASELINE, spec_path=tmp_path / "c.toml")
    assert seen[0] == (tmp_path / "mine.toml", ["run.n_ticks=3", "population.n_users=3000", "run.n_ticks=5"])
    assert seen[1][0] == BASELINE  # the command line's scenario wins


def test_an_ensemble_runs_on_the_pool_and_on_dask_alike(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from weishang.model.study.ensemble import run_ensemble

    spec = tmp_path / "e.toml"
    spec.write_text('[ensemble]\nsamples = 3\ncentre_replicates = 2\n[uncertainties]\n'
                    '"cascade.p_buy_friend" = [0.2, 0.4]\n')
    tiny = ["population.n_users=2000", "population.n_cities=2", "run.n_ticks=2", 'run.backend="numpy"']
    run_ensemble(spec, tmp_path / "pool", overrides=tiny, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_ensemble(spec, tmp_path / "dask", overrides=tiny, scheduler=cluster.scheduler_address)
    pool, dask = (pl.read_parquet(tmp_path / where / "samples.parquet") for where in ("pool", "dask"))
    assert pool.height == 5 and pool.equals(dask)
