"""Run directories: complete, readable by DuckDB and polars, deterministic, never half-published."""

import hashlib
import json

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from weishang.model.commerce import CommerceModel
from weishang.model.config import load_config
from weishang.model.recorder import read_config_metadata
from weishang.model.run import run_scenario


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):


    config = load_config(overrides=["population.n_users=5000", "population.n_cities=10", "run.n_ticks=6",
                                    'run.backend="numpy"', "output.row_group_ticks=4"])
    return run_scenario(config, tmp_path_factory.mktemp("runs") / "r1").run_dir


def test_duckdb_and_polars_read_the_run(run_dir):
    ticks = duckdb.sql(f"select * from read_parquet('{run_dir / 'ticks.parquet'}') order by tick").df()
    assert list(ticks["tick"]) == list(range(6))
    merchants = pl.read_parquet(run_dir / "merchants.parquet")
    n_merchants = json.loads((run_dir / "manifest.json").read_text())["population"]["merchants"]
    assert merchants.height == 6 * n_merchants
    # per-merchant GMV adds up to the tick's GMV (both from the same integer fen sums)
    by_tick = merchants.group_by("tick").agg(pl.col("gmv").sum()).sort("tick")["gmv"].to_numpy()
    assert np.allclose(by_tick, ticks["gmv"].to_numpy())
    cascades = duckdb.sql(f"select sum(buys_l1 + buys_l2 + buys_l3) as n from '{run_dir / 'cascades.parquet'}'").fetchall()[0][0]
    assert cascades == ticks["n_orders"].sum() > 0


def test_streamed_row_groups_and_config_metadata(run_dir):
    meta = pq.ParquetFile(run_dir / "ticks.parquet").metadata
    assert meta.num_row_groups == 2  # 6 ticks in row groups of 4 ticks
    assert read_config_metadata(run_dir / "merchants.parquet")["population"]["n_users"] == 5000


def test_manifest_records_what_ran(run_dir):
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "complete" and m["seed"] == 1
    assert m["backend"]["name"] == "numpy"
    assert set(m["versions"]) >= {"weishang", "numpy", "mesa", "pyarrow", "python"}
    assert set(m["timings"]["phase_seconds"]) >= {"posting", "cascade", "payments"}


def table_digest(directory):
    digest = hashlib.sha256()
    for name in ("ticks", "merchants", "cascades"):
        table = pq.read_table(directory / f"{name}.parquet")
        if "seconds" in table.column_names:
            table = table.drop(["seconds"])  # wall time is the one thing allowed to differ
        digest.update(str(table.to_pydict()).encode())
    return digest.hexdigest()


def interrupted_run(out, n_ticks, every, stop_at):
    """A small checkpointed run interrupted (Ctrl-C) after ``stop_at`` ticks; returns its config."""
    config = load_config(overrides=["population.n_users=3000", "population.n_cities=3", f"run.n_ticks={n_ticks}",
                                    'run.backend="numpy"', f"output.checkpoint_every={every}"])

    def stop(done, total):
        if done == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scenario(config, out, on_tick=stop)
    return config


def test_same_config_and_seed_identical_tables(small_config, tmp_path):
    a = run_scenario(small_config, tmp_path / "a").run_dir
    b = run_scenario(small_config, tmp_path / "b").run_dir
    assert table_digest(a) == table_digest(b)
    other = small_config.model_copy(update={"run": small_config.run.model_copy(update={"seed": 2})})
    c = run_scenario(other, tmp_path / "c").run_dir
    assert table_digest(c) != table_digest(a)


def test_interrupted_run_is_not_published(small_config, tmp_path):
    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scenario(small_config, tmp_path / "cut", on_tick=interrupt)
    assert not (tmp_path / "cut").exists()
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".cut.partial")]
    assert len(hidden) == 1
    assert json.loads((hidden[0] / "manifest.json").read_text())["status"] == "interrupted"


def test_tick_plan_is_ordered_timed_and_mesa_driven(small_config):
    model = CommerceModel(small_config)
    names = [m.name for m in model.plan.mechanisms]
    assert names[0] == "posting" and names.index("cascade") < names.index("payments")
    model.step()
    model.step()
    assert model.steps == 2 and model.tick == 1
    assert set(model.plan.seconds) == set(names)
    assert {m.engine for m in model.plan.mechanisms} == {"mesa", "arrays", "kernel"}


@pytest.mark.gpu
def test_cupy_run_identical_to_numpy(small_config, tmp_path, gpu_backend):
    on_gpu = small_config.model_copy(update={"run": small_config.run.model_copy(update={"backend": "cupy"})})
    a = run_scenario(small_config, tmp_path / "cpu").run_dir
    b = run_scenario(on_gpu, tmp_path / "gpu").run_dir
    assert table_digest(a) == table_digest(b)


