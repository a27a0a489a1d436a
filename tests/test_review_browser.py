"""review.html in a real headless Chromium, driven over the DevTools protocol (tests/cdp.py, stdlib only):
filter to the discordant items, label three with the keyboard, download the labels, and feed the file to
`harness judge calibrate` with a real local judge (the tiny model through the hf backend).
Skips only when Chromium is not installed (apt-get install -y chromium)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdp import CHROMIUM, Browser
from review_fixture import (CHOSEN, PROBE_EXTRA_BLEED_ROW, PROBE_XSS, PROBE_XSS_ROW, XSS, XSS_ROW, write_probe_sweep,
                            write_review_sweep)

from harness.judge import question_text
from harness.report.review import blind_flip, write_review
from harness.stats import mcnemar

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
REPO = Path(__file__).resolve().parents[1]
SHOT = Path("/tmp/review-probes-bleed.png")  # the probe view, for a person to look at


def _problems(browser: Browser) -> list[dict]:
    """Uncaught exceptions, console errors, CSP violations, alert() dialogs: none may happen."""
    bad = []
    for e in browser.events:
        m, p = e["method"], e.get("params", {})
        if m in ("Runtime.exceptionThrown", "Page.javascriptDialogOpening"):
            bad.append(e)
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            bad.append(e)
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            bad.append(e)
    return bad


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_review_sweep(tmp_path_factory.mktemp("review-browser"))


@pytest.fixture(scope="module")
def page_path(sweep) -> Path:
    return write_review(sweep, chosen=CHOSEN, primary=None)


@pytest.fixture()
def browser(tmp_path):
    with Browser(tmp_path / "profile") as b:
        yield b


def _scores(sweep: Path) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]
    return {(r["model"], r["sample_id"]): r for r in rows if r["split"] == "task"}


def test_filter_label_download_calibrate(sweep, page_path, browser, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads),
                                                 "eventsEnabled": True})
    page = browser.new_page()
    page.goto(page_path.resolve().as_uri())
    scores = _scores(sweep)
    n_items = len({sid for _, sid in scores})
    assert page.eval("document.getElementById('shown').textContent") == f"showing {n_items} of {n_items} items"

    # the counts on the page are McNemar's b10/b01 for the chosen adapter vs few-shot (the default baseline)
    ids = sorted(sid for m, sid in scores if m == CHOSEN)
    a = [scores[(CHOSEN, s)]["metrics"]["all_fields_correct"] for s in ids]
    b = [scores[("fewshot", s)]["metrics"]["all_fields_correct"] for s in ids]
    mc = mcnemar(a, b)
    assert int(page.eval("document.getElementById('disc-b10').textContent")) == mc["b10"]
    assert int(page.eval("document.getElementById('disc-b01').textContent")) == mc["b01"]
    n_disc = mc["b10"] + mc["b01"]
    assert 3 <= n_disc < n_items

    # one click: only the discordant items
    page.click("#f-disc")
    assert page.eval("document.getElementById('f-disc').getAttribute('aria-pressed')") == "true"
    assert page.eval("document.getElementById('shown').textContent") == f"showing {n_disc} of {n_items} items"
    shown_ids = page.eval("[...document.querySelectorAll('#list article.item')].map(e => e.dataset.id)")
    assert len(shown_ids) == min(n_disc, 20)
    for sid in shown_ids:
        assert scores[(CHOSEN, sid)]["metrics"]["all_fields_correct"] != scores[("fewshot", sid)]["metrics"]["all_fields_correct"]

    # label three of them with the keyboard: L opens the blind labeller; 4 scores output A; A, B, T label
    page.key("l")
    assert page.eval("document.getElementById('labeller').hidden") is False
    assert CHOSEN not in page.eval("document.getElementById('lab-item').innerText"), "model names are hidden"
    labelled, sides = [], []
    for key in ("a", "b", "t"):
        sid = page.eval("document.getElementById('lab-item').dataset.id")
        sides.append([page.eval(f"document.querySelector('#side-{s} pre').textContent") for s in "AB"])
        if key == "a":
            page.key("4")
        labelled.append(sid)
        page.key(key)
    assert labelled == shown_ids[:3] and len(set(labelled)) == 3
    assert page.eval("document.getElementById('n-labels').textContent") == "3"

    page.key("Escape")
    page.click("#download")
    done = browser.wait_event("Browser.downloadProgress", lambda e: e["params"].get("state") == "completed")
    path = Path(done["params"]["filePath"])
    assert path.parent == downloads and path.name.startswith("labels-demo-") and path.suffix == ".jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    hint = page.eval("document.getElementById('next-step').textContent")
    assert hint == f"harness judge calibrate --data {path.name} --sweep {sweep}"
    assert [r["sample_id"] for r in rows] == labelled
    assert [r["label"] for r in rows] == [1, 2, 0]
    assert [r["score_1"] for r in rows] == [4, None, None]
    for r, (shown_a, shown_b) in zip(rows, sides):
        assert {r["model_1"], r["model_2"]} == {CHOSEN, "fewshot"}
        assert r["id"] == f"{r['sample_id']}:{r['model_1']}:{r['model_2']}" and r["task"] == "demo"
        # output_1 is exactly the output shown as A, which is model_1's output in scores.jsonl
        assert (r["output_1"], r["output_2"]) == (shown_a, shown_b)
        assert r["output_1"] == scores[(r["model_1"], r["sample_id"])]["output"]
        assert r["output_2"] == scores[(r["model_2"], r["sample_id"])]["output"]
        base = scores[("base", r["sample_id"])]
        assert r["question"] == question_text(base["prompt"]) and r["reference"] == base["reference"]
        # the blind order is the page's fixed per-item shuffle: the baseline is A exactly when blind_flip says so
        assert r["model_1"] == ("fewshot" if blind_flip("demo-clear_win", "demo", r["sample_id"]) else CHOSEN)

    # labels survive a reload (browser storage keyed by sweep + task)
    page.goto("", reload=True)
    assert page.eval("document.getElementById('n-labels').textContent") == "3"
    assert _problems(browser) == []

    # the page said what to run next (hint); the downloaded file is what `harness judge calibrate --data` reads:
    # a real local judge over the 3 labels, calibration stored in the sweep for this task
    out = sweep / "scores" / "judge_calibration"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *hint.split()[1:4], str(path), *hint.split()[5:],
                           "judge.model=tiny_random", "judge.retries=0", "judge.gen.max_new_tokens=8",
                           "judge.gen.logprobs=0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 3 labelled pairs" in proc.stdout and "kappa" in proc.stdout and "accuracy" in proc.stdout, proc.stdout
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["n"] == 3 and cal["source"] == "task" and cal["task"] == "demo"
    assert cal["accuracy"] is not None and 0 <= cal["accuracy"] <= 1 and "kappa" in cal
    assert cal["pointwise"]["n"] == 1  # the one output scored with the 4 key
    judged = [json.loads(line) for line in (out / "judge.jsonl").read_text().splitlines()]
    assert len([j for j in judged if j.get("kind") == "calibration"]) == 3


def test_outputs_are_text_not_markup(sweep, page_path, browser):
    page = browser.new_page()
    page.goto(page_path.resolve().as_uri())
    page.eval("(() => { const s = document.getElementById('diff'); s.value = 'none';"
              " s.dispatchEvent(new Event('change')); })()")
    model, sid = XSS_ROW
    text = page.eval(f"[...document.querySelectorAll('article.item')].find(e => e.dataset.id === {json.dumps(sid)})"
                     ".querySelector('.col pre').textContent")
    assert text == XSS, "the output is shown literally"
    assert page.eval("document.querySelectorAll('#list img, #list script').length") == 0
    assert _problems(browser) == [], "no alert() dialog, no exception"


DIFF_PARTS = """(() => [...document.querySelectorAll('#list pre.out')].filter(p => p.querySelector('ins, del')).map(p => {
    const keep = skip => [...p.childNodes].filter(c => c.nodeName !== skip && c.nodeName !== 'DIV')
                                         .map(c => c.textContent).join('');
    const art = p.closest('article'), col = p.closest('.col');
    return {id: art.dataset.id, head: col.querySelector('.head').firstChild.textContent,
            output: keep('DEL'), against: keep('INS')};
}))()"""


SCROLL_THROUGH = """(async () => { for (let y = 0; y < document.body.scrollHeight; y += 500) {
    window.scrollTo(0, y); await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0))); } })()"""


def test_diffs_rebuild_both_texts(sweep, page_path, browser):
    """Dropping the deletions gives the output, dropping the insertions gives the reference (or the baseline)."""
    page = browser.new_page()
    page.goto(page_path.resolve().as_uri())
    scores = _scores(sweep)
    name_to_model = {"base (zero-shot)": "base", "few-shot prompt": "fewshot", "r8-lr2e-4": CHOSEN,
                     "r4-lr2e-4": "r4-lr0.0002", "r4-lr1e-3": "r4-lr0.001"}
    for against in ("reference", "baseline"):
        page.eval(f"(() => {{ const s = document.getElementById('diff'); s.value = '{against}';"
                  " s.dispatchEvent(new Event('change')); })()")
        page.eval(SCROLL_THROUGH)  # diffs are computed when a card comes into view
        parts = page.eval(DIFF_PARTS)
        assert len(parts) >= 40, against
        for d in parts:
            row = scores[(name_to_model[d["head"]], d["id"])]
            assert d["output"] == row["output"]
            want = row["reference"] if against == "reference" else scores[("fewshot", d["id"])]["output"]
            assert d["against"] == want, (against, d)
    assert _problems(browser) == []


def test_search_sort_and_judge_filter(sweep, page_path, browser):
    page = browser.new_page()
    page.goto(page_path.resolve().as_uri())
    page.click("#f-judge")  # the fixture's judge disagrees with itself on demo-001, -005 and -009 (vs few-shot)
    ids = page.eval("[...document.querySelectorAll('#list article.item')].map(e => e.dataset.id)")
    assert ids == ["demo-001", "demo-005", "demo-009"]
    card = page.eval("document.querySelector('#list article.item .judge').innerText")
    assert "the two orders disagree" in card and "names the city" in card and "shorter" in card
    page.click("#f-judge")
    page.eval("(() => { const s = document.getElementById('search'); s.value = 'upstream overloaded';"
              " s.dispatchEvent(new Event('input')); })()")
    assert page.eval("[...document.querySelectorAll('#list article.item')].map(e => e.dataset.id)") == ["demo-005"]
    assert "error: HTTP 500" in page.eval("document.querySelector('#list .error').textContent")
    page.eval("(() => { const s = document.getElementById('search'); s.value = '';"
              " s.dispatchEvent(new Event('input'));"
              " const o = document.getElementById('sort'); o.value = 'lendiff'; o.dispatchEvent(new Event('change')); })()")
    first = page.eval("document.querySelector('#list article.item').dataset.id")
    scores = _scores(sweep)
    gap = {sid: abs(len(scores[(CHOSEN, sid)]["output"]) - len(scores[("fewshot", sid)]["output"]))
           for m, sid in scores if m == CHOSEN}
    assert gap[first] == max(gap.values())
    # another baseline: the counts follow (McNemar vs base)
    page.eval("(() => { const s = document.getElementById('baseline'); s.value = 'base';"
              " s.dispatchEvent(new Event('change')); })()")
    ids = sorted(sid for m, sid in scores if m == CHOSEN)
    mc = mcnemar([scores[(CHOSEN, s)]["metrics"]["all_fields_correct"] for s in ids],
                 [scores[("base", s)]["metrics"]["all_fields_correct"] for s in ids])
    assert int(page.eval("document.getElementById('disc-b10').textContent")) == mc["b10"]
    assert int(page.eval("document.getElementById('disc-b01').textContent")) == mc["b01"]
    assert page.eval("document.querySelector('#f-disc .n').textContent") == f"({mc['b10'] + mc['b01']})"
    assert _problems(browser) == []


def test_large_sweep_renders_fast(tmp_path, browser):
    """500 items x 14 models: only one page of 20 items is in the DOM, diffs are lazy, loading and filtering stay quick."""
    sweep = tmp_path / "big"
    (sweep / "scores").mkdir(parents=True)
    models = ["base", "fewshot"] + [f"run{k:02d}" for k in range(12)]
    (sweep / "sweep.json").write_text(json.dumps({"name": "big", "task": "t", "runs": [
        {"run_id": m, "hparams": {"lora.r": 4 * (1 + k % 4), "train.lr": [1e-4, 2e-4, 5e-4][k // 4]}}
        for k, m in enumerate(models[2:])]}))
    lines = [json.dumps({"model": m, "split": "task", "sample_id": f"s{k:03d}", "knowledge": k % 3 == 0,
                         "prompt": [{"role": "user", "content": f"question {k}"}],
                         "output": f"the answer to {k} is {(k * (j + 1)) % 11} " * 8, "reference": f"the answer to {k} is 5 " * 8,
                         "metrics": {"em": float((k * (j + 1)) % 11 == 5)}})
             for k in range(500) for j, m in enumerate(models)]
    (sweep / "scores" / "scores.jsonl").write_text("\n".join(lines) + "\n")
    path = write_review(sweep, chosen="run00", primary="em")
    page = browser.new_page()
    t0 = time.perf_counter()
    page.goto(path.resolve().as_uri())
    load_s = time.perf_counter() - t0
    assert page.eval("document.querySelectorAll('#list article.item').length") == 20  # paginated: 20 of 500 in the DOM
    assert page.eval("document.querySelectorAll('#list .col').length") == 20 * 14
    t0 = time.perf_counter()
    page.click("#f-know")
    page.eval("window.scrollTo(0, document.body.scrollHeight)")  # lazy diffs of the whole page
    filter_s = time.perf_counter() - t0
    assert page.eval("document.getElementById('shown').textContent") == "showing 167 of 500 items"
    assert page.eval("document.querySelectorAll('#list ins, #list del').length") > 0
    assert load_s < 30 and filter_s < 15, (load_s, filter_s)  # loose on purpose (shared CPUs); ~2-4 s measured
    assert _problems(browser) == []


@pytest.mark.parametrize("models", [("base",), ("run1", "run2")], ids=["baseline-only", "no-baselines"])
def test_sweeps_without_a_pair_still_render(tmp_path, browser, models):
    """Every adapter failed (only base scored), or no baselines were scored: the outputs are still shown,
    labelling says why it cannot start, nothing throws."""
    sweep = tmp_path / "s"
    (sweep / "scores").mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "task": "t", "runs": []}))
    (sweep / "scores" / "scores.jsonl").write_text("".join(
        json.dumps({"model": m, "sample_id": f"x{k}", "prompt": f"q{k}", "reference": "r", "output": f"{m} says {k}",
                    "metrics": {"rouge": k / 4}}) + "\n" for k in range(4) for m in models))
    page = browser.new_page()
    page.goto(write_review(sweep, chosen=None, primary=None).resolve().as_uri())
    assert page.eval("document.getElementById('shown').textContent") == "showing 4 of 4 items"
    assert page.eval("document.querySelectorAll('#list .col').length") == 4 * len(models)
    page.key("l")
    assert page.eval("document.getElementById('labeller').hidden") is True
    assert page.eval("document.getElementById('shown').textContent") == "labelling needs an adapter and a baseline"
    assert _problems(browser) == []


# ------------------------------------------------------------------------------------------ forgetting probes

PROBE_KEYS = "[...document.querySelectorAll('#p-list article.item')].map(e => e.dataset.key)"


@pytest.fixture(scope="module")
def probe_sweep(tmp_path_factory) -> Path:
    return write_probe_sweep(tmp_path_factory.mktemp("probes-browser"))


@pytest.fixture(scope="module")
def probe_page_path(probe_sweep) -> Path:
    return write_review(probe_sweep, chosen=CHOSEN, primary=None)


def _bleeding_keys(sweep: Path, model: str) -> list[str]:
    rows = [json.loads(line) for line in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]
    return [f"{r['family']}/{r['sample_id']}" for r in rows if r["split"] == "probe" and r["model"] == model
            and not r.get("error") and r["metrics"]["bleed"] == 1]


def test_format_bleed_filter_shows_exactly_the_bleeding_probes(probe_sweep, probe_page_path, browser):
    page = browser.new_page()
    page.goto(probe_page_path.resolve().as_uri())
    assert page.eval("document.getElementById('probes').hidden") is True
    page.click("#v-probes")
    assert page.eval("document.getElementById('task-view').hidden") is True
    want = _bleeding_keys(probe_sweep, CHOSEN)
    assert 0 < len(want) <= 20  # one page
    assert page.eval("document.querySelector('#pf-bleed .n').textContent") == f"({len(want)})"
    page.click("#pf-bleed")
    assert page.eval("document.getElementById('pf-bleed').getAttribute('aria-pressed')") == "true"
    assert page.eval(PROBE_KEYS) == want
    marked = page.eval("[...document.querySelectorAll('#p-list article.item')].map(a =>"
                       f" !!a.querySelector('.col[data-model=\"{CHOSEN}\"] .chip.bleed'))")
    assert marked == [True] * len(want), "each shown probe marks the adapter's answer as format bleed"
    assert page.eval("location.hash") == "#probes-bleed"
    # another adapter: its own bleeding answers (one more than the chosen one's)
    other = PROBE_EXTRA_BLEED_ROW[0]
    page.eval(f"(() => {{ const s = document.getElementById('p-adapter'); s.value = '{other}';"
              " s.dispatchEvent(new Event('change')); })()")
    assert page.eval(PROBE_KEYS) == _bleeding_keys(probe_sweep, other) and len(_bleeding_keys(probe_sweep, other)) == len(want) + 1
    assert _problems(browser) == []


@pytest.mark.parametrize("anchor, flt, family", [("#probes-bleed", "bleed", ""),
                                                 ("#probes-regressed/general_knowledge", "regressed", "general_knowledge")])
def test_anchor_preselects_the_probe_filter(probe_sweep, probe_page_path, browser, anchor, flt, family):
    """The report's links (review.html#probes-FILTER[/FAMILY]) open the probe view with that filter and family."""
    page = browser.new_page()
    page.goto(probe_page_path.resolve().as_uri() + anchor)
    assert page.eval("document.getElementById('probes').hidden") is False
    assert page.eval(f"document.getElementById('pf-{flt}').getAttribute('aria-pressed')") == "true"
    assert page.eval("document.getElementById('p-family').value") == family
    data = json.loads(page.eval("document.getElementById('review-data').textContent"))["probes"]
    want = [it["key"] for it in data["items"] if flt in it["flags"].get(CHOSEN, []) and family in ("", it["family"])]
    assert want and page.eval(PROBE_KEYS) == want
    if flt == "bleed":
        assert want == _bleeding_keys(probe_sweep, CHOSEN)
    assert _problems(browser) == []


