"""`harness report SWEEP_DIR`: the decision first, then the evidence.

Writes report/report.md, report/report.html (self-contained), report/review.html (every output side by side),
report/verdict.json (the decision) and report/analysis.json (every number behind it). Settings default to
the sweep's own (conf/decision at sweep time, the task's target); flags override them for this report.
"""
from __future__ import annotations

import argparse

from harness.cli import ArgumentParser


def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="harness report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", help="sweep directory (sweeps/<name>) with sweep.json and scores/")
    ap.add_argument("--target", type=float, default=None, help="acceptance level of the primary metric (default: the task's)")
    ap.add_argument("--alpha", type=float, default=None, help="significance level (default 0.05)")
    ap.add_argument("--margin", type=float, default=None,
                    help="forgetting non-inferiority margin: largest acceptable probe-family drop (default 0.10)")
    ap.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=None, help="bootstrap seed (default 0)")
    ap.add_argument("--out", default=None, help="output dir (default SWEEP_DIR/report)")
    args = ap.parse_args(argv)

    from harness.decision import OUTCOMES
    from harness.io import UserError
    from harness.report import write_report

    if args.n_boot is not None and args.n_boot < 100:
        raise UserError(f"--n-boot: {args.n_boot} is too few resamples (use >= 100)")
    if args.alpha is not None and not 0 < args.alpha < 1:
        raise UserError(f"--alpha: must be in (0, 1), got {args.alpha}")
    if args.target is not None and not 0 <= args.target <= 1:
        raise UserError(f"--target: must be in [0, 1], got {args.target}")
    if args.margin is not None and args.margin < 0:
        raise UserError(f"--margin: must be >= 0, got {args.margin}")
    res = write_report(args.sweep_dir, out_dir=args.out, target=args.target, alpha=args.alpha, margin=args.margin,
                       n_boot=args.n_boot, seed=args.seed,
                       target_source="command line" if args.target is not None else None)
    for k in ("report_md", "report_html", "review_html", "verdict_json"):
        if res.get(k):
            print(f"wrote {res[k]}")
    d = res["decision"]
    print(f"decision: {OUTCOMES[d.outcome]}: {d.headline}")
    return 0
