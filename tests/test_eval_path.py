"""The one evaluation path (evaluate_models): backend errors are errors, val-split selection rows, adapters
that did not learn, cached re-scores without a model load, the trust policy on foreign directories, and
the released model for `gate --against`. Real tiny model (hf backend) and a real OpenAI-compatible HTTP
server on 127.0.0.1 that fails some requests the way servers do (context overflow)."""
from __future__ import annotations

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from harness.evaluate import RELEASED, evaluate_models, score_released
from harness.io import UserError, read_json, read_jsonl, write_json
from harness.tasks import load_task

from conftest import TINY_CFG
from test_tasks import write_task

HF = {"kind": "hf", "batch_size": 8, "device": "cpu"}


# ----------------------------------------------------------------------------- a real local server


class TaskServer:
    """OpenAI-compatible chat server: answers "Q: eval question i" with the right JSON; items listed in
    `fail` get HTTP 400 "maximum context length exceeded" (as vLLM / llama.cpp servers answer)."""

    def __init__(self):
        self.fail: set[str] = set()
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, obj: dict):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "srv", "object": "model", "owned_by": "test"}]})

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = req["messages"][-1]["content"]
                outer.requests.append(user)
                if any(f in user for f in outer.fail):
                    return self._send(400, {"error": {"message": "This model's maximum context length is 16 tokens",
                                                      "type": "invalid_request_error", "code": 400}})
                m = re.search(r"question (\d+)", user)
                text = json.dumps({"a": int(m.group(1)), "b": "x"}) if m else "ok"
                self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture()
def server():
    s = TaskServer()
    yield s
    s.stop()


def _openai_cfg(server: TaskServer) -> dict:
    return {"kind": "openai", "base_url": server.url, "api_key_env": "", "model_names": {"base": "srv"},
            "concurrency": 2, "timeout_s": 10, "max_retries": 0}


def test_backend_errors_are_errors_and_rerun_regenerates_only_them(tmp_path, server):
    task = load_task(write_task(tmp_path / "evalsets", n=4))
    server.fail = {"eval question 1"}
    out = tmp_path / "scores"
    ecfg = {"probes": None, "few_shot_k": 2}
    s = evaluate_models(out, task, {"name": "srv", "path": "srv"}, _openai_cfg(server), {}, eval_cfg=ecfg, quiet=True)
    rows = list(read_jsonl(out / "scores.jsonl"))
    failed = [r for r in rows if r["error"]]
    bad_id = next(e.id for e in task.load_split("eval") if e.prompt_messages[-1]["content"] == "eval question 1")
    assert {(r["model"], r["sample_id"]) for r in failed} == {("base", bad_id), ("fewshot", bad_id)}
    for r in failed:
        assert "maximum context length" in r["error"] and r["output"] == "" and r["finish_reason"] == "error"
        assert r["metrics"] and all(v is None for v in r["metrics"].values())  # never 0
    for name in ("base", "fewshot"):
        m = s["models"][name]
        assert m["errors"] == 1 and m["error_ids"] == [bad_id] and m["n"] == 4
        assert m["metrics"]["field_accuracy"] == 1.0  # the 3 answered items are right; the error is not a wrong answer
        assert m["gen"]["error_rate"] == 0.25
    assert s["errors"] == 2
    # a re-run never reuses a summary with errors: only the failed requests go to the server again
    server.fail, n_before = set(), len(server.requests)
    s2 = evaluate_models(out, task, {"name": "srv", "path": "srv"}, _openai_cfg(server), {}, eval_cfg=ecfg, quiet=True)
    assert s2["skipped"] is False and s2["errors"] == 0
    assert len(server.requests) - n_before == 2 and all("eval question 1" in u for u in server.requests[n_before:])
    assert s2["models"]["base"]["error_ids"] == [] and s2["models"]["base"]["metrics"]["all_fields_correct"] == 1.0
    # now complete: the third run is skipped without a request
    n_before = len(server.requests)
    assert evaluate_models(out, task, {"name": "srv", "path": "srv"}, _openai_cfg(server), {}, eval_cfg=ecfg,
                           quiet=True)["skipped"] is True
    assert len(server.requests) == n_before


# ----------------------------------------------------------------------------- tiny model, hf backend


@pytest.fixture()
def tiny_task(tmp_path):
    return load_task(write_task(tmp_path / "evalsets", n=3, overrides={"generation": {"max_new_tokens": 6}}))


def _run_dir(root: Path, name: str, adapter: Path, *, improved: bool | None = True) -> Path:
    rd = root / "runs" / name
    rd.mkdir(parents=True)
    shutil.copytree(adapter, rd / "adapter")
    if improved is not None:
        write_json(rd / "metrics.json", {"best_val_loss": 1.0, "improved": improved})
    return rd


