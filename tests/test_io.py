"""harness.io: atomic writes leave either the old file or the new one, with ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from harness.io import atomic_dir, atomic_write_bytes, atomic_write_text, read_json, write_json


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_written_files_and_dirs_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "hello")
        with atomic_dir(tmp_path / "adapter") as d:
            (d / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "report.md") == 0o644
    assert _mode(tmp_path / "adapter") == 0o755


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "text where bytes belong")  # type: ignore[arg-type]  # fails inside the write
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_atomic_dir_keeps_the_previous_dir(tmp_path):
    with atomic_dir(tmp_path / "out") as d:
        (d / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as d:
            (d / "v").write_text("2")
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "out" / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
