"""Benchmarks that write Parquet: ``weishang bench graph`` (more suites join in later issues).

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
import resource
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq



def machine() -> str:
    """One line naming the machine: CPU count, memory, processor and Python."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.processor() or platform.machine()}, Python {platform.python_version()}"


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _graph_child(size: int, mean_degree: float, seed: int, what: str, queue: Any) -> None:
    import numpy as np

    from kernels.graph import (GraphParams, csr_from_pairs, csr_from_pairs_plain, friend_pairs,
                               generate_friend_graph, local_clustering)

    params = GraphParams(mean_degree=mean_degree)
    rss_before = _peak_rss()  # the interpreter and imports, before any graph work
    if what == "generate":
        t0 = time.perf_counter()
        g = generate_friend_graph(size, params, seed=seed)
        seconds = time.perf_counter() - t0
        peak = _peak_rss()
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
    queue.put({"seconds": seconds, "items": int(indices.shape[0]), "peak_rss_bytes": _peak_rss(),
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


GRAPH_STATS = ("mean_degree", "p99_degree", "max_degree", "clustering", "random_clustering")
COLUMNS = ("benchmark", "backend", "size", "seconds", "items_per_s", "baseline_items_per_s", "ratio",
           "items", "peak_rss_bytes", "rss_before_bytes", "bound_bytes", "baseline_seconds", "baseline_peak_rss_bytes", *GRAPH_STATS, "machine")


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write benchmark rows to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: [r.get(c) for r in rows] for c in COLUMNS})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path
