"""The data doctor: check files (formats, roles, token lengths, duplicates, leakage, output-format
consistency) and prepare them (dedupe, drop leakage, fixed-seed split). Reading and the duplicate index are
harness/data.py.

Leakage: an eval example that is an exact or near duplicate of a training example. `prepare`
keeps the eval set intact (it is the fixed yardstick that runs are compared on) and drops the
leaking TRAIN examples instead; it also drops duplicate training examples (keeping the first).
"""
from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.data import DupIndex, Problem, RecordReader, exact_key, read_records
from harness.example import Example
from harness.io import UserError, sha256_file, write_json, write_jsonl


# --------------------------------------------------------------------------------------------- tokens
def _special_splitter(tokenizer: Any):
    """A regex splitting text at the tokenizer's added tokens, when counting per segment is exact."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "get_added_tokens_decoder"):
        return None, None
    added = list(backend.get_added_tokens_decoder().values())
    if not added or any(t.lstrip or t.rstrip or t.single_word or t.normalized for t in added):
        return None, None
    alts = sorted((t.content for t in added), key=len, reverse=True)
    return backend, re.compile("(" + "|".join(re.escape(a) for a in alts) + ")")


def token_lengths(tokenizer: Any, examples: Sequence[Example], *, system_prompt: str | None = None,
                  prompt_template: str = "{prompt}", batch_size: int = 4096) -> list[int]:
    """Untruncated training length (prompt as rendered for inference + target + end of turn) of each example.

    Same strings as harness.prompts.tokenize_for_training. Fast path: added/special tokens are split out
    before BPE, so a string's length is (#special tokens) + the lengths of the pieces between them; pieces
    repeated across examples (system prompt, role headers) are tokenized once per batch, with the fast
    tokenizer's batch call.
    """
    from harness.prompts import build_messages, end_of_turn, render_prompt

    eot = end_of_turn(tokenizer)
    backend, splitter = _special_splitter(tokenizer)
    out: list[int] = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s:s + batch_size]
        texts = [render_prompt(tokenizer, build_messages(ex, system_prompt=system_prompt,
                                                          prompt_template=prompt_template)) for ex in chunk]
        comps = [ex.target + eot for ex in chunk]
        if splitter is None:
            enc = tokenizer(texts + comps, add_special_tokens=False)["input_ids"]
            k = len(chunk)
            out += [len(enc[i]) + len(enc[k + i]) for i in range(k)]
            continue
        pieces_of: list[tuple[int, list[str]]] = []
        uniq: dict[str, int] = {}
        for i in range(len(chunk)):
            n_special, pieces = 0, []
            for t in (texts[i], comps[i]):
                parts = splitter.split(t)
                n_special += len(parts) // 2
                pieces += [p for p in parts[0::2] if p]
            for p in pieces:
                uniq.setdefault(p, len(uniq))
            pieces_of.append((n_special, pieces))
        keys = list(uniq)
        enc = backend.encode_batch_fast(keys, add_special_tokens=False) if hasattr(backend, "encode_batch_fast") \
            else backend.encode_batch(keys, add_special_tokens=False)
        counts = [len(e.ids) for e in enc]
        out += [n + sum(counts[uniq[p]] for p in pieces) for n, pieces in pieces_of]
    # Rows whose messages hold control-token text encode it as text (harness.control_tokens): count them exactly.
    from harness.control_tokens import forged, message_texts
    from harness.prompts import tokenize_for_training

    for i, ex in enumerate(examples):
        msgs = build_messages(ex, system_prompt=system_prompt, prompt_template=prompt_template)
        if forged(tokenizer, [*message_texts(msgs), ex.target]):
            out[i] = len(tokenize_for_training(tokenizer, ex, system_prompt=system_prompt, prompt_template=prompt_template,
                                               max_length=1 << 30)["input_ids"])
    return out


def percentile(values: Sequence[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    i = min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))
    return int(s[i])


def load_tokenizer_for(name: str) -> tuple[Any, int] | tuple[None, None]:
    """The tokenizer and max length of a conf/model name or YAML path; (None, None) for 'none'."""
    if name in (None, "", "none"):
        return None, None
    from harness.config import resolve_model_cfg

    cfg = resolve_model_cfg(name)
    from harness.models import load_tokenizer, resolve_model

    spec = resolve_model(cfg)
    return load_tokenizer(spec), int(spec.max_length)


# --------------------------------------------------------------------------------------------- check
@dataclass
class FileReport:
    path: str
    role: str  # "train" | "eval"
    format: str | None
    formats: dict[str, int]
    lines: int
    records: int
    examples: int
    errors: int = 0
    warnings: int = 0
    exact_dups: int = 0
    near_dups: int = 0
    leaked: int = 0
    too_long: int = 0
    json_targets: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # p50/p90/p99/max

    @property
    def json_share(self) -> float:
        return self.json_targets / self.examples if self.examples else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["json_share"] = round(self.json_share, 4)
        return d


@dataclass
class CheckReport:
    files: list[FileReport]
    problems: list[Problem]
    max_length: int | None = None
    near_dup_threshold: float = 0.8
    # (file, line, id, reason, of_file, of_line, of_id, jaccard) rows; used by prepare
    duplicates: list[tuple] = field(default_factory=list)
    leaks: list[tuple] = field(default_factory=list)
    examples: dict[str, list[Example]] = field(default_factory=dict, repr=False)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "max_length": self.max_length,
            "near_dup_threshold": self.near_dup_threshold,
            "files": [f.to_dict() for f in self.files],
            "problems": [p.to_dict() for p in self.problems],
        }


def _is_json_target(t: str) -> tuple[bool, tuple | None]:
    s = t.strip()
    if not s or s[0] not in "{[":
        return False, None
    try:
        v = json.loads(s)
    except (ValueError, RecursionError):
        return False, None
    return True, (tuple(sorted(map(str, v))) if isinstance(v, dict) else None)


def _format_consistency(rep: FileReport, r: RecordReader) -> None:
    """Warn about targets that break the file's dominant output format (JSON vs not, JSON keys)."""
    lines_not_json, keysets, key_lines = [], Counter(), []
    for ex in r.examples:
        ok, keys = _is_json_target(ex.target)
        if ok:
            rep.json_targets += 1
            if keys is not None:
                keysets[keys] += 1
                key_lines.append((ex.line, keys))
        else:
            lines_not_json.append(ex.line)
    n = len(r.examples)
    if n >= 2 and rep.json_targets / n > 0.5:
        pct = round(100 * rep.json_targets / n)
        for ln in lines_not_json:
            r.add(ln, "warning", f"target is not valid JSON, but {pct}% of the targets in this file are")
        if keysets and len(keysets) > 1:
            top, cnt = keysets.most_common(1)[0]
            if cnt / max(1, sum(keysets.values())) > 0.5:
                for ln, keys in key_lines:
                    if keys != top:
                        r.add(ln, "warning", f"target JSON keys {list(keys)} differ from the usual {list(top)}")


