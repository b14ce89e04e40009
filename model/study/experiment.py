"""One experiment model: a sweep, a sensitivity screen, a calibration ensemble and a point
calibration are each written as the same few sections and read by one loader,
:func:`load_experiment` (in the manner of the EMA workbench, whose experiments are scenarios x
policies over uncertainties and levers, measured by outcomes)::

    [KIND]                   # sweep | sensitivity | ensemble | calibration: which study, its own settings
    name = "ban"             # optional (the file's stem)
    scenarios = ["../baseline.toml"]    # relative to the spec; none: the built-in default
    replicates = 3           # seeds per point (common random numbers: the same seeds at every point)
    base_seed = 7            # replicate k's seed derives from it and k alone
    outcomes = ["gmv_cny", "reach_l1"]  # read from every run: run-summary figures or targets' ids
    log = ["cascade.p_view_share"]      # uncertainties drawn log-uniformly

    [set]                    # every run's overrides; the command line's --set comes last
    "population.n_users" = 50000

    [levers]                 # policy levers at listed values: every combination is a point
    "platform.group_downweight" = [0.5, 1.0]

    [uncertainties]          # "section.key" = [low, high]: drawn by the study's own design
    "cascade.trust_stranger" = [0.05, 0.3]

    [[stage]]                # a calibration's blocks, fitted in turn: name, why, outcomes, log,
    name = "funnels"         # remainder, and [stage.uncertainties]
    [stage.uncertainties]
    "cascade.p_buy_friend" = [0.2, 0.4]

What each study takes of them (anything else is refused in one line, naming what is allowed):

=============  ===========  =========  ======================  ==========================  ====================
study          scenarios    levers     uncertainties           outcomes                    design settings
=============  ===========  =========  ======================  ==========================  ====================
sweep          any number   yes        Latin hypercube         extra ``runs.parquet``      samples, seed;
                                                               columns                     ``[members]``
sensitivity    one          no         Morris or Sobol         the screened outcomes       method, trajectories,
                                                                                           levels, samples, seed
ensemble       one          no         Latin hypercube         the matched targets         samples, seed, cutoff,
                                                                                           centre_replicates,
                                                                                           exclude, hold_out
calibration    one          no         per stage, TPE          per stage, fitted targets   rounds
=============  ===========  =========  ======================  ==========================  ====================

The names every earlier release wrote still load, as the same experiment: a sweep's ``[grid]``
(now ``[levers]``), ``[samples]`` (its ``n`` and ``seed`` now the sweep's ``samples`` and
``seed``, its boxes ``[uncertainties]``) and ``[ensemble]`` (now ``[members]``, its ``members``
``count``); a screen's ``[parameters]`` and ``scenario``; an ensemble's ``[ensemble.params]``; a
calibration's ``[run]`` and its stages' ``params`` and ``targets``. An error names the table as
the file spells it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    EXPERIMENT_TABLES,
    ConfigError,
    RunConfig,
    flatten_keys,
    read_toml_file,
    split_key,
    whole_number,
)
from .space import Box, common_overrides, parameter_box

#: the studies, in the order a spec's table names them (a sweep over ensemble members has both)
KINDS = ("sweep", "sensitivity", "calibration", "ensemble")
#: how each study is started (for the message that a spec of one is given to another)
COMMANDS = {kind: f"{EXPERIMENT_TABLES[kind]} SPEC" for kind in KINDS}
#: the seed range of run.seed and of every sampling seed
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Study:
    """What one kind of study takes of the shared model."""

    #: the shared keys its head table takes
    shared: frozenset[str]
    #: its own keys (its design's settings), read by the study
    own: frozenset[str]
    #: the top-level sections besides its head table
    sections: frozenset[str]
    #: at most one scenario
    one_scenario: bool
    #: outcomes must be targets' ids (matched or fitted against the SPEC's bands)
    targets_only: bool = False
    #: base_seed when the spec gives none
    base_seed: int = 1
    #: the most replicates it takes
    max_replicates: int = 10_000


STUDIES = {
    "sweep": Study(frozenset({"name", "scenarios", "replicates", "base_seed", "outcomes", "log"}),
                   frozenset({"samples", "seed"}), frozenset({"set", "levers", "uncertainties", "members"}), False),
    "sensitivity": Study(frozenset({"name", "scenarios", "replicates", "base_seed", "outcomes", "log"}),
                         frozenset({"method", "trajectories", "levels", "samples", "seed"}),
                         frozenset({"set", "uncertainties"}), True, base_seed=7, max_replicates=1000),
    "ensemble": Study(frozenset({"name", "scenarios", "outcomes", "log"}),
                      frozenset({"samples", "seed", "centre_replicates", "cutoff", "exclude", "hold_out"}),
                      frozenset({"set", "uncertainties"}), True, targets_only=True),
    "calibration": Study(frozenset({"scenarios", "replicates"}), frozenset({"rounds"}),
                         frozenset({"set", "stage"}), True, targets_only=True),
}
#: a calibration stage's keys
STAGE_KEYS = frozenset({"name", "why", "outcomes", "log", "int", "remainder", "uncertainties"})


@dataclass(frozen=True)
class Block:
    """A calibration stage: uncertainties fitted together to its outcomes."""

    name: str
    why: str
    uncertainties: dict[str, Box]
    log: frozenset[str]
    outcomes: tuple[str, ...]
    #: the stage's other settings (``remainder``, ``int``)
    settings: dict[str, Any]


@dataclass(frozen=True)
class Experiment:
    """A spec file, read into the shared model (see the module docstring)."""

    kind: str
    name: str
    path: Path
    #: the scenario files, resolved; ``(None,)``: the built-in default
    scenarios: tuple[Path | None, ...]
    #: ``[set]`` then ``--set``: every run's overrides by "section.key"
    common: dict[str, Any]
    #: "section.key" -> its values (every combination is a point)
    levers: dict[str, list[Any]]
    uncertainties: dict[str, Box]
    log: frozenset[str]
    #: what is read from every run (empty: the study's default)
    outcomes: tuple[str, ...]
    replicates: int
    base_seed: int | None
    #: the study's own keys, as written (each study checks its own)
    settings: dict[str, Any]
    #: ``[members]`` of a sweep over a calibration ensemble (file, count); empty otherwise
    members: dict[str, Any] = field(default_factory=dict)
    #: a calibration's stages
    stages: tuple[Block, ...] = ()
    #: canonical table -> how the file spells it (an earlier release's name), for messages
    spelled: dict[str, str] = field(default_factory=dict)

    def where(self, table: str) -> str:
        """The table as the file spells it (``samples`` for a sweep's old ``[samples]``)."""
        return self.spelled.get(table, table)


def spec_kind(doc: dict[str, Any]) -> str | None:
    """The study a spec's tables name (None: none, as in a scenario file). A sweep may carry an old
    ``[ensemble]`` of members, so ``[sweep]`` is looked for first; ``[[stage]]`` is a calibration's
    (whose settings an earlier release wrote in ``[run]``, as a scenario does)."""
    for kind in KINDS:
        if kind in doc:
            return kind
    return "calibration" if "stage" in doc else None


def load_experiment(path: str | Path, kind: str, overrides: list[str] | tuple[str, ...] = (), *,
                    shared_population: bool = False, integers: bool = True, at_least: int = 1,
                    whole_config: bool = False, default: dict[str, Any] | None = None) -> Experiment:
    """Read a spec of study ``kind`` (``default``: the parsed document when there is no file, the
    shipped calibration) into the shared model, checking every shared section.

    The keyword arguments are :func:`~weishang.model.study.space.parameter_box`'s, for the
    uncertainties (and each stage's).

    Raises:
        ConfigError: in one line: the file is missing or not TOML, is a spec of another study, has
            a section or key the study does not take, or a bad value in a shared section.
    """
    path = Path(path)
    doc = default if default is not None else read_toml_file(path, f"{kind} spec")
    found = spec_kind(doc)
    if found is None:
        raise ConfigError(f"{kind} spec {str(path)!r}: names no study; start it with a [{kind}] table")
    if found != kind:
        article, table = ("an" if found[0] in "aeiou" else "a"), (found if found in doc else "stage")
        raise ConfigError(f"{str(path)!r} is {article} {found} spec (it has [{table}]): run it with {COMMANDS[found]}")
    doc, spelled = _canonical(doc, kind)
    study = STUDIES[kind]
    head = doc.get(kind, {})
    if not isinstance(head, dict):
        raise ConfigError(f"[{kind}] must be a table")
    unknown = set(doc) - study.sections - {kind}
    if unknown:
        raise ConfigError(f"{kind} spec: unknown section [{sorted(unknown)[0]}] "
                          f"(allowed: {', '.join(sorted(study.sections | {kind}))})")
    allowed = study.shared | study.own
    if set(head) - allowed:
        key = sorted(set(head) - allowed)[0]
        hint = f"; a run's setting goes in [set] as \"run.{key}\"" if key in RunConfig.model_fields else ""
        raise ConfigError(f"{spelled.get(kind, kind)}.{key}: unknown key (allowed: {', '.join(sorted(allowed))}){hint}")
    where = spelled.get(kind, kind)
    scenarios = _scenarios(head, where, path, study.one_scenario)
    box = dict(shared_population=shared_population, integers=integers, whole_config=whole_config)
    uncertainties = (parameter_box(doc["uncertainties"], spelled.get("uncertainties", "uncertainties"),
                                   at_least=at_least, **box) if "uncertainties" in doc else {})
    log = _log(head, f"{where}.log", uncertainties)
    stages = tuple(_stage(entry, box) for entry in _stages(doc)) if kind == "calibration" else ()
    common = common_overrides(doc, overrides)
    levers = _levers(doc.get("levers", {}), spelled.get("levers", "levers"))
    if kind in ("sweep", "sensitivity"):  # every run takes a swept key's own value: a [set] of it is lost
        every_run = {".".join(split_key(key)) for key in common}
        for key in [*levers, *uncertainties]:
            if ".".join(split_key(key)) in every_run:
                raise ConfigError(f"{key!r} is swept, so it cannot also be set for every run ([set] or --set)")
    return Experiment(
        kind=kind, name=_text(head, "name", path.stem, where), path=path, scenarios=scenarios,
        common=common, levers=levers,
        uncertainties=uncertainties, log=log,
        outcomes=_outcomes(head, where, study.targets_only),
        replicates=whole_number(head, "replicates", 1, 1, study.max_replicates, where),
        base_seed=_seed(head, "base_seed", study.base_seed, where) if "base_seed" in study.shared else None,
        settings={key: value for key, value in head.items() if key in study.own},
        members=_table(doc, "members", spelled), stages=stages, spelled=spelled)


# ------------------------------------------------------------------ the names of earlier releases


def _canonical(doc: dict[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The document in the shared model's names, and how the file spelled each renamed table."""
    doc = dict(doc)
    spelled: dict[str, str] = {}

    def rename(old: str, new: str) -> None:
        if old in doc:
            if new in doc:
                raise ConfigError(f"[{old}] is the earlier name of [{new}]: write one of them")
            doc[new] = doc.pop(old)
            spelled[new] = old

    if kind == "sweep":
        rename("grid", "levers")
        if isinstance(doc.get("ensemble"), dict):  # the members of a calibration ensemble
            if "members" in doc:
                raise ConfigError("[ensemble] is the earlier name of [members]: write one of them")
            members = dict(doc.pop("ensemble"))
            if "members" in members:
                members["count"] = members.pop("members")
            doc["members"], spelled["members"] = members, "ensemble"
        if isinstance(doc.get("samples"), dict):  # n and seed are the design's; the rest are boxes
            samples = dict(doc.pop("samples"))
            if "uncertainties" in doc:
                raise ConfigError("[samples] is the earlier name of [uncertainties]: write one of them")
            head = doc["sweep"] = dict(doc.get("sweep", {}))
            for key in ("n", "seed"):
                if key in samples:
                    new = "samples" if key == "n" else "seed"
                    if new in head:
                        raise ConfigError(f"samples.{key} is the earlier place of sweep.{new}: write one of them")
                    head[new] = samples.pop(key)
            head.setdefault("samples", None)  # boxes without n: refused as the sweep's samples
            doc["uncertainties"], spelled["uncertainties"] = samples, "samples"
    elif kind == "sensitivity":
        rename("parameters", "uncertainties")
        head = doc.get("sensitivity")
        if isinstance(head, dict) and "scenario" in head:
            head = doc["sensitivity"] = dict(head)
            if "scenarios" in head:
                raise ConfigError("sensitivity.scenario is the earlier name of sensitivity.scenarios: write one")
            scenario = head.pop("scenario")
            head["scenarios"] = [scenario] if isinstance(scenario, str) else scenario
    elif kind == "ensemble":
        head = doc.get("ensemble")
        if isinstance(head, dict) and "params" in head:
            head = doc["ensemble"] = dict(head)
            if "uncertainties" in doc:
                raise ConfigError("[ensemble.params] is the earlier name of [uncertainties]: write one of them")
            doc["uncertainties"], spelled["uncertainties"] = head.pop("params"), "ensemble.params"
    elif kind == "calibration":
        rename("run", "calibration")
    return doc, spelled


# ------------------------------------------------------------------ the shared sections


def _scenarios(head: dict[str, Any], where: str, path: Path, one: bool) -> tuple[Path | None, ...]:
    names = head.get("scenarios", [])
    if not isinstance(names, list) or not all(isinstance(s, str) and s for s in names):
        raise ConfigError(f"{where}.scenarios = {names!r}: a list of scenario files (relative to the spec)")
    if "scenarios" in head and not names:
        raise ConfigError(f"{where}.scenarios = []: a list of scenario files (leave it out for the built-in default)")
    if one and len(names) > 1:
        raise ConfigError(f"{where}.scenarios: this study runs one scenario (sweep several with weishang sweep)")
    return tuple((path.parent / name).resolve() for name in names) or (None,)


def _levers(table: Any, where: str) -> dict[str, list[Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table of \"section.key\" = [value, ...]")
    levers = flatten_keys(table)
    for key, values in levers.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: must be a non-empty list of values")
        if len({repr(v) for v in values}) < len(values):  # the same point twice: one run made twice, pooled
            raise ConfigError(f"{where}.{key} = {values!r}: lists a value twice")
    return levers


def _outcomes(head: dict[str, Any], where: str, targets_only: bool) -> tuple[str, ...]:
    """The head's outcomes; given, it is a non-empty list (an empty one ran every point of a
    screen, then divided by zero: issue 32)."""
    outcomes = _names(head, "outcomes", where)
    if "outcomes" in head and not outcomes:
        example = "reach_l1" if targets_only else "gmv_cny"
        raise ConfigError(f"{where}.outcomes = []: a non-empty list of outcomes, e.g. [\"{example}\"] "
                          f"(leave it out for the study's own)")
    return check_outcomes(outcomes, f"{where}.outcomes", targets_only)


def _seed(head: dict[str, Any], key: str, default: int, where: str) -> int:
    value = head.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{where}.{key} = {value!r}: must be an integer from 0 to 2**63 - 1")
    return value


def _log(table: dict[str, Any], where: str, uncertainties: dict[str, Box]) -> frozenset[str]:
    """The uncertainties drawn log-uniformly (``where``: how the spec names its ``log``)."""
    value = table.get("log", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} = {value!r}: a list of uncertainties' keys, e.g. [\"merchants.exit_hazard\"]")
    for name in value:
        if name not in uncertainties:
            raise ConfigError(f"{where}: {name!r} is not one of the uncertainties")
        if uncertainties[name].low <= 0:
            raise ConfigError(f"{where}: {name!r} is drawn log-uniformly, so its range must be above 0")
    return frozenset(value)


def _names(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} = {value!r}: a list of names, e.g. [\"reach_l1\"]")
    return tuple(value)


def _text(table: dict[str, Any], key: str, default: str, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} = {value!r}: a name")
    return value


def _table(doc: dict[str, Any], name: str, spelled: dict[str, str]) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{spelled.get(name, name)}] must be a table")
    return value


def _stages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = doc.get("stage")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and e.get("name") for e in entries):
        raise ConfigError("calibration spec: each [[stage]] needs a name and [stage.uncertainties] of "
                          "name = [low, high]")
    return entries


def _stage(entry: dict[str, Any], box: dict[str, Any]) -> Block:
    entry = dict(entry)
    name = entry["name"]
    spelled = {}
    for old, new in (("params", "uncertainties"), ("targets", "outcomes")):
        if old in entry:
            if new in entry:
                raise ConfigError(f"stage {name!r}: {old} is the earlier name of {new}: write one of them")
            entry[new], spelled[new] = entry.pop(old), old
    unknown = set(entry) - STAGE_KEYS
    if unknown:
        raise ConfigError(f"stage {name!r}: unknown key {sorted(unknown)[0]!r} "
                          f"(allowed: {', '.join(sorted(STAGE_KEYS))})")
    where = f"stage {name!r}"
    # trials share one population: a key that shapes it is refused (fit it in a scenario sweep)
    written = spelled.get("uncertainties", "uncertainties")
    uncertainties = parameter_box(entry.get("uncertainties"), f"{where} {written}",
                                  **{**box, "shared_population": True})
    why = entry.get("why", "")
    if not isinstance(why, str):
        raise ConfigError(f"{where} why = {why!r}: a sentence")
    outcomes_where = f"{where} {spelled.get('outcomes', 'outcomes')}"
    if "outcomes" in entry and entry["outcomes"] == []:  # as refused in every study's head
        raise ConfigError(f"{outcomes_where} = []: a non-empty list of targets (leave it out to fit every one)")
    return Block(name, why, uncertainties, _log(entry, f"{where} log", uncertainties),
                 check_outcomes(_names(entry, "outcomes", where), outcomes_where, True),
                 {key: entry[key] for key in ("remainder", "int") if key in entry})


# ------------------------------------------------------------------ outcomes


@functools.cache
def outcome_names(targets_only: bool = False) -> dict[str, str]:
    """Every name an outcome may take -> "summary" (a run-summary figure) or "target" (a measured
    target, as the run's ``validation.parquet`` measures it). A target is named ``target.ID`` or
    by its bare id; a bare name that is also a run-summary figure (``official_share_of_value``)
    is the summary's figure, as it always was, and ``target.ID`` asks for the target's measure.
    With ``targets_only`` (an ensemble's or a calibration's), the bare ids of targets alone."""
    from ..columns import SUMMARY  # noqa: PLC0415
    from .validation import load_targets  # noqa: PLC0415

    targets = [t.id for t in load_targets() if t.kind in ("target", "plausibility") and t.measure]
    if targets_only:
        return {tid: "target" for tid in targets}
    names = {f"target.{tid}": "target" for tid in targets}
    names.update({tid: "target" for tid in targets})
    names.update({c.name: "summary" for c in SUMMARY})
    return names


def check_outcomes(outcomes: tuple[str, ...], where: str, targets_only: bool = False) -> tuple[str, ...]:
    """``outcomes`` when each is a run-summary figure or a measured target (only a target's bare
    id with ``targets_only``), each once; otherwise a ConfigError naming the first that is not."""
    if not outcomes:
        return outcomes
    known = outcome_names(targets_only)  # shared: not to be changed
    for name in outcomes:
        if name not in known:
            what = "a measured target's id (model/study/targets.toml)" if targets_only else \
                "a run-summary figure (docs/outputs.md) or a measured target (model/study/targets.toml)"
            raise ConfigError(f"{where}: {name!r} is not {what}")
    if len({outcome_column(name) for name in outcomes}) < len(outcomes):
        raise ConfigError(f"{where}: names an outcome twice")
    return outcomes


def outcome_column(name: str) -> str:
    """An outcome's column in a study's tables: a target's is ``target.ID`` (as the ensemble's and
    the calibration's tables name it), a run-summary figure's its own name."""
    if outcome_names().get(name) == "target":
        return name if name.startswith("target.") else f"target.{name}"
    return name


_READ: dict[Path, tuple[float, dict[str, float]]] = {}


def read_outcomes(run_dir: Path, manifest: dict[str, Any],
                  names: tuple[str, ...] | list[str]) -> dict[str, float | None]:
    """Each outcome of a published run: a run-summary figure from its manifest, a target as its
    ``validation.parquet`` measured it (None where the run could not measure it). The validation
    table is read once per version of the file (a sweep re-reads its runs after each one)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    kinds = outcome_names()
    values: dict[str, float | None] = {}
    measured: dict[str, float] = {}
    if any(kinds.get(n) == "target" for n in names):
        path = run_dir / "validation.parquet"
        stamp = path.stat().st_mtime_ns
        cached = _READ.get(path)
        if cached is None or cached[0] != stamp:
            table = pq.read_table(path, columns=["target", "simulated"]).to_pydict()
            cached = (stamp, {t: v for t, v in zip(table["target"], table["simulated"])
                              if v is not None and math.isfinite(v)})
            _READ[path] = cached
        measured = cached[1]
    for name in names:
        if kinds.get(name) == "target":
            values[name] = measured.get(name.removeprefix("target."))
        else:
            values[name] = manifest["summary"].get(name)
    return values
