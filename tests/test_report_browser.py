"""Render report.html in headless Chromium: the decision and its chart are on the first screen of a 1366x768
window, the DOM has the leaderboard, no console errors, and the screenshot is a real picture.
Skips when Chromium is not installed (`make test` installs it)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures_sweep import write_sweep

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).exists()), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    bad = []
    for line in stderr.splitlines():
        if "Uncaught" in line or re.search(r"CONSOLE\(\d+\)|:CONSOLE", line) and re.search(r"error", line, re.I):
            bad.append(line)
        elif "Failed to load resource" in line or "net::ERR_" in line:
            bad.append(line)
    return bad


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from harness.report import write_report

    root = tmp_path_factory.mktemp("browser")
    sweep = write_sweep(root, "clear_win", judge="unreliable")
    res = write_report(sweep)
    url = res["report_html"].resolve().as_uri()
    shot = root / "report.png"
    dom = _chromium(["--dump-dom", url], root / "profile-dom")
    snap = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], root / "profile-shot")
    return {"dom": dom, "snap": snap, "shot": shot, "html": res["report_html"]}


def test_dom_has_decision_and_leaderboard(rendered):
    dom = rendered["dom"]
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<table id="leaderboard"' in html and '<section id="decision"' in html
    assert "DECISION: SHIP" in html and "r4-lr2e-4" in html
    assert "UNRELIABLE" in html
    assert html.count("data:image/png;base64,") >= 4


def test_headline_and_chart_visible_without_scrolling_at_1366x768(rendered, tmp_path):
    """A person opening the report on a laptop sees the decision and its chart first."""
    from cdp import Browser

    with Browser(tmp_path / "profile", window=(1366, 768)) as b:
        page = b.new_page()
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1366, "height": 768, "deviceScaleFactor": 1,
                                                         "mobile": False})
        page.goto(rendered["html"].resolve().as_uri())
        page.eval("new Promise(r => { const i = document.getElementById('headline-chart');"
                  " i.complete ? r(1) : i.onload = () => r(1); })")
        for sel in ("#headline", "#headline-chart", "#decision-numbers"):
            box = page.eval(f"JSON.stringify(document.querySelector('{sel}').getBoundingClientRect())")
            import json

            r = json.loads(box)
            assert r["width"] > 50 and r["height"] > 10, (sel, r)
            assert r["top"] >= 0 and r["bottom"] <= 768 and r["right"] <= 1366, (sel, r)
        assert "SHIP" in page.eval("document.querySelector('#headline').textContent")


def test_no_console_errors(rendered):
    for proc in (rendered["dom"], rendered["snap"]):
        assert _console_errors(proc.stderr) == [], proc.stderr[-3000:]


def test_screenshot_is_nontrivial(rendered):
    from PIL import Image

    snap, shot = rendered["snap"], rendered["shot"]
    assert snap.returncode == 0, snap.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 10_000
    img = Image.open(shot).convert("RGB")
    assert img.size[0] >= 1000
    colors = img.getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 50, "screenshot is (nearly) one colour"
    extrema = img.convert("L").getextrema()
    assert extrema[1] - extrema[0] > 100
