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


def dump_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(redact(obj), sort_keys=False, allow_unicode=True)
