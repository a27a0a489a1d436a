"""`harness export RUN_DIR --format adapter|merged|gguf [--quant q8_0|f16|q4_k_m] --out DIR [--check-items N]`."""
from __future__ import annotations

import json

from harness.cli import ArgumentParser


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="harness export",
        description="Export a finished run as a PEFT adapter (with model card), a merged safetensors model, or a GGUF "
                    "for llama.cpp / Ollama (with a Modelfile). Atomic: a failed export leaves no --out directory.",
    )
    p.add_argument("run_dir", help="a finished run directory (status.json complete, adapter/ present)")
    p.add_argument("--format", dest="fmt", required=True, choices=["adapter", "merged", "gguf"])
    p.add_argument("--quant", default=None, choices=["q8_0", "f16", "q4_k_m", "f32"],
                   help="gguf: q8_0 (default), f16, q4_k_m or f32 (lossless); merged: f16 saves fp16 weights "
                        "(default f32)")
    p.add_argument("--out", required=True, help="output directory (replaced atomically if it is a previous export)")
    p.add_argument("--check-items", type=int, default=20,
                   help="gguf: eval items on which adapter, merged model and GGUF are scored with the task's metrics "
                        "(default 20)")
    p.add_argument("--tolerance", type=float, default=0.1,
                   help="gguf: pass if the merged model's and the GGUF's mean primary metric >= the adapter's - "
                        "tolerance (default 0.1)")
    p.add_argument("--no-check", action="store_true", help="gguf: skip the behaviour check")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the base model's own code (never taken from the run directory's config)")
    p.add_argument("--json", action="store_true", help="print the export manifest as JSON")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from harness.export import check_line, export_run

    manifest = export_run(args.run_dir, args.fmt, args.out, quant=args.quant, check_items=args.check_items,
                          check=not args.no_check, tolerance=args.tolerance, trust_remote_code=args.trust_remote_code)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    else:
        print(f"{args.out}: {args.fmt} export of run {manifest['source_run_id']} "
              f"({len(manifest.get('files', {}))} files; manifest: {args.out}/export_manifest.json)")
        if manifest.get("merge", {}).get("note"):
            print(f"note: {manifest['merge']['note']}")
        chk = manifest.get("gguf_check") or {}
        if chk and not chk.get("skipped"):
            print(f"gguf check: {check_line(chk)}")
        if (manifest.get("modelfile") or {}).get("written"):
            print(f"ollama: ollama create NAME -f {args.out}/Modelfile")
    return 0
