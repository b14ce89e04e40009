"""The ``weishang`` command line: run scenarios and inspect configs.

Every user error (bad scenario, unknown key, wrong type, out-of-range value, unusable output
directory, unavailable backend, unreadable edge list, bad option) ends the same way: one line on
stderr starting ``error:``, exit code 2, no traceback, nothing written.
"""

from __future__ import annotations

import enum
import errno
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ...kernels.backend import BackendUnavailable
from ..config import ConfigError, ScenarioConfig, load_config, toml_value
from ..errors import RunDirectoryError, RunInterrupted
from ..graph_io import GraphInputError
from ..preflight import PreflightError


class _Command(typer.core.TyperCommand):
    """A command whose ``--help`` shows no ``<bool>`` type (Typer prints one for its own flag)."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Group(typer.core.TyperGroup):
    """A command group whose ``--help`` shows no ``<bool>`` type."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="weishang: an agent-based model of WeChat's micro-commerce ecosystem.")
config_app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, help="Inspect scenario configs.")
app.add_typer(config_app, name="config")


def _print_version(value: bool) -> None:
    if value:
        from weishang import __version__  # noqa: PLC0415

        typer.echo(f"weishang {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", metavar="", callback=_print_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """weishang: an agent-based model of WeChat's micro-commerce ecosystem."""

#: errors that are the user's to fix: one line, exit 2
USER_ERRORS = (ConfigError, RunDirectoryError, BackendUnavailable, GraphInputError, PreflightError)

err_console = Console(stderr=True)
out_console = Console(width=max(Console().width, 140))  # tables stay readable in logs

ScenarioArg = Annotated[Optional[Path], typer.Argument(help="scenario TOML file (default: the built-in default)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override: section.key=value (repeatable)")]


def to_toml(data: dict[str, dict[str, Any]]) -> str:
    """The resolved config as TOML (sections of scalars), loadable as a scenario file."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None)
        lines.append("")
    return "\n".join(lines)


@app.command(cls=_Command)
def run(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="base seed (run.seed)")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="auto | numpy | cupy (run.backend)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="the run directory itself (must not exist)")] = None,
    skip_preflight: Annotated[bool, typer.Option("--skip-preflight", metavar="",
                                                 help="run even if the memory estimate exceeds what is available")] = False,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", min=0,
                                                            help="checkpoint every K ticks (output.checkpoint_every)")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="continue this --out run from its latest checkpoint")] = False,
) -> None:
    """Run a scenario and write its run directory of Parquet tables."""
    from ..run import prepare_run, run_scenario  # noqa: PLC0415  (keeps `weishang --help` fast)
    from ..study.small_world import size_notes  # noqa: PLC0415

    overrides = [*(set_ or ()), *([f"output.checkpoint_every={checkpoint_every}"] if checkpoint_every is not None else [])]
    config = load_config(scenario, overrides, seed=seed, backend=backend)
    if resume and out is None:
        raise ConfigError("--resume needs --out DIR: the run directory to continue")
    prepared = prepare_run(config, out, not skip_preflight, resume)  # fail before printing anything
    config = prepared.config  # an edge list sets the number of users
    pop = config.population
    err_console.print(f"[bold]{config.run.name}[/]: {pop.n_users:,} users, {config.n_merchants:,} merchants, "
                      f"{config.run.n_ticks} ticks, seed {config.run.seed}")
    if prepared.saved is not None:
        err_console.print(f"resuming after tick {prepared.saved['tick']} (the last checkpoint)")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console) as progress:
        build = progress.add_task("building population", total=None)
        ticks = progress.add_task("ticks", total=config.run.n_ticks, visible=False)

        def on_build_step(message: str) -> None:
            progress.update(build, description=message)

        def on_tick(done: int, total: int) -> None:
            if not progress.tasks[ticks].visible:  # the first tick run (after a checkpoint's, on --resume)
                progress.update(build, description="population built", total=1, completed=1)
                progress.update(ticks, visible=True)
            progress.update(ticks, completed=done)

        result = run_scenario(config, on_build_step=on_build_step, on_tick=on_tick, prepared=prepared)
    out_console.print(summary_table(result.summary, result.manifest))
    for note in size_notes(result.manifest["config"], result.manifest.get("population", {}).get("users")):
        err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    out_console.print(f"results: [bold]{result.run_dir}[/]")


def summary_table(summary: dict[str, Any], manifest: dict[str, Any]) -> Table:
    """The run summary, each figure formatted by its unit in the column registry, then where the
    run ran and how long it took (the ticks' time per tick)."""
    from weishang.model.columns import SUMMARY, display  # noqa: PLC0415

    table = Table(title="run summary", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for column in SUMMARY:
        if column.name in summary:
            table.add_row(column.name, display(column, summary[column.name]))
    timings = manifest.get("timings", {})
    ticks = max(summary.get("ticks") or 1, 1)
    table.add_row("backend", f"{manifest['backend']['name']} ({manifest['backend']['device']})")
    table.add_row("build_seconds", f"{timings.get('build_seconds', 0):.1f} s")
    table.add_row("seconds_per_tick", f"{timings.get('tick_seconds_total', 0) / ticks:.3g} s")
    return table


bench_app = typer.Typer(cls=_Group, add_completion=False, help="Benchmarks that write Parquet (no subcommand: the whole suite).")
app.add_typer(bench_app, name="bench")


class BenchBackend(str, enum.Enum):
    """Where our kernels run in a benchmark (baselines stay on the CPU)."""

    auto = "auto"
    numpy = "numpy"
    cupy = "cupy"


BackendOption = Annotated[BenchBackend, typer.Option(
    "--backend", help="numpy, cupy (a GPU), or auto; the graph build and the baselines run on the CPU")]


@bench_app.callback(invoke_without_command=True)
def bench_suite(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="folder for suite.parquet")] = Path("results/bench"),
    backend: BackendOption = BenchBackend.numpy,
) -> None:
    """Run every benchmark at its default size and write DIR/suite.parquet plus a Markdown table."""
    if ctx.invoked_subcommand is not None:
        return
    from ...kernels.backend import resolve_backend  # noqa: PLC0415
    from .bench import (  # noqa: PLC0415
        bench_cascade,
        bench_end_to_end,
        bench_graph,
        bench_risk,
        write_rows,
    )

    on = resolve_backend(backend.value).name  # refuse cupy without a GPU before anything runs
    rows = []
    for name, run in (("graph build, 1M users", lambda: bench_graph(1_000_000)),
                      ("cascade vs NDlib", lambda: bench_cascade(1_000_000, backend=on)),
                      ("risk scoring, 1e7 transactions", lambda: bench_risk(10_000_000, backend=on)),
                      ("end to end, 100k and 1M users", lambda: bench_end_to_end(backend=on))):
        with err_console.status(name):
            rows += run()
    path = write_rows(rows, out / "suite.parquet")
    lines = ["| benchmark | size | seconds | items/s | baseline items/s | ratio | peak RSS | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['benchmark']} | {r['size']:,} | {r['seconds']:.2f} | {r['items_per_s']:.3g} | "
                     + (f"{r['baseline_items_per_s']:.3g} | {r['ratio']:.1f}x" if r.get("ratio") else "- | -")
                     + f" | {(r.get('peak_rss_bytes') or 0) / 2**30:.2f} GiB | {r['machine']} |")
    (out / "suite.md").write_text("\n".join(lines) + "\n")
    typer.echo("\n".join(lines))
    out_console.print(f"written: [bold]{path}[/] and {out / 'suite.md'}")


@bench_app.command("e2e", cls=_Command)
def bench_e2e_cmd(
    out: Annotated[Path, typer.Option("--out", help="folder for e2e.parquet")] = Path("results/bench"),
    ticks: Annotated[int, typer.Option("--ticks", min=1, help="ticks per size")] = 10,
    sizes: Annotated[Optional[list[int]], typer.Option("--size", min=1000, help="users (repeatable; default 100k and 1M)")] = None,
    backend: BackendOption = BenchBackend.numpy,
) -> None:
    """End-to-end user-days per second and peak memory per user at 100k and 1M users."""
    from .bench import bench_end_to_end, write_rows  # noqa: PLC0415

    chosen = tuple(sizes) if sizes else (100_000, 1_000_000)
    with err_console.status(f"running the default scenario at {', '.join(f'{n:,}' for n in chosen)} users"):
        rows = bench_end_to_end(sizes=chosen, n_ticks=ticks, backend=backend.value)
    path = write_rows(rows, out / "e2e.parquet")
    for r in rows:
        device = (f", device pool {r['device_pool_bytes'] / r['size']:.0f} bytes per user"
                  if r.get("device_pool_bytes") is not None else "")
        out_console.print(f"{r['size']:,} users on {r['backend']}: {r['items_per_s']:.3g} user-days/s, "
                          f"build {r['build_seconds']:.1f} s, {r['bytes_per_user']:.0f} host bytes per user at peak"
                          f"{device}, Mesa {r['mesa_share']:.1%} of tick time")
    out_console.print(f"written: [bold]{path}[/]")


@bench_app.command("graph", cls=_Command)
def bench_graph_cmd(
    size: Annotated[int, typer.Option("--size", min=100, help="users in the benchmark graph")] = 1_000_000,
    out: Annotated[Path, typer.Option("--out", help="folder for graph.parquet")] = Path("results/bench"),
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="also time the plain sort build")] = True,
) -> None:
    """Friend-graph build: time and peak memory, and the CSR step against a plain sort build."""
    from .bench import bench_graph, write_rows  # noqa: PLC0415

    with err_console.status(f"building a {size:,}-user graph in child processes"):
        rows = bench_graph(size, baseline=baseline)
    path = write_rows(rows, out / "graph.parquet")
    table = Table(title=f"graph benchmark ({rows[0]['machine']})")
    for col in ("benchmark", "seconds", "edges/s", "baseline edges/s", "ratio", "peak RSS", "of which work", "bound"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["benchmark"], f"{r['seconds']:.1f}", f"{r['items_per_s']:.3g}",
                      f"{r['baseline_items_per_s']:.3g}" if r.get("baseline_items_per_s") else "-",
                      f"{r['ratio']:.2f}x" if r.get("ratio") else "-",
                      f"{r['peak_rss_bytes'] / 2**30:.2f} GiB",
                      f"{(r['peak_rss_bytes'] - r['rss_before_bytes']) / 2**30:.2f} GiB",
                      f"{r['bound_bytes'] / 2**30:.2f} GiB")
    out_console.print(table)
    g = rows[0]
    out_console.print(f"graph: mean degree {g['mean_degree']:.1f}, p99 {g['p99_degree']:.0f}, max {g['max_degree']}, "
                      f"clustering {g['clustering']:.3f} (random graph: {g['random_clustering']:.5f})")
    out_console.print(f"written: [bold]{path}[/]")


