"""The layout shows the architecture (issue 31): each step of the tick plan is a module of
``weishang.model.mechanisms`` named as the step; the experiment tooling and the applications
are packages of their own; the old import paths still work for one release, with a warning."""

from __future__ import annotations

import importlib
import warnings

import pytest

from weishang.model._moved import MOVED
from weishang.model.commerce import TICK_PLAN, CommerceModel


def test_each_step_is_a_module_of_mechanisms_named_as_the_step():
    for mechanism in TICK_PLAN:
        module = mechanism.__module__
        assert module in (f"weishang.model.mechanisms.{mechanism.name}",
                          f"weishang.model.mechanisms.{mechanism.name}.engine"), (mechanism.name, module)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_import_path_gives_the_moved_module_and_warns(old):
    new = importlib.import_module(f"weishang.model.{MOVED[old]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.invalidate_caches()
        import sys
        sys.modules.pop(f"weishang.model.{old}", None)
        again = importlib.import_module(f"weishang.model.{old}")
    assert again is new
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)


class _ConfigView:
    """The config as one mechanism sees it: records the sections it reads."""

    def __init__(self, config, sections):
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_sections", sections)

    def __getattr__(self, name):
        from weishang.model.config import ScenarioConfig

        if name in ScenarioConfig.model_fields:
            self._sections.add(name)
        return getattr(self._config, name)


class _ModelView:
    """The model as one mechanism sees it: records the other mechanisms whose state it reads."""

    def __init__(self, model, owner, reads, sections):
        for key, value in (("_model", model), ("_owner", owner), ("_reads", reads), ("_sections", sections)):
            object.__setattr__(self, key, value)

    def __getattr__(self, name):
        if name in {m.name for m in TICK_PLAN} - {self._owner}:
            self._reads.add(name)
        value = getattr(self._model, name)
        return _ConfigView(value, self._sections) if name == "config" else value

    def __setattr__(self, name, value):
        setattr(self._model, name, value)


def test_every_read_across_steps_and_of_the_config_is_declared(monkeypatch):
    """Each mechanism is built and stepped seeing the model and the config through views that
    record what it reads: another mechanism's state must be in its ``uses``, a config section in
    its ``sections`` (``run``, the seed and length, is every step's). Ten days of a small world
    cover every step's branches that read across (adaptation on day 7, restocking, groups)."""
    from weishang.model import plan

    reads = {m.name: set() for m in TICK_PLAN}
    sections = {m.name: set() for m in TICK_PLAN}
    built = plan.Mechanism.__init__

    def init(self, model):
        name = type(self).name
        built(self, _ModelView(model, name, reads[name], sections[name]))
        self.config = _ConfigView(model.config, sections[name])

    monkeypatch.setattr(plan.Mechanism, "__init__", init)
    model = CommerceModel(seed=2, **{"population.n_users": 3000, "population.n_cities": 3, "run.n_ticks": 10})
    for _ in range(10):
        model.step()
    for mechanism in TICK_PLAN:
        assert reads[mechanism.name] <= set(mechanism.uses), \
            f"{mechanism.name} reads the state of {sorted(reads[mechanism.name] - set(mechanism.uses))} undeclared"
        assert sections[mechanism.name] - {"run"} <= set(mechanism.sections), \
            f"{mechanism.name} reads config sections {sorted(sections[mechanism.name] - {'run'} - set(mechanism.sections))} undeclared"
    assert any(reads.values()) and all(sections.values())  # the views saw reads: the check can fail


def test_each_mechanism_fills_exactly_the_ticks_columns_it_declares():
    """A mechanism owns its outputs (issue 31): its ``ticks`` columns are declared with it, the
    table is the day, the plan's columns in order, and the wall time; each step's ``row`` fills
    its own columns and no other's."""
    from weishang.model.columns import TICKS

    model = CommerceModel(seed=2, **{"population.n_users": 3000, "population.n_cities": 3, "run.n_ticks": 3})
    model.step()
    declared = [c.name for mechanism in TICK_PLAN for c in mechanism.columns]
    assert [c.name for c in TICKS] == ["tick", *declared, "seconds"] and len(set(declared)) == len(declared)
    for mechanism in model.mechanisms:
        assert set(mechanism.row(model.record)) == {c.name for c in mechanism.columns}, mechanism.name
    assert sum(bool(mechanism.columns) for mechanism in TICK_PLAN) >= 9
