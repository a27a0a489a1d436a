"""`harness data check|prepare`: the data doctor.

  harness data check TRAIN.jsonl [--eval EVAL.jsonl] [--model tiny_random|smollm2_135m|none] [--max-length N]
                     [--near-dup-threshold 0.8] [--task demo] [--json REPORT.json] [--max-problems 200]
  harness data prepare TRAIN.jsonl [--eval EVAL.jsonl] --out DIR [--val-fraction 0.1] [--test-fraction 0.0]
                     [--seed 0] [--drop-invalid] [--dedupe-eval] [--model none] [--max-length N]

check exits 1 when there are errors, 0 when there are only warnings, 2 for a missing file or bad arguments.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.io import UserError, write_json


def _parser() -> argparse.ArgumentParser:
    from harness.cli import ArgumentParser

    p = ArgumentParser(prog="harness data", description="Validate and clean training/eval data.")
    sub = p.add_subparsers(dest="action", metavar="{check,prepare}", parser_class=ArgumentParser)

    def common(sp, default_model: str) -> None:
        sp.add_argument("train", help="training JSONL (messages, ShareGPT, Alpaca or prompt/completion)")
        sp.add_argument("--eval", dest="eval_path", default=None, help="eval JSONL, checked for leakage")
        sp.add_argument("--model", default=default_model,
                        help=f"tokenizer for length checks: tiny_random, smollm2_135m, a conf YAML path or none "
                             f"(default {default_model})")
        sp.add_argument("--max-length", type=int, default=None, help="max tokens (default: the model's max_length)")
        sp.add_argument("--near-dup-threshold", type=float, default=0.8, help="MinHash Jaccard threshold (0.8)")
        sp.add_argument("--task", default=None,
                        help="task name (evalsets/NAME/task.yaml) or path: its system prompt and template are "
                             "included in token counts")

    c = sub.add_parser("check", help="report every problem as FILE:LINE: severity: message")
    common(c, "smollm2_135m")
    c.add_argument("--json", dest="json_out", default=None, help="also write the full report as JSON here")
    c.add_argument("--max-problems", type=int, default=200, help="print at most this many problems (200)")

    pr = sub.add_parser("prepare", help="dedupe, drop leakage, split into canonical messages JSONL")
    common(pr, "none")
    pr.add_argument("--out", required=True, help="output directory")
    pr.add_argument("--val-fraction", type=float, default=0.1)
    pr.add_argument("--test-fraction", type=float, default=0.0)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--drop-invalid", action="store_true",
                    help="drop records with errors (bad JSON, bad roles, too long) instead of refusing")
    pr.add_argument("--dedupe-eval", action="store_true",
                    help="drop exact repeats of an earlier eval line (the same JSON record), listing each FILE:LINE; "
                         "without it a repeated eval item is an error (the eval set is never changed silently)")
    return p


def _task_prompts(task: str | None) -> tuple[str | None, str]:
    """The task's system prompt and template (read by THE task reader, tasks.load_task)."""
    if not task:
        return None, "{prompt}"
    from harness.tasks import load_task

    t = load_task(task)
    return t.system_prompt or None, t.prompt_template


def _files_exist(*paths: str | None) -> None:
    for path in paths:
        if path is None:
            continue
        p = Path(path)
        if not p.exists():
            raise UserError(f"{path}: file not found")
        if p.is_dir():
            raise UserError(f"{path}: is a directory, expected a JSONL file")


def _tokenizer(args) -> tuple[Any, int | None]:
    from harness.doctor import load_tokenizer_for

    tok, model_max = load_tokenizer_for(args.model)
    max_length = args.max_length if args.max_length is not None else model_max
    if args.max_length is not None and args.max_length < 1:
        raise UserError(f"--max-length must be positive, got {args.max_length}")
    return tok, max_length


def _summary_table(report, console) -> None:
    """One column per file, one row per measure (fits a terminal with long paths)."""
    from rich.table import Table

    t = Table(title="data check")
    t.add_column("", style="bold")
    for f in report.files:
        t.add_column(f"{f.role}: {Path(f.path).name}", overflow="fold")

    def fmt_format(f):
        s = f.format or "-"
        if len(f.formats) > 1:
            s += " (mixed: " + ", ".join(f"{k} {v}" for k, v in f.formats.items()) + ")"
        return s

    rows = [
        ("format", fmt_format),
        ("examples / records", lambda f: f"{f.examples} / {f.records}"),
        ("errors", lambda f: str(f.errors)),
        ("warnings", lambda f: str(f.warnings)),
        ("exact duplicates", lambda f: str(f.exact_dups)),
        ("near duplicates", lambda f: str(f.near_dups)),
        ("leaked from train", lambda f: str(f.leaked) if f.role == "eval" else "-"),
        ("targets that are JSON", lambda f: f"{100 * f.json_share:.0f}%"),
        ("tokens p50/p90/p99/max",
         lambda f: "/".join(str(f.tokens[k]) for k in ("p50", "p90", "p99", "max")) if f.tokens else "-"),
        (f"over max length ({report.max_length})" if report.max_length else "over max length",
         lambda f: str(f.too_long) if f.tokens else "-"),
    ]
    for label, fn in rows:
        t.add_row(label, *(fn(f) for f in report.files))
    console.print(t)


