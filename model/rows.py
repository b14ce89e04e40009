"""One tick's rows of the output tables, from the tick's mechanism outputs (host data only).

The ``ticks`` row is the mechanisms' own: each declares its columns and fills its slice
(:attr:`~weishang.model.plan.Mechanism.columns`, :meth:`~weishang.model.plan.Mechanism.row`).
The per-merchant, per-post and per-payment tables are the model's views over every mechanism,
filled here; their columns are declared in :mod:`weishang.model.columns`, and
:func:`weishang.model.recorder.to_arrow` checks that every row fills exactly those.

A channel's *visits* are the people who open its posts' links: the post's own audience
(level 1) and friends opening a friend's share (level 2); ``visit_orders_C`` are their
purchases and ``conversion_C`` their ratio. Level 3, strangers put in front of the post by
fission tools, is awareness (the SPEC's level-3 funnel starts at "awareness", not a visit): it
is the channel's ``awareness_C``, counted in reach, not visits. ``orders_C`` and ``gmv_C``
count every level, so a channel's GMV and order value include what its fission sells.
``conversion_friend_rec`` is level 1 of the channels where a friend recommends personally
(Moments, live, external links), ``conversion_system_rec`` level 1 of search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .codes import LEVELS, Channel, Compliance, ExitReason, Provider, Style
from .plan import TickRecord

if TYPE_CHECKING:
    from .commerce import CommerceModel

@dataclass
class TickRows:
    """One tick of output: the ``ticks`` row (column -> value, None when undefined), the
    ``merchants`` and ``cascades`` rows (column -> host array) and the scored transactions
    (column -> host array) when the run logs them."""

    ticks: dict[str, Any]
    merchants: dict[str, np.ndarray]
    cascades: dict[str, np.ndarray]
    transactions: dict[str, np.ndarray] | None
    risk_curve: dict[str, np.ndarray] | None = None


def labels(codes: np.ndarray, kind: type, missing: Any = None) -> np.ndarray:
    """(object[n]) the label of each code; ``missing`` (a code) is written as None (null)."""
    names = np.array([None if member == missing else kind.label(member) for member in kind], dtype=object)
    return names[codes]


def tick_rows(model: "CommerceModel", record: TickRecord) -> TickRows:
    """The tables' rows for the tick just run. The ``ticks`` row's ``seconds``, the tick's wall
    time, is the model's to fill once the rows are made."""
    return TickRows(ticks=_ticks_row(model, record), merchants=_merchant_rows(model, record),
                    cascades=_cascade_rows(record), transactions=_transaction_rows(record),
                    risk_curve=record.risk.curve)


def _ticks_row(model: "CommerceModel", record: TickRecord) -> dict[str, Any]:
    """The day, then each mechanism's slice (:meth:`~weishang.model.plan.Mechanism.row`), in the
    order of the plan; a slice fills exactly the columns its mechanism declares."""
    row: dict[str, Any] = {"tick": record.tick}
    for mechanism in model.mechanisms:
        row.update(mechanism.row(record))
    return row


def _merchant_rows(model: "CommerceModel", record: TickRecord) -> dict[str, np.ndarray]:
    merchants, agg, ledger = model.merchants, record.aggregation, model.community.ledger
    m = merchants.n
    diagnostics = model.aggregation.diagnostics.compute(ledger.customers, ledger.repeaters,
                                                        model.config.merchants.margin)
    return {
        "tick": np.full(m, record.tick, dtype=np.int32), "merchant": np.arange(m, dtype=np.int32),
        "uid": merchants.uid, "active": merchants.active.copy(), "n_posts": record.posting.paid,
        "n_orders": agg.orders_per_merchant, "gmv": agg.gmv_per_merchant_fen / 100.0,
        "settled": record.settlement.settled / 100.0, "cum_profit": model.books.accounts.cum_profit.copy(),
        "violations": merchants.violations.copy(),
        "exit_reason": labels(merchants.exit_reason, ExitReason, missing=ExitReason.ACTIVE),
        "category": merchants.category, "quality": merchants.quality,
        "compliance": labels(merchants.compliance, Compliance), "certification": merchants.certification,
        "provider": labels(merchants.provider, Provider), "marketing_tools": merchants.marketing_tools,
        "erp": merchants.erp, "live": merchants.live, "ai_service": merchants.ai_service,
        "analytics": merchants.analytics(record.tick), "style": labels(merchants.style, Style),
        "video_adopter": model.traffic.video_adopted.copy(),
        "post_rate": merchants.post_rate.copy(), "stock_units": model.inventory.stock.units.copy(),
        "units_sold": record.payments.units_sold, "units_lost": record.payments.units_lost,
        "customers": ledger.customers.copy(), "repeat_customers": ledger.repeaters.copy(),
        **diagnostics,
    }


def _cascade_rows(record: TickRecord) -> dict[str, np.ndarray]:
    agg, posts = record.aggregation, record.traffic.posts
    return {
        "tick": np.full(posts.n, record.tick, dtype=np.int32), "cascade_key": posts.key,
        "merchant": posts.merchant.astype(np.int32), "channel": labels(posts.channel, Channel),
        **{f"exposures_l{lv}": agg.exposures[:, lv - 1] for lv in LEVELS},
        **{f"shares_l{lv}": agg.shares[:, lv - 1] for lv in LEVELS[:-1]},
        **{f"buys_l{lv}": agg.buys[:, lv - 1] for lv in LEVELS},
        "gmv": agg.gmv_per_cascade_fen / 100.0,
    }


def _transaction_rows(record: TickRecord) -> dict[str, np.ndarray] | None:
    log = record.risk.log
    if log is None:
        return None
    return {"tick": np.full(log["key"].shape[0], record.tick, dtype=np.int32), **log}
