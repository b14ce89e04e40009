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

from ....kernels import fused, rng
from ...config import FraudConfig
from ...state import Stateful

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
#: the order of a batch's payments: takeovers, brushing orders, fan-in rings, fan-out rings, bursts
SEGMENTS = (ATO, BRUSHING, FAN_IN, FAN_OUT, BURST)
#: words of a batch table (:meth:`FraudInjector.batch_table`) before the segments, and per segment
HEADER, SEGMENT = 4, 16


def fraud_merchant_count(share: float, n_merchants: int) -> int:
    """How many merchants brush fake orders and serve as mules: ``share`` of them, rounded (the
    risk engine draws which; the memory preflight sizes their orders)."""
    return round(share * n_merchants)


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
        # an (event, account) pair as one key (each below 2^31); equal keys get one id, so how a
        # sort orders them does not matter
        key = (self.event << 32) | account
        order = xp.argsort(key)
        key = key[order]
        first = xp.empty(self.n, dtype=xp.bool_)
        first[0] = True
        first[1:] = key[1:] != key[:-1]
        ids = xp.empty(self.n, dtype=xp.int64)
        ids[order] = xp.cumsum(first) - 1
        return ids

    def own_counts(self, *, xp: ModuleType = np) -> tuple[Any, Any]:
        """(int64[F], int64[F]) payments of each payment's own event by the same payer and to the
        same merchant (itself included): what the event adds to the engine's counts today."""
        def count(account: Any) -> Any:
            # an (event, account) pair as one key (events and accounts each below 2^31): the
            # pair's count is the width of its run among the sorted keys
            key = (self.event << 32) | account
            ordered = xp.sort(key)
            return xp.searchsorted(ordered, key, side="right") - xp.searchsorted(ordered, key, side="left")
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
        cfg, k = self.cfg, self.n_fraud_merchants
        events = dict.fromkeys(range(len(TYPOLOGIES)), 0)
        brushing_ends = np.zeros(0, dtype=np.int64)
        if k:
            events[ATO] = self._count(cfg.ato_per_million, ATO, tick)
            # drawn on the host (K numbers, the same draws as on the device): the batch's size
            orders = np.floor(cfg.brushing_orders * self.intensity[BRUSHING]
                              + rng.uniform(rng.stream_key(self.seed, "fraud.brushing.n", tick), k))
            brushing_ends = np.cumsum(orders.astype(np.int64))
            rings = self._count(cfg.laundering_per_million, FAN_IN, tick)
            fan_in = rng.bernoulli(rng.stream_key(self.seed, "fraud.laundering.kind", tick), rings, 0.5)
            events[FAN_IN], events[FAN_OUT] = int(fan_in.sum()), int((~fan_in).sum())
        events[BURST] = self._count(cfg.burst_per_million, BURST, tick)
        return self._batch(tick, "fraud", events, brushing_ends)

    def probe(self, tick: int) -> FraudBatch:
        """:data:`PROBE_PAYMENTS` payments (at least) of every typology, drawn as :meth:`draw`
        would at the current stealth, on streams of their own: what fraud of each kind met this
        tick, whatever N (see the module docstring). Empty for the typologies that need fraud
        merchants when there are none."""
        cfg, k = self.cfg, self.n_fraud_merchants
        quiet = 1.0 - 0.7 * self.stealth
        per_event = {ATO: cfg.ato_payments, FAN_IN: max(2, int(round(cfg.laundering_fan * quiet[FAN_IN]))),
                     FAN_OUT: max(2, int(round(cfg.laundering_fan * quiet[FAN_OUT]))),
                     BURST: self._burst_size()}
        events = {t: -(-PROBE_PAYMENTS // size) for t, size in per_event.items()}
        brushing_ends = np.zeros(0, dtype=np.int64)
        if k:  # the brushing orders' shops, drawn on the host (the same draws), sorted: orders per shop
            key = rng.stream_key(self.seed, "fraud.probe.brushing.merchant", tick)
            brushing_ends = np.cumsum(np.bincount(rng.integers(key, PROBE_PAYMENTS, k), minlength=k))
        else:
            events.update({ATO: 0, FAN_IN: 0, FAN_OUT: 0})
        return self._batch(tick, "fraud.probe", events, brushing_ends)

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

    def _batch(self, tick: int, stream: str, events: dict[int, int], brushing_ends: np.ndarray) -> FraudBatch:
        """The payments of ``events[t]`` takeovers, rings (fan-in, fan-out) and bursts, and of
        ``brushing_ends[-1]`` brushing orders (``brushing_ends``: int64[K] on the host, the
        cumulative orders of each fraud merchant in :attr:`fraud_merchants` order), on streams
        named ``stream``: one fused kernel over all of them (:data:`_FRAUD_BATCH`), each payment
        reading its typology's segment of a small table the host builds (:meth:`batch_table`)."""
        xp = self.xp
        table = self.batch_table(tick, stream, events, brushing_ends)
        n = int(table[HEADER + SEGMENT * (len(SEGMENTS) - 1)] + table[HEADER + SEGMENT * (len(SEGMENTS) - 1) + 1])
        out = fused.launch(_FRAUD_BATCH, xp.arange(n, dtype=xp.int64), xp.asarray(table), self.fraud_merchants, xp=xp)
        return FraudBatch(*out)

    def batch_table(self, tick: int, stream: str, events: dict[int, int], brushing_ends: np.ndarray) -> np.ndarray:
        """(uint64[HEADER + SEGMENT * 5 + K], host) what :data:`_FRAUD_BATCH` draws a batch from:
        N, M, K and the ring size; then for each segment of :data:`SEGMENTS` in turn its first
        payment, payments, payments per event, first event number, amount scale and new-device
        probability (float64 bits), a draw bound, the new-device stream key and the typology's
        other stream keys (see the kernel); then ``brushing_ends``. Everything here is a number
        the host knows already: the draws' stream keys, the tick's counts and the stealth."""
        cfg, seed = self.cfg, self.seed
        k = self.n_fraud_merchants
        quiet = 1.0 - 0.7 * self.stealth  # stealthier fraud looks more like ordinary payments
        table = np.zeros(HEADER + SEGMENT * len(SEGMENTS) + brushing_ends.shape[0], dtype=np.uint64)
        table[:HEADER] = (self.n_users, self.n_merchants, k, cfg.brushing_ring)
        table[HEADER + SEGMENT * len(SEGMENTS):] = brushing_ends.astype(np.uint64)

        def key(name: str) -> int:
            return rng.stream_key(seed, f"{stream}.{name}", tick)

        def bits(x: float) -> int:
            return int(np.float64(x).view(np.uint64))

        first = first_event = 0
        for s, typology in enumerate(SEGMENTS):
            name = TYPOLOGIES[typology]
            high, keys = 0, []
            if typology == ATO:
                groups, size = (events[ATO], cfg.ato_payments) if k else (0, 1)
                scale = self.reference_fen * cfg.ato_amount_multiple * quiet[ATO]
                p_device = 0.9 * quiet[ATO]
                high = 1 + int(round(TAKEOVER_WAIT_MAX * self.stealth[ATO]))
                keys = [key("ato.victim"), key("ato.mule"), key("ato.amount"), key("ato.wait")]
            elif typology == BRUSHING:
                groups, size = (int(brushing_ends[-1]) if k else 0), 1
                scale = float(self.reference_fen)
                p_device = 0.5 * quiet[BRUSHING]
                high = 1 + int(30 * (1 + 10 * self.stealth[BRUSHING]))  # adapted brushers use aged sockpuppets
                pool = min(POOL_MAX, max(1, int(round(cfg.brushing_pool * (1 + 4 * self.stealth[BRUSHING])))))
                keys = [key("brushing.puppet"), key("brushing.amount"), key("brushing.age"), key("brushing.scenario"),
                        rng.stream_key(seed, "fraud.brushing.pool"), pool, bits(cfg.brushing_share_qr)]
            elif typology in (FAN_IN, FAN_OUT):
                groups = events[typology] if k else 0
                size = max(2, int(round(cfg.laundering_fan * quiet[typology])))
                scale = LAUNDERING_AMOUNT * quiet[typology]
                p_device = 0.2 * quiet[typology]
                keys = [key(f"{name}.hub"), key(f"{name}.mule"), key(f"{name}.payers"), key(f"{name}.merchants"),
                        key(f"{name}.amt")]
            else:
                groups, size = events[BURST], self._burst_size()
                scale = self.reference_fen * cfg.burst_amount_multiple * quiet[BURST]
                p_device = 0.3 * quiet[BURST]
                keys = [key("burst.payer"), key("burst.merchant"), key("burst.amount")]
            m = groups * size
            at = HEADER + SEGMENT * s
            for offset, value in enumerate((first, m, max(size, 1), first_event, bits(scale), bits(p_device), high,
                                            key(f"{name}.device"), *keys)):
                table[at + offset] = value
            first += m
            first_event += groups if m else 0
        return table

    def react(self, intercepted_share: np.ndarray) -> None:
        """Adapt to one tick's interception rates (float64[len(TYPOLOGIES)], from the probe);
        NaN for a typology that had no probe leaves it as it is."""
        share = np.nan_to_num(np.asarray(intercepted_share, dtype=np.float64), nan=0.0)
        self.intensity *= 1.0 - self.cfg.p_stop_after_interception * share
        self.intensity += self.cfg.entry_rate * (1.0 - self.intensity)
        self.stealth = np.minimum(1.0, self.stealth + self.cfg.adapt_step * share)


# -- the batch in one fused kernel (see weishang.kernels.fused) -----------------------------------

def _batch_reference(j: np.ndarray, table: np.ndarray, fraud_merchants: np.ndarray) -> tuple[np.ndarray, ...]:
    """NumPy: payments ``j`` (int64[F], numbers within the batch) of the batch that ``table``
    (:meth:`FraudInjector.batch_table`) describes; the draws of each typology as the CUDA body of
    :data:`_FRAUD_BATCH` makes them, vectorised segment by segment."""
    j = np.asarray(j, dtype=np.int64)
    f = j.shape[0]
    payer, merchant, amount = (np.zeros(f, dtype=np.int64) for _ in range(3))
    scenario, typology = np.zeros(f, dtype=np.int8), np.zeros(f, dtype=np.int8)
    new_device = np.zeros(f, dtype=np.bool_)
    age, event, lag = np.full(f, -1, dtype=np.int64), np.zeros(f, dtype=np.int64), np.full(f, -1, dtype=np.int64)
    n, n_merchants, k, ring_size = (int(v) for v in table[:HEADER])
    ends = table[HEADER + SEGMENT * len(SEGMENTS):].astype(np.int64)
    starts = np.asarray([int(table[HEADER + SEGMENT * s]) for s in range(1, len(SEGMENTS))], dtype=np.int64)
    segment_of = np.searchsorted(starts, j, side="right")  # the last segment starting at or before j
    for s, typ in enumerate(SEGMENTS):
        t = [int(v) for v in table[HEADER + SEGMENT * s:HEADER + SEGMENT * (s + 1)]]
        at = np.flatnonzero(segment_of == s)
        if at.shape[0] == 0:
            continue
        jj = j[at] - t[0]
        group = jj // t[2]
        scale, p_device = (float(np.uint64(v).view(np.float64)) for v in (t[4], t[5]))
        keys = t[8:]
        if typ == ATO:
            payer[at] = rng.integers(keys[0], group, n)
            merchant[at] = fraud_merchants[rng.integers(keys[1], jj, k)]
            a = scale * (0.5 + rng.uniform(keys[2], jj))
            lag[at] = rng.integers(keys[3], group, t[6])
            scenario[at] = 1
        elif typ == BRUSHING:
            shop = np.searchsorted(ends, jj, side="right")
            merchant[at] = fraud_merchants[shop]
            pool = keys[5]
            slot = np.minimum((rng.uniform(keys[0], jj) * pool).astype(np.int64), pool - 1)
            payer[at] = rng.integers(keys[4], (shop // ring_size) * POOL_MAX + slot, n)
            a = scale * (0.5 + rng.uniform(keys[1], jj))
            age[at] = rng.integers(keys[2], jj, t[6])
            share_qr = float(np.uint64(keys[6]).view(np.float64))
            scenario[at] = np.where(rng.uniform(keys[3], jj) < share_qr, 0, 1)
        elif typ in (FAN_IN, FAN_OUT):
            if typ == FAN_IN:
                payer[at] = rng.integers(keys[2], jj, n)
                merchant[at] = fraud_merchants[rng.integers(keys[1], group, k)]
            else:
                payer[at] = rng.integers(keys[0], group, n)
                merchant[at] = rng.integers(keys[3], jj, n_merchants)
            a = scale * (0.9 + 0.1 * rng.uniform(keys[4], jj))
            scenario[at] = 2
        else:
            payer[at] = rng.integers(keys[0], group, n)
            merchant[at] = rng.integers(keys[1], jj, n_merchants)
            a = scale * (0.5 + rng.uniform(keys[2], jj))
            scenario[at] = 0
        amount[at] = np.maximum(a, 100).astype(np.int64)
        new_device[at] = rng.bernoulli(t[7], jj, p_device)
        typology[at] = typ
        event[at] = t[3] + group
    return payer, merchant, amount, scenario, new_device, age, typology, event, lag


_FRAUD_PREAMBLE = rng.DRAW_PREAMBLE + """
__device__ long long weishang_fraud_integer(long long index, unsigned long long key, long long high) {
    double v = weishang_unit(weishang_draw(index, key)) * (double)high;
    long long whole = (long long)v;
    return whole < high - 1 ? whole : high - 1;
}
__device__ double weishang_fraud_double(unsigned long long bits) {
    union { unsigned long long u; double d; } c;
    c.u = bits;
    return c.d;
}
"""

#: one launch for a whole batch: payment j finds its segment in the table, its number within it
#: and its event's, and makes the draws of its typology (the segments as in _batch_reference)
_FRAUD_BATCH = fused.register(fused.FusedKernel(
    "weishang_fraud_batch", "int64 j, raw uint64 table, raw int64 fraud_merchants",
    "int64 payer, int64 merchant, int64 amount, int8 scenario, bool new_device, int64 account_age, int8 typology, "
    "int64 event, int64 signal_lag",
    f"""const long long n_users = (long long)table[0], n_merchants = (long long)table[1];
       const long long k = (long long)table[2], ring_size = (long long)table[3];
       int s = 0;
       while (s < {len(SEGMENTS) - 1} && j >= (long long)table[{HEADER} + {SEGMENT} * (s + 1)]) s++;
       const unsigned long long* t = &table[{HEADER} + {SEGMENT} * s];
       const long long jj = j - (long long)t[0];
       const long long group = jj / (long long)t[2];
       const double scale = weishang_fraud_double(t[4]);
       double a;
       account_age = -1;
       signal_lag = -1;
       event = (long long)t[3] + group;
       switch (s) {{
       case 0:  /* account takeover: the victim and the wait per takeover, a mule per payment */
           payer = weishang_fraud_integer(group, t[8], n_users);
           merchant = fraud_merchants[weishang_fraud_integer(jj, t[9], k)];
           a = scale * (0.5 + weishang_unit(weishang_draw(jj, t[10])));
           signal_lag = weishang_fraud_integer(group, t[11], (long long)t[6]);
           scenario = 1;
           typology = {ATO};
           break;
       case 1: {{  /* brushing: the shop of order jj (the first whose cumulative orders exceed jj) */
           const long long* ends = (const long long*)&table[{HEADER} + {SEGMENT * len(SEGMENTS)}];
           long long lo = 0, hi = k;
           while (lo < hi) {{
               long long mid = lo + (hi - lo) / 2;
               if (ends[mid] > jj) hi = mid; else lo = mid + 1;
           }}
           merchant = fraud_merchants[lo];
           const long long pool = (long long)t[13];
           long long slot = (long long)(weishang_unit(weishang_draw(jj, t[8])) * (double)pool);
           slot = slot < pool - 1 ? slot : pool - 1;
           payer = weishang_fraud_integer((lo / ring_size) * {POOL_MAX} + slot, t[12], n_users);
           a = scale * (0.5 + weishang_unit(weishang_draw(jj, t[9])));
           account_age = weishang_fraud_integer(jj, t[10], (long long)t[6]);
           scenario = weishang_unit(weishang_draw(jj, t[11])) < weishang_fraud_double(t[14]) ? 0 : 1;
           typology = {BRUSHING};
           break;
       }}
       case 2:  /* fan-in: many payers into the ring's mule */
           payer = weishang_fraud_integer(jj, t[10], n_users);
           merchant = fraud_merchants[weishang_fraud_integer(group, t[9], k)];
           a = scale * (0.9 + 0.1 * weishang_unit(weishang_draw(jj, t[12])));
           scenario = 2;
           typology = {FAN_IN};
           break;
       case 3:  /* fan-out: the ring's hub out to many merchants */
           payer = weishang_fraud_integer(group, t[8], n_users);
           merchant = weishang_fraud_integer(jj, t[11], n_merchants);
           a = scale * (0.9 + 0.1 * weishang_unit(weishang_draw(jj, t[12])));
           scenario = 2;
           typology = {FAN_OUT};
           break;
       default:  /* burst: one payer per burst, a merchant per order */
           payer = weishang_fraud_integer(group, t[8], n_users);
           merchant = weishang_fraud_integer(jj, t[9], n_merchants);
           a = scale * (0.5 + weishang_unit(weishang_draw(jj, t[10])));
           scenario = 0;
           typology = {BURST};
       }}
       amount = (long long)(a > 100.0 ? a : 100.0);
       new_device = weishang_unit(weishang_draw(jj, t[7])) < weishang_fraud_double(t[5]);""",
    _batch_reference, _FRAUD_PREAMBLE))
