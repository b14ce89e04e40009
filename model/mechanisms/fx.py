"""Cross-border payments' exchange-rate lock (SPEC section 3): 28 settlement currencies.

A cross-border payment is priced in CNY and settled (T+3) in one of 28 currencies at the rate
locked when the order was placed. Rates move meanwhile, as a daily geometric random walk per
currency; whoever gives the lock (the platform, in this model) carries the difference. The desk
measures it: for the value locked at tick t in currency c and settled at t+3, the exposure is
``value * (rate_c(t+3) / rate_c(t) - 1)`` in CNY (positive: the currency strengthened against
the locked rate).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import rng
from ..state import Stateful

CURRENCIES = ("USD", "EUR", "JPY", "HKD", "GBP", "AUD", "CAD", "SGD", "KRW", "THB", "MYR", "NZD", "CHF", "SEK",
              "NOK", "DKK", "RUB", "AED", "SAR", "MOP", "PHP", "IDR", "VND", "ZAR", "BRL", "MXN", "QAR", "KWD")
#: a cross-border payment settles this many ticks after the order (T+3)
LOCK_TICKS = 3


def currency_cdf() -> np.ndarray:
    """(float64[28]) the cumulative shares of cross-border value by settlement currency: Zipf
    over :data:`CURRENCIES`."""
    weight = 1.0 / np.arange(1, len(CURRENCIES) + 1)
    return np.cumsum(weight / weight.sum())


def currency_of(order_key: Any, cdf: Any, seed: int, tick: int, *, xp: ModuleType) -> Any:
    """(int64[O]) the settlement currency of each order (an index into :data:`CURRENCIES`),
    drawn per order key from ``cdf`` (:func:`currency_cdf`, on the device)."""
    u = rng.uniform(rng.stream_key(seed, "fx.currency", tick), order_key, xp=xp)
    return xp.minimum(xp.searchsorted(cdf, u, side="right"), len(CURRENCIES) - 1)


class FxDesk(Stateful):
    """Rates, locked value by currency and tick, and the exposure measured at settlement.

    State: ``log_rate`` (float64[28]) and ``locked``, the value locked on each of the last
    ``LOCK_TICKS`` ticks with the rates it was locked at.

    Args:
        daily_vol: standard deviation of a currency's daily log-return.
        seed: base seed (rates are a pure function of seed and tick).
    """

    STATE = ("log_rate", "locked")

    def __init__(self, daily_vol: float, seed: int) -> None:
        self.daily_vol, self.seed = daily_vol, seed
        self.log_rate = np.zeros(len(CURRENCIES))
        self.locked: list[tuple[np.ndarray, np.ndarray]] = []  # (value CNY by currency, log rate) per tick

    def step(self, tick: int, value_by_currency: np.ndarray) -> tuple[float, float]:
        """Move rates to ``tick``, lock this tick's cross-border value (float64[28], CNY, by
        :func:`currency_of`), and settle the value locked ``LOCK_TICKS`` ago. Returns (locked
        value, exposure settled) in CNY."""
        if tick > 0:
            z = rng.normal(rng.stream_key(self.seed, "fx.return", tick), len(CURRENCIES))
            self.log_rate = self.log_rate + self.daily_vol * z
        self.locked.append((value_by_currency, self.log_rate.copy()))
        exposure = 0.0
        if len(self.locked) > LOCK_TICKS:
            value, locked_rate = self.locked.pop(0)
            exposure = float(np.sum(value * np.expm1(self.log_rate - locked_rate)))
        return float(value_by_currency.sum()), exposure
