"""One tick's rows of the output tables, from the tick's mechanism outputs (host data only).

The columns and their order are declared in :mod:`weishang.model.columns`; this module fills
them, and :func:`weishang.model.recorder.to_arrow` checks that it filled exactly those.

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

from .mechanisms.books import traffic_cost_per_post
from .codes import FRIEND_RECOMMENDATION, LEVELS, Channel, Compliance, ExitReason, PaymentScenario, Provider, Style
from .columns import ratio
from .plan import TickRecord

if TYPE_CHECKING:
    from .commerce import CommerceModel

#: levels whose exposures are visits to a channel's link (the post's audience, friends' shares)
VISIT_LEVELS = 2


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
    agg, posts, merchants = record.aggregation, record.traffic.posts, model.merchants
    exposures, shares, buys = agg.exposures, agg.shares, agg.buys
    gmv_fen, cascade_gmv = agg.gmv_by_scenario_fen, agg.gmv_per_cascade_fen
    exp_total, buy_total, share_total = exposures.sum(axis=0), buys.sum(axis=0), shares.sum(axis=0)
    active = merchants.active
    row: dict[str, Any] = {"tick": record.tick, "n_active_merchants": int(active.sum()), "n_posts": posts.n}
    for lv in LEVELS:
        row[f"exposures_l{lv}"] = int(exp_total[lv - 1])
        row[f"buys_l{lv}"] = int(buy_total[lv - 1])
        row[f"conversion_l{lv}"] = ratio(buy_total[lv - 1], exp_total[lv - 1])
        if lv < LEVELS[-1]:
            row[f"shares_l{lv}"] = int(share_total[lv - 1])
    for channel in Channel:
        mine, name = posts.channel == channel, Channel.label(channel)
        visits, visit_orders = int(exposures[mine, :VISIT_LEVELS].sum()), int(buys[mine, :VISIT_LEVELS].sum())
        orders, gmv = int(buys[mine].sum()), cascade_gmv[mine].sum() / 100.0
        row.update({f"n_posts_{name}": int(mine.sum()), f"visits_{name}": visits,
                    f"visit_orders_{name}": visit_orders, f"awareness_{name}": int(exposures[mine, VISIT_LEVELS:].sum()),
                    f"orders_{name}": orders, f"gmv_{name}": gmv, f"conversion_{name}": ratio(visit_orders, visits),
                    f"aov_{name}": ratio(gmv, orders)})
    live = posts.channel == Channel.LIVE_STREAM
    for name, posts_of in (("friend_rec", np.isin(posts.channel, FRIEND_RECOMMENDATION)),
                           ("system_rec", posts.channel == Channel.SEARCH)):
        visits, orders = int(exposures[posts_of, 0].sum()), int(buys[posts_of, 0].sum())
        row.update({f"visits_{name}": visits, f"visit_orders_{name}": orders, f"conversion_{name}": ratio(orders, visits)})
    # a live stream's viewers are its level-1 audience (SPEC section 7: viewer conversion)
    row["visits_live_viewers"] = int(exposures[live, 0].sum())
    row["visit_orders_live_viewers"] = int(buys[live, 0].sum())
    row.update(record.risk.metrics)
    settlement, governance, review = record.settlement, record.governance, record.governance.review
    ledger, parts = model.community.ledger, model.community.parts
    members, others = ledger.pairs[1], ledger.pairs[0]
    mix = model.adaptation.channels.mix
    row.update({
        "n_orders": int(buy_total.sum()), "gmv": gmv_fen.sum() / 100.0,
        **{f"gmv_{label}": gmv_fen[s] / 100.0 for s, label in enumerate(PaymentScenario.labels())},
        "fees": settlement.fees.sum() / 100.0, "fx_locked": settlement.fx_locked, "fx_exposure": settlement.fx_exposure,
        "settled": settlement.settled.sum() / 100.0,
        "gmv_provider": agg.gmv_per_merchant_fen[merchants.provider != Provider.NONE].sum() / 100.0,
        "n_flagged": int(governance.flagged.sum()),
        "n_false_flags": int((governance.flagged & (merchants.compliance == Compliance.COMPLIANT)).sum()),
        "n_reports": int(governance.reports.sum()), "n_reviewed": review.reviewed, "n_cleared": review.cleared,
        "review_backlog_reports": review.backlog_reports, "review_backlog_flags": review.backlog_flags,
        "report_response_minutes": review.report_response_minutes, "n_removed": governance.removed,
        "n_rectifications": governance.rectifications, "n_exits": record.adaptation.exits,
        "n_active_compliant": int((active & (merchants.compliance == Compliance.COMPLIANT)).sum()),
        "traffic_cost_per_post": traffic_cost_per_post(model.config, record.tick),
        "mean_post_rate": float(merchants.post_rate[active].mean()) if active.any() else None,
        **{f"effort_{label}": float(mix[active, c].mean()) if active.any() else None
           for c, label in enumerate(Channel.labels())},
        "cost_traffic": record.books.traffic_cost, "cost_fixed": record.books.fixed_cost,
        "cost_holding": record.books.holding_cost, "profit": record.books.profit,
        **{f"n_style_{label}": int((active & (merchants.style == s)).sum()) for s, label in enumerate(Style.labels())},
        "units_sold": int(record.payments.units_sold.sum()), "units_lost": int(record.payments.units_lost.sum()),
        "units_from_shelf": int(record.inventory.from_shelf.sum()),
        "stock_units": int(model.inventory.stock.units.sum()), "customers": int(ledger.pairs.sum()),
        "repurchase_rate_members": ratio(ledger.repeat_pairs[1], members),
        "repurchase_rate_others": ratio(ledger.repeat_pairs[0], others),
        "n_group_parts_oversized": parts.n_oversized_parts(), "n_groups_split": record.adaptation.groups_split,
    })
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
