"""Small worlds say which figures they cannot carry (issue 30): a 20k-user, 30-day run reported
fraud loss of the order of its GMV, and nothing said so."""

from __future__ import annotations

from weishang.model.config import load_config
from weishang.model.study.small_world import dense_cities, manifest_notes, size_notes


def notes(*overrides: str) -> list[str]:
    return size_notes(load_config(overrides=list(overrides)).resolved())


def test_the_calibrated_size_needs_no_note():
    assert notes("population.n_users=200000", "run.n_ticks=90") == []
    assert notes("population.n_users=1000000", "run.n_ticks=30") == []


def test_a_small_short_world_names_its_sparse_cities_and_its_few_fraud_events():
    density, fraud = notes("population.n_users=20000", "run.n_ticks=30")
    assert "20,000 users a region in 100 cities is 200 users a city" in density and "population.n_cities=10" in density
    # 5 laundering rings per million users a day: 0.1 a day, 3 over the run
    assert "about 3 laundering rings over 30 days" in fraud and "a few large events" in fraud
    assert "200,000 users at 30 days" in fraud  # where 30 events are expected


def test_the_density_note_goes_with_the_cities_the_world_needs():
    assert dense_cities(20_000, 200_000, 2_000.0) == 10 and dense_cities(500, 200_000, 2_000.0) == 1
    assert dense_cities(1_000_000, 200_000, 2_000.0) == 100  # a region's cities, in every region
    only = notes("population.n_users=20000", "population.n_cities=10", "run.n_ticks=30")
    assert len(only) == 1 and only[0].startswith("fraud figures")
    # a long enough run of the same world carries its fraud: 5 x 0.02 x 400 = 40 rings
    assert notes("population.n_users=20000", "population.n_cities=10", "run.n_ticks=400") == []


def test_notes_of_several_runs_are_said_once_and_named_by_scenario():
    config = load_config(overrides=["population.n_users=20000", "run.n_ticks=30"]).resolved()
    runs = [{"scenario": s, "config": config, "population": {"users": 20000}} for s in ("a", "a", "b")]
    lines = manifest_notes(runs)
    assert len(lines) == 4 and lines[0].startswith("a: ") and lines[2].startswith("b: ")
    assert manifest_notes(runs[:2]) == size_notes(config)  # one scenario: no names
