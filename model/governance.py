"""Platform governance (SPEC section 6): machine review of posts and differentiated penalties.

Machine review sees ``machine_review_coverage`` of posts; a reviewed post of a violating
merchant is flagged with ``p_detect_violation``. A merchant without brand qualification is
removed at its first flag. An exaggerated advertiser gets a rectification period
(``rectification_ticks``, during which it cannot post) and is removed if flagged again.
Human review capacity and user reports are not yet modelled (issue 5).
"""

from __future__ import annotations

import numpy as np

from kernels import rng


def flag_merchants(n_posts: np.ndarray, violating: np.ndarray, coverage: float, p_detect: float,
                   seed: int, tick: int) -> np.ndarray:
    """(bool[M]) merchants flagged by machine review this tick.

    A violating merchant with k posts escapes with probability (1 - coverage * p_detect) ** k.
    """
    p_flag = 1.0 - (1.0 - coverage * p_detect) ** n_posts
    draw = rng.uniform(rng.stream_key(seed, "governance.review", tick), n_posts.shape[0])
    return violating & (n_posts > 0) & (draw < p_flag)
