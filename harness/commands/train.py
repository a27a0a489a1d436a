"""harness train [hydra overrides...]: train one adapter into a self-describing run directory."""
from __future__ import annotations

import sys

USAGE = """usage: harness train [KEY=VALUE ...]

Hydra overrides of conf/config.yaml, e.g.
  harness train model=smollm2_135m task=demo lora.r=16 train.lr=2e-4 train.epochs=3
  harness train model=tiny_random train.max_steps=20 run_dir=runs/smoke
  harness train quant=nf4            # QLoRA (needs bitsandbytes and a supported device)
A complete run with the same config is skipped; an interrupted one resumes from its last checkpoint.
Use --cfg to print the resolved config and exit."""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    from harness.config import compose, dump_yaml, to_dict
    from harness.train import train

    show = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    bad = [a for a in overrides if "=" not in a]
    if bad:
        print(f"error: expected KEY=VALUE overrides, got {bad[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    cfg = to_dict(compose(overrides))
    if show:
        print(dump_yaml(cfg))
        return 0
    result = train(cfg)
    print(f"run {result.run_id}: {result.status} -> {result.run_dir}")
    return 0
