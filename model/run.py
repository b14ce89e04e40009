"""Running a scenario end to end: build, tick, record, publish.

:func:`run_scenario` is what ``weishang run`` and scripts call. It checks the run directory and
the backend before building anything, streams each tick's rows to the :class:`RunWriter`, and
publishes the run directory only when the run completed; an interrupted or failed run stays
hidden with a manifest that says why.
"""

from __future__ import annotations

import datetime as dt
import platform
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernels.backend import Backend, resolve_backend
from kernels.host_allocator import retain_freed_memory
from model import __version__
from model.commerce import CommerceModel
from model.config import ScenarioConfig
from model.preflight import check as memory_check
from model.preflight import peak_rss_bytes
from model import checkpoint
from model.recorder import RunDirectoryError, RunInterrupted, RunWriter, check_run_dir_free
from model.merchant import MARKETING_STYLES
from model.tools import PROVIDERS
from model.traffic import CHANNELS, FRIEND_RECOMMENDATION, LIVE_STREAM, SEARCH

if TYPE_CHECKING:
    import pyarrow

LEVELS = (1, 2, 3)
#: levels whose exposures are visits to a channel's link (the post's audience, friends' shares)
VISIT_LEVELS = 2


def _raise_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`RunInterrupted` while a run is going (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(_signum: int, _frame: Any) -> None:
        raise RunInterrupted("SIGTERM")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class RunResult:
    """A finished run: where it is and its headline numbers."""

    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]

    def table(self, name: str) -> "pyarrow.Table":
        """One of the run's tables (``ticks``, ``merchants``, ``cascades``, ``validation``, or
        ``transactions`` when logged) as an Arrow table."""
        import pyarrow.dataset as ds  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        if name == "transactions":
            return ds.dataset(self.run_dir / "transactions", format="parquet").to_table()
        return pq.read_table(self.run_dir / f"{name}.parquet")


def default_run_dir(config: ScenarioConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output.dir) / f"{config.run.name}-seed{config.run.seed}-{stamp}"


