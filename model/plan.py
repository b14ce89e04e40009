"""The tick plan: the mechanisms of a tick, in order, as data.

A :class:`Mechanism` owns its state, its config sections and its step. Its ``step(tick, ...)``
names, as keyword parameters, the earlier mechanisms whose outputs it reads; it returns its own
small typed output, which later mechanisms read under its name. :class:`TickPlan` checks that
wiring once, runs the steps in order, times each one, and hands back the tick's outputs as a
:class:`TickRecord` (``record.payments.units_sold``). The order itself is written out once,
in :data:`weishang.model.mechanisms.TICK_PLAN`; the README's tick-plan table is generated from it
(:func:`markdown_table`, ``python -m weishang.model.apps.docs``).

Learnt from Starsim's loop (a list of module steps, each timed) and module lifecycle (a module
declares its state; the loop never lists it by hand).
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .state import Stateful

if TYPE_CHECKING:
    from .commerce import CommerceModel

#: what a mechanism's step runs on: Mesa agents' decisions, bulk host/device array code, or a
#: kernel of :mod:`weishang.kernels` doing the heavy part on the device
Engine = Literal["mesa", "arrays", "kernel"]
ENGINES = ("mesa", "arrays", "kernel")


@dataclass(frozen=True)
class Sync:
    """A device-to-host transfer a mechanism's step makes each tick on a GPU, and why it cannot
    be avoided (a size the host must know to allocate, a decision the host makes, numbers the
    Mesa agents or the tables read). ``most`` is the most such transfers in one tick."""

    what: str
    why: str
    most: int = 1


class Mechanism(Stateful):
    """One mechanism of the tick.

    Class attributes:
        name: how the plan and later steps refer to it (and its output).
        engine: one of :data:`ENGINES`.
        sections: the config sections it reads (``run``, the seed and length, every step may).
        uses: the other mechanisms whose *state* it reads (``self.model.<name>``): a later
            step's state is as the last tick left it. A step's *outputs* it reads are its
            ``step``'s parameters instead. ``tests/model/test_layout.py`` runs ticks with every
            read recorded and fails on one not declared here or in ``sections``.
        does: one line for the README's tick-plan table.
        syncs: the device-to-host transfers its step may make in a tick, each named with its
            reason (docs/gpu.md lists them; ``tests/model/test_device_budget.py``
            holds every step to its list on the strict stand-in).
        columns: its columns of the ``ticks`` table (:class:`~weishang.model.schema.Column`),
            which :meth:`row` fills each tick; :mod:`weishang.model.columns` gathers them in the
            order of the plan.
        STATE: the attributes a run changes (see :class:`~weishang.model.state.Stateful`).
    """

    name: ClassVar[str]
    engine: ClassVar[Engine]
    sections: ClassVar[tuple[str, ...]] = ()
    uses: ClassVar[tuple[str, ...]] = ()
    does: ClassVar[str] = ""
    syncs: ClassVar[tuple[Sync, ...]] = ()
    columns: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, model: "CommerceModel") -> None:
        self.model = model
        self.config = model.config
        self.backend = model.backend
        self.xp = model.backend.xp

    def step(self, tick: int, **inputs: Any) -> Any:
        raise NotImplementedError

    def row(self, record: "TickRecord") -> dict[str, Any]:
        """Its slice of the tick's ``ticks`` row: a value (host number, or None when undefined)
        for each of :attr:`columns`, from the tick's outputs (``record``) and its own state."""
        return {}


class TickRecord:
    """One tick's outputs, by mechanism name (``record.traffic``, ``record.risk``, ...)."""

    def __init__(self, tick: int, outputs: dict[str, Any]) -> None:
        self.tick = tick
        self.__dict__.update(outputs)


def wiring(plan: Sequence[type[Mechanism]]) -> dict[str, tuple[str, ...]]:
    """Each mechanism's inputs: the names its step reads, in the order of the plan.

    Raises:
        ValueError: an engine or a config section is unknown, a step reads the output of a
            mechanism that does not run before it, or uses the state of one not in the plan.
    """
    from .config import ScenarioConfig  # noqa: PLC0415

    names = {mech.name for mech in plan}
    inputs: dict[str, tuple[str, ...]] = {}
    for mech in plan:
        if mech.engine not in ENGINES:
            raise ValueError(f"mechanism {mech.name}: engine {mech.engine!r} is not one of {ENGINES}")
        unknown_sections = set(mech.sections) - set(ScenarioConfig.model_fields)
        if unknown_sections:
            raise ValueError(f"mechanism {mech.name}: config sections {sorted(unknown_sections)} do not exist")
        strangers = [name for name in mech.uses if name not in names or name == mech.name]
        if strangers:
            raise ValueError(f"mechanism {mech.name} uses the state of {strangers}, not other mechanisms of the plan")
        reads = tuple(p for p in inspect.signature(mech.step).parameters if p not in ("self", "tick"))
        unknown = [name for name in reads if name not in inputs]
        if unknown:
            raise ValueError(f"mechanism {mech.name} reads {unknown}, which do not run before it")
        inputs[mech.name] = reads
    return inputs


def markdown_table(plan: Sequence[type[Mechanism]]) -> str:
    """The plan as the README's table: step, engine, config sections, the outputs it reads, the
    other mechanisms' state it uses, what it does."""
    inputs = wiring(plan)
    lines = ["| step | engine | config | reads outputs of | uses state of | what it does |",
             "|---|---|---|---|---|---|"]
    for mech in plan:
        reads = ", ".join(f"`{name}`" for name in inputs[mech.name]) or "-"
        uses = ", ".join(f"`{name}`" for name in mech.uses) or "-"
        sections = ", ".join(f"`{name}`" for name in mech.sections) or "-"
        lines.append(f"| `{mech.name}` | {mech.engine} | {sections} | {reads} | {uses} | {mech.does} |")
    return "\n".join(lines)


def syncs_table(plan: Sequence[type[Mechanism]]) -> str:
    """docs/gpu.md's table of each step's named device-to-host transfers (see :class:`Sync`)."""
    lines = ["| step | transfer to the host | at most a tick | why it cannot be avoided |", "|---|---|---|---|"]
    for mech in plan:
        for sync in mech.syncs:
            lines.append(f"| `{mech.name}` | {sync.what} | {sync.most} | {sync.why} |")
    none = [f"`{mech.name}`" for mech in plan if not mech.syncs]
    if none:
        lines.append(f"| {', '.join(none)} | none | 0 | |")
    return "\n".join(lines)


class TickPlan:
    """The mechanisms in order, with each step's inputs resolved once (see :func:`wiring`)."""

    def __init__(self, mechanisms: Sequence[Mechanism]) -> None:
        self.mechanisms = tuple(mechanisms)
        self.inputs = wiring([type(mech) for mech in self.mechanisms])
        self.seconds: dict[str, float] = defaultdict(float)

    def run(self, tick: int) -> TickRecord:
        """Run every step in order; each step's wall time adds to :attr:`seconds`."""
        outputs: dict[str, Any] = {}
        for mech in self.mechanisms:
            t0 = time.perf_counter()
            outputs[mech.name] = mech.step(tick, **{name: outputs[name] for name in self.inputs[mech.name]})
            self.seconds[mech.name] += time.perf_counter() - t0
        return TickRecord(tick, outputs)

    def share_of_time(self, engine: str) -> float | None:
        """The share of the ticks' wall time spent in steps of ``engine`` (None before a tick)."""
        total = sum(self.seconds.values())
        if not total:
            return None
        return sum(self.seconds[m.name] for m in self.mechanisms if m.engine == engine) / total
