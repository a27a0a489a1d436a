"""`harness gate SWEEP_DIR [--config conf/gate/default.yaml] [--adapter RUN_ID]`

Checks one adapter of a scored sweep against thresholds. Exit 0 when every check passes, 1 when any
fails, 2 on unusable input. Writes SWEEP_DIR/gate/{gate.json,junit.xml,gate.md}. Schema: harness/gate.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO_CONF = Path(__file__).resolve().parents[2] / "conf" / "gate"


def _resolve_config(arg: str | None) -> Path:
    """A path, or a bare name looked up as conf/gate/<name>.yaml (cwd first, then the package's conf/)."""
    if arg is None:
        arg = "default"
    p = Path(arg)
    if p.is_file():
        return p
    if p.suffix not in (".yaml", ".yml") and "/" not in arg:
        for cand in (Path("conf/gate") / f"{arg}.yaml", REPO_CONF / f"{arg}.yaml"):
            if cand.is_file():
                return cand
    return p  # load_gate_config reports it missing


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="harness gate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", help="sweep directory with scores/")
    ap.add_argument("--config", default=None,
                    help="gate YAML: a path or a name in conf/gate/ (default: conf/gate/default.yaml)")
    ap.add_argument("--adapter", default=None, help="run_id to gate (default: the config's adapter, usually `best`)")
    ap.add_argument("--out", default=None, help="output dir (default SWEEP_DIR/gate)")
    ap.add_argument("--quiet", action="store_true", help="no table, just the PASSED/FAILED line")
    args = ap.parse_args(argv)

    from harness.gate import run_gate

    return run_gate(args.sweep_dir, _resolve_config(args.config), adapter=args.adapter, out_dir=args.out,
                    quiet=args.quiet)
