"""The batched cascade kernel against a slow per-cascade reference that makes the same draws."""

import numpy as np
import pytest

from weishang.kernels import rng
from weishang.kernels.cascade import LevelRule, expose_neighbours, propagate
from weishang.kernels.graph import GraphParams, generate_friend_graph

SEED, TICK = 5, 3


def draw(stream, index):
    return float(rng.uniform(rng.stream_key(SEED, stream, TICK), np.array([index], dtype=np.int64))[0])


def reference_binomial(u, n, p):
    """Inversion of one uniform, one trial at a time in Python floats (the same IEEE operations)."""
    q = 1.0 - p if p > 0.5 else p
    pmf = 1.0
    power, exponent = 1.0 - q, n
    while exponent:
        if exponent & 1:
            pmf *= power
        power *= power
        exponent >>= 1
    cdf, count = pmf, 0
    while count < n and u >= cdf:
        pmf = pmf * ((n - count) / (count + 1)) * (q / (1.0 - q))
        cdf += pmf
        count += 1
    return n - count if p > 0.5 else count


def reference(indptr, indices, level1, keys, origin, cat_bit, rel_price, interests, rel_buy, off, levels,
              city=None, city_start=None, rel_view=None, rel_share=None):
    """Plain loops: one cascade at a time, sets for 'exposed at most once'."""
    n, e = interests.shape[0], indices.shape[0]
    results = []
    for c in range(keys.shape[0]):
        k = int(keys[c])
        view_mult = 1.0 if rel_view is None else rel_view[c]
        share_mult = 1.0 if rel_share is None else rel_share[c]
        seen = set()
        frontier = sorted(set(level1[c]))
        per_level = []
        orders = []
        for level, rule in enumerate(levels, start=1):
            if level > 1 and rule.n_strangers:
                reached = set()
                view_key = rng.stream_key(SEED, f"cascade.view.l{level}", TICK)
                for s in frontier:
                    home = city[s]
                    size = city_start[home + 1] - city_start[home]
                    u = float(rng.uniform(rng.stream_key(view_key, "count"), np.array([k * n + s]))[0])
                    for j in range(reference_binomial(u, rule.n_strangers, min(rule.p_view * view_mult, 1.0))):
                        index = np.array([(k * n + s) * rule.n_strangers + j])
                        reached.add(int(city_start[home] + int(rng.uniform(view_key, index)[0] * size)))
                frontier = sorted(reached)
            elif level > 1:
                reached = set()
                for s in frontier:
                    for pos in range(indptr[s], indptr[s + 1]):
                        if draw(f"cascade.view.l{level}", k * e + pos) < min(rule.p_view * view_mult, 1.0):
                            reached.add(int(indices[pos]))
                frontier = sorted(reached)
            exposed = [u for u in frontier if u not in seen and u != origin[c]]
            seen.update(exposed)
            buys = shares = 0
            sharers = []
            for u in exposed:
                p = rule.p_buy * float(rel_buy[u]) * rel_price[c]
                if not interests[u] & cat_bit[c]:
                    p *= off
                if draw(f"cascade.buy.l{level}", k * n + u) < p:
                    buys += 1
                    orders.append((c, u, level))
                if level < len(levels) and draw(f"cascade.share.l{level}", k * n + u) < min(rule.p_share * share_mult, 1.0):
                    shares += 1
                    sharers.append(u)
            per_level.append((len(exposed), shares if level < len(levels) else 0, buys))
            frontier = sharers
        results.append((per_level, orders))
    return results


@pytest.fixture(scope="module")
def small_graph():
    return generate_friend_graph(600, GraphParams(n_cities=2, mean_degree=12, circle_size=10), seed=4)


@pytest.mark.parametrize("p_view,p_buy,p_share,per_post", [
    (0.0, 0.0, 0.0, False), (1.0, 1.0, 1.0, False), (0.3, 0.2, 0.25, False), (0.3, 0.2, 0.25, True)])
