"""harness report on synthetic sweep dirs: the decision leads, the evidence follows, same numbers as the gate."""
from __future__ import annotations

import json
import re

import pytest

from fixtures_sweep import write_sweep
from harness.analysis import Settings
from harness.io import UserError
from harness.report import analyze_sweep, load_sweep, settings_for, write_report

FAST = Settings(n_boot=500)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for scenario in ("clear_win", "prompting", "form_not_facts"):
        sweep = write_sweep(root, scenario)
        res = write_report(sweep, FAST)
        out[scenario] = (sweep, res, (sweep / "report" / "report.md").read_text())
    return out


def test_decision_comes_first(reports):
    _, _, md = reports["clear_win"]
    first = [ln for ln in md.splitlines() if ln.startswith("## ")][0]
    assert first == "## Decision: SHIP"
    headline = next(ln for ln in md.splitlines() if ln.startswith("> **"))
    assert headline.startswith("> **SHIP `r4-lr2e-4`")


def test_headline_numbers_are_base_fewshot_adapter_with_cis(reports):
    sweep, res, md = reports["clear_win"]
    d = res["decision"]
    assert list(d.numbers) == ["base", "fewshot", "adapter"]
    for i in d.numbers.values():
        assert f"{i.mean:.3f} [{i.lo:.3f}, {i.hi:.3f}]" in md
    assert (sweep / "report" / "plots" / "headline.png").stat().st_size > 1000


def test_sections_present(reports):
    sweep, res, md = reports["clear_win"]
    for heading in ("## Leaderboard", "## Forgetting: r4-lr2e-4 vs base", "## LLM judge", "## Form vs knowledge",
                    "## Paired comparisons", "## Plots", "## Reproduce", "### Manifest hashes",
                    "### vs base (zero-shot)", "### vs base + few-shot prompt"):
        assert heading in md, heading
    for row in ("r4-lr2e-4", "r8-lr2e-4", "r4-lr1e-3", "base (zero-shot)", "base + few-shot prompt"):
        assert re.search(rf"\| \d \| (\*\*)?{re.escape(row)}", md), row
    assert "r8-lr1e-3" in md and "loss became NaN" in md  # the failed run, by name, with its error
    assert "McNemar" in md and "paired bootstrap" in md and "Holm over 2" in md
    assert "harness train task=demo model=smollm2_135m train.epochs=1 lora.alpha=16 lora.r=8 train.lr=0.0002 seed=0" in md
    assert "base_model.identity" in md and "5f2b8c1d9e0a7b34" in md
    for name in ("loss_curves.png", "metric_vs_lora.r.png", "metric_vs_train.lr.png", "quality_vs_cost.png"):
        assert (sweep / "report" / "plots" / name).stat().st_size > 1000, name


def test_html_self_contained_and_leads_with_the_decision(reports):
    _, res, _ = reports["clear_win"]
    page = res["report_html"].read_text()
    assert page.index('<section id="decision"') < page.index('<table id="leaderboard">')
    assert 'id="headline-chart"' in page and page.count("data:image/png;base64,") == 5
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    assert re.search(r'src="(?!data:)', page) is None


def test_verdict_json_is_the_decision(reports):
    sweep, res, _ = reports["clear_win"]
    v = json.loads((sweep / "report" / "verdict.json").read_text())
    assert v["outcome"] == "ship" and v["chosen"] == "r4-lr0.0002" and v["chosen_name"] == "r4-lr2e-4"
    assert v["comparisons"]["base"]["all_fields_correct"]["verdict"] == "better"
    assert v["settings"]["alpha"] == 0.05 and v["selection_values"]["r4-lr0.0002"] == 0.7


def test_prompting_enough_is_use_prompt(reports):
    _, res, md = reports["prompting"]
    assert res["decision"].outcome == "use_prompt"
    assert "## Decision: USE THE PROMPT" in md


def test_form_not_facts_is_wrong_tool(reports):
    _, res, md = reports["form_not_facts"]
    assert res["decision"].outcome == "wrong_tool"
    assert "knowledge items" in md and "retrieve for knowledge" in md


