"""A lean inference forward for Llama-like models: the prefix engine's fast path on CPU.

Why: on a 2-core CPU the transformers + PEFT forward spent more time around the matrix products than in
them (bench, demo workload: 50 s in `linear` of 124 s; PEFT's per-call hook setup and per-layer
mixed-batch bookkeeping ~27 s, mask building, per-head K/V copies for grouped-query attention). This
forward runs the same weights through the same operations with less around them:
- q/k/v and gate/up projections as one matrix product each (weights concatenated once at load);
- LoRA applied like PEFT does (`x + lora_B(lora_A(x)) * scaling`, unmerged), per adapter on the rows
  that use it, with no hooks;
- grouped-query attention without copying K/V per head (queries packed per K/V head for decoding, as
  transformers does), a boolean mask built once per forward, not per layer;
- RMSNorm, rotary embeddings and the embedding lookup are the model's own modules (same numerics).

It is used only where it computes what the model computes: the families harness.backends.hf_family describes
(Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 1/2/3, Phi-3; biases, q/k norms, norm offsets, soft-capping, fused
projections read from that description, not a forward per family), alone or under PEFT, with adapters that
are plain LoRA on the attention and MLP projections. Anything else (GPT-2, GPT-NeoX, DoRA, LoRA on embeddings
or the head, ...) keeps the transformers forward: `LeanLlama.build` returns None with the reason.
tests/test_hf_lean.py and tests/test_hf_lean_families.py pin logits against the transformers forward (base
and adapters, prefill with left padding, decoding with a cache): bit for bit.

Packed mode (`build(model, pack_rows=n)`, the hf backend's default on CPU: backend.pack): a oneDNN-packed
copy of each base weight, LoRA in fewer, fused calls, shared prompt prefixes attended once per group
(`prefix=`, cascade attention: see `_cascade`) and prefill projections over real tokens only. Faster (the
demo's evaluation 46-49 s -> 38-41 s on 2 AVX2 cores with the first two, ~7% less with the last two) but
summed in another order: logits equal transformers + PEFT up to float round-off (the tests bound it at 1e-4
of the largest logit, with the same greedy tokens); bench/eval_throughput.py counts identical outputs on the
demo's evaluation (240/240).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from harness.backends.hf_family import base_model, describe, unsupported

SHORT_COLUMNS = 128  # decoding attention over at most this many own columns: two batched products (_short_attention)


@dataclass
class _Lora:
    a: object  # [r, in]
    b: object  # [out, r]
    scaling: float


@dataclass
class _Layer:
    ln1: object
    ln2: object
    qkv: object  # [q + k + v, hidden]
    o: object
    gate_up: object  # [2 * inter, hidden]
    down: object
    act: object  # the model's own activation module (SiLU, GELU-tanh, ...)
    bias: dict = field(default_factory=dict)  # id(weight) -> its bias (fused like the weight), where it has one
    norms: dict = field(default_factory=dict)  # the model's own extra norms: q_norm, k_norm, post_attn, post_ff
    rope: str | None = None  # the layer type whose rotary table it uses (Gemma 3), None: the model's one table
    packed: dict = field(default_factory=dict)  # id(weight) -> oneDNN-packed copy (LeanLlama.pack)
    # packed mode: projections -> (every adapter's A for them stacked, [(output slice, B's stacked side by side,
    # columns of the A product)], owners: ((adapter, columns, scaling), ...)); see LeanLlama._lora_fused
    fused_lora: dict = field(default_factory=dict)
    # adapter name -> projection -> LoRA
    lora: dict[str, dict[str, _Lora]] = field(default_factory=dict)


class LeanLlama:
    """Callable like the model in PrefixDecoder: `lean(input_ids=, attention_mask=, position_ids=, cache=,
    logits_to_keep=1, adapter_names=[...])` -> object with `.logits` [B, 1, V] and `.cache`."""

    @classmethod
    def build(cls, model, pack_rows: int = 0) -> tuple["LeanLlama | None", str | None]:
        """The lean forward for `model`, or None and why not; `pack_rows` > 0: also pack the weights (see `pack`)."""
        spec, why = describe(model)
        if why:
            return None, why
        lean = cls(model, spec)
        if pack_rows:
            lean.pack_reason = lean.pack(pack_rows)
        return lean, None

    def __init__(self, model, spec):
        import torch

        base = base_model(model)
        cfg = base.config
        fam = self.family = spec.family
        self.window, self.softcap, self.final_softcap = spec.window, spec.attn_softcap, spec.final_softcap
        # match the model's attention: eager (softmax in fp32 after soft-capping, Gemma 2) or SDPA
        self.eager = self.softcap is not None or getattr(cfg, "_attn_implementation", "sdpa") == "eager"
        self.inner = base.model
        self.lm_head = base.lm_head.weight
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scaling = float(self.inner.layers[0].self_attn.scaling)  # Gemma: query_pre_attn_scalar ** -0.5
        self.q_out = self.n_heads * self.head_dim
        self.kv_out = self.n_kv * self.head_dim
        self.inter = cfg.intermediate_size
        self.layers: list[_Layer] = []
        self.head_packed = None
        self.pack_reason: str | None = "not asked"  # why the weights are not packed (None: they are)

        def linear(mod):
            return mod.base_layer if hasattr(mod, "base_layer") else mod

        with torch.no_grad():
            for li, layer in enumerate(self.inner.layers[: cfg.num_hidden_layers]):
                at, mlp = layer.self_attn, layer.mlp
                mods = {p: getattr(at if p in fam.attn_in or p == "o_proj" else mlp, p) for p in fam.projections}
                lean = _Layer(
                    ln1=layer.input_layernorm,
                    ln2=layer.pre_feedforward_layernorm if fam.sandwich else layer.post_attention_layernorm,
                    qkv=_fuse([linear(mods[p]).weight for p in fam.attn_in]),
                    o=linear(mods["o_proj"]).weight,
                    gate_up=_fuse([linear(mods[p]).weight for p in fam.mlp_in]),
                    down=linear(mods["down_proj"]).weight,
                    act=getattr(mlp, "act_fn", None) or mlp.activation_fn,
                    rope=cfg.layer_types[li] if fam.rope_per_layer_type else None)
                for w, projs in ((lean.qkv, fam.attn_in), (lean.o, ("o_proj",)), (lean.gate_up, fam.mlp_in),
                                 (lean.down, ("down_proj",))):
                    if linear(mods[projs[0]]).bias is not None:  # all of the group or none (hf_family.describe)
                        lean.bias[id(w)] = torch.cat([linear(mods[p]).bias.detach() for p in projs])
                if fam.qk_norm:
                    lean.norms.update(q_norm=at.q_norm, k_norm=at.k_norm)
                if fam.sandwich:
                    lean.norms.update(post_attn=layer.post_attention_layernorm, post_ff=layer.post_feedforward_layernorm)
                for proj, mod in mods.items():
                    for name in getattr(mod, "lora_A", {}):
                        lean.lora.setdefault(name, {})[proj] = _Lora(
                            mod.lora_A[name].weight, mod.lora_B[name].weight, float(mod.scaling[name]))
                self.layers.append(lean)
        # an adapter may cover only some layers (lora.top_layers): known if any layer has it
        self.adapters = {name for layer in self.layers for name in layer.lora}
        # slices of the fused outputs, per projection
        q, kv, i = self.q_out, self.kv_out, self.inter
        self._slices = {"q_proj": slice(0, q), "k_proj": slice(q, q + kv), "v_proj": slice(q + kv, q + 2 * kv),
                        "gate_proj": slice(0, i), "up_proj": slice(i, 2 * i)}

    # ------------------------------------------------------------------ forward
    @property
    def shares_prefix(self) -> bool:
        """Whether `__call__` takes `prefix=` (shared prefixes attended once per group): packed mode only, since
        attention in two parts merged by log-sum-exp rounds differently (the exact mode stays bitwise)."""
        return self.pack_reason is None

    def __call__(self, input_ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep=1,
                 adapter_names=None, use_cache=True, prefix=None):
        """`prefix` (packed mode): [(rows, per-layer (keys, values) [1, kv heads, p, head dim])]: those rows'
        tokens come after that shared prefix, which is not in `cache` (cascade attention, see _attention)."""
        import torch

        bsz, q_len = input_ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + q_len, device=input_ids.device)[None].expand(bsz, -1)
        groups = self._adapter_rows(adapter_names, bsz)
        self._scales = {}  # packed mode's per-row LoRA scalings, one per adapter layout, for this forward
        x = self.inner.embed_tokens(input_ids)  # Gemma: its module scales by sqrt(hidden)
        ropes = {}
        for rope in dict.fromkeys(layer.rope for layer in self.layers):
            cos, sin = self.inner.rotary_emb(x, position_ids, rope) if rope else self.inner.rotary_emb(x, position_ids)
            ropes[rope] = cos[:, None], sin[:, None]
        mask = self._mask(attention_mask, bsz, q_len, past, x.device)
        if prefix:  # cascade attention takes an additive mask, built once for all layers
            mask = self._cascade_mask(mask, bsz, q_len, past, x)
        flat = self._real_tokens(attention_mask, q_len, groups, logits_to_keep)
        if flat is not None:  # [1, real tokens, hidden]: the projections skip the padding
            x = x.reshape(bsz * q_len, -1)[flat][None]
        for li, layer in enumerate(self.layers):
            h = layer.ln1(x)
            qkv = self._linear(h, layer.qkv, layer, self.family.attn_in, groups)
            if flat is not None:  # back to [B, L, ...] for attention: padded positions get zero q/k/v (masked)
                qkv = qkv.new_zeros((bsz * q_len, qkv.shape[-1])).index_copy_(0, flat, qkv[0]).view(bsz, q_len, -1)
            # contiguous slices: the same memory layout as separate projections (SDPA's blocking follows it)
            q = qkv[..., : self.q_out].contiguous().view(bsz, q_len, self.n_heads, self.head_dim)
            k = qkv[..., self.q_out: self.q_out + self.kv_out].contiguous().view(bsz, q_len, self.n_kv, self.head_dim)
            v = qkv[..., self.q_out + self.kv_out:].contiguous().view(bsz, q_len, self.n_kv, self.head_dim).transpose(1, 2)
            if layer.norms.get("q_norm") is not None:  # per head, over the head's vector (Qwen3, Gemma 3)
                q, k = layer.norms["q_norm"](q), layer.norms["k_norm"](k)
            cos, sin = ropes[layer.rope]
            q, k = _rope(q.transpose(1, 2), cos, sin), _rope(k.transpose(1, 2), cos, sin)
            if cache is not None:
                k, v = cache.update(k, v, li)
            a = self._attention(q, k, v, mask, q_len, [(rows, kv[li]) for rows, kv in prefix] if prefix else None)
            if flat is not None:
                a = a.reshape(bsz * q_len, -1)[flat][None]
            o = self._linear(a, layer.o, layer, ("o_proj",), groups)
            x = x + (layer.norms["post_attn"](o) if "post_attn" in layer.norms else o)
            h = layer.ln2(x)
            gu = self._linear(h, layer.gate_up, layer, self.family.mlp_in, groups)
            g, u = gu[..., : self.inter], gu[..., self.inter:]
            m = self._linear(layer.act(g) * u, layer.down, layer, ("down_proj",), groups)
            x = x + (layer.norms["post_ff"](m) if "post_ff" in layer.norms else m)
        x = self.inner.norm(x)  # the whole sequence, then the slice: GEMM on the same strided view as transformers
        if flat is not None:  # each row's last token (left padding: its last column is real)
            x = x[0, attention_mask[:, -q_len:].sum(1).cumsum(0) - 1][:, None]
        logits = self._base(x[:, -logits_to_keep:] if logits_to_keep else x, self.lm_head, self.head_packed)
        if self.final_softcap is not None:  # Gemma 2: as transformers computes it
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return SimpleNamespace(logits=logits, cache=cache)

    def _real_tokens(self, attention_mask, q_len: int, groups, logits_to_keep):
        """Indices of the real (unpadded) tokens of a padded prefill, flattened; None where it runs padded.

        Why: a prefill chunk's rows differ in length and matrix products computed every padded position (12% of
        the demo's prefill). Packed mode only (products over other row counts round differently), one adapter
        for the whole chunk (the decoder's prefill chunks are), left padding (each row's last token is real)."""
        if (q_len == 1 or attention_mask is None or self.pack_reason is not None or logits_to_keep != 1
                or (groups and (len(groups) > 1 or groups[0][1] is not None))):
            return None
        real = attention_mask[:, -q_len:].bool()
        if real.all() or not real[:, -1].all():
            return None
        return real.reshape(-1).nonzero().squeeze(1)

    def _adapter_rows(self, names, bsz: int):
        """[(adapter name, row index tensor or None for all rows)] for the rows that use an adapter."""
        if not names:
            return []
        import torch

        used = [n for n in dict.fromkeys(names) if n in self.adapters]
        if len(used) == 1 and all(n == used[0] for n in names):
            return [(used[0], None)]
        out = []
        for n in used:
            idx = [i for i, m in enumerate(names) if m == n]
            # rows of one adapter side by side (the decoder keeps them so): a slice is a view, no gather/scatter
            contiguous = idx[-1] - idx[0] + 1 == len(idx)
            out.append((n, slice(idx[0], idx[-1] + 1) if contiguous else torch.tensor(idx, dtype=torch.long)))
        return out

    def _linear(self, x, w, layer: _Layer, projs, groups):
        """x @ w.T plus each adapter's LoRA on its rows, computed as PEFT does: lora_B(lora_A(x)) * scaling.

        Each projection keeps its own A product: stacking the A matrices of q/k/v into one product changes
        the kernel MKL picks for the small output and the last bits with it (measured)."""
        import torch

        lin = torch.nn.functional.linear
        out = self._base(x, w, layer.packed.get(id(w)), layer.bias.get(id(w)))
        if layer.fused_lora:
            return self._lora_fused(x, out, layer.fused_lora.get(projs), groups) if groups else out
        for name, rows in groups:
            lora = layer.lora.get(name)
            if not lora:
                continue
            xs = x if rows is None else x[rows]
            for proj in projs:
                ad = lora.get(proj)
                if ad is None:
                    continue
                delta = lin(lin(xs, ad.a), ad.b).mul_(ad.scaling)
                sl = self._slices.get(proj, slice(None))
                if rows is None:
                    out[..., sl] += delta
                else:
                    out[rows, ..., sl] += delta
        return out

    def _lora_fused(self, x, out, fused, groups):
        """The packed mode's LoRA, every adapter at once (round-off differs from PEFT's, like the packed weights):
        one product with all adapters' A matrices stacked, each row's columns scaled by its adapter's scaling
        (zero for the other adapters' columns and for base rows), then one product per projection with the
        adapters' B matrices side by side, added in place. A handful of calls per layer whatever the mix of
        adapters in the batch, instead of a gather, products and a scatter per adapter: each small call costs
        mostly overhead on CPU (LoRA was ~14% of the demo's evaluation); the extra FLOPs (every row through
        every adapter's rank) are a few % of the base product."""
        import torch

        if fused is None:
            return out
        a, parts, owners = fused
        t = torch.nn.functional.linear(x, a)
        t.mul_(self._row_scale(owners, groups, x.shape[0], x)[:, None, :])
        t2 = t.view(-1, t.shape[-1])
        for sl, b, cols in parts:
            target = out[..., sl]  # a view: the add lands in out
            target.view(-1, target.shape[-1]).addmm_(t2[:, cols], b.t())
        return out

    def _row_scale(self, owners, groups, bsz: int, like):
        """[rows, columns]: a row's adapter scaling on that adapter's columns of the stacked A product, else 0."""
        scale = self._scales.get(id(owners))
        if scale is None:
            scale = like.new_zeros((bsz, owners[-1][1].stop))
            for name, rows in groups:
                for owner, cols, scaling in owners:
                    if owner == name:
                        scale[slice(None) if rows is None else rows, cols] = scaling
            self._scales[id(owners)] = scale
        return scale

    @staticmethod
    def _base(x, w, packed, bias=None):
        import torch

        if packed is None:
            return torch.nn.functional.linear(x, w, bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    def pack(self, rows: int) -> str | None:
        """Keep a oneDNN-packed copy of every base weight (q/k/v, o, gate/up, down, LM head) for `rows`-row
        products; returns why not (None when packed).

        Why: at decoding's 40-130 rows the weights stream from memory every step, and oneDNN's blocked
        layout does that faster than MKL's plain sgemm (2 AVX2 cores, SmolLM2's shapes: 29% less time at
        41 rows, 10% at 128; the demo's evaluation ~11% faster). Cost: a second copy of the weights, so only
        where they take at most an eighth of free memory; and the sums run in another order, so logits
        differ from transformers + PEFT in the last bits (greedy outputs: 240/240 identical on the demo's
        evaluation; tests/test_hf_lean.py bounds the difference). CPU, fp32 and a torch with oneDNN only."""
        import os

        import torch

        w0 = self.layers[0].qkv
        if w0.device.type != "cpu" or w0.dtype != torch.float32:
            return f"{w0.device.type} {w0.dtype} weights (packing is for fp32 on CPU)"
        if not torch.backends.mkldnn.is_available():
            return "this torch has no oneDNN"
        size = sum(w.numel() * 4 for layer in self.layers for w in (layer.qkv, layer.o, layer.gate_up, layer.down))
        size += self.lm_head.numel() * 4
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux
            free = 0
        if size * 8 > free:
            return f"weights {size / 2**30:.1f} GiB: a packed copy would pass an eighth of free memory"
        try:
            with torch.no_grad():
                x = torch.randn(2, w0.shape[1])
                probe = torch.ops.mkldnn._reorder_linear_weight(w0, rows)
                err = (self._base(x, w0, probe) - torch.nn.functional.linear(x, w0)).abs().max().item()
                if not err <= 1e-3 * max(1.0, w0.abs().max().item()):
                    return f"packed product differs by {err:g}"
                for layer in self.layers:
                    layer.packed = {id(w): torch.ops.mkldnn._reorder_linear_weight(w, rows)
                                    for w in (layer.qkv, layer.o, layer.gate_up, layer.down)}
                self.head_packed = torch.ops.mkldnn._reorder_linear_weight(self.lm_head, rows)
                layouts: dict = {}  # layers with the same adapters share one owners tuple (one row scale per forward)
                for layer in self.layers:
                    layer.fused_lora = {projs: self._stack_lora(layer, projs, layouts) for projs in self.family.fused}
        except (RuntimeError, AttributeError) as e:  # an op missing or refusing in this torch build
            for layer in self.layers:
                layer.packed, layer.fused_lora = {}, {}
            self.head_packed = None
            return f"oneDNN packing failed: {e}"
        return None

    def _stack_lora(self, layer: _Layer, projs: tuple[str, ...], layouts: dict):
        """Every adapter's LoRA for the projections `projs` of one layer, stacked (LeanLlama._lora_fused)."""
        import torch

        names = sorted(n for n, lora in layer.lora.items() if any(p in lora for p in projs))
        if not names:
            return None
        a_blocks, parts, owners, start = [], [], [], 0
        for p in projs:  # columns grouped by projection, so each projection's B reads one contiguous block
            first, bs = start, []
            for n in names:
                ad = layer.lora[n].get(p)
                if ad is not None:
                    r = ad.a.shape[0]
                    a_blocks.append(ad.a.detach())
                    bs.append(ad.b.detach())
                    owners.append((n, slice(start, start + r), ad.scaling))
                    start += r
            if bs:
                parts.append((self._slices.get(p, slice(None)), torch.cat(bs, dim=1), slice(first, start)))
        key = tuple((n, c.start, c.stop, s) for n, c, s in owners)
        return torch.cat(a_blocks), parts, layouts.setdefault(key, tuple(owners))

    def _mask(self, attention_mask, bsz: int, q_len: int, past: int, device):
        """Boolean [B, 1, q, past+q] (True = attend), or None for an unpadded causal prefill."""
        import torch

        if attention_mask is None:
            if q_len > 1 and past == 0:
                return None
            attention_mask = torch.ones((bsz, past + q_len), dtype=torch.long, device=device)
        real = attention_mask.bool()[:, None, None, :]
        if q_len == 1:
            return real
        total = past + q_len
        qpos = torch.arange(past, total, device=device)[:, None]
        kpos = torch.arange(total, device=device)[None, :]
        # a padded query sees itself, so no row of the softmax is empty (its output is never used)
        return ((kpos <= qpos) & real) | (kpos == qpos)

    def _attention(self, q, k, v, mask, q_len: int, prefix=None):
        import torch

        bsz, groups = q.shape[0], self.n_heads // self.n_kv
        if prefix:
            return self._cascade(q, k, v, mask, q_len, prefix)
        if self.eager:
            return self._eager(q, k, v, mask, q_len)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if q_len == 1 and groups > 1:  # decode: queries packed per K/V head, no K/V copies
            out = sdpa(q.reshape(bsz, self.n_kv, groups, self.head_dim), k, v, attn_mask=mask, scale=self.scaling)
            out = out.reshape(bsz, self.n_heads, 1, self.head_dim)
        elif mask is None:
            out = sdpa(q, k, v, is_causal=True, scale=self.scaling, enable_gqa=groups > 1)
        else:
            if groups > 1:
                k = k[:, :, None].expand(bsz, self.n_kv, groups, *k.shape[-2:]).reshape(bsz, self.n_heads, *k.shape[-2:])
                v = v[:, :, None].expand(bsz, self.n_kv, groups, *v.shape[-2:]).reshape(bsz, self.n_heads, *v.shape[-2:])
            out = sdpa(q, k, v, attn_mask=mask, scale=self.scaling)
        return out.transpose(1, 2).reshape(bsz, q_len, self.n_heads * self.head_dim)

    def _eager(self, q, k, v, mask, q_len: int):
        """transformers' eager attention, operation for operation (the model's own choice where it soft-caps
        attention logits, Gemma 2): K/V repeated per head, scores scaled then capped (tanh), an additive mask of
        the dtype's minimum, softmax in float32."""
        import torch

        bsz, groups = q.shape[0], self.n_heads // self.n_kv
        if groups > 1:
            k = k[:, :, None].expand(bsz, self.n_kv, groups, *k.shape[-2:]).reshape(bsz, self.n_heads, *k.shape[-2:])
            v = v[:, :, None].expand(bsz, self.n_kv, groups, *v.shape[-2:]).reshape(bsz, self.n_heads, *v.shape[-2:])
        if mask is None:  # an unpadded causal prefill
            total = k.shape[-2]
            mask = torch.ones((q_len, total), dtype=torch.bool, device=q.device).tril(total - q_len)[None, None]
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if self.softcap is not None:
            w = w / self.softcap
            w = torch.tanh(w)
            w = w * self.softcap
        w = w + torch.zeros(mask.shape, dtype=w.dtype, device=w.device).masked_fill_(~mask, torch.finfo(w.dtype).min)
        w = torch.nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v)
        return out.transpose(1, 2).reshape(bsz, q_len, self.n_heads * self.head_dim)

    def _cascade_mask(self, mask, bsz: int, q_len: int, past: int, like):
        """`_mask`'s boolean mask as the additive float mask the flash kernel takes (0 / -inf), one row per query
        packed per K/V head (position rows repeated for the heads that share a K/V head)."""
        import torch

        g, total = self.n_heads // self.n_kv, past + q_len
        if mask is None:  # an unpadded causal prefill: the same as a mask of its causal triangle
            mask = torch.ones((q_len, total), dtype=torch.bool, device=like.device).tril(past)
            mask = mask[None, None].expand(bsz, 1, q_len, -1)
        add = torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill_(~mask, float("-inf"))
        if q_len > 1:
            add = add[:, :, None].expand(bsz, 1, g, q_len, total).reshape(bsz, 1, g * q_len, total)
        return add

    def _cascade(self, q, k, v, mask, q_len: int, prefix):
        """Attention over [shared prefix ; the row's own columns] in two parts merged by their log-sum-exp.

        Why: rows of one group (same adapter, same system prompt or few-shot turns) share their prompt prefix;
        copied into every row, decoding re-read it from memory once per row and step (memory-bound on CPU:
        the few-shot rows' steps took 1.6x the others'). Here the prefix's K/V are read once per group: its rows'
        queries go through one attention call against them, the rows' own columns (rest of the prompt, the
        answer so far) through another, and the two are merged exactly in real arithmetic
        (out = o1 * e^(l1 - L) + o2 * e^(l2 - L), L = log(e^l1 + e^l2)), like cascade attention in FlashInfer.
        Queries are packed per K/V head (grouped-query attention without K/V copies)."""
        import torch

        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        bsz, g, d, nkv = q.shape[0], self.n_heads // self.n_kv, self.head_dim, self.n_kv
        qp = q.reshape(bsz, nkv, g * q_len, d)  # head h = kv head h // g: row-major heads, then positions
        cap = self.softcap  # the flash kernel cannot soft-cap: batched products then
        if cap is not None or (q_len == 1 and k.shape[-2] <= SHORT_COLUMNS):  # mask: additive, per packed query
            out, lse = _short_attention(qp, k, v, mask, self.scaling, cap)
        else:
            out, lse = flash(qp, k, v, 0.0, False, attn_mask=mask, scale=self.scaling)
        for rows, (pk, pv) in prefix:
            qg = qp[rows]
            r = qg.shape[0]
            qg = qg.transpose(0, 1).reshape(1, nkv, r * g * q_len, d)
            o2, l2 = (flash(qg, pk, pv, 0.0, False, scale=self.scaling) if cap is None
                      else _short_attention(qg, pk, pv, None, self.scaling, cap))
            o2 = o2.reshape(nkv, r, g * q_len, d).transpose(0, 1)
            l2 = l2.reshape(nkv, r, g * q_len).transpose(0, 1)
            l1 = lse[rows]
            total = torch.logaddexp(l1, l2)
            out[rows] = out[rows] * (l1 - total).exp_()[..., None] + o2 * (l2 - total).exp_()[..., None]
        return out.reshape(bsz, self.n_heads, q_len, d).transpose(1, 2).reshape(bsz, q_len, self.n_heads * d)


def _short_attention(q, k, v, add, scale: float, softcap: float | None = None):
    """Softmax attention and its log-sum-exp as two batched products: for decoding over a row's own columns
    (few, the shared prefix being apart) the CPU flash kernel's per-block overhead cost twice this (measured at
    33-90 columns, 60-96 rows, SmolLM2's heads); past ~128 columns the flash kernel is faster. Also where
    attention logits are soft-capped (Gemma 2), which the flash kernel cannot do."""
    import torch

    s = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)
    if softcap is not None:
        s = torch.tanh(s.div_(softcap)).mul_(softcap)
    if add is not None:
        s = s.add_(add)
    top = s.amax(-1, keepdim=True)
    p = s.sub_(top).exp_()
    z = p.sum(-1, keepdim=True)
    return torch.matmul(p, v).div_(z), (top + z.log()).squeeze(-1)


def _fuse(weights):
    """One [sum of rows, in] weight; the model's own parameters become row views of it (no second copy)."""
    import torch

    fused = torch.cat([w.detach() for w in weights])
    start = 0
    for w in weights:
        w.data = fused[start:start + w.shape[0]]  # contiguous: a block of whole rows
        start += w.shape[0]
    return fused


def _rotate_half(x):
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x, cos, sin):
    """Rotary embedding as transformers applies it; on the first cos.shape[-1] dims only where the table is
    narrower than the head (partial rotary, e.g. Phi-3 configs with partial_rotary_factor < 1)."""
    import torch

    rd = cos.shape[-1]
    if rd == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    r = x[..., :rd]
    return torch.cat([r * cos + _rotate_half(r) * sin, x[..., rd:]], dim=-1)


__all__ = ["LeanLlama", "unsupported"]
