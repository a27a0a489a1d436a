"""Teacher-forced likelihood measures on a loaded base model and its adapters (issue #21, items 3 and 4): no
generation, so they are cheap, need no labels (drift) and cannot be gamed by the answer's shape (MC).

Drift (`drift`): per-token KL(base || adapter) of the next-token distributions along the base model's own
greedy probe answer (the chat-templated prompt exactly as generation tokenized it, then the answer text and the
end-of-turn token, tokenized as training tokenizes a target: harness.prompts). A prompt's value is the mean KL
over its answer positions (including the one that predicts the end of the answer), summed over the vocabulary
in float64 (identical logits give exactly 0; tiny negative round-off is clamped to 0). Per family and overall:
mean with a percentile-bootstrap CI over prompts (harness.stats.bootstrap_ci).

Multiple-choice probes (`score_mc`), scored as lm-evaluation-harness scores ARC/HellaSwag, as a continuation of a
fixed cue, never with an end-of-sequence: an item {"id", "family", "messages", "choices": [str, ...], "answer": index,
["kind"]}; a choice's score is log P(" " + choice | chat-templated prompt + ANSWER_CUE), summed over its tokens (cue
and choice tokenized together, as training tokenizes an answer, and split where the cue's own tokens end). Scoring
P(choice + end-of-turn) right after the assistant tag measured the answer's FORM: a base model that answers in
sentences put little mass on "Paris<end>" for every choice, its argmax was noise, and a terse adapter looked smarter.
The cue "The answer is:" reads as a sentence before every family's answer (a sum, a capital, a passage's name,
yes/no), starts as a model answering in sentences starts, and ends where the answer comes next: SmolLM2-135M
continues "The answer is" with ":" (p ~0.5), and after the bare phrase it scored every capital near -10 (0.73 right
on capitals, 1.00 with the colon; lm-eval's "Answer:" scored the same within noise but reads as a form field).
Without the end token a choice that is a prefix of another ("8" vs "85") could never lose to it: validate_mc
refuses such items (make_mc_probes.py never makes them). pass (acc) = the argmax of the sums is `answer`;
pass_norm (acc_norm) = the argmax of sum / len(choice in characters), as lm-eval normalises; ties -> lowest index.

Speed (2 CPU cores, SmolLM2-135M): one forward per model per prompt, never one per (prompt, choice): the
choices of an item are packed after its prompt in one row, each attending to the prompt and to itself only
(a 4-D attention mask, positions restarting after the prompt), which computes exactly what separate
forwards compute; the prompt prefix every row shares (system prompt, chat markers) runs once per model and
its K/V is reused; logits are computed only where a continuation token is predicted. Base passes run with the
adapters disabled; an adapter pass runs with the adapter merged into a copy of the weights it touches (as fast
as the base; PEFT's unmerged forward cost ~35% more), the base's own tensors put back afterwards.

Cost (bench/likelihood_time.py; SmolLM2-135M, 2 threads, AVX-512 box): tokens fed per model: mc.jsonl 10.7k (360
items), mc_fast.jsonl 5.8k (180), drift on the 160 fast probes 8.1k; the packed forward runs at ~0.83x a plain
decoder forward (~600 tokens/s idle), so base + one adapter take ~43 s (mc), ~23 s (mc_fast), ~32 s (drift) idle,
each further adapter half of that; AVX2-only machines are ~2.5x slower. At load 3-6: 118-173 s for mc.

`measure(scores_dir, model_cfg, adapters, probe_items, mc_items, scores_path=...)` reads the base model's probe
answers from scores_path (the evaluation's scores.jsonl: rows model "base", split "probe", no error) and writes,
via harness.io (atomic replace of the file, never writing through a symlink):

  mc_scores.jsonl  one row per (model, MC item), models "base" then each adapter, items in file order:
                   {"model", "split": "mc", "sample_id", "family", "kind", "answer", "choice", "choice_norm",
                    "logprobs": [sum per choice], "chars": [len per choice], "tokens": [tokens per choice],
                    "metrics": {"pass": 0.0|1.0, "pass_norm": 0.0|1.0}}
                   (shaped like scores.jsonl rows: pair base and adapter on sample_id, compare metrics.pass)
  drift.json       written last (its hashes mark mc_scores.jsonl complete):
                   {"version", "inputs_hash" (drift inputs), "mc_inputs_hash" (MC inputs), "alpha", "n_boot",
                    "seed", "n_prompts", "skipped_prompts": [probe ids without a usable base answer],
                    "drift": {adapter: {"families": {family: {"mean", "lo", "hi", "n"}}, "all": {...},
                                        "per_prompt": {probe_id: mean KL}}},
                    "mc": {model: {"families": {family: {"pass", "pass_norm", "n"}}, "all": {...}}},
                    "identities": {model: identity}, "timing_s": {"load", "drift", "mc"}}
A re-run with the same inputs (model and adapter identities, prompts, base answers, MC items, CI settings)
returns drift.json without loading a model; a changed MC set recomputes MC only.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness import control_tokens
from harness.backends.base import BASE, adapter_identity, check_model_key
from harness.backends.hf import attach_adapters
from harness.backends.hf_decode import common_prefix
from harness.io import UserError, iter_jsonl, read_json, stable_hash, write_json, write_jsonl
from harness.probes import FAMILIES, read_probe_set
from harness.prompts import end_of_turn, prompt_ids
from harness.stats import bootstrap_ci

VERSION = 1
DRIFT = "drift.json"
MC_SCORES = "mc_scores.jsonl"
MC_FAMILIES = tuple(f for f in FAMILIES if f != "ifeval")  # a format instruction has no single right continuation
MC_KEYS = {"id", "family", "kind", "messages", "choices", "answer"}
MAX_TOKENS = 2048  # tokens per forward batch (rows x width): throughput is flat from ~256 to ~4096 on 2 cores
MAX_ROWS = 64
ANSWER_CUE = "The answer is:"  # opens every model's answer to every MC item (why this one: the module docstring)


# --------------------------------------------------------------------------- MC items


def validate_mc(item: Any) -> str | None:
    """A problem with a multiple-choice item, or None."""
    if not isinstance(item, dict):
        return "must be an object"
    for k in ("id", "family", "messages", "choices", "answer"):
        if k not in item:
            return f"{k}: required"
    unknown = sorted(set(item) - MC_KEYS)
    if unknown:
        return f"{unknown[0]}: unknown key (known: {', '.join(sorted(MC_KEYS))})"
    if not isinstance(item["id"], str) or not item["id"]:
        return "id: must be a non-empty string"
    if item["family"] not in MC_FAMILIES:
        return f"family: unknown {item['family']!r} (known: {', '.join(MC_FAMILIES)})"
    if "kind" in item and not isinstance(item["kind"], str):
        return "kind: must be a string"
    msgs = item["messages"]
    if (not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) for m in msgs)
            or not all(isinstance(m.get("content"), str) and m.get("role") in ("system", "user", "assistant")
                       for m in msgs) or msgs[-1]["role"] != "user"):
        return "messages: must be a non-empty chat of {role, content} ending with a user message"
    ch = item["choices"]
    if not isinstance(ch, list) or len(ch) < 2 or not all(isinstance(c, str) and c.strip() for c in ch):
        return "choices: must be a list of at least 2 non-empty strings"
    pair = prefix_pair(ch)
    if pair:
        return (f"choices: {pair[0]!r} is a prefix of {pair[1]!r} (compared stripped and case-folded); choices are "
                "scored without an end-of-turn token, so the longer one could never outscore the shorter")
    a = item["answer"]
    if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < len(ch):
        return f"answer: must be the index of the right choice (0 to {len(ch) - 1})"
    return None


def prefix_pair(choices: Sequence[str]) -> tuple[str, str] | None:
    """(a, b), two choices where a is a string prefix of b once stripped and case-folded (equal ones included), or
    None. A choice whose tokens are a prefix of another's is always one: the string check covers the token one."""
    norm = [c.strip().casefold() for c in choices]
    for i, a in enumerate(norm):
        for j, b in enumerate(norm):
            if i != j and b.startswith(a):
                return choices[i], choices[j]
    return None


