"""Sweeps: parallel runs, hive layout, common seeds, failures kept, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from weishang.model.config import ConfigError
from weishang.model.study.sweep import load_sweep, run_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def sweep_file(tmp_path, extra="", scenarios=("baseline.toml", "no_inducement_ban.toml"), n_ticks=3):
    names = ", ".join(f'"{EXPERIMENTS / s}"' for s in scenarios)
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
[sweep]
scenarios = [{names}]
replicates = 3
base_seed = 7
[set]
"population.n_users" = 4000
"population.n_cities" = 4
"run.n_ticks" = {n_ticks}
"run.backend" = "numpy"
{extra}
""")
    return path


def test_two_scenarios_three_seeds_on_two_workers(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path))
    out = tmp_path / "out"
    results = run_sweep(sweep, out, workers=2)
    assert sorted(r["run_id"] for r in results) == list(range(6))
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 6 and (runs["status"] == "complete").all()
    # replicate k has the same seed in every scenario (common random numbers)
    seeds = runs.group_by("replicate").agg(pl.col("seed").n_unique())
    assert (seeds["seed"] == 1).all()
    ticks = duckdb.sql(f"select scenario, replicate, count(*) as n from "
                       f"read_parquet('{out}/ticks/*/*/*/*.parquet', hive_partitioning=true) "
                       f"group by scenario, replicate").df()
    assert len(ticks) == 6 and (ticks["n"] == 3).all()


def test_failed_run_is_recorded_and_the_others_finish(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    path = sweep_file(tmp_path, extra=f'[grid]\n"population.edge_list" = ["", "{broken}"]\n', scenarios=("baseline.toml",))
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out)
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 6
    assert (runs.filter(pl.col("point") == 0)["status"] == "complete").all()
    failed = runs.filter(pl.col("point") == 1)
    assert (failed["status"] == "failed").all() and failed["error"].str.contains("cannot be read").all()


def test_task_index_runs_one_run(tmp_path):
    out = tmp_path / "out"
    run_sweep(load_sweep(sweep_file(tmp_path)), out, task_index=4)
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.filter(pl.col("status") == "complete")["run_id"].to_list() == [4]
    assert (runs.filter(pl.col("run_id") != 4)["status"] == "pending").all()
    with pytest.raises(ConfigError, match="runs 0 to 5"):
        run_sweep(load_sweep(sweep_file(tmp_path)), out, task_index=6)


def test_a_second_element_for_the_same_run_is_refused_and_deletes_nothing(tmp_path):
    """Issue 32: two array-job elements given --task-index 0 a second apart. The second deleted the
    first's in-flight partial as stale; the first then failed, and both exited 0. Now the element
    holds its run (the first is played here by this process holding the run's lock, its partial
    directory in flight): the second is refused in one line, exit 2, and leaves the partial alone."""
    from weishang.model.study.sweep import claim_run

    path = sweep_file(tmp_path)
    sweep, out = load_sweep(path), tmp_path / "out"
    first = claim_run(sweep.runs[0], out)
    in_flight = sweep.runs[0].run_dir(out).parent / f".{sweep.runs[0].run_dir(out).name}.partial-99999"
    in_flight.mkdir(parents=True)
    (in_flight / ".manifest.json.tmp").write_text("{}")
    second = subprocess.run([sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out),
                             "--task-index", "0"], capture_output=True, text=True)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith("error: run 0 of") and "another process" in second.stderr
    assert (in_flight / ".manifest.json.tmp").exists() and not (out / "status" / "run-000000.started").exists()
    with pytest.raises(Exception, match="being made by another process"):
        run_sweep(sweep, out, task_index=0)
    first.release()  # the first element's process ended (the kernel drops its lock): its partial is stale now
    run_sweep(sweep, out, task_index=0)
    assert not in_flight.exists()
    assert pl.read_parquet(out / "runs.parquet").filter(pl.col("run_id") == 0)["status"].item() == "complete"


