"""How own models' chat templates are used (issue #23): system role, no template, template kwargs, end of turn,
stop tokens, names. Real tokenizers in tiny local model folders (tests/families.py)."""
from __future__ import annotations

import pytest

from harness.example import Example
from harness.io import UserError
from harness.models import load_tokenizer, model_display_name, resolve_model
from harness.prompts import chat_format, render_prompt, stop_token_ids, tokenize_for_training
from tests.families import (BROKEN_TEMPLATE, CHATML_TEMPLATE, GEMMA_TEMPLATE, MISTRAL_TEMPLATE, QWEN3_TEMPLATE,
                            family_model)

MSGS = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Ticket 7"}]


@pytest.fixture(scope="module")
def folders(tiny_spec, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {
        "gemma": family_model(tiny_spec.path, root / "gemma-tiny", GEMMA_TEMPLATE,
                              special=("<start_of_turn>", "<end_of_turn>")),
        "mistral": family_model(tiny_spec.path, root / "mistral-tiny", MISTRAL_TEMPLATE),
        "qwen3": family_model(tiny_spec.path, root / "qwen3-tiny", QWEN3_TEMPLATE, eos="<|endoftext|>"),
        "plain": family_model(tiny_spec.path, root / "plain-tiny", None),
        "broken": family_model(tiny_spec.path, root / "broken-tiny", BROKEN_TEMPLATE),
        "chatml": family_model(tiny_spec.path, root / "chatml-tiny", CHATML_TEMPLATE, eos="<|endoftext|>"),
    }


def tok_for(folder, **cfg):
    return load_tokenizer(resolve_model({"source": "hf", "path": str(folder), **cfg}))


def test_gemma_template_gets_the_system_prompt_merged_into_the_first_user_turn(folders):
    tok = tok_for(folders["gemma"])
    assert render_prompt(tok, MSGS).endswith(
        "<start_of_turn>user\nAnswer in JSON.\n\nTicket 7<end_of_turn>\n<start_of_turn>model\n")
    fmt = chat_format(tok)
    assert fmt.merge_system and any("rejects the system role" in n and "merged into the first user turn" in n
                                    for n in fmt.notes)


def test_gemma_few_shot_turns_alternate_after_the_merge(folders):
    tok = tok_for(folders["gemma"])
    shots = MSGS + [{"role": "assistant", "content": "{}"}, {"role": "user", "content": "Ticket 8"}]
    text = render_prompt(tok, shots)
    assert text.count("<start_of_turn>user") == 2 and "Answer in JSON.\n\nTicket 7" in text


def test_mistral_style_template_merges_the_system_prompt_too(folders):
    tok = tok_for(folders["mistral"])
    assert render_prompt(tok, MSGS).endswith("[INST] Answer in JSON.\n\nTicket 7 [/INST]")
    assert chat_format(tok).merge_system


def test_gemma_end_of_turn_is_the_templates_token_and_a_stop_token(folders):
    tok = tok_for(folders["gemma"])
    eot_id = tok.convert_tokens_to_ids("<end_of_turn>")
    assert chat_format(tok).end_of_turn == "<end_of_turn>"
    assert eot_id in stop_token_ids(tok) and tok.eos_token_id in stop_token_ids(tok)
    enc = tokenize_for_training(tok, Example(id="1", messages=[{"role": "user", "content": "x"},
                                                               {"role": "assistant", "content": "yes"}]))
    assert enc["input_ids"][-1] == eot_id and enc["labels"][-1] == eot_id


def test_no_chat_template_warns_and_uses_the_documented_fallback(folders):
    tok = tok_for(folders["plain"])
    fmt = chat_format(tok)
    assert not fmt.has_template and fmt.notes[0].startswith("warning:") and "no chat template" in fmt.notes[0]
    assert render_prompt(tok, MSGS) == "SYSTEM: Answer in JSON.\n\nUSER: Ticket 7\n\nASSISTANT: "


def test_a_template_that_cannot_format_a_conversation_is_a_user_error_at_load(folders):
    with pytest.raises(UserError, match="broken-tiny: its chat template cannot format a user turn.*not a chat model"):
        tok_for(folders["broken"])


def test_qwen3_template_gets_the_empty_think_block_by_default(folders):
    tok = tok_for(folders["qwen3"])
    assert render_prompt(tok, MSGS).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert chat_format(tok).template_kwargs == {"enable_thinking": False}


def test_chat_template_kwargs_from_the_model_config_reach_the_template_and_the_identity(folders):
    tok = tok_for(folders["qwen3"], chat_template_kwargs={"enable_thinking": True})
    assert render_prompt(tok, MSGS).endswith("<|im_start|>assistant\n")
    default = resolve_model({"source": "hf", "path": str(folders["qwen3"])})
    thinking = resolve_model({"source": "hf", "path": str(folders["qwen3"]), "chat_template_kwargs": {"enable_thinking": True}})
    assert default.identity != thinking.identity  # cached generations and run ids follow the prompt format


def test_default_kwargs_are_not_applied_to_a_template_without_the_key(folders):
    fmt = chat_format(tok_for(folders["chatml"]))
    assert fmt.template_kwargs == {} and fmt.notes == ()


def test_a_kwarg_the_template_does_not_use_is_said(folders):
    fmt = chat_format(tok_for(folders["chatml"], chat_template_kwargs={"reasoning": "high"}))
    assert fmt.template_kwargs == {} and "chat_template_kwargs.reasoning: not used" in fmt.notes[0]


def test_chat_template_kwargs_must_be_a_mapping(folders):
    with pytest.raises(UserError, match="model.chat_template_kwargs: expected a mapping"):
        resolve_model({"source": "hf", "path": str(folders["qwen3"]), "chat_template_kwargs": "enable_thinking"})


def test_stop_tokens_are_the_union_when_eos_differs_from_the_end_of_turn(folders):
    from transformers import GenerationConfig

    tok = tok_for(folders["chatml"])
    im_end, endoftext = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token == "<|endoftext|>" and chat_format(tok).end_of_turn == "<|im_end|>"
    gen = GenerationConfig.from_pretrained(str(folders["chatml"]))
    assert stop_token_ids(tok, gen) == {im_end, endoftext}
    enc = tokenize_for_training(tok, Example(id="1", messages=[{"role": "user", "content": "x"},
                                                               {"role": "assistant", "content": "yes"}]))
    assert enc["input_ids"][-1] == im_end  # training ends answers with the token generation stops on


@pytest.mark.parametrize("cfg, name", [
    ({"source": "hf", "path": "/models/Qwen3-0.6B/"}, "Qwen3-0.6B"),
    ({"source": "hf", "path": "HuggingFaceTB/SmolLM2-360M-Instruct"}, "SmolLM2-360M-Instruct"),
    ({"source": "gguf_file", "path": "/m/gemma-2-2b-it.Q4_0.gguf"}, "gemma-2-2b-it.Q4_0"),
    ({"source": "hf", "path": "/models/x", "name": "support-bot-base"}, "support-bot-base"),
    ({"source": "hf", "path": "/models/x", "name": None}, "x"),
])
def test_the_base_models_name_is_model_name_or_the_paths_last_part(cfg, name):
    assert model_display_name(cfg) == name


def test_conf_model_hf_names_no_model_hf():
    from harness.config import resolve_model_cfg

    assert resolve_model_cfg("hf").get("name") is None
    assert model_display_name({**resolve_model_cfg("hf"), "path": "/x/my-model"}) == "my-model"


# ----------------------------------------------------------------------------- data prepare --dedupe-eval


def _prepare_inputs(tmp_path):
    import json

    rec = lambda q, a: json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    (tmp_path / "train.jsonl").write_text("".join(rec(f"train question {i}", f"t{i}") + "\n" for i in range(12)))
    ev = [rec(f"eval question {i}", f"e{i}") for i in range(4)]
    (tmp_path / "eval.jsonl").write_text("\n".join([ev[0], ev[1], ev[2], ev[1], ev[3], ev[0]]) + "\n")
    return tmp_path / "train.jsonl", tmp_path / "eval.jsonl"


def test_prepare_refuses_repeated_eval_lines_and_names_the_flag(tmp_path, capsys):
    from harness.cli import main

    train, ev = _prepare_inputs(tmp_path)
    assert main(["data", "prepare", str(train), "--eval", str(ev), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{ev}:4, {ev}:6" in err and "pass --dedupe-eval to drop them" in err
    assert not (tmp_path / "out" / "eval.jsonl").exists()


def test_prepare_dedupe_eval_drops_exact_repeats_and_lists_them(tmp_path, capsys):
    import json

    from harness.cli import main

    train, ev = _prepare_inputs(tmp_path)
    assert main(["data", "prepare", str(train), "--eval", str(ev), "--out", str(tmp_path / "out"),
                 "--dedupe-eval"]) == 0
    out = capsys.readouterr().out
    assert f"dropped 2 exact repeat(s) from the eval set: {ev}:4 (repeats line 2), {ev}:6 (repeats line 1)" in out
    kept = [json.loads(x)["messages"][0]["content"] for x in (tmp_path / "out" / "eval.jsonl").read_text().splitlines()]
    assert kept == [f"eval question {i}" for i in range(4)]
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["params"]["dropped_eval_lines"] == [4, 6]
