"""harness report on synthetic sweep dirs: sections, verdicts for the three canonical cases, determinism."""
from __future__ import annotations

import json
import re

import pytest

from fixtures_sweep import write_sweep
from harness.io import UserError
from harness.report import VerdictConfig, analyze, load_sweep, write_report

FAST = VerdictConfig(n_boot=500)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    out = {}
    for scenario in ("clear_win", "prompting", "form_not_facts"):
        sweep = write_sweep(root, scenario)
        res = write_report(sweep, FAST)
        out[scenario] = (sweep, res, (sweep / "report" / "report.md").read_text())
    return out


def test_sections_present(reports):
    sweep, res, md = reports["clear_win"]
    for heading in ("## Verdict", "## Leaderboard", "## Paired comparisons", "## Plots", "## Reproduce",
                    "### Failed runs", "### Manifest hashes", "### vs base (zero-shot)", "### vs base + few-shot prompt"):
        assert heading in md, heading
    # every adapter, base and few-shot rows, each metric with a CI
    for row in ("r4-lr0.0002", "r8-lr0.0002", "r4-lr0.001", "base (zero-shot)", "base + few-shot prompt"):
        assert re.search(rf"\| \d \| (\*\*)?{re.escape(row)}", md), row
    assert re.search(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]", md)
    assert "lora.r=8" in md and "train.lr=0.0002" in md
    # failed run with its error; probes; judge calibration; cost columns
    assert "r8-lr0.001" in md and "loss became NaN" in md
    assert "Δ probe arithmetic" in md and "Δ probe general_knowledge" in md
    assert "κ 0.72" in md and "reliable" in md and "UNRELIABLE" not in md
    assert "train time (s)" in md and "3.5 MB" in md
    # McNemar for binary metrics, bootstrap for continuous, Holm column
    assert "McNemar" in md and "paired bootstrap" in md and "p (Holm)" in md
    # reproduce: sweep command, per-run train command, hashes, config.yaml
    assert "harness sweep task=demo" in md
    assert "harness train task=demo model=smollm2_135m train.epochs=1 lora.alpha=16 lora.r=8 train.lr=0.0002 seed=0" in md
    assert "base_model.identity" in md and "5f2b8c1d9e0a7b34" in md and "a" * 64 in md
    assert "r8-lr0.0002: config.yaml" in md
    # plots exist as files for the md, and inline for the html
    for name in ("loss_curves.png", "metrics_vs_lora.r.png", "metrics_vs_train.lr.png", "quality_vs_cost.png"):
        assert f"plots/{name}" in md
        assert (sweep / "report" / "plots" / name).stat().st_size > 1000


def test_html_self_contained(reports):
    _, res, _ = reports["clear_win"]
    page = res["report_html"].read_text()
    assert '<table id="leaderboard">' in page and '<section id="verdict">' in page
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert re.search(r"<(link|iframe)\b", page) is None
    assert re.search(r'src="(?!data:)', page) is None


def test_verdict_clear_win(reports):
    sweep, res, md = reports["clear_win"]
    v = json.loads((sweep / "report" / "verdict.json").read_text())
    assert v["best"] == "r8-lr0.0002"
    assert v["beats_base"] is True and v["beats_fewshot"] is True
    assert v["forgetting_regressed"] is False
    assert v["form_not_facts"] is False
    assert v["recommendation"] == "adapter"
    assert "prompting was enough" not in md.lower()
    assert "use the adapter `r8-lr0.0002`" in md
    assert "It beats the base model with confidence" in md
    assert v["margin_vs_runner_up"] > 0


def test_verdict_prompting_enough(reports):
    sweep, res, md = reports["prompting"]
    v = res["verdict"]
    assert v["beats_base"] is True and v["beats_fewshot"] is False
    assert v["recommendation"] == "prompting"
    assert "prompting was enough: use the few-shot prompt" in md.lower()
    assert "does not beat the few-shot prompt with confidence" in md
    # no secondary metric is claimed against few-shot when none moved with confidence
    assert v["other_gains_vs_fewshot"] == {} and "Other metrics where it does beat the few-shot" not in md