def test_bad_sweep_files(tmp_path):
    for text, message in [("[sweep]\nscenarios = []\n", "scenarios"),  # left out, it is the built-in default
                          ('[sweep]\nscenarios = ["x.toml"]\n[gird]\n', "unknown section"),
                          (f'[sweep]\nscenarios = ["{EXPERIMENTS / "baseline.toml"}"]\n[set]\n"run.n_ticks" = -1\n', "run.n_ticks"),
                          # a seed per point, or for every run, would be replaced by the derived seed
                          (f'[sweep]\nscenarios = ["{EXPERIMENTS / "baseline.toml"}"]\n[grid]\n"run.seed" = [1, 2]\n',
                           "base_seed"),
                          (f'[sweep]\nscenarios = ["{EXPERIMENTS / "baseline.toml"}"]\n[set]\n"run.seed" = 4\n',
                           "base_seed")]:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_sweep(path)


def test_killed_sweep_resumes_without_duplicates(tmp_path):
    path = sweep_file(tmp_path, n_ticks=30)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    status = out / "status"
    deadline = time.time() + 120
    while time.time() < deadline and (not status.exists() or len(list(status.glob("run-*.json"))) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = {p.name: p.read_text() for p in status.glob("run-*.json")}
    assert 2 <= len(finished_before) < 6
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 6 and (runs["status"] == "complete").all()
    # runs finished before the kill were not run again
    for name, record in finished_before.items():
        assert (status / name).read_text() == record
    # no half-written or duplicate run directories
    dirs = [p for p in (out / "runs").rglob("replicate=*")]
    assert len(dirs) == 6 and not list((out / "runs").rglob(".*partial*"))
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr


@pytest.mark.parametrize("path", sorted((EXPERIMENTS / "sweeps").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_load(path):
    assert len(load_sweep(path).runs) >= 2


def test_report_for_a_sweep_and_for_a_run(tmp_path):
    from weishang.model.study.report import write_report

    sweep = load_sweep(sweep_file(tmp_path))
    out = tmp_path / "out"
    run_sweep(sweep, out)
    report = write_report(out)
    text = report.read_text()
    assert "## What this size cannot show" in text and "fraud figures" in text  # a small world says so
    for png in ("gmv_by_channel.png", "cascade_sizes.png", "fraud.png", "survival.png", "effects.png"):
        assert (report.parent / png).stat().st_size > 1000 and png in text
    effects = pl.read_parquet(report.parent / "effects.parquet")
    # the paired GMV effect is the mean over replicates of (scenario - baseline)
    ticks = pl.read_parquet(out / "ticks", hive_partitioning=True)
    per_run = ticks.group_by(["scenario", "replicate"]).agg(pl.col("gmv").sum()).sort("replicate")
    diff = (per_run.filter(pl.col("scenario") == "no_inducement_ban")["gmv"].to_numpy()
            - per_run.filter(pl.col("scenario") == "baseline")["gmv"].to_numpy())
    gmv = effects.filter(pl.col("outcome") == "gmv")
    assert gmv["delta"][0] == pytest.approx(diff.mean())
    assert gmv["ci_low"][0] <= gmv["delta"][0] <= gmv["ci_high"][0]
    one_run = out / "runs" / "scenario=baseline" / "point=0" / "replicate=0"
    assert "Effects against" not in write_report(one_run).read_text()
    with pytest.raises(ConfigError, match="neither a run directory"):
        write_report(tmp_path)


def test_a_sweep_made_with_a_relative_out_can_be_moved_and_reported(tmp_path):
    """Issue 32: a sweep made with a relative --out could not be reported from another directory,
    or once moved ("rel/runs/.../manifest.json cannot be read ... the run is damaged")."""
    made_in = tmp_path / "here"
    made_in.mkdir()
    path = sweep_file(tmp_path)
    cli = [sys.executable, "-m", "weishang"]
    subprocess.run([*cli, "sweep", str(path), "--out", "rel"], cwd=made_in, check=True, capture_output=True)
    runs = pl.read_parquet(made_in / "rel" / "runs.parquet")
    assert runs["run_dir"].str.starts_with("runs/scenario=").all()
    moved = tmp_path / "elsewhere" / "sweep"
    moved.parent.mkdir()
    (made_in / "rel").rename(moved)
    report = subprocess.run([*cli, "report", "sweep"], cwd=moved.parent, capture_output=True, text=True)
    assert report.returncode == 0 and (moved / "report" / "report.md").is_file(), report.stderr
    resumed = subprocess.run([*cli, "sweep", str(path), "--out", str(moved), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0 and "0 runs completed, 0 failed, 6 already complete" in resumed.stdout, resumed.stderr


def test_a_run_another_process_makes_is_recorded_and_the_sweep_carries_on(tmp_path):
    """An array element holds run 1 while a whole sweep runs over the same folder: the sweep
    records run 1 as failed (naming the other process) and makes the others."""
    from weishang.model.study.sweep import claim_run

    sweep, out = load_sweep(sweep_file(tmp_path)), tmp_path / "out"
    element = claim_run(sweep.runs[1], out)
    run_sweep(sweep, out)
    element.release()
    runs = pl.read_parquet(out / "runs.parquet").sort("run_id")
    assert runs["status"].to_list() == ["complete", "failed", *["complete"] * 4]
    assert "another process" in runs["error"][1]


def test_a_report_that_fails_leaves_the_older_one_whole(tmp_path):
    """Issue 32: a truncated risk_curve part gave a polars ComputeError and left a half-written
    report/ beside an older report.md; a baseline without curve rows gave a TypeError; DIR/report
    being a file gave a FileExistsError."""
    from weishang.model.recorder import RunDirectoryError
    from weishang.model.study.report import write_report

    out = tmp_path / "out"
    run_sweep(load_sweep(sweep_file(tmp_path)), out)
    report = write_report(out)
    before = {p.name: p.read_bytes() for p in report.parent.iterdir()}
    parts = sorted((out / "risk_curve").rglob("*.parquet"))
    assert parts and "risk engine's trade-off" in report.read_text()
    whole = parts[-1].read_bytes()
    parts[-1].write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RunDirectoryError, match="missing or damaged") as error:
        write_report(out)
    assert "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in report.parent.iterdir()} == before  # the older report, untouched
    assert not [p for p in out.iterdir() if p.name.startswith(".report")]
    parts[-1].write_bytes(whole)
    for part in (out / "risk_curve" / "scenario=baseline").rglob("*.parquet"):
        part.unlink()
    assert "no risk_curve rows" in write_report(out).read_text()
    # interrupted between its two renames: the older report goes back in place
    import pathlib

    shown = (out / "report" / "report.md").read_text()
    rename = pathlib.Path.rename

    def interrupted(self, target):
        if self.name.startswith(".report.partial"):
            raise KeyboardInterrupt
        return rename(self, target)

    pathlib.Path.rename = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            write_report(out)
    finally:
        pathlib.Path.rename = rename
    assert (out / "report" / "report.md").read_text() == shown
    assert not [p for p in out.iterdir() if p.name.startswith(".report")]
    run = out / "runs" / "scenario=baseline" / "point=0" / "replicate=0"
    (run / "report").write_text("not a folder")
    with pytest.raises(RunDirectoryError, match="is not a folder"):
        write_report(run)


def test_report_answers_a_known_question_per_grid_point(tmp_path):
    # issue 17: a lever with no effect (how long a human review takes changes no sale) and one with
    # a large one (friends buy twice as often), on a grid of two points, three replicates each
    from weishang.model.study.report import write_report

    (tmp_path / "no_effect.toml").write_text('[run]\nname = "no_effect"\n[governance]\nhuman_review_minutes = 50.0\n')
    (tmp_path / "large.toml").write_text('[run]\nname = "large"\n[cascade]\np_buy_friend = 0.6\n')
    (tmp_path / "base.toml").write_text('[run]\nname = "baseline"\n')
    path = tmp_path / "known.toml"
    path.write_text('[sweep]\nscenarios = ["base.toml", "no_effect.toml", "large.toml"]\nreplicates = 3\n'
                    '[set]\npopulation.n_users = 4000\n"population.n_cities" = 4\n"run.n_ticks" = 6\n'
                    '"run.backend" = "numpy"\n"merchants.post_rate" = 0.6\n'
                    '[grid]\n"cascade.p_view_friend" = [0.1, 0.5]\n')
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out)
    write_report(out)
    effects = pl.read_parquet(out / "report" / "effects.parquet").filter(pl.col("outcome") == "gmv")
    assert effects.height == 4 and (effects["replicates"] == 3).all()  # per point: never pooled
    zero = effects.filter(pl.col("scenario") == "no_effect")
    assert (zero["ci_low"] <= 0).all() and (zero["ci_high"] >= 0).all()
    large = effects.filter(pl.col("scenario") == "large")
    assert (large["ci_low"] > 0).all() and (large["relative_low"] > 0.2).all()
    outcomes = pl.read_parquet(out / "report" / "outcomes.parquet")
    assert set(outcomes["point"]) == {0, 1} and (outcomes["replicates"] == 3).all()
    assert (outcomes.filter(pl.col("ci_low").is_not_null())["ci_low"] >= 0).all()  # non-negative figures
    assert (out / "report" / "along_grid.png").stat().st_size > 1000


def test_a_sweep_is_one_dataset_per_table_for_every_reader(tmp_path):
    import pandas as pd
    import pyarrow.dataset as ds

    path = sweep_file(tmp_path, extra='[grid]\n"cascade.p_view_friend" = [0.1, 0.3]\n', scenarios=("baseline.toml",))
    out = tmp_path / "out"
    run_sweep(load_sweep(path, ["population.n_users=3000", "run.n_ticks=2"]), out)  # --set shrinks the sweep
    expected = 2 * 3 * 2  # points x replicates x ticks
    readers = {
        "pandas": lambda: pd.read_parquet(out / "ticks"),
        "polars": lambda: pl.read_parquet(out / "ticks", hive_partitioning=True),
        "duckdb": lambda: duckdb.sql(f"select * from read_parquet('{out}/ticks/**/*.parquet', "
                                     f"hive_partitioning=true)").df(),
        "pyarrow": lambda: ds.dataset(out / "ticks", format="parquet", partitioning="hive").to_table(),
    }
    for name, read in readers.items():
        table = read()
        assert len(table) == expected and {"scenario", "point", "replicate", "gmv"} <= set(
            table.column_names if hasattr(table, "column_names") else table.columns), name
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.schema["param.cascade.p_view_friend"] == pl.Float64 and runs["error"].is_null().all()
    for outcome in ("gmv", "orders", "exits", "fraud_intercepted", "false_positives", "official_share_of_value",
                    "compliant_survival_per_year", "gmv_moments"):
        assert runs.schema[outcome].is_numeric(), outcome
    manifest = json.loads((out / runs["run_dir"][0] / "manifest.json").read_text())  # run_dir: relative to the sweep
    assert manifest["config"]["population"]["n_users"] == 3000 and "tables" in manifest


def test_dask_local_cluster_gives_identical_results(tmp_path):
    distributed = pytest.importorskip("dask.distributed")

    sweep = load_sweep(sweep_file(tmp_path))
    local, on_dask = tmp_path / "local", tmp_path / "dask"
    run_sweep(sweep, local, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_sweep(sweep, on_dask, scheduler=cluster.scheduler_address)
        # an array element sent to Dask: it holds its run's lock, and the worker runs it under that claim
        run_sweep(sweep, tmp_path / "element", task_index=2, scheduler=cluster.scheduler_address)
    assert (pl.read_parquet(on_dask / "runs.parquet")["status"] == "complete").all()
    element = pl.read_parquet(tmp_path / "element" / "runs.parquet")
    assert element.filter(pl.col("status") == "complete")["run_id"].to_list() == [2]
    for spec in sweep.runs:
        for table in ("ticks", "merchants", "cascades"):
            part = f"{table}/scenario={spec.scenario}/point={spec.point}/replicate={spec.replicate}/part-0.parquet"
            a, b = pl.read_parquet(local / part), pl.read_parquet(on_dask / part)
            if "seconds" in a.columns:
                a, b = a.drop("seconds"), b.drop("seconds")
            assert a.equals(b), (spec.index, table)


def test_latin_hypercube_samples(tmp_path):
    path = sweep_file(tmp_path, extra='[samples]\nn = 5\nseed = 3\n"cascade.trust_stranger" = [0.05, 0.3]\n'
                                      '"cascade.p_view_friend" = [0.1, 0.3]\n', scenarios=("baseline.toml",))
    sweep = load_sweep(path)
    points = {r.point: r.params for r in sweep.runs}
    assert len(points) == 5 and len(sweep.runs) == 15
    trust = sorted(p["cascade.trust_stranger"] for p in points.values())
    # a Latin hypercube puts exactly one sample in each fifth of every range
    assert [int((t - 0.05) / 0.25 * 5) for t in trust] == [0, 1, 2, 3, 4]
    assert load_sweep(path).runs == sweep.runs  # seeded: the same samples every time


def test_forty_runs_survive_a_killed_worker(tmp_path):
    # a worker SIGKILLed mid-sweep: every run is accounted for, at most the worker's two lost to it
    path = tmp_path / "load.toml"
    path.write_text(f"""
[sweep]
scenarios = ["{EXPERIMENTS / 'baseline.toml'}"]
replicates = 40
[set]
"population.n_users" = 600
"population.n_cities" = 2
"run.n_ticks" = 2
"run.backend" = "numpy"
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def workers():
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == proc.pid and b"spawn_main" in cmdline:
                pids.append(int(stat.parent.name))
        return pids

    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "status").glob("*.json"))) < 5:
        time.sleep(0.1)
    victims = workers()
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    _stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 40
    assert set(runs["status"]) <= {"complete", "failed"}  # every run accounted for: none pending or lost
    assert (runs["status"] == "complete").sum() >= 38


def test_resume_after_the_sweep_file_changed_refuses_naming_the_runs(tmp_path):
    # issue 16: a run's identity is its config's digest, not its directory's name
    grid = '[grid]\n"cascade.p_view_friend" = {}\n'
    path = sweep_file(tmp_path, extra=grid.format("[0.2, 0.3]"), scenarios=("baseline.toml",))
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out)
    runs = pl.read_parquet(out / "runs.parquet")
    assert (runs["status"] == "complete").all() and runs["param.cascade.p_view_friend"].to_list()[:4] == [0.2] * 3 + [0.3]
    path.write_text(path.read_text().replace("[0.2, 0.3]", "[0.9, 0.3, 0.05]"))
    edited = load_sweep(path)
    with pytest.raises(ConfigError, match=r"another version of the sweep file or other --set values: run 0 \(baseline, point 0, replicate 0\)"):
        run_sweep(edited, out)
    cli = subprocess.run([sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out), "--resume"],
                         capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "another version of the sweep file" in cli.stderr
    # the runs table is still the runs' own account: point 0 used 0.2
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.filter(pl.col("point") == 0)["param.cascade.p_view_friend"].to_list() == [0.2] * 3


def test_a_damaged_published_run_is_made_again_on_resume(tmp_path):
    path = sweep_file(tmp_path, scenarios=("baseline.toml",))
    out = tmp_path / "out"
    sweep = load_sweep(path)
    run_sweep(sweep, out)
    victim = out / "ticks" / "scenario=baseline" / "point=0" / "replicate=1" / "part-0.parquet"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated by a full disk or a careless copy
    from weishang.model.study.sweep import run_state

    assert run_state(sweep.runs[1], out) == "damaged"
    redone = run_sweep(sweep, out)
    assert [r["run_id"] for r in redone] == [1] and run_state(sweep.runs[1], out) == "complete"


def test_sweep_limits_are_checked_before_anything_is_written(tmp_path):
    values = ", ".join(f"{0.1 + i * 1e-4:.4f}" for i in range(400))  # 400 distinct values a key
    huge = sweep_file(tmp_path, extra=f'[grid]\n"cascade.p_view_friend" = [{values}]\n'
                      f'"cascade.p_buy_friend" = [{values}]\n', scenarios=("baseline.toml",))
    started = time.time()
    with pytest.raises(ConfigError, match="480,000 runs .* at most 100,000"):
        load_sweep(huge)
    assert time.time() - started < 5
    for bad, message in [('base_seed = 18446744073709551616', "from 0 to 2\\*\\*63 - 1"),
                         ('[samples]\nn = 2\n"cascade.p_view_friend" = [nan, 0.3]', "low < high")]:
        text = sweep_file(tmp_path, scenarios=("baseline.toml",)).read_text()
        text = text.replace("base_seed = 7", bad) if "base_seed" in bad else text + bad
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_sweep(tmp_path / "bad.toml")
    sweep = load_sweep(sweep_file(tmp_path, scenarios=("baseline.toml",)))
    with pytest.raises(ConfigError, match="--task-index 99"):
        run_sweep(sweep, tmp_path / "fresh", task_index=99)
    cli = subprocess.run([sys.executable, "-m", "weishang", "sweep", str(tmp_path / "sweep.toml"), "--out",
                          str(tmp_path / "fresh"), "--task-index", "99"], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.startswith("error: --task-index 99") and cli.stderr.count("\n") == 1
    assert not (tmp_path / "fresh").exists()


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig,code,n_workers", [(signal.SIGTERM, 143, 2), (signal.SIGINT, 130, 2),
                                               (signal.SIGTERM, 143, 1)])
def test_a_signalled_sweep_stops_its_workers_and_writes_its_table(tmp_path, sig, code, n_workers):
    path = sweep_file(tmp_path, n_ticks=400)  # runs long enough to be caught in flight
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out),
                             "--workers", str(n_workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "status").glob("*.started")) if (out / "status").exists()
                                         else []) < n_workers:
        time.sleep(0.1)
    time.sleep(1.0)
    workers = _children(proc.pid)
    assert workers or n_workers == 1
    stopped = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and time.time() - stopped < 15, err
    assert err.strip().splitlines()[-1].startswith("error:")  # after the progress bar, one line
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]  # no worker outlives the sweep
    runs = pl.read_parquet(out / "runs.parquet")
    assert (runs["status"] == "interrupted").sum() >= 1 and not (runs["status"] == "failed").any()
    assert not [p for p in (out / "runs").rglob("replicate=*") if not p.name.startswith(".")]  # nothing half-done is visible
    again = subprocess.run([sys.executable, "-m", "weishang", "sweep", str(path), "--out", str(out), "--resume",
                            "--list"], capture_output=True, text=True)
    assert again.returncode == 0


def test_two_sweeps_on_one_out_do_not_race(tmp_path):
    from weishang.model.recorder import OutputLock, RunDirectoryError

    out = tmp_path / "out"
    out.mkdir()
    held = OutputLock(out)
    try:
        with pytest.raises(RunDirectoryError, match="another weishang process is writing"):
            run_sweep(load_sweep(sweep_file(tmp_path, scenarios=("baseline.toml",))), out)
    finally:
        held.release()


def test_a_garbage_runs_table_or_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    from weishang.model.apps.cli import _main

    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.parquet").write_bytes(b"not a parquet file at all")
    assert _main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    path = sweep_file(tmp_path, scenarios=("baseline.toml",))
    assert _main(["sweep", str(path), "--out", str(tmp_path / "d"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --scheduler 'tcp://127.0.0.1:1': cannot reach a Dask scheduler there")


def test_cupy_workers_that_do_not_fit_on_the_device_are_refused_before_anything(tmp_path, capsys, monkeypatch):
    # issue 29: N workers on one GPU, the device's free memory read from the CuPy stand-in
    from tests import strict_device
    from weishang.model import preflight
    from weishang.model.apps.cli import _main
    from weishang.model.config import load_config

    config = load_config(EXPERIMENTS / "baseline.toml", ["population.n_users=4000", "population.n_cities=4"])
    per_worker = preflight.estimate(config, "cupy").device_bytes + preflight.DEVICE_CONTEXT_BYTES
    monkeypatch.setattr(strict_device.xp.cuda.runtime, "memGetInfo", lambda: (3 * per_worker, 141 * preflight.GIB))
    asked = []

    def probe(requested):  # stands in for the spawned child that reads the device
        asked.append(requested)
        return "cupy", strict_device.backend().free_device_bytes()

    monkeypatch.setattr(preflight, "probe_device", probe)
    path = sweep_file(tmp_path, scenarios=("baseline.toml",))  # 3 runs; --backend overrides the file's numpy
    out = tmp_path / "out"
    assert _main(["sweep", str(path), "--out", str(out), "--backend", "cupy", "--workers", "2", "--list"]) == 0
    capsys.readouterr()
    path = sweep_file(tmp_path, scenarios=("baseline.toml", "no_inducement_ban.toml"))  # 6 runs
    assert _main(["sweep", str(path), "--out", str(out), "--backend", "cupy", "--workers", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 4 workers need about ") and err.strip().endswith("use at most 3 workers")
    assert "GiB of device memory" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert asked == ["cupy"] and not out.exists()


def test_workers_are_spawned_and_inherit_no_device_state(tmp_path, monkeypatch):
    # a forked worker would inherit the parent's modules, CuPy's CUDA state among them; a spawned
    # one starts afresh. The stand-in "cupy" here breaks any run whose process can see it.
    import types

    from weishang.model.study import sweep as sweep_module

    assert sweep_module.WORKER_START_METHOD == "spawn"

    def broken_pool():
        raise RuntimeError("a worker reached the parent's CUDA state")

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(get_default_memory_pool=broken_pool,
                                                                   get_default_pinned_memory_pool=broken_pool))
    sweep = load_sweep(sweep_file(tmp_path, scenarios=("baseline.toml",), n_ticks=1), ["population.n_users=2000"])
    sweep = type(sweep)(sweep.name, sweep.runs[:2], sweep.common)  # two runs, one on each worker
    results = run_sweep(sweep, tmp_path / "out", workers=2)
    assert sorted(r["status"] for r in results) == ["complete", "complete"]


def test_a_run_gives_its_device_pool_back(tmp_path, monkeypatch):
    # CuPy's pool keeps freed blocks: a worker would hold its run's peak until it exits
    import types

    freed = []

    class Pool:
        def __init__(self, kind):
            self.kind = kind

        def free_all_blocks(self):
            freed.append(self.kind)

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(get_default_memory_pool=lambda: Pool("device"),
                                                                   get_default_pinned_memory_pool=lambda: Pool("pinned")))
    sweep = load_sweep(sweep_file(tmp_path, scenarios=("baseline.toml",), n_ticks=1), ["population.n_users=2000"])
    run_sweep(sweep, tmp_path / "out", task_index=0)
    assert freed == ["device", "pinned"]


def test_each_cupy_worker_gets_an_even_share_of_the_device(monkeypatch):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from weishang.model.preflight import DEVICE_CONTEXT_BYTES
    from weishang.model.study.sweep import WORKER_START_METHOD, _worker_start, device_share

    assert device_share(40 * 2**30, 4) == 10 * 2**30 - DEVICE_CONTEXT_BYTES
    # the worker's CuPy reads its pool limit from the environment when it is first imported
    monkeypatch.delenv("CUPY_GPU_MEMORY_LIMIT", raising=False)
    with ProcessPoolExecutor(1, mp_context=mp.get_context(WORKER_START_METHOD), initializer=_worker_start,
                             initargs=(os.getpid(), 123 * 2**20)) as pool:
        assert pool.submit(os.getenv, "CUPY_GPU_MEMORY_LIMIT").result() == str(123 * 2**20)
    monkeypatch.setenv("CUPY_GPU_MEMORY_LIMIT", "50%")  # the user's own limit wins
    with ProcessPoolExecutor(1, mp_context=mp.get_context(WORKER_START_METHOD), initializer=_worker_start,
                             initargs=(os.getpid(), 123 * 2**20)) as pool:
        assert pool.submit(os.getenv, "CUPY_GPU_MEMORY_LIMIT").result() == "50%"
