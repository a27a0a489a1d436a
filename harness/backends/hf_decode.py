"""Greedy decoding for the hf backend: shared prompt prefixes computed once, continuous batching.

Why: on CPU the demo's evaluation is dominated by prompt tokens (every task request repeats the system
prompt; every few-shot request repeats three worked examples) and by rows that keep computing after
they have answered (plain `generate` pads a finished row until the longest row of its batch ends).

How:
1. Rows are grouped by model key and by their conversation before the last user turn (same system
   prompt, same few-shot turns); each group's longest common token prefix runs through the model
   once (with that group's adapter), and its KV cache is copied into every row of the group.
2. Rows are taken in order of prompt length (then model key and group), so the rows decoded together
   have similar lengths: they share one K/V column range, and attention reads every row up to the
   longest (taken by model key first, half the demo's attention was over padding; by length, a quarter).
   A batch mixes adapters (adapter_names per row). The rest of each prompt is prefilled in chunks of one
   adapter and similar length (padding masked; position ids count only real tokens). Where the model
   attends to shared prefixes itself (hf_lean's packed mode: `shares_prefix`), a group's prefix K/V stay
   out of the pool and are read once per group and step (`prefix=` per forward); otherwise each row's K/V
   start with a copy of its group's prefix, left-padded to the batch's longest prefix.
3. The K/V cache is one pool of buffers per layer, allocated once per run (`_KVPool`): live rows are its
   first rows, all ending at one column; prefill, prefix copies and each decoding step write into it in
   place (transformers' DynamicCache copies the whole cache every step: measured 10-30% slower here; a
   fresh buffer per batch cost page faults and copies). A row that finishes is replaced by the pool's last
   live row (one row's K/V copied, not the batch's). Rows at once: batch_size, fewer where the pool would
   pass a quarter of free memory (at most 4 GiB).
4. A row that emits an end-of-turn token, completes a stop string, completes its JSON answer
   (GenParams.json_stop) or reaches its max_new_tokens leaves the batch at once; when half the batch
   has left, waiting rows are prefilled into the free pool rows (continuous batching).
5. `model` may be the transformers model or harness.backends.hf_lean's forward (same logits, bitwise;
   with packed weights, up to float round-off).

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
    from harness.jsonscan import brackets

    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    for i, depth in brackets(text, start):
        if depth == 0:
            end = i + 1
            if text[:start].count("```") % 2 == 1:  # inside a fence: the answer ends when it closes
                close = text.find("```", end)
                return None if close < 0 else close + 3
            return end
    return None


@functools.lru_cache(maxsize=None)
def _view_layer():
    """A transformers DynamicLayer over given K/V buffers with room (built on first use: transformers is
    imported lazily). DynamicLayer concatenates the whole cache with each new token (a full copy per step
    and layer); this one writes the token's K/V in place. Attention sees views up to the filled length."""
    from transformers.cache_utils import DynamicLayer

    class ViewLayer(DynamicLayer):
        def __init__(self, k, v, filled: int):
            super().__init__()
            self.kbuf, self.vbuf, self.n = k, v, filled
            self.is_initialized, self.device, self.dtype = True, k.device, k.dtype
            self._views()

        def _views(self):
            self.keys, self.values = self.kbuf[:, :, :self.n], self.vbuf[:, :, :self.n]

        def update(self, key_states, value_states, *args, **kwargs):
            m = key_states.shape[-2]
            if self.n + m > self.kbuf.shape[-2]:  # growing would copy: the decoder's pool would go stale
                raise RuntimeError(f"K/V pool out of room ({self.n} + {m} > {self.kbuf.shape[-2]} columns)")
            self.kbuf[:, :, self.n:self.n + m] = key_states
            self.vbuf[:, :, self.n:self.n + m] = value_states
            self.n += m
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.n

    return ViewLayer


