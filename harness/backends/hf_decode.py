"""Greedy decoding for the hf backend: shared prompt prefixes computed once, finished rows leave the batch.

Why: on CPU the demo's evaluation is dominated by prompt tokens (every task request repeats the system
prompt; every few-shot request repeats three worked examples) and by rows that keep computing after
they have answered (plain `generate` pads a finished row until the longest row of its batch ends).

How (one model key, one GenParams at a time; rows of a batch all use the same adapter):
1. Requests are grouped by their conversation before the last user turn (same system prompt, same
   few-shot turns); the group's longest common token prefix is run through the model once, and its
   KV cache is copied into every row of the group's batches.
2. The rest of each prompt (left-padded; the padding sits between prefix and suffix, masked, with
   position ids that skip it) is prefilled for the whole batch, then tokens are decoded greedily.
3. A row that emits an end-of-turn token, completes a stop string, completes its JSON answer
   (GenParams.json_stop) or reaches max_new_tokens is removed from the batch and its KV cache at once.

Outputs equal `generate`'s greedy outputs up to float round-off: the same forward runs on the same
tokens at the same positions, but the prefix is computed in a batch of one, so a near-tie can
rarely flip (bench/eval_throughput.py counts identical outputs against the generate path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass
class Row:
    prompt: list[int]
    context: str  # rows with the same context share a prompt prefix
    tokens: list[int] | None = None
    finish: str = ""  # "stop" | "length"
    cut: int | None = None  # character offset where the text ends (stop string / JSON end), None = whole


def json_end(text: str) -> int | None:
    """Offset just past the first complete JSON object/array in `text` (and a ``` fence around it), else None."""
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                end = i + 1
                if text[:start].count("```") % 2 == 1:  # inside a fence: the answer ends when it closes
                    close = text.find("```", end)
                    return None if close < 0 else close + 3
                return end
    return None


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


class PrefixDecoder:
    """Decode rows greedily for one model key; `forward_kwargs(n)` gives the adapter kwargs for n rows."""

    def __init__(self, model, tokenizer, *, eos_ids: set[int], pad_id: int, device, batch_size: int,
                 min_prefix: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        self.pad_id = int(pad_id)
        self.device = device
        self.batch_size = int(batch_size)
        self.min_prefix = int(min_prefix)

    def run(self, rows: list[Row], params, forward_kwargs: Callable[[int], dict],
            on_done: Callable[[int], None] | None = None) -> None:
        groups: dict[str, list[Row]] = {}
        for r in rows:
            groups.setdefault(r.context, []).append(r)
        for group in groups.values():
            p = common_prefix([r.prompt for r in group]) if len(group) > 1 else 0
            p = min(p, min(len(r.prompt) for r in group) - 1)  # every row keeps >= 1 token to prefill
            if p < self.min_prefix:
                p = 0
            prefix = self._prefill_prefix(group[0].prompt[:p], forward_kwargs) if p else None
            ordered = sorted(group, key=lambda r: len(r.prompt))
            for start in range(0, len(ordered), self.batch_size):
                batch = ordered[start:start + self.batch_size]
                self._decode(batch, p, prefix, params, forward_kwargs)
                if on_done is not None:
                    on_done(len(batch))

    # ------------------------------------------------------------------ internals
    def _prefill_prefix(self, ids: list[int], forward_kwargs):
        import torch
        from transformers import DynamicCache

        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=x, cache=DynamicCache(), use_cache=True, logits_to_keep=1, **forward_kwargs(1))
        return [(k, v) for k, v, *_ in out.cache]

    def _decode(self, batch: list[Row], p: int, prefix, params, forward_kwargs) -> None:
        import torch
        from transformers import DynamicCache

        n = len(batch)
        suffixes = [r.prompt[p:] for r in batch]
        width = max(len(s) for s in suffixes)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        smask = torch.zeros((n, width), dtype=torch.long)
        for i, s in enumerate(suffixes):
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            smask[i, width - len(s):] = 1
        mask = torch.cat([torch.ones((n, p), dtype=torch.long), smask], dim=1).to(self.device)
        pos = (p + smask.cumsum(1) - 1).clamp(min=0).to(self.device)
        ids = ids.to(self.device)
        cache = DynamicCache(ddp_cache_data=[(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix]) \
            if prefix else DynamicCache()
        live = list(range(n))  # batch rows still decoding, in tensor row order
        gen: list[list[int]] = [[] for _ in range(n)]
        stops = [s for s in params.stop if s]
        max_new = int(params.max_new_tokens)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                             logits_to_keep=1, **forward_kwargs(n))
            next_pos = pos[:, -1:] + 1
            while True:
                nxt = out.logits[:, -1, :].argmax(dim=-1)
                keep: list[int] = []
                for j, tok in enumerate(nxt.tolist()):
                    i = live[j]
                    gen[i].append(tok)
                    if self._finished(batch[i], gen[i], tok, stops, params.json_stop, max_new):
                        continue
                    keep.append(j)
                if not keep:
                    break
                if len(keep) < len(live):
                    sel = torch.tensor(keep, dtype=torch.long, device=self.device)
                    cache.batch_select_indices(sel)
                    mask, next_pos, nxt = mask[sel], next_pos[sel], nxt[sel]
                    live = [live[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos, cache=cache,
                                 use_cache=True, **forward_kwargs(len(live)))
                next_pos = next_pos + 1

    def _finished(self, row: Row, toks: list[int], tok: int, stops: list[str], json_stop: bool, max_new: int) -> bool:
        done = None
        if tok in self.eos_ids:
            done = "stop"
        elif stops or json_stop:
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            hits = [h for h in (text.find(s) for s in stops) if h >= 0]
            if hits:
                row.cut, done = min(hits), "stop"
            elif json_stop:
                end = json_end(text)
                if end is not None:
                    row.cut, done = end, "stop"
        if done is None and len(toks) >= max_new:
            done = "length"
        if done is None:
            return False
        row.tokens, row.finish = list(toks), done
        return True


__all__ = ["PrefixDecoder", "Row", "common_prefix", "json_end"]
