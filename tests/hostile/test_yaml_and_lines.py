"""Issue #22 item 5 and the line cap of item 11: YAML aliases ("billion laughs") are refused with FILE:LINE before
anything expands them, in the one YAML reader (gate configs, a foreign config.yaml, task.yaml); a JSONL line
longer than the cap is refused by FILE:LINE, never read whole into memory."""
from __future__ import annotations

import json

import pytest

from hostile_kit import assert_one_line_error, copy_sweep, only_run, pristine_sweep, run_cli


def laughs(levels: int = 5, width: int = 9) -> str:
    """Nested aliases: `levels` levels of `width` references each (width**levels nodes once expanded). Small
    enough that a reader without the refusal still finishes: the test fails on the message, not on a crash."""
    lines = ["a0: &a0 [lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def test_gate_config_with_aliases_is_refused(pristine, tmp_path):
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text(laughs())
    r = run_cli("gate", str(pristine), "--config", str(cfg), "--quiet")
    assert_one_line_error(r.returncode, r.stderr, f"{cfg}:2:", "aliases")


def test_foreign_config_yaml_with_aliases_is_refused(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    p = only_run(sweep) / "config.yaml"
    p.write_text(p.read_text() + "x_" + laughs().replace("\na", "\nx_a"))
    r = run_cli("eval", str(sweep), "--no-progress")
    assert_one_line_error(r.returncode, r.stderr, "config.yaml:", "aliases")


def test_task_yaml_with_aliases_is_refused(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("name: t\nversion: 1\n" + laughs())
    r = run_cli("tasks", "--validate", str(task))
    assert "Traceback" not in r.stderr and r.returncode != 0
    # the task reader names the file relative to the working directory when that is shorter
    assert f"{task.parent.name}/task.yaml:4:" in r.stdout + r.stderr and "aliases" in r.stdout + r.stderr


def test_overlong_scores_line_is_refused_by_file_and_line(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "s")
    scores = sweep / "scores" / "scores.jsonl"
    rows = scores.read_text().splitlines()
    big = json.loads(rows[1])
    big["output"] = "x" * (33 << 20)
    rows[1] = json.dumps(big)
    scores.write_text("\n".join(rows) + "\n")
    r = run_cli("report", str(sweep))
    assert_one_line_error(r.returncode, r.stderr, f"{scores}:2:", "longer than")
