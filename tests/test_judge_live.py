"""The judge against a real local OpenAI-compatible server (llama.cpp), killed and restarted mid-run.

The judge goes through make_backend({"kind": "llamacpp", ...}) -> LlamaServer + OpenAIBackend. In
the middle of a calibration run the server process is SIGKILLed and brought back a second later on
the same port; the backend's retries (exponential backoff) must carry the run through: every call
completes, none ends as an error, and the verdicts equal those of an undisturbed run.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from harness.backends.base import BASE

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def llamacpp_judge_cfg():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'lora-harness[llamacpp]')")
    from harness.backends.llama_server import llamacpp_available

    if not llamacpp_available():
        pytest.skip("llama-cpp-python's server extras (uvicorn, fastapi, sse_starlette) are not installed")
    from conftest import TINY_CFG

    return {
        "enabled": True,
        "model": dict(TINY_CFG),
        "backend": {"kind": "llamacpp", "n_ctx": 1024, "threads": 1, "outtype": "f32", "concurrency": 1,
                    "max_retries": 10, "timeout_s": 60},
        "retries": 1,
        "max_chars": 200,
        "gen": {"max_new_tokens": 12, "temperature": 0.0, "seed": 0, "logprobs": 0},
    }


def _items(n: int = 6) -> list[dict]:
    return [{"input": f"Question {i}: name a colour.", "output_1": f"Blue {i}.", "output_2": f"I like turtles {i}.",
             "label": 1 + i % 2} for i in range(n)]


def test_judge_recovers_from_server_restart_mid_run(llamacpp_judge_cfg, tmp_path):
    from harness import judge as J

    data = tmp_path / "cal.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in _items()))
    cfg = dict(llamacpp_judge_cfg)

    # 1) undisturbed reference run
    be = J.make_judge_backend(cfg)
    try:
        ref = J.calibrate(data, {**cfg, "cache": str(tmp_path / "c_ref.jsonl")}, tmp_path / "ref", backend=be,
                          log=lambda s: None)
    finally:
        be.close()
    ref_rows = [json.loads(line) for line in (tmp_path / "ref" / "judge.jsonl").read_text().splitlines()]

    # 2) same run; on the 4th request the server is killed, and restarted ~1 s later on the same port
    be = J.make_judge_backend(cfg)
    events: dict = {"calls": 0, "killed": False, "restarted": False, "errors": []}
    inner_one = be.client._one

    def restart_later():
        time.sleep(1.0)
        try:
            be.server.restart(BASE)
            events["restarted"] = True
        except Exception as e:  # pragma: no cover - reported by the assertion below
            events["errors"].append(e)

    def one(r):
        events["calls"] += 1
        if events["calls"] == 4 and not events["killed"]:
            be.server.kill(BASE)
            events["killed"] = True
            threading.Thread(target=restart_later, daemon=True).start()
        return inner_one(r)

    be.client._one = one
    t0 = time.perf_counter()
    try:
        cal = J.calibrate(data, {**cfg, "cache": str(tmp_path / "c_out.jsonl")}, tmp_path / "out", backend=be,
                          log=lambda s: None)
    finally:
        be.close()
    wall = time.perf_counter() - t0
    assert events["killed"] and events["restarted"] and not events["errors"], events
    summary = json.loads((tmp_path / "out" / "judge_summary.json").read_text())
    cost = summary["cost"]
    assert cost["errors"] == 0 and cost["new"] == cost["calls"] >= 2 * len(_items())
    assert cal["n"] == len(_items())
    rows = [json.loads(line) for line in (tmp_path / "out" / "judge.jsonl").read_text().splitlines()]
    # greedy first attempts are identical to the undisturbed run: the outage changed nothing but time
    firsts = lambda rs: [[r[o]["raw"][0] for o in ("order_ab", "order_ba")] for r in rs]  # noqa: E731
    assert firsts(rows) == firsts(ref_rows)
    assert cal["missing"] == ref["missing"] and cal["accuracy"] == ref["accuracy"]
    print(f"judge run with a server restart: {cost['calls']} calls, wall {wall:.1f}s")


def test_judge_endpoint_down_then_back_on_a_real_server(llamacpp_judge_cfg, tmp_path):
    """judge=openai pointing at a real llama.cpp server on 127.0.0.1: server down -> status "unavailable",
    JudgeUnavailable (exit 2) and the summary written; server killed in the middle of a run -> "partial", the
    verdicts it gave are cached; server back on the same port -> a re-run finishes and pays only for the rest."""
    from harness import judge as J
    from harness.io import read_json, read_jsonl

    from test_judge import _scores_dir

    scores = _scores_dir(tmp_path, n=3)
    srv = J.make_judge_backend(llamacpp_judge_cfg)  # a llama.cpp server serving the tiny model as "base"
    try:
        url = srv.server.urls[BASE]
        cfg = {"enabled": True, "model": BASE, "rubric": "helpfulness", "max_items": 3, "retries": 0, "chunk_size": 2,
               "gen": {"max_new_tokens": 8, "temperature": 0.0, "seed": 0, "logprobs": 0},
               "backend": {"kind": "openai", "base_url": url, "max_retries": 2, "backoff_base_s": 0.05,
                           "backoff_max_s": 0.1, "timeout_s": 120, "concurrency": 1}}  # generous: loaded CI machines
        srv.server.kill(BASE)
        with pytest.raises(J.JudgeUnavailable) as ei:
            J.run_judge(scores, cfg, log=lambda s: None)
        assert ei.value.exit_code == 2
        s = read_json(scores / "judge_summary.json")
        assert s["status"] == "unavailable" and url.split("//")[1].split("/")[0] in s["error"]
        assert all(p["missing"] == p["n"] == 3 for p in s["pointwise"].values())

        srv.server.restart(BASE)
        be = J.make_judge_backend(cfg)
        inner, calls = be.generate, {"n": 0}

        def generate(requests, progress=None):  # the server dies after the first chunk of requests
            calls["n"] += 1
            if calls["n"] == 2:
                srv.server.kill(BASE)
            return inner(requests, progress)

        be.generate = generate
        try:
            with pytest.raises(J.JudgeUnavailable):
                J.run_judge(scores, cfg, backend=be, log=lambda s: None)
        finally:
            be.close()
        s = read_json(scores / "judge_summary.json")
        assert s["status"] == "partial" and s["cost"]["new"] == 2 and s["cost"]["errors"] == 3 * 3 + 2 * 3 * 2 - 2
        cached = list(read_jsonl(scores / "judge_cache.jsonl"))
        assert len(cached) == 2

        srv.server.restart(BASE)
        s = J.run_judge(scores, cfg, log=lambda s: None)
        n_requests = 3 * 3 + 2 * 3 * 2  # pointwise for 3 models + 2 pairs in both orders, 3 items each
        assert s["status"] == "ok" and s["cost"]["cached"] == 2 and s["cost"]["new"] == n_requests - 2
        assert s["cost"]["errors"] == 0
        # the tiny random model writes no valid verdict: every item is missing, and counted as such
        assert all(p["missing"] == p["n"] == 3 for p in s["pointwise"].values())
    finally:
        srv.close()