def load_mc_probes(name_or_path: str | Path = "mc") -> list[dict]:
    """MC items by set name (evalsets/probes/<name>.jsonl) or path; validated; a bad line is FILE:LINE."""
    return read_probe_set(name_or_path, validate_mc, "multiple-choice probe set")


def choose(logprobs: Sequence[float], chars: Sequence[int]) -> tuple[int, int]:
    """(acc choice, acc_norm choice): argmax of the summed logprob, and of it per character (lm-eval); ties -> first."""
    acc = max(range(len(logprobs)), key=lambda j: (logprobs[j], -j))
    norm = max(range(len(logprobs)), key=lambda j: (logprobs[j] / max(chars[j], 1), -j))
    return acc, norm


# --------------------------------------------------------------------------- the packed teacher-forced forward


@dataclass
class _Row:
    prompt: list[int]
    conts: list[list[int]]  # each continuation's tokens (all scored; all but the last fed)


@dataclass
class _Batch:
    rows: list[int]          # indices into the caller's row list
    ids: Any                 # [B, L] tokens after the shared prefix
    pos: Any                 # [B, L] position ids
    mask: Any                # [B, 1, L, P + L] additive float mask
    select: Any              # flat indices (b * L + t) of the positions whose next token is scored
    targets: Any             # the scored tokens, aligned with select
    spans: list[tuple[int, int, int]]  # (row index, continuation index, length) in select order


