"""Injected fraud with ground-truth labels (SPEC section 3), from typologies in the literature:

* ``ato_mule``: account takeover then cash-out to a mule merchant (PaySim's TRANSFER/CASH_OUT):
  large payments from an old account on a new device; the takeover leaves a signal (a login
  from a new device, a password reset) on the victim's account up to a few days before;
* ``brushing``: fake orders (刷单) a fraudulent merchant places through sockpuppet accounts:
  small amounts from brand-new accounts, a spike in the merchant's volume. Fraudulent merchants
  brush in rings of ``brushing_ring`` shops sharing a pool of ``brushing_pool`` sockpuppets, so a
  puppet pays several of the ring's shops (the buyers the shops share are what gives a ring away);
* ``burst``: a burst of large orders by one payer within a tick;
* ``laundering_fan_in`` / ``laundering_fan_out``: cross-border rings (AMLSim's fan-in and fan-out):
  many payers into one merchant, or one payer out to many, amounts just under 50,000 CNY.

Fraudsters react to interception: after a tick in which a typology's payments were intercepted
at a rate s, its intensity falls by ``p_stop_after_interception * s`` (some rings stop) and its
stealth rises by ``adapt_step * s`` (the rest send smaller amounts, fewer at a time, from
familiar devices, through older sockpuppets and larger puppet pools, waiting longer after a
takeover before cashing out). New rings replace ``entry_rate`` of the stopped
volume each tick, so a typology the engine keeps catching settles where entry balances stops
(intensity e / (e + p s)) instead of dying out.

The rate s is what the whole of WeChat's fraud of that kind met that tick, not what the few
payments of a small population met: each tick a *probe* of :data:`PROBE_PAYMENTS` payments per
typology, drawn like the real ones but on streams of their own, is scored by the engine against
the tick's threshold (never settled, never counted, never added to the engine's history), and s
is the share of the probe intercepted. At full scale (thousands of rings and bursts a day) the
realised share of a tick is that rate; at 200k users a burst comes every two months, and a rule
reacting to realised shares reacted only in the ticks that had attempts, so rare fraud thrived
at 200k and died out at 1M. The probe makes the reaction the same at every N.

Sockpuppets are not extra users: their payments are attributed to random user ids with the
account age of a sockpuppet, so velocity features see them but the population stays fixed.

The draws are counter-based (:mod:`weishang.kernels.rng`) and made on the device (``xp``): the
batches are born where they are scored, and NumPy and CuPy draw the same payments. The host draws
only the tick's counts (events, rings), which it needs to size the batch anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..kernels import rng
from ..kernels.backend import scatter_add
from .config import FraudConfig
from .state import Stateful

TYPOLOGIES = ("ato_mule", "brushing", "burst", "laundering_fan_in", "laundering_fan_out")
ATO, BRUSHING, BURST, FAN_IN, FAN_OUT = range(len(TYPOLOGIES))
#: just under the 50,000 CNY line that draws scrutiny, in fen
LAUNDERING_AMOUNT = 4_900_000
#: most sockpuppets a brushing ring's pool can grow to (pool ids are drawn per ring and slot)
POOL_MAX = 1 << 12
#: days an adapted takeover waits between the takeover and the cash-out, at most
TAKEOVER_WAIT_MAX = 6
#: payments of each typology in the tick's probe (at least: whole takeovers, rings and bursts);
#: the interception share a typology reacts to has a standard error of at most 1 / (2 sqrt(256))
PROBE_PAYMENTS = 256


@dataclass
class FraudBatch:
    """One tick's fraudulent payments (arrays on the injector's device).

    Attributes:
        payer, merchant: (int64[F]); amount (int64[F]) fen; scenario (int8[F]) 0 QR, 1
        mini-program, 2 cross-border; new_device (bool[F]); account_age (int64[F]) ticks, or -1
        for the payer's real age; typology (int8[F]) index into :data:`TYPOLOGIES`; event
        (int64[F]) the takeover, brushing order, ring or burst each payment belongs to (events
        numbered from 0 in the order of the batch); signal_lag (int64[F]) days since the takeover
        signal on the payer's account, -1 when the payment brings none.
    """

    payer: Any
    merchant: Any
    amount: Any
    scenario: Any
    new_device: Any
    account_age: Any
    typology: Any
    event: Any
    signal_lag: Any

    @property
    def n(self) -> int:
        return int(self.payer.shape[0])

    def own_ids(self, account: Any, *, xp: ModuleType = np) -> Any:
        """(int64[F]) each payment's (event, ``account``) pair numbered 0, 1, ... in the pairs'
        order (event, then account): compact ids of what each event adds to an account."""
        if self.n == 0:
            return xp.zeros(0, dtype=xp.int64)
        order = xp.lexsort(xp.stack([account, self.event]))  # the last key sorts first
        event, account = self.event[order], account[order]
        first = xp.empty(self.n, dtype=xp.bool_)
        first[0] = True
        first[1:] = (event[1:] != event[:-1]) | (account[1:] != account[:-1])
        ids = xp.empty(self.n, dtype=xp.int64)
        ids[order] = xp.cumsum(first) - 1
        return ids

    def own_counts(self, *, xp: ModuleType = np) -> tuple[Any, Any]:
        """(int64[F], int64[F]) payments of each payment's own event by the same payer and to the
        same merchant (itself included): what the event adds to the engine's counts today."""
        def count(account: Any) -> Any:
            ids = self.own_ids(account, xp=xp)
            counts = xp.zeros(self.n, dtype=xp.int64)
            scatter_add(counts, ids, xp.ones(self.n, dtype=xp.int64), xp=xp)
            return counts[ids]
        return count(self.payer), count(self.merchant)

    def signals(self, day: int, *, xp: ModuleType = np, payer: Any = None) -> tuple[Any, Any]:
        """(int64[S], int64[S]) the distinct payers with a takeover signal, ascending, and the day
        of each one's latest. ``payer`` (int64[F]): the payers to group by (the batch's own when
        None; compact ids for a probe's own events)."""
        payer = self.payer if payer is None else payer
        has = self.signal_lag >= 0
        who, when = payer[has], day - self.signal_lag[has]
        if who.shape[0] == 0:
            return who.astype(xp.int64), when.astype(xp.int64)
        order = xp.lexsort(xp.stack([when, who]))  # by payer, the latest day last
        who, when = who[order], when[order]
        last = xp.empty(who.shape[0], dtype=xp.bool_)
        last[-1] = True
        last[:-1] = who[1:] != who[:-1]
        return who[last].astype(xp.int64), when[last].astype(xp.int64)


