"""`harness judge`: LLM-as-judge over a sweep, calibration against gold labels, rubric checks.

  harness judge run SWEEP_DIR [--judge conf/judge/x.yaml | judge=NAME] [judge.key=value ...]
  harness judge calibrate --data LABELS --sweep SWEEP_DIR [--judge ...] [judge.key=value ...]   (task-specific)
  harness judge calibrate --data FILE --out DIR [--judge ...] [--limit N] [judge.key=value ...]   (generic)
  harness judge rubrics [NAME|FILE ...]

LABELS: the JSONL that report/review.html downloads (one {"id", "question", "output_1", "output_2",
"label": 1|2|0, "task", ...} per line) or LLMBar's dataset.json. With --sweep, the calibration is written to
SWEEP/scores/judge_calibration/ where `harness judge run` and the sweep find it (a task calibration beats
the generic judge.calibration).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli import ArgumentParser
from harness.io import UserError

USAGE = __doc__


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="harness judge", description="LLM-as-judge: run, calibrate, rubrics",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE)
    sub = p.add_subparsers(dest="cmd", parser_class=ArgumentParser)
    r = sub.add_parser("run", aliases=["score"], help="judge a sweep's outputs (pointwise + pairwise)")
    r.add_argument("sweep_dir", help="sweeps/<name> (or its scores/ dir)")
    r.add_argument("--judge", default=None, help="conf/judge/<name>.yaml path or name (default: local)")
    r.add_argument("--pair", action="append", default=None, metavar="A:B",
                   help="a pair to compare (repeatable; default: every adapter vs base and vs fewshot)")
    r.add_argument("overrides", nargs="*", help="judge=NAME, judge.key=value ...")
    c = sub.add_parser("calibrate", help="measure judge agreement with human labels (review.html download or LLMBar)")
    c.add_argument("--data", required=True, help="JSONL (or JSON array) of {id, question, output_1, output_2, label: 1|2|0}")
    c.add_argument("--sweep", default=None, help="the sweep the labels are from: task-specific calibration, written to "
                                                 "SWEEP/scores/judge_calibration/")
    c.add_argument("--out", default=None, help="output dir (calibration.json, judge.jsonl, judge_summary.json)")
    c.add_argument("--judge", default=None, help="conf/judge/<name>.yaml path or name (default: local)")
    c.add_argument("--limit", type=int, default=None, help="use the first N items")
    c.add_argument("overrides", nargs="*", help="judge=NAME, judge.key=value ...")
    k = sub.add_parser("rubrics", help="list and validate rubrics")
    k.add_argument("names", nargs="*", help="rubric names or YAML files (default: all in rubrics/)")
    return p


def main(argv: list[str]) -> int:
    from harness import judge as J

    p = _parser()
    args = p.parse_args(argv)
    if args.cmd is None:
        p.print_help()
        return 2
    if args.cmd == "rubrics":
        names = args.names or J.list_rubrics()
        for n in names:
            r = J.load_rubric(n)
            scale = f"scale {r.scale_min}-{r.scale_max}" if r.type == "pointwise" else "A/B/tie"
            print(f"{r.name:<18} v{r.version:<4} {r.type:<9} {scale:<10} reference={'yes' if r.uses_reference else 'no':<3} {r.path}")
        return 0
    cfg = J.load_judge_cfg(args.judge, args.overrides)
    if args.cmd == "calibrate":
        if args.limit is not None and args.limit < 1:
            raise UserError(f"--limit must be >= 1 (got {args.limit})")
        if args.out is None and args.sweep is None:
            raise UserError("harness judge calibrate: give --sweep SWEEP_DIR (task-specific) or --out DIR (generic)")
        if args.sweep is not None and not Path(args.sweep).is_dir():
            raise UserError(f"{args.sweep}: --sweep: no such sweep directory")
        J.calibrate(args.data, cfg, args.out, limit=args.limit, sweep_dir=args.sweep, log=print)
        return 0
    # run
    d = Path(args.sweep_dir)
    scores = d if (d / "scores.jsonl").is_file() else d / "scores"
    if not (scores / "scores.jsonl").is_file():
        raise UserError(f"{d}: no scores/scores.jsonl (run `harness eval {d}` first)")
    pairs = None
    if args.pair:
        pairs = []
        for s in args.pair:
            if ":" not in s:
                raise UserError(f"--pair {s!r}: expected A:B (e.g. run1:base)")
            a, b = s.split(":", 1)
            pairs.append((a, b))
    cfg["enabled"] = True
    try:
        summary = J.run_judge(scores, cfg, pairs=pairs, log=print)
    finally:
        print(f"wrote {scores / 'judge_summary.json'}")
    print(json.dumps(summary["cost"], sort_keys=True))
    return 0
