"""config.py: redaction in both directions (secrets masked, settings kept), resolve_model_cfg; preflight.validate_cfg."""
from __future__ import annotations

import yaml

import pytest

from harness.config import (REDACTED, compose, dump_yaml, is_secret_key, redact, redact_overrides, redact_text,
                            to_dict)

KEY = "sk-proj-Zq9xW3vT7uY1pL5mN8bR2cK4"


# --------------------------------------------------------------------------- redaction: secrets go


@pytest.mark.parametrize("key", ["api_key", "API-KEY", "token", "hf_token", "wandb_api_key", "password", "secret",
                                 "authorization", "Authorization", "client_secret", "openai_api_key", "x-api-key"])
def test_secret_key_names_are_masked(key):
    assert redact({key: "hunter2-value"}) == {key: REDACTED}


def test_secret_shaped_values_are_masked_under_any_key():
    out = redact({"headers": {"X-Custom": KEY}, "note": f"use {KEY} here", "list": [KEY]})
    assert KEY not in repr(out)
    assert out["headers"]["X-Custom"] == REDACTED
    assert out["note"] == f"use {REDACTED} here"


def test_url_userinfo_is_masked_and_host_kept():
    out = redact({"base_url": "https://alice:s3cret@api.example.com:8443/v1"})
    assert out == {"base_url": "https://***@api.example.com:8443/v1"}


def test_key_pasted_into_an_env_name_field_is_masked():
    assert redact({"api_key_env": KEY}) == {"api_key_env": REDACTED}
    # a 40-hex wandb key (lower-case, many digits) is not an env var name either
    assert redact({"api_key_env": "0123456789abcdef0123456789abcdef01234567"}) == {"api_key_env": REDACTED}


def test_overrides_are_redacted_by_key_and_by_shape():
    got = redact_overrides([f"++judge.backend.api_key={KEY}", "judge.backend.api_key=plainpassword",
                            "backend.base_url=http://u:pw@127.0.0.1:9/v1", f"backend.api_key_env={KEY}",
                            f"+tracking.note={KEY}"])
    assert KEY not in " ".join(got) and "plainpassword" not in " ".join(got) and "u:pw" not in " ".join(got)
    assert got[0] == f"++judge.backend.api_key={REDACTED}"
    assert got[2] == "backend.base_url=http://***@127.0.0.1:9/v1"


def test_redact_text_masks_messages_and_env_secrets(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "opaque-value-without-shape-123")
    msg = ("TypeError: __init__() got {'api_key': 'hunter2hunter2'}; Authorization: Bearer abc.def.ghi123; "
           f"header {KEY}; env opaque-value-without-shape-123; url https://u:p@h/x")
    out = redact_text(msg)
    for secret in ("hunter2hunter2", "abc.def.ghi123", KEY, "opaque-value-without-shape-123", "u:p@"):
        assert secret not in out, (secret, out)
    assert "TypeError: __init__() got" in out and "https://***@h/x" in out


# --------------------------------------------------------------------------- redaction: settings stay


def test_token_settings_are_not_redacted():
    cfg = {"max_new_tokens": 128, "min_new_tokens": 1, "max_num_batched_tokens": 8192, "eos_token": "<|im_end|>",
           "pad_token": "<pad>", "api_key_env": "OPENAI_API_KEY", "hf_token_env": "HF_TOKEN", "tokenizer": "x",
           "api_key": None, "base_url": "http://127.0.0.1:8000/v1", "model_names": {"base": "sk-model"}}
    assert redact(cfg) == cfg
    assert not is_secret_key("max_new_tokens") and not is_secret_key("num_tokens") and is_secret_key("hf_token")


def test_ordinary_text_and_overrides_are_unchanged():
    texts = ["max token limit exceeded for this request", "Basic auth is off", "a git sha 0123456789abcdef0123456789",
             "gen.max_new_tokens=64", "backend.api_key_env=MY_KEY_NAME", "lora.r=16,32", "password=None"]
    assert [redact_text(t) for t in texts] == texts
    assert redact_overrides(texts[3:6]) == texts[3:6]


def test_composed_config_round_trips_through_dump_yaml():
    """The run snapshot is re-read by `harness eval RUN_DIR`: every generation setting must survive."""
    cfg = to_dict(compose(["judge=openai", "backend=openai", f"++backend.api_key={KEY}"]))
    text = dump_yaml(cfg)
    assert KEY not in text
    back = yaml.safe_load(text)
    assert back["judge"]["gen"]["max_new_tokens"] == cfg["judge"]["gen"]["max_new_tokens"]
    assert back["backend"]["api_key_env"] == "OPENAI_API_KEY"
    assert back["backend"]["api_key"] == REDACTED


# --------------------------------------------------------------------------- validate_cfg, resolve_model_cfg

from harness.config import resolve_model_cfg  # noqa: E402
from harness.io import UserError  # noqa: E402
from harness.preflight import validate_cfg  # noqa: E402


def _validate(overrides):
    ov = ["model=tiny_random", *overrides]
    validate_cfg(to_dict(compose(ov)), ov)


def test_default_configs_validate():
    _validate([])
    _validate(["judge=local", "backend=llamacpp"])
    _validate(["judge=openai", "backend=openai", "eval.probes=null"])