@bench_app.command("cascade", cls=_Command)
def bench_cascade_cmd(
    size: Annotated[int, typer.Option("--size", min=100, help="users in the throughput graph")] = 1_000_000,
    ndlib_size: Annotated[int, typer.Option("--ndlib-size", min=100, help="users in the graph NDlib also runs on")] = 20_000,
    p: Annotated[float, typer.Option("--p", min=0.0, max=1.0, help="edge activation probability")] = 0.01,
    out: Annotated[Path, typer.Option("--out", help="folder for cascade.parquet")] = Path("results/bench"),
    backend: BackendOption = BenchBackend.numpy,
) -> None:
    """Independent cascade throughput (directed edges examined per second) against NDlib."""
    from .bench import bench_cascade, write_rows  # noqa: PLC0415

    with err_console.status("running our kernel and NDlib on the same graph, then ours at full size"):
        rows = bench_cascade(size, ndlib_size=ndlib_size, p=p, backend=backend.value)
    path = write_rows(rows, out / "cascade.parquet")
    table = Table(title=f"cascade benchmark ({rows[0]['machine']})")
    for col in ("benchmark", "users", "seconds", "edges/s", "NDlib edges/s", "ratio", "mean spread", "NDlib spread"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["benchmark"], f"{r['size']:,}", f"{r['seconds']:.2f}", f"{r['items_per_s']:.3g}",
                      f"{r['baseline_items_per_s']:.3g}", f"{r['ratio']:.0f}x", f"{r['mean_spread']:,.0f}",
                      f"{r['baseline_mean_spread']:,.0f}" if r.get("baseline_mean_spread") else "-")
    out_console.print(table)
    out_console.print(f"written: [bold]{path}[/]")