class Scorer:
    """The base model with every adapter loaded once (PEFT, safetensors only) and its tokenizer.

    Not the hf backend: it needs right-padded teacher-forced forwards with custom masks and whole-model
    adapter switching, not generation; it loads through the same harness.models functions."""

    def __init__(self, model_cfg: dict, adapters: dict[str, Path] | None = None, *, device: str | None = None,
                 max_tokens: int = MAX_TOKENS):
        from harness.models import default_device, load_model, load_tokenizer, resolve_model

        self.spec = resolve_model(model_cfg)
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(self.spec)
        model = load_model(self.spec, device=self.device)
        self.identities = {BASE: self.spec.identity}
        dirs = {check_model_key(k): Path(d) for k, d in (adapters or {}).items()}
        model, self.names = attach_adapters(model, dirs, self.spec.name)
        self.identities.update({k: adapter_identity(self.spec.identity, d) for k, d in dirs.items()})
        self.model = model.eval()
        inner = model.get_base_model() if self.names else model
        self.decoder, self.head = inner.get_decoder(), inner.get_output_embeddings()
        self.max_tokens = int(max_tokens)
        self.eot = end_of_turn(self.tokenizer)
        self.cue_ids = self.tokenizer(ANSWER_CUE, add_special_tokens=False)["input_ids"]
        self._prefix_kv: dict[tuple[str, tuple[int, ...]], list] = {}
        self._merge_plan: dict[str, list | None] = {}
        self.last_tokens = 0

    @property
    def models(self) -> list[str]:
        return [BASE, *self.names]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The prompt's tokens exactly as the hf backend tokenizes them for generation."""
        return prompt_ids(self.tokenizer, messages)

    def answer_ids(self, text: str) -> list[int]:
        """An answer's tokens followed by the end-of-turn token, as training tokenizes a target."""
        return control_tokens.encode(self.tokenizer, text + self.eot, [text])

    def choice_ids(self, choice: str) -> list[int]:
        """A choice's tokens as the continuation of ANSWER_CUE, no end-of-turn token: cue + " " + choice tokenized
        as training tokenizes an answer, less the cue's own tokens."""
        ids = self.tokenizer(f"{ANSWER_CUE} {choice}", add_special_tokens=False)["input_ids"]
        if ids[:len(self.cue_ids)] != self.cue_ids:
            raise UserError(f"{self.spec.name}: the tokenizer merges the answer cue {ANSWER_CUE!r} into the choice "
                            f"{choice!r}; MC items cannot be scored with it")
        return ids[len(self.cue_ids):]

    def mc_rows(self, items: list[dict]) -> list[_Row]:
        """Per item: the prompt as generation tokenizes it + the answer cue, then each choice's continuation."""
        return [_Row(self.prompt_ids(it["messages"]) + self.cue_ids, [self.choice_ids(c) for c in it["choices"]])
                for it in items]

    # ------------------------------------------------------------------ batching
    def _prefix_len(self, rows: list[_Row]) -> int:
        """Tokens every row's prompt shares, keeping one prompt token per row (it predicts the first answer token)."""
        return max(0, min(common_prefix([r.prompt for r in rows]), min(len(r.prompt) for r in rows) - 1))

    def _batches(self, rows: list[_Row], plen: int) -> list[_Batch]:
        import torch

        def width(r: _Row) -> int:
            return len(r.prompt) - plen + sum(len(c) - 1 for c in r.conts)

        order = sorted(range(len(rows)), key=lambda i: (width(rows[i]), i))
        groups, cur = [], []
        for i in order:
            if cur and (len(cur) + 1) * width(rows[i]) > self.max_tokens or len(cur) >= MAX_ROWS:
                groups.append(cur)
                cur = []
            cur.append(i)
        if cur:
            groups.append(cur)
        dtype = next(self.model.parameters()).dtype
        out = []
        for g in groups:
            L = max(width(rows[i]) for i in g)
            B = len(g)
            ids = torch.zeros((B, L), dtype=torch.long)
            pos = torch.zeros((B, L), dtype=torch.long)
            seg = torch.full((B, L), -1, dtype=torch.long)  # 0 = prompt, j = continuation j, -1 = padding
            select, targets, spans = [], [], []
            for b, i in enumerate(g):
                r = rows[i]
                s = r.prompt[plen:]
                n = len(s)
                ids[b, :n] = torch.tensor(s)
                pos[b, :n] = torch.arange(plen, plen + n)
                seg[b, :n] = 0
                t = n
                for j, c in enumerate(r.conts):
                    fed = c[:-1]
                    ids[b, t:t + len(fed)] = torch.tensor(fed, dtype=torch.long)
                    pos[b, t:t + len(fed)] = torch.arange(plen + n, plen + n + len(fed))
                    seg[b, t:t + len(fed)] = j + 1
                    select += [b * L + n - 1] + [b * L + k for k in range(t, t + len(fed))]
                    targets += list(c)
                    spans.append((i, j, len(c)))
                    t += len(fed)
            q = torch.arange(L)
            causal = q[None, :, None] >= q[None, None, :]
            sq, sk = seg[:, :, None], seg[:, None, :]
            allowed = causal & (sk >= 0) & ((sk == 0) | (sk == sq))
            allowed |= torch.eye(L, dtype=torch.bool)[None] & (sq < 0)  # a padding row attends to itself (no NaN)
            mask = torch.zeros((B, 1, L, plen + L), dtype=dtype)
            mask[:, 0, :, plen:].masked_fill_(~allowed, torch.finfo(dtype).min)
            out.append(_Batch(g, ids.to(self.device), pos.to(self.device), mask.to(self.device),
                              torch.tensor(select, dtype=torch.long, device=self.device),
                              torch.tensor(targets, dtype=torch.long, device=self.device), spans))
        return out

    # ------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def use(self, key: str):
        """Inside, the model computes `key`: the base with the adapters disabled; an adapter merged into a copy of
        the weights it touches (a forward then costs what the base's costs: PEFT's unmerged LoRA added ~35% on
        2 cores), restored to the very same tensors afterwards; PEFT's own forward where merging does not apply."""
        import torch

        if key != BASE and key not in self.names:
            raise UserError(f"unknown model {key!r} (known: {', '.join(self.models)})")
        if not self.names:
            yield
            return
        if key == BASE:
            with self.model.disable_adapter():
                yield
            return
        name = self.names[key]
        mods = self._mergeable(name)
        if mods is None:
            self.model.set_adapter(name)
            yield
            return
        saved = []
        with self.model.disable_adapter():
            try:
                with torch.no_grad():
                    for m in mods:
                        w = m.base_layer.weight
                        saved.append((w, w.data))
                        w.data = w.data + m.get_delta_weight(name).to(w.dtype)
                yield
            finally:
                for w, data in saved:
                    w.data = data

    def _mergeable(self, name: str) -> list | None:
        """The plain LoRA Linear modules of adapter `name`, or None when any part of it is something else
        (DoRA and other variants, LoRA biases, embeddings, modules_to_save)."""
        if name not in self._merge_plan:
            from peft.tuners.lora.layer import Linear

            pc = self.model.peft_config[name]
            mods: list | None = []
            if getattr(pc, "modules_to_save", None) or getattr(pc, "trainable_token_indices", None):
                mods = None
            for m in self.model.modules():
                if mods is None:
                    break
                if name in (getattr(m, "lora_embedding_A", None) or {}):
                    mods = None
                elif name in (getattr(m, "lora_A", None) or {}):
                    plain = (type(m) is Linear and not m.use_dora.get(name, False)
                             and name not in (getattr(m, "lora_variant", None) or {})
                             and m.lora_B[name].bias is None and not m.merged)
                    mods = mods + [m] if plain else None
            self._merge_plan[name] = mods
        return self._merge_plan[name]

    def _prefix(self, key: str, prefix: tuple[int, ...]) -> list:
        """K/V of the shared prompt prefix as computed by `key` (call inside `use(key)`); computed once per model."""
        import torch
        from transformers import DynamicCache

        k = (key, prefix)
        if k not in self._prefix_kv:
            with torch.inference_mode():
                cache = DynamicCache()
                self.decoder(input_ids=torch.tensor([prefix], device=self.device), cache=cache, use_cache=True)
                self._prefix_kv[k] = [(kk, vv) for kk, vv, *_ in cache]
        return self._prefix_kv[k]

    def logprobs(self, key: str, batch: _Batch, prefix: tuple[int, ...]):
        """log-softmax over the vocabulary (float32) at each selected position of `batch`, computed by `key`
        (call inside `use(key)`)."""
        import torch
        from transformers import DynamicCache

        B = batch.ids.shape[0]
        kw: dict = {}
        if prefix:
            kv = self._prefix(key, prefix)
            kw = {"cache": DynamicCache([(kk.expand(B, -1, -1, -1), vv.expand(B, -1, -1, -1)) for kk, vv in kv]),
                  "use_cache": True}
        with torch.inference_mode():
            h = self.decoder(input_ids=batch.ids, attention_mask=batch.mask, position_ids=batch.pos, **kw).last_hidden_state
            h = h.reshape(-1, h.shape[-1]).index_select(0, batch.select)
            return torch.log_softmax(self.head(h).float(), dim=-1)

    def _plan(self, rows: list[_Row]) -> tuple[tuple[int, ...], list[_Batch]]:
        plen = self._prefix_len(rows)
        batches = self._batches(rows, plen)
        self.last_tokens = plen + sum(int(b.ids.numel()) for b in batches)  # fed per model, padding included
        return tuple(rows[0].prompt[:plen]), batches

    # ------------------------------------------------------------------ measures
    def kl_per_prompt(self, prompts: list[list[dict]], answers: list[str], keys: Sequence[str]) -> list[dict[str, float]]:
        """For each (prompt messages, base answer): {adapter: mean per-token KL(base || adapter)}."""
        import torch

        if not prompts:
            return []
        rows = [_Row(self.prompt_ids(m), [self.answer_ids(a)]) for m, a in zip(prompts, answers)]
        prefix, batches = self._plan(rows)
        out: list[dict[str, float]] = [{} for _ in rows]
        for batch in batches:  # base and adapters on the same batch: the base's distributions are never stored
            with self.use(BASE):
                lb = self.logprobs(BASE, batch, prefix).double()
            pb = lb.exp()
            for key in keys:
                with self.use(key):
                    la = self.logprobs(key, batch, prefix).double()
                kl = (pb * (lb - la)).sum(-1).clamp_min_(0.0)
                start = 0
                for i, _, n in batch.spans:
                    out[i][key] = float(kl[start:start + n].mean())
                    start += n
        return out

    def mc(self, items: list[dict], keys: Sequence[str] | None = None) -> dict[str, dict[str, dict]]:
        """{model: {item id: {"pass", "pass_norm", "choice", "choice_norm", "logprobs", "chars", "tokens"}}}."""
        keys = list(keys) if keys is not None else self.models
        if not items:
            return {k: {} for k in keys}
        rows = self.mc_rows(items)  # built once: every model scores the very same tokens
        prefix, batches = self._plan(rows)
        sums: dict[str, list[list[float]]] = {k: [[0.0] * len(it["choices"]) for it in items] for k in keys}
        for key in keys:
            with self.use(key):  # one switch (merge) per model
                for batch in batches:
                    lp = self.logprobs(key, batch, prefix)
                    picked = lp.gather(1, batch.targets[:, None])[:, 0].double()
                    start = 0
                    for i, j, n in batch.spans:
                        sums[key][i][j] = float(picked[start:start + n].sum())
                        start += n
        out: dict[str, dict[str, dict]] = {}
        for key in keys:
            res = {}
            for it, row, lps in zip(items, rows, sums[key]):
                chars = [len(c) for c in it["choices"]]
                acc, norm = choose(lps, chars)
                res[it["id"]] = {"pass": float(acc == it["answer"]), "pass_norm": float(norm == it["answer"]),
                                 "choice": acc, "choice_norm": norm, "logprobs": lps, "chars": chars,
                                 "tokens": [len(c) for c in row.conts]}
            out[key] = res
        return out

    def close(self) -> None:
        self.model = self.decoder = self.head = None
        self._prefix_kv.clear()


