"""The judge under faults: deep JSON, failed generations, an endpoint that is down (a real closed port on
127.0.0.1, then a real llama.cpp server killed and restarted), and secrets that must never be written."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from harness import judge as J
from harness.backends.base import BackendError
from harness.io import UserError, read_json, read_jsonl, write_jsonl

from test_judge import ScriptedBackend, _scores_dir, _sweep_judge, blocks, score_json, verdict

DEEP = '{"a": ' + "[" * 5000
SECRET = "sk-judgeTEST0123456789abcdefXYZ"
URL_PW = "pw-judgeTEST-9876"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grep_tree(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# ----------------------------------------------------------------------------- deep nesting

def test_deeply_nested_json_is_an_invalid_verdict_not_a_crash():
    with pytest.raises(J.VerdictError, match="nested too deeply"):
        J.extract_json_object("{" + '"a":' + "[" * 5000 + "]" * 5000 + "}")
    assert J.json_objects_in(DEEP) == [] and J.json_objects_in("{" * 5000) == []
    J.check_not_echo({"score": 5, "reason": "r"}, [DEEP, "[" * 5000, "{" * 5000])  # no RecursionError


def test_deep_output_and_deep_verdict_in_a_sweep(tmp_path):
    """A model output nested 5000 deep is judged like any text; a judge reply nested 5000 deep is a missing
    verdict with its reason, counted in `missing` (never dropped, never a crash)."""
    scores = _scores_dir(tmp_path, n=3)
    rows = list(read_jsonl(scores / "scores.jsonl"))
    for r in rows:
        if r["model"] == "run1" and r["sample_id"] == "s0":
            r["output"] = "GOOD " + DEEP
    write_jsonl(scores / "scores.jsonl", rows)

    def judge(msgs, params):
        b = blocks(msgs[-1]["content"])
        if "CANDIDATE" in b and "[[[[" in b["CANDIDATE"]:
            return '{"score": ' + "[" * 5000 + "]" * 5000 + "}"  # a judge that echoes the nesting
        return _sweep_judge(msgs, params)

    s = J.run_judge(scores, {"rubric": "helpfulness", "retries": 1, "gen": {"logprobs": 0}}, pairs=[("run1", "base")],
                    backend=ScriptedBackend(judge), log=lambda x: None)
    assert s["pointwise"]["run1"] == {"mean": 5.0, "weighted_mean": None, "n": 3, "missing": 1}
    row = next(r for r in read_jsonl(scores / "judge.jsonl") if r.get("model") == "run1" and r["sample_id"] == "s0")
    assert row["missing"] and row["attempts"] == 2 and "nested too deeply" in row["error"]
    pw = s["pairwise"][0]
    assert (pw["wins"], pw["missing"], pw["n"]) == (3, 0, 3)  # the deep output itself was judged in both orders


# ----------------------------------------------------------------------------- failed generations

def test_failed_generations_are_missing_with_a_reason_and_not_asked(tmp_path):
    scores = _scores_dir(tmp_path, n=3)
    rows = list(read_jsonl(scores / "scores.jsonl"))
    for r in rows:
        if r["model"] == "run1" and r["sample_id"] == "s1":
            r.update(output="", error="HTTP 400: context length exceeded", metrics={"exact": None})
    write_jsonl(scores / "scores.jsonl", rows)
    be = ScriptedBackend(_sweep_judge)
    s = J.run_judge(scores, {"rubric": "helpfulness", "gen": {"logprobs": 0}}, pairs=[("run1", "base")], backend=be,
                    log=lambda x: None)
    assert s["status"] == "ok"
    assert s["pointwise"]["run1"] == {"mean": 5.0, "weighted_mean": None, "n": 3, "missing": 1}
    pw = s["pairwise"][0]
    assert (pw["wins"], pw["missing"], pw["n"], pw["win_rate"]) == (2, 1, 3, 1.0)
    asked = {blocks(r.messages[1]["content"]).get("QUESTION") for r in be.requests
             if "CANDIDATE" in blocks(r.messages[1]["content"]) and "run1" in blocks(r.messages[1]["content"])["CANDIDATE"]}
    assert asked == {"question 0?", "question 2?"}
    jl = [r for r in read_jsonl(scores / "judge.jsonl") if r["sample_id"] == "s1" and (r.get("model") == "run1" or r.get("a") == "run1")]
    assert len(jl) == 2 and all(r["missing"] for r in jl)
    assert "context length exceeded" in jl[0]["error"] and "context length exceeded" in jl[1]["order_ab"]["error"]


# ----------------------------------------------------------------------------- endpoint down

class DiesAfter(ScriptedBackend):
    """A judge whose endpoint goes away after `n` requests (BackendError, as a backend that cannot serve)."""

    def __init__(self, fn, n):
        super().__init__(fn)
        self.left = n

    def generate(self, requests, progress=None):
        if self.left < len(requests):
            raise BackendError("http://127.0.0.1:9/v1: connection refused after 3 attempt(s)")
        self.left -= len(requests)
        return super().generate(requests, progress)


def test_endpoint_dies_midway_partial_then_rerun_pays_only_the_rest(tmp_path):
    scores = _scores_dir(tmp_path, n=4)
    cfg = {"rubric": "helpfulness", "chunk_size": 4, "gen": {"logprobs": 0}}
    with pytest.raises(J.JudgeUnavailable) as ei:
        J.run_judge(scores, cfg, pairs=[("run1", "base")], backend=DiesAfter(_sweep_judge, 8), log=lambda x: None)
    assert ei.value.exit_code == 2 and "\n" not in str(ei.value) and "partial" in str(ei.value)
    s = read_json(scores / "judge_summary.json")
    assert s["status"] == "partial" and "connection refused" in s["error"]
    assert s == json.loads(json.dumps(ei.value.summary))
    # 12 pointwise requests, 8 answered: the answered ones are scored, the rest missing; no pair got both orders
    assert sum(p["n"] - p["missing"] for p in s["pointwise"].values()) == 8
    assert sum(p["missing"] for p in s["pointwise"].values()) == 4 and s["pairwise"][0]["missing"] == 4
    assert len(list(read_jsonl(scores / "judge_cache.jsonl"))) == 8
    be = ScriptedBackend(_sweep_judge)
    s2 = J.run_judge(scores, cfg, pairs=[("run1", "base")], backend=be, log=lambda x: None)
    assert s2["status"] == "ok" and s2["error"] is None
    assert s2["cost"]["cached"] == 8 and len(be.requests) == 4 + 8
    assert s2["pointwise"]["run1"] == {"mean": 5.0, "weighted_mean": None, "n": 4, "missing": 0}
    assert s2["pairwise"][0]["wins"] == 4


def openai_judge_cfg(port: int, **backend) -> dict:
    return {"enabled": True, "model": "base", "rubric": "helpfulness", "max_items": 2, "retries": 1,
            "gen": {"max_new_tokens": 8, "logprobs": 0},
            "backend": {"kind": "openai", "base_url": f"http://judge:{URL_PW}@127.0.0.1:{port}/v1", "api_key": SECRET,
                        "max_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "timeout_s": 5,
                        "concurrency": 1, **backend}}


def test_closed_port_is_unavailable_with_one_line_and_no_secret(tmp_path, capsys):
    """judge=openai pointing at a closed port: judge_summary.json says unavailable (why, no secret), every item
    is missing, JudgeUnavailable is a UserError with exit 2; the CLI prints one line and exits 2."""
    scores = _scores_dir(tmp_path, n=2)
    port = closed_port()
    with pytest.raises(J.JudgeUnavailable) as ei:
        J.run_judge(scores, openai_judge_cfg(port), log=print)
    assert isinstance(ei.value, UserError) and ei.value.exit_code == 2
    s = read_json(scores / "judge_summary.json")
    assert s["status"] == "unavailable" and f"127.0.0.1:{port}" in s["error"]
    assert all(p["missing"] == p["n"] == 2 and p["mean"] is None for p in s["pointwise"].values())
    assert all(p["missing"] == p["n"] == 2 for p in s["pairwise"])
    out = capsys.readouterr()
    for text in (str(ei.value), repr(ei.value), out.out, out.err):
        assert SECRET not in text and URL_PW not in text
    assert grep_tree(tmp_path, SECRET) == [] and grep_tree(tmp_path, URL_PW) == []

    from harness.cli import main

    rc = main(["judge", "run", str(scores.parent), "judge=openai", f"judge.backend.base_url=http://127.0.0.1:{port}/v1",
               "judge.model=base", "judge.backend.max_retries=0", "judge.max_items=1", f"++judge.backend.api_key={SECRET}"])
    out = capsys.readouterr()
    assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "unavailable" in out.err
    assert "Traceback" not in out.err + out.out and SECRET not in out.err + out.out
    assert grep_tree(tmp_path, SECRET) == []


# ----------------------------------------------------------------------------- config and secrets

def test_backend_keys_settable_without_plus_and_api_key_never_kept(monkeypatch):
    monkeypatch.delenv("LORA_HARNESS_JUDGE_API_KEY", raising=False)
    cfg = J.load_judge_cfg("openai", ["judge.backend.base_url=http://127.0.0.1:1/v1", "judge.backend.timeout_s=3",
                                      "judge.backend.max_retries=0", "judge.backend.api_key_env=MY_KEY",
                                      f"++judge.backend.api_key={SECRET}"])
    b = cfg["backend"]
    assert (b["kind"], b["base_url"], b["timeout_s"], b["max_retries"]) == ("openai", "http://127.0.0.1:1/v1", 3, 0)
    assert SECRET not in repr(cfg) and "api_key" not in b
    assert b["api_key_env"] == "LORA_HARNESS_JUDGE_API_KEY"  # the literal key lives in this process's env only
    be = J.make_judge_backend({**cfg, "model": "gpt-judge"})  # no TypeError; an endpoint's model name is accepted
    try:
        assert SECRET not in repr(be) and be.model_names["base"] == "gpt-judge"
    finally:
        be.close()
    # the same through the sweep's composed config (what `harness sweep judge=openai ...` hands to run_judge)
    from harness.config import compose, to_dict

    jc = to_dict(compose(["judge=openai", "judge.backend.base_url=http://127.0.0.1:2/v1", f"++judge.backend.api_key={SECRET}"]))["judge"]
    assert J.backend_cfg_of(jc)["base_url"] == "http://127.0.0.1:2/v1" and SECRET not in repr(J.backend_cfg_of(jc))
    with pytest.raises(UserError, match="judge.backend.base_url"):  # the hf judge has no base_url: a clear error
        J.load_judge_cfg("local", ["judge.backend.base_url=http://x/v1"])


def test_model_from_someone_elses_sweep_never_enables_remote_code(tmp_path):
    run = tmp_path / "sweep" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  name: evil\n  source: hf\n  path: /x\n  trust_remote_code: true\n")
    m = J.resolve_judge_model_cfg({"model": None}, tmp_path / "sweep")
    assert m["name"] == "evil" and m["trust_remote_code"] is False
    assert J.resolve_judge_model_cfg({"model": {"name": "mine", "trust_remote_code": True}})["trust_remote_code"] is True
