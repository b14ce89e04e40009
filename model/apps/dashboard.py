"""``weishang dashboard [DIR]``: watch a scenario run, pull a lever, compare results, in the browser.

Built on Dash (Plotly), not Solara: Solara's page loads its JavaScript from a CDN at run time
(the ``solara-assets`` package that serves it locally is an empty stub on the package mirror
here), so it shows nothing on an offline machine or an HPC login node; Dash serves its bundles
and Plotly's from the installed packages, so the page works wherever the Python side does.

Two tabs:

* **Live**: a small world (``--users``, 20k by default) stepping in the page, from a
  :class:`~weishang.model.apps.live.LiveSession`; the platform's levers (:data:`~weishang.model.apps.live.LEVERS`)
  take effect from the next tick when applied, in the same world; reset starts a new one. Plots:
  GMV by channel, conversion by level, merchants in business and exits, fraud caught and false
  positives, merchants' styles and channel mix, and one cascade (the last tick's widest post)
  drawn by level with buyers marked.
* **Results**: a run or sweep directory (``DIR``) read with polars: each scenario's outcomes
  with 95% intervals over replicates, effects against the baseline paired over common seeds
  (over an ensemble, seed and parameter intervals apart), and GMV over time with bands.

One process serves one live session (a local tool for one analyst, not a multi-user service).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from dash import Dash, Input, Output, State, callback_context, dash_table, dcc, html
from plotly.subplots import make_subplots
from waitress import serve as waitress_serve

from ..study.effects import (
    OUTCOMES,
    ensemble_effects,
    paired_effects,
    run_outcomes,
    summarize_outcomes,
)
from ..study.small_world import size_notes
from .live import CHANNELS, LEVERS, LiveSession, default_levers

LEVEL_COLOURS = ("#222222", "#1f77b4", "#ff7f0e", "#2ca02c")
CHANNEL_COLOURS = ("#4c72b0", "#55a868", "#c44e52", "#8172b3", "#ccb974", "#64b5cd", "#dd8452")
STYLE = {"font-family": "sans-serif", "font-size": "13px"}


# ------------------------------------------------------------------ live figures

def live_figure(frame: pl.DataFrame) -> go.Figure:
    """The live plots of a session's history (one row per tick)."""
    fig = make_subplots(rows=2, cols=3, subplot_titles=(
        "GMV by channel (CNY a day)", "conversion by level", "merchants in business / exits",
        "fraud caught / false positives", "merchants' styles", "channel mix of paid posts"))
    t = frame["tick"].to_list()
    for i, c in enumerate(CHANNELS):
        colour = CHANNEL_COLOURS[i % len(CHANNEL_COLOURS)]
        fig.add_trace(go.Scatter(x=t, y=frame[f"gmv_{c}"].to_list(), name=c, stackgroup="gmv", legendgroup=c,
                                 line={"width": 0.5, "color": colour}), 1, 1)
        fig.add_trace(go.Scatter(x=t, y=frame[f"effort_{c}"].to_list(), name=c, showlegend=False, legendgroup=c,
                                 stackgroup="mix", line={"width": 0.5, "color": colour}), 2, 3)
    # every plot but the channels' has its own small legend in its corner (one long legend for six
    # plots sent the eye across the page); the channels' legend serves both channel plots
    for level in (1, 2, 3):
        fig.add_trace(go.Scatter(x=t, y=frame[f"conversion_l{level}"].to_list(), name=f"level {level}",
                                 line={"color": LEVEL_COLOURS[level]}, legend="legend2"), 1, 2)
    fig.add_trace(go.Scatter(x=t, y=frame["n_active_merchants"].to_list(), name="in business", legend="legend3"), 1, 3)
    fig.add_trace(go.Bar(x=t, y=frame["n_exits"].to_list(), name="exits", legend="legend3"), 1, 3)
    fig.add_trace(go.Scatter(x=t, y=frame["n_fraud_intercepted"].to_list(), name="fraud caught",
                             legend="legend4"), 2, 1)
    fig.add_trace(go.Scatter(x=t, y=frame["n_false_positives"].to_list(), name="false positives",
                             legend="legend4"), 2, 1)
    for style in ("content", "ad", "inducement"):
        fig.add_trace(go.Scatter(x=t, y=frame[f"n_style_{style}"].to_list(), name=style, legend="legend5"), 2, 2)
    corners = {}
    for name, axis in (("legend2", "xaxis2"), ("legend3", "xaxis3"), ("legend4", "xaxis4"), ("legend5", "xaxis5")):
        x_domain, y_domain = fig.layout[axis].domain, fig.layout["y" + axis[1:]].domain
        corners[name] = {"x": x_domain[1], "y": y_domain[1], "xanchor": "right", "yanchor": "top",
                         "font": {"size": 9}, "bgcolor": "rgba(255,255,255,0.7)"}
    fig.update_layout(height=620, margin={"l": 40, "r": 10, "t": 40, "b": 30},
                      legend={"font": {"size": 10}, "title": {"text": "channel"}}, **corners)
    fig.update_xaxes(title_text="day")
    return fig