def _versions(backend_name: str) -> dict[str, str]:
    import mesa  # noqa: PLC0415
    import pyarrow  # noqa: PLC0415

    versions = {"weishang": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "mesa": mesa.__version__, "pyarrow": pyarrow.__version__}
    if backend_name == "cupy":
        import cupy  # noqa: PLC0415

        versions["cupy"] = cupy.__version__
    return versions


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def tick_rows(model: CommerceModel, seconds: float) -> tuple[dict, dict, dict]:
    """One tick's rows of the ticks, merchants and cascades tables (host arrays).

    A channel's *visits* are the people who open its posts' links: the post's own audience
    (level 1) and friends opening a friend's share (level 2); ``visit_orders_C`` are their
    purchases and ``conversion_C`` their ratio. Level 3, strangers put in front of the post by
    fission tools, is awareness (the SPEC's level-3 funnel starts at "awareness", not a visit):
    it is the channel's ``awareness_C``, counted in reach, not visits. ``orders_C`` and
    ``gmv_C`` count every level, so a channel's GMV and order value include what its fission
    sells. ``conversion_friend_rec`` is level 1 of the channels where a friend recommends
    personally (Moments, groups, live, external links), ``conversion_system_rec`` level 1 of
    search.
    """
    d, tick = model.data, model.tick
    agg, posts = d.aggregates, d.posts
    exposures, shares, buys = agg["exposures"], agg["shares"], agg["buys"]
    gmv_fen, cascade_gmv = agg["gmv_by_scenario_fen"], agg["gmv_per_cascade_fen"]
    exp_total, buy_total, share_total = exposures.sum(axis=0), buys.sum(axis=0), shares.sum(axis=0)
    merchants = model.merchant_list
    m_count = len(merchants)
    active = model.merchant_active.copy()
    n_posts = d.n_posts
    post_rate = model.merchant_post_rate.copy()
    tools, review = model.tools, d.review
    repurchase_others, repurchase_members = model.customers.repurchase_rate()
    provider = tools.provider > 0
    live_posts = posts.channel == LIVE_STREAM
    friend_rec = np.isin(posts.channel, FRIEND_RECOMMENDATION)
    search = posts.channel == SEARCH
    ticks: dict[str, list] = {
        "tick": [tick],
        "n_active_merchants": [int(active.sum())],
        "n_posts": [posts.n],
    }
    for lv in LEVELS:
        ticks[f"exposures_l{lv}"] = [int(exp_total[lv - 1])]
        ticks[f"buys_l{lv}"] = [int(buy_total[lv - 1])]
        ticks[f"conversion_l{lv}"] = [_ratio(buy_total[lv - 1], exp_total[lv - 1])]
        if lv < LEVELS[-1]:
            ticks[f"shares_l{lv}"] = [int(share_total[lv - 1])]
    for i, name in enumerate(CHANNELS):
        mine = posts.channel == i
        visits, visit_orders = int(exposures[mine, :VISIT_LEVELS].sum()), int(buys[mine, :VISIT_LEVELS].sum())
        orders, gmv = int(buys[mine].sum()), cascade_gmv[mine].sum() / 100.0
        ticks[f"n_posts_{name}"] = [int(mine.sum())]
        ticks[f"visits_{name}"] = [visits]
        ticks[f"visit_orders_{name}"] = [visit_orders]
        ticks[f"awareness_{name}"] = [int(exposures[mine, VISIT_LEVELS:].sum())]
        ticks[f"orders_{name}"] = [orders]
        ticks[f"gmv_{name}"] = [gmv]
        ticks[f"conversion_{name}"] = [_ratio(visit_orders, visits)]
        ticks[f"aov_{name}"] = [_ratio(gmv, orders)]
    for name, posts_of in (("friend_rec", friend_rec), ("system_rec", search)):
        visits, orders = int(exposures[posts_of, 0].sum()), int(buys[posts_of, 0].sum())
        ticks[f"visits_{name}"] = [visits]
        ticks[f"visit_orders_{name}"] = [orders]
        ticks[f"conversion_{name}"] = [_ratio(orders, visits)]
    # a live stream's viewers are its level-1 audience (SPEC section 7: viewer conversion)
    ticks["visits_live_viewers"] = [int(exposures[live_posts, 0].sum())]
    ticks["visit_orders_live_viewers"] = [int(buys[live_posts, 0].sum())]
    ticks.update({name: [value] for name, value in agg["risk"].items()})
    ticks.update({
        "n_orders": [int(buy_total.sum())],
        "gmv": [gmv_fen.sum() / 100.0],
        "gmv_qr": [gmv_fen[0] / 100.0],
        "gmv_mini_program": [gmv_fen[1] / 100.0],
        "gmv_cross_border": [gmv_fen[2] / 100.0],
        "gmv_off_platform": [gmv_fen[3] / 100.0],
        "fees": [d.fees.sum() / 100.0],
        "fx_locked": [d.fx_locked],
        "fx_exposure": [d.fx_exposure],
        "settled": [d.settled.sum() / 100.0],
        "gmv_provider": [d.gmv_per_merchant[provider].sum() / 100.0],
        "n_flagged": [int(d.flagged.sum())],
        "n_false_flags": [int((d.flagged & ~model.violating).sum())],
        "n_reports": [int(d.reports.sum())],
        "n_reviewed": [review.reviewed],
        "n_cleared": [review.cleared],
        "review_backlog_reports": [review.backlog_reports],
        "review_backlog_flags": [review.backlog_flags],
        "report_response_minutes": [review.report_response_minutes],
        "n_removed": [d.removed],
        "n_rectifications": [d.rectifications],
        "n_exits": [d.exits],
        "n_active_compliant": [int((active & ~model.violating).sum())],
        "traffic_cost_per_post": [model.traffic_cost()],
        "mean_post_rate": [float(post_rate[active].mean()) if active.any() else 0.0],
        **{f"n_style_{name}": [int((active & (model.style == i)).sum())] for i, name in enumerate(MARKETING_STYLES)},
        "units_sold": [int(d.units_sold.sum())],
        "units_lost": [int(d.units_lost.sum())],
        "stock_units": [int(model.stock.units.sum())],
        "customers": [int(model.customers.pairs.sum())],
        "repurchase_rate_members": [repurchase_members],
        "repurchase_rate_others": [repurchase_others],
        "n_group_parts_oversized": [model.group_parts.n_oversized_parts()],
        "n_groups_split": [d.groups_split],
        "seconds": [seconds],
    })
    diagnostics = model.diagnostics.compute(model.customers.customers, model.customers.repeaters,
                                            model.config.merchants.margin)
    merchant_rows = {
        "tick": np.full(len(merchants), tick, dtype=np.int32),
        "merchant": np.arange(len(merchants), dtype=np.int32),
        "uid": model.population.merchant_uids,
        "active": active,
        "n_posts": n_posts,
        "n_orders": d.orders_per_merchant,
        "gmv": d.gmv_per_merchant / 100.0,
        "settled": d.settled / 100.0,
        "cum_profit": model.accounts.cum_profit.copy(),
        "violations": np.fromiter((m.violations for m in merchants), dtype=np.int32, count=m_count),
        "exit_reason": np.array([m.exit_reason for m in merchants], dtype=object),
        "category": model.category.astype(np.int16),
        "quality": model.quality,
        "compliance": np.array([m.compliance for m in merchants], dtype=object),
        "certification": model.certification.astype(np.int8),
        "provider": np.asarray(PROVIDERS, dtype=object)[tools.provider],
        "marketing_tools": tools.marketing_tools,
        "erp": tools.erp,
        "live": tools.live,
        "ai_service": tools.ai_service,
        "analytics": tools.analytics(tick),
        "style": np.asarray(MARKETING_STYLES, dtype=object)[model.style],
        "post_rate": post_rate,
        "stock_units": model.stock.units.copy(),
        "units_sold": d.units_sold,
        "units_lost": d.units_lost,
        "customers": model.customers.customers.copy(),
        "repeat_customers": model.customers.repeaters.copy(),
        **diagnostics,
    }
    cascade_rows = {
        "tick": np.full(posts.n, tick, dtype=np.int32),
        "cascade_key": posts.key,
        "merchant": posts.merchant.astype(np.int32),
        "channel": np.asarray(CHANNELS, dtype=object)[posts.channel],
        **{f"exposures_l{lv}": exposures[:, lv - 1] for lv in LEVELS},
        **{f"shares_l{lv}": shares[:, lv - 1] for lv in LEVELS[:-1]},
        **{f"buys_l{lv}": buys[:, lv - 1] for lv in LEVELS},
        "gmv": cascade_gmv / 100.0,
    }
    return ticks, merchant_rows, cascade_rows


