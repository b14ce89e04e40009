"""Old import paths of modules that moved in 0.3 (issue 31), kept for one release.

``weishang.model.traffic`` is now ``weishang.model.mechanisms.traffic``, ``weishang.model.sweep``
``weishang.model.study.sweep``, ``weishang.model.cli`` ``weishang.model.apps.cli``, and so on
(:data:`MOVED`). Importing an old path still works: a finder on ``sys.meta_path`` hands back the
module under its new name (one module object, so its classes and state are shared) and warns
once with a :class:`DeprecationWarning` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module (under weishang.model) -> its new place (under weishang.model)
MOVED: dict[str, str] = {
    **{name: f"mechanisms.{name}" for name in (
        "posting", "traffic", "appeal", "channel_choice", "cascade", "payments", "settlement", "fx", "governance",
        "community", "customers", "inventory", "adaptation", "aggregation", "diagnostics")},
    "accounts": "mechanisms.books", "risk_engine": "mechanisms.risk.engine", "risk_model": "mechanisms.risk.scorer",
    "fraud": "mechanisms.risk.fraud", "everyday": "mechanisms.risk.everyday",
    **{name: f"study.{name}" for name in (
        "sweep", "sensitivity", "ensemble", "calibrate", "validation", "effects", "tradeoff", "report", "small_world")},
    **{name: f"apps.{name}" for name in ("cli", "dashboard", "live", "bench", "docs")},
}
PREFIX = "weishang.model."


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:  # already executed under its new name
        pass


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds ``weishang.model.OLD`` as the module now at ``weishang.model.NEW``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(PREFIX) or fullname[len(PREFIX):] not in MOVED:
            return None
        new = PREFIX + MOVED[fullname[len(PREFIX):]]
        warnings.warn(f"{fullname} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=3)
        spec = importlib.util.spec_from_loader(fullname, _Alias(new))
        return spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