def cascade_figure(graph: dict[str, np.ndarray] | None) -> go.Figure:
    """One cascade on rings by level: the merchant in the centre, level 1 (friends), level 2
    (friends of sharers), level 3 (strangers); buyers as diamonds."""
    fig = go.Figure()
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, title="one cascade (the last day's widest post)",
                      xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
    if graph is None or graph["user"].shape[0] == 0:
        return fig
    level = graph["level"]
    x, y = np.zeros(level.shape[0]), np.zeros(level.shape[0])
    for lvl in (1, 2, 3):
        rows = np.flatnonzero(level == lvl)
        angle = 2 * math.pi * (np.arange(rows.shape[0]) + 0.5) / max(rows.shape[0], 1)
        x[rows], y[rows] = lvl * np.cos(angle), lvl * np.sin(angle)
    ex, ey = [], []
    for s, d in zip(graph["src"].tolist(), graph["dst"].tolist()):
        ex += [x[s], x[d], None]
        ey += [y[s], y[d], None]
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line={"width": 0.4, "color": "#bbbbbb"}, hoverinfo="skip",
                             showlegend=False))
    names = ("merchant", "level 1: friends", "level 2: friends of sharers", "level 3: strangers")
    for lvl in range(4):
        for buyer in (False, True):
            rows = np.flatnonzero((level == lvl) & (graph["bought"] == buyer))
            if rows.shape[0] == 0:
                continue
            fig.add_trace(go.Scatter(
                x=x[rows], y=y[rows], mode="markers", name=names[lvl] + (" (bought)" if buyer else ""),
                marker={"color": LEVEL_COLOURS[lvl], "size": 11 if buyer or lvl == 0 else 6,
                        "symbol": "diamond" if buyer else "circle", "line": {"width": 1 if buyer else 0}},
                text=[f"user {u}" for u in graph["user"][rows]]))
    return fig


# ------------------------------------------------------------------ results

def read_results(directory: Path) -> dict[str, Any]:
    """A run or sweep directory's per-tick table and outcomes (the report's statistics)."""
    from ..study.report import _read  # noqa: PLC0415  (the report's reader: runs, sweeps, ensembles)

    tables = _read(directory)
    outcomes = run_outcomes(tables.ticks)
    if tables.members is not None:
        effects = (ensemble_effects(outcomes, tables.baseline, tables.members)
                   if len(tables.scenarios) > 1 else pl.DataFrame())
    else:
        effects = paired_effects(outcomes, tables.baseline) if len(tables.scenarios) > 1 else pl.DataFrame()
    from ..study.report import _point_label  # noqa: PLC0415

    points = sorted(set(tables.ticks["point"].to_list()))
    return {"ticks": tables.ticks, "summary": summarize_outcomes(outcomes), "effects": effects,
            "scenarios": tables.scenarios, "baseline": tables.baseline, "members": tables.members,
            "point_labels": {p: _point_label(tables, p) for p in points}}


