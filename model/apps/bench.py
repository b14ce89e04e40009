"""Benchmarks that write Parquet: ``weishang bench`` (the whole suite), or one of ``bench graph``,
``bench cascade``, ``bench risk`` and ``bench e2e``.

Each measurement runs in a fresh child process, so its peak resident memory is its own, and
every row records the machine it ran on. Speed is reported next to a baseline measured in the
same run on the same input, as a ratio, because the machine may be shared and noisy.

Columns: ``benchmark, backend, size, seconds, items_per_s, baseline_items_per_s, ratio`` plus
``peak_rss_bytes`` (the child's peak), ``rss_before_bytes`` (its interpreter and imports before
the work), ``bound_bytes`` (10 bytes per directed edge + 200 per user), ``items``, ``machine``,
and for the graph build its degree statistics and the mean local clustering of 300 random users
next to that of a random graph of the same density.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ...kernels.backend import Backend, resolve_backend
from ..preflight import peak_rss_bytes


def machine(backend: Backend | None = None) -> str:
    """One line naming the machine: CPU count, memory, processor and Python, and the GPU when
    the benchmark ran on one."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    line = f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    if backend is not None and backend.name != "numpy":
        line += f", {backend.name} on {backend.device}"
    return line


def _synchronize(backend: Backend) -> None:
    """Wait for the device's queued work, so a timer read after it counts that work."""
    if backend.name == "cupy":
        backend.xp.cuda.Device().synchronize()


def _device_pool_bytes(backend: Backend) -> int | None:
    """Bytes CuPy's memory pool holds (it keeps what it allocated: about the peak); None on CPU."""
    if backend.name != "cupy":
        return None
    return int(backend.xp.get_default_memory_pool().total_bytes())


def _graph_child(size: int, mean_degree: float, seed: int, what: str, queue: Any) -> None:
    import numpy as np

    from ...kernels.graph import (
        GraphParams,
        csr_from_pairs,
        csr_from_pairs_plain,
        friend_pairs,
        generate_friend_graph,
        local_clustering,
    )

    params = GraphParams(mean_degree=mean_degree)
    rss_before = peak_rss_bytes()  # the interpreter and imports, before any graph work
    if what == "generate":
        t0 = time.perf_counter()
        g = generate_friend_graph(size, params, seed=seed)
        seconds = time.perf_counter() - t0
        peak = peak_rss_bytes()
        degree = g.degree()
        sample = np.random.default_rng(seed).choice(size, min(size, 300), replace=False)
        queue.put({"seconds": seconds, "items": g.n_edges, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
                   "mean_degree": float(degree.mean()), "max_degree": int(degree.max()),
                   "p99_degree": float(np.percentile(degree, 99)),
                   "clustering": float(local_clustering(g.indptr, g.indices, sample).mean()),
                   "random_clustering": float(degree.mean() / size)})
        return
    u, v, bound, _city = friend_pairs(size, params, seed=seed)
    t0 = time.perf_counter()
    if what == "csr_block":
        indptr, indices = csr_from_pairs(u, v, size, degree_bound=bound)
    else:
        indptr, indices = csr_from_pairs_plain(u, v, size)
    seconds = time.perf_counter() - t0
    queue.put({"seconds": seconds, "items": int(indices.shape[0]), "peak_rss_bytes": peak_rss_bytes(),
               "rss_before_bytes": rss_before})


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def bench_graph(size: int, mean_degree: float = 175.0, seed: int = 1, baseline: bool = True) -> list[dict[str, Any]]:
    """Rows of the graph benchmark: the whole build, and the CSR step against the plain sort build."""
    rows = []
    full = _in_child(_graph_child, size, mean_degree, seed, "generate")
    bound = 10 * full["items"] + 200 * size
    rows.append({"benchmark": "graph_build", "seconds": full["seconds"], "items": full["items"],
                 "peak_rss_bytes": full["peak_rss_bytes"], "rss_before_bytes": full["rss_before_bytes"],
                 "bound_bytes": bound, **{k: full[k] for k in GRAPH_STATS}})
    block = _in_child(_graph_child, size, mean_degree, seed, "csr_block")
    row = {"benchmark": "graph_csr_vs_plain_sort", "seconds": block["seconds"], "items": block["items"],
           "peak_rss_bytes": block["peak_rss_bytes"], "rss_before_bytes": block["rss_before_bytes"],
           "bound_bytes": bound}
    if baseline:
        plain = _in_child(_graph_child, size, mean_degree, seed, "csr_plain")
        row["baseline_items_per_s"] = plain["items"] / plain["seconds"]
        row["baseline_seconds"] = plain["seconds"]
        row["baseline_peak_rss_bytes"] = plain["peak_rss_bytes"]
    rows.append(row)
    where = machine()
    for r in rows:
        r.update(backend="numpy", size=size, machine=where)
        r["items_per_s"] = r["items"] / r["seconds"]
        r["ratio"] = r["items_per_s"] / r["baseline_items_per_s"] if r.get("baseline_items_per_s") else None
    return rows