@bench_app.command("risk", cls=_Command)
def bench_risk_cmd(
    size: Annotated[int, typer.Option("--size", min=1000, help="transactions scored at once")] = 10_000_000,
    out: Annotated[Path, typer.Option("--out", help="folder for risk.parquet")] = Path("results/bench"),
    backend: BackendOption = BenchBackend.numpy,
) -> None:
    """Bulk risk scoring throughput (transactions per second) against the per-transaction reference."""
    from .bench import bench_risk, write_rows  # noqa: PLC0415

    with err_console.status(f"scoring {size:,} transactions"):
        rows = bench_risk(size, backend=backend.value)
    path = write_rows(rows, out / "risk.parquet")
    for r, what in zip(rows, ("linear rule", "learned scorer (graph and sequence features)")):
        out_console.print(f"risk scoring, {what} ({r['machine']}): {size:,} transactions in {r['seconds']:.2f} s "
                          f"= {r['items_per_s']:.3g}/s; per-transaction reference {r['baseline_items_per_s']:.3g}/s "
                          f"({r['ratio']:.0f}x)")
    out_console.print(f"written: [bold]{path}[/]")


def _run_with_progress(sweep: Any, out: Optional[Path], workers: int, task_index: Optional[int], resume: bool,
                       scheduler: Optional[str], label: str,
                       what: str = "sweep") -> tuple[list[dict[str, Any]], int]:
    """Check everything a sweep's runs need before showing anything, then run them under a
    progress bar; returns their records and how many were complete before."""
    from ..study.sweep import (  # noqa: PLC0415
        check_memory,
        check_task_index,
        check_unchanged,
        claim_run,
        is_complete,
        run_sweep,
    )

    if out is None:
        raise ConfigError("--out DIR is needed (the directory the runs go to)")
    if (out / "runs.parquet").exists() and not resume and task_index is None:
        raise ConfigError(f"{str(out)!r} already holds a sweep; pass --resume to continue it or choose another --out")
    check_task_index(sweep, task_index, what)  # before anything is shown or created
    check_unchanged(sweep, out)  # a changed sweep file is refused at once
    # N workers' host and device memory together; on a Dask cluster each run's own preflight runs where it lands
    device_free = check_memory(sweep, out, workers, task_index) if scheduler is None else None
    todo = sweep.runs if task_index is None else [sweep.runs[task_index]]
    already = sum(is_complete(r, out) for r in todo)
    # an array-job element claims its run before the progress bar: a second element is refused in one line
    claimed = claim_run(sweep.runs[task_index], out) if task_index is not None else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as progress:
        task = progress.add_task(label, total=1 if task_index is not None else len(sweep.runs))
        progress.update(task, completed=already)
        results = run_sweep(sweep, out, workers, task_index, on_done=lambda _rec: progress.advance(task),
                            scheduler=scheduler, preflight=False, device_free_bytes=device_free,  # checked above
                            claimed=claimed)
    return results, already


