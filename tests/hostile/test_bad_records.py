"""Issue #22 item 10: damaged or hostile records in a directory are one `error: FILE: ...` line and exit 2,
never a traceback: sweep.json that is not a sweep record, a run entry without run_dir, status.json or
manifest.json that is not an object, a sweep_name that cannot be a directory name."""
from __future__ import annotations

import json

import pytest

from hostile_kit import COMMON, assert_one_line_error, copy_sweep, only_run, pristine_sweep, run_cli


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def test_sweep_json_that_is_a_list(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "s")
    (sweep / "sweep.json").write_text("[]")
    r = run_cli("eval", str(sweep), "--no-progress")
    assert_one_line_error(r.returncode, r.stderr, "sweep.json:1:", "expected a JSON object")


def test_run_entry_without_run_dir(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "s")
    doc = json.loads((sweep / "sweep.json").read_text())
    del doc["runs"][0]["run_dir"]
    (sweep / "sweep.json").write_text(json.dumps(doc))
    r = run_cli("eval", str(sweep), "--no-progress")
    assert_one_line_error(r.returncode, r.stderr, "sweep.json", "runs[0].run_dir: missing")


@pytest.mark.parametrize("name", ["status.json", "manifest.json", "metrics.json"])
def test_run_record_that_is_a_list(pristine, tmp_path, name):
    sweep = copy_sweep(pristine, tmp_path / "s")
    (only_run(sweep) / name).write_text("[]")
    r = run_cli("eval", str(sweep), "--no-progress")
    assert_one_line_error(r.returncode, r.stderr, f"{name}:1:", "expected a JSON object")


@pytest.mark.parametrize("name", ["'a[1]'", "'x(1)y'"])  # quoted: Hydra's grammar takes them as strings
def test_sweep_name_that_cannot_be_a_directory(tmp_path, name):
    r = run_cli("sweep", *COMMON, f"output_root={tmp_path}", f"sweep_name={name}")
    assert_one_line_error(r.returncode, r.stderr, "sweep_name")
    assert not any(tmp_path.iterdir())
