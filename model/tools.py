"""Merchants' tools and service providers (SPEC sections 5, 7, 8): who has what, and what it does.

Adoption shares are inputs (83% of merchants use marketing tools, 61% an ERP); what the tools do
is mechanism, and the service providers' share of GMV (SPEC: 47%) is an outcome of it:

* a **service provider** (Weimob- or Youzan-like) brings marketing tools and an ERP; a better
  merchant is likelier to sign up (adoption probability proportional to its quality);
* **marketing tools** (group buying, price cutting, live fission) carry level 3: a post without
  them reaches ``no_tools_stranger_reach`` as many strangers;
* an **ERP** and the **analytics tools** make the demand forecast sharper, so stock runs out less
  and less safety stock sits idle (see :mod:`weishang.model.mechanisms.inventory`);
* **deep analytics** (certified merchants only, see ``platform.deep_data_min_certification``)
  also targets pushes: interest-matched friends are pushed the post more often and off-interest
  friends less (see :func:`target_exposures`);
* **AI customer service** answers ``ai_resolution`` of the questions would-be buyers ask, so
  fewer consultations go unanswered and fewer sales are lost (:func:`consultation_multiplier`);
* **live streaming** is a channel only merchants that live-stream use.

Every draw is counter-based (index = merchant index), so adoption does not depend on the order
merchants are created in.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..kernels import fused, rng
from .codes import Provider


def analytics_window(n_ticks: int) -> int:
    """Ticks compared before and after adopting analytics: a quarter, or a third of a shorter run."""
    return max(1, min(90, n_ticks // 3))


def draw_tools(config: Any, quality: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Draw each merchant's provider and tools: the :class:`~weishang.model.merchant.MerchantTable`
    columns ``provider`` (a Provider code), ``marketing_tools``, ``erp``, ``live``,
    ``ai_service`` and ``ti_analytics`` (tick of adopting the analytics tools, -1 for never).

    Args:
        config: the :class:`~weishang.model.config.ScenarioConfig`.
        quality: (float64[M]) product quality (mean about 1).
        seed: the run's seed.
    """
    t = config.tools
    m = quality.shape[0]
    u = rng.uniform(rng.stream_key(seed, "merchant.provider"), m)
    # adoption proportional to quality, normalised so the expected share is share_provider
    p_provider = np.minimum(t.share_provider * quality / max(float(quality.mean()), 1e-12), 1.0)
    has_provider = u < p_provider
    which = rng.uniform(rng.stream_key(seed, "merchant.provider.which"), m) < t.share_weimob
    provider = np.where(has_provider, np.where(which, Provider.WEIMOB, Provider.YOUZAN), Provider.NONE).astype(np.int8)

    def among_the_rest(stream: str, share: float) -> np.ndarray:
        # provider merchants always have the tool; others draw so the overall share is `share`
        rest = max(1.0 - t.share_provider, 1e-12)
        p = min(max((share - t.share_provider) / rest, 0.0), 1.0)
        return has_provider | rng.bernoulli(rng.stream_key(seed, stream), m, p)

    window = analytics_window(config.run.n_ticks)
    adopts = rng.bernoulli(rng.stream_key(seed, "merchant.analytics"), m, t.share_analytics)
    # adopters start between one window in and one window before the end, so every adopter has
    # a full window of sales before and after (the SPEC's quarter-on-quarter comparison)
    span = max(config.run.n_ticks - 2 * window + 1, 1)
    start = window + rng.integers(rng.stream_key(seed, "merchant.analytics.tick"), m, span)
    return {
        "provider": provider,
        "marketing_tools": among_the_rest("merchant.marketing_tools", t.share_marketing_tools),
        "erp": among_the_rest("merchant.erp", t.share_erp),
        "live": rng.bernoulli(rng.stream_key(seed, "merchant.live"), m, t.share_live),
        "ai_service": rng.bernoulli(rng.stream_key(seed, "merchant.ai_service"), m, t.share_ai_service),
        "ti_analytics": np.where(adopts, start, -1).astype(np.int64),
    }