@app.command(cls=_Command)
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="sweep TOML file")],
    out: Annotated[Optional[Path], typer.Option("--out", help="sweep directory")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="runs at once (processes)")] = 1,
    list_runs: Annotated[bool, typer.Option("--list", metavar="", help="print the runs and exit")] = False,
    task_index: Annotated[Optional[int], typer.Option("--task-index", help="run only run I (an array-job element)")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="continue a sweep directory that has runs in it")] = False,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address (tcp://host:8786)")] = None,
    backend: Annotated[Optional[BenchBackend], typer.Option(
        "--backend", help="auto | numpy | cupy for every run (run.backend); cupy workers share one GPU")] = None,
    set_: SetOpt = None,
) -> None:
    """Run scenarios x parameter grid x replicate seeds; writes OUT/runs.parquet and one run directory per run."""
    from ..study.sweep import load_sweep  # noqa: PLC0415

    # --backend comes last, as --set does: every run, whatever its scenario file says
    spec = load_sweep(sweep_file, [*(set_ or ()), *([f'run.backend="{backend.value}"'] if backend else [])])
    if list_runs:
        # params: the run's grid point; what every run shares ([set], --set, --backend) is the caption
        shared = ", ".join(f"{key}={json.dumps(value)}" for key, value in spec.common.items()) or "none"
        table = Table(title=f"sweep {spec.name}: {len(spec.runs)} runs", caption=f"every run: {shared}")
        for col in ("run", "scenario", "point", "params", "replicate", "seed"):
            table.add_column(col)
        for r in spec.runs:
            table.add_row(str(r.index), r.scenario, str(r.point), json.dumps(r.params), str(r.replicate), str(r.seed))
        out_console.print(table)
        return
    results, already = _run_with_progress(spec, out, workers, task_index, resume, scheduler, f"sweep {spec.name}")
    failed = [r for r in results if r["status"] != "complete"]
    out_console.print(f"{len(results) - len(failed)} runs completed, {len(failed)} failed, "
                      f"{already} already complete: [bold]{out / 'runs.parquet'}[/]")
    for r in failed[:5]:
        out_console.print(f"  run {r['run_id']} ({r['scenario']}, replicate {r['replicate']}): {r['error']}")


