"""Greedy decoding for the hf backend: shared prompt prefixes computed once, continuous batching.

Why: on CPU the demo's evaluation is dominated by prompt tokens (every task request repeats the system
prompt; every few-shot request repeats three worked examples) and by rows that keep computing after
they have answered (plain `generate` pads a finished row until the longest row of its batch ends).

How:
1. Rows are grouped by model key and by their conversation before the last user turn (same system
   prompt, same few-shot turns); each group's longest common token prefix runs through the model
   once (with that group's adapter), and its KV cache is copied into every row of the group.
2. Rows are taken in order of (model key, group, prompt length), so a batch holds one adapter's rows
   side by side (the LoRA step works on a slice of the batch, not a gather); a batch may still mix
   groups and adapters (adapter_names per row). Each row's KV starts with its group's prefix,
   left-padded to the batch's longest prefix; the rest of its prompt is prefilled in chunks of one
   adapter and similar length (padding masked; position ids count only real tokens).
3. The batch's KV cache is one buffer per layer with room for the tokens still to come: prefill, merge
   and each decode step write into it in place (transformers' DynamicCache copies the whole cache every
   step: measured 10-30% slower here). Rows per batch: batch_size, fewer where their KV buffers would
   pass a quarter of free memory (at most 4 GiB).
4. A row that emits an end-of-turn token, completes a stop string, completes its JSON answer
   (GenParams.json_stop) or reaches its max_new_tokens leaves the batch at once; when half the batch
   has left, waiting rows are prefilled and merged in (continuous batching).
5. `model` may be the transformers model or harness.backends.hf_lean's forward (same logits, bitwise).

Outputs equal `generate`'s greedy outputs up to float round-off: the same forward runs on the same
tokens at the same positions, but prefixes are computed in a batch of one and padding differs, so a
near-tie can rarely flip (bench/eval_throughput.py counts identical outputs against the generate path).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Sequence

@dataclass
class Row:
    prompt: list[int]
    context: str  # rows with the same model key and context share a prompt prefix
    key: str = ""  # model key (its adapter)
    params: object = None  # GenParams (greedy): max_new_tokens, stop, json_stop
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


@functools.lru_cache(maxsize=None)
def _roomy_layer():
    """A transformers DynamicLayer that keeps spare room (built on first use: transformers is imported lazily).

    DynamicLayer concatenates the whole cache with each new token (a full copy per step and layer);
    this one writes the token's K/V in place. Attention sees views up to the filled length.
    """
    import torch
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        def __init__(self, k, v, room: int, filled: int | None = None):
            """Copy `k`/`v` into buffers with `room` free slots; or, with `filled`, adopt `k`/`v` as the buffers."""
            super().__init__()
            b, h, n, d = k.shape
            if filled is None:
                self.kbuf, self.vbuf = k.new_empty((b, h, n + room, d)), v.new_empty((b, h, n + room, d))
                self.kbuf[:, :, :n], self.vbuf[:, :, :n] = k, v
            else:
                self.kbuf, self.vbuf, n = k, v, filled
            self.n, self.is_initialized, self.device, self.dtype = n, True, k.device, k.dtype
            self._views()

        def _views(self):
            self.keys, self.values = self.kbuf[:, :, :self.n], self.vbuf[:, :, :self.n]

        def update(self, key_states, value_states, *args, **kwargs):
            m = key_states.shape[-2]
            if self.n + m > self.kbuf.shape[-2]:  # out of room: grow (rare: room covers max_new_tokens)
                grow = max(m, self.kbuf.shape[-2] // 2)
                self.kbuf = torch.cat([self.kbuf, self.kbuf.new_empty((*self.kbuf.shape[:-2], grow, self.kbuf.shape[-1]))], -2)
                self.vbuf = torch.cat([self.vbuf, self.vbuf.new_empty((*self.vbuf.shape[:-2], grow, self.vbuf.shape[-1]))], -2)
            self.kbuf[:, :, self.n:self.n + m] = key_states
            self.vbuf[:, :, self.n:self.n + m] = value_states
            self.n += m
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.n

        def batch_select_indices(self, indices) -> None:
            self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self._views()

    return RoomyLayer


def _roomy_cache(kv_pairs, room: int, filled: int | None = None):
    """A DynamicCache over RoomyLayers holding `kv_pairs` [(keys, values) per layer] with `room` free slots
    (with `filled`: the pairs are the buffers themselves, their first `filled` positions in use)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layers = [_roomy_layer()(k, v, room, filled) for k, v in kv_pairs]
    return cache