def summarize(totals: dict[str, float], model: CommerceModel) -> dict[str, Any]:
    """Headline numbers of a run (shown by the CLI and stored in the manifest)."""
    posts = max(totals["n_posts"], 1)
    gmv = totals["gmv"]
    mesa_seconds = sum(model.phase_seconds[p.name] for p in model.plan() if p.engine == "mesa")
    tick_seconds = sum(model.phase_seconds.values())
    summary = {
        "ticks": model.tick + 1,
        "users": model.population.n_users,
        "merchants": model.n_merchants,
        "active_merchants_at_end": int(model.merchant_active.sum()),
        "gmv_cny": round(gmv, 2),
        "orders": int(totals["n_orders"]),
        "posts": int(totals["n_posts"]),
    }
    for lv in LEVELS:
        summary[f"reach_l{lv}_per_post"] = totals[f"exposures_l{lv}"] / posts
    for lv in LEVELS:
        summary[f"conversion_l{lv}"] = _ratio(totals[f"buys_l{lv}"], totals[f"exposures_l{lv}"])
    for name in ("friend_rec", "system_rec", *CHANNELS):
        summary[f"conversion_{name}"] = _ratio(totals[f"visit_orders_{name}"], totals[f"visits_{name}"])
    for name in CHANNELS:
        summary[f"aov_{name}"] = _ratio(totals[f"gmv_{name}"], totals[f"orders_{name}"])
    summary.update({
        "official_share_of_value": 1.0 - totals["gmv_off_platform"] / gmv if gmv else 0.0,
        "conversion_live_viewers": _ratio(totals["visit_orders_live_viewers"], totals["visits_live_viewers"]),
        "provider_share_of_gmv": _ratio(totals["gmv_provider"], gmv),
        "exits": int(totals["n_exits"]),
        "removed": int(totals["n_removed"]),
        "mesa_share_of_tick_time": mesa_seconds / tick_seconds if tick_seconds else 0.0,
    })
    summary.update(ecosystem_summary(totals, model))
    return summary