def _view_cache(kv_pairs, filled: int):
    """A DynamicCache whose layers write into `kv_pairs` [(keys, values) buffers per layer], the first
    `filled` positions in use."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layers = [_view_layer()(k, v, filled) for k, v in kv_pairs]
    return cache


class _KVPool:
    """The decoder's K/V buffers, one pair per layer, allocated once per run (fresh multi-GB buffers per batch
    cost page faults and copies: 20% of the demo's evaluation at 128 rows). Live rows are pool rows [0, rows);
    their positions end at column `n` (each row left-padded before its first real column), so one decoding
    step writes column n for every row."""

    def __init__(self, kv_shape, rows: int, length: int, device):
        import torch

        heads, dim, dtype, layers = kv_shape
        # zeros: masked columns are read by attention with weight 0, so they must be finite (0 * NaN = NaN);
        # everything written later is a K/V value, finite too
        self.k = [torch.zeros((rows, heads, length, dim), dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros_like(k) for k in self.k]
        self.length, self.n = length, 0

    def cache(self, r0: int, r1: int, c0: int, filled: int):
        """A cache over pool rows [r0, r1) from column c0, its first `filled` columns in use: writes land in the pool."""
        return _view_cache([(k[r0:r1, :, c0:], v[r0:r1, :, c0:]) for k, v in zip(self.k, self.v)], filled)

    def shift(self, rows: int, lo: int, delta: int) -> None:
        """Move the first `rows` rows' columns [lo, n) by `delta` (left or right); n moves with them."""
        for buf in (*self.k, *self.v):
            buf[:rows, :, lo + delta:self.n + delta] = buf[:rows, :, lo:self.n].clone()
        self.n += delta

    def move_rows(self, dst: list[int], src: list[int]) -> None:
        for buf in (*self.k, *self.v):
            buf[dst, :, :self.n] = buf[src, :, :self.n]

    def grow(self, length: int, rows: int) -> None:
        """More columns (rare): a new pool, the first `rows` rows copied."""
        for bufs in (self.k, self.v):
            for i, b in enumerate(bufs):
                bigger = b.new_zeros((*b.shape[:2], length, b.shape[3]))
                if rows:
                    bigger[:rows, :, :self.n] = b[:rows, :, :self.n]
                bufs[i] = bigger
        self.length = length


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
        # the model attends to shared prefixes itself (hf_lean's cascade attention): they stay out of the pool
        self.shared = bool(getattr(model, "shares_prefix", False))
        self._plen: dict[int, int] = {}

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
        # by prompt length: rows decoded together end at one pool column, so a short row beside a long one
        # attends over the long one's padding (key-first order: half the attention was padding on the demo)
        queue = sorted(rows, key=lambda r: (len(r.prompt), r.key, r.context))
        cap = min(self._rows_that_fit(rows), len(rows))
        pool = _KVPool(self._kv_shape(), cap, self._pool_length(rows), self.device)
        live: list[Row] = []  # pool row i holds live[i]
        state = None  # (mask [rows, pool.n], next position ids [rows, 1], pending tokens [rows]) of the live rows
        with torch.inference_mode():
            while queue or live:
                if queue and len(live) <= cap // 2:  # refill: prefill waiting rows into the free pool rows
                    take, queue = queue[:cap - len(live)], queue[cap - len(live):]
                    for chunk in self._prefill_chunks(take):
                        live, state = self._prefill(pool, live, state, chunk, on_done)
                    continue
                mask, pos, pending = state
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                out = self.model(input_ids=pending[:, None], attention_mask=mask, position_ids=pos,
                                 cache=pool.cache(0, len(live), 0, pool.n), use_cache=True,
                                 **self._prefix_arg(live), **forward_kwargs([r.key for r in live]))
                pool.n += 1
                tokens = out.logits[:, -1, :].argmax(dim=-1)
                keep = self._record(live, tokens.tolist(), on_done)
                live, state = self._compact(pool, live, (mask, pos + 1, tokens), keep)

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
            # shared: [1, heads, p, dim] per layer for the model's prefix attention; else copied into pool rows
            self._prefixes[g] = [(k, v) if self.shared else (k[0], v[0]) for k, v, *_ in out.cache]
        return self._prefixes[g]

    def _prefix_arg(self, rows: list[Row]) -> dict:
        """`prefix=` for the model in shared mode: [(the batch rows of one group, that group's prefix K/V)]."""
        if not self.shared:
            return {}
        import torch

        members: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(rows):
            if self._plen[id(r)]:
                members.setdefault(self._gkey[id(r)], []).append(i)
        out = []
        for g, idx in members.items():
            contiguous = idx[-1] - idx[0] + 1 == len(idx)  # a slice is a view: no gather
            sel = slice(idx[0], idx[-1] + 1) if contiguous else torch.tensor(idx, dtype=torch.long, device=self.device)
            out.append((sel, self._prefixes[g]))
        return {"prefix": out}

    def _kept(self, row: Row) -> int:
        """Prompt tokens a row keeps in the pool: all of them, or (shared mode) those after its group's prefix."""
        return len(row.prompt) - (self._plen.get(id(row), 0) if self.shared else 0)

    def _prefill(self, pool: "_KVPool", live: list[Row], state, rows: list[Row], on_done):
        """Prefill `rows` into pool rows after the live ones, ending at the live rows' column: prefix K/V copied
        in (left-padded), the rest of each prompt computed in place. Returns the live rows and state with them."""
        import torch

        m, n = len(live), len(rows)
        ps = [self._plen[id(r)] for r in rows]
        for r, p in zip(rows, ps):
            if p:
                self._prefix_kv(r)  # computed once per group
        pmax = 0 if self.shared else max(ps)  # shared mode: the prefixes stay out of the pool
        suffixes = [r.prompt[p:] for r, p in zip(rows, ps)]
        width = max(len(x) for x in suffixes)
        span = pmax + width
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        cmask = torch.zeros((n, span), dtype=torch.long)
        for i, (x, p) in enumerate(zip(suffixes, ps)):
            ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
            cmask[i, pmax - min(p, pmax):pmax] = 1
            cmask[i, span - len(x):] = 1
        pos = torch.tensor(ps, dtype=torch.long)[:, None] + (cmask[:, pmax:].cumsum(1) - 1).clamp(min=0)
        room = max([int(r.params.max_new_tokens) - len(r.tokens or ()) for r in live]
                   + [int(r.params.max_new_tokens) for r in rows])
        mask = self._make_room(pool, state[0] if m else None, span, room)
        c0 = pool.n - span
        for i, (r, p) in enumerate(zip(rows, ps)):
            if p and not self.shared:
                for K, V, (k, v) in zip(pool.k, pool.v, self._prefix_kv(r)):
                    K[m + i, :, c0 + pmax - p:c0 + pmax], V[m + i, :, c0 + pmax - p:c0 + pmax] = k, v
        out = self.model(input_ids=ids.to(self.device), attention_mask=cmask.to(self.device),
                         position_ids=pos.to(self.device), cache=pool.cache(m, m + n, c0, pmax), use_cache=True,
                         logits_to_keep=1, **self._prefix_arg(rows), **self._fk([r.key for r in rows]))
        first = out.logits[:, -1, :].argmax(dim=-1)
        new = (torch.cat([cmask.new_zeros((n, c0)), cmask], 1).to(self.device), pos[:, -1:].to(self.device) + 1, first)
        if m:
            new = tuple(torch.cat([old, fresh]) for old, fresh in zip((mask, state[1], state[2]), new))
        keep = [True] * m + self._record(rows, first.tolist(), on_done)
        return self._compact(pool, live + list(rows), new, keep)

    @staticmethod
    def _make_room(pool: "_KVPool", mask, span: int, room: int):
        """Place the live rows (mask [rows, pool.n], or None) so that `span` new columns end at pool.n and `room`
        tokens fit after it; drops the columns no live row uses when short of room or when they are many."""
        if mask is None:
            if span + room > pool.length:
                pool.grow(span + room, 0)
            pool.n = span
            return None
        lo = int(mask.argmax(dim=1).min())  # first column any live row attends to (each has a real token)
        target = max(pool.n, span)
        if target + room > pool.length or lo >= pool.n // 4:
            target = max(pool.n - lo, span)
        if target != pool.n:
            delta = target - pool.n
            pool.shift(mask.shape[0], lo, delta)
            moved = mask.new_zeros((mask.shape[0], target))
            moved[:, lo + delta:] = mask[:, lo:]
            mask = moved
        if pool.n + room > pool.length:  # rare: a chunk whose prefixes and suffixes together are the longest
            pool.grow(pool.n + room, mask.shape[0])
        return mask

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

    def _pool_length(self, rows: list[Row]) -> int:
        """Columns of the K/V pool: the longest prompt and room for two answers (rows end at a common column, so
        a row that has answered may sit beside a new row that still has its whole answer to come)."""
        return max(self._kept(r) for r in rows) + 2 * max(int(r.params.max_new_tokens) for r in rows) + 1

    def _rows_that_fit(self, rows: list[Row]) -> int:
        """batch_size, or fewer rows where the K/V pool would pass kv_budget bytes (large models, long prompts)."""
        if not self.kv_budget:
            return self.batch_size
        heads, dim, dtype, layers = self._kv_shape()
        import torch

        per_token = 2 * layers * heads * dim * torch.empty((), dtype=dtype).element_size()
        return max(1, min(self.batch_size, int(self.kv_budget // (per_token * self._pool_length(rows)))))

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

    def _record(self, rows: list[Row], tokens: list[int], on_done) -> list[bool]:
        """Append each row's new token; False for the rows that have finished."""
        keep = []
        for r, tok in zip(rows, tokens):
            r.tokens = (r.tokens or []) + [tok]
            done = self._finished(r, tok)
            if done and on_done is not None:
                on_done(1)
            keep.append(not done)
        return keep

    @staticmethod
    def _compact(pool: "_KVPool", live: list[Row], state, keep: list[bool]):
        """Finished rows leave: live rows from the end of the pool move into their places (only those rows'
        K/V are copied, not the whole batch's), so the live rows stay pool rows [0, count)."""
        if all(keep):
            return live, state
        count = sum(keep)
        if not count:
            return [], None
        import torch

        holes = [i for i in range(count) if not keep[i]]
        movers = [j for j in range(count, len(live)) if keep[j]]
        if holes:
            pool.move_rows(holes, movers)
        order = list(range(count))
        for h, j in zip(holes, movers):
            order[h] = j
        sel = torch.tensor(order, dtype=torch.long, device=state[0].device)
        return [live[j] for j in order], tuple(x[sel] for x in state)

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