def default_kv_budget() -> int:
    """Bytes the decoder's K/V buffers may take: a quarter of the memory available now, at most 4 GiB."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
        avail = 16 * 2**30
    return int(min(4 * 2**30, avail // 4))


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


class PrefixDecoder:
    """Decode rows greedily; `forward_kwargs(keys)` gives the adapter kwargs for a batch of rows' model keys."""

    def __init__(self, model, tokenizer, *, eos_ids: set[int], pad_id: int, device, batch_size: int,
                 min_prefix: int = 16, kv_budget: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = set(eos_ids)
        self.pad_id = int(pad_id)
        self.device = device
        self.batch_size = int(batch_size)
        self.min_prefix = int(min_prefix)
        self.kv_budget = default_kv_budget() if kv_budget is None else int(kv_budget)  # 0 = no limit
        self._kv_shape_cached = None

    def run(self, rows: list[Row], forward_kwargs: Callable[[list[str]], dict],
            on_done: Callable[[int], None] | None = None) -> None:
        import torch

        groups: dict[tuple[str, str], list[Row]] = {}
        for r in rows:
            groups.setdefault((r.key, r.context), []).append(r)
        plen: dict[int, int] = {}  # id(row) -> its shared prefix length
        gkey: dict[int, tuple[str, str]] = {}
        for g, members in groups.items():
            p = common_prefix([r.prompt for r in members]) if len(members) > 1 else 0
            p = min(p, min(len(r.prompt) for r in members) - 1)  # every row keeps >= 1 token to prefill
            for r in members:
                plen[id(r)], gkey[id(r)] = (p if p >= self.min_prefix else 0), g
        self._prefixes: dict[tuple[str, str], list] = {}
        self._plen, self._gkey, self._fk = plen, gkey, forward_kwargs
        # one model key and one context per batch where possible: no per-row adapter bookkeeping, little padding
        queue = sorted(rows, key=lambda r: (r.key, r.context, len(r.prompt) - plen[id(r)]))
        live: list[Row] = []
        state = None  # (cache, mask, next_pos, pending tokens) of the live rows, in row order
        with torch.inference_mode():
            while queue or live:
                limit = (self._rows_that_fit(queue[:self.batch_size] + live)
                         if queue and len(live) <= self.batch_size // 2 else 0)  # 0: keep decoding
                if len(live) <= limit // 2:
                    n = max(1, limit - len(live))
                    take, queue = queue[:n], queue[n:]
                    for chunk in self._prefill_chunks(take):
                        fresh, new = self._drop_finished(chunk, self._prefill(chunk), on_done)  # first tokens
                        if fresh:
                            live, state = self._merge(live, state, fresh, new)
                    continue
                cache, mask, pos, pending = state
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                out = self.model(input_ids=pending[:, None], attention_mask=mask, position_ids=pos, cache=cache,
                                 use_cache=True, **forward_kwargs([r.key for r in live]))
                state = (cache, mask, pos + 1, out.logits[:, -1, :].argmax(dim=-1))
                live, state = self._drop_finished(live, state, on_done)

    # ------------------------------------------------------------------ internals
    def _prefix_kv(self, row: Row):
        g = self._gkey[id(row)]
        if g not in self._prefixes:
            import torch
            from transformers import DynamicCache

            p = self._plen[id(row)]
            x = torch.tensor([row.prompt[:p]], dtype=torch.long, device=self.device)
            out = self.model(input_ids=x, cache=DynamicCache(), use_cache=True, logits_to_keep=1,
                             **self._fk([row.key]))
            self._prefixes[g] = [(k[0], v[0]) for k, v, *_ in out.cache]
        return self._prefixes[g]

    def _prefill(self, rows: list[Row]):
        """Prefix KV (left-padded) + prefill of each row's remaining prompt; returns the new rows' state."""
        import torch
        from transformers import DynamicCache

        n = len(rows)
        ps = [self._plen[id(r)] for r in rows]
        pmax = max(ps)
        suffixes = [r.prompt[p:] for r, p in zip(rows, ps)]
        width = max(len(x) for x in suffixes)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, pmax + width), dtype=torch.long)
        for i, (x, p) in enumerate(zip(suffixes, ps)):
            ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[i, pmax - p:pmax] = 1
            mask[i, pmax + width - len(x):] = 1
        smask = mask[:, pmax:]
        pos = torch.tensor(ps, dtype=torch.long)[:, None] + (smask.cumsum(1) - 1).clamp(min=0)
        # one buffer per layer for the prefixes, this prefill and the tokens to come: filled in place, no copies
        room = max(int(r.params.max_new_tokens) for r in rows) + 1
        kv_shape = self._kv_shape()
        layers = [(torch.zeros((n, kv_shape[0], pmax + width + room, kv_shape[1]), dtype=kv_shape[2],
                               device=self.device),
                   torch.zeros((n, kv_shape[0], pmax + width + room, kv_shape[1]), dtype=kv_shape[2],
                               device=self.device)) for _ in range(kv_shape[3])]
        for i, (r, p) in enumerate(zip(rows, ps)):
            if p:
                for (K, V), (k, v) in zip(layers, self._prefix_kv(r)):
                    K[i, :, pmax - p:pmax], V[i, :, pmax - p:pmax] = k, v
        cache = _roomy_cache(layers, room, filled=pmax)
        mask, pos, ids = mask.to(self.device), pos.to(self.device), ids.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                         logits_to_keep=1, **self._fk([r.key for r in rows]))
        return cache, mask, pos[:, -1:] + 1, out.logits[:, -1, :].argmax(dim=-1)

    def _prefill_chunks(self, rows: list[Row], min_rows: int = 8, waste: float = 0.2) -> list[list[Row]]:
        """Rows to prefill together: one model key each, by prompt length, split where padding would pass
        `waste` of the real tokens (a prefill computes every padded position; groups differ in length)."""
        plen = self._plen
        rows = sorted(rows, key=lambda r: (r.key, len(r.prompt) - plen[id(r)]))
        chunks: list[list[Row]] = []
        real = 0
        for r in rows:
            n = len(r.prompt) - plen[id(r)]
            cur = chunks[-1] if chunks else None
            if cur is None or cur[0].key != r.key or (
                    len(cur) >= min_rows and (len(cur) + 1) * n > (1 + waste) * (real + n)):
                chunks.append([r])
                real = n
            else:
                cur.append(r)
                real += n
        return chunks

    def _rows_that_fit(self, rows: list[Row]) -> int:
        """batch_size, or fewer rows where their K/V buffers would pass kv_budget bytes (large models)."""
        if not self.kv_budget:
            return self.batch_size
        heads, dim, dtype, layers = self._kv_shape()
        import torch

        per_token = 2 * layers * heads * dim * torch.empty((), dtype=dtype).element_size()
        longest = max(len(r.prompt) + int(r.params.max_new_tokens) for r in rows)
        return max(1, min(self.batch_size, int(self.kv_budget // (per_token * longest))))

    def _kv_shape(self):
        """(K/V heads, head dim, dtype, layers) of the model's cache, from one token's forward (once)."""
        if self._kv_shape_cached is None:
            import torch
            from transformers import DynamicCache

            x = torch.tensor([[self.pad_id]], dtype=torch.long, device=self.device)
            cache = DynamicCache()
            self.model(input_ids=x, cache=cache, use_cache=True, logits_to_keep=1)
            k = next(iter(cache))[0]
            self._kv_shape_cached = (k.shape[1], k.shape[-1], k.dtype, len(list(cache)))
        return self._kv_shape_cached

    @staticmethod
    def _merge(live, state, rows, new):
        """One state for old and new rows: KV and masks left-padded to the same length, then stacked."""
        if not live:
            return list(rows), new
        import torch

        (c1, m1, p1, t1), (c2, m2, p2, t2) = state, new
        length = max(m1.shape[1], m2.shape[1])
        room = max(int(r.params.max_new_tokens) for r in live + list(rows)) + 1
        n1, n2 = m1.shape[0], m2.shape[0]
        layers = []
        for (k1, v1, *_), (k2, v2, *_) in zip(c1, c2):  # right-aligned into one buffer per layer (one copy)
            h, d = k1.shape[1], k1.shape[-1]
            K = k1.new_zeros((n1 + n2, h, length + room, d))
            V = v1.new_zeros((n1 + n2, h, length + room, d))
            K[:n1, :, length - m1.shape[1]:length], V[:n1, :, length - m1.shape[1]:length] = k1, v1
            K[n1:, :, length - m2.shape[1]:length], V[n1:, :, length - m2.shape[1]:length] = k2, v2
            layers.append((K, V))
        mask = m1.new_zeros((n1 + n2, length))
        mask[:n1, length - m1.shape[1]:], mask[n1:, length - m2.shape[1]:] = m1, m2
        return live + list(rows), (_roomy_cache(layers, room, filled=length), mask, torch.cat([p1, p2]),
                                   torch.cat([t1, t2]))

    def _drop_finished(self, live, state, on_done):
        """Record each live row's new token; rows that finished leave the batch (and the KV cache)."""
        import torch

        cache, mask, pos, tokens = state
        keep: list[int] = []
        for j, tok in enumerate(tokens.tolist()):
            r = live[j]
            r.tokens = (r.tokens or []) + [tok]
            if self._finished(r, tok):
                if on_done is not None:
                    on_done(1)
            else:
                keep.append(j)
        if len(keep) == len(live):
            return live, state
        if not keep:
            return [], None
        sel = torch.tensor(keep, dtype=torch.long, device=mask.device)
        cache.batch_select_indices(sel)
        return [live[j] for j in keep], (cache, mask[sel], pos[sel], tokens[sel])

    def _finished(self, row: Row, tok: int) -> bool:
        p = row.params
        toks = row.tokens
        done = None
        if tok in self.eos_ids:
            done = "stop"
        elif p.stop or p.json_stop:
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            hits = [h for h in (text.find(s) for s in p.stop if s) if h >= 0]
            if hits:
                row.cut, done = min(hits), "stop"
            elif p.json_stop:
                end = json_end(text)
                if end is not None:
                    row.cut, done = end, "stop"
        if done is None and len(toks) >= int(p.max_new_tokens):
            done = "length"
        if done is None:
            return False
        row.finish = done
        return True


__all__ = ["PrefixDecoder", "Row", "common_prefix", "json_end"]
