"""Reading a user-supplied friend graph: an edge-list file (Parquet or CSV) or a networkx graph.

The file has two integer columns, ``src`` and ``dst`` (or, failing those names, its first two
columns), holding user ids. Ids need not be contiguous: they are renumbered 0..N-1 in sorted
order. Direction, self-loops and repeated edges are ignored, as in WeChat friendship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..kernels.graph import graph_from_edges


class GraphInputError(ValueError):
    """An edge-list file or graph object cannot be used; the message is one line."""


def _endpoint_columns(table: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    names = table.column_names
    if "src" in names and "dst" in names:
        cols = ("src", "dst")
    elif len(names) >= 2:
        cols = (names[0], names[1])
    else:
        raise GraphInputError(f"edge list {str(path)!r}: needs two columns (src, dst), found {len(names)}")
    out = []
    for col in cols:
        array = table.column(col).to_numpy(zero_copy_only=False)
        if array.dtype.kind not in "iu":
            raise GraphInputError(
                f"edge list {str(path)!r}: column {col!r} must hold integer user ids, found {array.dtype}")
        out.append(array)
    return out[0], out[1]


def read_edge_list(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) integer arrays from a Parquet or CSV edge list; raises :class:`GraphInputError`."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise GraphInputError(f"edge list {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".txt"):
        raise GraphInputError(f"edge list {str(path)!r}: unknown format {suffix!r} (allowed: .parquet, .csv)")
    try:
        table = pq.read_table(path) if suffix == ".parquet" else pacsv.read_csv(path)
        if table.num_rows == 0:
            raise GraphInputError(f"edge list {str(path)!r} has no edges")
        src, dst = _endpoint_columns(table, path)
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError, IndexError) as exc:
        if isinstance(exc, GraphInputError):
            raise
        # a damaged file can fail anywhere in parsing, down to decoding its column names
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GraphInputError(f"edge list {str(path)!r} cannot be read: {first}") from None
    if np.any(src < 0) or np.any(dst < 0):
        raise GraphInputError(f"edge list {str(path)!r}: user ids must be non-negative")
    return src, dst


def csr_from_edge_arrays(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber ids to 0..N-1 and build the CSR; returns (indptr, indices, original ids)."""
    ids, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    if ids.shape[0] < 2:
        raise GraphInputError("edge list: needs at least two distinct users")
    m = src.shape[0]
    indptr, indices = graph_from_edges(inverse[:m], inverse[m:], ids.shape[0])
    if indices.shape[0] == 0:
        raise GraphInputError("edge list: no friendship between two different users (only self-loops)")
    return indptr, indices, ids


def with_edge_list(config: Any) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """Read and check the scenario's edge list, if it names one, before anything else happens.

    Returns the config with ``population.n_users`` set to the edge list's users (what every
    figure scaled by N / 1.289e9, and the default merchant count, must use), and the friend
    graph's CSR (``indptr`` int64[N+1], ``indices`` int32[E]); the config itself and None without
    an edge list.

    Raises:
        GraphInputError: the file cannot be used, or has fewer users than merchants.
    """
    path = config.population.edge_list
    if not path:
        return config, None
    src, dst = read_edge_list(path)
    indptr, indices, _ids = csr_from_edge_arrays(src, dst)
    n = int(indptr.shape[0] - 1)
    # a user graph may be smaller than the generator's minimum, so no re-validation of n_users
    config = config.model_copy(update={"population": config.population.model_copy(update={"n_users": n})})
    if config.n_merchants > n:
        raise GraphInputError(f"edge list {str(path)!r} has {n:,} users, fewer than the {config.n_merchants:,} "
                              f"merchants (merchants.n_merchants) who each need an account")
    return config, (indptr, indices)


def csr_from_networkx(graph: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of a networkx graph; nodes are renumbered in ``graph.nodes`` order.

    Returns (indptr, indices, node labels as an object array).
    """
    nodes = list(graph.nodes)
    if len(nodes) < 2:
        raise GraphInputError("networkx graph: needs at least two nodes")
    number = {node: i for i, node in enumerate(nodes)}
    edges = np.array([(number[a], number[b]) for a, b in graph.edges()], dtype=np.int64).reshape(-1, 2)
    indptr, indices = graph_from_edges(edges[:, 0], edges[:, 1], len(nodes))
    return indptr, indices, np.array(nodes, dtype=object)
