"""The platform's risk engine in the tick: official payments, everyday WeChat Pay payments
(:mod:`weishang.model.everyday`) and injected fraud are scored in bulk (:mod:`weishang.kernels.risk`), payments
above the threshold are intercepted and do not settle, and the threshold is reset from
confirmed-legitimate scores of past ticks to hold the false-positive rate (SPEC section 3).
Off-platform payments are never seen. Everyday payments go to one merchant slot past the
modelled merchants (shops outside micro-commerce); the transactions log writes it as -1.

Labels arrive one tick late, as chargebacks and reports would: the threshold a tick uses comes
only from earlier ticks' legitimate scores.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..kernels import rng
from ..kernels.risk import RiskState, RiskWeights, score_transactions, threshold_for_fpr, tick_view, update_state
from .codes import OFFICIAL_SCENARIOS, PaymentScenario
from .columns import ratio
from .config import ScenarioConfig
from .everyday import amount_table, draw_everyday
from .fraud import TYPOLOGIES, FraudBatch, FraudInjector
from .payments import Orders
from .plan import Mechanism

#: a merchant onboarded fewer ticks ago than this is new to the risk engine
NEW_MERCHANT_TICKS = 7
SCENARIO_NAMES = tuple(s.label for s in OFFICIAL_SCENARIOS)
#: fraud transactions' keys start above every order key (cascade key x N + buyer < 2^60)
FRAUD_KEY_BASE = 1 << 60
FRAUD_KEYS_PER_TICK = 1 << 24


@dataclass
class Screening:
    """One tick's risk decisions.

    Attributes:
        legit_passed: (bool[O]) on the device: each legitimate payment that was not intercepted
            (off-platform payments always pass: nobody screens them).
        fraud: the tick's injected fraud (host); fraud_passed (bool[F], device): not intercepted.
        metrics: per-tick counts and rates for the ticks table (host numbers).
        log: the scored transactions kept for ``transactions/`` (host columns), or None when
            ``output.transactions`` is "none".
    """

    legit_passed: Any
    fraud: FraudBatch
    fraud_passed: Any
    metrics: dict[str, float | None]
    log: dict[str, np.ndarray] | None = None


def weights_from(config: ScenarioConfig) -> RiskWeights:
    r = config.risk
    return RiskWeights(payer_velocity=r.w_payer_velocity, payer_burst=r.w_payer_burst,
                       amount_ratio=r.w_amount_ratio, new_account=r.w_new_account, new_device=r.w_new_device,
                       merchant_velocity=r.w_merchant_velocity, merchant_flag=r.w_merchant_flag,
                       scenario=(0.0, r.w_scenario_mini_program, r.w_scenario_cross_border))


def draw_fraud_merchants(seed: int, n_merchants: int, share: float) -> np.ndarray:
    """(int64[K]) the merchants that brush fake orders and serve as mules, sorted."""
    n_fraud = round(share * n_merchants)
    order = np.argsort(rng.uniform(rng.stream_key(seed, "fraud.merchants"), n_merchants), kind="stable")
    return np.sort(order[:n_fraud]).astype(np.int64)


class RiskEngine(Mechanism):
    """Scores, intercepts and learns its threshold; owns the fraud injector.

    State: the payers' and merchants' velocity windows (``state``), the legitimate scores of
    recent ticks the threshold is set from (``legit_history``) and the fraudsters' adaptation
    (``fraud``).
    """

    name = "risk"
    engine = "kernel"
    sections = ("risk", "fraud", "payments")
    does = "orders, everyday payments and injected fraud scored in bulk; above the threshold: intercepted"
    STATE = ("state", "legit_history", "fraud")

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
                                   self.reference_fen, config.run.seed)
        self.ti_created = pop.state["ti_created"]

    def merchant_flag(self, tick: int) -> np.ndarray:
        """(bool[M]) merchants the engine watches: under rectification, or onboarded recently."""
        merchants = self.model.merchants
        return (merchants.ti_rectify_until > tick) | (tick - merchants.ti_onboarded < NEW_MERCHANT_TICKS)

    def step(self, tick: int, payments: Orders) -> Screening:
        return self.screen(payments.payments, payments.key, payments.buyer, self.merchant_flag(tick), tick)

    def screen(self, payments: Any, order_key: Any, payer: Any, merchant_flag: np.ndarray, tick: int) -> Screening:
        """Score this tick's official payments, everyday payments and fraud; intercept above the
        threshold. Transactions are laid out as [orders (O'), everyday (E), fraud (F)].

        Args:
            payments: the tick's :class:`~weishang.model.payments.PaymentBatch`; order_key and
                payer (int64[O], device) of each; merchant_flag (bool[M], host).
        """
        xp, dev, r, seed = self.xp, self.backend.to_device, self.config.risk, self.config.run.seed
        official = payments.scenario != int(PaymentScenario.OFF_PLATFORM)
        legit_idx = xp.flatnonzero(official)
        n_orders = int(legit_idx.shape[0])
        orders_by_scenario = self.backend.to_host(
            xp.bincount(payments.scenario[legit_idx].astype(xp.int64), minlength=len(SCENARIO_NAMES)))
        everyday = draw_everyday(self.config, self.n_users, orders_by_scenario, tick, xp=xp,
                                 amounts=self.everyday_amounts)
        n_legit = n_orders + everyday.n
        fraud = self.fraud.draw(tick)
        fraud_payer, fraud_amount, fraud_typology = dev(fraud.payer), dev(fraud.amount), dev(fraud.typology)
        real_age = tick - self.ti_created[fraud_payer].astype(xp.int64)
        stated_age = dev(fraud.account_age)  # -1: the payer account's real age
        fraud_age = xp.where(stated_age >= 0, stated_age, real_age)
        legit_payer = xp.concatenate([payer[legit_idx], everyday.payer])
        legit_key = xp.concatenate([order_key[legit_idx], everyday.key])
        payer_all = xp.concatenate([legit_payer, fraud_payer])
        merchant_all = xp.concatenate([payments.merchant[legit_idx],
                                       xp.full(everyday.n, self.n_merchants, dtype=xp.int64), dev(fraud.merchant)])
        amount_all = xp.concatenate([payments.amount[legit_idx], everyday.amount, fraud_amount])
        scenario_all = xp.concatenate([payments.scenario[legit_idx], everyday.scenario, dev(fraud.scenario)])
        legit_new_device = rng.bernoulli(rng.stream_key(seed, "risk.new_device", tick), legit_key, r.p_new_device,
                                         xp=xp)
        new_device_all = xp.concatenate([legit_new_device, dev(fraud.new_device)])
        age_all = xp.concatenate([tick - self.ti_created[legit_payer].astype(xp.int64), fraud_age])
        flag = xp.concatenate([dev(merchant_flag), xp.zeros(1, dtype=xp.bool_)])  # everyday shops: never flagged
        view = tick_view(payer_all, merchant_all, self.state, float(self.reference_fen), xp=xp)
        score = score_transactions(payer_all, merchant_all, amount_all, scenario_all, new_device_all, age_all,
                                   flag, self.state, self.weights, float(self.reference_fen),
                                   r.new_account_ticks, xp=xp, view=view)
        history = list(self.legit_history)
        threshold = threshold_for_fpr(xp.concatenate(history) if history else xp.zeros(0), r.target_fpr, xp=xp)
        intercepted = score > threshold
        probe_share = self._probe(tick, view, flag, threshold)
        update_state(self.state, payer_all, merchant_all, amount_all, tick, xp=xp)
        self.legit_history.append(score[:n_legit])

        legit_passed = xp.ones(payments.scenario.shape[0], dtype=xp.bool_)
        legit_passed[legit_idx] = ~intercepted[:n_orders]
        fraud_passed = ~intercepted[n_legit:]
        metrics = self._metrics(scenario_all, intercepted, n_orders, n_legit, fraud, fraud_amount, fraud_passed,
                                threshold, xp=xp)
        self.fraud.react(probe_share)
        log = None
        if self.config.output.transactions != "none":
            # a transaction's key: its order key, an everyday payment's key (from EVERYDAY_KEY_BASE),
            # or for fraud a key above every order key
            key = xp.concatenate([legit_key,
                                  FRAUD_KEY_BASE + tick * FRAUD_KEYS_PER_TICK + xp.arange(fraud.n, dtype=xp.int64)])
            keep = xp.ones(key.shape[0], dtype=xp.bool_)
            if self.config.output.transactions == "sample":
                keep = rng.bernoulli(rng.stream_key(seed, "output.transactions"), key,
                                     self.config.output.transactions_sample, xp=xp)
            typology = xp.concatenate([xp.full(n_legit, -1, dtype=xp.int8), fraud_typology])
            columns = {"key": key, "payer": payer_all, "merchant": merchant_all, "amount": amount_all,
                       "scenario": scenario_all, "new_device": new_device_all, "account_age": age_all,
                       "score": score, "intercepted": intercepted, "is_fraud": typology >= 0, "typology": typology}
            log = {name: self.backend.to_host(col[keep]) for name, col in columns.items()}
            log["amount"] = log["amount"] / 100.0
            log["merchant"][log["merchant"] == self.n_merchants] = -1  # everyday shops
        return Screening(legit_passed, fraud, fraud_passed, metrics, log)

    def _probe(self, tick: int, view: Any, flag: Any, threshold: float) -> np.ndarray:
        """(float64[len(TYPOLOGIES)]) share of each typology's probe (:meth:`FraudInjector.probe`)
        the engine would intercept this tick, each payment scored on the tick's traffic plus its
        own event's payments; NaN for a typology without probe. Nothing here settles or is kept."""
        xp, dev = self.xp, self.backend.to_device
        probe = self.fraud.probe(tick)
        if probe.n == 0:
            return np.full(len(TYPOLOGIES), np.nan)
        own_payer, own_merchant = probe.own_counts()
        payer = dev(probe.payer)
        stated_age = dev(probe.account_age)
        age = xp.where(stated_age >= 0, stated_age, tick - self.ti_created[payer].astype(xp.int64))
        score = score_transactions(payer, dev(probe.merchant), dev(probe.amount), dev(probe.scenario),
                                   dev(probe.new_device), age, flag, self.state, self.weights,
                                   float(self.reference_fen), self.config.risk.new_account_ticks, xp=xp, view=view,
                                   own_payer=dev(own_payer), own_merchant=dev(own_merchant))
        # reduced on the device: only a count per typology comes back
        caught = (score > threshold).astype(xp.float64)
        hit = self.backend.to_host(xp.bincount(dev(probe.typology).astype(xp.int64), weights=caught,
                                               minlength=len(TYPOLOGIES)))
        tried = np.bincount(probe.typology, minlength=len(TYPOLOGIES))
        return np.where(tried > 0, hit / np.maximum(tried, 1), np.nan)

    def _metrics(self, scenario: Any, intercepted: Any, n_orders: int, n_legit: int, fraud: FraudBatch,
                 fraud_amount: Any, fraud_passed: Any, threshold: float, *, xp: ModuleType) -> dict[str, float | None]:
        """The tick's counts, reduced on the device: only a few numbers come back to the host.
        Keys are ``ticks`` columns of :mod:`weishang.model.columns`; a ratio over nothing is None.

        ``scenario`` and ``intercepted`` are laid out [orders (n_orders), everyday, fraud], the
        first ``n_legit`` legitimate; ``fraud_amount`` (int64[F]) is the fraud batch's amounts on
        the device.
        """
        host = self.backend.to_host
        k = len(SCENARIO_NAMES)
        scen = scenario.astype(xp.int64)
        n_by = host(xp.bincount(scen, minlength=k))
        caught_by = host(xp.bincount(scen[intercepted], minlength=k))
        metrics: dict[str, float] = {}
        for i, name in enumerate(SCENARIO_NAMES):
            metrics[f"n_tx_{name}"] = int(n_by[i])
            metrics[f"n_intercepted_{name}"] = int(caught_by[i])
            metrics[f"interception_rate_{name}"] = ratio(int(caught_by[i]), int(n_by[i]))
        fp_orders = int(intercepted[:n_orders].sum())
        fp = int(intercepted[:n_legit].sum())
        tp = int(intercepted[n_legit:].sum())
        n_fraud = fraud.n
        loss = int(xp.where(fraud_passed, fraud_amount, 0).sum())
        n_all = int(scenario.shape[0])
        metrics.update({
            "n_everyday": n_legit - n_orders, "n_orders_intercepted": fp_orders,
            "n_fraud": n_fraud, "n_fraud_intercepted": tp, "n_false_positives": fp,
            "false_positive_rate": ratio(fp, n_legit),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, n_fraud),
            "illicit_share": ratio(n_fraud, n_all),
            "fraud_loss": loss / 100.0,
            "risk_threshold": threshold,
        })
        for t, name in enumerate(TYPOLOGIES):
            metrics[f"n_fraud_{name}"] = int((fraud.typology == t).sum())
        return metrics
