"""Issue #22 item 3: a directory from someone else never makes us write through a symbolic link, ship the
target of one in an export, or read runs outside the sweep directory."""
from __future__ import annotations

import json

import pytest

from hostile_kit import assert_one_line_error, copy_sweep, only_run, pristine_sweep, run_cli

PRECIOUS = "precious content that must not change\n"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


@pytest.fixture()
def victim(tmp_path):
    p = tmp_path / "victim.txt"
    p.write_text(PRECIOUS)
    return p


def test_generation_cache_symlink_is_never_appended_to(pristine, tmp_path, victim):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    (sweep / "scores" / "summary.json").unlink()  # something must be generated
    (sweep / "scores" / "generations.jsonl").unlink()
    (sweep / "scores" / "generations.jsonl").symlink_to(victim)
    r = run_cli("eval", str(sweep), "--no-progress")
    assert_one_line_error(r.returncode, r.stderr, "generations.jsonl", "symbolic link")
    assert victim.read_text() == PRECIOUS


def test_scores_file_symlink_is_refused_not_replaced(pristine, tmp_path, victim):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    link = sweep / "scores" / "summary.json"
    link.unlink()
    link.symlink_to(victim)
    r = run_cli("eval", str(sweep), "--no-progress", "--force")
    assert_one_line_error(r.returncode, r.stderr, "summary.json", "symbolic link")
    assert victim.read_text() == PRECIOUS and link.is_symlink()


def test_export_never_ships_the_target_of_a_symlink(pristine, tmp_path, victim):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    run = only_run(sweep)
    (run / "adapter" / "notes.txt").symlink_to(victim)
    out = tmp_path / "export"
    r = run_cli("export", str(run), "--format", "adapter", "--out", str(out))
    assert_one_line_error(r.returncode, r.stderr, "notes.txt", "symbolic link")
    shipped = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p != victim
               and "foreign" not in p.parts]
    assert not any(PRECIOUS in p.read_text(errors="replace") for p in shipped)


def test_run_dir_outside_the_sweep_is_refused(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "foreign")
    outside = tmp_path / "elsewhere"
    only_run(sweep).rename(outside)
    doc = json.loads((sweep / "sweep.json").read_text())
    doc["runs"][0]["run_dir"] = "../elsewhere"
    (sweep / "sweep.json").write_text(json.dumps(doc))
    r = run_cli("eval", str(sweep), "--no-progress", "--force")
    assert_one_line_error(r.returncode, r.stderr, "sweep.json", "run_dir", "outside the sweep directory")
