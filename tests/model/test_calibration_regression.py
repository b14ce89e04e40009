"""The calibrated default, measured on the suite's small world, stays where its reference says
(:mod:`tests.calibration_reference`): a broken mechanism that moves GMV, conversions, reach,
shares or the books by more than the seeds' own spread fails here (issue 30)."""

from __future__ import annotations

import json

from tests.calibration_reference import REFERENCE, SEEDS, WORLD, compare, load_reference, measure, tolerance


def test_the_default_reproduces_its_reference_figures():
    stored = json.loads(REFERENCE.read_text(encoding="utf-8"))
    assert stored["world"] == WORLD and stored["seeds"] == list(SEEDS)  # measured as it was stored
    reference = load_reference()
    guarded = [name for name, entry in reference.items() if entry["guarded"]]
    # the figures a planted fault moved: GMV, level conversions and reach, the books' margin
    assert {"daily_gmv", "conversion_l2", "reach_l1", "conversion_friend_rec", "net_margin",
            "official_share_of_value"} <= set(guarded)
    left = compare(measure(), reference)
    assert not left, "figures left their reference (name, reference, now, tolerance): " + "; ".join(
        f"{n}: {r:.5g} -> {m:.5g} (+-{t:.3g})" for n, r, m, t in left) + \
        " -- a change meant to move them writes a new one: python experiments/calibration_reference.py --write"


def test_a_ten_percent_move_of_gmv_leaves_the_tolerance():
    # the guard can fail: GMV 10% lower (what a level taking another level's buy probability did)
    reference = load_reference()
    gmv = reference["daily_gmv"]
    assert tolerance(gmv) < 0.1 * gmv["mean"]
    values = {name: [entry["mean"]] for name, entry in reference.items()}
    assert compare(values, reference) == []
    values["daily_gmv"] = [0.9 * gmv["mean"]]
    assert [name for name, *_ in compare(values, reference)] == ["daily_gmv"]