@pytest.mark.gpu
def test_cupy_run_through_every_fused_kernel_identical_to_numpy(tmp_path, gpu_backend):
    # past the first refit (tick 7) with video posts, the transaction log and the linear rule's
    # curve: every kernel of weishang.kernels.fused runs on CuPy at least once. The learned
    # scorer's weights are rounded to float32, so a refit agrees unless a weight sits on a
    # float32 rounding boundary (odds near 1e-7 a fit)
    from weishang.kernels import fused

    config = load_config(overrides=["population.n_users=20000", "run.n_ticks=9", 'run.backend="numpy"',
                                    "channels.share_video_account=0.3", "channels.share_search=0.061202",
                                    "merchants.post_rate=0.5", 'output.transactions="full"'])
    a = run_scenario(config, tmp_path / "cpu").run_dir
    on_gpu = config.model_copy(update={"run": config.run.model_copy(update={"backend": "cupy"})})
    compiled_before = {name for _, name in fused._COMPILED}
    b = run_scenario(on_gpu, tmp_path / "gpu").run_dir
    assert table_digest(a) == table_digest(b)
    compiled = {name for _, name in fused._COMPILED} | compiled_before
    assert compiled >= set(fused.KERNELS) - {"weishang_rng_bits"}, set(fused.KERNELS) - compiled


def test_python_api_returns_arrow_tables(small_config, tmp_path):
    result = run_scenario(small_config, tmp_path / "api")
    ticks = result.table("ticks")
    assert ticks.num_rows == small_config.run.n_ticks and "gmv" in ticks.column_names
    assert result.table("cascades").num_rows == result.summary["posts"]
    # a table the run did not keep says how to get it; a name that is no table says which are
    with pytest.raises(FileNotFoundError, match="output.transactions"):
        result.table("transactions")
    with pytest.raises(ValueError, match="ticks, merchants"):
        result.table("tick")


def test_damaged_or_old_results_give_a_clear_error(small_config, tmp_path):
    from weishang.model.recorder import RunDirectoryError, read_manifest
    from weishang.model.study.report import write_report

    run = run_scenario(small_config, tmp_path / "r").run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(RunDirectoryError, match="results format 0"):
        write_report(run)
    (run / "manifest.json").write_text('{"format_version": 1, "stat')  # truncated
    with pytest.raises(RunDirectoryError, match="cannot be read"):
        read_manifest(run)


def test_sigkill_leaves_no_visible_run(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "weishang", "run", "--set", "population.n_users=20000",
                             "--set", "run.n_ticks=100000", "--backend", "numpy", "--out", str(tmp_path / "k")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".k.partial") for p in tmp_path.iterdir()):
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k").exists()  # a reader listing the folder sees no run
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())


