"""Issue #22 item 9: a run name from someone else's sweep.json is text everywhere the gate writes it: no rich
markup error (exit 1 reads as "a check failed" in CI), no control character reaching the terminal or making
junit.xml invalid XML, no raw HTML in gate.md."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from hostile_kit import copy_sweep, pristine_sweep, run_cli


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def _gate_with_name(pristine, tmp_path, name: str):
    sweep = copy_sweep(pristine, tmp_path / "s")
    doc = json.loads((sweep / "sweep.json").read_text())
    doc["runs"][0]["name"] = name
    (sweep / "sweep.json").write_text(json.dumps(doc))
    return sweep, run_cli("gate", str(sweep))


def test_markup_in_a_run_name_is_text(pristine, tmp_path):
    _, r = _gate_with_name(pristine, tmp_path, "r8[/x]")
    assert "Traceback" not in r.stderr and r.returncode in (0, 1, 3), r.stderr
    assert "MarkupError" not in r.stderr and "r8[/x]" in r.stdout


def test_control_characters_in_a_run_name_are_escaped(pristine, tmp_path):
    sweep, r = _gate_with_name(pristine, tmp_path, "r8\x1b[2J\x07evil\x00")
    assert "Traceback" not in r.stderr and r.returncode in (0, 1, 3), r.stderr
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout and "\\x1b[2J" in r.stdout
    ET.parse(sweep / "gate" / "junit.xml")  # valid XML
    assert "\x1b" not in (sweep / "gate" / "gate.md").read_text()


def test_html_in_a_run_name_is_not_markup_in_gate_md(pristine, tmp_path):
    sweep, r = _gate_with_name(pristine, tmp_path, "<img src=x onerror=alert(1)>")
    assert "Traceback" not in r.stderr and r.returncode in (0, 1, 3), r.stderr
    md = (sweep / "gate" / "gate.md").read_text()
    assert "<img" not in md and "&lt;img" in md
