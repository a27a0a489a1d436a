"""Issue #22 item 8: a 200 reply that is not an answer (a content filter's empty message, `choices: []`, a
message without text) is a backend error: counted, never scored 0.0, never cached, never a traceback."""
from __future__ import annotations

import json

import pytest

from harness.cli import main as cli
from harness.io import read_jsonl
from hostile_kit import RecordingServer, copy_sweep, pristine_sweep

OK = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
      "usage": {"prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5}}
REPLIES = {
    "content_filter": {**OK, "choices": [{"index": 0, "finish_reason": "content_filter",
                                           "message": {"role": "assistant", "content": ""}}]},
    "no_choices": {**OK, "choices": []},
    "no_text": {**OK, "choices": [{"index": 0, "finish_reason": "tool_calls",
                                    "message": {"role": "assistant", "content": None}}]},
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_sweep(tmp_path_factory)


@pytest.mark.parametrize("kind", sorted(REPLIES))
def test_non_answer_is_an_error_not_a_score(pristine, tmp_path, capsys, kind):
    sweep = copy_sweep(pristine, tmp_path / "s")
    server = RecordingServer(reply=lambda body: REPLIES[kind])
    try:
        rc = cli(["eval", str(sweep), "--no-progress", "--json", "backend=openai", f"backend.base_url={server.url}",
                  "backend.max_retries=0", "eval.canary=false"])
    finally:
        server.stop()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert rc == 1  # backend errors: the eval says so
    summary = json.loads(captured.out[captured.out.index("{"):])
    rows = list(read_jsonl(sweep / "scores" / "scores.jsonl"))
    assert rows and all(r["error"] for r in rows)
    assert all(v is None for r in rows for v in r["metrics"].values())  # never 0.0
    assert summary["errors"] == len(rows)
    cached = [r for r in read_jsonl(sweep / "scores" / "generations.jsonl") if r.get("backend") == "openai"]
    assert cached == []