def test_probe_outputs_are_text_not_markup(probe_page_path, browser):
    page = browser.new_page()
    page.goto(probe_page_path.resolve().as_uri() + "#probes/general_knowledge")
    model, sid = PROBE_XSS_ROW
    text = page.eval(f"document.querySelector('#p-list article.item[data-id=\"{sid}\"] .col[data-model=\"{model}\"] pre')"
                     ".textContent")
    assert text == PROBE_XSS
    assert page.eval("document.querySelectorAll('#p-list img, #p-list script').length") == 0
    assert _problems(browser) == [], "no alert() dialog, no exception"


def test_probe_view_screenshot_is_readable(probe_page_path, browser):
    """A picture of the format-bleed filter for a person to look at: /tmp/review-probes-bleed.png."""
    page = browser.new_page()
    page.goto(probe_page_path.resolve().as_uri() + "#probes-bleed")
    png = base64.b64decode(page.send("Page.captureScreenshot", {"format": "png"})["data"])
    SHOT.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    # readable: the filter bar and the first card's text are on the first screen, at a normal size
    top = page.eval("document.querySelector('#p-list article.item').getBoundingClientRect().top")
    size = page.eval("parseFloat(getComputedStyle(document.querySelector('#p-list pre.out')).fontSize)")
    assert top < 600 and size >= 12