def results_figure(ticks: pl.DataFrame, scenarios: list[str], point: int | None) -> go.Figure:
    """GMV a day per scenario at one grid point (``point``; None: an ensemble's members, each
    member's runs counted as draws): the mean over the runs and its 95% t interval, as the
    report gives it (:func:`weishang.model.study.effects.t_interval`; none with one run)."""
    from scipy import stats  # noqa: PLC0415

    fig = go.Figure()
    if point is not None:
        ticks = ticks.filter(pl.col("point") == point)
    for i, scenario in enumerate(scenarios):
        per_tick = ticks.filter(pl.col("scenario") == scenario).group_by("tick").agg(
            pl.col("gmv").mean().alias("mean"), pl.col("gmv").std().alias("sd"), pl.len().alias("n")).sort("tick")
        n = per_tick["n"].to_numpy()
        half = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * per_tick["sd"].fill_null(0.0).to_numpy()
                        / np.sqrt(n), 0.0)
        mean = per_tick["mean"].to_numpy()
        colour = f"hsl({(i * 67) % 360}, 60%, 45%)"
        t = per_tick["tick"].to_list()
        if (n > 1).any():
            fig.add_trace(go.Scatter(x=t + t[::-1], y=(mean + half).tolist() + np.maximum(mean - half, 0.0).tolist()[::-1],
                                     fill="toself", line={"width": 0}, fillcolor=colour, opacity=0.2,
                                     showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=t, y=mean.tolist(), name=scenario, line={"color": colour}))
    runs = "replicates" if point is not None else "members and replicates"
    fig.update_layout(height=380, title=f"GMV a day (CNY): mean over {runs}, 95% t interval",
                      margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def effects_figure(effects: pl.DataFrame, outcome: str, point: int | None) -> go.Figure:
    """One outcome's relative effect per scenario against the baseline with its 95% interval
    (over an ensemble: the seed interval and the parameter range, one above the other)."""
    fig = go.Figure()
    if effects.height == 0:
        return fig
    rows = effects.filter(pl.col("outcome") == outcome)
    if "point" in rows.columns and point is not None:
        rows = rows.filter(pl.col("point") == point)
    y = rows["scenario"].to_list()
    if "relative_mean" in rows.columns:  # an ensemble
        series = (("relative_seed_low", "relative_seed_high", "seed 95%", -0.12),
                  ("relative_param_low", "relative_param_high", "parameter range", 0.12))
        mid = rows["relative_mean"].fill_null(float("nan")).to_numpy() * 100
    else:
        series = (("relative_low", "relative_high", "95% over replicates", 0.0),)
        mid = rows["relative"].fill_null(float("nan")).to_numpy() * 100
    for low, high, name, shift in series:
        lo = rows[low].fill_null(float("nan")).to_numpy() * 100
        hi = rows[high].fill_null(float("nan")).to_numpy() * 100
        fig.add_trace(go.Scatter(x=mid, y=[f"{s} " if shift > 0 else s for s in y], mode="markers", name=name,
                                 error_x={"type": "data", "symmetric": False, "array": hi - mid,
                                          "arrayminus": mid - lo}))
    fig.add_vline(x=0, line_color="grey")
    fig.update_layout(height=120 + 40 * len(y) * len(series), title=f"{outcome}: change against the baseline (%)",
                      margin={"l": 180, "r": 10, "t": 40, "b": 30})
    return fig


def _table(frame: pl.DataFrame, table_id: str) -> dash_table.DataTable:
    shown = frame.with_columns([pl.col(c).round(4) for c, t in frame.schema.items() if t == pl.Float64])
    return dash_table.DataTable(id=table_id, data=shown.to_dicts(), page_size=30, sort_action="native",
                                columns=[{"name": c, "id": c} for c in shown.columns],
                                style_cell={"font-size": "12px", "padding": "2px 6px"})


# ------------------------------------------------------------------ the app

def _lever_control(lever: Any, value: Any) -> html.Div:
    control_id = {"type": "lever", "key": lever.key}
    if lever.choices:
        options = [{"label": label, "value": i} for i, (label, _v) in enumerate(lever.choices)]
        chosen = next((i for i, (_l, v) in enumerate(lever.choices) if v == value), 0)
        control = dcc.Dropdown(id=control_id, options=options, value=chosen, clearable=False)
    else:
        control = dcc.Input(id=control_id, type="number", value=value, min=lever.low, max=lever.high,
                            step="any", debounce=True, style={"width": "150px"})
    return html.Div([html.Label(lever.label, style={"display": "block", "font-size": "12px"}), control],
                    style={"margin-bottom": "8px"})


def lever_values(values: list[Any]) -> dict[str, Any]:
    """The page's controls (in :data:`LEVERS` order) as config values."""
    out = {}
    for lever, value in zip(LEVERS, values):
        if value is None:
            continue
        if lever.choices:
            out[lever.key] = lever.choices[int(value)][1]
        else:
            number = float(value)
            out[lever.key] = int(number) if float(lever.low).is_integer() and float(lever.high).is_integer() \
                and (lever.step or 1) >= 1 else number
    return out


def build_app(directory: Path | None = None, n_users: int = 20_000, seed: int = 1) -> Dash:
    """The dashboard: a live session of ``n_users`` users, and the results of ``directory``."""
    session = LiveSession(n_users=n_users, seed=seed)
    start = default_levers(session.model.config)
    app = Dash(__name__, title="weishang dashboard")
    def layout() -> html.Div:  # per page load: the session as it stands, read in one state
        with session.lock:
            return _layout(session, start, directory)

    app.layout = layout
    _callbacks(app, session)
    return app


def live_size_notes(session: LiveSession) -> list[str]:
    """The live world's size notes (:func:`weishang.model.study.small_world.size_notes`), over a
    quarter of days (the session itself runs for years)."""
    config = session.model.config.resolved()
    return size_notes({**config, "run": {**config["run"], "n_ticks": 90}})


def _layout(session: LiveSession, start: dict[str, Any], directory: Path | None) -> html.Div:
    frame = session.frame()
    return html.Div(style=STYLE, children=[
        html.H3("weishang: WeChat micro-commerce, live and in results", style={"margin": "6px 0"}),
        # the live world is small: say which of its figures are not the calibrated world's
        html.Div(id="size-notes", style={"font-size": "12px", "color": "#8a5a00"},
                 children=[html.Div(f"Live world: {note}.") for note in live_size_notes(session)]),
        dcc.Tabs(id="tabs", value="live", children=[
            dcc.Tab(label="Live", value="live", children=[html.Div(style={"display": "flex"}, children=[
                html.Div(style={"width": "260px", "padding": "8px"}, children=[
                    html.Div([html.Button("Step", id="step"), html.Button("Step 10", id="step10"),
                              html.Button("Run", id="run"), html.Button("Reset", id="reset")],
                             style={"display": "flex", "gap": "4px", "margin-bottom": "8px"}),
                    html.Div(id="tick", children=f"day {session.tick}"),
                    html.Div(id="last-tick", style={"font-size": "12px", "margin": "6px 0"}),
                    html.Hr(),
                    *[_lever_control(lever, start[lever.key]) for lever in LEVERS],
                    html.Button("Apply levers from the next day", id="apply"),
                    html.Div(id="applied", style={"font-size": "12px", "margin-top": "6px"}),
                    dcc.Interval(id="clock", interval=700, disabled=True),
                ]),
                html.Div(style={"flex": "1"}, children=[dcc.Graph(id="live-graph", figure=live_figure(frame)),
                                                        dcc.Graph(id="cascade-graph",
                                                                  figure=cascade_figure(session.cascade()))]),
            ])]),
            dcc.Tab(label="Results", value="results", children=[html.Div(style={"padding": "8px"}, children=[
                html.Div([dcc.Input(id="results-dir", value=str(directory or ""), placeholder="run or sweep directory",
                                    debounce=True, style={"width": "480px"}), html.Button("Open", id="open")]),
                html.Div(id="results-message", style={"margin": "6px 0"}),
                html.Div(style={"display": "flex", "gap": "12px"}, children=[
                    html.Div([html.Label("grid point"), dcc.Dropdown(id="results-point", clearable=False,
                                                                      style={"width": "420px"})]),
                    html.Div([html.Label("outcome"), dcc.Dropdown(
                        id="results-outcome", value="gmv", clearable=False, style={"width": "260px"},
                        options=[{"label": o.label, "value": o.name} for o in OUTCOMES])])]),
                dcc.Graph(id="results-graph", figure=go.Figure()),
                dcc.Graph(id="effects-graph", figure=go.Figure()),
                html.H4("Effects against the baseline"), html.Div(id="effects"),
                html.H4("Outcomes per scenario and point"), html.Div(id="outcomes"),
            ])]),
        ]),
    ])


def _callbacks(app: Dash, session: LiveSession) -> None:
    controls = [State({"type": "lever", "key": lever.key}, "value") for lever in LEVERS]
    # the results directory the page opened last, swapped whole: a request reads one or the other
    opened: dict[str, dict[str, Any]] = {"results": {}}

    @app.callback(Output("live-graph", "figure"), Output("cascade-graph", "figure"), Output("tick", "children"),
                  Output("last-tick", "children"), Output("applied", "children"),
                  Input("step", "n_clicks"), Input("step10", "n_clicks"), Input("reset", "n_clicks"),
                  Input("apply", "n_clicks"), Input("clock", "n_intervals"), *controls, prevent_initial_call=True)
    def advance(_step, _step10, _reset, _apply, _clock, *values):
        trigger = callback_context.triggered_id
        message = ""
        with session.lock:  # the server's threads share the world: one request's change and its read at a time
            if trigger == "reset":
                session.reset(lever_values(list(values)))
                message = "a new world with these levers"
            elif trigger == "apply":
                changed = session.apply(lever_values(list(values)))
                message = ("from day %d: %s" % (session.tick, ", ".join(changed))) if changed else "nothing changed"
            else:
                session.step(10 if trigger == "step10" else 1)
            frame = session.frame()
            graph = session.cascade()
            tick = session.tick
        last = frame.tail(1).to_dicts()[0] if frame.height else None
        summary = "" if last is None else (f"last day: GMV {last['gmv']:,.0f} CNY, fees {last['fees']:,.2f} CNY, "
                                           f"{last['n_active_merchants']:,.0f} merchants in business")
        return (live_figure(frame), cascade_figure(graph), f"day {tick}", summary, message)

    @app.callback(Output("clock", "disabled"), Output("run", "children"), Input("run", "n_clicks"),
                  prevent_initial_call=True)
    def toggle(n_clicks):
        running = bool(n_clicks) and n_clicks % 2 == 1
        return not running, "Pause" if running else "Run"

    @app.callback(Output("results-point", "options"), Output("results-point", "value"),
                  Output("results-message", "children"), Input("open", "n_clicks"), Input("results-dir", "value"))
    def open_results(_n, path):
        if not path:
            return [], None, "name a run or sweep directory (weishang dashboard DIR)"
        try:
            results = read_results(Path(path))
        except Exception as exc:  # noqa: BLE001 (a page shows the reason; the server carries on)
            return [], None, f"cannot open {path}: {exc}"
        opened["results"] = {**results, "path": path}
        points = sorted(set(results["ticks"]["point"].to_list()))
        options = [{"label": results["point_labels"].get(p, f"point {p}"), "value": p} for p in points]
        if results["members"] is not None:  # an ensemble: the members pooled, as the report does
            options = [{"label": f"all {len(points)} members (pooled)", "value": -1}, *options]
        message = (f"{_count(len(results['scenarios']), 'scenario')} (effects against \"{results['baseline']}\"), "
                   f"{_count(len(points), 'grid point')}, "
                   f"{_count(int(results['summary']['replicates'].max()), 'replicate')} a point")
        return options, options[0]["value"], message

    @app.callback(Output("results-graph", "figure"), Output("effects-graph", "figure"), Output("effects", "children"),
                  Output("outcomes", "children"), Input("results-point", "value"), Input("results-outcome", "value"))
    def show_results(point, outcome):
        loaded = opened["results"]  # one snapshot for the whole request
        if not loaded or point is None:
            return go.Figure(), go.Figure(), "", ""
        labels = {o.name: o.label for o in OUTCOMES}
        chosen = None if point == -1 else int(point)
        effects, summary = loaded["effects"], loaded["summary"]
        if chosen is not None and "point" in summary.columns:
            summary = summary.filter(pl.col("point") == chosen)
        if chosen is not None and effects.height and "point" in effects.columns:
            effects = effects.filter(pl.col("point") == chosen)
        figure = effects_figure(loaded["effects"], outcome, None if loaded["members"] is not None else chosen)
        shown = effects.with_columns(pl.col("outcome").replace_strict(labels)) if effects.height else effects
        return (results_figure(loaded["ticks"], loaded["scenarios"], chosen), figure,
                _table(shown, "effects-table") if shown.height else "one scenario: no effects",
                _table(summary.with_columns(pl.col("outcome").replace_strict(labels)), "outcomes-table"))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on (a port in use, a host not
    of this machine), before the live world is built (issue 32: it built first, then exited 1)."""
    import socket  # noqa: PLC0415

    from ..config import ConfigError  # noqa: PLC0415

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({exc}): use 127.0.0.1 or 0.0.0.0") \
            from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port "
                              f"or --host") from None


def serve(directory: Path | None, port: int, n_users: int, host: str = "127.0.0.1") -> None:
    """Build the app and serve it until interrupted (the address checked first), on Waitress, a
    production WSGI server (Flask's own server is for development and says so in red). Its
    threads share the one live world; :class:`~weishang.model.apps.live.LiveSession` serialises
    them."""
    check_address(host, port)
    waitress_serve(build_app(directory, n_users=n_users).server, host=host, port=port, threads=8)
