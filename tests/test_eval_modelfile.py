"""The Ollama Modelfile written with a GGUF export: its TEMPLATE, rendered by a small Go-template renderer
(the constructs harness.ollama emits), equals our prompt formatter's text on real task messages."""
from __future__ import annotations

import re

import pytest

from harness.io import UserError
from harness.ollama import chat_wrappers, go_template, modelfile
from harness.prompts import build_messages, render_prompt
from harness.tasks import build_few_shot, load_task

from conftest import REPO, TINY_CFG

_TAG = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)


def _parse(src: str):
    """Go template subset -> tree: text, {{ .X }}, {{ if COND }}..{{ else }}..{{ end }}, {{ range .Messages }}..{{ end }}."""
    tokens, pos = [], 0
    for m in _TAG.finditer(src):
        if m.start() > pos:
            tokens.append(("text", src[pos:m.start()]))
        tokens.append(("tag", m.group(1)))
        pos = m.end()
    if pos < len(src):
        tokens.append(("text", src[pos:]))

    def block(i, stop):
        out = []
        while i < len(tokens):
            kind, val = tokens[i]
            if kind == "tag" and val in stop:
                return out, i
            if kind == "text":
                out.append(("text", val))
            elif val.startswith("if "):
                then, i = block(i + 1, ("else", "end"))
                other = []
                if tokens[i][1] == "else":
                    other, i = block(i + 1, ("end",))
                out.append(("if", val[3:], then, other))
            elif val.startswith("range "):
                body, i = block(i + 1, ("end",))
                out.append(("range", val[6:], body))
            elif val.startswith("."):
                out.append(("var", val[1:]))
            else:
                raise ValueError(f"unsupported construct {{{{ {val} }}}}")
            i += 1
        if stop:
            raise ValueError(f"missing {stop}")
        return out, i

    return block(0, ())[0]


def _cond(expr: str, dot: dict) -> bool:
    m = re.fullmatch(r'(eq|ne) \.(\w+) "([^"]*)"', expr)
    if m:
        return (dot.get(m.group(2)) == m.group(3)) == (m.group(1) == "eq")
    m = re.fullmatch(r"\.(\w+)", expr)
    if m:
        return bool(dot.get(m.group(1)))
    raise ValueError(f"unsupported condition {expr!r}")


def render_go(src: str, data: dict) -> str:
    def run(nodes, dot):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "var":
                out.append(str(dot.get(n[1], "")))
            elif n[0] == "if":
                out.append(run(n[2] if _cond(n[1], dot) else n[3], dot))
            else:
                out.extend(run(n[2], item) for item in dot.get(n[1][1:], []))
        return "".join(out)

    return run(_parse(src), data)


def ollama_render(template: str, messages: list[dict]) -> str:
    """What Ollama renders: .System = the system messages joined, .Messages = every message (incl. system)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return render_go(template, {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]}
                                                               for m in messages]})


def test_renderer_itself():
    assert render_go('{{ if .System }}S:{{ .System }}{{ else }}none{{ end }}|{{ range .Messages }}'
                     '{{ if eq .Role "user" }}U{{ .Content }}{{ end }}{{ end }}',
                     {"System": "", "Messages": [{"Role": "user", "Content": "1"}, {"Role": "x", "Content": "2"}]}) \
        == "none|U1"
    with pytest.raises(ValueError):
        render_go("{{ upper .System }}", {})


@pytest.fixture(scope="module")
def tok():
    from harness.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(TINY_CFG))  # SmolLM2's tokenizer and chat template


def test_template_matches_prompt_formatter_on_demo_task(tok):
    task = load_task(REPO / "evalsets" / "demo" / "task.yaml")
    ev = task.load_split("eval")[:3]
    shots = build_few_shot(task.load_split("train"), task.load_split("eval"), 3, 0)
    template = go_template(chat_wrappers(tok))
    cases = [build_messages(ex, system_prompt=task.system_prompt, prompt_template=task.prompt_template) for ex in ev]
    cases.append(build_messages(ev[0], system_prompt=task.system_prompt, prompt_template=task.prompt_template,
                                few_shot=shots))  # multi-turn: system, 3 x (user, assistant), user
    cases.append(build_messages(ev[1], system_prompt=None, prompt_template=task.prompt_template))  # no system turn
    for msgs in cases:
        assert ollama_render(template, msgs) == render_prompt(tok, msgs)
    assert "You are a helpful AI assistant named SmolLM" in ollama_render(template, cases[-1])  # SmolLM2's default


def test_modelfile_fields(tok):
    text = modelfile("m.q8_0.gguf", tok, system_prompt="Classify the ticket.\nJSON only.")
    assert text.splitlines()[1] == "FROM ./m.q8_0.gguf"
    tmpl = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)
    assert tmpl == go_template(chat_wrappers(tok))
    assert re.findall(r'^PARAMETER stop "(.*)"$', text, re.M) == ["<|im_end|>"]
    assert re.search(r'^SYSTEM """(.*?)"""$', text, re.S | re.M).group(1) == "Classify the ticket.\nJSON only."
    assert "SYSTEM" not in modelfile("m.gguf", tok, system_prompt=None)
    with pytest.raises(UserError, match='"""'):
        modelfile("m.gguf", tok, system_prompt='say """hi"""')


def test_unsupported_template_is_refused(tok):
    import copy

    t = copy.copy(tok)
    t.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
                       "{% if m['role'] == 'user' %} ||{% else %} ##{% endif %}\n{% endfor %}"
                       "{% if add_generation_prompt %}assistant:{% endif %}")
    with pytest.raises(UserError, match="cannot be expressed as an Ollama TEMPLATE"):
        chat_wrappers(t)
