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
    from harness.llama_server import llamacpp_available

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