@app.command(cls=_Command)
def sensitivity(
    spec_file: Annotated[Path, typer.Argument(help="sensitivity spec TOML file (see weishang.model.study.sensitivity)")],
    out: Annotated[Optional[Path], typer.Option("--out", help="the screen's directory")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="runs at once (processes)")] = 1,
    task_index: Annotated[Optional[int], typer.Option("--task-index", help="run only run I (an array-job element)")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="", help="continue a screen that has runs in it")] = False,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address (tcp://host:8786)")] = None,
    set_: SetOpt = None,
) -> None:
    """Global sensitivity screen (Morris, or Sobol indices) of levers and parameters on the run
    summary's outcomes; writes OUT/sensitivity.parquet, samples.parquet and sensitivity.png."""
    from ..study.sensitivity import analyze, load_screen  # noqa: PLC0415

    screen = load_screen(spec_file, set_ or ())
    _run_with_progress(screen.sweep, out, workers, task_index, resume, scheduler,
                       f"{screen.method} screen {screen.sweep.name}", "screen")
    if task_index is not None:
        out_console.print(f"run {task_index} done; analyse with: weishang sensitivity {spec_file} --out {out} --resume")
        return
    indices = analyze(screen, out)
    measure = "mu_star" if screen.method == "morris" else "ST"
    for outcome in screen.outcomes:
        ranked = indices.filter(indices["outcome"] == outcome).sort(measure, descending=True)
        top = ", ".join(f"{r['parameter']} ({r[measure]:.3g})" for r in ranked.head(3).iter_rows(named=True))
        out_console.print(f"{outcome}: {top}")
    out_console.print(f"written: [bold]{out / 'sensitivity.parquet'}[/], samples.parquet, sensitivity.png")


@app.command(cls=_Command)
def report(directory: Annotated[Path, typer.Argument(help="a run directory or a sweep directory")]) -> None:
    """Markdown report with plots (GMV by channel, cascade sizes, fraud, survival, scenario deltas)."""
    from ..study.report import write_report  # noqa: PLC0415

    path = write_report(directory)
    out_console.print(f"report: [bold]{path}[/]")


def print_validation(table: Any, title: str) -> None:
    """The validation table as a rich table, misses in red, with the share of fitted outputs
    within tolerance (a sweep: for the mean and for each seed on its own)."""
    from ..study.validation import format_ci, per_replicate_within, share_within  # noqa: PLC0415
    from ..study.validation import format_value as fmt  # noqa: PLC0415

    sweep = "seeds_within" in table.columns
    grid = Table(title=title)
    for column in ("target", "section", "kind", "expected", "low", "high", "simulated", "ci", "within",
                   *(("seeds",) if sweep else ())):
        grid.add_column(column, justify="right" if column not in ("target", "kind") else "left")
    for row in table.iter_rows(named=True):
        within = row["within"]
        mark = "-" if within is None else ("yes" if within else "[red]no[/]")
        scenario = f" ({row['scenario']}/{row['point']})" if sweep else ""
        seeds = () if not sweep else ("-" if row["seeds_within"] is None else
                                      f"{row['seeds_within']}/{row['replicates']}",)
        grid.add_row(row["target"] + scenario, row["section"], row["kind"], fmt(row["expected"]), fmt(row["low"]),
                     fmt(row["high"]), fmt(row["simulated"]), format_ci(row), mark, *seeds)
    out_console.print(grid)
    for scenario_table in (table.partition_by(["scenario", "point"]) if sweep else [table]):
        hit, measured = share_within(scenario_table)
        total = scenario_table.filter(scenario_table["kind"] == "target").height
        where = f"{scenario_table['scenario'][0]}/{scenario_table['point'][0]}: " if sweep else ""
        mean = "the mean: " if sweep else ""
        out_console.print(f"{where}{mean}{hit} of {measured} fitted outputs within tolerance "
                          f"({hit / max(measured, 1):.0%}); {measured} of {total} measured "
                          f"(inputs, alternatives and plausibility bounds are not counted)")
        if sweep:
            each = per_replicate_within(scenario_table)
            out_console.print(f"{where}each seed on its own: " + ", ".join(f"{h} of {m}" for h, m in each)
                              + " (completed replicates, in order)")
        plausible = scenario_table.filter((scenario_table["kind"] == "plausibility") & scenario_table["within"].is_not_null())
        if plausible.height:
            out_console.print(f"{where}{int(plausible['within'].sum())} of {plausible.height} untargeted outputs "
                              f"within their plausibility bounds")