def ecosystem_summary(totals: dict[str, float], model: CommerceModel) -> dict[str, float]:
    """Governance, community and tool outcomes of a run, in SPEC sections 4-8's terms.

    Yearly figures extrapolate the run's rate to 365 ticks; ``bans_per_year_full_scale`` also
    divides by N / 1.289e9 (SPEC: 230,000 in 2022); ``compliant_survival_per_year`` is the
    share of compliant merchants still active, compounded to a year (SPEC: 81%).
    """
    ticks = model.tick + 1
    per_year = 365.0 / ticks
    compliant = ~model.violating
    active = model.merchant_active
    survival = _ratio(int((active & compliant).sum()), int(compliant.sum()))
    sums = model.analytics_sums  # [before, after] x [gmv, units sold, stock held] x merchant
    before, after = sums[0].sum(axis=1).astype(np.float64), sums[1].sum(axis=1).astype(np.float64)
    turnover_before, turnover_after = _ratio(before[1], before[2]), _ratio(after[1], after[2])
    outside, members = model.customers.repurchase_rate()
    sold, lost = totals["units_sold"], totals["units_lost"]
    return {
        "bans_per_year_full_scale": totals["n_removed"] * per_year / model.config.scale,
        "compliant_survival_per_year": survival ** per_year,
        "report_response_minutes": totals["report_response_minutes"] / ticks,
        "repurchase_rate_members": members,
        "repurchase_rate_others": outside,
        "repurchase_ratio_members": model.customers.repurchase_ratio(),
        "analytics_gmv_growth": _ratio(after[0], before[0]) - 1.0 if before[0] else 0.0,
        "analytics_turnover_gain": turnover_after / turnover_before - 1.0 if turnover_before else 0.0,
        "stockout_share": _ratio(lost, sold + lost),
        "inventory_turnover": _ratio(sold, totals["stock_units"]),
        **{f"share_{style}_style_at_end": _ratio(int((active & (model.style == MARKETING_STYLES.index(style))).sum()),
                                                  int(active.sum()))
           for style in ("content", "inducement")},
    }


def prepare_run(config: ScenarioConfig, out_dir: str | Path | None,
                preflight: bool = True, resume: bool = False) -> tuple[Path, Backend]:
    """Check everything a run needs before anything is built or written: the run directory, the
    checkpoint to resume from, the backend, and (unless ``preflight`` is False) that the run
    fits in memory.

    Returns the run directory and the resolved backend; raises the user errors of
    :func:`run_scenario`.
    """
    final_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    check_run_dir_free(final_dir)
    if resume:
        found = checkpoint.find(final_dir)
        if found is None:
            raise RunDirectoryError(f"nothing to resume: no checkpoint of {str(final_dir)!r} was found "
                                    f"(was the run started with --checkpoint-every?)")
        checkpoint.load(found, config.to_json())  # damaged or from another config: say so now
    backend = resolve_backend(config.run.backend)
    if preflight:
        memory_check(config, backend.name, backend.free_device_bytes())
    return final_dir, backend


