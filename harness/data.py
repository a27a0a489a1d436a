"""Training/eval data: read any common fine-tuning JSONL format into Examples (with every problem as
FILE:LINE), and the exact/near-duplicate index. The data doctor's checks and `prepare` are in harness/doctor.py.

Formats (auto-detected per file; the majority format wins, other lines are flagged as mixed):
  messages           {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
  sharegpt           {"conversations": [{"from": "human"|"user"|"gpt"|"assistant"|"system", "value": str}, ...]}
  alpaca             {"instruction": str, "input": str (optional), "output": str}
  prompt_completion  {"prompt": str, "completion": str}
Everything is read into harness.example.Example. A record's "id" (string or integer) becomes the
example id; other extra fields (e.g. "knowledge": true) go into Example.meta.

Every problem is a Problem printed as `FILE:LINE: error|warning: message`. Bad input never raises:
`read_examples` returns the problems; only `load_examples` raises a UserError naming the first.

Duplicates: exact duplicates are found by a 16-byte hash of the normalized (case-folded,
whitespace-collapsed) user text + target, near-duplicates by MinHash LSH over word 3-shingles of
the same text (Jaccard >= threshold, verified on the stored signatures). Memory holds hashes and
signatures only, never the texts. Each example is compared with the *kept* (first-seen) ones.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.example import Example
from harness.io import UserError

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MAX_LINE_BYTES = 16 << 20  # longer lines are reported, not parsed
NUM_PERM = 128
SHINGLE = 3


# --------------------------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "severity": self.severity, "message": self.message}


class _Bad(Exception):
    """A record-level error while converting one record (becomes a Problem)."""


# --------------------------------------------------------------------------------------------- reading
def _iter_lines(path: Path) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line_no, raw bytes, None) or (line_no, None, error) for over-long lines. Never loads a huge line."""
    with open(path, "rb") as fh:
        n = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            n += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                total = len(raw)
                while True:  # skip the rest of the line in bounded chunks
                    chunk = fh.readline(1 << 20)
                    total += len(chunk)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                yield n, None, f"line is too long ({total} bytes; the limit is {MAX_LINE_BYTES} bytes)"
                continue
            yield n, raw, None


def detect_format(rec: dict) -> str | None:
    """Which known format a record looks like, from its keys (None if none)."""
    if "messages" in rec:
        return "messages"
    if "conversations" in rec:
        return "sharegpt"
    if "instruction" in rec or "output" in rec:
        return "alpaca"
    if "prompt" in rec or "completion" in rec:
        return "prompt_completion"
    return None


FORMAT_KEYS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output"),
    "prompt_completion": ("prompt", "completion"),
}


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null", int: "number",
            float: "number"}.get(type(v), type(v).__name__)


def _text_field(rec: dict, key: str, *, required: bool = True) -> str:
    if key not in rec or rec[key] is None:
        if required:
            raise _Bad(f"missing field {key!r}")
        return ""
    v = rec[key]
    if not isinstance(v, str):
        raise _Bad(f"field {key!r} must be a string, got {_type_name(v)}")
    if required and not v.strip():
        raise _Bad(f"empty field {key!r}")
    return v


def _turns(rec: dict, fmt: str) -> list[dict]:
    key, rkey, ckey = ("messages", "role", "content") if fmt == "messages" else ("conversations", "from", "value")
    turns = rec.get(key)
    if turns is None:
        raise _Bad(f"missing field {key!r}")
    if not isinstance(turns, list):
        raise _Bad(f"field {key!r} must be an array of messages, got {_type_name(turns)}")
    if not turns:
        raise _Bad(f"empty field {key!r}")
    out = []
    for i, m in enumerate(turns, 1):
        if not isinstance(m, dict):
            raise _Bad(f"{key}[{i}] must be an object with {rkey!r} and {ckey!r}, got {_type_name(m)}")
        if rkey not in m or m[rkey] is None:
            raise _Bad(f"{key}[{i}]: missing field {rkey!r}")
        if ckey not in m or m[ckey] is None:
            raise _Bad(f"{key}[{i}]: missing field {ckey!r}")
        role, content = m[rkey], m[ckey]
        if not isinstance(role, str):
            raise _Bad(f"{key}[{i}]: {rkey!r} must be a string, got {_type_name(role)}")
        if fmt == "messages":
            if role not in ("system", "user", "assistant"):
                raise _Bad(f"{key}[{i}]: unknown role {role!r} (expected system, user or assistant)")
        else:
            if role not in SHAREGPT_ROLES:
                raise _Bad(f"{key}[{i}]: unknown role {role!r} (expected human/user, gpt/assistant or system)")
            role = SHAREGPT_ROLES[role]
        if not isinstance(content, str):
            raise _Bad(f"{key}[{i}]: non-string {ckey!r} ({_type_name(content)}); content must be a string")
        if not content.strip():
            raise _Bad(f"{key}[{i}]: empty {ckey!r} for role {role!r}")
        out.append({"role": role, "content": content})
    _check_order(out, key)
    return out


