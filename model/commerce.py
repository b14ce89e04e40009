"""``CommerceModel``: the Mesa model that owns the consumers, the merchants and the mechanisms,
and runs the tick plan.

The tick plan is :data:`~weishang.model.mechanisms.TICK_PLAN` (importable from here too),
written out once, in order; each mechanism owns its state, its config sections, its step and its
columns of the ``ticks`` table (see :mod:`weishang.model.plan`). A Mesa user drives the model
as any Mesa model::

    model = CommerceModel(seed=7, **{"population.n_users": 20_000, "run.n_ticks": 30})
    model.run_model()                      # stops after run.n_ticks
    model.datacollector.get_model_vars_dataframe()
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mesa

from ..kernels.backend import Backend, resolve_backend
from .columns import MODEL_FIGURES, TICKS
from .config import ConfigError, ScenarioConfig, config_field, configure, split_key
from .graph_io import with_edge_list
from .mechanisms import TICK_PLAN
from .merchant import draw_merchants
from .plan import TickPlan, TickRecord
from .population import Population, build_population
from .rows import TickRows, tick_rows
from .state import capture, restore

#: The config keys a running world honours when they change between ticks
#: (:meth:`CommerceModel.with_rules`): the platform's rules, governance, fees, the risk engine's
#: target and weights, and the market's costs, which the steps read afresh each tick. Every other
#: key is drawn or built into the world when it starts (the population and its groups, the
#: merchants' prices, styles and tools, the channel mix, the fraud rings, the sizes of the state's
#: windows), so a change mid-run would be accepted and silently ignored; ``with_rules`` refuses
#: them. ``tests/model/test_live_rules.py`` changes each of these mid-run and sees the world move.
LIVE_RULES: tuple[str, ...] = (
    "platform.external_link_share_steps", "platform.external_link_weights", "platform.induced_sharing_ban",
    "platform.inducement_penalty", "platform.group_downweight_threshold", "platform.group_downweight",
    "platform.deep_data_min_certification",
    "governance.machine_review_coverage", "governance.p_detect_violation", "governance.rectification_ticks",
    "governance.p_false_flag", "governance.human_review_per_day", "governance.human_review_minutes",
    "governance.p_report",
    "payments.transaction_fee", "payments.p_private_transfer",
    "risk.target_fpr", "risk.w_payer_velocity", "risk.w_payer_burst", "risk.w_amount_ratio", "risk.w_new_account",
    "risk.w_new_device", "risk.w_merchant_velocity", "risk.w_merchant_flag", "risk.w_scenario_mini_program",
    "risk.w_scenario_cross_border",
    "merchants.traffic_cost_per_post", "merchants.traffic_cost_growth", "merchants.fixed_cost_per_tick",
    "channels.video_traffic_share", "channels.video_commission",
)


def live_rules_text() -> str:
    """:data:`LIVE_RULES` in a line, a section at a time (for an error message)."""
    sections: dict[str, list[str]] = {}
    for key in LIVE_RULES:
        section, name = key.split(".")
        sections.setdefault(section, []).append(name)
    return "; ".join(f"{section}.{{{', '.join(names)}}}" for section, names in sections.items())


class CommerceModel(mesa.Model):
    """The micro-commerce ecosystem: merchants (Mesa agents) over a consumer population (arrays).

    Args:
        config: a :class:`ScenarioConfig`, a scenario TOML file, or None for the default.
        seed: the run's seed (Mesa's ``seed``); the config's ``run.seed`` when omitted.
        backend: an array :class:`Backend` or its name; ``run.backend`` when omitted.
        population: a population already built from this config (built when omitted).
        progress: told about each population build step.
        graph: the edge list's CSR, read with the config by
            :func:`~weishang.model.graph_io.with_edge_list` (read here when omitted).
        agent_reporters: Mesa ``DataCollector`` agent reporters over the merchants (e.g.
            ``{"post_rate": "post_rate", "active": "active"}``): one record per merchant a tick,
            read with ``datacollector.get_agent_vars_dataframe()``. None by default: the
            ``merchants`` table of a run holds every merchant's row each tick, and Python records
            of a million merchants a tick would cost more than the tick. Not carried by
            :meth:`with_rules` or a checkpoint.
        overrides: config values by ``"section.key"`` (or ``section__key``), e.g. from
            ``mesa.batch_run(CommerceModel, parameters={"cascade.p_view_friend": [0.2, 0.3]})``.

    Each mechanism of :data:`TICK_PLAN` is an attribute under its name (``model.traffic``,
    ``model.risk``, ...); the merchants' numbers are ``model.merchants``; after a step,
    ``model.record`` holds the tick's mechanism outputs and ``model.rows`` its table rows, and
    the figures of :data:`~weishang.model.columns.MODEL_FIGURES` are properties.
    """

    def __init__(self, config: ScenarioConfig | str | Path | None = None, *, seed: int | None = None,
                 backend: Backend | str | None = None, population: Population | None = None,
                 progress: Any = None, graph: Any = None, agent_reporters: dict[str, Any] | None = None,
                 **overrides: Any) -> None:
        config = configure(config, seed=seed, **overrides)
        if population is None and graph is None:
            config, graph = with_edge_list(config)  # an edge list sets the number of users
        super().__init__(seed=config.run.seed)
        self.config = config
        self.backend = backend if isinstance(backend, Backend) else resolve_backend(backend or config.run.backend)
        self.xp = self.backend.xp
        t0 = time.perf_counter()
        self.population = population or build_population(config, self.backend, progress, graph)
        self.build_seconds = time.perf_counter() - t0
        self.merchants = draw_merchants(config, self.population.merchant_uids)
        self.mechanisms = tuple(mechanism(self) for mechanism in TICK_PLAN)
        for mechanism in self.mechanisms:
            setattr(self, mechanism.name, mechanism)
        self.plan = TickPlan(self.mechanisms)
        self.record: TickRecord | None = None
        self.rows: TickRows | None = None
        self.datacollector = mesa.DataCollector(model_reporters={name: name for name in MODEL_FIGURES},
                                                agent_reporters=agent_reporters or {})
        self.running = self.steps < config.run.n_ticks

    @property
    def tick(self) -> int:
        """The current tick, 0-based (Mesa's ``steps`` counts ticks started)."""
        return max(self.steps - 1, 0)

    @property
    def n_merchants(self) -> int:
        return self.merchants.n

    def step(self) -> None:
        """One tick: every mechanism of the plan in order, then the tick's rows and the
        DataCollector's figures; ``running`` turns False after ``run.n_ticks`` ticks."""
        t0 = time.perf_counter()
        self.record = self.plan.run(self.tick)
        self.rows = tick_rows(self, self.record)
        self.rows.ticks["seconds"] = time.perf_counter() - t0
        self.datacollector.collect(self)
        self.running = self.steps < self.config.run.n_ticks

    def with_rules(self, **overrides: Any) -> CommerceModel:
        """The same world continuing under other rules: a model with ``overrides`` (config values
        by ``"section.key"`` or ``section__key``) laid over this one's config, on the same
        population, in this model's state, so its next tick is the first under the new rules.
        With no overrides it continues exactly as this model would. What the new config derives
        at construction (weights, tables) is derived again. Only the keys of :data:`LIVE_RULES`
        may change: any other is drawn or built into the world when it starts, so it is refused
        with a :class:`~weishang.model.config.ConfigError` rather than silently kept.
        """
        for key in overrides:
            config_field(key)  # an unknown key says so
            dotted = ".".join(split_key(key))
            if dotted not in LIVE_RULES:
                raise ConfigError(f"{dotted}: cannot change during a run (it is drawn or built into the world "
                                  f"when it starts); start a new model instead. Keys a running world honours: "
                                  f"{live_rules_text()}")
        config = configure(self.config, **overrides)
        successor = CommerceModel(config, backend=self.backend, population=self.population)
        successor.load_state_dict(self.state_dict())
        return successor

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything that changes during a run, as host data (for a checkpoint): the random
        generators, the merchants' table, and each mechanism's declared state."""
        return {"steps": self.steps, "random": self.random.getstate(), "rng": self.rng.bit_generator.state,
                "merchants": capture(self.merchants, self.backend),
                "mechanisms": {m.name: capture(m, self.backend) for m in self.mechanisms},
                "phase_seconds": dict(self.plan.seconds), "collected": self.datacollector.model_vars}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, into a model built from the same config."""
        self.steps = state["steps"]
        self.random.setstate(state["random"])
        self.rng.bit_generator.state = state["rng"]
        restore(self.merchants, state["merchants"], self.backend)
        for mechanism in self.mechanisms:
            restore(mechanism, state["mechanisms"][mechanism.name], self.backend)
        self.plan.seconds.update(state["phase_seconds"])
        self.datacollector.model_vars = state["collected"]
        self.running = self.steps < self.config.run.n_ticks


def _figure(name: str) -> property:
    meaning = next(c.meaning for c in TICKS if c.name == name)
    return property(lambda model: None if model.rows is None else model.rows.ticks[name],
                    doc=f"This tick's {name}: {meaning} (None before the first step).")


for _name in MODEL_FIGURES:
    setattr(CommerceModel, _name, _figure(_name))