def test_unreliable_judge_labelled(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", judge="unreliable")
    md = write_report(sweep, FAST, plots=False)["report_md"].read_text()
    assert "UNRELIABLE: do not trust its scores" in md
    sweep2 = write_sweep(tmp_path, "clear_win", judge="uncalibrated", name="nocal")
    md2 = write_report(sweep2, FAST, plots=False)["report_md"].read_text()
    assert "not calibrated" in md2


def test_judge_unavailable_is_said_and_task_metrics_stay(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win")
    (sweep / "scores" / "judge_summary.json").write_text(json.dumps(
        {"status": "unavailable", "error": "connection refused: http://127.0.0.1:9/v1"}))
    res = write_report(sweep, FAST, plots=False)
    md = res["report_md"].read_text()
    assert "The judge did not run" in md and "connection refused" in md
    assert res["decision"].outcome == "ship"


def test_forgetting_shown_is_ship_with_care(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", probe_drop={"arithmetic": 0.45}, n_probe=100)
    res = write_report(sweep, FAST, plots=False)
    d = res["decision"]
    assert d.outcome == "ship_with_care" and d.forgetting["arithmetic"] == "fail"
    assert "forgets on arithmetic" in d.headline


def test_errors_make_the_decision_unusable_and_are_listed(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", error_rate={"r4-lr0.0002": 0.3})
    res = write_report(sweep, FAST, plots=False)
    md = res["report_md"].read_text()
    assert res["decision"].outcome == "unusable"
    assert "## Backend errors" in md and "18/60" in md and "HTTP 503" in md


def test_target_from_sweep_and_override(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", target=0.95)
    s = settings_for(load_sweep(sweep))
    assert s.target == 0.95 and s.target_source == "task"
    assert write_report(sweep, FAST, plots=False)["decision"].outcome == "ship"  # FAST replaces the sweep's settings
    assert write_report(sweep, plots=False, n_boot=500)["decision"].outcome == "keep_training"
    res = write_report(sweep, plots=False, n_boot=500, target=0.5, target_source="command line")
    assert res["decision"].outcome == "ship" and "(command line)" in res["report_md"].read_text()


def test_report_is_deterministic(tmp_path):
    sweep = write_sweep(tmp_path, "prompting")
    outs = []
    for _ in range(2):
        write_report(sweep, FAST)
        outs.append([(sweep / "report" / f).read_bytes() for f in ("report.md", "report.html", "verdict.json")])
    assert outs[0] == outs[1]


def test_no_adapters_and_missing_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_sweep(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no sweep.json"):
        load_sweep(tmp_path / "empty")
    sweep = write_sweep(tmp_path, "clear_win")
    (sweep / "scores" / "scores.jsonl").unlink()
    with pytest.raises(UserError, match="no scores"):
        load_sweep(sweep, require_scores=True)
    res = write_report(sweep, FAST, plots=False)  # a training-only sweep still gets a report
    assert res["decision"].outcome == "unusable" and "no task scores" in res["decision"].headline


def test_bad_score_row_names_file_and_line(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win")
    p = sweep / "scores" / "scores.jsonl"
    lines = p.read_text().splitlines()
    lines[3] = json.dumps({"model": "base"})
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"scores\.jsonl:4: expected a score row"):
        load_sweep(sweep)


def test_holm_only_over_exploratory_adapters(reports):
    sweep, _, _ = reports["clear_win"]
    an = analyze_sweep(load_sweep(sweep), FAST)
    chosen = an.selection.chosen
    assert an.comparison(chosen, "fewshot").p_adjusted is None
    others = [an.comparison(a, "fewshot") for a in an.adapters if a != chosen]
    assert all(c.p_adjusted >= c.p_value and c.adjusted_over == 2 for c in others)


def test_cli_report(tmp_path, capsys):
    from harness.cli import main

    sweep = write_sweep(tmp_path, "clear_win", judge=None)
    assert main(["report", str(sweep), "--n-boot", "300"]) == 0
    out = capsys.readouterr().out
    assert "decision: SHIP: SHIP `r4-lr2e-4`" in out
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(sweep), "--alpha", "2"]) == 2


# ------------------------------------------------------------------------------------------ format bleed

HOSTILE = '{"product": "<script>alert(6)</script><img src=x onerror=alert(7)>", "note": "' + "very " * 60 + 'long"}'


@pytest.fixture(scope="module")
def bleeding(tmp_path_factory):
    """A sweep whose adapters answer 10 of the 40 arithmetic probes in the ticket JSON (base never does); the chosen
    adapter's first bleeding answer is hostile markup and long."""
    from review_fixture import write_probe_sweep

    sweep = write_probe_sweep(tmp_path_factory.mktemp("bleed"))
    p = sweep / "scores" / "scores.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    for r in rows:
        if (r["model"], r["sample_id"]) == ("r4-lr0.0002", "arithmetic-000"):
            r["output"] = HOSTILE
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = write_report(sweep, FAST, plots=False)
    assert res["decision"].chosen == "r4-lr0.0002"
    return res, res["report_md"].read_text(), res["report_html"].read_text()


def _md_row(md: str, first_cell: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


def test_forgetting_table_counts_bleed_per_family(bleeding):
    res, md, _ = bleeding
    b = res["analysis"].bleed[res["decision"].chosen]
    assert b.families == {"arithmetic": (10, 0, 40), "general_knowledge": (0, 0, 40)}
    assert "format bleed: adapter vs base" in md
    assert "[10 vs 0 of 40](review.html#probes-bleed/arithmetic)" in _md_row(md, "arithmetic")
    assert "[0 vs 0 of 40](review.html#probes-bleed/general_knowledge)" in _md_row(md, "general_knowledge")


def test_bleed_summary_row_has_count_rate_ci_and_status(bleeding):
    res, md, _ = bleeding
    b = res["analysis"].bleed[res["decision"].chosen]
    c = b.comparison
    row = _md_row(md, "format bleed rate (all probes)")
    assert row[2] == f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}]" and row[3] == str(c.n) == "80"
    assert row[4] == "bleeds: +12.5% over base, above the 2% allowed"
    assert row[6] == "[10 vs 0 of 80 (12.5%)](review.html#probes-bleed)"


def test_forgetting_table_links_to_the_review_filters(bleeding):
    """Each family row links to review.html's probe view with that family and the filter of its cell."""
    res, md, html = bleeding
    fg = res["analysis"].forgetting[res["decision"].chosen]["general_knowledge"].comparison
    row = _md_row(md, "general_knowledge")
    assert row[-2:] == [f"[{fg.b_only}](review.html#probes-regressed/general_knowledge)",
                        f"[{fg.a_only}](review.html#probes-improved/general_knowledge)"]
    for href in ("review.html#probes-bleed/arithmetic", "review.html#probes-regressed/arithmetic",
                 "review.html#probes-improved", "review.html#probes-bleed"):
        assert f'<a href="{href}">' in html, href


def test_bleeding_examples_are_literal_and_clipped(bleeding):
    _, md, html = bleeding
    assert "answering in the task's form, unasked:" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("- arithmetic: `")]
    assert len(lines) == 2, "two examples"
    assert "<script>alert(6)</script>" in lines[0] and lines[0].endswith("…`"), "a code span: literal, clipped"
    assert "<script" not in html.lower() and "<img" not in html
    assert "&lt;script&gt;alert(6)&lt;/script&gt;&lt;img src=x onerror=alert(7)&gt;" in html
    shown = re.search(r"<code>(\{&quot;product&quot;[^<]*)</code>", html).group(1)
    assert len(shown.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")) == 140


def test_bleed_not_measured_is_said(reports):
    _, _, md = reports["clear_win"]
    section = md[md.index("## Forgetting"):md.index("## ", md.index("## Forgetting") + 3)]
    assert "Format bleed: not measured (the task's answers have no fixed form; task.yaml `answer_pattern:` " \
           "names one)." in section
    assert "format bleed: adapter vs base" not in section and "format bleed rate" not in section


def test_clean_adapter_shows_no_bleeding_examples(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", bleed={"arithmetic": 0.0}, judge=None)
    res = write_report(sweep, FAST, plots=False)
    md = res["report_md"].read_text()
    assert _md_row(md, "format bleed rate (all probes)")[4].startswith("clean: +0.0% over base, within the 2% allowed")
    assert "answering in the task's form" not in md