def test_checkpoint_resume_gives_the_uninterrupted_result(small_config, tmp_path):
    config = load_config(overrides=["population.n_users=5000", "population.n_cities=10", "run.n_ticks=9",
                                    'run.backend="numpy"', "output.checkpoint_every=3", "output.row_group_ticks=2",
                                    'output.transactions="full"',
                                    # adapt (and split groups) on both sides of the checkpoint
                                    "merchants.adapt_every=2", "platform.group_downweight=0.0"])
    whole = run_scenario(config, tmp_path / "whole").run_dir
    split = pl.read_parquet(whole / "ticks.parquet").filter(pl.col("tick") < 6)["n_groups_split"].sum()
    assert split > 0  # group parts are part of the state the checkpoint must carry

    def stop_after_seven(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scenario(config, tmp_path / "cut", on_tick=stop_after_seven)
    resumed = run_scenario(config, tmp_path / "cut", resume=True)
    assert resumed.manifest["resumed_from_tick"] == 5  # the checkpoint after tick index 5 (6 ticks done)
    assert table_digest(resumed.run_dir) == table_digest(whole)
    import pyarrow.dataset as ds
    a = ds.dataset(whole / "transactions").to_table().sort_by("key")
    b = ds.dataset(resumed.run_dir / "transactions").to_table().sort_by("key")
    assert a.equals(b)
    timing = "mesa_share_of_tick_time"  # wall-clock, the one thing allowed to differ
    again = run_scenario(config, tmp_path / "again").summary
    assert {k: v for k, v in resumed.summary.items() if k != timing} == {k: v for k, v in again.items() if k != timing}
    assert not (resumed.run_dir / "checkpoint.pkl").exists()


def test_resume_errors(small_config, tmp_path):
    from weishang.model.checkpoint import CHECKPOINT
    from weishang.model.recorder import RunDirectoryError

    with pytest.raises(RunDirectoryError, match="nothing to resume"):
        run_scenario(small_config, tmp_path / "none", resume=True)
    config = interrupted_run(tmp_path / "r", n_ticks=6, every=2, stop_at=3)
    other = config.model_copy(update={"run": config.run.model_copy(update={"seed": 99})})
    with pytest.raises(RunDirectoryError, match="different config"):
        run_scenario(other, tmp_path / "r", resume=True)
    partial = next(tmp_path.glob(".r.partial-*"))
    data = (partial / CHECKPOINT).read_bytes()
    (partial / CHECKPOINT).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(RunDirectoryError, match="damaged"):
        run_scenario(config, tmp_path / "r", resume=True)


def test_resume_after_sigkill_gives_the_uninterrupted_tables(tmp_path):
    # issue 16: a hard kill leaves the open segment without a footer; the checkpoint's segments
    # are whole files, so resuming from it gives the uninterrupted run's tables
    import signal
    import subprocess
    import sys
    import time

    args = ["--set", "population.n_users=20000", "--set", "run.n_ticks=30", "--set", 'output.transactions="sample"',
            "--backend", "numpy", "--checkpoint-every", "4"]
    whole = subprocess.run([sys.executable, "-m", "weishang", "run", *args, "--out", str(tmp_path / "whole")],
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen([sys.executable, "-m", "weishang", "run", *args, "--out", str(tmp_path / "cut")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".cut.partial-*/checkpoint.pkl")):
        time.sleep(0.05)
    time.sleep(0.3)  # into the next segment
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut").exists() and list(tmp_path.glob(".cut.partial-*/checkpoint.pkl"))
    resumed = subprocess.run([sys.executable, "-m", "weishang", "run", *args, "--out", str(tmp_path / "cut"),
                              "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert table_digest(tmp_path / "cut") == table_digest(tmp_path / "whole")
    import pyarrow.dataset as ds
    assert ds.dataset(tmp_path / "cut" / "transactions").to_table().sort_by("key").equals(
        ds.dataset(tmp_path / "whole" / "transactions").to_table().sort_by("key"))
    # validation is written before publishing, from exact sums: identical to the last bit
    assert pq.read_table(tmp_path / "cut" / "validation.parquet").equals(
        pq.read_table(tmp_path / "whole" / "validation.parquet"))


def test_resume_refuses_a_partial_run_whose_recorded_rows_changed(small_config, tmp_path):
    from weishang.model.recorder import RunDirectoryError

    config = interrupted_run(tmp_path / "r", n_ticks=8, every=3, stop_at=7)
    partial = next(tmp_path.glob(".r.partial-*"))
    segment = next((partial / ".parts" / "ticks").glob("part-*.parquet"))
    segment.unlink()  # a careless clean-up between the interruption and the resume
    with pytest.raises(RunDirectoryError, match="missing or changed: the partial run is damaged"):
        run_scenario(config, tmp_path / "r", resume=True)
    assert not (tmp_path / "r").exists()


def test_a_second_process_on_the_same_out_refuses_at_once(small_config, tmp_path):
    from weishang.model.recorder import OutputLock, RunDirectoryError

    held = OutputLock(tmp_path / "r")
    try:
        with pytest.raises(RunDirectoryError, match="another weishang process is writing"):
            run_scenario(small_config, tmp_path / "r")
    finally:
        held.release()
    assert run_scenario(small_config, tmp_path / "r").run_dir == tmp_path / "r"
    assert not list(tmp_path.glob(".*.lock"))  # released and removed when the run ends


def test_damaged_tables_and_checkpoints_are_one_line(small_config, tmp_path, capsys):
    import pickle

    from weishang.model import checkpoint
    from weishang.model.apps.cli import _main
    from weishang.model.recorder import RunDirectoryError

    run = run_scenario(small_config, tmp_path / "r").run_dir
    (run / "cascades.parquet").unlink()
    (run / "ticks.parquet").write_bytes(b"PAR1 cut short")
    for command in (["validate", str(run)], ["report", str(run)]):
        assert _main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "damaged" in err, err
    # a checkpoint whose model state lacks a declared part is refused before anything runs
    config = interrupted_run(tmp_path / "c", n_ticks=6, every=2, stop_at=3)
    path = next(tmp_path.glob(".c.partial-*")) / checkpoint.CHECKPOINT
    payload = pickle.loads(path.read_bytes())
    del payload["model"]["mechanisms"]["risk"]["state"]
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(RunDirectoryError, match="model's state is incomplete"):
        run_scenario(config, tmp_path / "c", resume=True)