# --------------------------------------------------------------------------- public functions


def _interval(values: list[float], alpha: float, n_boot: int, seed: int) -> dict:
    mean, lo, hi = bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"mean": mean, "lo": lo, "hi": hi, "n": len(values)}


def summarize_drift(per_prompt: dict[str, dict[str, float]], families: dict[str, str], *, alpha: float = 0.05,
                    n_boot: int = 2000, seed: int = 0) -> dict:
    """{adapter: {"families": {family: interval}, "all": interval, "per_prompt"}} from {probe id: {adapter: KL}}."""
    adapters = sorted({a for v in per_prompt.values() for a in v})
    out = {}
    for a in adapters:
        vals = {pid: v[a] for pid, v in per_prompt.items() if a in v}
        fams: dict[str, list[float]] = {}
        for pid, x in vals.items():
            fams.setdefault(families[pid], []).append(x)
        out[a] = {"families": {f: _interval(xs, alpha, n_boot, seed) for f, xs in sorted(fams.items())},
                  "all": _interval(list(vals.values()), alpha, n_boot, seed), "per_prompt": vals}
    return out


def drift(model_cfg: dict, adapters: dict[str, Path], prompts: list[tuple[str, str, list[dict]]],
          base_answers: dict[str, str], *, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
          scorer: Scorer | None = None) -> dict:
    """KL(base || adapter) along the base model's answers, per family and overall (see the module docstring).
    `prompts`: (probe id, family, messages); prompts without a base answer are left out. `scorer`: an already
    loaded Scorer with these adapters (then model_cfg and adapters are not loaded again)."""
    own = scorer is None
    sc = Scorer(model_cfg, adapters) if own else scorer
    try:
        use = [(pid, fam, msgs) for pid, fam, msgs in prompts if base_answers.get(pid) is not None]
        kls = sc.kl_per_prompt([m for _, _, m in use], [base_answers[p] for p, _, _ in use], list(adapters))
    finally:
        if own:
            sc.close()
    return summarize_drift({pid: kl for (pid, _, _), kl in zip(use, kls)}, {pid: fam for pid, fam, _ in use},
                           alpha=alpha, n_boot=n_boot, seed=seed)


