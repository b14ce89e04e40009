"""One experiment model (issue 31): a sweep's Latin hypercube, a sensitivity screen, an ensemble
and a calibration stage read their uncertain parameters with one function
(:func:`weishang.model.study.space.parameter_box`), so a bad box is refused alike in each: before
any run, in one line naming the spec's own table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from weishang.model.config import ConfigError
from weishang.model.study.calibrate import load_spec
from weishang.model.study.ensemble import load_ensemble_spec
from weishang.model.study.sensitivity import load_screen
from weishang.model.study.space import parameter_box
from weishang.model.study.sweep import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
OTHER = '"cascade.p_buy_friend" = [0.2, 0.3]\n'  # a good second parameter (a screen needs two)


def _sweep(tmp_path: Path, box: str) -> None:
    (tmp_path / "s.toml").write_text(f'[sweep]\nscenarios = ["{EXPERIMENTS / "baseline.toml"}"]\n'
                                     f'[samples]\nn = 4\n{box}{OTHER}')
    load_sweep(tmp_path / "s.toml")


def _screen(tmp_path: Path, box: str) -> None:
    (tmp_path / "p.toml").write_text(f'[sensitivity]\nmethod = "morris"\n[parameters]\n{box}{OTHER}')
    load_screen(tmp_path / "p.toml")


def _ensemble(tmp_path: Path, box: str) -> None:
    (tmp_path / "e.toml").write_text(f"[ensemble]\nsamples = 4\n[ensemble.params]\n{box}{OTHER}")
    load_ensemble_spec(tmp_path / "e.toml")


def _stage(tmp_path: Path, box: str) -> None:
    (tmp_path / "c.toml").write_text(f'[[stage]]\nname = "x"\n[stage.params]\n{box}{OTHER}')
    load_spec(tmp_path / "c.toml")


LOADERS = {"samples": _sweep, "parameters": _screen, "ensemble.params": _ensemble, "stage 'x' params": _stage}
BAD = {
    '"cascade.nope" = [0.1, 0.2]\n': "not a config key",
    '"cascade.p_view_friend" = [0.3, 0.2]\n': "low < high",
    '"cascade.p_view_friend" = [0.1]\n': "low < high",
    '"cascade.p_view_friend" = ["a", 0.2]\n': "low < high",
    '"cascade.p_view_friend" = [0.1, nan]\n': "low < high",
    '"cascade.p_view_friend" = [0.1, 7.0]\n': "less than or equal to 1",  # past the field's bound
}


@pytest.mark.parametrize("where", LOADERS)
@pytest.mark.parametrize("box", BAD)
def test_every_spec_refuses_a_bad_box_alike(tmp_path, where, box):
    with pytest.raises(ConfigError, match=BAD[box]) as error:
        LOADERS[where](tmp_path, box)
    message = str(error.value)
    assert "\n" not in message and message.startswith(where)


def test_runs_that_share_a_population_refuse_a_key_that_shapes_it(tmp_path):
    box = '"community.groups_per_merchant" = [0.5, 2.0]\n'
    for shared in (_ensemble, _stage):
        with pytest.raises(ConfigError, match="would change the population"):
            shared(tmp_path, box)
    _sweep(tmp_path, box)  # a sweep builds each run's own population: allowed


def test_a_whole_number_key_is_drawn_whole():
    boxes = parameter_box({"cascade.n_stranger_views": [10, 20], "cascade.p_buy_friend": [0.2, 0.3]}, "samples")
    assert boxes["cascade.n_stranger_views"].integer and not boxes["cascade.p_buy_friend"].integer
    with pytest.raises(ConfigError, match="whole-number key"):
        parameter_box({"cascade.n_stranger_views": [10, 20]}, "ensemble.params", integers=False)


def test_a_key_is_checked_as_the_config_spells_it():
    # "population__n_users" is population.n_users: runs sharing a population refuse it however written
    with pytest.raises(ConfigError, match="would change the population"):
        parameter_box({"population__n_users": [1000, 2000]}, "ensemble.params", shared_population=True)
    # an optional whole number (None: derived from the users) is drawn whole too
    assert parameter_box({"merchants.n_merchants": [50, 60]}, "samples")["merchants.n_merchants"].integer


def test_a_calibration_stage_draws_a_whole_number_key_whole(tmp_path):
    (tmp_path / "c.toml").write_text('[[stage]]\nname = "x"\n[stage.params]\n"cascade.n_stranger_views" = [10, 20]\n'
                                     + OTHER)
    stage = load_spec(tmp_path / "c.toml").stages[0]
    assert stage.integer == {"cascade.n_stranger_views"}
