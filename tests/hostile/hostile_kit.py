"""What the hostile-directory tests (issue #22) share: one real tiny sweep built once through the CLI and copied
per test (then planted with what an attacker would put there), a recording OpenAI-compatible server on
127.0.0.1, and the "one error line, exit 2, no traceback" assertion."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from toy_task import write_toy_task  # noqa: E402

COMMON = ["model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=3",
          "train.eval_every=3", "train.precision=fp32", "lora.r=4", "train.lr=1e-3", "eval.probes=null", "gate=none"]
_PRISTINE: dict[str, Path] = {}


def pristine_sweep(tmp_path_factory) -> Path:
    """A real tiny sweep (one adapter, 8 eval items, scored, reported), built once per test session."""
    if "sweep" not in _PRISTINE:
        from harness.cli import main as cli

        root = tmp_path_factory.mktemp("hostile_pristine")
        toy = write_toy_task(root / "toy", n_train=24, n_val=8, n_eval=8)
        rc = cli(["sweep", *COMMON, f"task.path={toy}", f"output_root={root}", "sweep_name=s"])
        assert rc in (0, 1), rc  # a failed gate is a result
        _PRISTINE["sweep"] = root / "s"
    return _PRISTINE["sweep"]


def copy_sweep(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def only_run(sweep: Path) -> Path:
    (run,) = [p for p in (sweep / "runs").iterdir() if p.is_dir()]
    return run


def plant_config(run_dir: Path, **sections) -> None:
    """Replace sections of a run's config.yaml, as someone else's directory would hold them."""
    p = run_dir / "config.yaml"
    cfg = yaml.safe_load(p.read_text())
    cfg.update(sections)
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=full_env, timeout=timeout)


def assert_one_line_error(rc: int, err: str, *needles: str, code: int = 2) -> None:
    assert "Traceback" not in err, err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for n in needles:
        assert n in errors[0], (n, errors[0])


class RecordingServer:
    """An OpenAI-compatible server on 127.0.0.1 that records every request (path, headers, body) and answers
    each chat request with `reply` (a function of the request body -> response JSON)."""

    def __init__(self, reply=None):
        self.requests: list[dict] = []
        outer = self
        self.reply = reply or (lambda body: {
            "id": "c", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "{}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, obj: dict):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body):
                outer.requests.append({"path": self.path, "body": body,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})

            def do_GET(self):
                self._record(None)
                self._send({"object": "list", "data": [{"id": "srv", "object": "model", "owned_by": "t"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                self._record(body)
                self._send(outer.reply(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