def score_mc(model_cfg: dict, adapters: dict[str, Path], items: list[dict], *,
             scorer: Scorer | None = None) -> dict[str, dict[str, dict]]:
    """Every MC item scored by the base and each adapter: {model: {item id: {"pass", "logprobs", ...}}}."""
    own = scorer is None
    sc = Scorer(model_cfg, adapters) if own else scorer
    try:
        return sc.mc(items, [BASE, *adapters])
    finally:
        if own:
            sc.close()


def mc_summary(scores: dict[str, dict[str, dict]], items: list[dict]) -> dict:
    """{model: {"families": {family: {"pass", "pass_norm", "n"}}, "all": {...}}}: mean pass rates."""
    fam = {it["id"]: it["family"] for it in items}
    out = {}
    for model, res in scores.items():
        groups: dict[str, list[dict]] = {}
        for iid, r in res.items():
            groups.setdefault(fam[iid], []).append(r)
            groups.setdefault("all", []).append(r)

        def rate(rs: list[dict]) -> dict:
            return {"pass": sum(r["pass"] for r in rs) / len(rs), "pass_norm": sum(r["pass_norm"] for r in rs) / len(rs),
                    "n": len(rs)}

        out[model] = {"families": {f: rate(rs) for f, rs in sorted(groups.items()) if f != "all"},
                      "all": rate(groups["all"]) if res else {"pass": math.nan, "pass_norm": math.nan, "n": 0}}
    return out


