"""Property-based tests: every invalid input fails cleanly (issue 9).

Whatever the input, loading either succeeds or raises the one user-facing error type of its
layer, with a one-line message; the CLI then exits 2 with one line on stderr and writes nothing.
"""

import os
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weishang.model.apps.cli import main
from weishang.model.config import ConfigError, ScenarioConfig, load_config
from weishang.model.graph_io import GraphInputError, read_edge_list
from weishang.model.study.sweep import load_sweep

SECTIONS = list(ScenarioConfig.model_fields)
KEYS = sorted({k for s in SECTIONS for k in ScenarioConfig.model_fields[s].annotation.model_fields} | {"nope", "n"})
VALUES = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.booleans(),
                   st.text(string.printable, max_size=12), st.lists(st.integers(-5, 10), max_size=4))
TOKENS = st.text(string.ascii_letters + string.digits + "._-=\"[]{} ", max_size=20)
# 60 examples per property in the suite; FUZZ_EXAMPLES=2000 for a longer hunt
FAST = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def toml_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


@FAST
@given(st.lists(st.tuples(st.sampled_from(SECTIONS + ["weather"]), st.sampled_from(KEYS), VALUES), max_size=4))
def test_overrides_load_or_fail_with_one_line(overrides):
    texts = [f"{section}.{key}={toml_literal(value)}" for section, key, value in overrides]
    try:
        load_config(overrides=texts)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("loader", [load_config, load_sweep], ids=["scenario", "sweep"])
@FAST
@given(text=st.text(max_size=200))
def test_toml_files_load_or_fail_with_one_line(tmp_path_factory, loader, text):
    path = tmp_path_factory.mktemp("t") / "file.toml"
    path.write_text(text)
    try:
        loader(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.binary(max_size=300), st.sampled_from([".csv", ".parquet", ".txt"]))
def test_edge_list_files_read_or_fail_with_one_line(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("e") / f"edges{suffix}"
    path.write_bytes(data)
    try:
        read_edge_list(path)
    except GraphInputError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.lists(st.one_of(st.sampled_from(["--set", "--seed", "--backend", "--out", "--bogus", "run.n_ticks=0",
                                           "population.n_users=5", "-1", "cupy", "x.toml"]), TOKENS), max_size=6))
def test_cli_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path_factory, capsys, argv):
    work = tmp_path_factory.mktemp("cli")
    # run.n_ticks=0 is always invalid, so no model is ever built here; whatever else the
    # arguments hold, the outcome must be exit 2, one line, nothing written
    args = ["run", *argv, "--set", "run.n_ticks=0", "--out", str(work / "out")]
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (args, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
    assert list(work.iterdir()) == []


# ---------------------------------------------------------------- issue 16: the second pass

EDGE_CASES = {
    "empty.csv": b"", "header.csv": b"src,dst\n", "floats.csv": b"src,dst\n1.5,2\n3,4\n",
    "nan.csv": b"src,dst\nnan,2\n3,4\n", "strings.csv": b"src,dst\na,b\n", "gzip.csv": b"\x1f\x8b\x08\x00\x00",
    "latin1.csv": "src,dst\n1,2\né,3\n".encode("latin-1"), "one_node.csv": b"src,dst\n1,1\n1,1\n",
    "self_loops.csv": b"src,dst\n1,1\n2,2\n3,3\n", "few_users.csv": b"src,dst\n1,2\n2,3\n3,1\n",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_bad_edge_lists_fail_before_anything_is_printed_or_created(tmp_path, capsys, name):
    (tmp_path / name).write_bytes(EDGE_CASES[name])
    out = tmp_path / "runs" / "r"
    try:
        main(["run", "--set", f'population.edge_list="{tmp_path / name}"', "--set", "merchants.n_merchants=5",
              "--out", str(out)])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # no header, no progress bar, no hidden partial directory


@FAST
@given(st.binary(max_size=300))
def test_edge_list_bytes_give_a_graph_or_one_line(tmp_path_factory, data):
    from weishang.model.graph_io import with_edge_list

    path = tmp_path_factory.mktemp("e") / "edges.csv"
    path.write_bytes(data)
    config = load_config(overrides=[f'population.edge_list="{path}"', "merchants.n_merchants=2"])
    try:
        config, (indptr, indices) = with_edge_list(config)
    except GraphInputError as exc:
        assert "\n" not in str(exc)
    else:
        assert config.population.n_users == indptr.shape[0] - 1 and indices.shape[0] > 0


NUMERIC = [(section, name) for section in SECTIONS
           for name, field in ScenarioConfig.model_fields[section].annotation.model_fields.items()
           if field.annotation in (int, float)]


@FAST
@given(st.sampled_from(NUMERIC), st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300,
                                                            -1e300, 10**30, -10**30]),
                                           st.floats(allow_nan=True, allow_infinity=True)))
def test_every_numeric_field_is_finite_and_bounded(field, value):
    section, name = field
    try:
        config = load_config(overrides=[f"{section}.{name}={toml_literal(value)}"])
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        accepted = getattr(getattr(config, section), name)
        assert np.isfinite(accepted) and abs(accepted) <= 2**63


@FAST
@given(st.sampled_from(["/proc/weishang/out", "FILE/below", "x" * 300, "/" + "y/" * 2100, "ok/\x00nul"]))
def test_unusable_output_paths_are_one_line(tmp_path_factory, capsys, path):
    work = tmp_path_factory.mktemp("p")
    (work / "FILE").write_text("a regular file")
    target = path if path.startswith("/") else str(work / path)
    for argv in (["run", "--set", "population.n_users=2000", "--out", target],
                 ["run", "--set", "population.n_users=2000", "--set", f'output.dir="{target}"']):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (argv, err)


def test_control_characters_in_input_are_escaped_not_cut(capsys):
    try:
        main(["run", "--set", "popu\nlation.n_users=5"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "popu\\nlation" in err


def test_deeply_nested_toml_is_one_line(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests tables or arrays too deeply"):
        load_config(path)


@settings(max_examples=int(os.environ.get("FUZZ_SIGNAL_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop_at=st.integers(1, 8), every=st.integers(1, 4))
def test_interrupted_at_any_tick_and_resumed_equals_the_whole_run(tmp_path_factory, stop_at, every):
    from tests.model.test_run import table_digest
    from weishang.model.run import run_scenario

    work = tmp_path_factory.mktemp("sig")
    config = load_config(overrides=["population.n_users=3000", "population.n_cities=3", "run.n_ticks=9",
                                    'run.backend="numpy"', f"output.checkpoint_every={every}",
                                    "output.row_group_ticks=2", "merchants.adapt_every=2"])
    whole = run_scenario(config, work / "whole").run_dir

    def interrupt(done, total):
        if done == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scenario(config, work / "cut", on_tick=interrupt)
    if stop_at < every:  # no checkpoint yet: the run starts over
        resumed = run_scenario(config, work / "again").run_dir
    else:
        resumed = run_scenario(config, work / "cut", resume=True).run_dir
    assert table_digest(resumed) == table_digest(whole)
