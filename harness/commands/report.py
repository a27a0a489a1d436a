"""`harness report SWEEP_DIR`: write report/report.md, report/report.html and report/verdict.json."""
from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    from harness.report import VerdictConfig

    d = VerdictConfig()
    ap = argparse.ArgumentParser(prog="harness report", description=__doc__)
    ap.add_argument("sweep_dir", help="sweep directory (sweeps/<name>) with sweep.json and scores/")
    ap.add_argument("--alpha", type=float, default=d.alpha, help=f"significance level after Holm correction ({d.alpha})")
    ap.add_argument("--forgetting-threshold", type=float, default=d.forgetting_threshold,
                    help=f"a probe family dropping more than this vs base counts as regressed ({d.forgetting_threshold})")
    ap.add_argument("--n-boot", type=int, default=d.n_boot, help=f"bootstrap resamples ({d.n_boot})")
    ap.add_argument("--seed", type=int, default=d.seed, help=f"bootstrap seed ({d.seed})")
    ap.add_argument("--out", default=None, help="output dir (default SWEEP_DIR/report)")
    args = ap.parse_args(argv)

    from harness.io import UserError
    from harness.report import write_report

    if args.n_boot < 100:
        raise UserError(f"--n-boot: {args.n_boot} is too few resamples (use >= 100)")
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha: must be in (0, 1), got {args.alpha}")
    cfg = VerdictConfig(alpha=args.alpha, forgetting_threshold=args.forgetting_threshold, n_boot=args.n_boot,
                        seed=args.seed)
    res = write_report(args.sweep_dir, cfg, out_dir=args.out)
    print(f"wrote {res['report_md']}")
    print(f"wrote {res['report_html']}")
    print(f"wrote {res['verdict_json']}")
    print(f"verdict: {res['verdict'].get('text', '')}")
    return 0
