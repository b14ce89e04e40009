"""The platform's risk engine in the tick: official payments, everyday WeChat Pay payments
(:mod:`weishang.model.mechanisms.risk.everyday`) and injected fraud are scored in bulk (:mod:`weishang.kernels.risk`), payments
above the threshold are intercepted and do not settle, and the threshold is reset from
confirmed-legitimate scores of past ticks to hold the false-positive rate (SPEC section 3).
Off-platform payments are never seen. Everyday payments go to one merchant slot past the
modelled merchants (shops outside micro-commerce); the transactions log writes it as -1.

Labels arrive one tick late for the threshold, as unreported payments would: the threshold a
tick uses comes only from earlier ticks' legitimate scores. The learned scorer
(:mod:`weishang.model.mechanisms.risk.scorer`, ``risk.scorer = "learned"``, the default) learns from labels
that arrive ``risk.label_delay_ticks`` late, as reports and chargebacks do, on the graph and
sequence features of :mod:`weishang.kernels.risk_features`; until its first fit the linear rule
(:mod:`weishang.kernels.risk`) decides. Its threshold comes from a random sample of past ticks'
legitimate feature rows, rescored by the current model each tick.

Every tick the engine also counts its trade-off curve (:mod:`weishang.kernels.risk_curve`):
payments above the threshold each false-positive target of a grid would set, per class
(legitimate, each typology; the run's payments and the fraud probe), for the engine's scorer
and the linear rule side by side; the ``risk_curve`` table.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ....kernels import rng
from ....kernels.backend import bin_sums
from ....kernels.risk import (
    RiskState,
    RiskWeights,
    score_transactions,
    tick_view,
    update_state,
)
from ....kernels.risk_curve import FPR_GRID, counts_above, grid_thresholds
from ....kernels.risk_features import (
    N_FEATURES,
    AccountView,
    GraphState,
    TickGraph,
    account_view,
    feature_scores,
    features,
    linear_scores,
    tick_graph,
    update_graph,
)
from ...codes import OFFICIAL_SCENARIOS, PaymentScenario
from ...config import ScenarioConfig
from ...plan import Mechanism, Sync, TickRecord
from ...schema import SCENARIO, TYPOLOGY, Column, Derived, Ratio, T, col, family, ratio
from ..payments import Orders
from .everyday import amount_table, draw_everyday
from .fraud import TYPOLOGIES, FraudBatch, FraudInjector, fraud_merchant_count
from .scorer import MAX_FIT_READS, LabelledRows, LearnedScorer

#: a merchant onboarded fewer ticks ago than this is new to the risk engine
NEW_MERCHANT_TICKS = 7
SCENARIO_NAMES = tuple(PaymentScenario.label(s) for s in OFFICIAL_SCENARIOS)
#: fraud transactions' keys start above every order key (cascade key x N + buyer < 2^60)
FRAUD_KEY_BASE = 1 << 60
FRAUD_KEYS_PER_TICK = 1 << 24
#: the curve's classes: legitimate payments, then each typology's payments, then each typology's probe
CURVE_CLASSES = (("payments", "legitimate"), *(("payments", t) for t in TYPOLOGIES),
                 *(("probe", t) for t in TYPOLOGIES))


@dataclass
class Screening:
    """One tick's risk decisions.

    Attributes:
        legit_passed: (bool[O]) on the device: each legitimate payment that was not intercepted
            (off-platform payments always pass: nobody screens them).
        fraud: the tick's injected fraud (device); fraud_passed (bool[F], device): not intercepted.
        metrics: per-tick counts and rates for the ticks table (host numbers).
        log: the scored transactions kept for ``transactions/`` (host columns), or None when
            ``output.transactions`` is "none".
        curve: the ``risk_curve`` rows of the tick (host columns).
    """

    legit_passed: Any
    fraud: FraudBatch
    fraud_passed: Any
    metrics: dict[str, float | None]
    log: dict[str, np.ndarray] | None = None
    curve: dict[str, np.ndarray] | None = None


@dataclass
class TickBatch:
    """The tick's transactions as the engine scores them, laid out [orders (O'), everyday (E),
    fraud (F)], T = O' + E + F, on the device.

    Attributes:
        legit_idx: (int64[O']) the official payments among the tick's orders; n_orders = O'.
        n_legit: O' + E; legit_key: (int64[O' + E]) their keys.
        fraud: the tick's injected fraud.
        payer, merchant (the everyday shops: M), amount (fen), scenario, new_device,
            account_age, each [T]; merchant_flag: (bool[M + 1]) the shops the engine watches.
    """

    legit_idx: Any
    n_orders: int
    n_legit: int
    legit_key: Any
    fraud: FraudBatch
    payer: Any
    merchant: Any
    amount: Any
    scenario: Any
    new_device: Any
    account_age: Any
    merchant_flag: Any

    @property
    def columns(self) -> dict[str, Any]:
        """The transactions' columns by the names the scoring kernels take."""
        return {"payer": self.payer, "merchant": self.merchant, "amount": self.amount, "scenario": self.scenario,
                "new_device": self.new_device, "account_age": self.account_age, "merchant_flag": self.merchant_flag}


