"""The staged traffic pools of video accounts: the kernel against a slow per-video reference."""

import numpy as np
import pytest

from weishang.kernels import rng
from weishang.kernels.video import STAGE_STRIDE, VIDEO_STRIDE, pool_exposures

POOL_KEY = rng.stream_key(3, "video.pool", 5)
WATCH_KEY = rng.stream_key(3, "video.watch", 5)


def reference_pool_exposures(key, category_bit, watch, interests, pool_sizes, thresholds):
    """One video at a time, one stage at a time, one draw at a time (slow, obviously right)."""
    n = interests.shape[0]
    exposures, stages = set(), []
    for v in range(key.shape[0]):
        stage = 0
        for s, size in enumerate(pool_sizes):
            pool = set()
            for j in range(size):
                index = int(key[v]) * VIDEO_STRIDE + s * STAGE_STRIDE + j
                user = int(rng.integers(POOL_KEY, np.array([index]), n)[0])
                if interests[user] & category_bit[v]:
                    pool.add(user)
            exposures |= {(v, u) for u in pool}
            if s == len(pool_sizes) - 1 or not pool:
                break
            watched = sum(bool(rng.bernoulli(WATCH_KEY, np.array([int(key[v]) * n + u]), watch[v])[0]) for u in pool)
            if watched < thresholds[s] * len(pool):
                break
            stage = s + 1
        stages.append(stage)
    return sorted(exposures), stages


def setup(n_users=400, n_videos=12, seed=0):
    gen = np.random.default_rng(seed)
    interests = gen.integers(0, 1 << 12, n_users).astype(np.uint16)
    key = np.sort(gen.choice(10_000, n_videos, replace=False)).astype(np.int64)
    category_bit = (np.uint16(1) << gen.integers(0, 12, n_videos).astype(np.uint16)).astype(np.uint16)
    watch = gen.uniform(0.05, 0.9, n_videos)
    return key, category_bit, watch, interests


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pools_match_the_slow_reference(seed):
    key, bit, watch, interests = setup(seed=seed)
    sizes, thresholds = [20, 60, 150], [0.4, 0.5]
    out = pool_exposures(key, bit, watch, interests, sizes, thresholds, POOL_KEY, WATCH_KEY, xp=np)
    pairs, stages = reference_pool_exposures(key, bit, watch, interests, sizes, thresholds)
    assert list(zip(out.video.tolist(), out.user.tolist())) == pairs
    assert out.stage.tolist() == stages
    # some videos stop early and some go all the way, or the test proves little
    assert 0 in stages and len(sizes) - 1 in stages


def test_only_interested_users_see_a_video_and_each_once():
    key, bit, watch, interests = setup()
    out = pool_exposures(key, bit, watch, interests, [50, 200], [0.3], POOL_KEY, WATCH_KEY, xp=np)
    assert ((interests[out.user] & bit[out.video]) != 0).all()
    pairs = out.video * interests.shape[0] + out.user
    assert np.unique(pairs).shape[0] == pairs.shape[0]


def test_better_watch_through_reaches_bigger_pools():
    key, bit, _, interests = setup(n_users=2000, n_videos=40)
    sizes, thresholds = [40, 200, 800], [0.5, 0.5]
    dull = pool_exposures(key, bit, np.full(40, 0.3), interests, sizes, thresholds, POOL_KEY, WATCH_KEY, xp=np)
    gripping = pool_exposures(key, bit, np.full(40, 0.7), interests, sizes, thresholds, POOL_KEY, WATCH_KEY, xp=np)
    assert gripping.stage.mean() > dull.stage.mean()
    assert gripping.user.shape[0] > dull.user.shape[0]


def test_thresholds_must_fit_the_pools():
    key, bit, watch, interests = setup()
    with pytest.raises(ValueError, match="thresholds"):
        pool_exposures(key, bit, watch, interests, [10, 20], [0.5, 0.5], POOL_KEY, WATCH_KEY, xp=np)


def test_the_stand_in_gives_numpy_s_pools(monkeypatch):
    import sys

    from tests import strict_device

    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    key, bit, watch, interests = setup(seed=4)
    host = pool_exposures(key, bit, watch, interests, [20, 60, 150], [0.4, 0.5], POOL_KEY, WATCH_KEY, xp=np)
    dev, xp = strict_device.backend(), strict_device.xp
    out = pool_exposures(dev.to_device(key), dev.to_device(bit), dev.to_device(watch), dev.to_device(interests),
                         [20, 60, 150], [0.4, 0.5], POOL_KEY, WATCH_KEY, xp=xp)
    for name in ("video", "user", "watched", "stage"):
        assert np.array_equal(getattr(host, name), dev.to_host(getattr(out, name)))


@pytest.mark.gpu
def test_cupy_pools_identical(gpu_backend):
    key, bit, watch, interests = setup(n_users=5000, n_videos=200, seed=5)
    sizes, thresholds = [50, 200, 800], [0.4, 0.5]
    host = pool_exposures(key, bit, watch, interests, sizes, thresholds, POOL_KEY, WATCH_KEY, xp=np)
    dev = gpu_backend.to_device
    out = pool_exposures(dev(key), dev(bit), dev(watch), dev(interests), sizes, thresholds, POOL_KEY, WATCH_KEY,
                         xp=gpu_backend.xp)
    for name in ("video", "user", "watched", "stage"):
        assert np.array_equal(getattr(host, name), gpu_backend.to_host(getattr(out, name)))
