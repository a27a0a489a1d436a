"""task.yaml loading/validation, the `harness tasks` command, and the few-shot leak guard."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.backends.base import GenParams
from harness.example import Example
from harness.io import UserError
from harness.tasks import build_few_shot, list_task_files, load_task

P = pytest.param


def _chat(user: str, assistant: str, **meta) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], **meta}


def write_task(root: Path, name: str = "t", *, overrides: dict | None = None, drop: tuple = (), n: int = 6,
               raw_text: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "eval"):
        rows = [_chat(f"{split} question {i}", json.dumps({"a": i, "b": "x"}), knowledge=(i % 2 == 0))
                for i in range(n)]
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "schema.json").write_text(json.dumps({"type": "object", "required": ["a"]}))
    cfg = {
        "name": name, "version": 2, "description": "test task",
        "data": {"train": "train.jsonl", "val": "val.jsonl", "eval": "eval.jsonl"},
        "system_prompt": "Answer in JSON.", "prompt_template": "Q: {prompt}",
        "generation": {"max_new_tokens": 32, "temperature": 0.0},
        "json_schema": "schema.json",
        "metrics": [{"name": "json_valid"}, {"name": "schema_valid"}, {"name": "field_accuracy", "fields": ["a", "b"]},
                    {"name": "all_fields_correct"}],
        "primary_metric": "field_accuracy",
        "few_shot": {"k": 2, "seed": 0},
        "knowledge_field": "knowledge",
    }
    cfg.update(overrides or {})
    for k in drop:
        cfg.pop(k, None)
    (d / "task.yaml").write_text(raw_text if raw_text is not None else yaml.safe_dump(cfg, sort_keys=False))
    return d / "task.yaml"


def test_load_task_ok(tmp_path):
    p = write_task(tmp_path)
    t = load_task(p)
    assert t.name == "t" and t.version == "2"
    assert t.data["eval"] == (tmp_path / "t" / "eval.jsonl").resolve()
    assert t.gen == GenParams(max_new_tokens=32)
    assert t.json_schema == {"type": "object", "required": ["a"]}
    assert t.metric_names() == ["json_valid", "code_fence", "trailing_text", "schema_valid", "field_accuracy",
                                "field_accuracy.a", "field_accuracy.b", "all_fields_correct"]
    ev = t.load_split("eval")
    assert len(ev) == 6 and ev[0].target == '{"a": 0, "b": "x"}'
    assert t.is_knowledge(ev[0]) and not t.is_knowledge(ev[1])
    assert (t.few_shot_k, t.few_shot_seed) == (2, 0)


def test_load_task_by_name_and_folder(tmp_path):
    write_task(tmp_path, "mytask")
    assert load_task("mytask", search_dirs=[tmp_path]).name == "mytask"
    assert load_task(tmp_path / "mytask").name == "mytask"
    assert [p.parent.name for p in list_task_files([tmp_path])] == ["mytask"]


def test_unknown_task_lists_known(tmp_path):
    write_task(tmp_path, "alpha")
    with pytest.raises(UserError, match=r"unknown task 'beta'.*known: alpha"):
        load_task("beta", search_dirs=[tmp_path])


def test_missing_yaml_path():
    with pytest.raises(UserError, match="task file not found"):
        load_task("/nonexistent/task.yaml")


def test_optional_splits_and_defaults(tmp_path):
    p = write_task(tmp_path, overrides={"data": {"eval": "eval.jsonl"}}, drop=("few_shot", "generation", "version",
                                                                               "prompt_template", "knowledge_field"))
    t = load_task(p)
    assert t.load_split("train") == [] and not t.has_split("val")
    assert t.prompt_template == "{prompt}" and t.few_shot_k == 3 and t.version == "0"
    assert t.knowledge_field == "knowledge"


def test_metric_shorthand_string(tmp_path):
    p = write_task(tmp_path, overrides={"metrics": ["exact_match"], "primary_metric": "exact_match"})
    assert load_task(p).metrics == [{"name": "exact_match"}]


@pytest.mark.parametrize(
    "overrides,drop,pattern",
    [
        P({"metrics": [{"name": "json_valid"}, {"name": "exact_match"}, {"name": "foo"}]}, (),
          r"t/task.yaml:\d+: metrics\[2\]\.name: unknown metric 'foo' \(known: all_fields_correct", id="unknown-metric"),
        P({"bogus": 1}, (), r"task.yaml:\d+: bogus: unknown key", id="unknown-top-key"),
        P({}, ("metrics",), r"task.yaml:1: metrics: required key missing", id="missing-metrics"),
        P({}, ("name",), r"name: required key missing", id="missing-name"),
        P({"data": {"eval": "nope.jsonl"}}, (), r"data\.eval: file not found: .*nope.jsonl", id="missing-data-file"),
        P({"data": {"train": "train.jsonl"}}, (), r"data\.eval: required", id="no-eval-split"),
        P({"data": {"eval": "eval.jsonl", "test": "x"}}, (), r"data\.test: unknown split", id="unknown-split"),
        P({"generation": {"max_tokens": 5}}, (), r"generation\.max_tokens: unknown generation setting", id="bad-gen-key"),
        P({"generation": {"max_new_tokens": 0}}, (), r"generation\.max_new_tokens: must be a positive", id="bad-gen-val"),
        P({"primary_metric": "rouge_l"}, (), r"primary_metric: 'rouge_l' is not produced", id="primary-not-produced"),
        P({"metrics": [{"name": "exact_match", "colour": 1}], "primary_metric": "exact_match"}, (),
          r"metrics\[0\]\.colour: unknown option", id="unknown-metric-option"),
        P({"metrics": [{"name": "regex_match", "pattern": "("}], "primary_metric": "regex_match"}, (),
          r"metrics\[0\]\.pattern: invalid regular expression", id="bad-regex"),
        P({"metrics": [{"name": "exact_match"}, {"name": "exact_match"}], "primary_metric": "exact_match"}, (),
          r"metrics\[1\]: produces 'exact_match' twice", id="duplicate-metric"),
        P({"json_schema": "missing.json"}, (), r"json_schema: file not found", id="missing-schema"),
        P({"json_schema": {"type": "nonsense"}}, (), r"json_schema: not a valid JSON Schema", id="invalid-schema"),
        P({"metrics": [{"name": "schema_valid"}], "primary_metric": "schema_valid"}, ("json_schema",),
          r"schema_valid needs a json_schema", id="schema-metric-without-schema"),
        P({"prompt_template": "no placeholder"}, (), r"prompt_template: must contain the \{prompt\}", id="template"),
        P({"few_shot": {"k": -1}}, (), r"few_shot\.k: must be an integer >= 0", id="few-shot-k"),
        P({"metrics": "exact_match"}, (), r"metrics: must be a list", id="metrics-not-list"),
    ],
)
def test_malformed_task(tmp_path, overrides, drop, pattern):
    p = write_task(tmp_path, overrides=overrides, drop=drop)
    with pytest.raises(UserError, match=pattern):
        load_task(p)


def test_error_points_at_line(tmp_path):
    text = ("name: t\nversion: 1\ndata:\n  eval: eval.jsonl\nmetrics:\n  - name: exact_match\n  - name: nope\n"
            "primary_metric: exact_match\n")
    p = write_task(tmp_path, raw_text=text)
    with pytest.raises(UserError, match=r"t/task.yaml:7: metrics\[1\]\.name: unknown metric 'nope'"):
        load_task(p)


def test_invalid_yaml(tmp_path):
    p = write_task(tmp_path, raw_text="name: [unclosed\n")
    with pytest.raises(UserError, match=r"task.yaml:\d+: invalid YAML"):
        load_task(p)


def test_bad_data_line(tmp_path):
    p = write_task(tmp_path)
    (p.parent / "eval.jsonl").write_text('{"messages": [{"role": "user", "content": "x"}, '
                                         '{"role": "assistant", "content": "y"}]}\nnot json\n')
    with pytest.raises(UserError, match=r"eval.jsonl:2: error: bad JSON") as ei:
        load_task(p).load_split("eval")
    assert ei.value.exit_code == 2 and "\n" not in str(ei.value)


def test_empty_split_and_duplicate_eval_ids_are_errors(tmp_path):
    p = write_task(tmp_path)
    row = '{"id": "%s", "messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "y"}]}\n'
    (p.parent / "eval.jsonl").write_text(row % ("a", "q1") + row % ("b", "q2") + row % ("a", "q3"))
    with pytest.raises(UserError, match=r"eval.jsonl:3: duplicate sample id 'a' in the eval split \(first at line 1"):
        load_task(p).load_split("eval")
    (p.parent / "eval.jsonl").write_text("")
    with pytest.raises(UserError, match=r"eval.jsonl:1: error: no examples"):
        load_task(p).load_split("eval")


@pytest.mark.parametrize("name", ["../escape", "a/b", "x=y", ""])
def test_unsafe_task_names_are_refused_with_file_and_line(tmp_path, name):
    p = write_task(tmp_path, overrides={"name": name})
    with pytest.raises(UserError, match=r"task.yaml:1: name"):
        load_task(p)


# ----------------------------------------------------------------------------- few-shot


def _ex(user: str, target: str = "t", id: str = "") -> Example:
    return Example(({"role": "user", "content": user}, {"role": "assistant", "content": target}), id=id)


def test_few_shot_never_uses_eval_items():
    evals = [_ex(f"q{i}") for i in range(5)]
    # train holds: exact copies of eval items (same id), same text different id, case/space variants, and clean items
    train = list(evals) + [_ex("q1", id="other-id"), _ex("  Q2 ", id="x2"), _ex("q3", target="different", id="x3")]
    train += [_ex(f"clean {i}") for i in range(4)]
    for seed in range(20):
        shots = build_few_shot(train, evals, k=4, seed=seed)
        assert len(shots) == 4
        assert all(s.user_text.startswith("clean") for s in shots)


def test_few_shot_deterministic_and_order_independent():
    train = [_ex(f"item {i}") for i in range(20)]
    a = build_few_shot(train, [], k=3, seed=7)
    b = build_few_shot(list(reversed(train)), [], k=3, seed=7)
    assert [x.id for x in a] == [x.id for x in b]
    assert [x.id for x in build_few_shot(train, [], k=3, seed=8)] != [x.id for x in a]


def test_few_shot_small_pool_and_k0():
    train = [_ex("a"), _ex("b"), _ex("b", id="dup"), _ex("c", target="")]
    assert len(build_few_shot(train, [], k=10, seed=0)) == 2  # duplicate text and target-less item skipped
    assert build_few_shot(train, [], k=0, seed=0) == []


# ----------------------------------------------------------------------------- CLI


def test_cli_validate(tmp_path, capsys):
    from harness.cli import main

    p = write_task(tmp_path)
    assert main(["tasks", "--validate", str(p)]) == 0
    assert "train=6" in capsys.readouterr().out
    bad = write_task(tmp_path, "bad", overrides={"metrics": [{"name": "foo"}]})
    assert main(["tasks", "--validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad/task.yaml" in err and "metrics[0].name" in err and "Traceback" not in err


def test_cli_list_reports_broken(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    write_task(tmp_path / "evalsets", "good")
    write_task(tmp_path / "evalsets", "broken", overrides={"primary_metric": "nope"})
    monkeypatch.setattr("harness.tasks.default_search_dirs", lambda: [tmp_path / "evalsets"])
    assert main(["tasks"]) == 2
    cap = capsys.readouterr()
    assert "good" in cap.out and "broken/task.yaml" in cap.err and "primary_metric" in cap.err


def test_cli_metrics_list(capsys):
    from harness.cli import main

    assert main(["tasks", "--metrics"]) == 0
    assert "field_accuracy" in capsys.readouterr().out
