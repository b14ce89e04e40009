"""One experiment model (issue 31): every spec is the same sections (scenarios, levers,
uncertainties, outcomes, [set]) read by one loader, whichever study it is; the names of earlier
releases load as the same experiment; an ensemble's runs are a sweep's."""

from __future__ import annotations

import math
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


def test_a_spec_given_to_another_study_names_the_command_that_runs_it(tmp_path, capsys):
    from weishang.model.apps.cli import _main

    spec = ROOT / "experiments" / "calibration" / "ensemble.toml"
    with pytest.raises(ConfigError, match=r"is an ensemble spec .*weishang calibrate --ensemble"):
        load_sweep(spec)
    with pytest.raises(ConfigError, match=r"is a sweep spec .*weishang sweep"):
        load_screen(ROOT / "experiments" / "sweeps" / "ban.toml")
    (tmp_path / "none.toml").write_text('[set]\n"run.n_ticks" = 3\n')
    with pytest.raises(ConfigError, match=r"names no study; start it with a \[sweep\] table"):
        load_sweep(tmp_path / "none.toml")
    assert _main(["sensitivity", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weishang calibrate --ensemble" in err
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
        f'[sweep]\nscenarios = ["{BASELINE}"]\nreplicates = 2\noutcomes = ["orders", "posts", "gmv_cny", "daily_gmv", '
        f'"conversion_moments", "target.official_share_of_value"]\n[set]\n"population.n_users" = 3000\n'
        f'"population.n_cities" = 3\n'
        f'"run.n_ticks" = 3\n')
    out = tmp_path / "out"
    run_sweep(load_sweep(tmp_path / "s.toml"), out)
    runs = pl.read_parquet(out / "runs.parquet")
    # "orders" already has its column; "posts" is a summary figure; the others are targets
    assert {"orders", "posts", "target.daily_gmv", "target.official_share_of_value"} <= set(runs.columns)
    assert "official_share_of_value" in runs.columns  # the summary's own figure stays beside the target's measure
    assert runs["gmv_cny"].equals(runs["gmv"], check_names=False)  # an outcome is a column by the name it is given
    # a bare name that is also a summary figure is the figure (as a screen always read it)
    assert "conversion_moments" in runs.columns and "target.conversion_moments" not in runs.columns
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
    with pytest.raises(ConfigError, match="is not one of the uncertainties"):
        load_sweep(tmp_path / "bad.toml")


TINY = ["population.n_users=3000", "population.n_cities=3", "run.n_ticks=4", 'run.backend="numpy"']


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    """An ensemble of 3 samples and 2 centre seeds, made in this process: (spec, its OUT, result)."""
    from weishang.model.study.ensemble import run_ensemble

    root = tmp_path_factory.mktemp("ensemble")
    spec = root / "e.toml"
    spec.write_text('[ensemble]\nsamples = 3\ncentre_replicates = 2\n[uncertainties]\n'
                    '"cascade.p_buy_friend" = [0.2, 0.4]\n')
    return spec, root / "ens", run_ensemble(spec, root / "ens", overrides=TINY)


def test_an_ensemble_runs_as_a_sweep_on_shared_populations(tiny_ensemble, tmp_path):
    """The ensemble's runs are a sweep's (resumable, on the pool, an array job or Dask): each
    sample's figures are the ones a lone run of its parameters measures, with only its manifest
    and validation kept."""
    from weishang.model.config import load_config
    from weishang.model.run import run_scenario
    from weishang.model.study.ensemble import plan_ensemble

    spec, out, result = tiny_ensemble
    assert result.samples == 3 and (result.made, result.already) == (5, 0)
    samples = pl.read_parquet(out / "samples.parquet")
    tiny = TINY
    planned = plan_ensemble(spec, out, overrides=tiny)
    assert {r.share_population and not r.keep_tables for r in planned.sweep.runs} == {True}
    assert not (out / "ticks").exists()  # no table kept
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
        with pytest.raises(ConfigError, match="the sweep has none|is not one of the uncertainties"):
            load_sweep(tmp_path / "s.toml")


def test_a_calibration_takes_its_specs_scenario_and_set_under_the_command_line(tmp_path):
    from weishang.model.study.calibrate import plan_calibration

    (tmp_path / "mine.toml").write_text('[run]\nname = "mine"\n')
    # a flag and a text with a backslash and a quote reach the runs as written (issue 31 review:
    # re-written as text, true became "True" and the backslash an escape)
    (tmp_path / "c.toml").write_text('[calibration]\nscenarios = ["mine.toml"]\n[set]\n"run.n_ticks" = 3\n'
                                     '"platform.induced_sharing_ban" = false\n'
                                     "\"output.dir\" = 'res\\new \"x\"'\n"
                                     '[[stage]]\nname = "a"\n[stage.uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
    plan = plan_calibration(tmp_path / "out", spec_path=tmp_path / "c.toml", overrides=["run.n_ticks=5"])
    assert plan.scenario == str(tmp_path / "mine.toml")
    assert plan.base == {"run.n_ticks": 5, "platform.induced_sharing_ban": False, "output.dir": 'res\\new "x"'}
    assert plan.base_config.run.n_ticks == 5 and plan.base_config.platform.induced_sharing_ban is False
    assert plan.base_config.output.dir == 'res\\new "x"'
    assert not (tmp_path / "out").exists()  # a plan creates nothing
    assert plan_calibration(tmp_path / "out", scenario=BASELINE, spec_path=tmp_path / "c.toml").scenario == str(BASELINE)


def test_an_ensemble_runs_on_dask_as_in_one_process(tiny_ensemble, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from weishang.model.study.ensemble import run_ensemble

    spec, out, _ = tiny_ensemble
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_ensemble(spec, tmp_path / "dask", overrides=TINY, scheduler=cluster.scheduler_address)
    here, dask = (pl.read_parquet(where / "samples.parquet") for where in (out, tmp_path / "dask"))
    assert here.height == 5 and here.equals(dask)


def test_threads_sharing_a_process_each_run_on_their_own_population(monkeypatch):
    # issue 31 review: a Dask worker's threads could hand a run another seed's population
    import threading
    import time
    from types import SimpleNamespace

    import weishang.model.population as population
    import weishang.model.run as run
    from weishang.model.config import load_config
    from weishang.model.study import sweep

    def build(config, backend, graph=None):
        time.sleep(0.2)  # long enough for the other thread to interleave
        return ("population of seed", config.run.seed)

    got = {}
    monkeypatch.setattr(population, "build_population", build)
    monkeypatch.setattr(run, "prepare_run", lambda config, run_dir, preflight=True: SimpleNamespace(
        config=config, backend=None, graph=None, lock=SimpleNamespace(release=lambda: None)))
    monkeypatch.setattr(run, "run_scenario", lambda config, run_dir, population, prepared: got.__setitem__(
        config.run.seed, population))
    configs = [load_config(overrides=["population.n_users=2000"], seed=seed) for seed in (1, 2, 1, 2)]
    threads = [threading.Thread(target=sweep._run_on_shared_population, args=(c, Path("unused"))) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {1: ("population of seed", 1), 2: ("population of seed", 2)}
    assert len(sweep._LAST_POPULATION) == 1  # never two held
    sweep.release_shared_population()
    assert sweep._LAST_POPULATION == []


def test_earlier_names_of_members_and_of_an_ensemble_make_the_same_runs(tmp_path):
    from weishang.model.study.ensemble import plan_ensemble

    pl.DataFrame({"member": [0, 1, 2], "param.cascade.p_buy_friend": [0.2, 0.3, 0.25]}).write_parquet(
        tmp_path / "ens.parquet")
    head = f'[sweep]\nscenarios = ["{BASELINE}"]\n'
    (tmp_path / "old.toml").write_text(head + '[ensemble]\nfile = "ens.parquet"\nmembers = 2\n')
    (tmp_path / "new.toml").write_text(head + '[members]\nfile = "ens.parquet"\ncount = 2\n')
    old, new = load_sweep(tmp_path / "old.toml"), load_sweep(tmp_path / "new.toml")
    assert _same_runs(old, new) and old.members == new.members == (0, 2)
    boxes = '"cascade.p_buy_friend" = [0.2, 0.3]\n"merchants.exit_hazard" = [0.001, 0.01]\n'
    (tmp_path / "old.toml").write_text(f'[ensemble]\nsamples = 4\nlog = ["merchants.exit_hazard"]\n[ensemble.params]\n{boxes}')
    (tmp_path / "new.toml").write_text(f'[ensemble]\nsamples = 4\nlog = ["merchants.exit_hazard"]\n[uncertainties]\n{boxes}')
    tiny = ["population.n_users=3000"]
    assert _same_runs(plan_ensemble(tmp_path / "old.toml", tmp_path / "o", overrides=tiny).sweep,
                      plan_ensemble(tmp_path / "new.toml", tmp_path / "o", overrides=tiny).sweep)


def test_levers_cross_the_uncertainties_and_a_sweep_without_scenarios_runs_the_default(tmp_path):
    (tmp_path / "s.toml").write_text('[sweep]\nsamples = 3\n[levers]\n"platform.group_downweight" = [0.5, 1.0]\n'
                                     '[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
    sweep = load_sweep(tmp_path / "s.toml")
    assert {r.scenario for r in sweep.runs} == {"default"} and len(sweep.runs) == 6
    points = [r.params for r in sweep.runs]
    # every lever value meets the same three draws (levers outer, samples inner)
    assert [p["platform.group_downweight"] for p in points] == [0.5] * 3 + [1.0] * 3
    assert [p["cascade.p_buy_friend"] for p in points[:3]] == [p["cascade.p_buy_friend"] for p in points[3:]]
    for text, message in [('[levers]\n"cascade.p_buy_friend" = [0.2]\n', "both a lever and an uncertainty"),
                          ("", "how many Latin hypercube samples")]:
        (tmp_path / "bad.toml").write_text('[sweep]\n' + text + '[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
        with pytest.raises(ConfigError, match=message):
            load_sweep(tmp_path / "bad.toml")


def test_an_ensemble_outcome_also_held_out_or_nothing_to_match_is_refused(tmp_path):
    for line, message in [('outcomes = ["reach_l1"]\nhold_out = ["reach_l1"]', "also excluded or held out"),
                          ('outcomes = []', r'e.g. \["reach_l1"\]')]:
        (tmp_path / "e.toml").write_text(f'[ensemble]\n{line}\n[uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
        with pytest.raises(ConfigError, match=message):
            load_ensemble_spec(tmp_path / "e.toml")


def test_an_ensemble_folder_is_not_reported_as_damaged_and_a_spec_is_not_a_scenario(tiny_ensemble, capsys):
    from weishang.model.apps.cli import _main

    spec, out, result = tiny_ensemble
    assert set(result.ruled_out["target"]) >= {"daily_gmv"}  # per matched target, why sets were not kept
    for command in (["report", str(out)], ["validate", str(out)], ["run", str(spec)]):
        assert _main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err
        assert ("a calibration ensemble's runs" in err) or ("weishang calibrate --ensemble" in err)
    assert not (out / "report").exists()


def test_a_bad_calibration_is_one_line_and_creates_nothing(tmp_path, capsys):
    from weishang.model.apps.cli import _main

    (tmp_path / "c.toml").write_text('[calibration]\nreplicates = 1\n[[stage]]\nname = "a"\noutcomes = ["nope"]\n'
                                     '[stage.uncertainties]\n"cascade.p_buy_friend" = [0.2, 0.3]\n')
    ensemble = str(ROOT / "experiments" / "calibration" / "ensemble.toml")
    for args in (["--spec", str(tmp_path / "c.toml")], ["--set", "population.n_users=-5"],
                 ["--ensemble", ensemble, "--hold-out", "reach_l1"]):  # a fit's option, not the ensemble's
        assert _main(["calibrate", *args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err  # no progress bar's line before it
        assert not (tmp_path / "o").exists()


def test_the_docs_example_spec_loads_as_the_sweep_it_describes(tmp_path):
    text = (ROOT / "docs" / "experiments.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "s.toml").write_text(example.replace('"../', f'"{ROOT / "experiments"}/'))
    sweep = load_sweep(tmp_path / "s.toml")
    assert len(sweep.runs) == 2 * 8 * 2 * 3  # 2 lever values x 8 draws, 2 scenarios x 3 replicates


@pytest.mark.parametrize("text,overrides,message", [
    # a swept key's [set] or --set value is replaced in every run: it was lost without a word
    ('[set]\n"platform.group_downweight" = 0.7\n[levers]\n"platform.group_downweight" = [0.5]\n', [], "is swept"),
    ('[levers]\n"platform.group_downweight" = [0.5]\n', ["platform.group_downweight=0.9"], "is swept"),
    ('samples = 2\n[uncertainties]\n"merchants.exit_hazard" = [0.001, 0.01]\n', ["merchants.exit_hazard=0.5"],
     "is swept"),
    # the same point twice: one run made twice, and pooled as two
    ('[levers]\n"platform.group_downweight" = [0.5, 0.5]\n', [], "lists a value twice"),
    ('[uncertainties]\n"merchants.exit_hazard" = [0.001, inf]\n', [], "two finite numbers"),
    ('outcomes = ["daily_gmv", "target.daily_gmv"]\n', [], "names an outcome twice"),  # one column
])
def test_a_sweep_that_would_lose_a_value_or_repeat_a_point_is_refused(tmp_path, text, overrides, message):
    head = "[sweep]\n" if text.startswith("[") else "[sweep]\n"
    (tmp_path / "s.toml").write_text(head + text)
    with pytest.raises(ConfigError, match=message):
        load_sweep(tmp_path / "s.toml", overrides)


def test_more_members_than_the_ensemble_has_is_refused(tmp_path):
    pl.DataFrame({"member": [0, 1], "param.cascade.p_buy_friend": [0.2, 0.3]}).write_parquet(tmp_path / "ens.parquet")
    (tmp_path / "s.toml").write_text('[sweep]\n[members]\nfile = "ens.parquet"\ncount = 5\n')
    with pytest.raises(ConfigError, match=r"members.count = 5: a whole number from 1 to 2"):
        load_sweep(tmp_path / "s.toml")
