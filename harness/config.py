"""Hydra config composition for every command, and secret redaction for anything written to disk."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.io import UserError

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.I)


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


def redact(obj: Any) -> Any:
    """Copy of a config with values of secret-looking keys replaced (env var *names* are kept)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY.search(k) and not k.endswith("_env") and v not in (None, ""):
                out[k] = "***redacted***"
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def dump_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(redact(obj), sort_keys=False, allow_unicode=True)
