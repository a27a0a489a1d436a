"""harness gate: the report's decision as an exit code (0 pass, 1 fail, 2 unusable, 3 inconclusive), the same
numbers as the report on every comparison, junit.xml, config errors naming file:line:key."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fixtures_sweep import write_sweep
from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "conf" / "gate" / "default.yaml")
STRICT = str(REPO / "conf" / "gate" / "strict.yaml")

# (fixture kwargs, expected decision outcome): every outcome a user meets
OUTCOME_FIXTURES = {
    "ship": ({"scenario": "clear_win", "n_probe": 100}, "ship"),
    "ship_with_care": ({"scenario": "clear_win", "probe_drop": {"arithmetic": 0.45}, "n_probe": 100}, "ship_with_care"),
    "use_prompt": ({"scenario": "prompting", "target": 0.7}, "use_prompt"),
    "keep_training_target": ({"scenario": "clear_win", "target": 0.95, "n_probe": 100}, "keep_training"),
    "keep_training_weak_prompt": ({"scenario": "weak_prompt", "target": 0.9}, "keep_training"),
    "no_gain": ({"scenario": "no_gain", "n_items": 200}, "no_gain"),
    "wrong_tool": ({"scenario": "knowledge_only", "knowledge_share": 1.0}, "wrong_tool"),
    "wrong_tool_form": ({"scenario": "form_not_facts"}, "wrong_tool"),
    "inconclusive_n1": ({"scenario": "clear_win", "n_items": 1}, "inconclusive"),
    "inconclusive_n4": ({"scenario": "clear_win", "n_items": 4}, "inconclusive"),
    "unusable_errors": ({"scenario": "clear_win", "error_rate": {"r4-lr0.0002": 0.3}}, "unusable"),
}


@pytest.fixture(scope="module")
def outcome_sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("outcomes")
    out = {}
    for name, (kw, _) in OUTCOME_FIXTURES.items():
        kw = dict(kw)
        out[name] = write_sweep(root, kw.pop("scenario"), name=name, **kw)
    return out


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return {"clear_win": write_sweep(root, "clear_win", n_probe=100, n_items=200), "prompting": write_sweep(root, "prompting"),
            "unreliable": write_sweep(root, "clear_win", judge="unreliable", name="unreliable", n_probe=100)}


def _cfg(tmp_path: Path, text: str) -> str:
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    return str(p)


def _gate(sweep: Path) -> dict:
    return json.loads((sweep / "gate" / "gate.json").read_text())


@pytest.mark.parametrize("name", list(OUTCOME_FIXTURES))
def test_decision_outcome_for_each_situation(outcome_sweeps, name, tmp_path):
    sweep = outcome_sweeps[name]
    want = OUTCOME_FIXTURES[name][1]
    rc = main(["gate", str(sweep), "--config", _cfg(tmp_path, "checks:\n  - decision: [ship, ship_with_care]\n"),
               "--quiet"])
    res = _gate(sweep)
    assert res["decision"]["outcome"] == want, res["decision"]["headline"]
    assert rc == {"ship": 0, "ship_with_care": 0, "unusable": 2, "inconclusive": 3}.get(want, 1)
    if want not in ("ship", "ship_with_care"):  # nothing but a ship decision passes the default gate either
        assert main(["gate", str(sweep), "--config", DEFAULT, "--quiet"]) != 0


@pytest.mark.parametrize("name", list(OUTCOME_FIXTURES))
def test_report_and_gate_agree_on_every_comparison(outcome_sweeps, name, tmp_path):
    """The gate's improvement / non-inferiority checks quote the report's own comparisons, digit for digit."""
    from harness.fmt import fmt_comparison
    from harness.report import analyze_sweep, load_sweep, settings_for, write_report

    sweep = outcome_sweeps[name]
    rep = write_report(sweep, plots=False)
    an = rep["analysis"]
    cfg = _cfg(tmp_path, "checks:\n" + "".join(
        f"  - metric: {m}\n    min_improvement_over: {ref}\n" for ref in an.baselines for m in an.compared_metrics)
        + "  - decision: [ship]\n")
    main(["gate", str(sweep), "--config", cfg, "--quiet"])
    res = _gate(sweep)
    verdict = json.loads((sweep / "report" / "verdict.json").read_text())
    assert res["decision"]["outcome"] == verdict["outcome"] and res["decision"]["headline"] == verdict["headline"]
    assert res["adapter"] == verdict["chosen"] or verdict["chosen"] is None
    again = analyze_sweep(load_sweep(sweep), settings_for(load_sweep(sweep)))
    checks = iter(res["checks"])
    for ref in an.baselines:
        for m in an.compared_metrics:
            chk = next(checks)
            c = again.comparison(res["adapter"], ref, m)
            assert c is not None and chk["reason"].split(" [unusable: ")[0].endswith(fmt_comparison(c))
            assert chk["reason"].startswith(c.verdict)
            rc = verdict["comparisons"].get(ref, {}).get(m)
            if rc is not None and res["adapter"] == verdict["chosen"]:
                assert (rc["diff"], rc["lo"], rc["hi"], rc["verdict"]) == \
                    (round(c.diff, 6), round(c.lo, 6), round(c.hi, 6), c.verdict)
            if res["status"] != "unusable":
                want = "pass" if c.verdict == "better" and c.lo > 0 else "fail" if c.hi <= 0 else "inconclusive"
                assert chk["status"] == want


def test_default_gate_passes_and_writes_outputs(sweeps, capsys):
    sweep = sweeps["clear_win"]
    assert main(["gate", str(sweep), "--config", DEFAULT]) == 0
    out = capsys.readouterr().out
    assert "gate PASS" in out and "json_valid" in out
    res = _gate(sweep)
    assert res["passed"] is True and res["adapter"] == "r4-lr0.0002" and res["adapter_name"] == "r4-lr2e-4"
    assert {c["kind"] for c in res["checks"]} == {"decision", "metric", "forgetting"}
    root = ET.parse(sweep / "gate" / "junit.xml").getroot()
    assert len(root.findall(".//testcase")) == res["n_checks"] == 3
    assert root.findall(".//failure") == [] and root.findall(".//skipped") == []
    assert (sweep / "gate" / "gate.md").read_text().startswith("# Gate: PASS")


def test_default_config_by_name(sweeps, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["gate", str(sweeps["clear_win"]), "--quiet"]) == 0


def test_inconclusive_is_exit_3_skipped_in_junit_and_mappable(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", n_items=4, name="tiny")
    assert main(["gate", str(sweep), "--config", DEFAULT, "--quiet"]) == 3
    root = ET.parse(sweep / "gate" / "junit.xml").getroot()
    skipped = root.findall(".//skipped")
    assert skipped and all(s.get("message").startswith("inconclusive: ") for s in skipped)
    assert main(["gate", str(sweep), "--config", DEFAULT, "--quiet", "--inconclusive", "fail"]) == 1
    assert main(["gate", str(sweep), "--config", DEFAULT, "--quiet", "--inconclusive", "pass"]) == 0


def test_unusable_is_exit_2_with_junit_errors_naming_requests(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", error_rate={"r4-lr0.0002": 0.3}, name="errs")
    assert main(["gate", str(sweep), "--config", DEFAULT, "--quiet"]) == 2
    root = ET.parse(sweep / "gate" / "junit.xml").getroot()
    errs = root.findall(".//error")
    assert errs and "18 of 60 requests failed" in errs[0].get("message") and "demo-000" in errs[0].get("message")


def test_gate_fails_when_the_prompt_is_as_good(sweeps):
    sweep = sweeps["prompting"]
    assert main(["gate", str(sweep), "--config", STRICT, "--quiet"]) == 1
    res = _gate(sweep)
    imp = next(c for c in res["checks"] if c["name"] == "all_fields_correct better than fewshot by > 0.0")
    assert imp["status"] in ("fail", "inconclusive") and not imp["passed"]


def test_absolute_min_uses_the_ci_and_adapter_flag(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - metric: all_fields_correct\n    min: 0.45\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--quiet"]) == 0
    cfg2 = _cfg(tmp_path, "checks:\n  - metric: all_fields_correct\n    min: 0.7\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg2, "--quiet"]) == 1  # CI entirely below
    cfg3 = _cfg(tmp_path, "checks:\n  - metric: all_fields_correct\n    min: 0.55\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg3, "--quiet"]) == 3  # CI straddles
    main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--adapter", "r4-lr0.001", "--quiet"])
    res = _gate(sweeps["clear_win"])
    assert res["adapter"] == "r4-lr0.001" and res["adapter_name"] == "r4-lr1e-3"


def test_gate_target_override_is_said(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "target: 0.8\nchecks:\n  - decision: ship\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--quiet"]) == 1
    res = _gate(sweeps["clear_win"])
    assert res["decision"]["outcome"] == "keep_training" and res["target"] == 0.8
    md = (sweeps["clear_win"] / "gate" / "gate.md").read_text()
    assert "Target 0.8 (gate config" in md and "the report used no target" in md
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--quiet", "--target", "0.5"]) == 0


def test_forgetting_checks_are_non_inferiority(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", probe_drop={"arithmetic": 0.45}, n_probe=100, name="forget")
    cfg = _cfg(tmp_path, "checks:\n  - forgetting: arithmetic\n    margin: 0.1\n")
    assert main(["gate", str(sweep), "--config", cfg, "--quiet"]) == 1
    cfg2 = _cfg(tmp_path, "checks:\n  - forgetting: general_knowledge\n    margin: 0.15\n")
    assert main(["gate", str(sweep), "--config", cfg2, "--quiet"]) == 0


def test_uncalibrated_judge_refused(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - judge: pointwise\n    min: 1.0\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--quiet"]) == 0
    assert main(["gate", str(sweeps["unreliable"]), "--config", cfg, "--quiet"]) == 1
    res = _gate(sweeps["unreliable"])
    assert res["checks"][0]["reason"].startswith("judge not calibrated: cannot gate on it")
    cfg2 = _cfg(tmp_path, "checks:\n  - judge: pointwise\n    min: 1.0\n    min_kappa: 0.2\n")
    assert main(["gate", str(sweeps["unreliable"]), "--config", cfg2, "--quiet"]) == 0


def test_judge_that_did_not_run_is_unusable(tmp_path):
    sweep = write_sweep(tmp_path, "clear_win", name="judgedown")
    (sweep / "scores" / "judge_summary.json").write_text(json.dumps({"status": "unavailable", "error": "refused"}))
    cfg = _cfg(tmp_path, "checks:\n  - judge: pointwise\n    min: 1.0\n")
    assert main(["gate", str(sweep), "--config", cfg, "--quiet"]) == 2


def test_unusable_input_exit_2(sweeps, tmp_path, capsys):
    assert main(["gate", str(tmp_path / "nope"), "--config", DEFAULT]) == 2
    assert "sweep directory not found" in capsys.readouterr().err
    no_scores = write_sweep(tmp_path, "clear_win", name="noscores")
    (no_scores / "scores" / "scores.jsonl").unlink()
    assert main(["gate", str(no_scores), "--config", DEFAULT]) == 2
    assert "no scores" in capsys.readouterr().err
    assert main(["gate", str(sweeps["clear_win"]), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["gate", str(sweeps["clear_win"]), "--config", DEFAULT, "--adapter", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err


@pytest.mark.parametrize("text,line,key", [
    ("checks:\n  - metric: json_valid\n    min: high\n", 3, "checks[0].min"),
    ("checks:\n  - metric: json_valid\n    min: 0.5\n  - metrc: x\n    min: 1\n", 4, "checks[1]"),
    ("adapter: best\nchecks: []\n", 2, "checks"),
    ("adapter: best\nthreshold: 3\nchecks:\n  - metric: a\n    min: 1\n", 2, "threshold"),
    ("checks:\n  - metric: json_valid\n    min_improvement_over: gpt4\n", 3, "checks[0].min_improvement_over"),
    ("checks:\n  - forgetting: all\n    max_drop: 0.1\n", 3, "checks[0].max_drop"),
    ("alpha: 0.1\nchecks:\n  - forgetting: all\n", 1, "alpha"),
    ("checks:\n  - decision: [ship, maybe]\n", 2, "checks[0].decision"),
    ("checks:\n  - judge: pointwise\n    min: 5\n    vs: base\n", 2, "checks[0]"),
    ("checks:\n  - metric: no_such_metric\n    min: 0.5\n", 2, "checks[0].metric"),
    ("checks:\n  - forgetting: no_such_family\n    margin: 0.1\n", 2, "checks[0].forgetting"),
    ("checks:\n  - metric: json_valid\n    min: [1\n", 4, None),
    ("checks:\n  - metric: json_valid\n    min: 2\n", 3, "checks[0].min"),
])
def test_bad_gate_yaml_names_file_line_key(sweeps, tmp_path, capsys, text, line, key):
    cfg = _cfg(tmp_path, text)
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{cfg}:{line}:" in err, err
    if key:
        assert f" {key}: " in err, err


def test_run_gate_with_composed_dict(sweeps):
    """`harness sweep` passes the composed Hydra `gate` group (a dict) and expects an exit code."""
    import yaml

    from harness.report.gate_view import run_gate
    from harness.io import UserError

    assert run_gate(sweeps["clear_win"], yaml.safe_load(Path(DEFAULT).read_text()), quiet=True) == 0
    assert run_gate(sweeps["prompting"], yaml.safe_load(Path(STRICT).read_text()), quiet=True) == 1
    with pytest.raises(UserError, match=r"config gate .*checks\[0\]\.min: expected a number"):
        run_gate(sweeps["clear_win"], {"checks": [{"metric": "json_valid", "min": "x"}]})


# ------------------------------------------------------------------------------------------- format bleed

@pytest.fixture(scope="module")
def bleeding(tmp_path_factory):
    root = tmp_path_factory.mktemp("bleed")
    return {"bleeds": write_sweep(root, "clear_win", n_probe=100, name="bleeds", bleed={"arithmetic": 0.25}),
            "clean": write_sweep(root, "clear_win", n_probe=100, name="clean", bleed={})}


def test_format_bleed_check_fails_on_the_same_bleed_the_decision_names(bleeding, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - format_bleed: {max: 0.02}\n")
    assert main(["gate", str(bleeding["bleeds"]), "--config", cfg, "--quiet"]) == 1
    res = _gate(bleeding["bleeds"])
    (check,) = res["checks"]
    assert check["kind"] == "format_bleed" and check["status"] == "fail"
    assert check["value"] == pytest.approx(25 / 200) and "25 of 200 probes" in check["reason"]
    assert res["decision"]["outcome"] == "ship_with_care" and "25 of 200" in res["decision"]["headline"]


def test_format_bleed_check_passes_a_clean_adapter_and_defaults_to_max_bleed(bleeding, tmp_path):
    assert main(["gate", str(bleeding["clean"]), "--config", _cfg(tmp_path, "checks:\n  - format_bleed: {}\n"),
                 "--quiet"]) == 0
    (check,) = _gate(bleeding["clean"])["checks"]
    assert check["status"] == "pass" and check["threshold"] == "excess over base <= 0.02"


def test_format_bleed_not_measured_is_inconclusive(sweeps, tmp_path):
    assert main(["gate", str(sweeps["clear_win"]), "--config", _cfg(tmp_path, "checks:\n  - format_bleed: {max: 0.1}\n"),
                 "--quiet"]) == 3


def test_format_bleed_check_config_errors_name_the_key(tmp_path, bleeding, capsys):
    rc = main(["gate", str(bleeding["clean"]), "--config", _cfg(tmp_path, "checks:\n  - format_bleed: {max: 2}\n")])
    assert rc == 2 and "checks[0].format_bleed.max" in capsys.readouterr().err
