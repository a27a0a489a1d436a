"""Time `make demo` the way a new user meets it: a fresh clone, a fresh model cache, phase by phase.

    python bench/demo_time.py [--repo .] [--workdir /tmp/demo-time] [--keep-cache] [--out bench/results/demo_time.txt]

Phases: install (`make install`: venv, torch, the package, the embedded GGUF), then `make demo` split by the
sweep's own timings.json (training incl. the one-time GGUF -> safetensors conversion, evaluation, report +
gate) and the decision it reached. The last line is the total wall time against the 15-minute goal.
Prints the CPU flags (AVX2-only machines are ~2.5x slower than AVX-512 ones), the kernels torch uses (on an
AVX-512 box `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` approximates the AVX2 kind) and the load
average, since a busy machine inflates every phase.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_flags  # noqa: E402

GOAL_S = 15 * 60


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - t0, rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(ROOT), help="git repository to clone (HEAD)")
    ap.add_argument("--workdir", default="/tmp/demo-time")
    ap.add_argument("--keep-cache", action="store_true", help="reuse ~/.cache/lora-harness (skips the conversion)")
    ap.add_argument("--out", default=None, help="also write the table here")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    clone = work / "lora-harness"
    subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    env = {**os.environ, "HARNESS_QUIET": "1"}
    if not args.keep_cache:
        env["LORA_HARNESS_CACHE"] = str(work / "cache")  # the base model is converted from its GGUF again
    load0 = os.getloadavg()
    t_install, rc = timed(["make", "install"], clone, env, work / "install.log")
    if rc:
        print(f"make install failed (exit {rc}): see {work / 'install.log'}", file=sys.stderr)
        return rc
    t_demo, rc = timed(["make", "demo"], clone, env, work / "demo.log")
    load1 = os.getloadavg()
    if rc:
        print(f"make demo failed (exit {rc}): see {work / 'demo.log'}", file=sys.stderr)
        return rc
    sweep = clone / "sweeps" / "demo"
    timings = json.loads((sweep / "timings.json").read_text())
    verdict = json.loads((sweep / "report" / "verdict.json").read_text())
    gate = json.loads((sweep / "gate" / "gate.json").read_text())
    sweep_json = json.loads((sweep / "sweep.json").read_text())
    runs = ", ".join(f"{r.get('name', r['run_id'])} {r['status']}" for r in sweep_json["runs"])
    total = t_install + t_demo
    rest = t_demo - timings["total_s"]  # the gate (after timings.json is written), Hydra start-up, make
    rows = [
        ("install (make install)", t_install),
        ("train (incl. first-use model conversion)", timings["train_s"]),
        ("evaluate (base, few-shot, adapters, probes)", timings["eval_s"]),
        ("report", timings["total_s"] - timings["train_s"] - timings["eval_s"]),
        ("gate, start-up and make", rest),
    ]
    kernels = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                              "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                             env=env, capture_output=True, text=True).stdout.strip()
    lines = [f"CPU flags: {cpu_flags()}; cores: {os.cpu_count()}; load average before {load0[0]:.1f}, after {load1[0]:.1f}",
             f"torch CPU kernels: {kernels}" + (" (forced by ATEN_CPU_CAPABILITY)" if env.get("ATEN_CPU_CAPABILITY") else ""),
             f"commit: {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=clone, capture_output=True, text=True).stdout.strip()}",
             f"runs: {runs}",
             f"decision: {verdict.get('outcome')} ({verdict.get('chosen_name')}) - {verdict.get('headline', '')}",
             f"gate: {gate.get('status')}",
             ""]
    lines += [f"{name:<46} {sec:7.0f} s" for name, sec in rows]
    lines.append(f"{'total (fresh clone -> report + gate)':<46} {total:7.0f} s = {total / 60:.1f} min; "
                 f"goal {GOAL_S // 60} min: {total / GOAL_S:.2f}x the goal")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