@app.command(cls=_Command)
def dashboard(
    directory: Annotated[Optional[Path], typer.Argument(help="a run or sweep directory for the Results tab")] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port to serve on")] = 8050,
    users: Annotated[int, typer.Option("--users", min=1000, max=2_000_000, help="users of the live world")] = 20_000,
    host: Annotated[str, typer.Option("--host", help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
) -> None:
    """A web page: a small world stepping live with the platform's levers, and a run's or sweep's results
    (open http://HOST:PORT); needs the dashboard extra (pip install 'weishang\\[dashboard]')."""
    try:
        from .dashboard import check_address, serve  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs Dash, Plotly and Waitress ({exc.name} is missing): "
                          f"pip install 'weishang[dashboard]'") from None
    if directory is not None and not directory.exists():
        raise RunDirectoryError(f"{str(directory)!r} does not exist: name a run or sweep directory")
    check_address(host, port)  # a port in use or a bad host: one line before the world is built
    err_console.print(f"weishang dashboard: http://{host}:{port}  (Ctrl-C stops it)")
    serve(directory, port, users, host)


@app.command(cls=_Command)
def validate(directory: Annotated[Path, typer.Argument(help="a run directory or a sweep directory")],
             markdown: Annotated[bool, typer.Option("--markdown", metavar="", help="print the targets as a Markdown table")] = False,
             ) -> None:
    """Compare a run (or a sweep's replicates, with 95% intervals) with every figure of the SPEC (docs/SPEC.md);
    writes DIR/validation.parquet."""
    from ..study.validation import (  # noqa: PLC0415
        manifests_of,
        to_markdown,  # noqa: PLC0415
        validation_warnings,
    )
    from ..study.validation import validate as validate_dir  # noqa: PLC0415

    table, path = validate_dir(directory)
    for warning in validation_warnings(manifests_of(directory)):
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    if markdown:
        for part in (table.partition_by(["scenario", "point"]) if "scenario" in table.columns else [table]):
            typer.echo(to_markdown(part) + "\n")
    else:
        print_validation(table, f"validation: {directory}")
    out_console.print(f"written: [bold]{path}[/]")


@app.command(cls=_Command)
def calibrate(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", help="calibration directory (study.db, calibrated.toml, ...)")] = Path(
        "results/calibration"),
    # bounded here, so a bad count is one line before any progress bar (issue 32: --workers 0 drew one first)
    trials: Annotated[int, typer.Option("--trials", min=1, max=100_000,
                                        help="complete trials per stage (a resumed study tops up)")] = 60,
    workers: Annotated[int, typer.Option("--workers", min=1, max=256, help="worker processes")] = 1,
    replicates: Annotated[Optional[int], typer.Option("--replicates", min=1, max=100,
                                                      help="seeds per trial (default: calibration.toml)")] = None,
    hold_out: Annotated[Optional[str], typer.Option("--hold-out", help="comma-separated targets left out of the fit")] = None,
    stages: Annotated[Optional[str], typer.Option("--stages", help="comma-separated stages to fit (default: all)")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help="calibration spec (default: model/study/calibration.toml)")] = None,
    ensemble: Annotated[Optional[Path], typer.Option(
        "--ensemble", help="instead of a fit: the ensemble of parameter sets consistent with the targets "
                           "(history matching; spec e.g. experiments/calibration/ensemble.toml)")] = None,
    task_index: Annotated[Optional[int], typer.Option(
        "--task-index", help="with --ensemble: make only run I (an array-job element)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", help="Dask scheduler address (tcp://host:8786): the ensemble's runs, or the fit's "
                            "--workers, run there")] = None,
) -> None:
    """Fit the free parameters (model/study/calibration.toml) to the SPEC's targets (docs/SPEC.md) with Optuna;
    resumable; writes OUT/calibrated.toml, trials.parquet and parameter importances. With --ensemble:
    OUT/ensemble.parquet, held_out.parquet, coverage.parquet and ensemble.png."""
    if ensemble is None and task_index is not None:
        raise ConfigError("--task-index runs one of an ensemble's runs (--ensemble SPEC); a fit's trials are "
                          "adaptive, each chosen from the ones before: use --workers, or --scheduler for Dask")
    if ensemble is not None:
        given = [name for name, value in (("--spec", spec), ("--stages", stages), ("--hold-out", hold_out),
                                          ("--replicates", replicates)) if value is not None]
        if given:  # a fit's options: an ensemble's spec says what it matches and holds out
            raise ConfigError(f"{given[0]} is a fit's option; an ensemble's spec sets what it matches (outcomes, "
                              f"exclude, hold_out) and its seeds (centre_replicates)")
        _ensemble(ensemble, out, scenario, set_ or (), workers, task_index, scheduler)
        return
    from ..study.calibrate import MIN_IMPORTANCE_TRIALS, plan_calibration  # noqa: PLC0415
    from ..study.calibrate import calibrate as run_calibration  # noqa: PLC0415

    # every check before the progress bars (which print a line first) and before OUT is made
    hold = [h.strip() for h in hold_out.split(",")] if hold_out else None
    chosen = [s.strip() for s in stages.split(",")] if stages else None
    planned = plan_calibration(out, scenario, set_ or (), trials=trials, workers=workers, hold_out=hold,
                               stages=chosen, spec_path=spec)
    if scheduler is not None:  # an address that answers nothing: one line now, not under the bars
        from ..study.sweep import dask_client  # noqa: PLC0415

        dask_client(scheduler).close()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=min(done, total))

        result = run_calibration(out, scenario, set_ or (), trials=trials, workers=workers, replicates=replicates,
                                 hold_out=hold, stages=chosen, spec_path=spec, on_progress=on_progress,
                                 planned=planned, scheduler=scheduler)
    for stage, value in result.losses.items():
        out_console.print(f"{stage}: best loss {value:.4g}")
    out_console.print(f"calibrated scenario: [bold]{result.scenario_file}[/]  (weishang run {result.scenario_file})")
    out_console.print(f"trials: {result.trials_file}")
    if result.importances_file is not None:
        out_console.print(f"importances: {result.importances_file} and {result.importances_file.with_suffix('.png')}")
    else:
        out_console.print(f"importances: none (a stage needs at least {MIN_IMPORTANCE_TRIALS} complete trials)")


