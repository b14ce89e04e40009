"""Orders become payments (SPEC section 3): stock fills them, then each is paid officially or
off-platform, in a payment scenario, with the transaction component's fee.

Stock (the shelf and the supplier's same-day shipments) fills the cascade's orders first come
first served (:func:`weishang.model.mechanisms.inventory.fill_orders`); a buyer whose order cannot ship today
waits for the next shipment with ``merchants.p_wait_backorder`` (presale, common in
micro-commerce) and pays now; the rest are lost sales. Official payments go through QR code (T+0), mini-program (T+1) or
cross-border (T+3) in the configured mix. Off-platform payments (orders from external links,
and private transfers) settle at once and escape risk control; the official share of value
(SPEC: 92.3%) comes out of those two.

Money is counted in integer fen (0.01 CNY): integer sums are exact in any order, so NumPy and
CuPy (whose scatter-adds run in no fixed order) agree to the fen.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ...kernels import rng
from ...kernels.backend import bin_sums
from ...kernels.cascade import CascadeOutcome
from ..codes import Channel, PaymentScenario
from ..config import PaymentsConfig
from ..plan import Mechanism, Sync, TickRecord
from ..schema import Column, T, col
from .inventory import fill_orders
from .traffic import TrafficOut


@dataclass
class PaymentBatch:
    """One tick's payments, on the device.

    Attributes:
        scenario: (int8[O]) a :class:`~weishang.model.codes.PaymentScenario` code.
        amount: (int64[O]) fen.
        fee: (int64[O]) fen of transaction component fee (0 without the component, and off-platform).
        merchant: (int64[O]) merchant index.
    """

    scenario: Any
    amount: Any
    fee: Any
    merchant: Any


def make_payments(order_key: Any, merchant: Any, amount: Any, uses_component: Any,
                  cfg: PaymentsConfig, seed: int, tick: int, *, xp: ModuleType, off_platform: Any = None,
                  video_shop: Any = None, video_commission: float = 0.0) -> PaymentBatch:
    """Assign each order a payment scenario and fee.

    Args:
        order_key: (int64[O]) stable key of each order (for counter-based draws).
        merchant: (int64[O]) merchant index of each order.
        amount: (int64[O]) order value in fen.
        uses_component: (bool[M]) whether each merchant uses the transaction component.
        off_platform: (bool[O]) optional: orders that left WeChat (external links) and are paid
            outside it whatever the draw says.
        video_shop: (bool[O]) optional: orders from video-account posts, paid in the video shop's
            mini-program when paid officially, with ``video_commission`` of their value added to
            their fee.
    """
    official = ~rng.bernoulli(rng.stream_key(seed, "payments.private_transfer", tick), order_key,
                              cfg.p_private_transfer, xp=xp)
    if off_platform is not None:
        official &= ~off_platform
    u = rng.uniform(rng.stream_key(seed, "payments.scenario", tick), order_key, xp=xp)
    # plain ints on the device: CuPy takes Python scalars by exact type, not enum subclasses
    scenario = xp.where(u < cfg.mix_qr, int(PaymentScenario.QR),
                        xp.where(u < cfg.mix_qr + cfg.mix_mini_program, int(PaymentScenario.MINI_PROGRAM),
                                 int(PaymentScenario.CROSS_BORDER))).astype(xp.int8)
    if video_shop is not None:  # the video shop checks out in a mini-program
        scenario = xp.where(video_shop, int(PaymentScenario.MINI_PROGRAM), scenario).astype(xp.int8)
    scenario = xp.where(official, scenario, xp.int8(PaymentScenario.OFF_PLATFORM)).astype(xp.int8)
    fee_ppm = round(cfg.transaction_fee * 1_000_000)
    fee = xp.where(official & uses_component[merchant], amount * fee_ppm // 1_000_000, 0)
    if video_shop is not None and video_commission > 0:  # the video shop's commission, on top
        commission_ppm = round(video_commission * 1_000_000)
        fee = fee + xp.where(official & video_shop, amount * commission_ppm // 1_000_000, 0)
    return PaymentBatch(scenario=scenario, amount=amount, fee=fee, merchant=merchant)


def keep_orders(out: CascadeOutcome, keep: Any, *, xp: ModuleType) -> CascadeOutcome:
    """The outcome with only the kept orders, purchases recounted per cascade and level.

    ``keep``: (int64[K]) the kept orders' positions, ascending (one size synchronisation finds
    them, instead of one per array cut with a boolean mask)."""
    n_cascades, n_levels = out.buys.shape
    cascade, level = out.order_cascade[keep], out.order_level[keep]
    flat = cascade * n_levels + (level.astype(xp.int64) - 1)
    buys = bin_sums(flat, n_cascades * n_levels, xp=xp).reshape(n_cascades, n_levels)
    return CascadeOutcome(out.exposures, out.shares, buys, out.matched, cascade, out.order_buyer[keep], level,
                          out.order_quantity[keep])


def units_sold_and_lost(merchant: Any, quantity: Any, filled: Any, n_merchants: int, *, xp: ModuleType) -> Any:
    """(int64[2, M]) units each merchant sold (row 0) and units demanded beyond its stock (row 1).

    One pass over bins ``merchant`` (filled) and ``M + merchant`` (not filled) instead of one
    masked scatter per row; the two rows come back to the host in one copy.

    Args:
        merchant, quantity: (int64[O]) each order's merchant and units; filled (bool[O]).
    """
    bins = xp.where(filled, merchant, merchant + n_merchants)
    return bin_sums(bins, 2 * n_merchants, quantity, xp=xp).reshape(2, n_merchants)


@dataclass(frozen=True)
class Orders:
    """The tick's filled orders and their payments.

    Attributes:
        outcome: the cascade outcome with only the orders stock could fill (buys recounted).
        key: (int64[O], device) stable key of each filled order: cascade key * N + buyer.
        payments: their :class:`PaymentBatch` (device).
        units_sold, units_lost: (int64[M], host) units each merchant sold, and units demanded
            beyond its stock.
    """

    outcome: CascadeOutcome
    key: Any
    payments: PaymentBatch
    units_sold: np.ndarray
    units_lost: np.ndarray

    @property
    def buyer(self) -> Any:
        """(int64[O], device) who placed each filled order."""
        return self.outcome.order_buyer


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Payments.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "units_sold", "int64", "units", "sum", "units sold")
    + col(T, "units_lost", "int64", "units", "sum", "units demanded beyond stock (lost sales)"))


class Payments(Mechanism):
    name = "payments"
    engine = "arrays"
    sections = ("payments", "channels", "merchants")
    uses = ("inventory",)
    does = "stock fills orders; paid by QR (T+0), mini-program (T+1), cross-border (T+3), or outside WeChat"
    columns = COLUMNS
    syncs = (Sync("per-merchant units sold and lost", "the stock and the Mesa agents are on the host (the copy also "
                  "says whether any order went unfilled)"),)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        merchants, dev = model.merchants, model.backend.to_device
        self.price_fen = dev(np.round(merchants.price * 100).astype(np.int64))
        self.uses_component = dev(merchants.uses_component)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """Units sold and units demanded beyond stock."""
        out = record.payments
        return {"units_sold": int(out.units_sold.sum()), "units_lost": int(out.units_lost.sum())}

    def step(self, tick: int, traffic: TrafficOut, cascade: CascadeOutcome) -> Orders:
        xp, dev, host = self.xp, self.backend.to_device, self.backend.to_host
        merchants, posts = self.model.merchants, traffic.on_device
        out = cascade
        merchant = posts.merchant[out.order_cascade]
        filled = fill_orders(merchant, out.order_quantity, dev(self.model.inventory.stock.available()), xp=xp)
        order_key = posts.key[out.order_cascade] * self.model.population.n_users + out.order_buyer
        # presale: a buyer whose order cannot ship today may wait for the next shipment (and pays now)
        filled |= rng.bernoulli(rng.stream_key(self.config.run.seed, "payments.backorder_wait", tick), order_key,
                                self.config.merchants.p_wait_backorder, xp=xp)
        # the Mesa agents and the stock read these on the host: one copy for both rows, and it
        # says whether any order went unfilled (every order is for at least one unit)
        sold, lost = host(units_sold_and_lost(merchant, out.order_quantity, filled, merchants.n, xp=xp))
        key = order_key
        if lost.any():
            kept = xp.flatnonzero(filled)
            out = keep_orders(out, kept, xp=xp)
            merchant, key = merchant[kept], order_key[kept]
        amount = self.price_fen[merchant] * out.order_quantity
        channel = posts.channel[out.order_cascade]
        video = channel == int(Channel.VIDEO_ACCOUNT)
        # where the platform lets videos carry links out (it does not, at the default), a share of
        # their buyers follow the link and pay outside WeChat
        link_share = self.config.channels.video_external_link_share
        off_platform = channel == int(Channel.EXTERNAL_LINK)
        if link_share > 0:
            video_link = video & rng.bernoulli(rng.stream_key(self.config.run.seed, "payments.video_link", tick), key,
                                               link_share, xp=xp)
            off_platform, video = off_platform | video_link, video & ~video_link
        payments = make_payments(key, merchant, amount, self.uses_component, self.config.payments,
                                 self.config.run.seed, tick, xp=xp, off_platform=off_platform, video_shop=video,
                                 video_commission=self.config.channels.video_commission)
        return Orders(outcome=out, key=key, payments=payments, units_sold=sold, units_lost=lost)
