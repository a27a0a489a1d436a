"""harness tasks [--validate PATH] [--metrics]: list task definitions, or validate one task.yaml."""
from __future__ import annotations

import sys

from harness.cli import ArgumentParser
from harness.io import UserError


def _count_lines(path) -> int:
    if path is None:
        return 0
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def main(argv: list[str]) -> int:
    ap = ArgumentParser(prog="harness tasks", description="List task definitions (evalsets/<task>/task.yaml) "
                                 "with version, split sizes and metrics; exit 2 naming file and key when one is broken.")
    ap.add_argument("--validate", metavar="PATH", help="validate one task (a task.yaml, its folder, or a task name)")
    ap.add_argument("--metrics", action="store_true", help="list the available metrics and their options")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    from harness.tasks import list_task_files, load_task

    if args.metrics:
        from harness.metrics import METRICS

        for name, m in METRICS.items():
            opts = ", ".join(m.options) or "-"
            print(f"{name:<20} {m.description}  [options: {opts}]")
        return 0

    if args.validate:
        task = load_task(args.validate)  # UserError -> exit 2 via the CLI
        sizes = {s: len(task.load_split(s)) for s in ("train", "val", "eval") if task.has_split(s)}
        print(f"ok: {task.name} v{task.version} ({task.path}): "
              + ", ".join(f"{s}={n}" for s, n in sizes.items())
              + f"; metrics: {', '.join(task.metric_names())}; primary: {task.primary_metric}")
        return 0

    files = list_task_files()
    if not files:
        print("no tasks found (expected evalsets/<name>/task.yaml)")
        return 0
    errors = []
    print(f"{'task':<16} {'version':<8} {'train':>6} {'val':>6} {'eval':>6}  primary / metrics")
    for f in files:
        try:
            t = load_task(f)
            n = {s: _count_lines(t.data[s]) for s in ("train", "val", "eval")}
        except UserError as exc:
            errors.append(str(exc))
            print(f"{f.parent.name:<16} BROKEN  {exc}")
            continue
        print(f"{t.name:<16} {t.version:<8} {n['train']:>6} {n['val']:>6} {n['eval']:>6}  "
              f"{t.primary_metric} / {', '.join(s.get('as') or s['name'] for s in t.metrics)}")
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
