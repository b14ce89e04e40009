"""What every experiment spec shares, read and checked in one place: the overrides every run of
it takes (``[set]`` and the command line's ``--set``), and its uncertain parameters, each a
``"section.key" = [low, high]`` box over a config key.

A sweep's, a sensitivity screen's and an ensemble's ``[uncertainties]`` and a calibration
stage's ``[stage.uncertainties]`` are the same thing drawn four ways (in the manner of the EMA
workbench's uncertainties; the spec model is :mod:`weishang.model.study.experiment`), so one
function reads them all (:func:`parameter_box`) and a box is refused alike in every spec: before
any run, in one line that names the table as the spec spells it. A sweep and an ensemble draw
theirs by one Latin hypercube (:func:`latin_hypercube`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, get_args

from pydantic import TypeAdapter, ValidationError

from ..config import (
    ConfigError,
    config_field,
    flatten_keys,
    load_config,
    parse_override,
    split_key,
)
from ..population import POPULATION_KEYS

#: keys that shape the population: runs that share one population (an ensemble's workers, a
#: calibration's trials) would ignore a change of them after their first run
POPULATION_SECTIONS = ("population",)


@dataclass(frozen=True)
class Box:
    """One uncertain parameter: a config key and the range it is drawn from."""

    key: str
    low: float
    high: float
    #: the config field holds whole numbers (a draw is rounded, or refused where it cannot be)
    integer: bool


def field_adapter(key: str) -> TypeAdapter:
    """A validator of one config field's values alone: its type and bounds (``ge``, ``le``, ...)."""
    info = config_field(key)
    return TypeAdapter(Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation)


def parameter_box(table: Any, where: str, *, shared_population: bool = False, integers: bool = True,
                  at_least: int = 1, whole_config: bool = False) -> dict[str, Box]:
    """Read a table of ``"section.key" = [low, high]`` (dotted keys written either way).

    Args:
        table: the spec's table (e.g. its ``[parameters]``).
        where: how the spec names the table (``"samples"``, ``"ensemble.params"``, ...).
        shared_population: its runs share one population, so a key that shapes it is refused.
        integers: a whole-number key may be drawn (rounded); False refuses it.
        at_least: how many parameters the spec needs.
        whole_config: check each end in the whole default config (keys coupled by a rule, such as
            the channel shares summing to 1, must then stay valid alone); otherwise against the
            field's own type and bounds (a calibration stage re-balances the coupled key).

    Raises:
        ConfigError: one line naming ``where`` and the key: an unknown key, a box that is not two
            finite numbers with low < high, an end outside what the field takes, or a key refused
            above.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where} = {table!r}: a table of \"section.key\" = [low, high]")
    boxes: dict[str, Box] = {}
    for written, bounds in flatten_keys(table).items():
        try:
            kind = config_field(written).annotation
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        key = ".".join(split_key(written))  # as the config spells it: "population__n_users" is population.n_users
        if shared_population and (key.split(".")[0] in POPULATION_SECTIONS or key in POPULATION_KEYS):
            raise ConfigError(f"{where}: {key!r} would change the population, which the runs share")
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
                or not bounds[0] < bounds[1]):
            raise ConfigError(f"{where}.{key} = {bounds!r}: must be [low, high], two finite numbers with low < high")
        # whole numbers: int, an optional int (None meaning "derived"), and a flag drawn as 0 or 1
        integer = kind in (int, bool) or int in get_args(kind)
        if integer and not integers:
            raise ConfigError(f"{where}.{key}: a whole-number key cannot be drawn from a continuous box")
        for end in bounds:  # each end a value the field takes, so no run fails on it later
            value = int(round(end)) if integer else end
            try:
                if whole_config:
                    load_config(overrides=[f"{key}={value!r}"])
                else:
                    field_adapter(key).validate_python(value)
            except ConfigError as exc:
                raise ConfigError(f"{where}.{key} = {bounds!r}: {exc}") from None
            except ValidationError as exc:
                raise ConfigError(f"{where}.{key} = {bounds!r}: {exc.errors()[0]['msg']}") from None
        boxes[key] = Box(key, float(bounds[0]), float(bounds[1]), integer)
    if len(boxes) < at_least:
        what = "one parameter" if at_least == 1 else f"{at_least} parameters"
        raise ConfigError(f"{where}: name at least {what} with its [low, high] range")
    return boxes


def common_overrides(doc: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """What every run of a spec takes: its ``[set]`` table, then the command line's ``--set``
    strings (``"section.key=value"``), which come last."""
    table = doc.get("set", {})
    if not isinstance(table, dict):
        raise ConfigError("[set] must be a table of section.key = value")
    common = flatten_keys(table)
    for text in overrides:
        (section, key), value = parse_override(text)
        common[f"{section}.{key}"] = value
    return common


def latin_hypercube(boxes: dict[str, Box], n: int, seed: int, log: frozenset[str] | set[str] = frozenset()
                    ) -> list[dict[str, float | int]]:
    """``n`` points by Latin hypercube over the boxes (scipy's qmc, seeded): uniform on each box,
    or log-uniform for the keys in ``log``; a whole-number key takes its draw's nearest whole
    number. A sweep's ``[uncertainties]`` and an ensemble's are drawn by this one function."""
    from scipy.stats import qmc  # noqa: PLC0415

    unit = qmc.LatinHypercube(d=len(boxes), seed=seed).random(n)
    points = []
    for row in unit:
        point: dict[str, float | int] = {}
        for (key, box), u in zip(boxes.items(), row):
            if key in log:
                value = math.exp(math.log(box.low) + u * (math.log(box.high) - math.log(box.low)))
            else:
                value = box.low + u * (box.high - box.low)
            point[key] = int(round(value)) if box.integer else float(value)
        points.append(point)
    return points