def _unique_eval_ids(r: RecordReader) -> None:
    """Eval scores are paired by sample id: a repeated id (given, or derived from identical content) is an error."""
    r.problems = [p for p in r.problems if not p.message.startswith("duplicate id ")]
    first: dict[str, int] = {}
    for ex in r.examples:
        if ex.id in first:
            r.add(ex.line, "error", f"duplicate sample id {ex.id!r} (first at line {first[ex.id]}): eval items are "
                                    "paired by id, give each item its own id (an exact repeat of a line: "
                                    "harness data prepare --dedupe-eval drops it, listed)")
        else:
            first[ex.id] = ex.line


def _control_token_text(r: RecordReader, tokenizer: Any) -> None:
    """A warning for each row holding a control token's text ("<|im_end|>"): it is encoded as plain text
    (harness.control_tokens), which the user may not expect of pre-rendered multi-turn data."""
    from harness.control_tokens import forged

    for ex in r.examples:
        s = forged(tokenizer, [m.get("content") for m in ex.messages])
        if s is not None:
            r.add(ex.line, "warning", f"holds the control-token text {s!r}: it is encoded as plain text, so the "
                                      f"row cannot open or close a turn (write multi-turn data as a messages list)")


def check_files(
    train: str | Path,
    eval: str | Path | None = None,  # noqa: A002 - mirrors the CLI flag
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
    near_dup_threshold: float = 0.8,
    system_prompt: str | None = None,
    prompt_template: str = "{prompt}",
) -> CheckReport:
    """Validate TRAIN (and EVAL): formats, roles, lengths, duplicates, leakage, output-format consistency."""
    index = DupIndex(near_dup_threshold)
    files: list[FileReport] = []
    problems: list[Problem] = []
    dups: list[tuple] = []
    leaks: list[tuple] = []
    examples: dict[str, list[Example]] = {}
    for role, path in (("train", train), ("eval", eval)):
        if path is None:
            continue
        r = read_records(path)
        if not r.examples and not any(p.line == 0 for p in r.problems):
            r.add(1, "error", "no usable examples" + (" (the file is empty)" if not r.n_records
                                                      else ": every record has an error"))
        if role == "eval":
            _unique_eval_ids(r)
        rep = FileReport(str(path), role, r.majority, dict(r.formats), r.n_lines, r.n_records, len(r.examples))
        # Tokens.
        if tokenizer is not None and r.examples:
            lens = token_lengths(tokenizer, r.examples, system_prompt=system_prompt, prompt_template=prompt_template)
            _control_token_text(r, tokenizer)
            rep.tokens = {"p50": percentile(lens, 50), "p90": percentile(lens, 90), "p99": percentile(lens, 99),
                          "max": max(lens)}
            if max_length:
                for ex, n in zip(r.examples, lens):
                    if n > max_length:
                        rep.too_long += 1
                        r.add(ex.line, "error", f"example is {n} tokens, longer than the model's max length "
                                                f"{max_length} (training would cut off the target)")
        _format_consistency(rep, r)
        # Duplicates within the file (against kept examples of this file only) and leakage (eval vs train).
        local = DupIndex(near_dup_threshold) if role == "eval" else index
        for ex in r.examples:
            key = exact_key(ex)
            mh = local.minhash(ex) if local.lsh is not None else None
            if role == "eval":
                mine = [(ex.source, ex.line, ex.id, kind, *index.where[k][:2], index.where[k][2], j)
                        for kind, k, j in index.find(ex, all_matches=True, key=key, mh=mh)]
                if mine:
                    leaks += mine
                    rep.leaked += 1
                    f0, l0, j0 = mine[0][4], mine[0][5], mine[0][7]
                    what = "an exact" if mine[0][3] == "exact" else f"a near (Jaccard {j0:.2f})"
                    more = f" and {len(mine) - 1} more" if len(mine) > 1 else ""
                    r.add(ex.line, "warning", f"leakage: {what} duplicate of training example {f0}:{l0}{more}")
            found = local.find(ex, key=key, mh=mh)
            if found:
                kind, k, j = found[0]
                f, ln, oid = local.where[k]
                dups.append((ex.source, ex.line, ex.id, kind, f, ln, oid, j))
                if kind == "exact":
                    rep.exact_dups += 1
                    r.add(ex.line, "warning", f"exact duplicate of line {ln}")
                else:
                    rep.near_dups += 1
                    r.add(ex.line, "warning", f"near-duplicate of line {ln} (Jaccard {j:.2f})")
            else:
                local.add(ex, key=key, mh=mh)
        r.problems.sort(key=lambda p: p.line)
        rep.errors = sum(p.severity == "error" for p in r.problems)
        rep.warnings = len(r.problems) - rep.errors
        problems += r.problems
        files.append(rep)
        examples[role] = r.examples
    return CheckReport(files, problems, max_length, near_dup_threshold, dups, leaks, examples)


