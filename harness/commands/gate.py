"""`harness gate SWEEP_DIR [--config NAME|PATH] [--adapter RUN_ID] [--against PREVIOUS] [--inconclusive fail|pass]`

Turns the report's decision and thresholds into an exit code: 0 pass, 1 fail, 2 unusable input, 3 inconclusive
(at this sample size nothing failed but something could not be decided; --inconclusive fail|pass maps it).
Writes SWEEP_DIR/gate/{gate.json,junit.xml,gate.md}. Schema: harness/gate.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import ArgumentParser
from harness.config import conf_dir


def _resolve_config(arg: str | None) -> Path:
    """A path, or a bare name looked up as conf/gate/<name>.yaml (cwd first, then the harness conf/)."""
    arg = arg or "default"
    p = Path(arg)
    if p.is_file():
        return p
    if p.suffix not in (".yaml", ".yml") and "/" not in arg:
        for cand in (Path("conf/gate") / f"{arg}.yaml", conf_dir() / "gate" / f"{arg}.yaml"):
            if cand.is_file():
                return cand
    return p  # load_gate_config reports it missing


def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="harness gate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", help="sweep directory with scores/")
    ap.add_argument("--config", default=None, help="gate YAML: a path or a name in conf/gate/ (default: default)")
    ap.add_argument("--adapter", default=None, help="run id to gate (default: the config's adapter, usually `best` = "
                                                    "the decision's choice, made on validation data)")
    ap.add_argument("--against", default=None, metavar="PREVIOUS",
                    help="the released model: a previous sweep dir or an exported adapter dir; it is scored on the same "
                         "eval items and the adapter must not be worse than it (non-inferiority)")
    ap.add_argument("--against-margin", type=float, default=None,
                    help="largest acceptable drop vs --against on the primary metric (default 0.02)")
    ap.add_argument("--target", type=float, default=None, help="override the task's target for the primary metric")
    ap.add_argument("--inconclusive", choices=("fail", "pass"), default=None,
                    help="exit 1 (fail) or 0 (pass) instead of 3 when the result is inconclusive")
    ap.add_argument("--out", default=None, help="output dir (default SWEEP_DIR/gate)")
    ap.add_argument("--quiet", action="store_true", help="no table, just the result line")
    ap.add_argument("overrides", nargs="*", help="with --against: KEY=VALUE settings of your backend for scoring the "
                                                 "released model (backend=vllm, backend.batch_size=8); the sweep "
                                                 "dir's own backend settings are never used")
    args = ap.parse_intermixed_args(argv)

    from harness.report.gate_view import run_gate
    from harness.io import UserError

    if args.target is not None and not 0 <= args.target <= 1:
        raise UserError(f"--target: expected a number in [0, 1], got {args.target}")
    if args.against_margin is not None and args.against_margin < 0:
        raise UserError(f"--against-margin: expected a number >= 0, got {args.against_margin}")
    config = _resolve_config(args.config)
    if args.overrides and not args.against:
        raise UserError(f"{args.overrides[0]}: KEY=VALUE settings are for --against (nothing else is generated)")
    if args.against:
        from harness.evaluate import score_released
        from harness.gate import load_gate_config
        from harness.targets import load_target

        load_gate_config(config)  # bad gate input fails before any generation
        released = Path(args.against)
        if not released.exists():
            raise UserError(f"--against: {released}: not found (a previous sweep dir or an exported adapter dir)")
        # the sweep dir's stored config goes through the trust rule (harness.targets): your backend, no remote code
        cfg = load_target(Path(args.sweep_dir), args.overrides, log=lambda m: print(m, file=sys.stderr))[0]
        score_released(Path(args.sweep_dir), released, cfg, quiet=args.quiet)
    return run_gate(args.sweep_dir, config, adapter=args.adapter, out_dir=args.out, quiet=args.quiet,
                    inconclusive=args.inconclusive, target=args.target, against_margin=args.against_margin)
