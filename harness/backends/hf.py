"""Embedded transformers + PEFT backend: one base model, every adapter, mixed-adapter batches.

The base model is loaded once; every adapter is loaded into the same PeftModel (safetensors
only) under an internal name, and each batch row picks its adapter through peft's
`adapter_names=` argument to `generate` ("__base__" for the base model). So a batch can mix
the base and any number of adapters: one forward pass serves them all.

Engines (`engine` option):
- "prefix" (default; greedy requests without logprobs): harness.backends.hf_decode: rows of one model
  key side by side, shared prompt prefixes (system prompt, few-shot turns) computed once, finished rows
  leave the batch at once. On the families harness.backends.hf_family describes (Llama, Mistral, Qwen2/3,
  Gemma 1/2/3, Phi-3) it runs harness.backends.hf_lean (the same logits as transformers + PEFT, bit for bit,
  with less around the matrix products; `lean=false` turns it off; other models keep the transformers forward,
  and the log line, `engine_info()` and summary.json's `engines` say so and why); on CPU its weights are also packed for oneDNN (`pack`, default true: faster decoding, logits
  equal up to float round-off, greedy outputs identical on the demo's evaluation). Sampling or logprobs
  requests use "generate".
- "generate": requests grouped by generation settings, sorted by prompt length, left-padded, one
  `generate` call per batch with base and adapters mixed (peft adapter_names).
For greedy decoding in fp32, a row's output in a batch equals its output alone
(tests/test_hf_backend.py checks this token for token on the tiny model, and the two engines
against each other); with bf16/fp16 or on GPU, batched kernels may round differently and rarely
flip a near-tie.

Errors: a prompt that does not fit the model's context together with max_new_tokens gets an error
completion (Completion.failure), not a truncated answer.

Completion fields:
- text: decoded with skip_special_tokens=True, cut at the first stop string.
- completion_tokens: tokens generated up to and including the end-of-turn token or the token
  that completed a stop string (tokens of the stop string itself are counted).
- finish_reason: "stop" (end-of-turn token or stop string), "length" (hit max_new_tokens).
- latency_s: the batch's wall time divided by its rows (the amortised cost per request, so
  latencies add up to the total time); not the time a single user would wait.
- logprobs (params.logprobs = k > 0): per generated token {"token", "logprob", "top": {token: logprob}}
  from the raw (unprocessed) next-token logits.
Sampling (temperature > 0) seeds torch with params.seed before each batch: reproducible for the
same request list and batch size, but a row's sample depends on the batch it was in.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from harness.backends.base import BASE, Completion, GenParams, ProgressFn, Request, ServeSpec, ServedAdapters
from harness.backends.hf_decode import PrefixDecoder, Row, json_end
from harness.io import UserError

PEFT_BASE = "__base__"
ENGINES = ("prefix", "generate")


def _cpu_threads() -> int:
    """Every available core, unless the machine is heavily oversubscribed (1-min load above twice the cores).

    Oversubscribing is very costly with torch's OpenMP pool (on the 2-core dev box at a load of ~12, 2 threads
    decoded SmolLM2 8x slower than 1 thread), but the load average also counts this process's own training a
    minute earlier: backing off at ordinary loads made the sweep's evaluation single-threaded (1.6x slower).
    Pass `threads` to override.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = max(1, os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    return 1 if load > 2 * cores else cores



def attach_adapters(model: Any, adapters: dict[str, Path], base_name: str) -> tuple[Any, dict[str, str]]:
    """Load every PEFT adapter (safetensors only) onto `model` under an internal name adapter_0, adapter_1, ...
    (peft names become module keys: no dots, no clash with "__base__"); returns the PEFT model (the base model
    itself when there are none) and {key: internal name}. The one loader for serving and likelihood scoring."""
    internal: dict[str, str] = {}
    for i, (key, adir) in enumerate(adapters.items()):
        adir = Path(adir)
        if not (adir / "adapter_model.safetensors").is_file():
            raise UserError(f"{adir}: no adapter_model.safetensors (adapters are loaded from safetensors only)")
        name = f"adapter_{i}"
        try:
            if i == 0:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(adir), adapter_name=name, is_trainable=False,
                                                  use_safetensors=True)
            else:
                model.load_adapter(str(adir), adapter_name=name, is_trainable=False, use_safetensors=True)
        except (ValueError, KeyError, RuntimeError) as e:
            raise UserError(f"{adir}: cannot load adapter {key!r} onto base {base_name}: {e}") from e
        internal[key] = name
    return model, internal