def _ensemble(spec: Path, out: Path, scenario: Optional[Path], overrides: tuple[str, ...] | list[str],
              workers: int, task_index: Optional[int], scheduler: Optional[str]) -> None:
    from ..study.ensemble import plan_ensemble, run_ensemble  # noqa: PLC0415
    from ..study.sweep import check_memory, check_task_index  # noqa: PLC0415

    # a bad spec, scenario, task index or a sweep that does not fit: one line before the progress bar
    planned = plan_ensemble(spec, out, scenario, overrides)
    check_task_index(planned.sweep, task_index, "ensemble")
    if scheduler is None:
        check_memory(planned.sweep, out, workers, task_index)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as progress:
        task = progress.add_task(f"ensemble {planned.sweep.name}", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = run_ensemble(spec, out, scenario, overrides, workers=workers, on_progress=on_progress,
                              task_index=task_index, scheduler=scheduler, planned=planned, preflight=False)
    if result is None:
        out_console.print(f"run {task_index} done; match once every run is: weishang calibrate --ensemble {spec} "
                          f"--out {out}")
        return
    out_console.print(f"{result.made} runs made, {result.already} already complete")
    out_console.print(f"{result.members} of {result.samples} parameter sets consistent with the targets: "
                      f"[bold]{result.ensemble_file}[/]")
    if result.members == 0 and result.ruled_out is not None:
        worst = ", ".join(f"{r['target']} ({r['ruled_out']} sets" + (f", {r['unmeasured']} unmeasured" if
                                                                       r["unmeasured"] else "") + ")"
                          for r in result.ruled_out.head(3).iter_rows(named=True))
        out_console.print(f"the targets that ruled most sets out: {worst}")
    held = result.held_out
    if held.height:
        out_console.print(f"held out of the matching, predicted within the SPEC's band: "
                          f"{int(held['within'].sum())} of {held.height}")
    for (scale,), cover in result.coverage.drop_nulls("covered").group_by(["band_scale"], maintain_order=True):
        out_console.print(f"synthetic truths ({cover['truths'][0]}, bands {scale:g} x the SPEC's): the truth within the "
                          f"matched range for {cover['covered'].mean():.0%} of parameters, the range "
                          f"{cover['range_of_box'].mean():.0%} of the box on average")
    out_console.print(f"ranges: {out / 'ranges.parquet'}, plot {out / 'ensemble.png'}")


@config_app.command("show", cls=_Command)
def config_show(
    scenario: ScenarioArg = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="print JSON instead of TOML")] = False,
) -> None:
    """Print the resolved config (default, then scenario file, then --set overrides)."""
    config = load_config(scenario, set_ or ())
    data = config.resolved()
    typer.echo(json.dumps(data, indent=2) if as_json else to_toml(data))