# --------------------------------------------------------------------------------------------- prepare
@dataclass
class PrepareReport:
    out: Path
    counts: dict[str, int]
    dropped: list[dict]
    outputs: dict[str, dict]
    check: CheckReport

    def to_dict(self) -> dict:
        return {"out": str(self.out), "counts": self.counts, "dropped": self.dropped, "outputs": self.outputs}


def prepare(
    train: str | Path,
    eval: str | Path | None = None,  # noqa: A002
    *,
    out: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    near_dup_threshold: float = 0.8,
    tokenizer: Any = None,
    max_length: int | None = None,
    drop_invalid: bool = False,
    system_prompt: str | None = None,
    prompt_template: str = "{prompt}",
    drop_eval_lines: Sequence[int] = (),
) -> PrepareReport:
    """Clean and split: drop duplicate and leaking TRAIN examples, keep EVAL intact, fixed-seed split.
    `drop_eval_lines`: eval lines the user asked to drop (--dedupe-eval: exact repeats, listed by the command).

    Writes OUT/train.jsonl, val.jsonl, (test.jsonl,) (eval.jsonl,) in canonical `messages` format and
    OUT/prepare_report.json. Errors in the input abort (UserError, exit 1) unless `drop_invalid`, which
    drops unreadable records (they never became examples) and over-long examples.
    """
    for name, v in (("val fraction", val_fraction), ("test fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise UserError(f"{name} must be in [0, 1), got {v}")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(f"val fraction + test fraction must be < 1, got {val_fraction + test_fraction}")
    for p in (train, eval):
        if p is not None and not Path(p).is_file():
            raise UserError(f"{p}: file not found")
    rep = check_files(train, eval, tokenizer=tokenizer, max_length=max_length, near_dup_threshold=near_dup_threshold,
                      system_prompt=system_prompt, prompt_template=prompt_template)
    eval_src = str(eval) if eval is not None else None
    errors = [p for p in rep.errors if not (p.file == eval_src and p.line in set(drop_eval_lines))]
    if errors and (not drop_invalid or any(p.file == eval_src for p in errors)):
        shown = "\n".join(str(p) for p in errors[:10])
        more = f"\n... and {len(errors) - 10} more errors" if len(errors) > 10 else ""
        hint = ("the eval set must be clean (prepare never changes it)" if any(p.file == eval_src for p in errors)
                else "fix them, or pass --drop-invalid to drop those records")
        raise UserError(f"{len(errors)} error(s) in the input; {hint}:\n{shown}{more}", exit_code=1)

    dropped: list[dict] = []
    drop_lines: set[int] = set()
    train_src = str(train)
    if drop_invalid:
        err_lines = sorted({p.line for p in errors if p.file == train_src})
        for ln in err_lines:
            msg = next(p.message for p in errors if p.file == train_src and p.line == ln)
            dropped.append({"file": train_src, "line": ln, "id": None, "reason": "invalid", "detail": msg})
        drop_lines.update(err_lines)
    for (f, ln, eid, kind, of, oln, oid, j) in rep.duplicates:
        if f != train_src or ln in drop_lines:
            continue
        drop_lines.add(ln)
        dropped.append({"file": f, "line": ln, "id": eid, "reason": f"{kind}_duplicate",
                        "detail": f"duplicate of {of}:{oln} (id {oid}, Jaccard {j:.2f})"})
    leaked_train: dict[int, tuple] = {}
    for (f, ln, eid, kind, tf, tln, tid, j) in rep.leaks:
        leaked_train.setdefault(tln, (tid, kind, f, ln, eid, j))
    for tln in sorted(leaked_train):
        tid, kind, f, ln, eid, j = leaked_train[tln]
        if tln in drop_lines:
            continue
        drop_lines.add(tln)
        dropped.append({"file": train_src, "line": tln, "id": tid, "reason": "leakage",
                        "detail": f"{kind} duplicate of eval example {f}:{ln} (id {eid}, Jaccard {j:.2f})"})
    dropped.sort(key=lambda d: d["line"])

    kept = [ex for ex in rep.examples.get("train", []) if ex.line not in drop_lines]
    # Make ids unique (eval scores are keyed by id).
    seen: set[str] = set()
    fixed = []
    for ex in kept:
        if ex.id in seen:
            ex = Example(ex.messages, id=f"{ex.id}-L{ex.line}", source=ex.source, line=ex.line, meta=ex.meta)
        seen.add(ex.id)
        fixed.append(ex)
    kept = fixed
    n = len(kept)
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise UserError(f"{train}: only {n} usable training examples left after cleaning; nothing to split", 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    test_idx = set(order[n_val:n_val + n_test])
    splits = {
        "train": [ex for i, ex in enumerate(kept) if i not in val_idx and i not in test_idx],
        "val": [ex for i, ex in enumerate(kept) if i in val_idx],
    }
    if test_fraction > 0:
        splits["test"] = [ex for i, ex in enumerate(kept) if i in test_idx]
    if eval is not None:
        splits["eval"] = [ex for ex in rep.examples.get("eval", []) if ex.line not in set(drop_eval_lines)]

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, exs in splits.items():
        path = out / f"{name}.jsonl"
        write_jsonl(path, (ex.to_record() for ex in exs))
        outputs[name] = {"path": str(path), "n": len(exs), "sha256": sha256_file(path)}
    reasons = Counter(d["reason"] for d in dropped)
    counts = {"train_in": len(rep.examples.get("train", [])), "eval_in": len(rep.examples.get("eval", [])),
              "dropped": len(dropped), **{f"dropped_{k}": v for k, v in sorted(reasons.items())},
              **{name: len(exs) for name, exs in splits.items()}}
    report = PrepareReport(out, counts, dropped, outputs, rep)
    write_json(out / "prepare_report.json", {
        "inputs": {"train": {"path": str(train), "sha256": sha256_file(train)},
                   "eval": {"path": str(eval), "sha256": sha256_file(eval)} if eval is not None else None},
        "params": {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
                   "near_dup_threshold": near_dup_threshold, "max_length": max_length, "drop_invalid": drop_invalid,
                   "dropped_eval_lines": sorted(drop_eval_lines)},
        "policy": "duplicates: keep the first, drop later ones; leakage: the eval set is kept intact and the "
                  "leaking training examples are dropped",
        **report.to_dict(),
        "warnings": len(rep.warnings),
    })
    return report
