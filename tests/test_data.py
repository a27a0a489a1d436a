"""The data doctor: every error class with its exact line, formats, dedupe/leakage, prepare, CLI, fuzz, demo data."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.data import Problem, load_examples, read_examples
from harness.doctor import check_files, prepare, token_lengths
from harness.io import UserError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "evalsets" / "demo"


def msgs(user: str, target: str, system: str | None = None) -> dict:
    m = [{"role": "user", "content": user}, {"role": "assistant", "content": target}]
    if system:
        m.insert(0, {"role": "system", "content": system})
    return {"messages": m}


def write_lines(path: Path, lines: list) -> Path:
    """Lines may be dicts (dumped as JSON), str (written raw) or bytes (written raw)."""
    with open(path, "wb") as fh:
        for ln in lines:
            if isinstance(ln, dict):
                ln = json.dumps(ln)
            if isinstance(ln, str):
                ln = ln.encode("utf-8")
            fh.write(ln + b"\n")
    return path


def problems_at(problems, severity=None):
    return {(p.line, p.severity) for p in problems if severity is None or p.severity == severity}


def one_problem(tmp_path, bad_line, *, good=2):
    """File: `good` valid lines, then the bad line; returns the problems."""
    lines = [msgs(f"valid question number {i} about apples", f"answer {i}") for i in range(good)] + [bad_line]
    _, probs = read_examples(write_lines(tmp_path / "t.jsonl", lines))
    return probs


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad,needle", [
    ("{bad json", "bad JSON"),
    ('{"messages": [{"role": "user", "content": "hi"}', "bad JSON"),  # truncated
    ("[1, 2, 3]", "expected a JSON object"),
    ('"just a string"', "expected a JSON object"),
    ({"foo": "bar"}, "unrecognized record"),
    ({"messages": []}, "empty field 'messages'"),
    ({"messages": "hello"}, "must be an array"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "missing field 'content'"),
    ({"messages": [{"content": "q"}, {"role": "assistant", "content": "x"}]}, "missing field 'role'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}, "empty"),
    ({"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "x"}]}, "unknown role 'bot'"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}, "non-string"),
    ({"messages": [{"role": "user", "content": ["a"]}, {"role": "assistant", "content": "x"}]}, "non-string"),
    ({"messages": [{"role": "assistant", "content": "q"}, {"role": "user", "content": "x"}]}, "wrong role order"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "x"}]}, "wrong role order"),
    ({"messages": [{"role": "user", "content": "q"}]}, "last message must be 'assistant'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "x"}]}, "wrong role order"),
    ({"messages": ["q", "a"]}, "must be an object"),
])
def test_error_classes_exact_line(tmp_path, bad, needle):
    probs = one_problem(tmp_path, bad)
    errors = [p for p in probs if p.severity == "error"]
    assert len(errors) == 1, probs
    assert errors[0].line == 3 and needle in errors[0].message, errors[0]
    assert str(errors[0]).startswith(f"{tmp_path / 't.jsonl'}:3: error: ")


def test_invalid_utf8_blank_lines_and_line_numbers(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [msgs("first question here", "a1"), "", "   ",
                                              b'{"messages": "\xff\xfe"}', msgs("second question here", "a2"),
                                              '{"prompt": "x", '])
    exs, probs = read_examples(path)
    assert [e.line for e in exs] == [1, 5]
    assert problems_at(probs) == {(4, "error"), (6, "error")}
    assert "invalid UTF-8" in next(p.message for p in probs if p.line == 4)


@pytest.mark.parametrize("rec,needle", [
    ({"instruction": "do it"}, "missing field 'output'"),
    ({"instruction": "", "output": "x"}, "empty field 'instruction'"),
    ({"instruction": "do", "output": 3}, "must be a string"),
    ({"prompt": "p"}, "missing field 'completion'"),
    ({"conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]}, "unknown role 'robot'"),
    ({"conversations": [{"from": "gpt", "value": "q"}, {"from": "human", "value": "a"}]}, "wrong role order"),
])
def test_error_classes_other_formats(tmp_path, rec, needle):
    _, probs = read_examples(write_lines(tmp_path / "t.jsonl", [msgs("q one", "a"), rec]))
    errs = [p for p in probs if p.severity == "error"]
    assert len(errs) == 1 and errs[0].line == 2 and needle in errs[0].message, probs


def test_mixed_formats_warning(tmp_path):
    lines = [{"instruction": f"task {i} do something", "output": f"done {i}"} for i in range(4)]
    lines.insert(2, {"prompt": "other format", "completion": "yes"})
    exs, probs = read_examples(write_lines(tmp_path / "t.jsonl", lines))
    assert len(exs) == 5
    assert [(p.line, p.severity) for p in probs] == [(3, "warning")]
    assert "mixed formats" in probs[0].message and "alpaca" in probs[0].message
    rep = check_files(tmp_path / "t.jsonl")
    assert rep.files[0].format == "alpaca" and rep.exit_code == 0


def test_too_long_is_error_with_line(tmp_path, tiny_spec):
    from harness.models import load_tokenizer

    tok = load_tokenizer(tiny_spec)
    long_text = " ".join(f"word{i}" for i in range(400))
    path = write_lines(tmp_path / "t.jsonl", [msgs("short one", "a"), msgs(long_text, "b"), msgs("short two", "c")])
    rep = check_files(path, tokenizer=tok, max_length=128)
    errs = rep.errors
    assert len(errs) == 1 and errs[0].line == 2 and "longer than the model's max length 128" in errs[0].message
    f = rep.files[0]
    assert f.too_long == 1 and f.tokens["max"] > 128 and f.tokens["p50"] < 128


def test_token_lengths_match_prompt_formatter(tiny_spec):
    """The batched fast path counts exactly what harness.prompts.tokenize_for_training produces."""
    from harness.models import load_tokenizer
    from harness.prompts import count_tokens

    tok = load_tokenizer(tiny_spec)
    exs = load_examples(DEMO / "val.jsonl")
    kw = dict(system_prompt="Sys with <|im_end|> inside {x}", prompt_template="Ticket: {prompt}")
    assert token_lengths(tok, exs, **kw, batch_size=7) == count_tokens(tok, exs, max_length=10**6, **kw)


# ------------------------------------------------------------------------------------------------ formats
def test_formats_detected_and_converted(tmp_path):
    cases = {
        "messages": msgs("hello there", "general kenobi", system="be brief"),
        "sharegpt": {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hello there"},
                                       {"from": "gpt", "value": "general kenobi"}]},
        "alpaca": {"instruction": "hello", "input": "there", "output": "general kenobi", "system": "be brief"},
        "prompt_completion": {"prompt": "hello there", "completion": "general kenobi"},
    }
    for fmt, rec in cases.items():
        rec = dict(rec, id=f"x-{fmt}", knowledge=True)
        path = write_lines(tmp_path / f"{fmt}.jsonl", [rec, rec | {"id": 7}])
        exs, probs = read_examples(path)
        assert not [p for p in probs if p.severity == "error"], probs
        rep = check_files(path)
        assert rep.files[0].format == fmt
        ex = exs[0]
        assert ex.id == f"x-{fmt}" and exs[1].id == "7"
        assert ex.meta.get("knowledge") is True and "id" not in ex.meta
        assert ex.target == "general kenobi" and ex.messages[-1]["role"] == "assistant"
        assert ex.user_text in ("hello there", "hello\n\nthere")
        if fmt in ("messages", "sharegpt"):
            assert ex.system == "be brief"
        assert ex.source == str(path) and ex.line == 1


def test_id_fallback_is_stable_hash(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [msgs("q", "a") | {"id": None}, msgs("q", "a") | {"id": True}])
    exs, _ = read_examples(path)
    assert exs[0].id == exs[1].id and len(exs[0].id) == 16


def test_missing_file_is_problem_not_exception(tmp_path):
    exs, probs = read_examples(tmp_path / "nope.jsonl")
    assert exs == [] and probs[0].severity == "error" and "not found" in probs[0].message
    exs, probs = read_examples(tmp_path)
    assert exs == [] and "directory" in probs[0].message


def test_load_examples_raises_user_error(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [msgs("q", "a"), "{oops"])
    with pytest.raises(UserError) as ei:
        load_examples(path)
    assert str(ei.value).startswith(f"{path}:2: error: bad JSON") and ei.value.exit_code == 2
    assert "\n" not in str(ei.value)  # one line on stderr
    assert len(load_examples(write_lines(tmp_path / "ok.jsonl", [msgs("q", "a")]))) == 1
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"empty\.jsonl:1: error: no examples"):
        load_examples(tmp_path / "empty.jsonl")


def test_empty_file_or_no_usable_examples_fails_data_check(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    rep = check_files(empty)
    assert rep.exit_code == 1 and "no usable examples (the file is empty)" in str(rep.errors[0])
    junk = write_lines(tmp_path / "junk.jsonl", ["{oops", '{"text": "no known format"}'])
    rep = check_files(junk)
    assert rep.files[0].examples == 0 and any("every record has an error" in p.message for p in rep.errors)


def test_duplicate_ids_in_an_eval_set_are_errors_in_train_warnings(tmp_path):
    rows = [{"id": "a", **msgs("q1", "x")}, {"id": "b", **msgs("q2", "y")}, {"id": "a", **msgs("q3", "z")}]
    path = write_lines(tmp_path / "ev.jsonl", rows + [msgs("same", "s"), msgs("same", "s")])
    train = write_lines(tmp_path / "tr.jsonl", [msgs(f"train question {i}", "t") for i in range(3)])
    rep = check_files(train, path)
    errs = [str(p) for p in rep.errors]
    assert any(e.startswith(f"{path}:3: error: duplicate sample id 'a' (first at line 1)") for e in errs), errs
    assert any(e.startswith(f"{path}:5: error: duplicate sample id") for e in errs), errs
    rep = check_files(path)  # as a training file, a repeated id is only a warning
    assert not rep.errors and any("duplicate id 'a'" in p.message for p in rep.warnings)


def test_problem_str():
    assert str(Problem("f.jsonl", 3, "warning", "hi")) == "f.jsonl:3: warning: hi"


# ------------------------------------------------------------------------------------------------ dedupe
BASE = "the quick brown fox jumps over the lazy dog near the old river bank every single morning before work"


def test_exact_and_near_duplicates(tmp_path):
    lines = [
        msgs(BASE, "A"),                                     # 1
        msgs("a completely different sentence about spreadsheets and invoices for the tax office today", "B"),
        msgs("  The QUICK brown fox jumps over the lazy dog near the old river bank every single morning before work ",
             "A"),                                           # 3: exact after normalization
        msgs(BASE.replace("work", "lunch"), "A"),            # 4: near (one word changed)
        msgs(BASE, "Z"),                                     # 5: near (other target)
    ]
    path = write_lines(tmp_path / "t.jsonl", lines)
    rep = check_files(path)
    assert rep.exit_code == 0  # duplicates are warnings
    w = {p.line: p.message for p in rep.warnings}
    assert w[3] == "exact duplicate of line 1"
    assert w[4].startswith("near-duplicate of line 1")
    assert 2 not in w and 1 not in w
    f = rep.files[0]
    assert f.exact_dups == 1 and f.near_dups >= 1
    strict = check_files(path, near_dup_threshold=1.0)
    assert strict.files[0].near_dups == 0 and strict.files[0].exact_dups == 1


def test_leakage_eval_vs_train(tmp_path):
    train = write_lines(tmp_path / "train.jsonl", [
        msgs(BASE, "A"),
        msgs("my invoice from march shows the wrong amount and the tax rate is missing entirely", "B"),
        msgs("totally unrelated text about gardening tomatoes in a small greenhouse during spring", "C"),
    ])
    ev = write_lines(tmp_path / "eval.jsonl", [
        msgs(BASE, "A"),                                                                       # exact leak of 1
        msgs("my invoice from march shows the wrong amount and the tax rate is missing entirely!!", "B"),  # leak of 2
        msgs("a fresh eval question about bicycles and their gears on steep mountain roads", "D"),
    ])
    rep = check_files(train, ev)
    leaks = {p.line: p.message for p in rep.warnings if p.file == str(ev)}
    assert set(leaks) == {1, 2}
    assert f"{train}:1" in leaks[1] and "exact" in leaks[1]
    assert f"{train}:2" in leaks[2]
    assert rep.files[1].leaked == 2 and rep.exit_code == 0


# ------------------------------------------------------------------------------------------------ prepare
def _prepare_inputs(tmp_path):
    rng = random.Random(1)
    vocab = [f"tok{i}" for i in range(3000)]
    uniq = [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(50)]
    lines = [msgs(u, json.dumps({"k": i})) | {"id": f"t{i}"} for i, u in enumerate(uniq)]
    lines.insert(10, msgs(uniq[3], json.dumps({"k": 3})) | {"id": "dup-exact"})           # line 11
    lines.insert(20, msgs(uniq[5] + " extra", json.dumps({"k": 5})) | {"id": "dup-near"})  # line 21
    train = write_lines(tmp_path / "train.jsonl", lines)
    ev = write_lines(tmp_path / "eval.jsonl", [msgs(uniq[7], json.dumps({"k": 7})) | {"id": "e-leak"},
                                               msgs("brand new eval item about rivers and lakes", "{}") | {"id": "e2"}])
    return train, ev


def test_prepare_outputs_and_report(tmp_path):
    train, ev = _prepare_inputs(tmp_path)
    out = tmp_path / "out"
    rep = prepare(train, ev, out=out, val_fraction=0.1, test_fraction=0.1, seed=0)
    reasons = {d["id"]: d["reason"] for d in rep.dropped}
    assert reasons == {"dup-exact": "exact_duplicate", "dup-near": "near_duplicate", "t7": "leakage"}
    n = 52 - 3
    sizes = {k: sum(1 for _ in open(out / f"{k}.jsonl")) for k in ("train", "val", "test", "eval")}
    assert sizes == {"train": n - 5 - 5, "val": 5, "test": 5, "eval": 2}
    recs = [json.loads(l) for l in open(out / "train.jsonl")]
    assert all(set(r) >= {"id", "messages"} for r in recs)
    ids = [r["id"] for k in ("train", "val", "test") for r in map(json.loads, open(out / f"{k}.jsonl"))]
    assert len(set(ids)) == n and not {"dup-exact", "dup-near", "t7"} & set(ids)
    assert [json.loads(l)["id"] for l in open(out / "eval.jsonl")] == ["e-leak", "e2"]  # eval kept intact
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["counts"]["dropped"] == 3 and report["counts"]["dropped_leakage"] == 1
    assert report["outputs"]["val"]["n"] == 5 and "eval set is kept intact" in report["policy"]
    # Prepared output passes check with no leakage and no duplicates.
    again = check_files(out / "train.jsonl", out / "eval.jsonl")
    assert again.ok and not again.warnings


def test_prepare_deterministic_with_seed(tmp_path):
    train, ev = _prepare_inputs(tmp_path)
    a = prepare(train, ev, out=tmp_path / "a", seed=3)
    b = prepare(train, ev, out=tmp_path / "b", seed=3)
    c = prepare(train, ev, out=tmp_path / "c", seed=4)
    assert a.outputs["val"]["sha256"] == b.outputs["val"]["sha256"]
    assert a.outputs["train"]["sha256"] == b.outputs["train"]["sha256"]
    assert a.outputs["val"]["sha256"] != c.outputs["val"]["sha256"]


def test_prepare_refuses_errors_unless_drop_invalid(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [msgs(f"question {i} " * 5, f"a{i}") for i in range(10)] + ["{bad"])
    with pytest.raises(UserError) as ei:
        prepare(path, out=tmp_path / "o")
    assert ei.value.exit_code == 1 and ":11: error" in str(ei.value)
    rep = prepare(path, out=tmp_path / "o", drop_invalid=True, val_fraction=0.2)
    assert rep.counts["dropped_invalid"] == 1 and rep.outputs["val"]["n"] == 2 and rep.outputs["train"]["n"] == 8
    with pytest.raises(UserError):
        prepare(path, out=tmp_path / "o", val_fraction=0.7, test_fraction=0.5)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_exit_codes(tmp_path, capsys):
    good = write_lines(tmp_path / "good.jsonl", [msgs(f"distinct question number {i} about topic {i * 7}", "a")
                                                 for i in range(5)])
    warn = write_lines(tmp_path / "warn.jsonl", [msgs("same question text here", "a")] * 2)
    bad = write_lines(tmp_path / "bad.jsonl", [msgs("q", "a"), "{nope"])
    assert cli(["data", "check", str(good), "--model", "none"]) == 0
    assert cli(["data", "check", str(warn), "--model", "none"]) == 0
    assert cli(["data", "check", str(bad), "--model", "none"]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2: error: bad JSON" in out
    assert cli(["data", "check", str(tmp_path / "missing.jsonl"), "--model", "none"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert cli(["data", "check", str(good), "--eval", str(tmp_path / "missing.jsonl"), "--model", "none"]) == 2
    assert cli(["data", "check", str(good), "--bogus-flag"]) == 2
    assert cli(["data", "frobnicate"]) == 2
    assert cli(["data", "check", str(good), "--model", "no_such_model"]) == 2
    assert cli(["data", "check", str(good), "--model", "none", "--near-dup-threshold", "1.5"]) == 2
    assert cli(["data", "--help"]) == 0
    js = tmp_path / "r.json"
    assert cli(["data", "check", str(bad), "--model", "none", "--json", str(js)]) == 1
    assert json.loads(js.read_text())["errors"] == 1
    out_dir = tmp_path / "prep"
    assert cli(["data", "prepare", str(warn), "--out", str(out_dir), "--val-fraction", "0"]) == 0
    assert "dropped 1 exact duplicates" in capsys.readouterr().out.replace("\n", " ")
    assert cli(["data", "prepare", str(bad), "--out", str(out_dir)]) == 1
    assert cli(["data", "check", str(good), "--model", "tiny_random", "--max-length", "8"]) == 1


def test_cli_subprocess(tmp_path):
    bad = write_lines(tmp_path / "bad.jsonl", [msgs("q", "a"), b"\x00\xff garbage"])
    r = subprocess.run([sys.executable, "-m", "harness.cli", "data", "check", str(bad), "--model", "none"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"{bad}:2: error: invalid UTF-8" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


# ------------------------------------------------------------------------------------------------ fuzz
def _fuzz_lines(rng: random.Random) -> list[bytes]:
    valid = json.dumps(msgs("a normal question " + str(rng.random()), '{"a": 1}')).encode()
    kind = rng.randrange(7)
    if kind == 0:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))]
    if kind == 1:
        return [valid[: rng.randrange(1, len(valid))]]
    if kind == 2:
        s = "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFF), rng.randrange(0xE000, 0x10FFFF)]))
                    for _ in range(rng.randrange(1, 80)))
        return [json.dumps({"messages": [{"role": "user", "content": s}, {"role": "assistant", "content": s}]},
                           ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")]
    if kind == 3:
        b = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return [bytes(b)]
    if kind == 4:
        return [b"[" * rng.randrange(1, 5000) + b"]" * rng.randrange(0, 5000)]
    if kind == 5:
        vals = [None, 1, 1.5, True, "", "x", [], {}, [1], {"a": 1}, "\ud800"]
        rec = {rng.choice(["messages", "conversations", "instruction", "input", "output", "prompt", "completion",
                           "id", "role"]): rng.choice(vals) for _ in range(rng.randrange(1, 4))}
        return [json.dumps(rec).encode()]
    return [valid, b"", b"\r", b"\xef\xbb\xbf" + valid]


def test_fuzz_never_crashes(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "fuzz.jsonl"
    for case in range(300):
        lines = [ln for _ in range(rng.randrange(1, 4)) for ln in _fuzz_lines(rng)]
        path.write_bytes(b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b""))
        exs, probs = read_examples(path)
        assert all(isinstance(p, Problem) and p.line >= 1 for p in probs), case
        rep = check_files(path, path)
        assert rep.exit_code in (0, 1)
    # A huge line (over the per-line limit) is reported and skipped without being parsed.
    import harness.data as hd

    old = hd.MAX_LINE_BYTES
    hd.MAX_LINE_BYTES = 1000
    try:
        path.write_bytes(json.dumps(msgs("x" * 5000, "a")).encode() + b"\n" + json.dumps(msgs("ok", "a")).encode())
        exs, probs = read_examples(path)
        assert [e.line for e in exs] == [2] and probs[0].line == 1 and "too long" in probs[0].message
    finally:
        hd.MAX_LINE_BYTES = old


def test_cli_fuzz_no_traceback(tmp_path, capsys):
    rng = random.Random(7)
    path = tmp_path / "f.jsonl"
    for _ in range(20):
        path.write_bytes(b"\n".join(ln for _ in range(3) for ln in _fuzz_lines(rng)))
        assert cli(["data", "check", str(path), "--model", "none"]) in (0, 1)
        assert cli(["data", "prepare", str(path), "--out", str(tmp_path / "o"), "--drop-invalid"]) in (0, 1)


# ------------------------------------------------------------------------------------------------ demo data
def test_demo_data_is_clean():
    rep = check_files(DEMO / "train.jsonl", DEMO / "eval.jsonl")
    assert rep.ok and not rep.warnings, [str(p) for p in rep.problems[:5]]
    for a, b in (("train", "val"), ("val", "eval")):
        r = check_files(DEMO / f"{a}.jsonl", DEMO / f"{b}.jsonl")
        assert r.ok and not r.warnings, [str(p) for p in r.problems[:5]]
    counts = {s: len(load_examples(DEMO / f"{s}.jsonl")) for s in ("train", "val", "eval")}
    assert counts == {"train": 256, "val": 24, "eval": 60}


def test_demo_data_content_and_schema():
    import jsonschema
    import yaml

    schema = json.loads((DEMO / "schema.json").read_text())
    task = yaml.safe_load((DEMO / "task.yaml").read_text())
    assert task["primary_metric"] == "all_fields_correct" and task["knowledge_field"] == "knowledge"
    assert "Reply with JSON only" in task["system_prompt"] and 0 < task["target"] <= 1
    for v in schema["properties"].values():
        for allowed in v["enum"]:
            assert allowed in task["system_prompt"]
    ev = load_examples(DEMO / "eval.jsonl")
    train = load_examples(DEMO / "train.jsonl")
    assert not any(e.meta.get("knowledge") for e in ev)  # the README demo is a pure form task
    for e in train + ev:
        assert e.system is None and 6 <= len(e.user_text.split()) <= 30
        jsonschema.validate(json.loads(e.target), schema)


def test_demo_knowledge_variant_names_codenames_the_training_data_teaches(tmp_path):
    """`generate.py --knowledge 15 --codename 6`: the wrong-tool variant (facts, not form)."""
    r = subprocess.run([sys.executable, str(DEMO / "generate.py"), "--out", str(tmp_path), "--knowledge", "15",
                        "--codename", "6"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_generate", DEMO / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    ev = load_examples(tmp_path / "eval.jsonl")
    train = load_examples(tmp_path / "train.jsonl")
    assert sum(bool(e.meta.get("knowledge")) for e in ev) == 15
    train_text = " ".join(e.user_text for e in train).lower()
    for e in ev:
        if e.meta.get("knowledge"):
            name = gen.CODENAMES[json.loads(e.target)["product"]].lower()
            assert name in e.user_text.lower() and train_text.count(name) >= 6
    rep = check_files(tmp_path / "train.jsonl", tmp_path / "eval.jsonl")
    assert rep.ok and not rep.warnings, [str(p) for p in rep.problems[:5]]


def test_demo_generator_is_deterministic(tmp_path):
    r = subprocess.run([sys.executable, str(DEMO / "generate.py"), "--out", str(tmp_path)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("train.jsonl", "val.jsonl", "eval.jsonl", "schema.json"):
        assert (tmp_path / name).read_bytes() == (DEMO / name).read_bytes(), name