@dataclass
class Scored:
    """One set of payments scored two ways (device arrays): ``rule`` by the linear rule,
    ``learned`` by the learned scorer (None before its first fit, or with the linear scorer)."""

    rule: Any
    learned: Any = None

    @property
    def decisive(self) -> Any:
        """The scores the engine decides on."""
        return self.rule if self.learned is None else self.learned


def weights_from(config: ScenarioConfig) -> RiskWeights:
    r = config.risk
    return RiskWeights(payer_velocity=r.w_payer_velocity, payer_burst=r.w_payer_burst,
                       amount_ratio=r.w_amount_ratio, new_account=r.w_new_account, new_device=r.w_new_device,
                       merchant_velocity=r.w_merchant_velocity, merchant_flag=r.w_merchant_flag,
                       scenario=(0.0, r.w_scenario_mini_program, r.w_scenario_cross_border))


def draw_fraud_merchants(seed: int, n_merchants: int, share: float) -> np.ndarray:
    """(int64[K]) the merchants that brush fake orders and serve as mules, sorted."""
    n_fraud = fraud_merchant_count(share, n_merchants)
    order = np.argsort(rng.uniform(rng.stream_key(seed, "fraud.merchants"), n_merchants), kind="stable")
    return np.sort(order[:n_fraud]).astype(np.int64)


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`RiskEngine.row`
COLUMNS: tuple[Column, ...] = tuple(
    [c for s, what in SCENARIO.items() for c in (
        family(T, "n_tx_{x}", {s: what}, "int64", "payments", "sum",
               "{what} payments the risk engine screened (orders, everyday payments and fraud)", of=SCENARIO)
        + family(T, "n_intercepted_{x}", {s: what}, "int64", "payments", "sum", "of those, intercepted", of=SCENARIO)
        + family(T, "interception_rate_{x}", {s: what}, "float64", "share",
                 lambda x: Ratio(f"n_intercepted_{x}", f"n_tx_{x}"),
                 "intercepted over screened {what} payments; null without any", nullable=True, of=SCENARIO))]
    + col(T, "n_everyday", "int64", "payments", "sum",
          "everyday WeChat Pay payments screened besides micro-commerce orders")
    + col(T, "n_orders_intercepted", "int64", "payments", "sum", "micro-commerce orders intercepted (all legitimate)")
    + col(T, "n_screened", "int64", "payments", "sum", "payments the risk engine screened (every scenario)")
    + col(T, "n_intercepted", "int64", "payments", "sum", "payments the risk engine intercepted (every scenario)")
    + col(T, "n_fraud", "int64", "payments", "sum", "injected fraudulent payments")
    + col(T, "n_fraud_intercepted", "int64", "payments", "sum", "fraudulent payments intercepted")
    + col(T, "n_false_positives", "int64", "payments", "sum", "legitimate payments intercepted")
    + col(T, "false_positive_rate", "float64", "share", Ratio("n_false_positives", Derived(
          lambda t, m: t.sums["n_tx_qr"] + t.sums["n_tx_mini_program"] + t.sums["n_tx_cross_border"]
          - t.sums["n_fraud"], "screened payments less fraud")),
          "legitimate payments intercepted over legitimate payments screened; null without any", nullable=True)
    + col(T, "precision", "float64", "share", Ratio("n_fraud_intercepted", Derived(
          lambda t, m: t.sums["n_fraud_intercepted"] + t.sums["n_false_positives"], "interceptions")),
          "fraud among the intercepted payments; null when nothing was intercepted", nullable=True)
    + col(T, "recall", "float64", "share", Ratio("n_fraud_intercepted", "n_fraud"),
          "fraudulent payments intercepted over fraudulent payments; null without fraud", nullable=True)
    + col(T, "illicit_share", "float64", "share", "mean",
          "fraudulent over all screened payments; null without any", nullable=True)
    + col(T, "fraud_loss", "float64", "CNY", "sum", "value of the fraud that passed")
    + col(T, "risk_threshold", "float64", "score", "none",
          "score above which payments are intercepted (infinite while the engine has no history)")
    + family(T, "n_fraud_{x}", TYPOLOGY, "int64", "payments", "sum", "injected {what} payments")
    + family(T, "n_fraud_intercepted_{x}", TYPOLOGY, "int64", "payments", "sum", "intercepted {what} payments")
    + col(T, "learned_scoring", "bool", "flag", "last",
          "the learned scorer decided the tick (false: the linear rule, before the first fit or by config)"))


