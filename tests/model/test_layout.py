"""The layout shows the architecture (issue 31): each step of the tick plan is a module of
``weishang.model.mechanisms`` named as the step; the experiment tooling and the applications
are packages of their own; the old import paths still work for one release, with a warning."""

from __future__ import annotations

import importlib
import warnings

import pytest

from weishang.model._moved import MOVED
from weishang.model.commerce import TICK_PLAN


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