def _ic_edges_per_s(indptr: Any, indices: Any, seeds: Any, p: float, repeats: int,
                    backend: Backend) -> tuple[float, int, float]:
    """Our independent cascade: (seconds, directed edges examined, mean spread) over repeats,
    on ``backend`` (the graph is copied to the device first, outside the timing).

    Edges examined: every out-edge of every activated node gets its one attempt.
    """
    import numpy as np

    from ...kernels.cascade import independent_cascade

    degree = np.diff(indptr)
    dev_indptr, dev_indices = backend.to_device(indptr), backend.to_device(indices)
    seconds, examined, spread = 0.0, 0, 0
    for r in range(repeats):
        t0 = time.perf_counter()
        step = independent_cascade(dev_indptr, dev_indices, seeds, p, seed=r, xp=backend.xp)
        _synchronize(backend)
        seconds += time.perf_counter() - t0
        active = backend.to_host(step) >= 0
        examined += int(degree[active].sum())
        spread += int(active.sum())
    return seconds, examined, spread / repeats


def _ndlib_edges_per_s(indptr: Any, indices: Any, seeds: Any, p: float, repeats: int) -> tuple[float, int, float]:
    """NDlib's IndependentCascadesModel on the same graph: (seconds, edges examined, mean spread).

    Only the iterations are timed (not building the networkx graph or NDlib's configuration),
    which favours NDlib. Edges examined are counted the same way as for ours.
    """
    import ndlib.models.epidemics as ep
    import ndlib.models.ModelConfig as mc
    import networkx as nx
    import numpy as np

    n = indptr.shape[0] - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    upper = rows < indices
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(rows[upper].tolist(), indices[upper].tolist()))
    config = mc.Configuration()
    config.add_model_initial_configuration("Infected", [int(x) for x in seeds])
    for u, v in graph.edges():
        config.add_edge_configuration("threshold", (u, v), p)
    degree = np.diff(indptr)
    seconds, examined, spread = 0.0, 0, 0
    for r in range(repeats):
        np.random.seed(r)  # NDlib draws from NumPy's global generator
        model = ep.IndependentCascadesModel(graph)
        model.set_initial_status(config)
        t0 = time.perf_counter()
        while model.iteration(node_status=False)["node_count"][1]:
            pass
        seconds += time.perf_counter() - t0
        active = np.array([s != 0 for s in model.status.values()])
        examined += int(degree[np.array(list(model.status.keys()))[active]].sum())
        spread += int(active.sum())
    return seconds, examined, spread / repeats


