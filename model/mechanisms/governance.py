"""Platform governance (SPEC section 6): three review layers and differentiated penalties.

1. **Machine review** sees ``machine_review_coverage`` of posts. A reviewed post of a violating
   merchant is flagged with ``p_detect_violation``, one of a compliant merchant with
   ``p_false_flag``. Flags open cases for human review.
2. **User reports**: each level-1 viewer of a violating merchant's post reports it with
   ``p_report``. Reports open cases too, and are reviewed first.
3. **Human review** closes ``human_review_per_day * N / 1.289e9`` cases a day (stochastically
   rounded). Cases wait in a queue: reports first, then machine flags, merchants in a random
   order each tick. Reviewing a merchant settles all its open cases at once: a violation is
   confirmed (and penalised by the model) or the flags are cleared. What capacity leaves over
   waits for the next day.

Penalties (:func:`apply_penalties`): a merchant without brand qualification is removed at its
first confirmed violation; an exaggerated advertiser gets a rectification period
(``rectification_ticks``, no posting) and is removed if confirmed again.

Report response time is a fluid-queue estimate at full scale (the model's counts divided by
N / 1.289e9): a report waits for the reports queued before it at the start of the day, plus,
when reports arrive faster than the desk closes cases, half the day's excess; then it takes
``human_review_minutes`` to handle. SPEC section 6 reports a response under 15 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import poisson

from ...kernels import rng
from ...kernels.backend import scatter_add
from ..codes import Compliance, ExitReason
from ..plan import Mechanism, Sync, TickRecord
from ..schema import Column, T, col
from ..state import Stateful
from .payments import Orders
from .posting import PostCounts
from .traffic import TrafficOut

MINUTES_PER_DAY = 1440.0


def flag_merchants(n_posts: np.ndarray, violating: np.ndarray, coverage: float, p_detect: float,
                   p_false_flag: float, seed: int, tick: int) -> np.ndarray:
    """(bool[M]) merchants with at least one post flagged by machine review this tick.

    A merchant with k posts escapes with probability (1 - coverage * p) ** k, where p is
    ``p_detect`` for a violating merchant and ``p_false_flag`` for a compliant one.
    """
    p = np.where(violating, p_detect, p_false_flag)
    p_flag = 1.0 - (1.0 - coverage * p) ** n_posts
    draw = rng.uniform(rng.stream_key(seed, "governance.review", tick), n_posts.shape[0])
    return (n_posts > 0) & (draw < p_flag)


def user_reports(viewers: np.ndarray, violating: np.ndarray, p_report: float, seed: int, tick: int) -> np.ndarray:
    """(int64[M]) reports against each merchant: Poisson(viewers * p_report) for violating
    merchants (the binomial's limit at these tiny rates), none for compliant ones."""
    u = rng.uniform(rng.stream_key(seed, "governance.reports", tick), viewers.shape[0])
    rate = np.where(violating, viewers * p_report, 0.0)
    reports = np.zeros(viewers.shape[0], dtype=np.int64)
    seen = np.flatnonzero(rate > 0)  # the inverse CDF is slow: only where a report can happen
    reports[seen] = poisson.ppf(u[seen], rate[seen]).astype(np.int64)
    return reports


@dataclass
class ReviewOutcome:
    """One day of human review.

    Attributes:
        confirmed: (bool[M]) merchants whose violation was confirmed today.
        reviewed: merchants reviewed; cleared: reviewed and found compliant.
        backlog_reports, backlog_flags: merchants still waiting, by case kind.
        report_response_minutes: fluid-queue estimate at full scale (see the module docstring).
    """

    confirmed: np.ndarray
    reviewed: int
    cleared: int
    backlog_reports: int
    backlog_flags: int
    report_response_minutes: float


class ReviewDesk(Stateful):
    """Open cases per merchant and the human review that closes them (host arrays, length M).

    State: ``open_reports`` and ``open_flags`` (int64[M]) waiting for review.
    """

    STATE = ("open_reports", "open_flags")

    def __init__(self, n_merchants: int, config: Any) -> None:
        self.config = config
        self.open_reports = np.zeros(n_merchants, dtype=np.int64)
        self.open_flags = np.zeros(n_merchants, dtype=np.int64)

    def review(self, flagged: np.ndarray, reports: np.ndarray, violating: np.ndarray, active: np.ndarray,
               seed: int, tick: int) -> ReviewOutcome:
        """Queue today's flags (bool[M]) and reports (int64[M]); review up to capacity.

        Cases against merchants that are no longer active are dropped.
        """
        gov, scale = self.config.governance, self.config.scale
        waiting_reports_at_start = int(self.open_reports.sum())
        self.open_reports += reports
        self.open_flags += flagged
        self.open_reports[~active] = 0
        self.open_flags[~active] = 0
        capacity_full = gov.human_review_per_day
        expected = capacity_full * scale
        capacity = int(expected) + int(rng.uniform(rng.stream_key(seed, "governance.capacity", tick), 1)[0]
                                       < expected - int(expected))
        # reports first, then flags; merchants in a random order within each
        priority = rng.uniform(rng.stream_key(seed, "governance.queue", tick), self.open_reports.shape[0])
        with_report = np.flatnonzero(self.open_reports > 0)
        with_flag_only = np.flatnonzero((self.open_reports == 0) & (self.open_flags > 0))
        queue = np.concatenate([with_report[np.argsort(priority[with_report], kind="stable")],
                                with_flag_only[np.argsort(priority[with_flag_only], kind="stable")]])
        served = queue[:capacity]
        confirmed = np.zeros(self.open_reports.shape[0], dtype=bool)
        confirmed[served] = violating[served]
        self.open_reports[served] = 0
        self.open_flags[served] = 0
        per_minute = capacity_full / MINUTES_PER_DAY
        if per_minute > 0 and scale > 0:
            arrivals = reports.sum() / scale / MINUTES_PER_DAY
            excess = max(arrivals - per_minute, 0.0) * MINUTES_PER_DAY / 2
            response = gov.human_review_minutes + (waiting_reports_at_start / scale + excess) / per_minute
        else:
            response = float("inf") if reports.sum() else 0.0
        return ReviewOutcome(confirmed=confirmed, reviewed=int(served.shape[0]),
                             cleared=int((~violating[served]).sum()),
                             backlog_reports=int((self.open_reports > 0).sum()),
                             backlog_flags=int(((self.open_reports == 0) & (self.open_flags > 0)).sum()),
                             report_response_minutes=float(response))


def apply_penalties(merchants: Any, confirmed: np.ndarray, tick: int, rectification_ticks: int) -> tuple[int, int]:
    """Penalise the merchants whose violation was confirmed today (bool[M]); returns (removed,
    put under rectification).

    A merchant without brand qualification, or confirmed for the second time, is removed; an
    exaggerated advertiser's first confirmation starts a rectification period.
    """
    merchants.violations[confirmed] += 1
    removed = confirmed & ((merchants.compliance == Compliance.NO_BRAND) | (merchants.violations > 1))
    rectified = confirmed & ~removed
    merchants.leave(removed, ExitReason.REMOVED)
    merchants.ti_rectify_until[rectified] = tick + 1 + rectification_ticks
    return int(removed.sum()), int(rectified.sum())


@dataclass(frozen=True)
class GovernanceOut:
    """One tick of governance.

    Attributes:
        flagged: (bool[M]) merchants machine review flagged; reports (int64[M]) user reports.
        review: the day's :class:`ReviewOutcome`.
        removed, rectifications: merchants removed, and put under rectification, today.
    """

    flagged: np.ndarray
    reports: np.ndarray
    review: ReviewOutcome
    removed: int
    rectifications: int


#: this step's columns of the ``ticks`` table, filled each tick by :meth:`Governance.row`
COLUMNS: tuple[Column, ...] = tuple(
    col(T, "n_flagged", "int64", "merchants", "sum", "merchants machine review flagged")
    + col(T, "n_false_flags", "int64", "merchants", "sum", "of those, compliant ones")
    + col(T, "n_reports", "int64", "reports", "sum", "user reports against merchants")
    + col(T, "n_reviewed", "int64", "merchants", "sum", "merchants human review settled")
    + col(T, "n_cleared", "int64", "merchants", "sum", "reviewed and found compliant")
    + col(T, "review_backlog_reports", "int64", "merchants", "last", "merchants with reports waiting for review")
    + col(T, "review_backlog_flags", "int64", "merchants", "last", "merchants with only machine flags waiting")
    + col(T, "report_response_minutes", "float64", "minutes", "mean",
          "response time to a report at full scale (a fluid-queue estimate; infinite without review capacity)")
    + col(T, "n_removed", "int64", "merchants", "sum", "merchants removed by governance")
    + col(T, "n_rectifications", "int64", "merchants", "sum", "merchants given a rectification period"))


class Governance(Mechanism):
    name = "governance"
    engine = "arrays"
    sections = ("governance",)
    does = "machine review and reports open cases; human review closes them; penalties by compliance type"
    columns = COLUMNS
    syncs = (Sync("per-merchant level-1 viewers",
                  "user reports are drawn on the host, where the review desk queues them"),)
    STATE = ("desk",)

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.desk = ReviewDesk(model.merchants.n, self.config)

    def row(self, record: TickRecord) -> dict[str, Any]:
        """Cases opened (flags, false flags, reports), settled by review, waiting, the report
        response time, and the penalties given."""
        out, review, merchants = record.governance, record.governance.review, self.model.merchants
        return {"n_flagged": int(out.flagged.sum()),
                "n_false_flags": int((out.flagged & (merchants.compliance == Compliance.COMPLIANT)).sum()),
                "n_reports": int(out.reports.sum()), "n_reviewed": review.reviewed, "n_cleared": review.cleared,
                "review_backlog_reports": review.backlog_reports, "review_backlog_flags": review.backlog_flags,
                "report_response_minutes": review.report_response_minutes, "n_removed": out.removed,
                "n_rectifications": out.rectifications}

    def step(self, tick: int, posting: PostCounts, traffic: TrafficOut, payments: Orders) -> GovernanceOut:
        gov, seed, xp, merchants = self.config.governance, self.config.run.seed, self.xp, self.model.merchants
        violating = merchants.compliance != Compliance.COMPLIANT
        flagged = flag_merchants(posting.reviewed, violating, gov.machine_review_coverage, gov.p_detect_violation,
                                 gov.p_false_flag, seed, tick)
        viewers = xp.zeros(merchants.n, dtype=xp.int64)
        scatter_add(viewers, traffic.on_device.merchant, payments.outcome.exposures[:, 0], xp=xp)
        reports = user_reports(self.backend.to_host(viewers), violating, gov.p_report, seed, tick)
        review = self.desk.review(flagged, reports, violating, merchants.active, seed, tick)
        removed, rectifications = apply_penalties(merchants, review.confirmed, tick, gov.rectification_ticks)
        return GovernanceOut(flagged=flagged, reports=reports, review=review, removed=removed,
                             rectifications=rectifications)
