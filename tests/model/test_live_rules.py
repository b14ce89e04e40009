"""``CommerceModel.with_rules`` honours every key it accepts (issue 32: three keys were accepted
and the world kept the old value, and a key with a leading space passed the guard).

Each key of ``LIVE_RULES`` is changed mid-run, key by key: a world started under the new value has
the state's shape of one started under the old (no window or history is sized by the key, which
the successor would keep at the old size), and within a few ticks the changed world moves away
from the same world continued unchanged. Every other config key
is refused."""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any

import numpy as np
import pytest

from weishang.model.commerce import LIVE_RULES, CommerceModel
from weishang.model.config import ConfigError, ScenarioConfig
from weishang.model.apps.live import LEVERS

#: a small world made busy, so every rule has something to act on within days: ten times the
#: posts, violations flagged and reviewed far more often, more public traffic to video accounts
WORLD = {"population.n_users": 3000, "population.n_cities": 3, "run.n_ticks": 30, "merchants.post_rate": 0.3,
         "governance.p_detect_violation": 0.3, "governance.p_false_flag": 0.01, "governance.p_report": 0.001,
         "governance.human_review_per_day": 1e7, "channels.video_traffic_share": 4.0}
DAYS_BEFORE = 7  # a week of history; the analytics tools are first adopted a third of the run in, on day 10
TICKS_TO_MOVE = 12

#: a value far from the default for each key, so its effect shows within a few ticks of a small world
STRONG: dict[str, Any] = {
    "platform.external_link_share_steps": [0.9, 0.95], "platform.external_link_weights": [0.0, 0.0, 0.0],
    "platform.induced_sharing_ban": False, "platform.inducement_penalty": 0.0,
    "platform.group_downweight_threshold": 20, "platform.group_downweight": 0.0,
    "platform.deep_data_min_certification": 3,
    "governance.machine_review_coverage": 0.0, "governance.p_detect_violation": 0.0,
    "governance.rectification_ticks": 1, "governance.p_false_flag": 0.5, "governance.human_review_per_day": 0.0,
    "governance.human_review_minutes": 600.0, "governance.p_report": 0.05,
    "payments.transaction_fee": 0.05, "payments.p_private_transfer": 0.9,
    "risk.target_fpr": 0.05, "risk.w_payer_velocity": 5.0, "risk.w_payer_burst": 5.0, "risk.w_amount_ratio": 5.0,
    "risk.w_new_account": 0.0, "risk.w_new_device": 0.0, "risk.w_merchant_velocity": 5.0,
    "risk.w_merchant_flag": 10.0, "risk.w_scenario_mini_program": 5.0, "risk.w_scenario_cross_border": 5.0,
    "merchants.traffic_cost_per_post": 5000.0, "merchants.traffic_cost_growth": 2.0,
    "merchants.fixed_cost_per_tick": 1000.0,
    "channels.video_traffic_share": 0.0, "channels.video_commission": 0.5,
}


def _digest(value: Any, h: Any) -> None:
    value = getattr(value, "host", value)
    if isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _digest(value[key], h)
    elif isinstance(value, (list, tuple, deque)):
        for item in value:
            _digest(item, h)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _digest(getattr(value, name), h)
    else:
        h.update(repr(value).encode())


def _state_digest(model: CommerceModel) -> str:
    """A digest of the world's state and its last tick's rows (the timings left out)."""
    h = hashlib.sha256()
    _digest({k: v for k, v in model.state_dict().items() if k not in ("phase_seconds", "collected")}, h)
    _digest({k: v for k, v in model.rows.ticks.items() if k != "seconds"}, h)
    return h.hexdigest()


def _shape(value: Any) -> Any:
    """The state's structure without its values: array dtypes and shapes, history lengths."""
    value = getattr(value, "host", value)
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape)
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("phase_seconds", "collected")}
    if isinstance(value, deque):
        return ("deque", value.maxlen)
    if isinstance(value, (list, tuple)):
        return [_shape(v) for v in value]
    return type(value).__name__


@pytest.fixture(scope="module")
def world():
    """A world a week in, the shape of its state when it started, and the digests of its state
    over the next days continued unchanged."""
    model = CommerceModel(seed=3, **WORLD)
    started = _shape(model.state_dict())
    for _ in range(DAYS_BEFORE):
        model.step()
    same = model.with_rules()
    unchanged = []
    for _ in range(TICKS_TO_MOVE):
        same.step()
        unchanged.append(_state_digest(same))
    return model, started, unchanged


def test_every_live_rule_has_a_strong_value_and_every_lever_is_a_live_rule():
    assert set(STRONG) == set(LIVE_RULES)
    assert {lever.key for lever in LEVERS} <= set(LIVE_RULES)


@pytest.mark.parametrize("key", LIVE_RULES)
def test_a_live_rule_changed_mid_run_moves_the_world(world, key):
    model, started, unchanged = world
    changed = model.with_rules(**{key: STRONG[key]})
    assert _shape(CommerceModel(changed.config, population=model.population).state_dict()) == started
    moved = False
    for day in range(TICKS_TO_MOVE):
        changed.step()
        if _state_digest(changed) != unchanged[day]:
            moved = True
            break
    assert moved, f"{key} = {STRONG[key]!r} changed nothing in {TICKS_TO_MOVE} days"


def test_every_other_key_is_refused_in_one_line(world):
    model = world[0]
    defaults = ScenarioConfig().model_dump()
    others = [f"{section}.{key}" for section, table in defaults.items() for key in table
              if f"{section}.{key}" not in LIVE_RULES]
    assert len(others) > 150
    for key in [*others, " population.n_users", "population__n_users", " platform.external_link_window_ticks "]:
        with pytest.raises(ConfigError, match="cannot change during a run") as error:
            model.with_rules(**{key: 1})
        assert "\n" not in str(error.value) and key.strip().replace("__", ".") in str(error.value)
    with pytest.raises(ConfigError, match="platform.nosuch: not a config key"):
        model.with_rules(**{"platform.nosuch": 5})
