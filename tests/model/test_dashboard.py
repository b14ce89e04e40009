"""The dashboard in a real browser (headless Chromium driven by Playwright), and its live
session without one. The browser test skips only where Dash, Playwright or Chromium is missing;
`.ci/run` installs Chromium with the system package manager."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from weishang.model.apps.live import LEVERS, LiveSession, default_levers

CHROMIUM = os.environ.get("WEISHANG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_a_lever_applied_mid_run_changes_the_next_days_only():
    session = LiveSession(n_users=5000)
    session.step(3)
    fees_before = [row["fees"] for row in session.history]
    assert session.apply({"payments.transaction_fee": 0.05}) == ["payments.transaction_fee"]
    assert session.apply({"payments.transaction_fee": 0.05}) == []  # unchanged: nothing to do
    session.step(2)
    same = LiveSession(n_users=5000)
    same.step(5)
    assert [row["fees"] for row in session.history[:3]] == fees_before == [row["fees"] for row in same.history[:3]]
    assert session.history[3]["fees"] > same.history[3]["fees"]
    graph = session.cascade()
    assert graph is not None and graph["level"][0] == 0 and set(graph["level"][1:].tolist()) <= {1, 2, 3}
    assert graph["src"].shape == graph["dst"].shape and (graph["dst"] > 0).all()
    assert set(default_levers(session.model.config)) == {lever.key for lever in LEVERS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    pytest.importorskip("dash")
    pytest.importorskip("playwright")
    if CHROMIUM is None:
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run does)")
    from weishang.model.study.sweep import load_sweep, run_sweep

    root = tmp_path_factory.mktemp("dash")
    (root / "base.toml").write_text('[run]\nname = "baseline"\n')
    (root / "fee.toml").write_text('[run]\nname = "fee_high"\n[payments]\ntransaction_fee = 0.05\n')
    (root / "s.toml").write_text('[sweep]\nscenarios = ["base.toml", "fee.toml"]\nreplicates = 2\n[set]\n'
                                 '"population.n_users" = 3000\n"population.n_cities" = 3\n"run.n_ticks" = 5\n')
    run_sweep(load_sweep(root / "s.toml"), root / "sweep", workers=1)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "weishang", "dashboard", str(root / "sweep"), "--port", str(port),
                               "--users", "5000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"the dashboard exited: {server.stdout.read()}")
            time.sleep(0.5)
    yield url, root
    server.terminate()
    printed, _ = server.communicate(timeout=20)
    # served by Waitress: no Flask "development server" warning on the user's terminal
    assert "development server" not in printed and "Traceback" not in printed, printed


def _points(page, graph_id: str) -> int:
    """Points of the first trace of a dcc.Graph, read from Plotly's own figure in the page."""
    return page.evaluate(f"() => document.querySelector('#{graph_id} .js-plotly-plot').data[0].x.length")


def _wait_for_points(page, graph_id: str, n: int) -> None:
    """Wait until the graph's first trace has ``n`` points. Dash renders the new figure after the day's
    text, and Plotly may not have drawn the graph yet, so the predicate is null-safe (a throwing
    predicate ends Playwright's wait instead of retrying it)."""
    page.wait_for_function(
        f"() => document.querySelector('#{graph_id} .js-plotly-plot')?.data?.[0]?.x?.length == {n}", timeout=60_000)


def _fees(page) -> float:
    text = page.locator("#last-tick").inner_text()
    return float(text.split("fees ")[1].split(" CNY")[0].replace(",", ""))


def test_the_page_steps_pulls_a_lever_and_shows_results(dashboard, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    url, _root = dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, timeout=60_000)
        page.get_by_text("day 0").wait_for(timeout=60_000)
        # the live world is small and says which of its figures are not the calibrated world's
        assert "Live world:" in page.locator("#size-notes").inner_text()
        page.locator("#step").click()
        page.get_by_text("day 1", exact=True).wait_for(timeout=60_000)
        _wait_for_points(page, "live-graph", 1)
        page.locator("#step10").click()
        page.get_by_text("day 11", exact=True).wait_for(timeout=60_000)
        _wait_for_points(page, "live-graph", 11)
        assert _points(page, "live-graph") == 11
        page.wait_for_function("() => document.querySelector('#cascade-graph .js-plotly-plot')?.data?.length >= 2",
                               timeout=60_000)
        shot = tmp_path / "live.png"
        page.screenshot(path=str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 200 and (pixels < 200).any(axis=1).mean() > 0.02  # not blank

        # the same two days with the default fee, then with a 5% fee applied from day 2
        page.locator("#reset").click()
        page.get_by_text("day 0", exact=True).wait_for(timeout=60_000)
        for day in (1, 2):
            page.locator("#step").click()
            page.get_by_text(f"day {day}", exact=True).wait_for(timeout=60_000)
        default_fees = _fees(page)
        page.locator("#reset").click()
        page.get_by_text("day 0", exact=True).wait_for(timeout=60_000)
        page.locator("#step").click()
        page.get_by_text("day 1", exact=True).wait_for(timeout=60_000)
        fee = page.locator("[id*='payments.transaction_fee']")
        fee.fill("0.05")
        fee.press("Enter")
        page.locator("#apply").click()
        page.get_by_text("payments.transaction_fee").wait_for(timeout=60_000)
        page.locator("#step").click()
        page.get_by_text("day 2", exact=True).wait_for(timeout=60_000)
        assert _fees(page) > default_fees

        page.get_by_text("Results", exact=True).click()
        page.get_by_text("2 scenarios (effects against \"baseline\"), 1 grid point, 2 replicates a point").wait_for(timeout=60_000)
        page.locator("#effects-table").wait_for(timeout=60_000)
        assert "fee_high" in page.locator("#effects-table").inner_text()
        page.wait_for_function("() => document.querySelector('#effects-graph .js-plotly-plot')?.data?.length >= 1",
                               timeout=60_000)
        assert errors == []
        browser.close()


def test_a_missing_results_directory_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "weishang", "dashboard", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


def test_a_port_in_use_or_a_bad_host_is_one_line_before_the_world_is_built():
    # issue 32: both exited 1 only after building the live world
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for args, words in ((["--port", str(port)], "cannot listen on"), (["--host", "no-such-host.invalid"], "--host")):
            proc = subprocess.run([sys.executable, "-m", "weishang", "dashboard", *args], capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
            assert "weishang dashboard: http" not in proc.stderr  # refused before the world was built


def test_overlapping_steps_run_one_after_another():
    """The web server serves requests on several threads (issue 32: 12 overlapping "Step 10"
    requests brought days back out of order and a quarter of them with another GMV). Steps from
    six threads at once give the same days, in order, as the same session stepped in one thread."""
    import threading

    session, alone = LiveSession(n_users=3000, n_ticks=60), LiveSession(n_users=3000, n_ticks=60)
    start = threading.Barrier(6)

    def request():
        start.wait()
        session.step(4)
        session.frame(), session.cascade()  # the page's reads, between other threads' steps

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alone.step(24)
    assert [row["tick"] for row in session.history] == list(range(24))
    assert [row["gmv"] for row in session.history] == [row["gmv"] for row in alone.history]
