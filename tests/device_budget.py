"""What a tick asks of a GPU, counted on the strict stand-in (:mod:`tests.strict_device`).

:func:`measure` builds a model on the stand-in, runs it, and tallies each tick's work per
mechanism of the tick plan (and ``rows``, the tables' rows made after the plan): array
operations (kernel launches on a GPU), explicit device-to-host transfers and their bytes, and
the implicit size synchronisations CuPy makes for boolean masks, ``nonzero`` and ``unique``.
The counts are the same on any machine: they depend on the code and the config, not on speed.

``experiments/device_budget.py`` prints them as a table; ``tests/model/test_device_budget.py``
holds the model to a budget at two sizes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tests import strict_device

#: the pseudo-mechanism that stands for the rows made after the plan (``tick_rows``)
ROWS = "rows"


@dataclass(frozen=True)
class StepTally:
    """One mechanism's work in one tick."""

    tick: int
    mechanism: str
    launches: int
    transfers: int
    transfer_bytes: int
    size_syncs: int


def _counted(step, name: str, tick_of, out: list[StepTally]):
    def run(*args, **kwargs):
        with strict_device.counting() as tally:
            result = step(*args, **kwargs)
        out.append(StepTally(tick_of(), name, tally.launches, tally.transfers, tally.transfer_bytes,
                             tally.size_syncs))
        return result
    return run


def _measure(n_users: int, n_ticks: int, overrides: Sequence[str]) -> list[StepTally]:
    from weishang.model import commerce
    from weishang.model.commerce import CommerceModel
    from weishang.model.config import load_config

    config = load_config(overrides=[f"population.n_users={n_users}", f"run.n_ticks={n_ticks}",
                                    'run.backend="numpy"', *overrides])
    model = CommerceModel(config, backend=strict_device.backend())
    out: list[StepTally] = []
    for mech in model.mechanisms:
        mech.step = _counted(mech.step, mech.name, lambda: model.tick, out)
    tick_rows = commerce.tick_rows
    commerce.tick_rows = _counted(tick_rows, ROWS, lambda: model.tick, out)
    try:
        for _ in range(n_ticks):
            model.step()
    finally:
        commerce.tick_rows = tick_rows
    return out


def measure(n_users: int, n_ticks: int, overrides: Sequence[str] = ()) -> list[StepTally]:
    """Each tick's tally per mechanism, for a run of ``n_users`` x ``n_ticks`` on the stand-in.

    The build is not counted; the default config otherwise (``overrides``: ``"section.key=value"``).
    The stand-in's ``cupyx`` serves the CuPy-only branches while it runs, and only then (a CuPy
    test run later in the same process must find the real one).
    """
    before = sys.modules.get("cupyx")
    sys.modules["cupyx"] = strict_device.cupyx
    try:
        return _measure(n_users, n_ticks, overrides)
    finally:
        if before is None:
            sys.modules.pop("cupyx", None)
        else:
            sys.modules["cupyx"] = before
