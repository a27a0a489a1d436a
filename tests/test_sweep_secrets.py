"""#12 at the sweep: fake keys planted everywhere a user could put one never reach the disk, wandb, logs or the
terminal; a judge endpoint that is down costs the judge only (report + gate written, one line, exit 2), and a
re-run with the endpoint up (a real llama.cpp server on that port) fills the judge in without retraining."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.toy_task import write_toy_task

KEY_OVERRIDE = "sk-PLANTEDoverride0123456789abcdef"
KEY_URL = "sk-PLANTEDuserinfo0123456789abcdef"
KEY_NAME_FIELD = "sk-PLANTEDnamefield0123456789abcd"
PLANTED = (KEY_OVERRIDE, KEY_URL, KEY_NAME_FIELD, "PLANTED")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    """One real chat completion from the local server (a broken llama-cpp-python build crashes on the first)."""
    import urllib.request

    body = json.dumps({"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        return bool(json.loads(urllib.request.urlopen(req, timeout=120).read())["choices"])
    except Exception:
        return False


def _grep(roots: list[Path], since: float) -> list[str]:
    """Files under `roots` written since `since` that contain any planted string (bytes, any encoding)."""
    hits = []
    for root in roots:
        for p in root.rglob("*") if root.is_dir() else []:
            try:
                if p.is_file() and not p.is_symlink() and p.stat().st_mtime >= since:
                    data = p.read_bytes()
                    hits += [f"{p}: {s}" for s in PLANTED if s.encode() in data]
            except OSError:
                pass
    return hits


def test_planted_keys_appear_nowhere_and_a_down_judge_still_gets_a_report(tmp_path):
    from harness.models import cache_root

    toy = write_toy_task(tmp_path / "toy", n_train=24, n_val=8, n_eval=6)
    port = _free_port()  # closed: nothing listens there yet
    wandb_dir = tmp_path / "wandb"
    env = {**os.environ, "HARNESS_QUIET": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir),
           "FAKE_JUDGE_URL": f"http://user:{KEY_URL}@127.0.0.1:{port}/v1"}
    args = [sys.executable, "-m", "harness.cli", "sweep", "model=tiny_random", "tracking.wandb=offline", "sweep=none",
            f"task.path={toy}", f"output_root={tmp_path / 'out'}", "sweep_name=s", "lora.r=4,8", "train.lr=1e-3",
            "train.batch_size=8", "train.max_steps=2", "train.eval_every=2", "train.precision=fp32",
            "eval.probes=null", "judge=openai", "judge.max_items=2", "judge.rubric=null", "judge.backend.max_retries=0",
            "+judge.backend.model_names.base=base",                    # the name the local server serves
            f"++judge.backend.api_key={KEY_OVERRIDE}",                  # a literal key on the command line
            "++judge.backend.base_url=${oc.env:FAKE_JUDGE_URL}",      # env interpolation, key in URL userinfo
            f"++judge.backend.api_key_env={KEY_NAME_FIELD}"]          # a key pasted where the env var NAME goes
    since = time.time() - 1
    down = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    sweep = tmp_path / "out" / "s"
    assert down.returncode == 2, down.stderr[-3000:]
    last = [line for line in down.stderr.splitlines() if line.strip()][-1]
    assert "judge unavailable" in last and "re-run" in last, down.stderr[-3000:]
    assert "Traceback" not in down.stderr
    assert (sweep / "report" / "report.md").is_file() and (sweep / "gate" / "gate.json").is_file()
    js = json.loads((sweep / "scores" / "judge_summary.json").read_text())
    assert js["status"] in ("unavailable", "partial")
    assert js["judge_backend"] == "openai"  # the configured judge, not the sweep's own hf eval backend
    runs = json.loads((sweep / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["complete", "complete"]
    assert "***" in json.dumps(json.loads((sweep / "sweep.json").read_text())["overrides"])  # recorded, masked
    assert not (sweep / "hydra" / "0" / ".hydra").exists()  # Hydra's per-job config copies are off
    offline = list((tmp_path / "out").glob("s/runs/*/wandb/*run-*")) + list(wandb_dir.glob("**/*run-*"))
    assert offline, "wandb offline wrote nothing: the grep below would prove nothing about it"
    out = down.stdout + down.stderr
    assert not [s for s in PLANTED if s in out]
    hits = _grep([tmp_path / "out", wandb_dir, cache_root(), Path.home() / ".cache" / "wandb"], since)
    assert not hits, hits

    # the endpoint comes up (a real OpenAI-compatible llama.cpp server on that port): the re-run fills in the judge
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from harness.gguf import convert_hf_to_gguf
    from harness.backends.llama_server import LlamaServer, llamacpp_available
    from harness.models import resolve_model
    from tests.conftest import TINY_CFG

    if not llamacpp_available():
        pytest.skip("llama-cpp-python's server extras are not installed")
    adapters = {p: p.stat().st_mtime_ns for p in sweep.glob("runs/*/adapter/adapter_model.safetensors")}
    # the judge model: the tiny model as an f32 GGUF (this image's llama.cpp build crashes on quantized GGUFs)
    gguf = convert_hf_to_gguf(resolve_model(TINY_CFG).path, outtype="f32")
    with LlamaServer(gguf, port=port, n_ctx=2048, n_threads=1) as server:
        if not _answers(port):
            pytest.skip(f"the llama.cpp server cannot complete a chat request here: {server.log_tail('base', 5)}")
        up = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert up.returncode in (0, 1), up.stderr[-3000:]  # 0/1 = the gate's verdict
    js = json.loads((sweep / "scores" / "judge_summary.json").read_text())
    assert js["status"] == "ok", js.get("error")
    # every judge call was answered by the endpoint (the tiny random judge's verdicts do not parse: counted missing)
    rows = [json.loads(line) for line in (sweep / "scores" / "judge.jsonl").read_text().splitlines() if line.strip()]
    assert rows and all(not r[o]["backend_error"] and r[o]["raw"] for r in rows for o in ("order_ab", "order_ba"))
    assert {(p["a"], p["b"]) for p in js["pairwise"]} == {(r["run_id"], b) for r in runs for b in ("base", "fewshot")}
    assert {p: p.stat().st_mtime_ns for p in adapters} == adapters  # nothing retrained
    out = up.stdout + up.stderr
    assert not [s for s in PLANTED if s in out]
    hits = _grep([tmp_path / "out", wandb_dir, cache_root(), Path.home() / ".cache" / "wandb"], since)
    assert not hits, hits