def bench_cascade(size: int, ndlib_size: int = 20_000, p: float = 0.01, n_seeds: int = 10,
                  repeats: int = 10, ndlib_repeats: int = 2, seed: int = 1,
                  backend: str = "numpy") -> list[dict[str, Any]]:
    """Rows of the cascade benchmark.

    ``ic_vs_ndlib``: our kernel and NDlib on the same ``ndlib_size``-user graph, side by side.
    ``ic``: our kernel alone on a ``size``-user graph (NDlib cannot hold that graph here: networkx
    needs tens of GiB for 175M directed edges), with NDlib's per-edge rate from the first row as
    its baseline, since both are rates per edge examined. Ours runs on ``backend`` (NDlib on
    the CPU, as it only can).
    """
    import numpy as np

    from ...kernels.graph import GraphParams, generate_friend_graph

    resolved = resolve_backend(backend)
    rows = []
    small = generate_friend_graph(ndlib_size, GraphParams(), seed=seed)
    seeds = np.random.default_rng(seed).choice(ndlib_size, n_seeds, replace=False)
    ours = _ic_edges_per_s(small.indptr, small.indices, seeds, p, repeats, resolved)
    theirs = _ndlib_edges_per_s(small.indptr, small.indices, seeds, p, ndlib_repeats)
    ndlib_rate = theirs[1] / theirs[0]
    rows.append({"benchmark": "ic_vs_ndlib", "size": ndlib_size, "seconds": ours[0], "items": ours[1],
                 "baseline_items_per_s": ndlib_rate, "baseline_seconds": theirs[0],
                 "mean_spread": ours[2], "baseline_mean_spread": theirs[2]})
    del small
    big = generate_friend_graph(size, GraphParams(), seed=seed)
    seeds = np.random.default_rng(seed).choice(size, n_seeds, replace=False)
    ours = _ic_edges_per_s(big.indptr, big.indices, seeds, p, max(1, repeats // 3), resolved)
    rows.append({"benchmark": "ic", "size": size, "seconds": ours[0], "items": ours[1],
                 "baseline_items_per_s": ndlib_rate, "mean_spread": ours[2]})
    where = machine(resolved)
    for r in rows:
        r.update(backend=resolved.name, machine=where)
        r["items_per_s"] = r["items"] / r["seconds"]
        r["ratio"] = r["items_per_s"] / r["baseline_items_per_s"]
    return rows


def bench_risk(size: int, n_users: int = 1_000_000, n_merchants: int = 20_000, repeats: int = 3,
               reference_size: int = 20_000, seed: int = 1, backend: str = "numpy") -> list[dict[str, Any]]:
    """Rows of the risk benchmark: ``size`` transactions scored in bulk on ``backend`` (best of
    ``repeats``; inputs already on the device), against the per-transaction reference scorer on
    ``reference_size`` of them, with velocity history from three earlier ticks."""
    import numpy as np

    from ...kernels.risk import (
        RiskState,
        RiskWeights,
        reference_scores,
        score_transactions,
        update_state,
    )

    resolved = resolve_backend(backend)
    xp, dev = resolved.xp, resolved.to_device
    rs = np.random.default_rng(seed)
    host_state = RiskState.empty(n_users, n_merchants, 7, xp=np)
    device_state = RiskState.empty(n_users, n_merchants, 7, xp=xp)
    for tick in range(3):
        k = size // 10
        history = (rs.integers(0, n_users, k), rs.integers(0, n_merchants, k), rs.integers(100, 100_000, k))
        update_state(host_state, *history, tick, xp=np)
        update_state(device_state, *(dev(a) for a in history), tick, xp=xp)
    tx = dict(payer=rs.integers(0, n_users, size), merchant=rs.integers(0, n_merchants, size),
              amount=rs.integers(100, 100_000, size), scenario=rs.integers(0, 3, size).astype(np.int8),
              new_device=rs.random(size) < 0.02, account_age=rs.integers(0, 3000, size))
    flag = rs.random(n_merchants) < 0.05
    common = dict(weights=RiskWeights(), reference_amount=21_500.0, new_account_ticks=30)
    on_device = {k: dev(v) for k, v in tx.items()}
    flag_on_device = dev(flag)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        score_transactions(**on_device, merchant_flag=flag_on_device, state=device_state, **common, xp=xp)
        _synchronize(resolved)
        best = min(best, time.perf_counter() - t0)
    sample = {k: v[:reference_size] for k, v in tx.items()}
    t0 = time.perf_counter()
    reference_scores(**sample, merchant_flag=flag, state=host_state, **common)
    reference_rate = reference_size / (time.perf_counter() - t0)
    rate = size / best
    rows = [{"benchmark": "risk_score", "backend": resolved.name, "size": size, "seconds": best, "items": size,
             "items_per_s": rate, "baseline_items_per_s": reference_rate, "ratio": rate / reference_rate,
             "machine": machine(resolved)}]
    return rows + _bench_learned(resolved, rs, tx, flag, host_state, device_state, n_users, n_merchants, repeats,
                                 reference_size)


def _bench_learned(resolved: Backend, rs: Any, tx: dict[str, Any], flag: Any, host_state: Any, device_state: Any,
                   n_users: int, n_merchants: int, repeats: int, reference_size: int) -> list[dict[str, Any]]:
    """The learned scorer's row: the tick's graph counts (distinct payer-merchant pairs by a
    sort), the 17 features of every payment and the weighted sum, on the same payments, 84% of
    them everyday payments to the shops' slot as in a run (the pairs are counted over the
    micro-commerce ones); against the per-transaction reference features and sum."""
    import numpy as np

    from ...kernels.risk import tick_view
    from ...kernels.risk_features import (
        N_FEATURES,
        GraphState,
        account_view,
        feature_scores,
        reference_features,
        tick_graph,
        update_graph,
    )

    xp, dev = resolved.xp, resolved.to_device
    size = tx["payer"].shape[0]
    merchant = np.where(rs.random(size) < 0.84, n_merchants, tx["merchant"])  # the everyday shops' slot
    tx = {**tx, "merchant": merchant}
    slots = n_merchants + 1
    flag = np.concatenate([flag, [False]])
    coef, bias = rs.normal(size=N_FEATURES), -8.0
    host_graph, device_graph = GraphState.empty(n_users, slots, 7, xp=np), GraphState.empty(n_users, slots, 7, xp=xp)
    for day in range(3):  # a few days of graph history, as the velocity history above
        k = size // 10
        p, m = rs.integers(0, n_users, k), rs.integers(0, slots, k)
        age, device = rs.integers(0, 3000, k), rs.random(k) < 0.02
        update_graph(host_graph, tick_graph(p, m, age < 30, device, n_users, slots, n_merchants, xp=np), day, xp=np)
        update_graph(device_graph, tick_graph(dev(p), dev(m), dev(age < 30), dev(device), n_users, slots,
                                              n_merchants, xp=xp), day, xp=xp)
    # the velocity state was built with n_merchants slots: give it the everyday shops' slot too
    pad = (lambda a, x: x.concatenate([a, x.zeros((a.shape[0], 1), dtype=a.dtype)], axis=1))
    host_state.merchant_window = pad(host_state.merchant_window, np)
    device_state.merchant_window = pad(device_state.merchant_window, xp)
    on_device = {k: dev(v) for k, v in tx.items()}
    flag_on_device = dev(flag)
    common = dict(reference_amount=21_500.0, new_account_ticks=30, day=3)

    def score() -> Any:
        rule = tick_view(on_device["payer"], on_device["merchant"], device_state, common["reference_amount"], xp=xp)
        g = tick_graph(on_device["payer"], on_device["merchant"], on_device["account_age"] < 30,
                       on_device["new_device"], n_users, slots, n_merchants, xp=xp, burst=rule.burst_of,
                       today=rule.merchant_today)
        view = account_view(g, rule, device_graph, xp=xp)
        return feature_scores(**on_device, merchant_flag=flag_on_device, view=view, **common, coef=coef, bias=bias,
                              xp=xp)

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        score()
        _synchronize(resolved)
        best = min(best, time.perf_counter() - t0)
    sample = {k: v[:reference_size] for k, v in tx.items()}
    t0 = time.perf_counter()
    for row in reference_features(**sample, merchant_flag=flag, state=host_state, graph=host_graph,
                                  n_micro=n_merchants, **common):
        bias + sum(c * v for c, v in zip(coef.tolist(), row))
    reference_rate = reference_size / (time.perf_counter() - t0)
    rate = size / best
    return [{"benchmark": "risk_learned", "backend": resolved.name, "size": size, "seconds": best, "items": size,
             "items_per_s": rate, "baseline_items_per_s": reference_rate, "ratio": rate / reference_rate,
             "machine": machine(resolved)}]


def _e2e_child(n_users: int, n_ticks: int, seed: int, backend: str, queue: Any) -> None:
    from ...kernels.host_allocator import retain_freed_memory
    from ..commerce import CommerceModel
    from ..config import load_config

    config = load_config(overrides=[f"population.n_users={n_users}", f"run.n_ticks={n_ticks}",
                                    f'run.backend="{backend}"'], seed=seed)
    resolved = resolve_backend(backend)
    if resolved.name == "numpy":
        retain_freed_memory()  # as `weishang run` does
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    model = CommerceModel(config, backend=resolved)
    _synchronize(resolved)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(n_ticks):
        model.step()
    _synchronize(resolved)
    ticks = time.perf_counter() - t1
    queue.put({"build_seconds": build, "seconds": ticks, "peak_rss_bytes": peak_rss_bytes(), "rss_before_bytes": rss_before,
               "mesa_share": model.plan.share_of_time("mesa"), "backend": resolved.name,
               "machine": machine(resolved), "device_pool_bytes": _device_pool_bytes(resolved)})


def bench_end_to_end(sizes: tuple[int, ...] = (100_000, 1_000_000), n_ticks: int = 10, seed: int = 1,
                     backend: str = "numpy") -> list[dict[str, Any]]:
    """User-days per second of the default scenario on ``backend`` (ticks only; the build is its
    own column), and peak memory per user (host; on a GPU also the device pool), each size in a
    fresh child process."""
    resolve_backend(backend)  # a clear error here rather than in the child
    rows = []
    for n in sizes:
        r = _in_child(_e2e_child, n, n_ticks, seed, backend)
        rows.append({"benchmark": "end_to_end", "backend": r["backend"], "size": n, "seconds": r["seconds"],
                     "items": n * n_ticks, "items_per_s": n * n_ticks / r["seconds"], "baseline_items_per_s": None,
                     "ratio": None, "peak_rss_bytes": r["peak_rss_bytes"], "rss_before_bytes": r["rss_before_bytes"],
                     "bytes_per_user": (r["peak_rss_bytes"] - r["rss_before_bytes"]) / n,
                     "device_pool_bytes": r["device_pool_bytes"],
                     "build_seconds": r["build_seconds"], "mesa_share": r["mesa_share"], "machine": r["machine"]})
    return rows


GRAPH_STATS = ("mean_degree", "p99_degree", "max_degree", "clustering", "random_clustering")
COLUMNS = ("benchmark", "backend", "size", "seconds", "items_per_s", "baseline_items_per_s", "ratio",
           "items", "peak_rss_bytes", "rss_before_bytes", "bound_bytes", "baseline_seconds", "baseline_peak_rss_bytes", *GRAPH_STATS, "mean_spread", "baseline_mean_spread",
           "bytes_per_user", "device_pool_bytes", "build_seconds", "mesa_share", "machine")


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write benchmark rows to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: [r.get(c) for r in rows] for c in COLUMNS})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
