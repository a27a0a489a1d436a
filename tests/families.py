"""Tiny local model folders with other families' chat templates, stop tokens and names (issue #23).

Each is the tiny random llama (SmolLM2's tokenizer) copied into a folder with another chat template written
into its tokenizer: the templates are the real ones' text (Gemma's rejects the system role; older Mistral's
allows user/assistant only; Qwen3's tail adds an empty think block when enable_thinking is false).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
QWEN3_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}"
)
CHATML_TEMPLATE = (  # SmolLM2's / Qwen2's turn format without a default system prompt
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
BROKEN_TEMPLATE = "{{ raise_exception('This checkpoint is not a chat model') }}"


def family_model(base: Path, dest: Path, template: str | None, *, eos: str | None = None,
                 special: tuple[str, ...] = ()) -> Path:
    """A copy of the tiny model at `base` whose tokenizer has `template` (None: no chat template), eos token
    `eos` (also generation_config's eos), and extra special tokens `special` (embeddings resized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dest.exists():
        return dest
    shutil.copytree(base, dest)
    (dest / "chat_template.jinja").unlink(missing_ok=True)
    tok = AutoTokenizer.from_pretrained(str(base))
    if special:
        tok.add_special_tokens({"additional_special_tokens": list(special)})
        model = AutoModelForCausalLM.from_pretrained(str(base))
        model.resize_token_embeddings(len(tok))
        model.save_pretrained(str(dest), safe_serialization=True)
    if eos is not None:
        tok.eos_token = eos
    tok.chat_template = template
    tok.save_pretrained(str(dest))
    if template is None:
        (dest / "chat_template.jinja").unlink(missing_ok=True)
        cfg = json.loads((dest / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (dest / "tokenizer_config.json").write_text(json.dumps(cfg))
    if eos is not None:
        gpath = dest / "generation_config.json"
        gen = json.loads(gpath.read_text()) if gpath.is_file() else {}
        gen["eos_token_id"] = tok.convert_tokens_to_ids(eos)
        gpath.write_text(json.dumps(gen))
    return dest