def _print_problems(problems, limit: int) -> None:
    out = sys.stdout
    for p in problems[: max(0, limit)]:
        print(str(p), file=out)
    if len(problems) > limit:
        print(f"... and {len(problems) - limit} more problems (see --json for all)", file=out)


def _check(args) -> int:
    from rich.console import Console

    from harness.doctor import check_files

    _files_exist(args.train, args.eval_path)
    system_prompt, template = _task_prompts(args.task)
    tok, max_length = _tokenizer(args)
    t0 = time.perf_counter()
    report = check_files(args.train, args.eval_path, tokenizer=tok, max_length=max_length,
                         near_dup_threshold=args.near_dup_threshold, system_prompt=system_prompt,
                         prompt_template=template)
    elapsed = time.perf_counter() - t0
    _print_problems(report.problems, args.max_problems)
    console = Console()
    _summary_table(report, console)
    if tok is None:
        console.print("token checks skipped (--model none)")
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "[red]FAILED[/]" if n_err else "[green]OK[/]"
    console.print(f"{verdict}: {n_err} error(s), {n_warn} warning(s) in {elapsed:.1f}s"
                  + (f"; max length {max_length} tokens" if tok is not None else ""))
    if args.json_out:
        d = report.to_dict()
        d["elapsed_s"] = round(elapsed, 3)
        write_json(args.json_out, d)
    return report.exit_code


def _prepare(args) -> int:
    from rich.console import Console

    from harness.data import exact_repeats
    from harness.doctor import prepare

    _files_exist(args.train, args.eval_path)
    system_prompt, template = _task_prompts(args.task)
    tok, max_length = _tokenizer(args)
    repeats = exact_repeats(args.eval_path) if args.eval_path else []
    try:
        rep = prepare(args.train, args.eval_path, out=args.out, val_fraction=args.val_fraction,
                      test_fraction=args.test_fraction, seed=args.seed, near_dup_threshold=args.near_dup_threshold,
                      tokenizer=tok, max_length=max_length, drop_invalid=args.drop_invalid,
                      system_prompt=system_prompt, prompt_template=template,
                      drop_eval_lines=[ln for ln, _ in repeats] if args.dedupe_eval else ())
    except UserError as exc:
        if repeats and not args.dedupe_eval:
            where = ", ".join(f"{args.eval_path}:{ln}" for ln, _ in repeats[:5])
            raise UserError(f"{exc}\n{len(repeats)} eval line(s) exactly repeat an earlier one ({where}"
                            f"{', ...' if len(repeats) > 5 else ''}): pass --dedupe-eval to drop them "
                            "(listed, never silently)", exit_code=exc.exit_code) from None
        raise
    console = Console()
    if args.dedupe_eval and repeats:
        shown = ", ".join(f"{args.eval_path}:{ln} (repeats line {first})" for ln, first in repeats)
        console.print(f"--dedupe-eval: dropped {len(repeats)} exact repeat(s) from the eval set: {shown}",
                      highlight=False, soft_wrap=True)
    by_reason: dict[str, list[dict]] = {}
    for d in rep.dropped:
        by_reason.setdefault(d["reason"], []).append(d)
    if not rep.dropped and not (args.dedupe_eval and repeats):
        console.print("dropped nothing: no duplicates, no leakage")
    for reason, rows in by_reason.items():
        examples = ", ".join(f"{r['file']}:{r['line']}" + (f" (id {r['id']})" if r["id"] else "") for r in rows[:5])
        more = f", ... {len(rows) - 5} more" if len(rows) > 5 else ""
        why = {"exact_duplicate": "exact duplicates of an earlier training example (kept the first)",
               "near_duplicate": "near-duplicates of an earlier training example (kept the first)",
               "leakage": "training examples that duplicate an eval example (the eval set is kept intact)",
               "invalid": "invalid records (--drop-invalid)"}.get(reason, reason)
        console.print(f"dropped {len(rows)} {why}: {examples}{more}")
    sizes = ", ".join(f"{name} {o['n']}" for name, o in rep.outputs.items())
    console.print(f"wrote {sizes} to {rep.out} (seed {args.seed}); report: {Path(rep.out) / 'prepare_report.json'}")
    return 0


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.action is None:
        parser.print_help()
        return 2
    if not 0.0 < args.near_dup_threshold <= 1.0:
        raise UserError(f"--near-dup-threshold must be in (0, 1], got {args.near_dup_threshold}")
    return _check(args) if args.action == "check" else _prepare(args)


if __name__ == "__main__":  # pragma: no cover
    from harness.cli import main as cli_main

    sys.exit(cli_main(["data", *sys.argv[1:]]))