def run_scenario(config: ScenarioConfig, out_dir: str | Path | None = None, *,
                 on_build_step: Callable[[str], None] | None = None,
                 on_tick: Callable[[int, int], None] | None = None,
                 preflight: bool = True, resume: bool = False, population: Any = None) -> RunResult:
    """Run a scenario and publish its run directory.

    Args:
        config: the validated scenario.
        out_dir: the run directory itself; a fresh name under ``output.dir`` when omitted.
        on_build_step: told about each population build step (for progress display).
        on_tick: called with (ticks done, ticks total) after every tick.
        preflight: refuse a run whose memory estimate exceeds what is available.
        resume: continue from the newest checkpoint of this run directory (see
            :mod:`model.checkpoint`); the result is identical to an uninterrupted run.
        population: a population already built from this config's population section and
            seed (calibration reuses one across trials; see :meth:`Population.fresh`).

    Raises:
        RunDirectoryError: the run directory exists and is not empty, or cannot be written.
        BackendUnavailable: ``cupy`` was requested without CuPy or a GPU.
        PreflightError: the run will not fit in memory.
        RunInterrupted: SIGTERM arrived (SIGINT raises KeyboardInterrupt); either way the partial
            run stays hidden with status "interrupted".
    """
    final_dir, backend = prepare_run(config, out_dir, preflight, resume)
    if backend.name == "numpy":
        retain_freed_memory()  # ticks reuse mapped pages instead of faulting them in again
    started = dt.datetime.now(dt.timezone.utc)
    resume_dir = checkpoint.find(final_dir) if resume else None
    saved = checkpoint.load(resume_dir, config.to_json()) if resume_dir is not None else None
    writer = RunWriter(final_dir, config.to_json(), config.output.row_group_ticks,
                       resume_from=resume_dir, rows_written=saved["rows_written"] if saved else None)
    manifest: dict[str, Any] = {
        "run_dir": str(final_dir), "scenario": config.run.name, "seed": config.run.seed,
        "config": config.resolved(), "versions": _versions(backend.name),
        "backend": {"name": backend.name, "device": backend.device, "reason": backend.reason},
        "started_at": started.isoformat(),
    }
    totals: dict[str, float] = {}
    previous_sigterm = _raise_on_sigterm()
    try:
        model = CommerceModel(config, backend, population=population, progress=on_build_step)
        pop = model.population
        manifest["population"] = {"users": pop.n_users, "directed_edges": pop.n_edges,
                                  "merchants": model.n_merchants, "groups": pop.n_groups,
                                  "bytes": pop.nbytes()}
        if saved is not None:
            model.load_state_dict(saved["model"])
            totals.update(saved["totals"])
            manifest["resumed_from_tick"] = saved["tick"]
        for _ in range(model.steps, config.run.n_ticks):
            t0 = time.perf_counter()
            model.step()
            ticks, merchants, cascades = tick_rows(model, time.perf_counter() - t0)
            writer.append("ticks", ticks)
            writer.append("merchants", merchants)
            writer.append("cascades", cascades)
            log = model.data.screening.log
            if log is not None:
                writer.write_part("transactions", f"{model.tick:06d}", {"tick": np.full(log["key"].shape[0], model.tick, np.int32), **log})
            for key, value in ticks.items():
                if key != "tick" and isinstance(value[0], (int, float, np.integer, np.floating)):
                    totals[key] = totals.get(key, 0.0) + float(value[0])
            every = config.output.checkpoint_every
            if every and (model.tick + 1) % every == 0 and model.tick + 1 < config.run.n_ticks:
                checkpoint.save(writer.tmp_dir, {"tick": model.tick, "config_json": config.to_json(),
                                                 "model": model.state_dict(), "totals": dict(totals),
                                                 "rows_written": writer.flush()})
            if on_tick is not None:
                on_tick(model.tick + 1, config.run.n_ticks)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, RunInterrupted)) else "failed"
        writer.abort({**manifest, "status": status, "error": f"{type(exc).__name__}: {exc}",
                      "finished_at": dt.datetime.now(dt.timezone.utc).isoformat()})
        raise
    finally:
        _restore_sigterm(previous_sigterm)
    summary = summarize(totals, model)
    manifest.update({
        "summary": summary,
        "timings": {"build_seconds": model.build_seconds, "build_steps": pop.timings,
                    "tick_seconds_total": sum(model.phase_seconds.values()),
                    "phase_seconds": dict(model.phase_seconds)},
        "peak_rss_bytes": peak_rss_bytes(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    })
    run_dir = writer.finish(manifest)
    # every run carries its validation against SPEC.md's figures (`weishang validate` redoes it)
    from model.validation import validate  # noqa: PLC0415

    validate(run_dir)
    return RunResult(run_dir=run_dir, summary=summary, manifest={**manifest, "status": "complete"})
