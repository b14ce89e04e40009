"""The data platform's merchant diagnostics (SPEC section 5), computed from the simulation.

For merchant m, over the run so far:

* **LTV**, customer lifetime value (CNY of margin a new customer is expected to bring)::

      LTV_m = margin * AOV_m / (1 - r_m),   r_m = min(repeaters_m / customers_m, 0.95)

  where AOV_m is m's GMV over its orders, and ``1 / (1 - r)`` the expected number of purchase
  occasions when each customer comes back with probability r (geometric retention).
* **SII**, social influence index (how far m's posts travel beyond its own audience)::

      SII_m = (level-2 + level-3 exposures) / level-1 exposures

* **CMD**, category match degree (how well m's audience fits what it sells)::

      CMD_m = level-1 viewers interested in m's category / level-1 viewers

Merchants with no orders (LTV) or no level-1 viewers (SII, CMD) get NaN: undefined, not zero.
Only certified merchants see deep diagnostics on the real platform
(``platform.deep_data_min_certification``); the model computes them for every merchant so researchers can
compare, and the tier gates what merchants can *act* on (targeting).
"""

from __future__ import annotations

import numpy as np

from ..state import Stateful

#: retention is capped so LTV stays finite for a merchant whose few customers all came back
MAX_RETENTION = 0.95


class Diagnostics(Stateful):
    """Running per-merchant sums the diagnostics are computed from (host arrays, length M)."""

    STATE = ("exposures_l1", "exposures_beyond", "matched_l1", "orders", "gmv_fen")

    def __init__(self, n_merchants: int) -> None:
        for name in self.STATE:
            setattr(self, name, np.zeros(n_merchants, dtype=np.int64))

    def add(self, merchant_of_post: np.ndarray, exposures: np.ndarray, matched: np.ndarray,
            orders: np.ndarray, gmv_fen: np.ndarray) -> None:
        """Add one tick.

        Args:
            merchant_of_post: (int64[C]) merchant of each post.
            exposures, matched: (int64[C, 3]) per post and level.
            orders, gmv_fen: (int64[M]) completed orders and their value per merchant.
        """
        m = self.exposures_l1.shape[0]
        self.exposures_l1 += np.bincount(merchant_of_post, exposures[:, 0], minlength=m).astype(np.int64)
        self.exposures_beyond += np.bincount(merchant_of_post, exposures[:, 1:].sum(axis=1),
                                             minlength=m).astype(np.int64)
        self.matched_l1 += np.bincount(merchant_of_post, matched[:, 0], minlength=m).astype(np.int64)
        self.orders += orders
        self.gmv_fen += gmv_fen

    def compute(self, customers: np.ndarray, repeaters: np.ndarray, margin: float) -> dict[str, np.ndarray]:
        """(float64[M]) ``ltv``, ``sii`` and ``cmd`` per merchant (see the module docstring)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            aov = np.where(self.orders > 0, self.gmv_fen / 100.0 / self.orders, np.nan)
            retention = np.minimum(np.where(customers > 0, repeaters / customers, np.nan), MAX_RETENTION)
            ltv = margin * aov / (1.0 - retention)
            seen = self.exposures_l1 > 0
            sii = np.where(seen, self.exposures_beyond / self.exposures_l1, np.nan)
            cmd = np.where(seen, self.matched_l1 / self.exposures_l1, np.nan)
        return {"ltv": ltv, "sii": sii, "cmd": cmd}
