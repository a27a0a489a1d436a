"""Issue #12 through the real CLI: planted secrets never reach disk or output, bad input is one line + exit 2
before any training, the CI workflow never interpolates inputs into shell.

Each test drives `python -m harness.cli ...` (a subprocess where argv/env matter) or harness.cli.main.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-hostile-" + "Q7wZ" * 6  # OpenAI-shaped
PLAIN_PW = "plainpw-Zx81-noshape"  # no recognisable shape: only its place (URL userinfo, a key name) gives it away
PASTED = "0123456789abcdef0123456789abcdef01234567"  # a wandb-style key pasted where an env var NAME belongs
ENV_SECRET = "envsecret-Kk29-interpolated"  # reaches the config through ${oc.env:...}
SECRETS = (FAKE_KEY, PLAIN_PW, PASTED, ENV_SECRET)


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=full_env, timeout=timeout)


def assert_one_line_error(rc: int, err: str, *needles: str, code: int = 2) -> None:
    assert "Traceback" not in err, err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for n in needles:
        assert n in errors[0], (n, errors[0])


def files_containing(root: Path, needles: tuple[str, ...], since: float = 0.0) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for p in root.rglob("*"):
        if not p.is_file() or p.stat().st_mtime < since or p.stat().st_size > 50 << 20:
            continue
        data = p.read_bytes()
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[str(p.relative_to(root))] = hits
    return found


# --------------------------------------------------------------------------- secrets


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory):
    """A real tiny training run with a fake key planted everywhere a user could put one."""
    root = tmp_path_factory.mktemp("secret_run")
    run_dir = root / "run"
    t0 = time.time() - 1
    r = run_cli(
        "train", "model=tiny_random", "train.max_steps=2", "train.eval_every=2", "train.batch_size=4",
        f"run_dir={run_dir}", "tracking.wandb=offline",
        "judge=openai", f"++judge.backend.api_key={FAKE_KEY}",
        f"judge.backend.base_url=https://alice:{PLAIN_PW}@127.0.0.1:9/v1",
        f"judge.backend.api_key_env={PASTED}",
        "++tracking.note=${oc.env:HOSTILE_FAKE_API_KEY}",
        env={"HOSTILE_FAKE_API_KEY": ENV_SECRET, "WANDB_MODE": "offline", "WANDB_DIR": str(root),
             "WANDB_SILENT": "true"})
    return r, run_dir, root, t0


def test_training_run_succeeds_with_planted_secrets(secret_run):
    r, run_dir, _, _ = secret_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run_dir / "adapter").is_dir() and (run_dir / "config.yaml").is_file()


def test_planted_secrets_appear_in_no_output_and_no_file(secret_run):
    """Run dir (config.yaml, manifest.json's command), wandb's offline run (its recorded argv), stdout/stderr."""
    r, run_dir, root, t0 = secret_run
    assert not [s for s in SECRETS if s in r.stdout + r.stderr]
    assert any(p.suffix == ".wandb" for p in root.rglob("*")), "the wandb offline run was not written"
    assert files_containing(root, SECRETS, t0) == {}
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["judge"]["backend"]["base_url"] == "https://***@127.0.0.1:9/v1"
    assert cfg["judge"]["backend"]["api_key"] == "***redacted***"
    # settings with "token" in their name are kept (their loss broke `harness eval RUN_DIR`)
    assert cfg["judge"]["gen"]["max_new_tokens"] == 128


def test_cache_dir_gets_no_secret(secret_run):
    _, _, _, t0 = secret_run
    cache = Path(os.environ.get("LORA_HARNESS_CACHE", Path.home() / ".cache" / "lora-harness"))
    if cache.is_dir():
        assert files_containing(cache, SECRETS, t0) == {}


def test_eval_rereads_the_redacted_snapshot(secret_run, tmp_path):
    """`harness eval RUN_DIR` composes from the snapshot: generation settings must have survived redaction."""
    r, run_dir, _, _ = secret_run
    assert r.returncode == 0
    e = run_cli("eval", str(run_dir), "eval.max_eval=2", "eval.probes=null", "eval.few_shot_k=0", "--no-progress")
    assert "Traceback" not in e.stderr, e.stderr[-3000:]
    assert e.returncode in (0, 1), e.stderr[-3000:]
    assert (run_dir / "scores" / "summary.json").is_file()
    assert not [s for s in SECRETS if s in e.stdout + e.stderr]


def test_error_messages_are_redacted_too(tmp_path):
    rc = run_cli("train", "model=tiny_random", f"backend.kind={FAKE_KEY}")
    assert_one_line_error(rc.returncode, rc.stderr, "backend.kind: unknown backend")
    assert FAKE_KEY not in rc.stderr and "***redacted***" in rc.stderr


# --------------------------------------------------------------------------- validated before any training


def _train_rejects(run_dir: Path, capsys, *overrides: str) -> str:
    rc = cli(["train", "model=tiny_random", f"run_dir={run_dir}", *overrides])
    err = capsys.readouterr().err
    assert_one_line_error(rc, err)
    assert not run_dir.exists(), "training started before validation"
    return err


@pytest.mark.parametrize("overrides,needle", [
    (["model.dtype=fp64"], "model.dtype: unknown value 'fp64'"),
    (["train.batch_size=0"], "train.batch_size: must be >= 1"),
    (["backend.kind=nope"], "backend.kind: unknown backend 'nope'"),
    (["++backend.warp_speed=9"], "backend.warp_speed: unknown option"),
    (["judge=local", "judge.max_items=many"], "judge.max_items: must be an integer"),
    (["model=hf", "model.path=./no/such/model"], "model.path: not found"),
])
def test_bad_config_is_one_line_exit_2_before_training(tmp_path, capsys, overrides, needle):
    assert needle in _train_rejects(tmp_path / "run", capsys, *overrides)


def _task(tmp_path: Path, *, metric: str = "exact_match", name: str = "hostile", train_rows: str | None = None,
          eval_rows: str | None = None) -> Path:
    d = tmp_path / "task"
    d.mkdir(exist_ok=True)
    row = '{"id": "%s", "messages": [{"role": "user", "content": "question %s"}, {"role": "assistant", "content": "a"}]}\n'
    (d / "train.jsonl").write_text(train_rows if train_rows is not None else "".join(row % (i, i) for i in range(8)))
    (d / "eval.jsonl").write_text(eval_rows if eval_rows is not None else "".join(row % (i, i) for i in range(4)))
    (d / "task.yaml").write_text(f"name: {json.dumps(name)}\ndata: {{train: train.jsonl, eval: eval.jsonl}}\n"
                                 f"metrics:\n  - name: {metric}\nprimary_metric: {metric}\n")
    return d / "task.yaml"


def test_unknown_metric_names_file_line_before_training(tmp_path, capsys):
    task = _task(tmp_path, metric="bleurt")
    err = _train_rejects(tmp_path / "run", capsys, f"task.path={task}")
    assert "task.yaml:4: metrics[0].name: unknown metric 'bleurt'" in err


def test_probe_file_with_a_bad_middle_line_is_file_line(tmp_path, capsys):
    good = (REPO / "evalsets" / "probes" / "default.jsonl").read_text().splitlines(keepends=True)
    bad = tmp_path / "probes.jsonl"
    bad.write_text("".join(good[:3]) + '{"id": "x", "family": \n' + "".join(good[3:6]))
    err = _train_rejects(tmp_path / "run", capsys, f"eval.probes={bad}")
    assert f"{bad}:4: invalid JSON" in err


def test_empty_training_file_fails_data_check_and_training(tmp_path, capsys):
    empty = tmp_path / "train.jsonl"
    empty.write_text("")
    assert cli(["data", "check", str(empty), "--model", "none"]) == 1
    out = capsys.readouterr().out
    assert "no usable examples (the file is empty)" in out and "FAILED" in out
    task = _task(tmp_path, train_rows="\n")
    rc = cli(["train", "model=tiny_random", f"task.path={task}", f"run_dir={tmp_path / 'run'}"])
    assert_one_line_error(rc, capsys.readouterr().err, "train.jsonl:1: error: no examples")


def test_duplicate_eval_ids_are_an_error(tmp_path, capsys):
    row = '{"id": "same", "messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}\n'
    task = _task(tmp_path, eval_rows=row % 1 + row % 2)
    rc = cli(["tasks", "--validate", str(task)])
    assert_one_line_error(rc, capsys.readouterr().err, "eval.jsonl:2: duplicate sample id 'same'")


@pytest.mark.parametrize("name", ["../../etc", "a/b", "x=/tmp/y", "-rf"])
def test_unsafe_task_name_is_refused(tmp_path, capsys, name):
    rc = cli(["tasks", "--validate", str(_task(tmp_path, name=name))])
    assert_one_line_error(rc, capsys.readouterr().err, "task.yaml:1: name:", "not a safe name")


def test_cli_usage_errors_are_one_line(capsys):
    for argv in (["tasks", "--bogus"], ["train", "not-an-override"], ["data", "frobnicate"]):
        rc = cli(argv)
        assert_one_line_error(rc, capsys.readouterr().err)


def test_a_real_subprocess_prints_no_traceback(tmp_path):
    r = run_cli("train", "model=tiny_random", "train.batch_size=0", f"run_dir={tmp_path / 'run'}")
    assert_one_line_error(r.returncode, r.stderr, "train.batch_size")


# --------------------------------------------------------------------------- CI


def test_workflows_never_interpolate_inputs_into_shell():
    """`${{ inputs.x }}` inside run: is shell injection; inputs go through env: and are quoted there."""
    files = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
    assert files
    for wf in files:
        doc = yaml.safe_load(wf.read_text())
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                run = step.get("run", "")
                for danger in ("${{ inputs.", "${{ github.event.", "${{ github.head_ref"):
                    assert danger not in run, f"{wf.name}: step {step.get('name')!r} interpolates {danger}"


def test_unsafe_run_id_in_a_foreign_sweep_is_refused(secret_run, tmp_path, capsys):
    """Run ids from a directory someone else produced become model keys and llama.cpp `name=path` arguments."""
    _, run_dir, _, _ = secret_run
    sweep = tmp_path / "foreign"
    shutil.copytree(run_dir, sweep / "runs" / "r")  # run_dir entries must stay inside the sweep (#22)
    (sweep / "sweep.json").write_text(json.dumps({"runs": [
        {"run_id": "x=--api-key=evil", "run_dir": "runs/r", "status": "complete"}]}))
    rc = cli(["eval", str(sweep), "eval.max_eval=1", "eval.probes=null", "eval.few_shot_k=0", "--no-progress"])
    err = capsys.readouterr().err
    assert_one_line_error(rc, err, "'x=")  # refused before any path or server argument is built from it
    assert "evil" not in err


def test_duplicate_eval_ids_stop_training_before_it_starts(tmp_path, capsys):
    """Eval items are read after training; their problems must surface before it."""
    row = '{"id": "dup", "messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}\n'
    task = _task(tmp_path, eval_rows=row % 1 + row % 2)
    err = _train_rejects(tmp_path / "run", capsys, f"task.path={task}")
    assert "eval.jsonl:2: duplicate sample id 'dup'" in err
