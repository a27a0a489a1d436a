"""The judge's configuration: conf/judge/<name>.yaml composed with Hydra overrides, its model and its backend.

Secrets: a literal `judge.backend.api_key` (accepted for convenience, discouraged) is taken out of the
config before anything else sees it and handed to the backend through this process's environment
(JUDGE_API_KEY_ENV), so it is never in a config dict, a summary, a repr or an error text (the backend
and harness.config.redact_text scrub env-held keys).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.backends.base import BASE
from harness.config import compose, conf_dir, resolve_model_cfg
from harness.io import UserError, load_yaml_with_lines, read_json
from harness.judge.client import JudgeClient
from harness.judge.core import Judge, default_gen

DEFAULT_MIN_KAPPA = 0.4
JUDGE_API_KEY_ENV = "LORA_HARNESS_JUDGE_API_KEY"
SMALL_JUDGE_NOTE = ("note: a small judge (e.g. the default 135M model) calibrates near chance; treat its verdicts "
                    "as a smoke test, or point judge.backend at a stronger model (llama.cpp server, vLLM, OpenAI-compatible)")
_OVERRIDE = re.compile(r"^(~|\+{0,2})([^=]*)(=.*)?$", re.S)


def load_yaml(path: Path) -> Any:
    """A YAML file; anything unreadable is a UserError naming FILE:LINE (harness.io.load_yaml_with_lines)."""
    return load_yaml_with_lines(path)[0]


def plain_cfg(cfg: Any) -> dict:
    """A plain dict from a dict or an OmegaConf/Hydra DictConfig (interpolations resolved)."""
    if isinstance(cfg, dict):
        return cfg
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg or {})


def _as_judge_override(ov: str) -> tuple[str, str, str]:
    """(prefix, key, '=value') with a bare key (`max_items=5`) read as `judge.max_items=5`."""
    if "=" not in ov and not ov.startswith("~"):
        raise UserError(f"override {ov!r}: expected key=value (e.g. judge.max_items=10)")
    prefix, key, value = _OVERRIDE.match(ov).groups()  # type: ignore[union-attr]
    key = key.strip()
    if key != "judge" and not key.startswith("judge."):
        key = f"judge.{key}"
    return prefix, key, value or ""


def load_judge_cfg(spec: str | Path | None = None, overrides: Sequence[str] = ()) -> dict:
    """conf/judge/<name>.yaml (default: local) or a YAML file, with Hydra overrides (`judge.key=value`, `+`/`++`,
    `judge=NAME`; a bare `key=value` means `judge.key=value`). Composed through harness.config.compose, so
    every key a conf/judge file declares is settable without `+`."""
    parsed = [_as_judge_override(str(ov)) for ov in overrides]
    for _, key, value in parsed:
        if key == "judge":
            spec = value[1:]
    rest = [f"{p}{k}{v}" for p, k, v in parsed if k != "judge"]
    spec = str(spec or "local")
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UserError(f"{path}: judge config not found")
        return _file_cfg(path, rest)
    p = conf_dir() / "judge" / f"{spec}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in p.parent.glob("*.yaml")))
        raise UserError(f"{p}: judge config not found (known: {known})")
    cfg = plain_cfg(compose([f"judge={spec}", *rest]).judge)
    return _take_api_key(dict(cfg or {}))


def _file_cfg(path: Path, overrides: list[str]) -> dict:
    """A judge config from a YAML file outside conf/: the file, then the overrides (OmegaConf dot-list)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a judge config must be a YAML mapping")
    try:
        dots = [re.sub(r"^[+~]*judge\.", "", ov) for ov in overrides]
        cfg = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist(dots))
        return _take_api_key(plain_cfg(cfg))
    except OmegaConfBaseException as exc:
        raise UserError(f"{path}: {exc}".replace("\n", " ")) from None


