"""review.html (pure Python side): every item and output is in the page, outputs stay inert data, the
discordant counts are McNemar's, the page is offline and byte-identical for the same inputs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from review_fixture import (CHOSEN, ERROR, ERROR_ROW, PROBE_BLEED, PROBE_ERROR_ROW, PROBE_XSS, PROBE_XSS_ROW, XSS,
                            XSS_ROW, write_probe_sweep, write_review_sweep)

from harness.io import UserError
from harness.judge import question_text
from harness.report.review import blind_flip, discordance, review_data, write_review
from harness.stats import mcnemar


def _rows(sweep: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]


def _embedded(html: str) -> dict:
    m = re.search(r'<script id="review-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_review_sweep(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def page(sweep) -> tuple[Path, str, dict]:
    path = write_review(sweep, chosen=CHOSEN, primary=None)
    html = path.read_text(encoding="utf-8")
    return path, html, _embedded(html)


def test_written_where_the_report_links_it(sweep, page):
    path, _, data = page
    assert path == sweep / "report" / "review.html"
    assert data["primary"] == "all_fields_correct" and data["metrics"][0] == "all_fields_correct"
    assert data["chosen"] == CHOSEN and data["adapter"] == CHOSEN
    # baselines first, then the chosen adapter, then the other adapters; the failed run has no outputs
    assert [m["key"] for m in data["models"]] == ["base", "fewshot", CHOSEN, "r4-lr0.0002", "r4-lr0.001"]


def test_every_task_item_and_output_is_in_the_page(sweep, page):
    _, _, data = page
    task = [r for r in _rows(sweep) if r["split"] == "task"]
    items = {it["id"]: it for it in data["items"]}
    assert sorted(items) == sorted({r["sample_id"] for r in task})
    assert not any(i.startswith(("arithmetic", "general_knowledge")) for i in items), "probe rows are not eval items"
    for r in task:
        out = items[r["sample_id"]]["outputs"][r["model"]]
        assert out["text"] == r["output"]
        want = [r["metrics"][k] for k in data["metrics"]]
        assert out["metrics"] == [None if v is None else float(v) for v in want]
        assert items[r["sample_id"]]["reference"] == r["reference"]
        assert items[r["sample_id"]]["knowledge"] == r["knowledge"]


def test_errors_are_errors_not_empty_outputs(page):
    _, _, data = page
    model, sid = ERROR_ROW
    out = next(it for it in data["items"] if it["id"] == sid)["outputs"][model]
    assert out["error"] == ERROR and out["text"] == "" and out["finish"] == "error"
    assert all(v is None for v in out["metrics"]), "an errored row scores None, never 0"


def test_question_is_the_zero_shot_prompt_the_judge_sees(sweep, page):
    _, _, data = page
    base = {r["sample_id"]: r for r in _rows(sweep) if r["model"] == "base" and r["split"] == "task"}
    few = {r["sample_id"]: r for r in _rows(sweep) if r["model"] == "fewshot" and r["split"] == "task"}
    for it in data["items"]:
        assert it["question"] == question_text(base[it["id"]]["prompt"])
        assert it["question"] != question_text(few[it["id"]]["prompt"])  # the few-shot demo turns are not the question
        assert it["messages"][0] == {"role": "system", "content": base[it["id"]]["prompt"][0]["content"]}


def test_output_html_cannot_execute(page):
    _, html, data = page
    assert "alert(" not in html.split('<script id="review-data"')[0], "data leaked outside the data block"
    assert "</script><script>alert(1)" not in html
    assert "<img src=x" not in html
    # exactly two script elements: the inert JSON block and the page's own code
    assert len(re.findall(r"<script\b", html)) == 2
    model, sid = XSS_ROW
    assert next(it for it in data["items"] if it["id"] == sid)["outputs"][model]["text"] == XSS  # round-trips exactly
    js = html.split("<script>", 1)[1]
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


def test_page_is_offline(page):
    _, html, _ = page
    assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html
    assert "default-src 'none'" in html  # CSP: the page cannot fetch anything even if it tried


@pytest.mark.parametrize("baseline", ["base", "fewshot"])
def test_discordant_counts_are_mcnemars(sweep, page, baseline):
    """b10/b01 shown on the page = harness.stats.mcnemar on the same rows (what the report shows), and the
    discordant filter lists exactly those items."""
    _, _, data = page
    rows = [r for r in _rows(sweep) if r["split"] == "task"]
    for adapter in data["adapters"]:
        a = {r["sample_id"]: r["metrics"]["all_fields_correct"] for r in rows if r["model"] == adapter}
        b = {r["sample_id"]: r["metrics"]["all_fields_correct"] for r in rows if r["model"] == baseline}
        ids = [s for s in sorted(a) if s in b and a[s] is not None and b[s] is not None]
        mc = mcnemar([a[s] for s in ids], [b[s] for s in ids])
        shown = data["discordant"][f"{adapter}|{baseline}"]
        assert (shown["b10"], shown["b01"]) == (mc["b10"], mc["b01"])
        assert shown["binary"] is True and shown["n"] == len(ids) and shown["p_value"] == pytest.approx(mc["p_value"])
        flagged = {it["id"]: it["disc"][f"{adapter}|{baseline}"] for it in data["items"]
                   if f"{adapter}|{baseline}" in it["disc"]}
        assert len(flagged) == mc["b10"] + mc["b01"]
        assert {s for s, v in flagged.items() if v > 0} == {s for s in ids if a[s] == 1 and b[s] == 0}
    # the fixture's error row is left out of the pairs, as McNemar leaves it out
    assert data["discordant"][f"r4-lr0.001|{baseline}"]["n"] == len(data["items"]) - 1


def test_discordance_on_a_continuous_metric():
    d = discordance({"x": 0.5, "y": 0.9, "z": 0.3, "w": None}, {"x": 0.5, "y": 0.2, "z": 0.4, "w": 1.0})
    assert d["items"] == {"y": 1, "z": -1} and d["binary"] is False and (d["b10"], d["b01"]) == (1, 1)
    assert d["p_value"] is None and d["n"] == 3
    none = discordance({"x": None}, {"x": 1.0})
    assert none["items"] == {} and none["n"] == 0


def test_judge_rationales_from_both_orders(page):
    _, _, data = page
    it = next(i for i in data["items"] if i["id"] == "demo-001")
    j = next(j for j in it["judge"] if j["b"] == "fewshot")
    assert j["consistent"] is False and j["verdict"] == "tie"
    assert [o["first"] for o in j["orders"]] == [CHOSEN, "fewshot"]
    assert [o["preferred"] for o in j["orders"]] == [CHOSEN, "fewshot"]  # each order mapped back to a model
    assert "names the city" in j["orders"][0]["reason"] and "shorter" in j["orders"][1]["reason"]
    assert it["judge_points"][CHOSEN]["score"] == 3.0 and "demo-001" in it["judge_points"][CHOSEN]["reason"]
    assert data["judge_ran"] is True


def test_judge_rows_in_the_older_orders_list_format(tmp_path):
    sweep = write_review_sweep(tmp_path, judge=False)
    row = {"kind": "pairwise", "a": CHOSEN, "b": "base", "sample_id": "demo-000", "verdict": "base", "consistent": True,
           "orders": [{"a": "x", "b": "y", "winner": "B", "mapped": "y", "reason": "r1"},
                      {"a": "y", "b": "x", "winner": "A", "mapped": "y", "reason": "r2"}]}
    (sweep / "scores" / "judge.jsonl").write_text(json.dumps(row) + "\n")
    data = review_data(sweep, chosen=CHOSEN, primary=None)
    j = data["items"][0]["judge"][0]
    assert j["verdict"] == "base" and [o["preferred"] for o in j["orders"]] == ["base", "base"]
    assert [o["reason"] for o in j["orders"]] == ["r1", "r2"]


def test_no_judge_no_judge_section(tmp_path):
    sweep = write_review_sweep(tmp_path, judge=False)
    data = review_data(sweep, chosen=CHOSEN, primary=None)
    assert data["judge_ran"] is False and all(not it["judge"] for it in data["items"])


def test_names_from_sweep_and_given_names(sweep, page):
    _, _, data = page
    names = {m["key"]: m["name"] for m in data["models"]}
    assert names[CHOSEN] == "r8-lr2e-4" and names["r4-lr0.001"] == "r4-lr1e-3"  # runs.display_name over the grid axes
    assert names["fewshot"] == "few-shot prompt"
    given = review_data(sweep, chosen=CHOSEN, primary="field_f1", names={CHOSEN: "winner"})
    assert {m["key"]: m["name"] for m in given["models"]}[CHOSEN] == "winner"
    assert given["primary"] == "field_f1" and given["discordant"][f"{CHOSEN}|base"]["binary"] is False


def test_without_a_chosen_adapter_the_first_is_compared_and_none_is_marked(sweep):
    for chosen in (None, "r8-lr0.001"):  # r8-lr0.001 failed: it has no outputs
        data = review_data(sweep, chosen=chosen, primary=None)
        assert data["chosen"] is None and data["adapter"] == data["adapters"][0]


def test_blind_order_is_fixed_and_shuffled(page):
    _, _, data = page
    flips = [it["flip"] for it in data["items"]]
    assert 15 <= sum(flips) <= 45, "the adapter must not always be shown on the same side"
    assert flips == [blind_flip(data["sweep"], data["task"], it["id"]) for it in data["items"]]
    assert data["storage_key"] == "lora-harness-review:demo-clear_win:demo"


def test_deterministic_bytes(sweep, tmp_path, page):
    path, html, _ = page
    again = write_review(sweep, chosen=CHOSEN, primary=None, out_path=tmp_path / "again.html")
    assert again.read_bytes() == path.read_bytes()
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy / sweep.name)
    elsewhere = write_review(copy / sweep.name, chosen=CHOSEN, primary=None)
    assert elsewhere.read_bytes() == path.read_bytes(), "the page must not depend on where the sweep lives"


def test_missing_scores_is_a_user_error(tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(UserError, match=r"scores\.jsonl: no scores"):
        write_review(tmp_path / "s", chosen=None, primary=None)


def test_large_sweep_stays_a_sane_size(tmp_path):
    """500 items x 14 models of ~300-character outputs: the page is the data plus a fixed ~30 kB of code."""
    sweep = tmp_path / "big"
    (sweep / "scores").mkdir(parents=True)
    models = ["base", "fewshot"] + [f"run{k:02d}" for k in range(12)]
    (sweep / "sweep.json").write_text(json.dumps({"name": "big", "task": "t", "runs": [
        {"run_id": m, "hparams": {"lora.r": 4 * (1 + k % 4), "train.lr": [1e-4, 2e-4, 5e-4][k // 4]}}
        for k, m in enumerate(models[2:])], "grid": {"lora.r": [4, 8, 12, 16], "train.lr": [1e-4, 2e-4, 5e-4]}}))
    lines = []
    for k in range(500):
        for j, m in enumerate(models):
            lines.append(json.dumps({"model": m, "split": "task", "sample_id": f"s{k:03d}", "knowledge": False,
                                     "prompt": [{"role": "user", "content": f"question {k} " * 20}],
                                     "output": f"answer {k} from {m} " * 15, "reference": f"answer {k} " * 15,
                                     "metrics": {"em": float((k + j) % 3 == 0), "f1": (k * j % 7) / 7}}))
    (sweep / "scores" / "scores.jsonl").write_text("\n".join(lines) + "\n")
    path = write_review(sweep, chosen="run00", primary="em")
    data = _embedded(path.read_text())
    assert len(data["items"]) == 500 and len(data["models"]) == 14
    outputs = sum(len(o["text"]) for it in data["items"] for o in it["outputs"].values())
    assert path.stat().st_size < 1.6 * outputs + 200_000, (path.stat().st_size, outputs)
    assert len({m["name"] for m in data["models"]}) == 14


def test_counts_equal_what_the_report_shows(tmp_path):
    """The report writes review.html next to report.html, for the adapter its decision chose, and each discordant
    count on the page is the report's own a_only / b_only (McNemar's b10 / b01) for that pair."""
    from harness.report import write_report

    sweep = write_review_sweep(tmp_path)
    res = write_report(sweep, plots=False)
    assert res["review_html"] == sweep / "report" / "review.html"
    data = _embedded(res["review_html"].read_text(encoding="utf-8"))
    assert data["chosen"] == res["decision"].chosen
    comparisons = json.loads((sweep / "report" / "analysis.json").read_text())["comparisons"]
    checked = 0
    for b in data["baselines"]:
        for a in data["adapters"]:
            c = comparisons[b][a][data["primary"]]
            shown = data["discordant"][f"{a}|{b}"]
            assert (shown["b10"], shown["b01"], shown["n"]) == (c["a_only"], c["b_only"], c["n"]), (a, b)
            checked += 1
    assert checked == 6


def test_reads_what_the_real_judge_writes(tmp_path):
    """judge.jsonl as harness.judge.run_judge writes it (a real local judge: the tiny model, hf backend)."""
    from harness.judge import load_judge_cfg, run_judge

    sweep = write_review_sweep(tmp_path, judge=False)
    cfg = load_judge_cfg("local", ["judge.model=tiny_random", "judge.rubric=null", "judge.max_items=2",
                                   "judge.retries=0", "judge.gen.max_new_tokens=8", "judge.gen.logprobs=0"])
    run_judge(sweep / "scores", cfg, pairs=[(CHOSEN, "fewshot")], log=lambda s: None)
    written = [json.loads(line) for line in (sweep / "scores" / "judge.jsonl").read_text().splitlines()]
    data = review_data(sweep, chosen=CHOSEN, primary=None)
    judged = {it["id"]: it["judge"] for it in data["items"] if it["judge"]}
    assert sorted(judged) == sorted(r["sample_id"] for r in written) and len(judged) == 2
    for sid, (j,) in judged.items():
        row = next(r for r in written if r["sample_id"] == sid)
        assert (j["a"], j["b"], j["consistent"]) == (CHOSEN, "fewshot", row["consistent"])
        assert [o["first"] for o in j["orders"]] == [CHOSEN, "fewshot"]
        for o, raw in zip(j["orders"], (row["order_ab"], row["order_ba"])):
            assert o["reason"] == raw["reason"] and o["winner"] == raw["winner"]
            if raw["winner"] is None:  # a tiny random judge rarely answers in the strict format: say why
                assert o["preferred"] is None and o["error"]


def test_sweep_and_task_names_are_escaped_in_the_title(tmp_path):
    sweep = write_review_sweep(tmp_path, judge=False)
    meta = json.loads((sweep / "sweep.json").read_text())
    meta.update(name='<img src=x onerror="alert(3)">', task="t&<b>")
    (sweep / "sweep.json").write_text(json.dumps(meta))
    html = write_review(sweep, chosen=CHOSEN, primary=None).read_text(encoding="utf-8")
    assert "<img" not in html and "<b>" not in html
    assert "<title>Review: &lt;img src=x onerror=&quot;alert(3)&quot;&gt; · t&amp;&lt;b&gt;</title>" in html
    assert _embedded(html)["storage_key"] == 'lora-harness-review:<img src=x onerror="alert(3)">:t&<b>'


# ------------------------------------------------------------------------------------------ forgetting probes

@pytest.fixture(scope="module")
def probe_sweep(tmp_path_factory) -> Path:
    return write_probe_sweep(tmp_path_factory.mktemp("probes"))


@pytest.fixture(scope="module")
def probe_page(probe_sweep) -> tuple[str, dict]:
    html = write_review(probe_sweep, chosen=CHOSEN, primary=None).read_text(encoding="utf-8")
    return html, _embedded(html)["probes"]


def _probe_rows(sweep: Path) -> dict[tuple[str, str], dict]:
    return {(r["model"], f"{r['family']}/{r['sample_id']}"): r for r in _rows(sweep) if r["split"] == "probe"}


def _pass_bleed(r: dict) -> tuple:
    """(pass, bleed) of a probe row as the analysis reads it: none at all for a failed request."""
    return (None, None) if r.get("error") else (r["metrics"]["pass"], r["metrics"]["bleed"])


def test_probes_are_shown_for_base_and_every_adapter(probe_sweep, probe_page):
    """Every probe is in the page with base's and each adapter's output; few-shot is not asked probes."""
    _, probes = probe_page
    rows = _probe_rows(probe_sweep)
    assert probes["models"] == ["base", CHOSEN, "r4-lr0.0002", "r4-lr0.001"]
    assert probes["families"] == ["arithmetic", "general_knowledge"] and probes["bleed_measured"] is True
    assert sorted(it["key"] for it in probes["items"]) == sorted({k for m, k in rows if m != "fewshot"})
    for it in probes["items"]:
        assert it["question"] == f"Probe {it['id']}: answer in one short sentence."
        for m in probes["models"]:
            r = rows[(m, it["key"])]
            assert it["outputs"][m]["text"] == r["output"]
            assert (it["outputs"][m]["pass"], it["outputs"][m]["bleed"]) == _pass_bleed(r)


@pytest.mark.parametrize("flag", ["regressed", "bleed", "improved"])
def test_probe_filter_counts_follow_the_rows(probe_sweep, probe_page, flag):
    """Each adapter's filter lists exactly: base passes and it fails / it bleeds / base fails and it passes."""
    _, probes = probe_page
    rows = _probe_rows(probe_sweep)

    def want(a: str, key: str) -> bool:
        (mine, bled), (base, _) = _pass_bleed(rows[(a, key)]), _pass_bleed(rows[("base", key)])
        if flag == "bleed":
            return bled == 1
        return (base, mine) == ((1, 0) if flag == "regressed" else (0, 1))

    for a in probes["adapters"]:
        shown = {it["key"] for it in probes["items"] if flag in it["flags"].get(a, [])}
        assert shown == {it["key"] for it in probes["items"] if want(a, it["key"])}, a
        assert shown, f"the fixture has {flag} probes for {a}"
    n_bleed = round(PROBE_BLEED["arithmetic"] * 40)
    assert sum("bleed" in it["flags"].get(CHOSEN, []) for it in probes["items"]) == n_bleed