@config_app.command("schema", cls=_Command)
def config_schema() -> None:
    """Print the config's JSON schema (every section, key, type, range and meaning)."""
    typer.echo(json.dumps(ScenarioConfig.model_json_schema(), indent=2))


def _fail(message: str, code: int = 2) -> int:
    """One line on stderr: control characters a user put into a key, value or path are shown
    escaped (a newline in a --set key must not cut the message)."""
    text = message.strip() or "invalid input"
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)
    print(f"error: {escaped}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app and turns user errors into one line and exit 2."""
    sys.exit(_main(argv))


def _main(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, prog_name="weishang", standalone_mode=False)
    except USER_ERRORS as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _interrupted()
    except RunInterrupted:
        print("error: terminated; nothing unfinished was published (a run in flight stays hidden, marked interrupted)", file=sys.stderr)
        return 143  # 128 + SIGTERM, as shells report it
    except OSError as exc:
        storage = _storage_failure(exc)
        if storage is None:
            raise
        return _fail(storage, code=1)
    except Exception as exc:
        # Typer's parser errors (bad option, missing value, bad choice) come from click, which
        # newer Typer releases vendor privately; both spell them as exceptions carrying
        # `format_message()` and `exit_code`, so we recognise them by that, not by import path.
        if type(exc).__name__ == "Abort":
            return _interrupted()
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message()
            if not message:  # e.g. help shown for a bare command group: already printed
                return int(exc.exit_code)
            return _fail(message)
        raise
    if result == 130:  # newer Typer turns Ctrl-C into this exit code itself, silently
        return _interrupted()
    return result if isinstance(result, int) else 0


#: what a full or failing disk raises (pyarrow's writers raise OSError with the errno in the text)
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EFBIG: "a file grew past the size allowed", errno.EROFS: "the file system is read-only",
                  errno.EIO: "the disk reported an input/output error"}


def _storage_failure(exc: OSError) -> str | None:
    """One line for an OSError of the storage (a full disk, a quota, ...), None for any other.
    Nothing unfinished is published when writing fails (a run appears by an atomic rename), so
    the line says that and what to do; the traceback of 70 lines said nothing more."""
    code = exc.errno if exc.errno in STORAGE_ERRNOS else next(
        (c for c in STORAGE_ERRNOS if f"errno {c}]" in str(exc).lower()), None)
    if code is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return (f"{STORAGE_ERRNOS[code]}{where}; nothing unfinished was published. Free some space and run again: "
            f"a run started with --checkpoint-every continues with --resume from its hidden .NAME.partial-PID "
            f"folder (otherwise that folder may be removed)")


def _interrupted() -> int:
    print("error: interrupted; nothing unfinished was published (a run in flight stays hidden, marked interrupted)", file=sys.stderr)
    return 130


if __name__ == "__main__":
    main()
