"""Everyday WeChat Pay payments: the rest of the load the risk engine screens (SPEC section 3).

The SPEC's payment table gives each scenario's daily transactions (QR code 1.2e8, mini-program
8.5e7, cross-border 1.2e7), about 16 times the orders its channel table implies (visits times
conversions: 13 million a day). The payment table counts every WeChat Pay transaction of the
scenario, offline QR payments in shops and mini-program services included, and the risk
engine screens all of them; micro-commerce orders are a small part. The model therefore takes
the table as an input (``payments.daily_tx_*``, scaled by N / 1.289e9) and tops each
scenario's micro-commerce payments up to it with everyday payments: a uniformly drawn payer,
an amount log-normal around the scenario's median (``payments.everyday_median_*``), paid
to shops outside micro-commerce (one merchant slot past the modelled merchants, for the
scorer's merchant features). Everyday payments are legitimate: they share the
false-positive budget and make the payers' histories (velocity, usual amount) that orders and
fraud are scored against. They carry no GMV, fees or settlement of the modelled merchants.

Draws are counter-based on the payment's number within its scenario and tick, so the same
payments come back whatever else changed, up to the top-up count. Amounts are read from a
table of the log-normal's quantiles made on the host, indexed by an integer draw, so NumPy and
CuPy draw the same fen (a device ``exp`` need not round like NumPy's).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from scipy.special import ndtri

from ....kernels import rng
from ...config import WECHAT_MAU, ScenarioConfig

#: everyday payments' keys (transactions log) start above the fraud keys' range
EVERYDAY_KEY_BASE = 1 << 61
EVERYDAY_KEYS_PER_TICK = 1 << 32
#: quantiles in each scenario's amount table
AMOUNT_QUANTILES = 4096


@dataclass
class EverydayPayments:
    """One tick's everyday payments (device arrays of length E), scenario by scenario.

    Attributes:
        key: (int64[E]) stable key (``EVERYDAY_KEY_BASE + tick * EVERYDAY_KEYS_PER_TICK +
            scenario * 2^30 + number``); payer: (int64[E]); amount: (int64[E]) fen;
        scenario: (int8[E]) 0 QR, 1 mini-program, 2 cross-border.
    """

    key: Any
    payer: Any
    amount: Any
    scenario: Any

    @property
    def n(self) -> int:
        return int(self.key.shape[0])


def daily_everyday_counts(config: ScenarioConfig, n_users: int, orders_by_scenario: np.ndarray) -> np.ndarray:
    """(int64[3]) everyday payments per scenario this tick: the scenario's daily transactions at
    this scale less the micro-commerce payments already made in it (never below zero).

    Args:
        orders_by_scenario: (int64[3]) official micro-commerce payments this tick by scenario.
    """
    p = config.payments
    daily = np.array([p.daily_tx_qr, p.daily_tx_mini_program, p.daily_tx_cross_border]) * n_users / WECHAT_MAU
    return np.maximum(np.rint(daily).astype(np.int64) - orders_by_scenario, 0)


def amount_table(config: ScenarioConfig) -> np.ndarray:
    """(int64[3 * Q]) fen at the midpoint quantiles of each scenario's log-normal amount, the
    scenarios one after another (QR, mini-program, cross-border)."""
    p = config.payments
    medians = np.array([p.everyday_median_qr, p.everyday_median_mini_program, p.everyday_median_cross_border])
    z = ndtri((np.arange(AMOUNT_QUANTILES) + 0.5) / AMOUNT_QUANTILES)
    fen = medians[:, None] * 100.0 * np.exp(p.everyday_amount_sigma * z)[None, :]
    return np.maximum(np.rint(fen), 1).astype(np.int64).ravel()


def draw_everyday(config: ScenarioConfig, n_users: int, orders_by_scenario: np.ndarray, tick: int,
                  *, xp: ModuleType, amounts: Any = None) -> EverydayPayments:
    """This tick's everyday payments (see the module docstring).

    ``amounts``: :func:`amount_table` on the device, made once per run by the caller (made here
    when omitted).
    """
    seed = config.run.seed
    counts = daily_everyday_counts(config, n_users, orders_by_scenario)
    # the counts are on the host: each payment's scenario and number within it follow from its
    # position and the scenarios' ends, with no size to read back
    ends = np.cumsum(counts)
    position = xp.arange(int(ends[-1]), dtype=xp.int64)
    scenario64 = (position >= int(ends[0])).astype(xp.int64) + (position >= int(ends[1]))
    # scenario s's payments start at ends[s] - counts[s]; its index is s * 2^30 + number
    shift = xp.asarray(np.arange(3, dtype=np.int64) * (1 << 30) - (ends - counts))
    index = position + shift[scenario64]
    scenario = scenario64.astype(xp.int8)
    payer = rng.integers(rng.stream_key(seed, "everyday.payer", tick), index, n_users, xp=xp)
    quantile = rng.integers(rng.stream_key(seed, "everyday.amount", tick), index, AMOUNT_QUANTILES, xp=xp)
    table = xp.asarray(amount_table(config)) if amounts is None else amounts
    amount = table[scenario64 * AMOUNT_QUANTILES + quantile]
    key = EVERYDAY_KEY_BASE + tick * EVERYDAY_KEYS_PER_TICK + index
    return EverydayPayments(key=key, payer=payer, amount=amount, scenario=scenario)
