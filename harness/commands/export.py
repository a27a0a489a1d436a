"""`harness export RUN_DIR --format adapter|merged|gguf [--quant q8_0|f16|q4_k_m] --out DIR [--check-items N]`."""
from __future__ import annotations

import argparse
import json

from harness.io import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad flags are user errors: one line, exit 2
        raise UserError(f"harness export: {message} (see harness export --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="harness export",
        description="Export a finished run as a PEFT adapter (with model card), a merged safetensors model, or a GGUF "
                    "for llama.cpp. Atomic: a failed export leaves no --out directory.",
    )
    p.add_argument("run_dir", help="a finished run directory (status.json complete, adapter/ present)")
    p.add_argument("--format", dest="fmt", required=True, choices=["adapter", "merged", "gguf"])
    p.add_argument("--quant", default=None, choices=["q8_0", "f16", "q4_k_m"],
                   help="gguf: q8_0 (default), f16 or q4_k_m; merged: f16 saves fp16 weights (default fp32)")
    p.add_argument("--out", required=True, help="output directory (replaced atomically if it is a previous export)")
    p.add_argument("--check-items", type=int, default=20,
                   help="gguf: eval items for the llama.cpp-vs-adapter behaviour check (default 20)")
    p.add_argument("--tolerance", type=float, default=0.1,
                   help="gguf: pass if GGUF JSON validity >= adapter's - tolerance (default 0.1)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="gguf check: tokens to generate per item (default: the task's setting, else 128)")
    p.add_argument("--no-check", action="store_true", help="gguf: skip the behaviour check")
    p.add_argument("--json", action="store_true", help="print the export manifest as JSON")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from harness.export import export_run

    manifest = export_run(args.run_dir, args.fmt, args.out, quant=args.quant, check_items=args.check_items,
                          check=not args.no_check, tolerance=args.tolerance, max_new_tokens=args.max_new_tokens)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    else:
        print(f"{args.out}: {args.fmt} export of run {manifest['source_run_id']} "
              f"({len(manifest.get('files', {}))} files; manifest: {args.out}/export_manifest.json)")
        if manifest.get("merge", {}).get("note"):
            print(f"note: {manifest['merge']['note']}")
        chk = manifest.get("gguf_check") or {}
        if chk and not chk.get("skipped"):
            print(f"gguf check: JSON valid {chk['gguf_json_valid_rate']:.2f} vs adapter {chk['adapter_json_valid_rate']:.2f}, "
                  f"exact match {chk['exact_match_rate']:.2f} on {chk['n']} items: PASS")
    return 0