class HFBackend(ServedAdapters):
    name = "hf"

    def __init__(
        self,
        spec: ServeSpec,
        batch_size: int = 16,
        device: str = "auto",
        dtype: str | None = None,
        threads: int | None = None,
        generate_kwargs: dict | None = None,
        engine: str = "prefix",
        lean: bool = True,
        pack: bool = True,
    ):
        from harness.models import default_device, load_model, load_tokenizer, resolve_model
        from harness.threads import set_torch_threads

        self.check_options({"batch_size": batch_size, "engine": engine, "lean": lean, "pack": pack})
        self.batch_size = int(batch_size)
        self.engine = engine
        self.lean, self._lean, self.lean_reason = bool(lean), None, None
        self.pack, self.pack_reason = bool(pack), "lean forward not built yet"
        self.window_fallback: str | None = None  # why some requests left the lean forward (sliding window)
        self.device = default_device() if device in (None, "", "auto") else str(device)
        if self.device == "cpu":
            set_torch_threads(threads, _cpu_threads)
        # Extra keyword arguments for every generate() call (the benchmark uses min_new_tokens).
        self.generate_kwargs = dict(generate_kwargs or {})
        self.model_spec = resolve_model(spec.model_cfg)
        self.tokenizer = load_tokenizer(self.model_spec)
        self.tokenizer.padding_side = "left"
        model = load_model(self.model_spec, device=self.device, dtype=dtype)
        self.adapter_dirs: dict[str, Path] = {}
        self._internal: dict[str, str] = {BASE: PEFT_BASE}
        adapters = self._take_adapters(spec.adapters)
        model, internal = attach_adapters(model, adapters, self.model_spec.name)
        self.adapter_dirs.update(adapters)
        self._internal.update(internal)
        model.eval()
        self.model = model
        self._is_peft = bool(self.adapter_dirs)
        from harness.prompts import stop_token_ids

        # tokenizer eos + generation_config eos + the template's end of turn (the token training ends answers with)
        self._eos_ids = stop_token_ids(self.tokenizer, self.model.generation_config)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(self._eos_ids))
        cfg = getattr(self.model, "config", None)
        self.max_context = int(getattr(cfg, "max_position_embeddings", 0) or 0) or None

    @classmethod
    def check_options(cls, opts: dict) -> None:
        from harness.io import UserError

        bs = opts.get("batch_size")  # absent: the constructor's default, the one home of it
        if "batch_size" in opts and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise UserError(f"backend.batch_size: must be an integer >= 1 (got {bs!r})")
        if opts.get("engine", "prefix") not in ENGINES:
            raise UserError(f"backend.engine: must be one of {', '.join(ENGINES)} (got {opts.get('engine')!r})")
        for key in ("lean", "pack"):
            if not isinstance(opts.get(key, True), bool):
                raise UserError(f"backend.{key}: must be true or false (got {opts.get(key)!r})")

    # ------------------------------------------------------------------ interface
    def close(self) -> None:
        self.model, self._lean = None, None

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        from harness.prompts import prompt_ids

        return prompt_ids(self.tokenizer, messages)

    def _left_pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            if s:
                ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[r, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _peft_kwargs(self, keys: Sequence[str]) -> dict:
        return {"adapter_names": [self._internal[k] for k in keys]} if self._is_peft else {}

    # ------------------------------------------------------------------ logits (canary)
    def logits(self, model_key: str, messages: list[dict]):
        """Next-token logits (1-D float32 CPU tensor over the vocabulary) after the rendered prompt."""
        import torch

        self.check_keys([model_key])
        ids, mask = self._left_pad([self._prompt_ids(list(messages))])
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, **self._peft_kwargs([model_key]))
        return out.logits[0, -1].float().cpu()

    # ------------------------------------------------------------------ generation
    def generate(self, requests: Sequence[Request], progress: ProgressFn | None = None) -> list[Completion]:
        """Completions in request order; `progress(k)` is called with the number of requests each batch finished."""
        requests = list(requests)
        self.check_keys(r.model_key for r in requests)
        prompts = [self._prompt_ids(r.message_dicts()) for r in requests]
        out: list[Completion | None] = [None] * len(requests)
        # Group by generation settings (a batch shares one generate() call), then by prompt length.
        groups: dict[GenParams, list[int]] = {}
        for i, r in enumerate(requests):
            if self.max_context and len(prompts[i]) + int(r.params.max_new_tokens) > self.max_context:
                out[i] = Completion.failure(
                    f"prompt of {len(prompts[i])} tokens + max_new_tokens {r.params.max_new_tokens} exceeds the "
                    f"model's context of {self.max_context} tokens", prompt_tokens=len(prompts[i]))
                if progress is not None:
                    progress(1)
                continue
            groups.setdefault(r.params, []).append(i)
        greedy = [i for idxs in groups.values() for i in idxs
                  if self.engine == "prefix" and requests[i].params.temperature <= 0 and not requests[i].params.logprobs]
        if greedy:
            self._generate_prefix(requests, prompts, greedy, out, progress)
        for params, idxs in groups.items():
            idxs = sorted((i for i in idxs if out[i] is None), key=lambda i: (len(prompts[i]), i))
            for start in range(0, len(idxs), self.batch_size):
                chunk = idxs[start:start + self.batch_size]
                results = self._generate_batch([requests[i].model_key for i in chunk], [prompts[i] for i in chunk], params)
                for i, c in zip(chunk, results):
                    out[i] = c
                if progress is not None:
                    progress(len(chunk))
        return out  # type: ignore[return-value]

    def _generate_prefix(self, requests, prompts, idxs: list[int], out: list, progress) -> None:
        """The lean forward for the rows within its sliding window (if any), the transformers forward for the rest."""
        model = self._decoding_model()
        long = set(self._past_window(model, [(i, prompts[i], requests[i]) for i in idxs]))
        for part, m in (([i for i in idxs if i not in long], model), ([i for i in idxs if i in long], self.model)):
            if part:
                self._decode(m, requests, prompts, part, out, progress)

    def _decode(self, model, requests, prompts, idxs: list[int], out: list, progress) -> None:
        import json

        decoder = PrefixDecoder(model, self.tokenizer, eos_ids=self._eos_ids, pad_id=self._pad_id,
                                device=self.device, batch_size=self.batch_size)
        rows = {i: Row(prompts[i], json.dumps(requests[i].message_dicts()[:-1], sort_keys=True),
                       key=requests[i].model_key, params=requests[i].params) for i in idxs}
        t0 = time.perf_counter()
        decoder.run(list(rows.values()), self._peft_kwargs, progress)
        per_row = (time.perf_counter() - t0) / len(rows)
        for i, row in rows.items():
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            if row.cut is not None:
                text = text[:row.cut]
            out[i] = Completion(text=text, prompt_tokens=len(prompts[i]), completion_tokens=len(row.tokens),
                                finish_reason=row.finish, latency_s=per_row)

    def _decoding_model(self):
        """The lean forward where it applies (same numbers, less overhead: harness.backends.hf_lean), else the
        model; says which on stderr, once."""
        if self._lean is None:
            import sys

            from harness.backends.hf_lean import LeanLlama

            lean, why = (LeanLlama.build(self.model, pack_rows=self.batch_size if self.pack else 0) if self.lean
                         else (None, "backend.lean=false"))
            self._lean = lean or self.model
            self.lean_reason = why
            self.pack_reason = ("backend.pack=false" if not self.pack else why if lean is None else lean.pack_reason)
            kind = type(getattr(self.model, "get_base_model", lambda: self.model)()).__name__
            print(f"hf backend: {kind} on the lean forward" + (" (packed weights)" if self.pack_reason is None else "")
                  if lean is not None else f"hf backend: {kind} on the transformers forward (not lean: {why})",
                  file=sys.stderr)
        return self._lean

    def _past_window(self, model, rows) -> list[int]:
        """Rows (index, prompt, request) whose prompt plus new tokens could pass the lean forward's sliding window:
        it attends to every column, the same as the model only within the window (harness.backends.hf_family),
        so those go to the transformers forward; said on stderr and in engine_info."""
        window = getattr(model, "window", None)
        if model is self.model or not window:
            return []
        long = [i for i, p, r in rows if len(p) + int(r.params.max_new_tokens) > window]
        if long:
            import sys

            self.window_fallback = (f"{len(long)} of {len(rows)} requests: prompt plus new tokens pass the model's "
                                    f"sliding window ({window}), those on the transformers forward")
            print(f"hf backend: {self.window_fallback}", file=sys.stderr)
        return long

    def engine_info(self) -> dict:
        """What generated (or would generate) greedy requests: for summary.json and the report, so a run says
        when it fell back to the transformers forward and why."""
        lean = self.engine == "prefix" and self._decoding_model() is not self.model
        return {"engine": self.engine, "lean": lean,
                "lean_reason": None if lean else self.lean_reason or f"backend.engine={self.engine}",
                "pack": lean and self.pack_reason is None, "pack_reason": self.pack_reason if lean else None,
                "window_fallback": self.window_fallback}

    def _generate_batch(self, keys: list[str], seqs: list[list[int]], params: GenParams) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        t0 = time.perf_counter()
        ids, mask = self._left_pad(seqs)
        width = ids.shape[1]
        tracker = _FinishTracker(self.tokenizer, width, self._eos_ids, params.stop, len(seqs), self.device,
                                 json_stop=params.json_stop)
        sample = params.temperature > 0
        gc_kwargs: dict[str, Any] = dict(
            max_new_tokens=int(params.max_new_tokens),
            do_sample=sample,
            num_beams=1,
            eos_token_id=sorted(self._eos_ids),
            pad_token_id=self._pad_id,
            return_dict_in_generate=True,
            output_logits=params.logprobs > 0,
        )
        if sample:
            gc_kwargs.update(temperature=float(params.temperature), top_p=float(params.top_p), top_k=0)
        gen_kwargs = dict(self.generate_kwargs)
        gen_cfg = GenerationConfig(**{**gc_kwargs, **{k: gen_kwargs.pop(k) for k in list(gen_kwargs)
                                                      if hasattr(GenerationConfig(), k)}})
        if sample:
            torch.manual_seed(int(params.seed))
        with torch.inference_mode():
            res = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                generation_config=gen_cfg,
                stopping_criteria=StoppingCriteriaList([tracker]),
                **self._peft_kwargs(keys),
                **gen_kwargs,
            )
        gen = res.sequences[:, width:].cpu()
        logprobs = None
        if params.logprobs > 0 and res.logits:
            logprobs = torch.log_softmax(torch.stack(res.logits, dim=1).float(), dim=-1).cpu()  # [B, T, V]
        per_row = (time.perf_counter() - t0) / len(seqs)
        comps = []
        for r in range(len(seqs)):
            n_gen = int(gen.shape[1])
            done_at = tracker.done_at[r]
            n = done_at + 1 if done_at is not None else n_gen
            toks = gen[r, :n].tolist()
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
            cut = _first_stop(text, params.stop)
            if cut is None and params.json_stop:
                cut = json_end(text)
            if cut is not None:
                text = text[:cut]
            finish = "stop" if (done_at is not None or cut is not None) else "length"
            lp = None
            if logprobs is not None:
                lp = []
                for t, tok in enumerate(toks):
                    row = logprobs[r, t]
                    top_v, top_i = torch.topk(row, int(params.logprobs))
                    lp.append({
                        "token": self.tokenizer.decode([tok]),
                        "logprob": float(row[tok]),
                        "top": {self.tokenizer.decode([int(i)]): float(v) for v, i in zip(top_v, top_i)},
                    })
            comps.append(Completion(text=text, prompt_tokens=len(seqs[r]), completion_tokens=len(toks),
                                    finish_reason=finish, latency_s=per_row, logprobs=lp))
        return comps


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


class _FinishTracker:
    """Stopping criterion that records, per row, the step at which it finished (EOS or a stop string).

    generate() marks rows finished by EOS itself; this also stops rows whose decoded text contains
    a stop string, and remembers where each row ended so padding after it is never counted.
    """

    def __init__(self, tokenizer, prompt_width: int, eos_ids: set[int], stops: Sequence[str], rows: int, device,
                 json_stop: bool = False):
        self.tokenizer = tokenizer
        self.json_stop = json_stop
        self.width = prompt_width
        self.eos_ids = eos_ids
        self.stops = [s for s in stops if s]
        self.done_at: list[int | None] = [None] * rows
        self.device = device

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        step = input_ids.shape[1] - self.width - 1
        last = input_ids[:, -1].tolist()
        done = []
        for r, tok in enumerate(last):
            if self.done_at[r] is None:
                if tok in self.eos_ids:
                    self.done_at[r] = step
                elif self.stops or self.json_stop:
                    text = self.tokenizer.decode(input_ids[r, self.width:].tolist(), skip_special_tokens=True)
                    if any(s in text for s in self.stops) or (self.json_stop and json_end(text) is not None):
                        self.done_at[r] = step
            done.append(self.done_at[r] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
