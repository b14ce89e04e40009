"""The benchmark functions run and write the documented columns (speed is measured by
`weishang bench`, never asserted in a test)."""

import pyarrow.parquet as pq

from weishang.model.apps.bench import COLUMNS, bench_cascade, bench_end_to_end, bench_graph, bench_risk, write_rows


def test_benchmarks_produce_rows_with_the_documented_columns(tmp_path):
    rows = (bench_graph(3000) + bench_cascade(3000, ndlib_size=400, repeats=1, ndlib_repeats=1)
            + bench_risk(20_000, n_users=2000, n_merchants=50, reference_size=500)
            + bench_end_to_end(sizes=(2000,), n_ticks=2))
    table = pq.read_table(write_rows(rows, tmp_path / "b.parquet"))
    assert tuple(table.column_names) == COLUMNS
    assert set(table.column("benchmark").to_pylist()) == {"graph_build", "graph_csr_vs_plain_sort", "ic_vs_ndlib",
                                                          "ic", "risk_score", "risk_learned", "end_to_end"}
    for row in table.to_pylist():
        assert row["items"] > 0 and row["seconds"] > 0 and row["items_per_s"] > 0 and row["machine"]
        if row["baseline_items_per_s"] is not None:
            assert row["ratio"] == row["items_per_s"] / row["baseline_items_per_s"]


def test_device_benchmarks_run_their_kernels_on_the_device(monkeypatch):
    # on the strict CPU stand-in for CuPy: inputs go to the device before the timing, results
    # come back explicitly, and rows name the backend and the device they ran on
    import sys

    from weishang.model.apps import bench
    from tests import strict_device

    monkeypatch.setitem(sys.modules, "cupyx", strict_device.cupyx)
    monkeypatch.setattr(bench, "resolve_backend", lambda name: strict_device.backend())
    rows = (bench.bench_cascade(3000, ndlib_size=400, repeats=1, ndlib_repeats=1, backend="cupy")
            + bench.bench_risk(20_000, n_users=2000, n_merchants=50, reference_size=500, backend="cupy"))
    assert {r["backend"] for r in rows} == {"strict"}
    assert all("strict host/device stand-in" in r["machine"] for r in rows)
    assert all(r["items_per_s"] > 0 for r in rows)