@pytest.mark.parametrize("override,needle", [
    ("model.dtype=fp64", "model.dtype: unknown value 'fp64'"),
    ("train.batch_size=0", "train.batch_size: must be >= 1, got 0 (command line)"),
    ("train.lr=abc", "train.lr: must be a number, got 'abc'"),
    ("train.lr_scheduler=cosinus", "train.lr_scheduler: unknown value 'cosinus'"),
    ("lora.r=0", "lora.r: must be >= 1"),
    ("backend.kind=tensorrt", "backend.kind: unknown backend 'tensorrt' (known: hf, llamacpp, openai, vllm)"),
    ("++backend.bogus_option=1", "backend.bogus_option: unknown option for the hf backend"),
    ("judge.max_items=lots", "judge.max_items: must be an integer, got 'lots'"),
    ("++judge.backend.nonsense=1", "judge.backend.nonsense: unknown option"),
    ("eval.probes=no_such_set", "eval.probes: "),
    ("++eval.select_by=bleu", "eval.select_by: 'bleu' is neither val_loss nor a metric of task 'demo'"),
    ("task.name=no_such_task", "task: unknown task 'no_such_task'"),
    ("model.source=s3", "model.source: unknown value 's3'"),
])
def test_bad_values_name_their_key(override, needle):
    extra = ["judge=local"] if override.startswith(("judge.", "++judge.")) else []
    with pytest.raises(UserError) as info:
        _validate(extra + [override])
    assert needle in str(info.value), str(info.value)


def test_missing_model_path_is_named(tmp_path):
    with pytest.raises(UserError, match=r"model.path: not found: /definitely/not/here"):
        validate_cfg(to_dict(compose(["model=hf", "model.path=/definitely/not/here"])))
    with pytest.raises(UserError, match=r"model.path: required for model.source=hf"):
        validate_cfg(to_dict(compose(["model=hf"])) | {"model": {"source": "hf", "path": "???"}})
    validate_cfg(to_dict(compose(["model=hf", "model.path=HuggingFaceTB/SmolLM2-135M-Instruct"])))  # a hub id


def test_unknown_metric_in_the_task_is_reported_with_file_and_line(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    row = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}\n'
    (d / "eval.jsonl").write_text("".join(row % i for i in range(3)))
    (d / "task.yaml").write_text("name: t\ndata: {eval: eval.jsonl}\nmetrics:\n  - name: exact_match\n"
                                 "  - name: blue_score\nprimary_metric: exact_match\n")
    with pytest.raises(UserError, match=r"task.yaml:5: metrics\[1\].name: unknown metric 'blue_score'"):
        _validate([f"task.path={d / 'task.yaml'}"])


def test_resolve_model_cfg_is_the_one_resolver(tmp_path):
    assert resolve_model_cfg("tiny_random")["source"] == "tiny_random"
    assert resolve_model_cfg({"name": "x", "source": "hf"}) == {"name": "x", "source": "hf"}
    p = tmp_path / "m.yaml"
    p.write_text("name: mine\nsource: tiny_random\n")
    assert resolve_model_cfg(str(p))["name"] == "mine"
    with pytest.raises(UserError, match=r"unknown model 'nope' \(known: .*tiny_random"):
        resolve_model_cfg("nope")
    p.write_text("- a list\n")
    with pytest.raises(UserError, match=r"m\.yaml:1: expected a mapping"):
        resolve_model_cfg(str(p))
    p.write_text("name: [\n")
    with pytest.raises(UserError, match=r"m\.yaml:\d+: invalid YAML"):
        resolve_model_cfg(str(p))


@pytest.mark.parametrize("override,needle", [
    ("judge.rubric=no_such_rubric", "judge.rubric: "),
    ("gate.checks=[{metric: json_valid, mni: 0.5}]", "gate: "),
    ("tracking.wandb=maybe", "tracking.wandb: unknown value 'maybe'"),
    ("model.package=no_such_pkg_xyz", "model.package: python package 'no_such_pkg_xyz' is not installed"),
])
def test_judge_rubrics_gate_and_tracking_are_checked_before_training(override, needle):
    extra = ["judge=local"] if override.startswith("judge.") else []
    with pytest.raises(UserError) as info:
        validate_cfg(to_dict(compose(["model=smollm2_135m", *extra, override])))
    assert needle in str(info.value), str(info.value)


def test_a_sweep_file_sets_top_level_settings_and_the_command_line_still_wins():
    """conf/sweep/demo.yaml turns pruning on: a sweep file's `sweep:` block is not overridden by conf/config.yaml."""
    from harness.config import to_dict

    demo = to_dict(compose(["sweep=demo"]))
    assert demo["sweep"]["prune"]["enabled"] is True and demo["sweep"]["prune"]["min_step"] == 8
    assert demo["eval"]["probes"] == "fast" and demo["lora"]["r"] == 16 and demo["lora"]["alpha"] == 32
    assert to_dict(compose([]))["sweep"]["prune"]["enabled"] is False
    assert to_dict(compose(["sweep=demo", "sweep.prune.enabled=false"]))["sweep"]["prune"]["enabled"] is False
