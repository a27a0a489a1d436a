"""harness train [hydra overrides...]: train one adapter into a self-describing run directory."""
from __future__ import annotations

import argparse

from harness.io import UserError

EPILOG = """Hydra overrides of conf/config.yaml, e.g.
  harness train model=smollm2_135m task=demo lora.r=16 train.lr=2e-4 train.epochs=3
  harness train model=tiny_random train.max_steps=20 run_dir=runs/smoke
  harness train quant=nf4            # QLoRA (needs bitsandbytes and a supported device)
The whole config is validated before training starts (a bad value names its key, exit 2).
A complete run with the same config is skipped; an interrupted one resumes from its last checkpoint."""


def main(argv: list[str]) -> int:
    from harness.cli import ArgumentParser

    ap = ArgumentParser(prog="harness train", description="Train one LoRA/QLoRA adapter.", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    ap.add_argument("--cfg", action="store_true", help="print the resolved (redacted) config and exit")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    bad = [a for a in args.overrides if "=" not in a]
    if bad:
        raise UserError(f"harness train: expected KEY=VALUE overrides, got {bad[0]!r} (see harness train --help)")
    from harness.config import compose, dump_yaml, to_dict
    from harness.preflight import validate_cfg

    cfg = to_dict(compose(args.overrides))
    if args.cfg:
        print(dump_yaml(cfg))
        return 0
    validate_cfg(cfg, args.overrides)
    from harness.train import train

    result = train(cfg)
    print(f"run {result.run_id}: {result.status} -> {result.run_dir}")
    return 0
