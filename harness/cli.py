"""`harness` entry point: dispatches `harness <command> ...` to harness.commands.<command>.main(argv).

Each command module owns its own argument parsing so stages stay independent.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "data": "Validate and clean training/eval data (check, prepare)",
    "tasks": "List and validate task definitions in evalsets/",
    "train": "Train one LoRA/QLoRA adapter (Hydra overrides)",
    "sweep": "Train a grid of adapters, evaluate all, write a report (Hydra multirun)",
    "eval": "Generate and score base, few-shot and adapters for a run or sweep dir",
    "judge": "LLM-as-judge: score, pairwise, calibrate",
    "report": "Write report.md and report.html for a sweep dir",
    "gate": "Exit non-zero when a sweep misses its thresholds (for CI)",
    "export": "Export a run as adapter, merged model or GGUF",
}


class ArgumentParser(argparse.ArgumentParser):
    """The one argument parser of every `harness` command: a usage error raises UserError (one line on
    stderr, exit 2, no traceback) instead of argparse's sys.exit. Use parser_class=ArgumentParser for
    subparsers too."""

    def error(self, message: str):  # never sys.exit from inside harness.cli.main
        from harness.io import UserError

        raise UserError(f"{self.prog}: {message}")


def _redact_process_argv() -> None:
    """Whatever records sys.argv later (wandb metadata, run manifests, launchers' logs) sees credentials
    masked; the command itself runs on the original arguments, which main() has already copied."""
    from harness.config import redact_overrides

    sys.argv[1:] = redact_overrides(sys.argv[1:])


def _usage() -> str:
    lines = ["usage: harness <command> [args...]", "", "commands:"]
    lines += [f"  {name:<8} {desc}" for name, desc in COMMANDS.items()]
    lines += ["", "Run `harness <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = list(sys.argv[1:])
        _redact_process_argv()
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from harness import __version__

        print(__version__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"harness: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from harness.config import redact_text
    from harness.io import UserError

    try:
        module = importlib.import_module(f"harness.commands.{cmd.replace('-', '_')}")
        rc = module.main(rest)
    except UserError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: completed work is saved; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from harness.backends.base import BackendError

        if isinstance(exc, BackendError):  # a server that cannot serve: one line, finished work stays cached
            print(f"error: {redact_text(str(exc))} (finished generations are cached: re-run the same command "
                  "to resume)", file=sys.stderr)
            return 2
        import traceback  # a bug: keep the traceback for the report, never a credential inside it

        print(redact_text(traceback.format_exc()), file=sys.stderr, end="")
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
