"""Which figures a world too small to carry them cannot be read from (issue 30, "small worlds").

The default is calibrated on whole regions of ``population.region_users`` users (200k in 100
cities) over 90 days. Two things go wrong below that, and :func:`size_notes` says so in one line
each wherever a run's figures are shown (``weishang run``, ``validate``, ``report``, the
dashboard's live world):

* **A world smaller than a region is sparser.** Its users spread over the region's cities, so
  each city has fewer of them: fewer friends nearby, less search traffic, smaller cascades. The
  funnel figures (reach, visits, GMV per user) are then those of a thinner world; giving the
  world its share of the cities keeps the calibrated density (:func:`dense_cities`).
* **Fraud comes in a few large events.** Rings and bursts are counted per million users a day,
  and each moves a fixed sum (a laundering ring pays just under 50,000 CNY a payment), so in a
  small or short world fraud is a handful of events, each a large share of the economy: fraud
  loss, fraud volume and the risk figures are not that of the calibrated world.

Measured (2 cores, default config, seeds 1-3, against the 200k x 90-day validation's 5 seeds):
at 20k users x 30 days GMV per user-day is 0.44x the 200k figure (0.61x with 10 cities), fraud
loss per user-day 20x (15x), fraud payments per user-day 2.2x; :data:`MEASURED` holds them.
"""

from __future__ import annotations

from typing import Any

#: a world this many times sparser than the calibrated users a city gets the density note
SPARSER = 1.5
#: a typology with fewer expected events than this over a run is "a few large events"
MIN_EVENTS = 30
#: the small-world factors measured above: figure -> (20k x 30 days, the same with 10 cities)
MEASURED = {"GMV per user-day": (0.44, 0.61), "fraud loss per user-day": (20.0, 15.0),
            "fraud payments per user-day": (2.2, 2.0)}


def calibrated_density() -> float:
    """Users a city in the calibrated default (a region's users over its cities)."""
    from .config import load_config  # noqa: PLC0415  (the default scenario, read once a call)

    population = load_config().population
    return population.region_users / population.n_cities


def dense_cities(n_users: int, region_users: int, density: float) -> int:
    """The cities a world of ``n_users`` (in regions of ``region_users``) needs for ``density``
    users a city."""
    return max(1, round(min(n_users, region_users) / density))


def size_notes(config: dict[str, Any], users: int | None = None) -> list[str]:
    """One line per kind of figure the world is too small or short to carry (empty when none).

    Args:
        config: a resolved config (``ScenarioConfig.resolved()`` or a manifest's ``config``).
        users: the users actually simulated (an edge list sets them), ``n_users`` when None.
    """
    population, fraud, ticks = config["population"], config["fraud"], config["run"]["n_ticks"]
    users = population["n_users"] if users is None else users
    region, cities = population["region_users"], population["n_cities"]
    density, calibrated = min(users, region) / cities, calibrated_density()
    notes = []
    if density < calibrated / SPARSER:
        notes.append(f"{users:,} users in {cities} cities is {density:,.0f} users a city, sparser than the calibrated "
                     f"{calibrated:,.0f}: reach, visits and GMV per user are a thinner world's (GMV per user-day "
                     f"measured {MEASURED['GMV per user-day'][0]:.2g}x the 200k figure at 20k users in 100 cities); "
                     f"population.n_cities={dense_cities(users, region, calibrated)} keeps the density")
    rarest = min(("laundering rings", fraud["laundering_per_million"]), ("account takeovers", fraud["ato_per_million"]),
                 ("bursts", fraud["burst_per_million"]), key=lambda kv: kv[1])
    expected = rarest[1] * users / 1e6 * ticks
    if expected < MIN_EVENTS:
        notes.append(f"fraud figures (fraud loss and volume, interception, precision, recall) rest on about "
                     f"{expected:.2g} {rarest[0]} over {ticks} days: a few large events, not the calibrated world's "
                     f"rates (fraud loss per user-day measured {MEASURED['fraud loss per user-day'][0]:.0f}x the "
                     f"200k figure at 20k users x 30 days); read them from about "
                     f"{_users_for(MIN_EVENTS, rarest[1], ticks):,} users at {ticks} days")
    return notes


def _users_for(events: int, per_million: float, ticks: int) -> int:
    """The users that give ``events`` expected events of a typology over ``ticks`` days, rounded up to 10k."""
    needed = events * 1e6 / max(per_million * ticks, 1e-12)
    return int(-(-needed // 10_000) * 10_000)


def manifest_notes(manifests: list[dict[str, Any]]) -> list[str]:
    """:func:`size_notes` of runs' manifests, each line once, named by its scenario when the
    runs have several."""
    named = len({m.get("scenario") for m in manifests}) > 1
    notes = []
    for manifest in manifests:
        users = manifest.get("population", {}).get("users")
        for note in size_notes(manifest["config"], users):
            notes.append(f"{manifest.get('scenario', 'the run')}: {note}" if named else note)
    return list(dict.fromkeys(notes))