def test_probe_counts_are_the_reports(probe_sweep):
    """The report's forgetting table and the page count the same things: its McNemar a_only / b_only per family
    are the page's improved / regressed, its bleed count the page's format-bleed count."""
    from harness.report import write_report

    res = write_report(probe_sweep, plots=False, n_boot=300)
    an, chosen = res["analysis"], res["decision"].chosen
    probes = _embedded(res["review_html"].read_text(encoding="utf-8"))["probes"]

    def count(flag: str, family: str | None = None) -> int:
        return sum(flag in it["flags"].get(chosen, []) for it in probes["items"] if family in (None, it["family"]))

    for fam, r in an.forgetting[chosen].items():
        f = None if fam == "all" else fam
        assert (count("regressed", f), count("improved", f)) == (r.comparison.b_only, r.comparison.a_only), fam
    assert count("bleed") == an.bleed[chosen].count > 0
    for fam, (k, _kb, _n) in an.bleed[chosen].families.items():
        assert count("bleed", fam) == k


def test_probe_output_markup_stays_data(probe_page):
    html, probes = probe_page
    model, sid = PROBE_XSS_ROW
    assert "<script>alert(4)" not in html and "<img src=x" not in html
    assert len(re.findall(r"<script\b", html)) == 2
    out = next(it for it in probes["items"] if it["id"] == sid)["outputs"][model]
    assert out["text"] == PROBE_XSS


def test_failed_probe_request_has_no_pass_and_no_bleed(probe_page):
    _, probes = probe_page
    model, sid = PROBE_ERROR_ROW
    it = next(it for it in probes["items"] if it["id"] == sid)
    assert it["outputs"][model]["error"] == ERROR
    assert (it["outputs"][model]["pass"], it["outputs"][model]["bleed"]) == (None, None)
    assert it["flags"].get(model, []) == [], "an error is neither a regression nor bleed"


def test_bleed_not_measured_is_not_zero(page):
    """Probes scored without a bleed value (free-text task): the page says not measured, flags nothing as bleed."""
    _, _, data = page
    probes = data["probes"]
    assert probes["items"] and probes["bleed_measured"] is False
    assert all(o["bleed"] is None for it in probes["items"] for o in it["outputs"].values())
    assert not any("bleed" in f for it in probes["items"] for f in it["flags"].values())


def test_sweep_without_probes_has_no_probe_items(tmp_path):
    sweep = write_review_sweep(tmp_path, judge=False)
    scores = sweep / "scores" / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in _rows(sweep) if r["split"] != "probe"))
    probes = review_data(sweep, chosen=CHOSEN, primary=None)["probes"]
    assert probes["items"] == [] and probes["families"] == []
