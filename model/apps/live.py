"""A live session: one small :class:`~weishang.model.commerce.CommerceModel` stepped on demand,
its platform levers changeable between ticks, its history kept for plotting.

The dashboard (:mod:`weishang.model.apps.dashboard`) drives one of these; nothing here knows about
the web. A lever changed mid-run takes effect from the next tick on the same world
(:meth:`~weishang.model.commerce.CommerceModel.with_rules`); a reset starts a new world with the
levers as they stand.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ..codes import Channel
from ..commerce import CommerceModel
from ..mechanisms.cascade import trace_post


@dataclass(frozen=True)
class Lever:
    """A platform rule the page offers: its config key, a label, and its range or choices."""

    key: str
    label: str
    low: float = 0.0
    high: float = 1.0
    step: float | None = None
    choices: tuple[tuple[str, Any], ...] = ()  # (label, value) for a choice among presets


#: the platform's levers, in the order the page shows them (SPEC's "questions users will run")
LEVERS: tuple[Lever, ...] = (
    Lever("platform.induced_sharing_ban", "induced-sharing ban", choices=(("on", True), ("off", False))),
    Lever("platform.group_downweight_threshold", "group down-weighting above (members)", 100, 1000, 50),
    Lever("platform.group_downweight", "down-weighted groups keep (share of reach)", 0.0, 1.0, 0.05),
    Lever("platform.external_link_weights", "external-link tiers", choices=(
        ("default: 1, 0.5, 0.2", [1.0, 0.5, 0.2]), ("open: 1, 1, 1", [1.0, 1.0, 1.0]),
        ("strict: 1, 0.2, 0.05", [1.0, 0.2, 0.05]))),
    Lever("payments.transaction_fee", "transaction fee", 0.0, 0.05, 0.002),
    Lever("governance.human_review_per_day", "human review (cases a day, full scale)", 1000, 60000, 1000),
    Lever("risk.target_fpr", "risk engine's false-positive target", 0.00001, 0.0003, 0.00001),
    Lever("platform.deep_data_min_certification", "deep data from certification level",
          choices=(("0: everyone", 0), ("1: verified", 1), ("2: certified (default)", 2), ("3: nobody", 3))),
    Lever("merchants.traffic_cost_per_post", "traffic cost (CNY a paid post)", 100, 3000, 100),
    Lever("channels.video_traffic_share", "public traffic to video accounts (x default)", 0.0, 4.0, 0.25),
)

CHANNELS = Channel.labels()
#: the ticks columns the page plots, kept per tick
HISTORY = ("tick", "gmv", *(f"gmv_{c}" for c in CHANNELS), "conversion_l1", "conversion_l2", "conversion_l3",
           "n_active_merchants", "n_exits", "n_fraud_intercepted", "n_fraud", "n_false_positives", "fees",
           "n_style_content", "n_style_ad", "n_style_inducement", *(f"effort_{c}" for c in CHANNELS))


def default_levers(model_config: Any) -> dict[str, Any]:
    """Each lever's value in a config (the page's starting positions)."""
    data = model_config.model_dump()
    return {lever.key: data[lever.key.split(".")[0]][lever.key.split(".")[1]] for lever in LEVERS}


class LiveSession:
    """A model of ``n_users`` users (default 20k) stepped on demand; ``history`` holds a row of
    :data:`HISTORY` per tick run.

    One world is shared by every request of a web server, which serves requests on several
    threads; ``lock`` (re-entrant) serialises them, so overlapping "step" requests run their ticks
    one after another, never interleaved (a tick is not thread-safe: the model's RNG and state
    advance in place). Each method takes it; a caller that needs several calls to see one state
    (step, then read the frame and the cascade) holds it around them.
    """

    def __init__(self, n_users: int = 20_000, seed: int = 1, n_ticks: int = 3650) -> None:
        self.n_users, self.seed, self.n_ticks = n_users, seed, n_ticks
        self.levers: dict[str, Any] = {}
        self.lock = threading.RLock()
        self.reset()

    def reset(self, levers: dict[str, Any] | None = None) -> None:
        """A new world with the given levers (the default's where not given), no tick run yet."""
        with self.lock:
            self.levers = dict(levers or {})
            self.model = CommerceModel(seed=self.seed, **{"population.n_users": self.n_users,
                                                          "run.n_ticks": self.n_ticks, **self.levers})
            self.history: list[dict[str, float]] = []

    def apply(self, levers: dict[str, Any]) -> list[str]:
        """Change levers from the next tick on, in the same world; returns the keys that changed."""
        with self.lock:
            current = default_levers(self.model.config)
            changed = {k: v for k, v in levers.items() if current.get(k) != v}
            if changed:
                self.model = self.model.with_rules(**changed)
                self.levers.update(changed)
            return sorted(changed)

    def step(self, n: int = 1) -> None:
        with self.lock:
            for _ in range(n):
                if not self.model.running:
                    return
                self.model.step()
                ticks = self.model.rows.ticks
                self.history.append({name: ticks.get(name) for name in HISTORY})

    @property
    def tick(self) -> int:
        """Ticks run so far."""
        return len(self.history)

    def frame(self) -> pl.DataFrame:
        """The history as a table (one row per tick; empty before the first)."""
        with self.lock:
            history = list(self.history)
        return pl.DataFrame(history, schema={name: pl.Float64 for name in HISTORY}, orient="row",
                            strict=False) if history else pl.DataFrame(schema={n: pl.Float64 for n in HISTORY})

    def cascade(self, max_nodes: int = 400) -> dict[str, np.ndarray] | None:
        """The last tick's widest post, as a small graph to draw: nodes (``user``, ``level`` 0 for
        the merchant, 1-3, ``bought``) and edges (``src``, ``dst`` node rows), the levels beyond
        the first thinned to at most ``max_nodes`` nodes. A level-2 viewer hangs from a level-1
        sharer among its friends, a level-3 stranger from a level-2 sharer of its city. None
        before the first tick or when the tick had no post."""
        with self.lock:
            record = self.model.record
            if record is None or record.traffic.posts.n == 0:
                return None
            exposures = np.asarray(self.model.backend.to_host(record.cascade.exposures))
            post = int(np.argmax(exposures[:, 1:].sum(axis=1) * 10**9 + exposures[:, 0]))
            traced = trace_post(self.model, post)
            return cascade_graph(traced, self.model, max_nodes)


def cascade_graph(traced: dict[str, Any], model: CommerceModel, max_nodes: int) -> dict[str, np.ndarray]:
    """Nodes and edges of one traced post (see :meth:`LiveSession.cascade`)."""
    to_host = model.backend.to_host
    indptr, indices = to_host(model.population.indptr), to_host(model.population.indices)
    city = to_host(model.population.state["city"])
    rng = np.random.default_rng(0)
    user, level, bought, shared = (np.asarray(traced[k]) for k in ("user", "level", "bought", "shared"))
    keep = np.ones(user.shape[0], dtype=bool)
    room = max(max_nodes - int((level == 1).sum()), 0)
    beyond = np.flatnonzero(level > 1)
    if beyond.shape[0] > room:  # thin the outer levels, keeping their sharers (they carry the edges)
        optional = beyond[~shared[beyond]]
        drop = rng.choice(optional, size=min(optional.shape[0], beyond.shape[0] - room), replace=False)
        keep[drop] = False
    user, level, bought, shared = user[keep], level[keep], bought[keep], shared[keep]
    nodes_user = np.concatenate([[traced["origin"]], user])
    nodes_level = np.concatenate([[0], level]).astype(np.int64)
    nodes_bought = np.concatenate([[False], bought])
    row_of = {int(u): i for i, u in enumerate(nodes_user)}
    src, dst = [], []
    sharers = {1: set(user[(level == 1) & shared].tolist()), 2: user[(level == 2) & shared]}
    for i in range(1, nodes_user.shape[0]):
        u, lvl = int(nodes_user[i]), int(nodes_level[i])
        parent = traced["origin"]
        if lvl == 2:
            friends = indices[indptr[u]:indptr[u + 1]]
            among = [f for f in friends.tolist() if f in sharers[1]]
            parent = among[0] if among else parent
        elif lvl == 3:
            same_city = sharers[2][city[sharers[2]] == city[u]]
            parent = int(same_city[0]) if same_city.shape[0] else parent
        if int(parent) in row_of:
            src.append(row_of[int(parent)])
            dst.append(i)
    return {"user": nodes_user, "level": nodes_level, "bought": nodes_bought,
            "src": np.asarray(src, dtype=np.int64), "dst": np.asarray(dst, dtype=np.int64)}