def test_not_learned_reported_val_rows_and_cached_rescore(tmp_path, tiny_task, tiny_adapters, monkeypatch):
    sweep = tmp_path / "sweep"
    adapters = {"a1": _run_dir(sweep, "a1", tiny_adapters["a1"]) / "adapter",
                "zero": _run_dir(sweep, "zero", tiny_adapters["zero"]) / "adapter",
                # random (non-zero) weights, but the run says validation never improved: the saved adapter is untrained
                "flat": _run_dir(sweep, "flat", tiny_adapters["a2"], improved=False) / "adapter"}
    ecfg = {"probes": None, "few_shot_k": 0, "select_by": "field_accuracy"}
    out = sweep / "scores"
    s = evaluate_models(out, tiny_task, TINY_CFG, HF, adapters, eval_cfg=ecfg, quiet=True)
    assert s["not_learned"] == ["flat", "zero"]
    assert "improved=false" in s["not_learned_reasons"]["flat"]
    assert "LoRA B weight is zero" in s["not_learned_reasons"]["zero"]
    assert set(s["models"]) == {"base", "a1"}
    rows = list(read_jsonl(out / "scores.jsonl"))
    assert {r["model"] for r in rows} == {"base", "a1"}
    val = [r for r in rows if r["split"] == "val"]
    n_val = len(tiny_task.load_split("val"))
    assert len(val) == n_val and {r["model"] for r in val} == {"a1"}  # adapters only, never the baselines
    assert {r["sample_id"] for r in val} == {e.id for e in tiny_task.load_split("val")}
    assert not {r["sample_id"] for r in val} & {e.id for e in tiny_task.load_split("eval")}
    assert s["models"]["a1"]["val"]["n"] == n_val and "field_accuracy" in s["models"]["a1"]["val"]["metrics"]
    assert "val" not in s["models"]["base"] and s["select_by"] == "field_accuracy" and s["n_val"] == n_val
    assert (out / "generations.jsonl").is_file()  # the cache lives in the scores dir
    assert read_json(out / "summary.json")["not_learned"] == ["flat", "zero"]

    # a forced re-score is served from the cache: no backend is built, same rows
    import harness.backends as hb

    built = []
    orig = hb.make_backend
    monkeypatch.setattr(hb, "make_backend", lambda *a, **k: built.append(1) or orig(*a, **k))
    s2 = evaluate_models(out, tiny_task, TINY_CFG, HF, adapters, eval_cfg=ecfg, quiet=True, force=True)
    assert built == [] and s2["skipped"] is False and s2["cache"]["misses"] == 0
    rows2 = list(read_jsonl(out / "scores.jsonl"))
    assert [(r["model"], r["split"], r["sample_id"], r["output"]) for r in rows2] == \
           [(r["model"], r["split"], r["sample_id"], r["output"]) for r in rows]


def test_select_by_errors(tmp_path, tiny_task, tiny_adapters):
    with pytest.raises(UserError, match="select_by.*nope.*neither val_loss nor a metric"):
        evaluate_models(tmp_path / "s", tiny_task, TINY_CFG, HF, {"a1": tiny_adapters["a1"]},
                        eval_cfg={"probes": None, "select_by": "nope"}, quiet=True)
    no_val = load_task(write_task(tmp_path / "ev2", overrides={"data": {"train": "train.jsonl", "eval": "eval.jsonl"}}))
    with pytest.raises(UserError, match="needs a val split"):
        evaluate_models(tmp_path / "s2", no_val, TINY_CFG, HF, {"a1": tiny_adapters["a1"]},
                        eval_cfg={"probes": None, "select_by": "field_accuracy"}, quiet=True)
    # val_loss (the default) adds no rows and needs no val split
    s = evaluate_models(tmp_path / "s3", no_val, TINY_CFG, HF, {}, eval_cfg={"probes": None, "few_shot_k": 0,
                                                                            "max_eval": 1}, quiet=True)
    assert s["n_val"] == 0 and s["select_by"] == "val_loss"


def _sweep_with_runs(root: Path, tiny_adapters, task_yaml: Path) -> tuple[Path, dict]:
    sweep = root / "sweep"
    cfg = {"model": dict(TINY_CFG), "task": {"name": "t", "path": str(task_yaml)}, "backend": dict(HF),
           "eval": {"few_shot_k": 0, "probes": None, "max_eval": 2}}
    runs = []
    for name in ("a1", "a2"):
        rd = _run_dir(sweep, name, tiny_adapters[name])
        (rd / "config.yaml").write_text(yaml.safe_dump(cfg))
        (rd / "status.json").write_text(json.dumps({"status": "complete"}))
        runs.append({"run_id": name, "run_dir": f"runs/{name}", "status": "complete"})
    write_json(sweep / "sweep.json", {"name": "s", "runs": runs})
    return sweep, cfg


