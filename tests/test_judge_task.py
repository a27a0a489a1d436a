"""task.yaml `primary_metric: judge:pairwise | judge:<rubric>` (issue #24): validated like every task key."""
from __future__ import annotations

import pytest

from harness.io import UserError
from harness.tasks import load_task
from test_tasks import write_task  # noqa: E402  (tests dir is on sys.path under pytest)


def test_judge_pairwise_is_a_valid_primary_metric_with_a_win_rate_target(tmp_path):
    t = load_task(write_task(tmp_path, overrides={"primary_metric": "judge:pairwise", "target": 0.6}))
    assert (t.primary_metric, t.target) == ("judge:pairwise", 0.6)


def test_judge_rubric_target_is_on_the_rubric_scale(tmp_path):
    t = load_task(write_task(tmp_path, overrides={"primary_metric": "judge:voice", "target": 4}))
    assert (t.primary_metric, t.target) == ("judge:voice", 4.0)


def test_judge_rubric_target_beyond_its_scale_is_a_file_line_key_error(tmp_path):
    p = write_task(tmp_path, overrides={"primary_metric": "judge:voice", "target": 7})
    with pytest.raises(UserError) as ei:
        load_task(p)
    assert ei.value.exit_code == 2
    msg = str(ei.value)  # the path as the harness prints it (relative to the working directory)
    assert "target: must be a number in [1, 5]" in msg
    where, line = msg.split(": target:")[0].rsplit(":", 1)
    assert where.endswith(p.name) and p.read_text().splitlines()[int(line) - 1].startswith("target:")


def test_unknown_judge_rubric_is_a_file_line_key_error(tmp_path):
    p = write_task(tmp_path, overrides={"primary_metric": "judge:nosuch"})
    with pytest.raises(UserError) as ei:
        load_task(p)
    msg = str(ei.value)
    assert ei.value.exit_code == 2 and "primary_metric:" in msg and "unknown rubric 'nosuch'" in msg
    line = msg.split(":")[1]
    assert line.isdigit() and p.read_text().splitlines()[int(line) - 1].startswith("primary_metric:")
