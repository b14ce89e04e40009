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

from weishang.model.cli import main
from weishang.model.config import ConfigError, ScenarioConfig, load_config
from weishang.model.graph_io import GraphInputError, read_edge_list
from weishang.model.sweep import load_sweep

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
