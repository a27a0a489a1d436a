"""Own models end to end (issue #23): a Gemma-style template through `harness sweep`, a template that cannot
work stops the sweep before training, stop tokens and Qwen3's think block in what trains and what serves."""
from __future__ import annotations

import json

import pytest

from harness.cli import main as cli
from tests.families import BROKEN_TEMPLATE, CHATML_TEMPLATE, GEMMA_TEMPLATE, QWEN3_TEMPLATE, family_model
from tests.toy_task import write_toy_task

COMMON = ["tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.max_steps=2", "train.eval_every=2",
          "train.precision=fp32", "eval.max_eval=4", "eval.probes=null", "gate=none"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_task(tmp_path_factory.mktemp("toy"), n_train=16, n_val=4, n_eval=4)  # few_shot k: 2


@pytest.fixture(scope="module")
def gemma_sweep(tiny_spec, toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("gemma")
    model = family_model(tiny_spec.path, root / "gemma-tiny", GEMMA_TEMPLATE, special=("<start_of_turn>", "<end_of_turn>"))
    rc = cli(["sweep", *COMMON, "model=hf", f"model.path={model}", f"task.path={toy}", f"output_root={root}",
              "sweep_name=s"])
    return rc, root / "s"


def test_sweep_on_a_gemma_template_finishes(gemma_sweep):
    rc, sweep = gemma_sweep
    assert rc == 0
    assert [r["status"] for r in json.loads((sweep / "sweep.json").read_text())["runs"]] == ["complete"]


def test_gemma_system_merge_is_said_in_the_train_log_and_the_summary(gemma_sweep):
    _, sweep = gemma_sweep
    run = json.loads((sweep / "sweep.json").read_text())["runs"][0]
    log = (sweep / run["run_dir"] / "train.log").read_text()
    assert log.count("merged into the first user turn") == 1
    summary = json.loads((sweep / "scores" / "summary.json").read_text())
    assert summary["prompt_format"]["system_merged_into_user"] is True
    assert any("rejects the system role" in n for n in summary["prompt_format"]["notes"])


def test_gemma_system_merge_is_said_in_the_report(gemma_sweep):
    _, sweep = gemma_sweep
    md = (sweep / "report" / "report.md").read_text()
    assert md.count("the system prompt is merged into the first user turn") == 1


def test_the_base_model_is_named_by_its_folder_in_sweep_manifest_and_report(gemma_sweep):
    _, sweep = gemma_sweep
    doc = json.loads((sweep / "sweep.json").read_text())
    assert doc["model"] == "gemma-tiny"
    manifest = json.loads((sweep / doc["runs"][0]["run_dir"] / "manifest.json").read_text())
    assert manifest["base_model"]["name"] == "gemma-tiny"
    md = (sweep / "report" / "report.md").read_text()
    assert "base model `gemma-tiny`" in md and "base model `hf`" not in md


def test_the_tasks_own_few_shot_k_wins_over_conf_eval(gemma_sweep):
    _, sweep = gemma_sweep
    assert json.loads((sweep / "scores" / "summary.json").read_text())["few_shot"]["k"] == 2  # toy task: k 2


def test_eval_few_shot_k_on_the_command_line_wins_over_the_task():
    from harness.config import compose, to_dict

    assert to_dict(compose(["model=tiny_random"]))["eval"]["few_shot_k"] is None
    assert to_dict(compose(["model=tiny_random", "eval.few_shot_k=5"]))["eval"]["few_shot_k"] == 5


def test_a_template_that_cannot_format_stops_the_sweep_before_training(tiny_spec, toy, tmp_path, capsys):
    model = family_model(tiny_spec.path, tmp_path / "broken-tiny", BROKEN_TEMPLATE)
    rc = cli(["sweep", *COMMON, "model=hf", f"model.path={model}", f"task.path={toy}", f"output_root={tmp_path}",
              "sweep_name=s"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "its chat template cannot format" in err and "Traceback" not in err
    assert not (tmp_path / "s" / "runs").exists() and not (tmp_path / "s" / "scores").exists()


def test_training_ends_answers_with_the_stop_token_when_eos_differs(tiny_spec, toy, tmp_path):
    """Tokenizer eos <|endoftext|>, template end of turn <|im_end|>: the adapter learns to end with <|im_end|>
    and generation stops on both."""
    from harness.backends.base import ServeSpec
    from harness.backends.hf import HFBackend
    from harness.models import load_tokenizer, resolve_model
    from harness.train_data import encode, load_train_data

    model = family_model(tiny_spec.path, tmp_path / "chatml-tiny", CHATML_TEMPLATE, eos="<|endoftext|>")
    assert cli(["train", "model=hf", f"model.path={model}", f"task.path={toy}", f"run_dir={tmp_path / 'run'}",
                "tracking.wandb=disabled", "train.max_steps=1", "train.precision=fp32"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    mcfg = {"source": "hf", "path": str(model)}
    tok = load_tokenizer(resolve_model(mcfg))
    im_end, endoftext = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert manifest["prompt_format"]["end_of_turn"] == "<|im_end|>"
    assert manifest["prompt_format"]["stop_token_ids"] == sorted({im_end, endoftext})
    data = load_train_data({"path": str(toy)}, 0, 0.1)
    assert all(e["input_ids"][-1] == im_end for e in encode(tok, data.train, data, 512, True))
    backend = HFBackend(ServeSpec(model_cfg=mcfg, adapters={"a": tmp_path / "run" / "adapter"}), device="cpu")
    assert {im_end, endoftext} <= backend._eos_ids


def test_qwen3_think_block_is_in_the_train_and_the_serve_prompt(tiny_spec, tmp_path):
    from harness.backends.base import ServeSpec
    from harness.backends.hf import HFBackend
    from harness.example import Example
    from harness.models import load_tokenizer, resolve_model
    from harness.prompts import build_messages, tokenize_for_training

    model = family_model(tiny_spec.path, tmp_path / "qwen3-tiny", QWEN3_TEMPLATE, eos="<|endoftext|>")
    mcfg = {"source": "hf", "path": str(model), "chat_template_kwargs": {"enable_thinking": False}}
    tok = load_tokenizer(resolve_model(mcfg))
    ex = Example(id="1", messages=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}))
    think = "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert think + "ok<|im_end|>" in tok.decode(tokenize_for_training(tok, ex)["input_ids"])
    backend = HFBackend(ServeSpec(model_cfg=mcfg, adapters={}), device="cpu")
    assert backend.tokenizer.decode(backend._prompt_ids(build_messages(ex))).endswith(think)


def test_exported_adapter_card_names_the_base_and_its_template_kwargs(tiny_spec, toy, tmp_path):
    model = family_model(tiny_spec.path, tmp_path / "qwen3-tiny", QWEN3_TEMPLATE, eos="<|endoftext|>")
    assert cli(["train", "model=hf", f"model.path={model}", f"task.path={toy}", f"run_dir={tmp_path / 'run'}",
                "tracking.wandb=disabled", "train.max_steps=1", "train.precision=fp32"]) == 0
    assert cli(["export", str(tmp_path / "run"), "--format", "adapter", "--out", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- name: `qwen3-tiny`" in card
    assert "add_generation_prompt=True, enable_thinking=False)" in card
    assert "answers end with `<|im_end|>`" in card


def test_a_template_that_cannot_format_stops_train_before_the_run_dir(tiny_spec, toy, tmp_path, capsys):
    model = family_model(tiny_spec.path, tmp_path / "broken-tiny", BROKEN_TEMPLATE)
    rc = cli(["train", "model=hf", f"model.path={model}", f"task.path={toy}", f"run_dir={tmp_path / 'run'}",
              "tracking.wandb=disabled", "train.max_steps=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "its chat template cannot format" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