def test_score_released_reuses_the_cache(tmp_path, tiny_adapters, monkeypatch):
    task_yaml = write_task(tmp_path / "evalsets", n=3, overrides={"generation": {"max_new_tokens": 6}})
    sweep, cfg = _sweep_with_runs(tmp_path, tiny_adapters, task_yaml)
    from harness.commands.eval import run_eval

    run_eval(cfg, {"a1": sweep / "runs/a1/adapter", "a2": sweep / "runs/a2/adapter"}, sweep / "scores", progress=False)
    # the released model: an exported adapter dir holding a2's weights -> every generation is a cache hit
    exported = tmp_path / "export"
    shutil.copytree(tiny_adapters["a2"], exported)
    import harness.backends as hb

    built = []
    orig = hb.make_backend
    monkeypatch.setattr(hb, "make_backend", lambda *a, **k: built.append(1) or orig(*a, **k))
    score_released(sweep, exported, cfg)
    assert built == []
    s = read_json(sweep / "scores" / "summary.json")
    assert s["models"][RELEASED]["kind"] == "released" and s["released"]["adapter"] == str(exported)
    rows = list(read_jsonl(sweep / "scores" / "scores.jsonl"))
    out = {m: [r["output"] for r in rows if r["model"] == m and r["split"] == "task"] for m in ("a2", RELEASED)}
    assert len(out[RELEASED]) == 2 and out[RELEASED] == out["a2"]
    # a previous sweep as the release: its chosen adapter (a1) is found through report/verdict.json
    prev, _ = _sweep_with_runs(tmp_path / "prev", tiny_adapters, task_yaml)
    write_json(prev / "report" / "verdict.json", {"best": "a1"})
    score_released(sweep, prev, cfg)
    s = read_json(sweep / "scores" / "summary.json")
    assert s["released"]["found"].startswith("adapter a1 chosen in sweep")
    rows = list(read_jsonl(sweep / "scores" / "scores.jsonl"))
    assert [r["output"] for r in rows if r["model"] == RELEASED and r["split"] == "task"] == \
           [r["output"] for r in rows if r["model"] == "a1" and r["split"] == "task"]
    with pytest.raises(UserError, match="neither a sweep dir"):
        score_released(sweep, tmp_path, cfg)


def test_foreign_directory_never_enables_remote_code_or_engine_flags(tmp_path, tiny_adapters, monkeypatch, capsys):
    """A run dir whose config.yaml asks for trust_remote_code and engine flags: eval ignores them and says so;
    given on the command line they are the user's choice."""
    from harness.cli import main

    task_yaml = write_task(tmp_path / "evalsets", n=2, overrides={"generation": {"max_new_tokens": 4}})
    rd = _run_dir(tmp_path, "a1", tiny_adapters["a1"])
    cfg = {"model": {**TINY_CFG, "trust_remote_code": True}, "task": {"name": "t", "path": str(task_yaml)},
           "backend": {**HF, "engine_kwargs": {"enable_lora": True}, "extra_args": ["--evil"]},
           "eval": {"few_shot_k": 0, "probes": None}}
    (rd / "config.yaml").write_text(yaml.safe_dump(cfg))
    (rd / "status.json").write_text(json.dumps({"status": "complete"}))
    import harness.backends as hb

    seen = []
    orig = hb.make_backend
    monkeypatch.setattr(hb, "make_backend", lambda b, spec: seen.append((dict(b), dict(spec.model_cfg))) or orig(b, spec))
    assert main(["eval", str(rd), "--no-progress"]) == 0  # HFBackend would reject engine_kwargs/extra_args
    err = capsys.readouterr().err
    assert "model.trust_remote_code=true; ignored" in err
    backend_note = next(ln for ln in err.splitlines() if "its backend settings" in ln)
    assert "engine_kwargs" in backend_note and "extra_args" in backend_note and "--evil" not in backend_note
    bcfg, mcfg = seen[0]
    assert "engine_kwargs" not in bcfg and "extra_args" not in bcfg and not mcfg.get("trust_remote_code")
    # what the user gives on the command line is the user's choice: no note for it
    assert main(["eval", str(rd), "--no-progress", "model.trust_remote_code=false"]) == 0
    err = capsys.readouterr().err
    assert "trust_remote_code" not in err and "engine_kwargs" in err
