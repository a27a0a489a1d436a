"""evaluate(): rows and summary per the sweep contract, one batched generate call, resumability,
few-shot prompts, knowledge split; end to end with the real hf backend, tiny model and adapters."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from harness.backends.base import Completion
from harness.evaluate import evaluate
from harness.io import UserError, read_json, read_jsonl
from harness.tasks import load_task

from test_tasks import write_task  # noqa: E402  (tests dir is on sys.path under pytest)

ROW_KEYS = {"model", "split", "sample_id", "family", "knowledge", "prompt", "output", "reference", "metrics", "details"}


class FakeBackend:
    """Deterministic: 'base' answers correctly on even items, adapters per a rule; probes get fixed answers."""

    name = "fake"

    def __init__(self, keys=("base", "good", "bad"), idents=None):
        self.keys = list(keys)
        self.idents = dict(idents or {})
        self.calls: list[list] = []

    def model_keys(self):
        return list(self.keys)

    def model_identity(self, key):
        return self.idents.get(key, f"id-{key}")

    def generate(self, requests, progress=None):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            user = r.message_dicts()[-1]["content"]
            m = re.fullmatch(r"Q: (?:eval|train|val) question (\d+)", user)
            if m:
                i = int(m.group(1))
                right = json.dumps({"a": i, "b": "x"})
                if r.model_key == "good":
                    text = f"```json\n{right}\n```"
                elif r.model_key == "bad":
                    text = "no idea"
                else:
                    text = right if i % 2 == 0 else json.dumps({"a": -1, "b": "x"})
            else:  # probe
                text = "I am not sure." if r.model_key == "bad" else "PARIS, 12, hello"
            out.append(Completion(text=text, completion_tokens=5, finish_reason="stop"))
        if progress:
            progress(len(requests))
        return out

    def close(self):
        pass


@pytest.fixture()
def probe_file(tmp_path):
    items = [
        {"id": "g1", "family": "general", "messages": [{"role": "user", "content": "Capital of France?"}],
         "check": {"type": "contains_any", "answers": ["Paris"]}, "reference": "Paris"},
        {"id": "a1", "family": "arithmetic", "messages": [{"role": "user", "content": "7+5?"}],
         "check": {"type": "numeric", "answer": 12}},
        {"id": "i1", "family": "ifeval", "messages": [{"role": "user", "content": "Answer in lowercase."}],
         "check": {"type": "lowercase"}},
    ]
    p = tmp_path / "probes.jsonl"
    p.write_text("".join(json.dumps(i) + "\n" for i in items))
    return p


@pytest.fixture()
def task(tmp_path):
    return load_task(write_task(tmp_path / "evalsets"))


def test_evaluate_rows_and_summary(tmp_path, task, probe_file):
    be = FakeBackend()
    out = tmp_path / "scores"
    s = evaluate(out, task, be, {"good": Path("/a/good"), "bad": None}, probes=probe_file, progress=False)
    assert len(be.calls) == 1  # every model, task and probes: one batched call
    rows = list(read_jsonl(out / "scores.jsonl"))
    assert all(set(r) >= ROW_KEYS for r in rows)
    by = lambda m, sp: [r for r in rows if r["model"] == m and r["split"] == sp]  # noqa: E731
    assert [len(by(m, "task")) for m in ("base", "fewshot", "good", "bad")] == [6, 6, 6, 6]
    assert [len(by(m, "probe")) for m in ("base", "fewshot", "good", "bad")] == [3, 0, 3, 3]
    assert {r["family"] for r in by("base", "probe")} == {"general", "arithmetic", "ifeval"}
    assert all(r["family"] is None for r in by("base", "task"))
    assert [r["knowledge"] for r in by("base", "task")] == [True, False] * 3

    ms = s["models"]
    assert ms["base"]["kind"] == "baseline" and ms["fewshot"]["kind"] == "baseline" and ms["good"]["kind"] == "adapter"
    assert ms["good"]["metrics"]["field_accuracy"] == 1.0 and ms["good"]["metrics"]["code_fence"] == 1.0
    assert ms["good"]["metrics"]["json_valid"] == 1.0
    assert ms["bad"]["metrics"]["json_valid"] == 0.0 and ms["bad"]["metrics"]["field_accuracy"] == 0.0
    assert ms["base"]["metrics"]["field_accuracy"] == pytest.approx(0.75)
    # base is right on even items, which are exactly the knowledge-flagged ones
    assert ms["base"]["knowledge"] == {"form": 0.5, "knowledge": 1.0, "n_form": 3, "n_knowledge": 3}
    assert ms["base"]["probes"] == {"arithmetic": 1.0, "general": 1.0, "ifeval": 0.0, "all": pytest.approx(2 / 3)}
    assert ms["bad"]["probes"]["all"] == 0.0 and ms["fewshot"]["probes"] == {}
    assert ms["good"]["adapter_path"] == "/a/good"
    disk = read_json(out / "summary.json")
    assert disk["task"] == "t" and disk["task_version"] == "2" and disk["primary_metric"] == "field_accuracy"
    assert disk["inputs_hash"] == s["inputs_hash"] and disk["models"].keys() == ms.keys()
    bad_row = by("bad", "task")[0]
    assert bad_row["details"]["json_valid"].startswith("invalid JSON")


def test_fewshot_prompt_uses_train_only(tmp_path, task, probe_file):
    be = FakeBackend()
    evaluate(tmp_path / "s", task, be, {}, probes=probe_file, progress=False)
    rows = list(read_jsonl(tmp_path / "s" / "scores.jsonl"))
    fs = [r for r in rows if r["model"] == "fewshot"]
    base = [r for r in rows if r["model"] == "base" and r["split"] == "task"]
    p = fs[0]["prompt"]
    assert p[0] == {"role": "system", "content": "Answer in JSON."}
    users = [m["content"] for m in p if m["role"] == "user"]
    assert len(users) == 3 and all(u.startswith("Q: train question") for u in users[:2])  # k=2 from the task
    assert users[-1] == "Q: eval question 0"
    assert len(base[0]["prompt"]) == 2  # zero-shot: system + user
    reqs = be.calls[0]
    assert {r.model_key for r in reqs} == {"base"}  # few-shot runs on the base model


def test_rerun_is_skipped_and_inputs_change_recomputes(tmp_path, task, probe_file):
    out = tmp_path / "s"
    be = FakeBackend()
    s1 = evaluate(out, task, be, {"good": None}, probes=probe_file, progress=False)
    assert s1["skipped"] is False
    mtime = (out / "scores.jsonl").stat().st_mtime_ns
    built = []

    def factory():
        built.append(1)
        return FakeBackend()

    s2 = evaluate(out, task, factory, {"good": None}, probes=probe_file, progress=False,
                  identities={"base": "id-base", "good": "id-good"})
    assert s2["skipped"] is True and built == [] and (out / "scores.jsonl").stat().st_mtime_ns == mtime
    assert s2["inputs_hash"] == s1["inputs_hash"]
    # a retrained adapter (new identity) -> recomputed
    s3 = evaluate(out, task, FakeBackend(idents={"good": "id-good-v2"}), {"good": None}, probes=probe_file, progress=False)
    assert s3["skipped"] is False and s3["inputs_hash"] != s1["inputs_hash"]
    # different few-shot k and max_eval -> recomputed
    s4 = evaluate(out, task, FakeBackend(), {"good": None}, probes=probe_file, few_shot_k=0, max_eval=2, progress=False)
    assert s4["skipped"] is False and "fewshot" not in s4["models"] and s4["models"]["base"]["n"] == 2
    # force
    assert evaluate(out, task, FakeBackend(), {"good": None}, probes=probe_file, few_shot_k=0, max_eval=2,
                    progress=False, force=True)["skipped"] is False


def test_no_probes_and_unknown_adapter(tmp_path, task):
    s = evaluate(tmp_path / "s", task, FakeBackend(), {}, probes=None, progress=False)
    assert s["n_probes"] == 0 and s["models"]["base"]["probes"] == {}
    with pytest.raises(UserError, match="does not serve model"):
        evaluate(tmp_path / "s2", task, FakeBackend(keys=("base",)), {"ghost": None}, probes=None, progress=False,
                 identities={"base": "b", "ghost": "g"})
    with pytest.raises(UserError, match="reserved"):
        evaluate(tmp_path / "s3", task, FakeBackend(), {"fewshot": None}, probes=None, progress=False)


def test_default_probe_set_runs(tmp_path, task):
    from harness.probes import load_probes

    items = load_probes("default")
    s = evaluate(tmp_path / "s", task, FakeBackend(), {}, probes="default", progress=False)
    assert s["n_probes"] == len(items) >= 40
    assert set(s["models"]["base"]["probes"]) == {i["family"] for i in items} | {"all"}


# ----------------------------------------------------------------------------- end to end: hf backend, tiny model


def _make_run(root: Path, run_id: str, adapter_src: Path, task_yaml: Path, status: str = "complete") -> Path:
    from conftest import TINY_CFG

    rd = root / "runs" / run_id
    rd.mkdir(parents=True)
    shutil.copytree(adapter_src, rd / "adapter")
    cfg = {"model": dict(TINY_CFG), "task": {"name": "t", "path": str(task_yaml)}, "lora": {"r": 4},
           "train": {"epochs": 1}, "backend": {"kind": "hf", "batch_size": 8, "device": "cpu"},
           "eval": {"few_shot_k": 2, "few_shot_seed": 0, "probes": "default", "max_eval": None}}
    (rd / "config.yaml").write_text(yaml.safe_dump(cfg))
    (rd / "status.json").write_text(json.dumps({"status": status, "error": None}))
    (rd / "manifest.json").write_text(json.dumps({"run_id": run_id}))
    return rd


def test_end_to_end_hf_tiny(tmp_path, tiny_adapters, probe_file, capsys):
    pytest.importorskip("harness.backends.hf")
    from harness.cli import main

    task_yaml = write_task(tmp_path / "evalsets", n=4, overrides={"generation": {"max_new_tokens": 8}})
    sweep = tmp_path / "sweep"
    runs = [_make_run(sweep, "a1", tiny_adapters["a1"], task_yaml), _make_run(sweep, "a2", tiny_adapters["a2"], task_yaml),
            _make_run(sweep, "broken", tiny_adapters["zero"], task_yaml, status="failed")]
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "task": "t", "runs": [
        {"run_id": r.name, "run_dir": f"runs/{r.name}", "status": "complete" if r.name != "broken" else "failed"}
        for r in runs]}))
    argv = ["eval", str(sweep), f"eval.probes={probe_file}", "--no-progress"]
    assert main(argv) == 0
    rows = list(read_jsonl(sweep / "scores" / "scores.jsonl"))
    summary = read_json(sweep / "scores" / "summary.json")
    assert set(summary["models"]) == {"base", "fewshot", "a1", "a2"}
    assert len(rows) == 4 * 4 + 3 * 3
    assert all(set(r) >= ROW_KEYS for r in rows)
    for m in summary["models"].values():
        assert m["n"] == 4 and all(v is None or 0 <= v <= 1 for v in m["metrics"].values())
    # random adapters change the tiny model's outputs
    outs = {m: [r["output"] for r in rows if r["model"] == m and r["split"] == "task"] for m in ("base", "a1", "a2")}
    assert outs["a1"] != outs["base"] or outs["a2"] != outs["base"]
    assert "skipping 1 incomplete" in capsys.readouterr().err
    # re-run: instant, no backend built (the spy sits where the evaluation path builds backends)
    import harness.backends as hb

    called = []
    orig = hb.make_backend
    hb.make_backend = lambda *a, **k: called.append(1) or orig(*a, **k)
    try:
        assert main(argv) == 0
        assert called == [] and "skipped" in capsys.readouterr().out
        assert main(argv + ["--force"]) == 0  # forced: re-scored from the generation cache, still no model load
        assert called == [] and "written" in capsys.readouterr().out
    finally:
        hb.make_backend = orig


def test_eval_run_dir(tmp_path, probe_file, tiny_adapters, monkeypatch, capsys):
    """A single run dir: config.yaml drives task/model/backend; overrides apply; output in <run>/scores."""
    import harness.backends as hb
    from harness.cli import main

    task_yaml = write_task(tmp_path / "evalsets", n=4, overrides={"generation": {"max_new_tokens": 4}})
    rd = _make_run(tmp_path, "a1", tiny_adapters["a1"], task_yaml)
    seen = {}
    orig = hb.make_backend

    def spy(cfg, spec):
        seen["cfg"], seen["adapters"] = dict(cfg), dict(spec.adapters)
        return orig(cfg, spec)

    monkeypatch.setattr(hb, "make_backend", spy)
    assert main(["eval", str(rd), f"eval.probes={probe_file}", "eval.max_eval=2", "eval.few_shot_k=0",
                 "backend.batch_size=3", "--no-progress"]) == 0
    s = read_json(rd / "scores" / "summary.json")
    assert set(s["models"]) == {"base", "a1"} and s["models"]["a1"]["n"] == 2 and s["n_probes"] == 3
    assert seen["cfg"]["batch_size"] == 3 and seen["adapters"] == {"a1": rd / "adapter"}
    assert "field_accuracy" in capsys.readouterr().out


def test_eval_cli_errors(tmp_path, capsys):
    from harness.cli import main

    assert main(["eval", str(tmp_path)]) == 2
    assert "neither a sweep dir" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("model: {}\ntask: {name: t}\n")
    (tmp_path / "status.json").write_text('{"status": "running"}')
    assert main(["eval", str(tmp_path)]) == 2
    assert "not complete" in capsys.readouterr().err