class RiskEngine(Mechanism):
    """Scores, intercepts and learns its threshold; owns the fraud injector.

    State: the payers' and merchants' velocity windows (``state``), the legitimate scores of
    recent ticks the threshold is set from (``legit_history``) and the fraudsters' adaptation
    (``fraud``).
    """

    name = "risk"
    engine = "kernel"
    sections = ("risk", "fraud", "payments", "merchants", "output")
    does = "orders, everyday payments and injected fraud scored in bulk; above the threshold: intercepted"
    columns = COLUMNS
    STATE = ("state", "legit_history", "fraud", "graph", "scorer", "learned_history", "learned_history_scores",
             "scores_fitted_at")
    syncs = (
        Sync("official payments per scenario (int64[3])",
             "a size the host must know: each scenario's everyday payments top it up to the SPEC's daily count"),
        Sync("the probe's own (event, payer) and (event, merchant) ids, the largest of each",
             "a size the host must know: the probe's own-event graph is allocated with that many accounts"),
        Sync("the tick's counts and the probe's interceptions (int64[30], one copy)",
             "the ticks row the recorder writes, and the interception shares the fraudsters react to (a "
             "decision the host makes)"),
        Sync("each scorer's trade-off curve table (int64[C, G + 1])",
             "the risk_curve rows the recorder writes; two scorers once the learned one is fitted", most=2),
        Sync("each scorer's curve thresholds (float64[1 + G])",
             "the risk_curve thresholds and the ticks' risk_threshold the recorder writes", most=2),
        Sync("a refit's Newton checks (decrement, objective before and after a trial step) and its weights",
             "decisions the host makes (take, halve or stop) and the K + 1 weights the scorer multiplies by as "
             "Python floats; only on a refit tick, at most MAX_FIT_READS a fit", most=MAX_FIT_READS),
        Sync("the transactions log's columns (output.transactions sample or full)",
             "the rows the recorder writes to transactions/; none with the default output", most=11),
    )

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        config, pop = self.config, model.population
        r = config.risk
        self.weights = weights_from(config)
        self.n_users, self.n_merchants = pop.n_users, model.merchants.n
        # one more merchant slot: the shops outside micro-commerce that everyday payments go to
        self.state = RiskState.empty(self.n_users, self.n_merchants + 1, r.window_ticks, xp=self.xp)
        self.everyday_amounts = self.backend.to_device(amount_table(config))  # made once, not every tick
        self.legit_history: deque[Any] = deque(maxlen=r.threshold_history_ticks)
        self.reference_fen = round(config.merchants.price_median * 100)
        fraud_merchants = draw_fraud_merchants(config.run.seed, self.n_merchants, config.fraud.share_fraud_merchants)
        self.fraud = FraudInjector(config.fraud, self.n_users, fraud_merchants, self.n_merchants,
                                   self.reference_fen, config.run.seed, xp=self.xp)
        self.ti_created = pop.state["ti_created"]
        self.learning = r.scorer == "learned"
        self.graph = GraphState.empty(self.n_users, self.n_merchants + 1, r.window_ticks, xp=self.xp)
        self.scorer = LearnedScorer(N_FEATURES, r.label_delay_ticks, r.retrain_every_ticks, r.train_window_ticks,
                                    self.backend)
        #: (float64[S, K] each, device) sampled legitimate feature rows of past ticks, for the learned threshold
        self.learned_history: deque[Any] = deque(maxlen=r.threshold_history_ticks)
        #: (float64[S] each, device) their scores by the model of ``scores_fitted_at`` (rescored after a refit)
        self.learned_history_scores: deque[Any] = deque(maxlen=r.threshold_history_ticks)
        self.scores_fitted_at = -1

    def merchant_flag(self, tick: int) -> np.ndarray:
        """(bool[M]) merchants the engine watches: under rectification, or onboarded recently."""
        merchants = self.model.merchants
        return (merchants.ti_rectify_until > tick) | (tick - merchants.ti_onboarded < NEW_MERCHANT_TICKS)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """What the screen counted: payments screened and intercepted by scenario and typology,
        false positives, precision and recall, the threshold, and which scorer decided."""
        return dict(record.risk.metrics)

    def step(self, tick: int, payments: Orders) -> Screening:
        return self.screen(payments.payments, payments.key, payments.buyer, self.merchant_flag(tick), tick)

    def screen(self, payments: Any, order_key: Any, payer: Any, merchant_flag: np.ndarray, tick: int) -> Screening:
        """Score this tick's official payments, everyday payments and fraud; intercept above the
        threshold. Transactions are laid out as [orders (O'), everyday (E), fraud (F)].

        Args:
            payments: the tick's :class:`~weishang.model.mechanisms.payments.PaymentBatch`; order_key and
                payer (int64[O], device) of each; merchant_flag (bool[M], host).
        """
        xp, r = self.xp, self.config.risk
        batch = self._lay_out(payments, order_key, payer, merchant_flag, tick)
        tx = batch.columns
        view = tick_view(batch.payer, batch.merchant, self.state, float(self.reference_fen), xp=xp)
        rule = score_transactions(**tx, state=self.state, weights=self.weights,
                                  reference_amount=float(self.reference_fen), new_account_ticks=r.new_account_ticks,
                                  xp=xp, view=view)
        scored, graph_today, accounts, rows_of = Scored(rule), None, None, None
        if self.learning:
            scored.learned, graph_today, accounts, rows_of = self._learned(tick, batch, view)
        history = self._legit_history(scored)
        # the engine's threshold and the curve's, one selection per scorer's history
        targets = (r.target_fpr, *FPR_GRID)
        grids = Scored(grid_thresholds(history.rule, targets, xp=xp),
                       None if history.learned is None else grid_thresholds(history.learned, targets, xp=xp))
        threshold = grids.decisive[0]  # stays on the device: the interceptions need no read-back
        score = scored.decisive
        intercepted = score > threshold
        probe_scored, probe_typology, probe_counts, probe_rows = self._probe(tick, view, tx["merchant_flag"],
                                                                             threshold, accounts)
        tables = self._curve_tables(scored, grids, batch.fraud.typology, batch.n_legit, probe_scored, probe_typology)
        if self.learning:
            self._keep_rows(tick, rows_of, batch.legit_key, batch.n_legit, int(batch.payer.shape[0]), probe_rows)
            update_graph(self.graph, graph_today, tick, xp=xp)
        update_state(self.state, batch.payer, batch.merchant, batch.amount, tick, xp=xp)
        self.legit_history.append(rule[:batch.n_legit])

        legit_passed = xp.ones(payments.scenario.shape[0], dtype=xp.bool_)
        legit_passed[batch.legit_idx] = ~intercepted[:batch.n_orders]
        fraud_passed = ~intercepted[batch.n_legit:]
        counts = self._metric_counts(batch.scenario, intercepted, batch.n_orders, batch.n_legit, batch.fraud,
                                     batch.fraud.amount, fraud_passed, xp=xp)
        metrics, curve, probe_share = self._read_back(tick, batch, counts, probe_counts, tables, grids)
        metrics["learned_scoring"] = scored.learned is not None
        self.fraud.react(probe_share)
        log = None if self.config.output.transactions == "none" else self._log(tick, batch, score, intercepted)
        return Screening(legit_passed, batch.fraud, fraud_passed, metrics, log, curve)

    def _lay_out(self, payments: Any, order_key: Any, payer: Any, merchant_flag: np.ndarray, tick: int) -> TickBatch:
        """The tick's transactions in one layout, [orders (O'), everyday (E), fraud (F)]: the
        official orders, the everyday payments drawn beside them, and the injected fraud."""
        xp, dev, r, seed = self.xp, self.backend.to_device, self.config.risk, self.config.run.seed
        official = payments.scenario != int(PaymentScenario.OFF_PLATFORM)
        legit_idx = xp.flatnonzero(official)
        n_orders = int(legit_idx.shape[0])
        orders_by_scenario = self.backend.to_host(
            bin_sums(payments.scenario[legit_idx].astype(xp.int64), len(SCENARIO_NAMES), xp=xp))
        everyday = draw_everyday(self.config, self.n_users, orders_by_scenario, tick, xp=xp,
                                 amounts=self.everyday_amounts)
        fraud = self.fraud.draw(tick)  # drawn on the device
        real_age = tick - self.ti_created[fraud.payer].astype(xp.int64)
        fraud_age = xp.where(fraud.account_age >= 0, fraud.account_age, real_age)  # -1: the payer's real age
        legit_payer = xp.concatenate([payer[legit_idx], everyday.payer])
        legit_key = xp.concatenate([order_key[legit_idx], everyday.key])
        legit_new_device = rng.bernoulli(rng.stream_key(seed, "risk.new_device", tick), legit_key, r.p_new_device,
                                         xp=xp)
        return TickBatch(
            legit_idx=legit_idx, n_orders=n_orders, n_legit=n_orders + everyday.n, legit_key=legit_key, fraud=fraud,
            payer=xp.concatenate([legit_payer, fraud.payer]),
            merchant=xp.concatenate([payments.merchant[legit_idx],
                                     xp.full(everyday.n, self.n_merchants, dtype=xp.int64), fraud.merchant]),
            amount=xp.concatenate([payments.amount[legit_idx], everyday.amount, fraud.amount]),
            scenario=xp.concatenate([payments.scenario[legit_idx], everyday.scenario, fraud.scenario]),
            new_device=xp.concatenate([legit_new_device, fraud.new_device]),
            account_age=xp.concatenate([tick - self.ti_created[legit_payer].astype(xp.int64), fraud_age]),
            merchant_flag=xp.concatenate([dev(merchant_flag), xp.zeros(1, dtype=xp.bool_)]))  # everyday shops: never

    def _learned(self, tick: int, batch: TickBatch, view: Any) -> tuple[Any, Any, Any, Any]:
        """The learned scorer's side of the tick: refit when due, today's graph of payers and
        shops, the accounts' view, a function giving feature rows, and the learned scores (None
        before the first fit)."""
        xp, r = self.xp, self.config.risk
        self.scorer.maybe_refit(tick)
        signal_payer, signal_day = batch.fraud.signals(tick, xp=xp)
        graph_today = tick_graph(batch.payer, batch.merchant, batch.account_age < r.new_account_ticks,
                                 batch.new_device, self.n_users, self.n_merchants + 1, self.n_merchants, xp=xp,
                                 signal_payer=signal_payer, signal_day=signal_day,
                                 burst=view.burst_of, today=view.merchant_today)
        accounts = account_view(graph_today, view, self.graph, xp=xp)
        common = dict(view=accounts, reference_amount=float(self.reference_fen),
                      new_account_ticks=r.new_account_ticks, day=tick, xp=xp)

        def rows_of(rows: Any) -> Any:
            return features(**batch.columns, **common, rows=rows)

        learned = None
        if self.scorer.fitted:
            learned = feature_scores(**batch.columns, **common, coef=self.scorer.coef, bias=self.scorer.bias)
        return learned, graph_today, accounts, rows_of

    def _read_back(self, tick: int, batch: TickBatch, counts: Any, probe_counts: Any, tables: dict[str, Any],
                   grids: Scored) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
        """What the recorder and the fraudsters read this tick: the tick's counts and the probe's
        in one copy, then each scorer's curve table and thresholds. Returns the ticks row's
        metrics, the risk_curve rows and each typology's intercepted share of the probe."""
        xp, host, n_typ = self.xp, self.backend.to_host, len(TYPOLOGIES)
        host_counts = host(counts if probe_counts is None else xp.concatenate([counts, probe_counts]))
        probe_share = np.full(n_typ, np.nan)
        if probe_counts is not None:
            passed_caught = host_counts[-2 * n_typ:]
            hit, tried = passed_caught[n_typ:], passed_caught[:n_typ] + passed_caught[n_typ:]
            probe_share = np.where(tried > 0, hit / np.maximum(tried, 1), np.nan)
        host_tables = {name: host(table) for name, table in tables.items()}
        host_grids = Scored(*(None if g is None else host(g) for g in (grids.rule, grids.learned)))
        curve = self._curve(tick, host_tables, host_grids)
        metrics = self._metrics(host_counts, batch.n_orders, batch.n_legit, batch.fraud.n,
                                int(batch.scenario.shape[0]), float(host_grids.decisive[0]))
        return metrics, curve, probe_share

    def _log(self, tick: int, batch: TickBatch, score: Any, intercepted: Any) -> dict[str, np.ndarray]:
        """The scored transactions kept for ``transactions/`` (all, or a sample), as host columns."""
        xp, seed, output = self.xp, self.config.run.seed, self.config.output
        # a transaction's key: its order key, an everyday payment's key (from EVERYDAY_KEY_BASE),
        # or for fraud a key above every order key
        key = xp.concatenate([batch.legit_key,
                              FRAUD_KEY_BASE + tick * FRAUD_KEYS_PER_TICK + xp.arange(batch.fraud.n, dtype=xp.int64)])
        keep = xp.ones(key.shape[0], dtype=xp.bool_)
        if output.transactions == "sample":
            keep = rng.bernoulli(rng.stream_key(seed, "output.transactions"), key, output.transactions_sample, xp=xp)
        typology = xp.concatenate([xp.full(batch.n_legit, -1, dtype=xp.int8), batch.fraud.typology])
        columns = {"key": key, "payer": batch.payer, "merchant": batch.merchant, "amount": batch.amount,
                   "scenario": batch.scenario, "new_device": batch.new_device, "account_age": batch.account_age,
                   "score": score, "intercepted": intercepted, "is_fraud": typology >= 0, "typology": typology}
        log = {name: self.backend.to_host(col[keep]) for name, col in columns.items()}
        log["amount"] = log["amount"] / 100.0
        log["merchant"][log["merchant"] == self.n_merchants] = -1  # everyday shops
        return log

    def _legit_history(self, scored: Scored) -> Scored:
        """The confirmed-legitimate scores of past ticks the thresholds come from: every legitimate
        payment's rule score, and (once fitted) the learned scores of the sampled feature rows,
        rescored by the current model."""
        xp = self.xp
        rule = list(self.legit_history)
        out = Scored(xp.concatenate(rule) if rule else xp.zeros(0))
        if scored.learned is not None:
            if self.scores_fitted_at != self.scorer.fitted_at:  # refitted: rescore the kept rows
                self.learned_history_scores.clear()
                for x in self.learned_history:
                    self.learned_history_scores.append(self._learned_scores(x))
                self.scores_fitted_at = self.scorer.fitted_at
            kept = list(self.learned_history_scores)
            out.learned = xp.concatenate(kept) if kept else xp.zeros(0)
        return out

    def _learned_scores(self, x: Any) -> Any:
        """(float64[S]) the current model's scores of feature rows ``x`` (float64[S, K], device)."""
        return linear_scores(lambda a, b: x[a:b], int(x.shape[0]), self.scorer.coef, self.scorer.bias, xp=self.xp)

    def _keep_rows(self, tick: int, rows_of: Any, legit_key: Any, n_legit: int, n_all: int,
                   probe_rows: Any) -> None:
        """Keep this tick's sampled legitimate feature rows for the learned threshold, and its
        training rows (sampled legitimate, every fraud payment, the probe's payments) for the
        learned scorer once their labels arrive; both stay on the device."""
        xp, r = self.xp, self.config.risk
        u = rng.uniform(rng.stream_key(self.config.run.seed, "risk.sample", tick), legit_key, xp=xp)
        keep_rate = min(1.0, r.history_legit_per_tick / max(n_legit, 1))
        train_rate = min(1.0, r.train_legit_per_tick / max(n_legit, 1))
        # the two samples are disjoint where they fit: a threshold set on rows the model was fitted
        # to would sit too low (the fit scores its own legitimate rows lower than new ones)
        kept = rows_of(xp.flatnonzero(u >= 1.0 - keep_rate))
        self.learned_history.append(kept)
        if self.scorer.fitted:
            self.learned_history_scores.append(self._learned_scores(kept))
        train = rows_of(xp.flatnonzero(u < train_rate))
        fraud = rows_of(xp.arange(n_legit, n_all, dtype=xp.int64))
        x = xp.concatenate([train, fraud, *([] if probe_rows is None else [probe_rows])])
        n_train = int(train.shape[0])
        label = xp.arange(x.shape[0], dtype=xp.int64) >= n_train
        weight = xp.where(label, 1.0, 1.0 / train_rate)
        self.scorer.add(LabelledRows(tick, x, label, weight, int(x.shape[0]) - n_train))

    def _probe(self, tick: int, view: Any, flag: Any, threshold: Any,
               accounts: AccountView | None) -> tuple[Scored | None, Any, np.ndarray, Any]:
        """Score the tick's fraud probe (:meth:`FraudInjector.probe`), each payment against the
        tick's traffic plus its own event's payments; nothing here settles or is kept.

        Returns:
            the probe's scores (None without probe), its typologies (int64[P], device), its
            payments passed then intercepted per typology (int64[2 * len(TYPOLOGIES)], device;
            None without probe: the caller reads it back with the tick's other counts), and
            (learning) its feature rows (float64[P, K], device), labelled fraud.
        """
        xp, r = self.xp, self.config.risk
        probe = self.fraud.probe(tick)
        if probe.n == 0:
            return None, None, None, None
        own_payer, own_merchant = probe.own_counts(xp=xp)
        payer, merchant = probe.payer, probe.merchant
        age = xp.where(probe.account_age >= 0, probe.account_age, tick - self.ti_created[payer].astype(xp.int64))
        amount, scenario, new_device = probe.amount, probe.scenario, probe.new_device
        scored = Scored(score_transactions(payer, merchant, amount, scenario, new_device, age, flag, self.state,
                                           self.weights, float(self.reference_fen), r.new_account_ticks, xp=xp,
                                           view=view, own_payer=own_payer, own_merchant=own_merchant))
        rows = None
        if accounts is not None:
            own = self._own_graph(probe, age, tick)
            rows = features(payer, merchant, amount, scenario, new_device, age, flag, accounts,
                            float(self.reference_fen), r.new_account_ticks, tick, xp=xp, own=own)
            if self.scorer.fitted:
                scored.learned = self._learned_scores(rows)
        # reduced on the device: only the payments tried and caught per typology come back
        typology = probe.typology.astype(xp.int64)
        n_typ = len(TYPOLOGIES)
        caught = (scored.decisive > threshold).astype(xp.int64)
        return scored, typology, bin_sums(caught * n_typ + typology, 2 * n_typ, xp=xp), rows

    def _own_graph(self, probe: FraudBatch, age: Any, tick: int) -> tuple[TickGraph, Any, Any]:
        """The counts each probe payment's own event adds (a :class:`TickGraph` over compact
        (event, payer) and (event, merchant) ids), and each payment's compact ids (device)."""
        xp, r = self.xp, self.config.risk
        own_payer, own_merchant = probe.own_ids(probe.payer, xp=xp), probe.own_ids(probe.merchant, xp=xp)
        n_payers, n_merchants = (int(v) + 1 for v in self.backend.to_host(
            xp.stack([own_payer.max(), own_merchant.max()])))
        signal_payer, signal_day = probe.signals(tick, xp=xp, payer=own_payer)
        own = tick_graph(own_payer, own_merchant, age < r.new_account_ticks, probe.new_device,
                         n_payers, n_merchants, n_merchants, xp=xp, signal_payer=signal_payer,
                         signal_day=signal_day)
        return own, own_payer, own_merchant

    def _curve_tables(self, scored: Scored, grids: Scored, fraud_typology: Any, n_legit: int,
                      probe: Scored | None, probe_typology: Any) -> dict[str, Any]:
        """For each scorer, the payments of each of :data:`CURVE_CLASSES` above each threshold of
        :data:`FPR_GRID` (``grids``: float64[1 + G] per scorer on the device, the engine's own
        target first, from its legitimate history), then each class's total: int64[C, G + 1] on
        the device, by scorer name ("linear", then "learned" once it scores)."""
        xp = self.xp
        n_typ = len(TYPOLOGIES)
        label = xp.concatenate([xp.zeros(n_legit, dtype=xp.int64), fraud_typology.astype(xp.int64) + 1])
        if probe is not None:
            label = xp.concatenate([label, probe_typology + 1 + n_typ])
        tables: dict[str, Any] = {}
        for name in ("linear", "learned"):
            score = scored.rule if name == "linear" else scored.learned
            if score is None:
                continue
            if probe is not None:
                score = xp.concatenate([score, probe.rule if name == "linear" else probe.learned])
            thresholds = (grids.rule if name == "linear" else grids.learned)[1:]
            tables[name] = counts_above(score, label, thresholds, len(CURVE_CLASSES), xp=xp)
        return tables

    def _curve(self, tick: int, tables: dict[str, np.ndarray], host_grids: Scored) -> dict[str, np.ndarray]:
        """The tick's ``risk_curve`` rows from the tables of :meth:`_curve_tables` and the grids'
        thresholds (``host_grids``: float64[1 + G] per scorer), both on the host."""
        g = len(FPR_GRID)
        parts: list[dict[str, np.ndarray]] = []
        for name, table in tables.items():
            host = (host_grids.rule if name == "linear" else host_grids.learned)[1:]
            n_classes = len(CURVE_CLASSES)
            parts.append({
                "scorer": np.full(n_classes * g, name, dtype=object),
                "source": np.repeat(np.asarray([c[0] for c in CURVE_CLASSES], dtype=object), g),
                "typology": np.repeat(np.asarray([c[1] for c in CURVE_CLASSES], dtype=object), g),
                "target_fpr": np.tile(np.asarray(FPR_GRID, dtype=np.float64), n_classes),
                "threshold": np.tile(np.where(np.isfinite(host), host, np.nan), n_classes),
                "n_above": table[:, :g].ravel().astype(np.int64),
                "n": np.repeat(table[:, g], g).astype(np.int64)})
        rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        rows["tick"] = np.full(rows["n"].shape[0], tick, dtype=np.int32)
        return rows

    def _metric_counts(self, scenario: Any, intercepted: Any, n_orders: int, n_legit: int, fraud: FraudBatch,
                       fraud_amount: Any, fraud_passed: Any, *, xp: ModuleType) -> Any:
        """(int64[4 + 2 S + 2 T], device) the tick's counts, for :meth:`_metrics`: false positives
        among orders and among all legitimate payments, fraud intercepted, fraud loss (fen); the
        payments passed then intercepted per scenario (S); the fraud passed then intercepted per
        typology (T).

        ``scenario`` and ``intercepted`` are laid out [orders (n_orders), everyday, fraud], the
        first ``n_legit`` legitimate; ``fraud_amount`` (int64[F]) is the fraud batch's amounts.
        """
        k, n_typ = len(SCENARIO_NAMES), len(TYPOLOGIES)
        caught = intercepted.astype(xp.int64)
        sums = xp.stack([caught[:n_orders].sum(), caught[:n_legit].sum(), caught[n_legit:].sum(),
                         xp.where(fraud_passed, fraud_amount, 0).sum()])
        by_scenario = bin_sums(caught * k + scenario.astype(xp.int64), 2 * k, xp=xp)
        by_typology = bin_sums((~fraud_passed).astype(xp.int64) * n_typ + fraud.typology.astype(xp.int64), 2 * n_typ,
                               xp=xp)
        return xp.concatenate([sums.astype(xp.int64), by_scenario, by_typology])

    def _metrics(self, counts: np.ndarray, n_orders: int, n_legit: int, n_fraud: int, n_all: int,
                 threshold: float) -> dict[str, float | None]:
        """The tick's metrics from :meth:`_metric_counts` read back (``counts``, host). Keys are
        ``ticks`` columns of :mod:`weishang.model.columns`; a ratio over nothing is None."""
        k, n_typ = len(SCENARIO_NAMES), len(TYPOLOGIES)
        fp_orders, fp, tp, loss = (int(v) for v in counts[:4])
        passed_by, caught_by = counts[4:4 + k], counts[4 + k:4 + 2 * k]
        n_by = passed_by + caught_by
        metrics: dict[str, float | None] = {}
        for i, name in enumerate(SCENARIO_NAMES):
            metrics[f"n_tx_{name}"] = int(n_by[i])
            metrics[f"n_intercepted_{name}"] = int(caught_by[i])
            metrics[f"interception_rate_{name}"] = ratio(int(caught_by[i]), int(n_by[i]))
        metrics.update({
            "n_screened": int(n_by.sum()), "n_intercepted": int(caught_by.sum()),
            "n_everyday": n_legit - n_orders, "n_orders_intercepted": fp_orders,
            "n_fraud": n_fraud, "n_fraud_intercepted": tp, "n_false_positives": fp,
            "false_positive_rate": ratio(fp, n_legit),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, n_fraud),
            "illicit_share": ratio(n_fraud, n_all),
            "fraud_loss": loss / 100.0,
            "risk_threshold": threshold,
        })
        # per typology, passed then intercepted
        by_typology = counts[4 + 2 * k:4 + 2 * k + 2 * n_typ]
        for t, name in enumerate(TYPOLOGIES):
            metrics[f"n_fraud_{name}"] = int(by_typology[t] + by_typology[n_typ + t])
            metrics[f"n_fraud_intercepted_{name}"] = int(by_typology[n_typ + t])
        return metrics
