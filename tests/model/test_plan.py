"""The tick plan's wiring, the declared state checkpoints collect, and the column registry's
contract with the writer (issue 15)."""

import numpy as np
import pytest

from weishang.model.columns import REGISTRY, SUMMARY, Ratio, RunTotals, TICKS
from weishang.model.commerce import TICK_PLAN, CommerceModel
from weishang.model.plan import Mechanism, wiring
from weishang.model.recorder import to_arrow


def test_plan_wiring_reads_only_earlier_steps():
    inputs = wiring(TICK_PLAN)
    assert list(inputs) == [m.name for m in TICK_PLAN]
    assert inputs["cascade"] == ("traffic",) and inputs["posting"] == ()

    class ReadsLater(Mechanism):
        name, engine = "early", "arrays"

        def step(self, tick, aggregation):
            return None

    with pytest.raises(ValueError, match="early reads \\['aggregation'\\], which do not run before it"):
        wiring([ReadsLater, *TICK_PLAN])

    class Unknown(Mechanism):
        name, engine = "gpu_magic", "quantum"

        def step(self, tick):
            return None

    with pytest.raises(ValueError, match="engine 'quantum'"):
        wiring([Unknown])


def test_checkpoint_state_is_collected_from_declarations(small_config):
    model = CommerceModel(small_config)
    model.step()
    state = model.state_dict()
    declared = {m.name for m in model.mechanisms if type(m).STATE}
    assert set(state["mechanisms"]) == {m.name for m in model.mechanisms}
    assert all(state["mechanisms"][name] for name in declared)
    assert set(state["merchants"]) == {"active", "exit_reason", "violations", "ti_rectify_until", "style", "post_rate"}
    # two more ticks from the saved state equal two more ticks of the original
    model.step()
    model.step()
    again = CommerceModel(small_config)
    again.load_state_dict(state)
    again.step()
    again.step()
    assert again.rows.ticks == {**model.rows.ticks, "seconds": again.rows.ticks["seconds"]}
    for name, column in model.rows.merchants.items():
        assert np.array_equal(column, again.rows.merchants[name], equal_nan=column.dtype.kind == "f"), name


def test_writer_refuses_rows_that_differ_from_the_registry():
    row = {c.name: 0 for c in TICKS}
    assert to_arrow("ticks", row).num_rows == 1
    with pytest.raises(ValueError, match="missing \\['tick'\\], undeclared \\['tick_'\\]"):
        to_arrow("ticks", {**{k: v for k, v in row.items() if k != "tick"}, "tick_": 0})
    with pytest.raises(ValueError, match="ticks.gmv holds NaN, but it is never undefined"):
        to_arrow("ticks", {**row, "gmv": float("nan")})
    table = to_arrow("ticks", {**row, "precision": None, "conversion_l1": float("nan")})
    assert table["precision"].null_count == 1 and table["conversion_l1"].null_count == 1
    field = table.schema.field("gmv")
    assert field.metadata[b"unit"] == b"CNY" and field.metadata[b"meaning"]


def test_summary_ratios_are_null_over_nothing():
    totals = RunTotals()
    totals.add({c.name: (0 if c.dtype != "string" else None) for c in TICKS})
    conversion = next(c for c in SUMMARY if c.name == "conversion_l1")
    assert isinstance(conversion.reduction, Ratio) and conversion.reduction.value(totals, None) is None
    assert set(REGISTRY) == {"ticks", "merchants", "cascades", "risk_curve", "transactions", "summary"}
