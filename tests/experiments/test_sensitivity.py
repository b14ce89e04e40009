"""weishang sensitivity: a global screen on the sweep machinery (issue 18)."""

import polars as pl
import pytest

from weishang.model.config import ConfigError
from weishang.model.study.sensitivity import analyze, load_screen
from weishang.model.study.sweep import run_sweep


def spec(tmp_path, method="morris", extra=""):
    path = tmp_path / "screen.toml"
    path.write_text(f"""
[sensitivity]
method = "{method}"
trajectories = 3
samples = 4
seed = 2
outcomes = ["gmv_cny", "orders"]
{extra}
[set]
population.n_users = 3000
"population.n_cities" = 3
"run.n_ticks" = 4
"run.backend" = "numpy"
"merchants.post_rate" = 0.6
[parameters]
"cascade.p_buy_friend" = [0.05, 0.6]
"governance.human_review_minutes" = [1.0, 60.0]
""")
    return path


def test_morris_screen_ranks_a_lever_that_matters_above_one_that_does_not(tmp_path):
    screen = load_screen(spec(tmp_path))
    assert len(screen.sweep.runs) == 3 * (2 + 1)  # trajectories x (parameters + 1)
    run_sweep(screen.sweep, tmp_path / "out")
    indices = analyze(screen, tmp_path / "out")
    assert set(indices.columns) == {"parameter", "outcome", "mu_star", "mu_star_conf", "mu", "sigma"}
    assert indices.height == 4 and indices.schema["mu_star"] == pl.Float64
    gmv = {r["parameter"]: r["mu_star"] for r in indices.filter(pl.col("outcome") == "gmv_cny").iter_rows(named=True)}
    # how long a human review takes changes no sale: its elementary effects are exactly zero
    assert gmv["cascade.p_buy_friend"] > 0 and gmv["governance.human_review_minutes"] == 0
    samples = pl.read_parquet(tmp_path / "out" / "samples.parquet")
    assert samples.height == 9 and {"cascade.p_buy_friend", "gmv_cny"} <= set(samples.columns)
    assert (tmp_path / "out" / "sensitivity.png").stat().st_size > 1000


@pytest.mark.parametrize("old,new,message", [
    ('method = "morris"', 'method = "fast"', "one of morris, sobol"),
    ('outcomes = ["gmv_cny", "orders"]', 'outcomes = ["gmv"]', "not a run-summary figure"),
    ('"cascade.p_buy_friend" = [0.05, 0.6]', '"cascade.p_buy_friend" = [0.6, 0.05]', "low < high"),
    ('trajectories = 3', 'trajectories = 1', "from 2 to 10000"),
    # issue 32: an unknown key (AttributeError), no outcomes (ran, then divided by zero), a run
    # count refused only after SALib had drawn and warned
    ('"cascade.p_buy_friend" = [0.05, 0.6]', '"cascade.nope" = [0.05, 0.6]', "not a config key"),
    ('outcomes = ["gmv_cny", "orders"]', 'outcomes = []', "a non-empty list"),
    ('outcomes = ["gmv_cny", "orders"]', 'outcomes = "gmv_cny"', "a list of names"),
    ('method = "morris"\ntrajectories = 3\nsamples = 4', 'method = "sobol"\ntrajectories = 3\nsamples = 90000',
     "at most 100,000"),
])
def test_bad_specs_are_one_line(tmp_path, old, new, message):
    (tmp_path / "bad.toml").write_text(spec(tmp_path).read_text().replace(old, new))
    with pytest.raises(ConfigError, match=message):
        load_screen(tmp_path / "bad.toml")


def test_the_analysis_waits_for_every_run(tmp_path):
    with pytest.raises(ConfigError, match="not complete"):
        analyze(load_screen(spec(tmp_path)), tmp_path / "empty")


def test_sobol_indices_have_their_schema(tmp_path):
    screen = load_screen(spec(tmp_path, method="sobol"))
    assert len(screen.sweep.runs) == 4 * (2 + 2)  # samples x (parameters + 2), first order only
    run_sweep(screen.sweep, tmp_path / "out")
    indices = analyze(screen, tmp_path / "out")
    assert set(indices.columns) == {"parameter", "outcome", "S1", "S1_conf", "ST", "ST_conf"}
    st = {r["parameter"]: r["ST"] for r in indices.filter(pl.col("outcome") == "gmv_cny").iter_rows(named=True)}
    assert st["governance.human_review_minutes"] == 0 and st["cascade.p_buy_friend"] > 0


def test_a_screen_too_large_is_refused_before_salib_draws_or_warns(tmp_path):
    import warnings

    bad = spec(tmp_path).read_text().replace('method = "morris"\ntrajectories = 3\nsamples = 4',
                                             'method = "sobol"\ntrajectories = 3\nsamples = 90000')
    (tmp_path / "huge.toml").write_text(bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError, match="360,000 runs"):
            load_screen(tmp_path / "huge.toml")
    assert not caught, [str(w.message) for w in caught]  # SALib's sample-size warning came first (issue 32)
