"""Declared state: array tables declared once, and components whose state checkpoints collect.

* :class:`StateField` declares one column of a struct-of-arrays table (the users' in
  :data:`weishang.model.population.USER_STATE`, the merchants' in
  :data:`weishang.model.merchant.MERCHANT_STATE`): name, dtype, default, meaning.
* :class:`Stateful` is a component whose ``STATE`` names the attributes that change during a
  run. :func:`capture` walks a component (and the stateful components it owns) into host data
  for a checkpoint; :func:`restore` puts it back, onto the device where it came from. No list
  of what to save is kept anywhere else.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class StateField:
    """One per-agent array: its name, dtype, initial value, meaning, and whether a run changes it
    (then a checkpoint carries it)."""

    name: str
    dtype: str
    default: Any
    meaning: str
    changes: bool = False


class Stateful:
    """A component whose ``STATE`` attributes change during a run (arrays, numbers, lists of
    arrays, or other :class:`Stateful` components); everything else follows from the config."""

    STATE: ClassVar[tuple[str, ...]] = ()

    def after_restore(self) -> None:
        """Rebuild what derives from the state (called after :func:`restore`)."""


@dataclass(frozen=True)
class _OnDevice:
    """A checkpointed array that lived on the device (held here as a host copy)."""

    host: np.ndarray


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not np.isscalar(value)


def _walk(value: Any, leaf: Any) -> Any:
    """``value`` with ``leaf`` applied to every array and stateful component in it; lists, tuples,
    deques (keeping their ``maxlen``) and dataclasses are rebuilt around the results."""
    if _is_array(value) or isinstance(value, (_OnDevice, Stateful)):
        return leaf(value)
    if isinstance(value, deque):
        return deque((_walk(v, leaf) for v in value), maxlen=value.maxlen)
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, leaf) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _walk(getattr(value, f.name), leaf)
                                             for f in dataclasses.fields(value)})
    return value


def _to_host(value: Any, backend: Any) -> Any:
    def leaf(item: Any) -> Any:
        if isinstance(item, Stateful):
            return capture(item, backend)
        return item.copy() if isinstance(item, np.ndarray) else _OnDevice(backend.to_host(item))

    return _walk(value, leaf)


def _to_device(value: Any, backend: Any) -> Any:
    def leaf(item: Any) -> Any:
        return backend.to_device(item.host) if isinstance(item, _OnDevice) else item.copy()

    return _walk(value, leaf)


def capture(component: Stateful, backend: Any) -> dict[str, Any]:
    """The component's ``STATE`` as host data (device arrays copied to the host and marked)."""
    return {name: _to_host(getattr(component, name), backend) for name in type(component).STATE}


def restore(component: Stateful, saved: dict[str, Any], backend: Any) -> None:
    """Put back what :func:`capture` took. An array of unchanged shape is overwritten in place,
    so whoever holds it sees the restored values; anything else is replaced."""
    for name in type(component).STATE:
        current, value = getattr(component, name), saved[name]
        if isinstance(current, Stateful):
            restore(current, value, backend)
        elif _is_array(current) and isinstance(value, (np.ndarray, _OnDevice)) and \
                current.shape == (value.host if isinstance(value, _OnDevice) else value).shape:
            current[...] = _to_device(value, backend)
        else:
            setattr(component, name, _to_device(value, backend))
    component.after_restore()
