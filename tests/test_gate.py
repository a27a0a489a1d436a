"""harness gate: exit codes 0/1/2, junit.xml parses, config validation names file:line:key, judge refusal."""
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


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return {s: write_sweep(root, s) for s in ("clear_win", "prompting")} | {
        "unreliable": write_sweep(root, "clear_win", judge="unreliable", name="unreliable"),
        "forgetting": write_sweep(root, "clear_win", probe_drop={"arithmetic": 0.45}, name="forgetting"),
    }


def _cfg(tmp_path: Path, text: str) -> str:
    p = tmp_path / "gate.yaml"
    p.write_text(text)
    return str(p)


def test_default_gate_passes_and_writes_outputs(sweeps, capsys):
    sweep = sweeps["clear_win"]
    assert main(["gate", str(sweep), "--config", DEFAULT]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "json_valid" in out
    res = json.loads((sweep / "gate" / "gate.json").read_text())
    assert res["passed"] is True and res["adapter"] == "r8-lr0.0002" and res["n_failed"] == 0
    assert {c["kind"] for c in res["checks"]} == {"metric", "improvement", "forgetting"}
    root = ET.parse(sweep / "gate" / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == res["n_checks"] == 4  # json_valid, improvement, 2 probe families
    assert root.findall(".//failure") == []
    assert (sweep / "gate" / "gate.md").read_text().startswith("# Gate: PASSED")


def test_default_config_by_name(sweeps, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["gate", str(sweeps["clear_win"]), "--quiet"]) == 0
    assert main(["gate", str(sweeps["clear_win"]), "--config", "strict", "--quiet"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_gate_fails_on_no_gain_over_fewshot(sweeps, capsys):
    sweep = sweeps["prompting"]
    assert main(["gate", str(sweep), "--config", STRICT]) == 1
    root = ET.parse(sweep / "gate" / "junit.xml").getroot()
    failed = [tc.get("name") for tc in root.findall(".//testcase") if tc.find("failure") is not None]
    assert "all_fields_correct improvement over fewshot > 0.0" in failed
    assert int(root.get("failures")) == len(failed) >= 1
    res = json.loads((sweep / "gate" / "gate.json").read_text())
    imp = next(c for c in res["checks"] if c["name"] == "all_fields_correct improvement over fewshot > 0.0")
    assert imp["passed"] is False and imp["value"] < 0  # judged on the CI lower bound


def test_gate_absolute_min_and_adapter_flag(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - metric: all_fields_correct\n    min: 0.5\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg]) == 0
    # the weakest adapter misses the same threshold
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg, "--adapter", "r4-lr0.001"]) == 1
    res = json.loads((sweeps["clear_win"] / "gate" / "gate.json").read_text())
    assert res["adapter"] == "r4-lr0.001" and res["adapter_selection"] == "r4-lr0.001"


def test_forgetting_check(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - forgetting: arithmetic\n    max_drop: 0.15\n")
    assert main(["gate", str(sweeps["forgetting"]), "--config", cfg]) == 1
    cfg2 = _cfg(tmp_path, "checks:\n  - forgetting: general_knowledge\n    max_drop: 0.15\n"
                          "  - forgetting: overall\n    max_drop: 0.5\n")
    assert main(["gate", str(sweeps["forgetting"]), "--config", cfg2]) == 0


def test_uncalibrated_judge_refused(sweeps, tmp_path):
    cfg = _cfg(tmp_path, "checks:\n  - judge: pointwise\n    min: 1.0\n")
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg]) == 0
    assert main(["gate", str(sweeps["unreliable"]), "--config", cfg]) == 1
    res = json.loads((sweeps["unreliable"] / "gate" / "gate.json").read_text())
    assert res["checks"][0]["reason"].startswith("judge not calibrated: cannot gate on it")
    root = ET.parse(sweeps["unreliable"] / "gate" / "junit.xml").getroot()
    assert "judge not calibrated" in root.find(".//failure").get("message")
    # min_kappa overrides the judge's own verdict on reliability
    cfg2 = _cfg(tmp_path, "checks:\n  - judge: pointwise\n    min: 1.0\n    min_kappa: 0.2\n")
    assert main(["gate", str(sweeps["unreliable"]), "--config", cfg2]) == 0


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
    ("checks:\n  - forgetting: all\n", 2, "checks[0]"),
    ("checks:\n  - judge: pointwise\n    min: 5\n    vs: base\n", 2, "checks[0]"),
    ("checks:\n  - metric: no_such_metric\n    min: 0.5\n", 2, "checks[0].metric"),
    ("checks:\n  - forgetting: no_such_family\n    max_drop: 0.1\n", 2, "checks[0].forgetting"),
    ("checks:\n  - metric: json_valid\n    min: [1\n", 4, None),
])
def test_bad_gate_yaml_names_file_line_key(sweeps, tmp_path, capsys, text, line, key):
    cfg = _cfg(tmp_path, text)
    assert main(["gate", str(sweeps["clear_win"]), "--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{cfg}:{line}:" in err, err
    if key:
        assert f" {key}: " in err, err


def test_run_gate_with_composed_dict(sweeps, capsys):
    """`harness sweep` passes the composed Hydra `gate` group (a dict) and expects an exit code."""
    import yaml

    from harness.gate import run_gate
    from harness.io import UserError

    cfg = yaml.safe_load(Path(DEFAULT).read_text())
    assert run_gate(sweeps["clear_win"], cfg, quiet=True) == 0
    assert run_gate(sweeps["prompting"], yaml.safe_load(Path(STRICT).read_text()), quiet=True) == 1
    with pytest.raises(UserError, match=r"config gate .*checks\[0\]\.min: expected a number"):
        run_gate(sweeps["clear_win"], {"checks": [{"metric": "json_valid", "min": "x"}]})