def _check_order(msgs: list[dict], key: str) -> None:
    """Optional system first, then user/assistant alternating starting with user, ending with assistant."""
    expected = "user"
    for i, m in enumerate(msgs, 1):
        role = m["role"]
        if role == "system":
            if i != 1:
                raise _Bad(f"{key}[{i}]: wrong role order: 'system' is only allowed as the first message")
            continue
        if role != expected:
            prev = msgs[i - 2]["role"] if i > 1 else None
            after = f" after {prev!r}" if prev else " first"
            raise _Bad(f"{key}[{i}]: wrong role order: expected {expected!r}{after}, got {role!r}")
        expected = "assistant" if role == "user" else "user"
    if msgs[-1]["role"] != "assistant":
        raise _Bad(f"wrong role order: the last message must be 'assistant' (the target), got {msgs[-1]['role']!r}")


def record_to_messages(rec: dict, fmt: str) -> list[dict]:
    """Convert one record of a known format into canonical messages (raises _Bad)."""
    if fmt in ("messages", "sharegpt"):
        return _turns(rec, fmt)
    if fmt == "alpaca":
        instruction = _text_field(rec, "instruction")
        inp = _text_field(rec, "input", required=False)
        output = _text_field(rec, "output")
        user = instruction if not inp.strip() else f"{instruction}\n\n{inp}"
        return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if fmt == "prompt_completion":
        prompt = _text_field(rec, "prompt")
        completion = _text_field(rec, "completion")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    raise _Bad(f"unknown format {fmt!r}")


def _record_id(rec: dict) -> str:
    v = rec.get("id")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        return ""
    return str(v).strip()


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"bad JSON: {exc.msg} (column {exc.colno})"


@dataclass
class RecordReader:
    """Streaming parse of one file into Examples + Problems (+ a format tally)."""

    path: Path
    name: str
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    n_lines: int = 0
    n_records: int = 0
    _fmt_lines: list[tuple[int, str]] = field(default_factory=list)  # (line, fmt) of records that converted

    def add(self, line: int, severity: str, message: str) -> None:
        self.problems.append(Problem(self.name, line, severity, message))

    def run(self) -> None:
        try:
            if not self.path.exists():
                self.add(0, "error", "file not found")
                return
            if self.path.is_dir():
                self.add(0, "error", "is a directory, expected a JSONL file")
                return
            ids: dict[str, int] = {}
            for n, raw, err in _iter_lines(self.path):
                self.n_lines = n
                if err:
                    self.add(n, "error", err)
                    continue
                self._line(n, raw, ids)
        except OSError as exc:
            self.add(self.n_lines, "error", f"cannot read file: {exc.strerror or exc}")
        self._mixed_formats()

    def _line(self, n: int, raw: bytes, ids: dict[str, int]) -> None:
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.add(n, "error", f"invalid UTF-8 (byte offset {exc.start})")
            return
        if not text.strip():
            return  # blank lines are fine
        self.n_records += 1
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            self.add(n, "error", _json_error(exc))
            return
        except (ValueError, RecursionError) as exc:  # e.g. absurdly deep nesting
            self.add(n, "error", f"bad JSON: {type(exc).__name__}")
            return
        if not isinstance(rec, dict):
            self.add(n, "error", f"expected a JSON object per line, got {_type_name(rec)}")
            return
        fmt = detect_format(rec)
        if fmt is None:
            keys = ", ".join(sorted(map(str, rec))[:8]) or "none"
            self.add(n, "error", "unrecognized record: expected 'messages', 'conversations', "
                                 f"'instruction'/'output' or 'prompt'/'completion' (keys: {keys})")
            return
        self.formats[fmt] += 1
        try:
            msgs = record_to_messages(rec, fmt)
        except _Bad as exc:
            self.add(n, "error", str(exc))
            return
        except RecursionError:
            self.add(n, "error", "record is nested too deeply")
            return
        self._fmt_lines.append((n, fmt))
        rid = _record_id(rec)
        meta = {k: v for k, v in rec.items() if k != "id" and k not in FORMAT_KEYS[fmt]}
        ex = Example(tuple(msgs), id=rid, source=self.name, line=n, meta=meta)
        first = ids.get(ex.id) if rid else None
        if first is not None:
            self.add(n, "warning", f"duplicate id {ex.id!r} (first used at line {first})")
        elif rid:
            ids[ex.id] = n
        self.examples.append(ex)

    def _mixed_formats(self) -> None:
        if len(self.formats) < 2:
            return
        major = self.majority
        for n, fmt in self._fmt_lines:
            if fmt != major:
                self.add(n, "warning", f"mixed formats: this record is {fmt}, most of this file is {major}")
        self.problems.sort(key=lambda p: p.line)

    @property
    def majority(self) -> str | None:
        if not self.formats:
            return None
        top = max(self.formats.values())
        return next(f for f in FORMATS if self.formats[f] == top)


def read_records(path: str | Path) -> RecordReader:
    p = Path(path)
    r = RecordReader(p, str(path))
    r.run()
    return r


def read_examples(path: str | Path) -> tuple[list[Example], list[Problem]]:
    """Parse a JSONL file of any supported format. Never raises for bad input: problems are returned."""
    r = read_records(path)
    return r.examples, r.problems


