"""Every experiment scenario file is valid and runs (few ticks, small N)."""

from pathlib import Path

import pytest

from weishang.model.config import load_config
from weishang.model.run import run_scenario

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SMALL = ["population.n_users=3000", "population.n_cities=3", "run.n_ticks=2", 'run.backend="numpy"',
         "merchants.post_rate=0.6"]  # enough posts in two ticks to exercise every phase


@pytest.mark.parametrize("scenario", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_scenario_file_runs(scenario, tmp_path):
    config = load_config(scenario, SMALL)
    assert config.run.name == scenario.stem  # each file names its runs after itself
    result = run_scenario(config, tmp_path / "run")
    assert result.manifest["status"] == "complete" and result.summary["posts"] > 0