def test_verdict_names_form_gains_when_the_primary_metric_does_not_move(tmp_path):
    sweep = write_sweep(tmp_path, "form_only")
    v = write_report(sweep, FAST, plots=False)["verdict"]
    md = (sweep / "report" / "report.md").read_text()
    assert v["beats_fewshot"] is False
    assert "json_valid" in v["other_gains_vs_fewshot"] and v["other_gains_vs_fewshot"]["json_valid"] > 0.4
    assert "all_fields_correct" not in v["other_gains_vs_fewshot"]  # the primary metric is reported on its own
    line = next(ln for ln in md.splitlines() if "Other metrics where it does beat the few-shot prompt with confidence" in ln)
    assert re.search(r"json_valid \+0\.\d{3} \[\+0\.\d{3}, \+[01]\.\d{3}\]", line)


def test_verdict_form_not_facts(reports):
    sweep, res, md = reports["form_not_facts"]
    v = res["verdict"]
    assert v["form_not_facts"] is True
    assert v["recommendation"] == "rag"
    assert "fine-tuning taught the format, not the facts: use retrieval (rag) for the facts" in md.lower()
    assert v["knowledge"]["form_gain"] > 0.5 and v["knowledge"]["knowledge_adapter"] < 0.5


def test_unreliable_judge_labelled(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", judge="unreliable")
    md = write_report(sweep, FAST, plots=False)["report_md"].read_text()
    assert md.count("UNRELIABLE") >= 5
    sweep2 = write_sweep(tmp_path, "clear_win", judge="uncalibrated", name="nocal")
    md2 = write_report(sweep2, FAST, plots=False)["report_md"].read_text()
    assert "no calibration" in md2 and "UNRELIABLE" in md2


def test_forgetting_regression_detected(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", probe_drop={"arithmetic": 0.45})
    res = write_report(sweep, FAST, plots=False)
    v = res["verdict"]
    assert v["forgetting_regressed"] is True
    assert v["regressed_families"] == ["arithmetic"]
    assert v["recommendation"] == "adapter_with_care"
    md = res["report_md"].read_text()
    assert "REGRESSED" in md and "Forgetting probes REGRESSED vs base: arithmetic" in md


def test_report_is_deterministic(tmp_path):
    sweep = write_sweep(tmp_path, "prompting")
    write_report(sweep, FAST)
    md1 = (sweep / "report" / "report.md").read_bytes()
    html1 = (sweep / "report" / "report.html").read_bytes()
    v1 = (sweep / "report" / "verdict.json").read_bytes()
    write_report(sweep, FAST)
    assert (sweep / "report" / "report.md").read_bytes() == md1
    assert (sweep / "report" / "verdict.json").read_bytes() == v1
    assert (sweep / "report" / "report.html").read_bytes() == html1


def test_holm_applied_over_adapters(reports):
    sweep, _, _ = reports["clear_win"]
    an = analyze(load_sweep(sweep), FAST)
    comp = an["comparisons"]["fewshot"]
    ps = [comp[a]["all_fields_correct"]["p_value"] for a in an["adapters"]]
    adj = [comp[a]["all_fields_correct"]["p_holm"] for a in an["adapters"]]
    assert all(h >= p for h, p in zip(adj, ps))
    assert min(adj) == pytest.approx(min(1.0, min(ps) * len(ps)))


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
    assert res["verdict"]["recommendation"] == "no_adapter"
    assert "No scores yet" in res["report_md"].read_text()


def test_cli_report(tmp_path, capsys):
    from harness.cli import main

    sweep = write_sweep(tmp_path, "clear_win", judge=None)
    assert main(["report", str(sweep), "--n-boot", "300"]) == 0
    out = capsys.readouterr().out
    assert "verdict: Best configuration" in out
    assert (sweep / "report" / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