def test_propagate_matches_reference(small_graph, p_view, p_buy, p_share, per_post):
    g = small_graph
    n = g.n_users
    rs = np.random.default_rng(0)
    n_casc = 6
    keys = np.array([3, 17, 40, 41, 90, 200], dtype=np.int64)
    origin = rs.choice(n, n_casc, replace=False).astype(np.int64)
    cat_bit = (1 << rs.integers(0, 4, n_casc)).astype(np.uint16)
    rel_price = rs.uniform(0.5, 1.5, n_casc)
    interests = rs.integers(0, 16, n).astype(np.uint16)
    rel_buy = rs.uniform(0.5, 1.5, n).astype(np.float32)
    levels = (LevelRule(1.0, p_buy, p_share), LevelRule(p_view, p_buy * 0.5, p_share),
              LevelRule(p_view, p_buy * 0.3, 0.0, n_strangers=4))
    city_start = np.concatenate([[0], np.cumsum(np.bincount(g.city))]).astype(np.int64)
    rel_view = rs.uniform(0.2, 3.0, n_casc) if per_post else None
    rel_share = rs.uniform(0.2, 3.0, n_casc) if per_post else None
    # level 1: each origin's friends, plus a repeated user and the origin itself (both must drop)
    l1_c, l1_u = [], []
    level1 = []
    for c in range(n_casc):
        friends = g.indices[g.indptr[origin[c]]:g.indptr[origin[c] + 1]].tolist()
        users = friends + friends[:2] + [int(origin[c])]
        level1.append(users)
        l1_c += [c] * len(users)
        l1_u += users
    out = propagate(g.indptr, g.indices, np.array(l1_c, np.int64), np.array(l1_u, np.int64),
                    cascade_key=keys, origin=origin, category_bit=cat_bit, rel_post=rel_price,
                    max_quantity=np.full(n_casc, 3), interests=interests, rel_buy=rel_buy,
                    rel_off_interest=0.25, levels=levels, seed=SEED, tick=TICK, xp=np,
                    city=g.city, city_start=city_start, rel_view=rel_view, rel_share=rel_share)
    ref = reference(g.indptr, g.indices, level1, keys, origin, cat_bit, rel_price, interests, rel_buy, 0.25, levels,
                    g.city, city_start, rel_view, rel_share)
    for c, (per_level, orders) in enumerate(ref):
        for lv, (exposed, shares, buys) in enumerate(per_level):
            assert out.exposures[c, lv] == exposed
            assert out.buys[c, lv] == buys
            assert out.shares[c, lv] == shares
    got_orders = sorted(zip(out.order_cascade.tolist(), out.order_buyer.tolist(), out.order_level.tolist()))
    assert got_orders == sorted(o for _, orders in ref for o in orders)
    if p_view == 1.0:  # everyone reachable is reached: level 2 = friends of friends, minus earlier
        c = 0
        l1 = set(level1[0]) - {int(origin[0])}
        fof = {int(v) for u in l1 for v in g.indices[g.indptr[u]:g.indptr[u + 1]]} - l1 - {int(origin[0])}
        assert out.exposures[c, 1] == len(fof)
    assert np.all((out.order_quantity >= 1) & (out.order_quantity <= 3))


def test_expose_neighbours_extremes(small_graph):
    g = small_graph
    src = np.array([0, 5, 5], dtype=np.int64)
    cas = np.array([0, 1, 2], dtype=np.int64)
    keys = np.array([0, 1, 2], dtype=np.int64)
    c, u = expose_neighbours(g.indptr, g.indices, src, cas, keys, 1.0, 123, xp=np)
    assert c.shape[0] == int(g.degree()[[0, 5, 5]].sum())
    assert sorted(u[c == 1].tolist()) == g.indices[g.indptr[5]:g.indptr[6]].tolist()
    c, u = expose_neighbours(g.indptr, g.indices, src, cas, keys, 0.0, 123, xp=np)
    assert c.shape[0] == 0


#: the arrays of a CascadeOutcome
OUTCOME_ARRAYS = ("exposures", "shares", "buys", "matched", "order_cascade", "order_buyer", "order_level",
                  "order_quantity")


def propagate_host_and_device(g, backend, n_strangers):
    """Three posts by accounts 1-3 spread through ``g`` over three levels (the last through
    strangers), once on NumPy and once on ``backend``: (host outcome, device outcome)."""
    xp, dev = backend.xp, backend.to_device
    n = g.n_users
    origin = np.array([1, 2, 3], dtype=np.int64)
    l1_c = np.repeat(np.arange(3), g.degree()[origin])
    l1_u = np.concatenate([g.indices[g.indptr[o]:g.indptr[o + 1]] for o in origin]).astype(np.int64)
    city_start = np.concatenate([[0], np.cumsum(np.bincount(g.city))]).astype(np.int64)
    args = dict(cascade_key=np.array([1, 2, 3], np.int64), origin=origin,
                category_bit=np.array([1, 2, 4], np.uint16), rel_post=np.array([1.0, 0.8, 1.2]),
                max_quantity=np.array([3, 5, 1]), city=g.city, city_start=city_start,
                interests=np.full(n, 7, np.uint16), rel_buy=np.ones(n, np.float32),
                rel_view=np.array([1.0, 0.5, 1.5]), rel_tool=np.array([1.0, 0.3, 1.0]))
    levels = (LevelRule(1.0, 0.3, 0.4), LevelRule(0.5, 0.2, 0.3), LevelRule(0.6, 0.1, 0.0, n_strangers=n_strangers))
    host = propagate(g.indptr, g.indices, l1_c, l1_u, **args, rel_off_interest=0.25, levels=levels,
                     seed=1, tick=0, xp=np)
    device = propagate(dev(g.indptr), dev(g.indices), dev(l1_c), dev(l1_u),
                       **{k: dev(v) for k, v in args.items()}, rel_off_interest=0.25, levels=levels,
                       seed=1, tick=0, xp=xp)
    return host, device


@pytest.mark.gpu
def test_propagate_identical_on_cupy(small_graph, gpu_backend):
    host, gpu = propagate_host_and_device(small_graph, gpu_backend, n_strangers=5)
    for name in OUTCOME_ARRAYS:
        assert np.array_equal(getattr(host, name), gpu_backend.to_host(getattr(gpu, name))), name