def _take_api_key(cfg: dict) -> dict:
    """Move a literal backend.api_key out of the config into this process's environment (see module doc)."""
    b = cfg.get("backend")
    if isinstance(b, dict) and "api_key" in b:
        b = dict(b)
        key = b.pop("api_key")
        if key not in (None, ""):
            os.environ[JUDGE_API_KEY_ENV] = str(key)
            b["api_key_env"] = JUDGE_API_KEY_ENV
        cfg = {**cfg, "backend": b}
    return cfg


def resolve_judge_model_cfg(judge_cfg: dict, sweep_dir: Path | None = None) -> dict:
    """The judge's model config: judge.model through harness.config.resolve_model_cfg (a mapping, a conf/model
    name, a YAML path) or, for the openai backend, an endpoint's model name; null = the sweep's base model."""
    m = judge_cfg.get("model")
    if isinstance(m, str) and m and backend_cfg_of(judge_cfg).get("kind") == "openai" \
            and not (conf_dir() / "model" / f"{m}.yaml").is_file() and Path(m).suffix not in (".yaml", ".yml"):
        return {"name": m, "served_name": m}  # e.g. gpt-4o-mini, or the name a vLLM / llama.cpp server serves
    if m:
        return resolve_model_cfg(m)
    if sweep_dir is not None:
        sweep_dir = Path(sweep_dir)
        for cfg_path in sorted(sweep_dir.glob("runs/*/config.yaml")):
            try:
                c = load_yaml(cfg_path) or {}
            except UserError:
                continue
            if isinstance(c.get("model"), dict):
                return snapshot_model_cfg(c["model"])
        sj = sweep_dir / "sweep.json"
        if sj.is_file():
            name = (read_json(sj) or {}).get("model")
            if isinstance(name, dict):
                return snapshot_model_cfg(name)
            if isinstance(name, str) and (conf_dir() / "model" / f"{name}.yaml").is_file():
                return resolve_model_cfg(name)
    return resolve_model_cfg("smollm2_135m")


def snapshot_model_cfg(model: dict) -> dict:
    """A model config read from a sweep directory, possibly someone else's (#12, #22): the trust rule of
    harness.targets (no remote code; only the user's judge.model=... can turn it on)."""
    from harness.targets import trusted_model_cfg

    return trusted_model_cfg(model, [], "sweep")[0]


def backend_cfg_of(judge_cfg: dict) -> dict:
    """The judge backend's settings as make_backend takes them: a conf/backend name is loaded, null values
    mean "the backend's default" and are dropped, a literal api_key goes to the environment."""
    b = judge_cfg.get("backend") or {"kind": "hf"}
    if isinstance(b, str):
        p = conf_dir() / "backend" / f"{b}.yaml"
        if not p.is_file():
            raise UserError(f"{p}: judge.backend {b!r}: no such backend config")
        b = load_yaml(p)
    b = _take_api_key({"backend": dict(b)})["backend"]
    return {k: v for k, v in b.items() if v is not None}


def make_judge_backend(judge_cfg: dict, sweep_dir: Path | None = None) -> Any:
    from harness.backends.base import ServeSpec
    from harness.backends.registry import make_backend

    model_cfg = resolve_judge_model_cfg(judge_cfg, sweep_dir)
    return make_backend(backend_cfg_of(judge_cfg), ServeSpec(model_cfg, {}))


def judge_from_cfg(judge_cfg: dict, backend: Any, cache_path: Path | None,
                   log: Callable[[str], None] | None = None) -> Judge:
    client = JudgeClient(backend, cache_path, model_key=BASE, chunk_size=int(judge_cfg.get("chunk_size", 16)))
    return Judge(client, gen=default_gen(judge_cfg.get("gen")), retries=int(judge_cfg.get("retries", 2)),
                 retry_temperature=float(judge_cfg.get("retry_temperature", 0.7)),
                 max_chars=judge_cfg.get("max_chars", 4000), log=log)