def base_probe_answers(scores_path: Path) -> dict[str, dict]:
    """{probe id: {"output", "finish_reason"}} of the base model's probe rows that have no error."""
    out = {}
    for _, r in iter_jsonl(scores_path, strict=True):
        if r.get("model") == BASE and r.get("split") == "probe" and not r.get("error") and r.get("output") is not None:
            out[str(r["sample_id"])] = {"output": str(r["output"]), "finish_reason": r.get("finish_reason")}
    return out


def measure(scores_dir: Path, model_cfg: dict, adapters: dict[str, Path], probe_items: list[dict],
            mc_items: list[dict], *, scores_path: Path, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0,
            force: bool = False) -> dict:
    """Drift on the probes and MC scores for base + adapters, written into scores_dir (format: module docstring);
    returns drift.json's content. The base model's probe answers are read from `scores_path` (the evaluation's
    scores.jsonl: the caller names it, so this module never imports the evaluation). Reuses the files when their
    inputs are unchanged (`force` recomputes)."""
    scores_dir = Path(scores_dir)
    adapters = {str(k): Path(v) for k, v in adapters.items()}
    answers = base_probe_answers(Path(scores_path)) if probe_items else {}
    prompts = [(it["id"], it["family"], it["messages"]) for it in probe_items]
    skipped = [pid for pid, _, _ in prompts if pid not in answers]
    from harness.models import resolve_model

    spec = resolve_model(model_cfg)
    identities = {BASE: spec.identity, **{k: adapter_identity(spec.identity, d) for k, d in adapters.items()}}
    settings = {"alpha": alpha, "n_boot": n_boot, "seed": seed, "version": VERSION}
    dhash = stable_hash({"settings": settings, "models": identities,
                         "prompts": [[pid, fam, m, answers[pid]["output"]] for pid, fam, m in prompts if pid in answers]}, 24)
    mhash = stable_hash({"settings": settings, "models": identities, "mc": mc_items, "cue": ANSWER_CUE}, 24)
    dpath, mpath = scores_dir / DRIFT, scores_dir / MC_SCORES
    old: dict = {}
    if not force and dpath.is_file():
        try:
            old = read_json(dpath)
        except (OSError, ValueError):
            old = {}
    same_drift = old.get("inputs_hash") == dhash
    same_mc = old.get("mc_inputs_hash") == mhash and mpath.is_file()
    if same_drift and same_mc:
        return old
    timing = {"load": 0.0, "drift": 0.0, "mc": 0.0}
    t0 = time.perf_counter()
    sc = Scorer(model_cfg, adapters)
    timing["load"] = round(time.perf_counter() - t0, 3)
    try:
        if same_drift:
            drift_res = old["drift"]
        else:
            t0 = time.perf_counter()
            drift_res = drift(model_cfg, adapters, prompts, {p: a["output"] for p, a in answers.items()},
                              alpha=alpha, n_boot=n_boot, seed=seed, scorer=sc)
            timing["drift"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        mc_res = score_mc(model_cfg, adapters, mc_items, scorer=sc)
        timing["mc"] = round(time.perf_counter() - t0, 3)
    finally:
        sc.close()
    rows = [{"model": model, "split": "mc", "sample_id": it["id"], "family": it["family"], "kind": it.get("kind"),
             "answer": it["answer"], "metrics": {"pass": r["pass"], "pass_norm": r["pass_norm"]},
             **{k: r[k] for k in ("choice", "choice_norm", "logprobs", "chars", "tokens")}}
            for model, res in mc_res.items() for it in mc_items for r in [res[it["id"]]]]
    scores_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(mpath, rows)
    out = {"inputs_hash": dhash, "mc_inputs_hash": mhash, **settings,
           "n_prompts": len(prompts) - len(skipped), "skipped_prompts": skipped, "drift": drift_res,
           "mc": mc_summary(mc_res, mc_items), "identities": identities, "timing_s": timing}
    write_json(dpath, out)
    return out
