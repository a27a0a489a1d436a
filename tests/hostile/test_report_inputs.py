"""Issue #22 items 10, 11 (report side): `harness report` and `harness gate` on a sweep directory from someone else.
Run paths come from targets.sweep_runs (inside the sweep only), every decision setting in sweep.json is checked
before the statistics use it, a NaN in a score row is a missing value, and a list-valued hyperparameter is
written into the reproduce command."""
from __future__ import annotations

import json
import re

import pytest

from hostile_kit import assert_one_line_error, copy_sweep, pristine_sweep, run_cli


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


def _edit_sweep_json(sweep, fn):
    p = sweep / "sweep.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))


def test_report_never_reads_a_run_dir_outside_the_sweep(pristine, tmp_path):
    sweep = copy_sweep(pristine, tmp_path / "s")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.yaml").write_text("secret: OUTSIDE-SECRET-1234\n")
    (outside / "metrics.json").write_text(json.dumps({"best_val_loss": 0.1}))

    def plant(meta):
        meta["runs"][0]["run_dir"] = "../elsewhere"
    _edit_sweep_json(sweep, plant)
    r = run_cli("report", str(sweep))
    assert_one_line_error(r.returncode, r.stderr, "sweep.json", "runs[0].run_dir", "outside the sweep directory")
    for f in (sweep / "report").rglob("*"):
        assert not f.is_file() or b"OUTSIDE-SECRET-1234" not in f.read_bytes(), f


@pytest.mark.parametrize("key,value,needle", [
    ("alpha", "x", "expected a number"),
    ("alpha", 1.5, "(0, 1)"),
    ("margin", -0.1, "(0, 1)"),
    ("max_bleed", 2, "[0, 1)"),
    ("n_boot", 1e9, "expected an integer"),          # a float: 1e9 resamples would allocate hundreds of GiB
    ("n_boot", 10**9, "from 100 to 100000"),
    ("min_items", 0, "from 1 to"),
    ("min_items", True, "expected an integer"),
    ("seed", -1, "from 0 to"),
    ("select_by", ["val_loss"], "expected a short text"),
])
@pytest.mark.parametrize("command", ["report", "gate"])
def test_decision_settings_from_sweep_json_are_checked(pristine, tmp_path, key, value, needle, command):
    sweep = copy_sweep(pristine, tmp_path / "s")

    def plant(meta):
        meta.setdefault("decision", {})[key] = value
    _edit_sweep_json(sweep, plant)
    r = run_cli(command, str(sweep), timeout=120)
    assert_one_line_error(r.returncode, r.stderr, f"sweep.json: decision: {key}: ", needle)


def test_the_sweeps_own_settings_still_pass(pristine, tmp_path):
    """The control: the unplanted sweep reports (its decision section holds every conf/decision default)."""
    sweep = copy_sweep(pristine, tmp_path / "s")
    assert json.loads((sweep / "sweep.json").read_text())["decision"]
    r = run_cli("report", str(sweep))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_metric_in_a_score_row_is_a_missing_value(pristine, tmp_path, bad):
    """json.loads accepts NaN and Infinity: the review page's data (json.dumps allow_nan=False) must hold neither."""
    sweep = copy_sweep(pristine, tmp_path / "s")
    p = sweep / "scores" / "scores.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    hit = 0
    for row in rows:
        if row.get("model") not in ("base", "fewshot") and row.get("split") == "task":
            for m in row.get("metrics") or {}:
                row["metrics"][m] = bad
                hit += 1
            break
    assert hit
    p.write_text("".join(json.dumps(row) + "\n" for row in rows))  # json.dumps writes NaN
    assert json.dumps(bad) in p.read_text()
    r = run_cli("report", str(sweep))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (sweep / "report" / "review.html").is_file()
    verdict = (sweep / "report" / "verdict.json").read_text()
    assert "NaN" not in verdict and "Infinity" not in verdict


def test_reproduce_command_of_a_run_with_a_list_valued_hyperparameter(pristine, tmp_path):
    """A run without recorded overrides whose hparams hold a list: the report writes `key=[...]`, no traceback."""
    sweep = copy_sweep(pristine, tmp_path / "s")

    def plant(meta):
        for r in meta["runs"]:
            r.pop("overrides", None)
            r["hparams"] = {**(r.get("hparams") or {}), "lora.target_modules": ["q_proj", "v_proj"]}
        meta.pop("overrides", None)
    _edit_sweep_json(sweep, plant)
    r = run_cli("report", str(sweep))
    assert r.returncode == 0, r.stderr
    assert 'lora.target_modules=["q_proj","v_proj"]' in (sweep / "report" / "report.md").read_text()


def test_report_md_carries_no_raw_html_from_names_or_configs(pristine, tmp_path):
    """A run name and a run's config.yaml are someone else's text: in report.md `<`, `>`, `&` outside code are
    entities and a config holding ``` cannot close its fenced block."""
    sweep = copy_sweep(pristine, tmp_path / "s")
    name = "r8<img src=x onerror=alert(1)>&amp;"

    def plant(meta):
        meta["runs"][0]["name"] = name
    _edit_sweep_json(sweep, plant)
    (run,) = [p for p in (sweep / "runs").iterdir() if p.is_dir()]
    with open(run / "config.yaml", "a") as fh:
        fh.write("# ```\n# <script>alert(2)</script>\n")
    r = run_cli("report", str(sweep))
    assert r.returncode == 0, r.stderr
    md = (sweep / "report" / "report.md").read_text()
    assert "r8&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in md
    outside_code, fence = [], None
    for line in md.splitlines():  # the lines Markdown reads as text (fenced blocks are literal)
        if line.startswith("```"):
            run_ = line[:len(line) - len(line.lstrip("`"))]
            fence = run_ if fence is None else (None if line.strip() == fence else fence)
        elif fence is None:
            outside_code.append(line)
    text = re.sub(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)", "", "\n".join(outside_code))  # code spans are literal
    assert "<img" not in text and "<script" not in text, text
    assert "# <script>alert(2)</script>" in md  # still shown, inside the fence


def test_every_decision_setting_has_a_rule():
    """A field added to analysis.Settings without a rule in report.load.SETTING_RULES would reach the statistics
    unchecked from a foreign sweep.json (or fail with a KeyError): add its rule there."""
    import dataclasses

    from harness.analysis import Settings
    from harness.report.load import SETTING_RULES

    assert set(SETTING_RULES) == {f.name for f in dataclasses.fields(Settings)}