class FraudInjector(Stateful):
    """Draws each tick's fraud and adapts it to what the risk engine intercepted.

    State: each typology's ``intensity`` and ``stealth`` (float64[len(TYPOLOGIES)]).

    Args:
        cfg: the fraud section of the scenario.
        n_users: N.
        fraud_merchants: (int64[K], host) merchants that brush and serve as mules, sorted.
        n_merchants: M, for bursts and fan-out to ordinary merchants.
        reference_fen: the median price in fen (amounts are multiples of it).
        seed: base seed.
        xp: the array module the batches are drawn on (NumPy when omitted).
    """

    def __init__(self, cfg: FraudConfig, n_users: int, fraud_merchants: np.ndarray, n_merchants: int,
                 reference_fen: int, seed: int, *, xp: ModuleType = np) -> None:
        self.cfg, self.n_users, self.seed, self.xp = cfg, n_users, seed, xp
        self.n_fraud_merchants = int(fraud_merchants.shape[0])
        self.fraud_merchants = xp.asarray(fraud_merchants)
        self.n_merchants = n_merchants
        self.reference_fen = reference_fen
        self.intensity = np.ones(len(TYPOLOGIES))
        self.stealth = np.zeros(len(TYPOLOGIES))

    STATE = ("intensity", "stealth")

    def _count(self, per_million: float, typology: int, tick: int) -> int:
        expected = per_million * self.n_users / 1e6 * self.intensity[typology]
        u = rng.uniform(rng.stream_key(self.seed, f"fraud.{TYPOLOGIES[typology]}.count", tick), 1)[0]
        return int(np.floor(expected + u))

    def draw(self, tick: int) -> FraudBatch:
        """The tick's fraud: each typology's events at its expected rate (per million users, per
        fraud merchant for brushing) times its intensity."""
        cfg, k, xp = self.cfg, self.n_fraud_merchants, self.xp
        events = dict.fromkeys(range(len(TYPOLOGIES)), 0)
        brushers = xp.zeros(0, dtype=xp.int64)
        if k:
            events[ATO] = self._count(cfg.ato_per_million, ATO, tick)
            # drawn on the host (K numbers, the same draws as on the device): the batch's size
            orders = np.floor(cfg.brushing_orders * self.intensity[BRUSHING]
                              + rng.uniform(rng.stream_key(self.seed, "fraud.brushing.n", tick), k))
            brushers = self.fraud_merchants[xp.asarray(np.repeat(np.arange(k, dtype=np.int64),
                                                                 orders.astype(np.int64)))]
            rings = self._count(cfg.laundering_per_million, FAN_IN, tick)
            fan_in = rng.bernoulli(rng.stream_key(self.seed, "fraud.laundering.kind", tick), rings, 0.5)
            events[FAN_IN], events[FAN_OUT] = int(fan_in.sum()), int((~fan_in).sum())
        events[BURST] = self._count(cfg.burst_per_million, BURST, tick)
        return self._batch(tick, "fraud", events, brushers)

    def probe(self, tick: int) -> FraudBatch:
        """:data:`PROBE_PAYMENTS` payments (at least) of every typology, drawn as :meth:`draw`
        would at the current stealth, on streams of their own: what fraud of each kind met this
        tick, whatever N (see the module docstring). Empty for the typologies that need fraud
        merchants when there are none."""
        cfg, k, xp = self.cfg, self.n_fraud_merchants, self.xp
        quiet = 1.0 - 0.7 * self.stealth
        per_event = {ATO: cfg.ato_payments, FAN_IN: max(2, int(round(cfg.laundering_fan * quiet[FAN_IN]))),
                     FAN_OUT: max(2, int(round(cfg.laundering_fan * quiet[FAN_OUT]))),
                     BURST: self._burst_size()}
        events = {t: -(-PROBE_PAYMENTS // size) for t, size in per_event.items()}
        brushers = xp.zeros(0, dtype=xp.int64)
        if k:
            key = rng.stream_key(self.seed, "fraud.probe.brushing.merchant", tick)
            brushers = xp.sort(self.fraud_merchants[rng.integers(key, PROBE_PAYMENTS, k, xp=xp)])
        else:
            events.update({ATO: 0, FAN_IN: 0, FAN_OUT: 0})
        return self._batch(tick, "fraud.probe", events, brushers)

    def puppets(self, brushers: Any, u: Any) -> Any:
        """(int64[B]) the sockpuppet paying each brushing order of the fraud merchants
        ``brushers`` (int64[B]), picked by ``u`` (float64[B] in [0, 1)) from its ring's pool.
        Rings are runs of ``brushing_ring`` merchants in :attr:`fraud_merchants` order; a ring's
        pool holds ``brushing_pool`` puppets, up to five times as many as brushing grows
        stealthier, and keeps its puppets from day to day (pool ids are drawn per ring and slot)."""
        xp = self.xp
        ring = xp.searchsorted(self.fraud_merchants, brushers) // self.cfg.brushing_ring
        size = min(POOL_MAX, max(1, int(round(self.cfg.brushing_pool * (1 + 4 * self.stealth[BRUSHING])))))
        slot = xp.minimum((u * size).astype(xp.int64), size - 1)
        return rng.integers(rng.stream_key(self.seed, "fraud.brushing.pool"), ring * POOL_MAX + slot, self.n_users,
                            xp=xp)

    def _burst_size(self) -> int:
        return max(1, int(round(self.cfg.burst_orders * (1.0 - 0.5 * self.stealth[BURST]))))

    def _batch(self, tick: int, stream: str, events: dict[int, int], brushers: Any) -> FraudBatch:
        """The payments of ``events[t]`` takeovers, rings (fan-in, fan-out) and bursts, and of one
        brushing order per entry of ``brushers`` (int64[B], fraud merchants, device), on streams
        named ``stream``."""
        cfg, seed, n, xp = self.cfg, self.seed, self.n_users, self.xp
        parts: list[dict[str, Any]] = []

        def key(name: str) -> int:
            return rng.stream_key(seed, f"{stream}.{name}", tick)

        def uniform(name: str, m: int) -> Any:
            return rng.uniform(key(name), m, xp=xp)

        def integers(name: str, m: int, high: int) -> Any:
            return rng.integers(key(name), m, high, xp=xp)

        def column(value: int | Any, m: int, dtype: Any) -> Any:
            """A plain number repeated, or an array, as ``dtype``[m]."""
            return xp.full(m, value, dtype=dtype) if isinstance(value, int) else value.astype(dtype)

        n_events = 0

        def add(typology: int, payer, merchant, amount, scenario: int | Any, p_new_device: float, account_age,
                event, n_new_events: int, signal_lag: int | Any = -1) -> None:
            nonlocal n_events
            m = int(payer.shape[0])
            parts.append(dict(payer=payer.astype(xp.int64), merchant=merchant.astype(xp.int64),
                              amount=xp.maximum(amount, 100).astype(xp.int64),
                              scenario=column(scenario, m, xp.int8),
                              new_device=rng.bernoulli(key(f"{TYPOLOGIES[typology]}.device"), m, p_new_device, xp=xp),
                              account_age=column(account_age, m, xp.int64),
                              typology=xp.full(m, typology, dtype=xp.int8),
                              event=n_events + event.astype(xp.int64),
                              signal_lag=column(signal_lag, m, xp.int64)))
            n_events += n_new_events if m else 0

        def each(n_groups: int, size: int) -> Any:
            """(int64[n_groups * size]) 0, 0, ..., 1, 1, ...: the group of each payment."""
            return xp.repeat(xp.arange(n_groups, dtype=xp.int64), size)

        quiet = 1.0 - 0.7 * self.stealth  # stealthier fraud looks more like ordinary payments
        k = self.n_fraud_merchants
        if k:
            victims = events[ATO]
            m = victims * cfg.ato_payments
            payer = xp.repeat(integers("ato.victim", victims, n), cfg.ato_payments)
            mule = self.fraud_merchants[integers("ato.mule", m, k)]
            amount = self.reference_fen * cfg.ato_amount_multiple * quiet[ATO] * (0.5 + uniform("ato.amount", m))
            # the takeover's signal: today, or up to TAKEOVER_WAIT_MAX days before as the ring adapts
            wait = xp.repeat(integers("ato.wait", victims, 1 + int(round(TAKEOVER_WAIT_MAX * self.stealth[ATO]))),
                             cfg.ato_payments)
            add(ATO, payer, mule, amount, 1, 0.9 * quiet[ATO], -1, each(victims, cfg.ato_payments), victims, wait)

            m = int(brushers.shape[0])
            payer = self.puppets(brushers, uniform("brushing.puppet", m))
            amount = self.reference_fen * (0.5 + uniform("brushing.amount", m))
            # adapted brushers use aged sockpuppets
            age = integers("brushing.age", m, 1 + int(30 * (1 + 10 * self.stealth[BRUSHING])))
            # paid in the shop's mini-program, or to the merchant's personal QR code (common in micro-commerce)
            scenario = xp.where(uniform("brushing.scenario", m) < cfg.brushing_share_qr, 0, 1)
            add(BRUSHING, payer, brushers, amount, scenario, 0.5 * quiet[BRUSHING], age,
                xp.arange(m, dtype=xp.int64), m)

            for typology in (FAN_IN, FAN_OUT):
                r = events[typology]
                name = TYPOLOGIES[typology]
                fan = max(2, int(round(cfg.laundering_fan * quiet[typology])))
                m = r * fan
                ring = each(r, fan)
                hub_payer = integers(f"{name}.hub", r, n)[ring]
                hub_merchant = self.fraud_merchants[integers(f"{name}.mule", r, k)][ring]
                spread_payer = integers(f"{name}.payers", m, n)
                spread_merchant = integers(f"{name}.merchants", m, self.n_merchants)
                payer = spread_payer if typology == FAN_IN else hub_payer
                merchant = hub_merchant if typology == FAN_IN else spread_merchant
                amount = LAUNDERING_AMOUNT * quiet[typology] * (0.9 + 0.1 * uniform(f"{name}.amt", m))
                add(typology, payer, merchant, amount, 2, 0.2 * quiet[typology], -1, ring, r)

        bursts = events[BURST]
        size = self._burst_size()
        m = bursts * size
        payer = xp.repeat(integers("burst.payer", bursts, n), size)
        merchant = integers("burst.merchant", m, self.n_merchants)
        amount = self.reference_fen * cfg.burst_amount_multiple * quiet[BURST] * (0.5 + uniform("burst.amount", m))
        add(BURST, payer, merchant, amount, 0, 0.3 * quiet[BURST], -1, each(bursts, size), bursts)

        fields = ("payer", "merchant", "amount", "scenario", "new_device", "account_age", "typology", "event",
                  "signal_lag")
        return FraudBatch(**{f: xp.concatenate([p[f] for p in parts]) for f in fields})

    def react(self, intercepted_share: np.ndarray) -> None:
        """Adapt to one tick's interception rates (float64[len(TYPOLOGIES)], from the probe);
        NaN for a typology that had no probe leaves it as it is."""
        share = np.nan_to_num(np.asarray(intercepted_share, dtype=np.float64), nan=0.0)
        self.intensity *= 1.0 - self.cfg.p_stop_after_interception * share
        self.intensity += self.cfg.entry_rate * (1.0 - self.intensity)
        self.stealth = np.minimum(1.0, self.stealth + self.cfg.adapt_step * share)