def test_600_probes_stay_fast(tmp_path, browser):
    """600 probes x 5 models: one page of 20 cards in the DOM; loading and filtering stay quick."""
    sweep = tmp_path / "big"
    (sweep / "scores").mkdir(parents=True)
    models = ["base"] + [f"run{k}" for k in range(4)]
    (sweep / "sweep.json").write_text(json.dumps({"name": "big", "task": "t", "runs": [
        {"run_id": m, "hparams": {"lora.r": 4 * (k + 1)}} for k, m in enumerate(models[1:])]}))
    lines = [json.dumps({"model": m, "split": "task", "sample_id": "t0", "prompt": "q", "output": "a",
                         "metrics": {"em": 1.0}}) for m in models]
    lines += [json.dumps({"model": m, "split": "probe", "sample_id": f"p{k:03d}", "family": f"fam{k % 6}",
                          "prompt": [{"role": "user", "content": f"probe question {k}"}],
                          "output": f"answer {k} of {m} " * 10, "reference": "x",
                          "metrics": {"pass": float((k + j) % 3 == 0), "bleed": float(j > 0 and k % 7 == 0)}})
              for k in range(600) for j, m in enumerate(models)]
    (sweep / "scores" / "scores.jsonl").write_text("\n".join(lines) + "\n")
    path = write_review(sweep, chosen="run0", primary="em")
    page = browser.new_page()
    t0 = time.perf_counter()
    page.goto(path.resolve().as_uri() + "#probes")
    load_s = time.perf_counter() - t0
    assert page.eval("document.querySelectorAll('#p-list article.item').length") == 20
    assert page.eval("document.querySelectorAll('#p-list .col').length") == 20 * 5
    t0 = time.perf_counter()
    page.click("#pf-bleed")
    filter_s = time.perf_counter() - t0
    assert page.eval("document.getElementById('p-shown').textContent").startswith("showing 86 of 600 probes")
    assert load_s < 30 and filter_s < 10, (load_s, filter_s)  # loose on purpose (shared CPUs)
    assert _problems(browser) == []