def load_examples(path: str | Path) -> list[Example]:
    """Like read_examples, but bad input is a UserError (exit 2) naming the first error's FILE:LINE; a file
    with no usable examples is an error too."""
    if not Path(path).is_file():
        raise UserError(f"{path}: file not found")
    examples, problems = read_examples(path)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0]}{more}; run `harness data check {path}` for all of them")
    if not examples:
        raise UserError(f"{path}:1: error: no examples (the file is empty)")
    return examples


def exact_repeats(path: str | Path) -> list[tuple[int, int]]:
    """(line, first line) of each line whose JSON record repeats an earlier line's exactly (key order and spacing
    aside). An eval set is never changed silently: `harness data prepare --dedupe-eval` drops these, saying which."""
    first: dict[str, int] = {}
    out: list[tuple[int, int]] = []
    for n, raw, err in _iter_lines(Path(path)):
        try:
            rec = json.loads(raw) if raw is not None else None
        except ValueError:  # bad JSON / UTF-8: the data doctor reports it, it is no repeat
            continue
        if not isinstance(rec, dict):
            continue
        key = json.dumps(rec, sort_keys=True, ensure_ascii=False)
        if key in first:
            out.append((n, first[key]))
        else:
            first[key] = n
    return out


# --------------------------------------------------------------------------------------------- dedupe
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def dedupe_text(ex: Example) -> str:
    """What duplicate/leakage checks compare: every user turn + the target (not the system prompt)."""
    users = [m["content"] for m in ex.messages if m["role"] == "user"]
    return "\n".join(users) + "\n" + ex.target


def exact_key(ex: Example) -> bytes:
    norm = _WS.sub(" ", dedupe_text(ex).casefold()).strip()
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def shingles(text: str, k: int = SHINGLE) -> set[bytes]:
    words = _WORD.findall(text.casefold())
    if len(words) <= k:
        return {" ".join(words).encode("utf-8", "surrogatepass")}
    return {" ".join(words[i:i + k]).encode("utf-8", "surrogatepass") for i in range(len(words) - k + 1)}


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int):
    from datasketch import MinHash

    tmpl = MinHash(num_perm=num_perm, seed=1)
    return tmpl.permutations, tmpl.scheme


@functools.lru_cache(maxsize=16)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as datasketch chooses them (its optimisation takes ~70 ms; cached).

    Weighted towards recall (false negatives cost 9x false positives): every candidate is verified on
    its stored signature anyway, so extra candidates only cost a comparison. At threshold 0.8 this is
    14 bands x 9 rows: a pair at Jaccard 0.8 is found with p~0.87, at 0.85 p~0.97.
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


class DupIndex:
    """Exact-hash set + MinHash LSH over kept examples; stores hashes and signatures, never texts."""

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM):
        from datasketch import MinHash, MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise UserError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self._MinHash = MinHash
        self._perms, self._scheme = _permutations(num_perm)
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=_lsh_params(threshold, num_perm)) \
            if threshold < 1.0 else None
        self.exact: dict[bytes, int] = {}  # hash -> key
        self.sigs: list = []  # key -> signature (uint32 array)
        self.where: list[tuple[str, int, str]] = []  # key -> (file, line, id)

    def minhash(self, ex: Example):
        # zlib.crc32 is a C builtin (no Python frame per shingle, unlike the default sha1 wrapper);
        # the affine32 scheme mixes it with a murmur finalizer before the permutations.
        m = self._MinHash(num_perm=self.num_perm, permutations=self._perms, scheme=self._scheme, hashfunc=zlib.crc32)
        m.update_batch(shingles(dedupe_text(ex)))
        return m

    def find(self, ex: Example, *, all_matches: bool = False, key: bytes | None = None, mh=None):
        """[(kind, key, jaccard)] of kept examples this one duplicates ("exact" or "near"), best first."""
        key = key if key is not None else exact_key(ex)
        out = []
        k = self.exact.get(key)
        if k is not None:
            out.append(("exact", k, 1.0))
            if not all_matches:
                return out
        if self.lsh is not None:
            mh = mh if mh is not None else self.minhash(ex)
            hv = mh.hashvalues
            cands = []
            for c in self.lsh.query(mh):
                if c == k:
                    continue
                j = float((self.sigs[c] == hv).mean())
                if j >= self.threshold:
                    cands.append(("near", c, j))
            cands.sort(key=lambda t: (-t[2], t[1]))
            out += cands if all_matches else cands[:1]
        return out if all_matches else out[:1]

    def add(self, ex: Example, *, key: bytes | None = None, mh=None) -> int:
        idx = len(self.where)
        self.where.append((ex.source, ex.line, ex.id))
        self.exact.setdefault(key if key is not None else exact_key(ex), idx)
        if self.lsh is not None:
            mh = mh if mh is not None else self.minhash(ex)
            self.sigs.append(mh.hashvalues.copy())
            self.lsh.insert(idx, mh, check_duplication=False)
        else:
            self.sigs.append(None)
        return idx