def consultation_multiplier(ai_service: np.ndarray, p_consult: float, p_unanswered: float,
                            ai_resolution: float) -> np.ndarray:
    """(float64[M]) share of would-be buyers not lost to an unanswered question.

    A would-be buyer asks first with ``p_consult``; a question the merchant handles alone goes
    unanswered in time with ``p_unanswered``; AI customer service resolves ``ai_resolution`` of
    questions at once and passes the rest to the merchant. So a buyer is lost with
    ``p_consult * p_unanswered * (1 - ai_resolution if AI else 1)``.
    """
    unresolved = np.where(ai_service, 1.0 - ai_resolution, 1.0)
    return 1.0 - p_consult * p_unanswered * unresolved


def forecast_sigma(erp: np.ndarray, analytics: np.ndarray, config: Any) -> np.ndarray:
    """(float64[M]) log-normal error of each merchant's demand forecast: the sharpest tool it has."""
    t = config.tools
    sigma = np.where(erp, min(t.erp_forecast_sigma, config.merchants.forecast_sigma), config.merchants.forecast_sigma)
    return np.where(analytics, np.minimum(sigma, t.analytics_forecast_sigma), sigma)


def target_exposures(cascade: Any, user: Any, targeted: Any, category_bit: Any, interests: Any,
                     keep_off_interest: float, cascade_key: Any, key: int, *, xp: ModuleType) -> tuple[Any, Any]:
    """Deep-analytics targeting of level-1 pushes: thin the off-interest viewers of targeted posts.

    The caller drew the targeted posts' pushes with the view probability times
    ``analytics_match_boost``; matched viewers keep all of those, off-interest viewers keep
    ``keep_off_interest / boost`` of them (passed here as ``keep_off_interest``).

    Args:
        cascade, user: (int64[X]) level-1 exposures.
        targeted: (bool[C]) posts of merchants using deep analytics.
        category_bit: (uint16[C]); interests (uint16[N]).
        keep_off_interest: share of an off-interest targeted exposure kept.
        cascade_key: (int64[C]); key: stream key of the thinning draws.

    Returns:
        The kept (cascade, user).
    """
    if cascade.shape[0] == 0:
        return cascade, user
    keep = fused.launch(_KEEP_TARGETED, cascade, user, targeted, category_bit, interests, cascade_key,
                        float(keep_off_interest), int(interests.shape[0]), np.uint64(key), xp=xp)
    kept = xp.flatnonzero(keep)
    return cascade[kept], user[kept]


def _keep_targeted_reference(cascade: Any, user: Any, targeted: Any, category_bit: Any, interests: Any,
                             cascade_key: Any, keep_off_interest: float, n_users: int, key: Any) -> Any:
    """(bool[X]) which exposures :func:`target_exposures` keeps: all but the off-interest ones of
    targeted posts, which keep with ``keep_off_interest`` (draw index ``cascade_key[k] * N + u``)."""
    off_interest = (interests[user] & category_bit[cascade]) == 0
    candidate = np.flatnonzero(targeted[cascade] & off_interest)  # only these draw
    index = cascade_key[cascade[candidate]] * n_users + user[candidate]
    keep = np.ones(cascade.shape[0], dtype=np.bool_)
    keep[candidate] = rng.bernoulli(int(key), index, keep_off_interest)
    return keep


#: the thinning in one launch on CuPy (see :mod:`weishang.kernels.fused`)
_KEEP_TARGETED = fused.register(fused.FusedKernel(
    "weishang_keep_targeted",
    "int64 cascade, int64 user, raw bool targeted, raw uint16 category_bit, raw uint16 interests, "
    "raw int64 cascade_key, float64 keep_off_interest, int64 n_users, uint64 key",
    "bool keep",
    """bool off_interest = (interests[user] & category_bit[cascade]) == 0;
       keep = !(targeted[cascade] && off_interest)
              || weishang_unit(weishang_draw(cascade_key[cascade] * n_users + user, key)) < keep_off_interest;""",
    _keep_targeted_reference, rng.DRAW_PREAMBLE))
