"""Task definitions as data: evalsets/<task>/task.yaml (lm-eval style; no Python to add a task).

    name: demo
    version: 1
    description: ...
    data: {train: train.jsonl, val: val.jsonl, eval: eval.jsonl}   # relative to the yaml
    system_prompt: ...
    prompt_template: "{prompt}"
    generation: {max_new_tokens: 128, temperature: 0.0}            # GenParams keys
    json_schema: schema.json                                       # optional
    metrics: [{name: json_valid}, {name: field_accuracy, fields: [a, b]}]
    primary_metric: field_accuracy
    few_shot: {k: 3, seed: 0}
    knowledge_field: knowledge                                     # meta key marking knowledge-needing eval items
    target: 0.9                                                    # optional: the primary metric's acceptance level
    answer_pattern: "^(yes|no)$"                                   # optional: the answers' form, for format bleed

Every validation error names the file, line and key, e.g.
"evalsets/x/task.yaml:14: metrics[2].name: unknown metric 'foo' (known: ...)".
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import GenParams
from harness.config import repo_root
from harness.example import Example
from harness.io import UserError, check_safe_name, key_str, load_yaml_with_lines, read_json, sha256_file
from harness.judge.rubrics import judge_metric_range
from harness.metrics import METRICS, metric_outputs, validate_spec

TASK_FILE = "task.yaml"
REQUIRED = ("name", "data", "metrics", "primary_metric")
KNOWN = REQUIRED + ("version", "description", "system_prompt", "prompt_template", "generation", "json_schema",
                    "few_shot", "knowledge_field", "tags", "target", "answer_pattern")
SPLITS = ("train", "val", "eval")


@dataclass
class Task:
    name: str
    version: str
    path: Path  # the task.yaml
    data: dict[str, Path | None]  # split -> absolute path (None when the task has no such split)
    metrics: list[dict]
    primary_metric: str
    description: str = ""
    system_prompt: str | None = None
    prompt_template: str = "{prompt}"
    gen: GenParams = field(default_factory=GenParams)
    json_schema: dict | None = None
    json_schema_path: Path | None = None
    few_shot_k: int = 3
    few_shot_seed: int = 0
    knowledge_field: str = "knowledge"
    target: float | None = None  # acceptance level for the primary metric (None: judge relative gains only)
    raw: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    def has_split(self, split: str) -> bool:
        return self.data.get(split) is not None

    def load_split(self, split: str) -> list[Example]:
        """The examples of one split ('train', 'val', 'eval'); [] when the task has none."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} (expected one of {SPLITS})")
        p = self.data.get(split)
        if p is None:
            return []
        examples = load_examples(p)
        if not examples:
            raise UserError(f"{_display(p)}: the {split} split has no examples")
        if split != "train":
            check_unique_ids(examples, split)
        return examples

    def metric_names(self) -> list[str]:
        out: list[str] = []
        for spec in self.metrics:
            out += [n for n in metric_outputs(spec) if n not in out]
        return out

    def is_knowledge(self, ex: Example) -> bool:
        return bool(ex.meta.get(self.knowledge_field)) if self.knowledge_field else False

    def fingerprint(self) -> dict:
        """Everything that changes scores: version, config, data and schema file hashes."""
        files = {s: sha256_file(p) if p else None for s, p in self.data.items()}
        if self.json_schema_path:
            files["json_schema"] = sha256_file(self.json_schema_path)
        config = {k: v for k, v in self.raw.items() if k != "target"}  # the target judges scores, it does not change them
        return {"name": self.name, "version": self.version, "config": config, "files": files}


# --------------------------------------------------------------------------- data reading


def load_examples(path: str | os.PathLike) -> list[Example]:
    """Read a split with THE data reader (any supported format; errors name FILE:LINE)."""
    from harness.data import load_examples as read_split

    return read_split(Path(path))


def check_unique_ids(examples: list[Example], split: str) -> None:
    """Scores are paired by sample id: two eval/val items with one id would silently collapse."""
    first: dict[str, Example] = {}
    for ex in examples:
        prev = first.setdefault(ex.id, ex)
        if prev is not ex:
            raise UserError(f"{ex.source}:{ex.line}: duplicate sample id {ex.id!r} in the {split} split (first at "
                            f"line {prev.line}; items without an id get one from their content); paired "
                            "comparisons need one item per id")


# --------------------------------------------------------------------------- locating tasks


def default_search_dirs() -> list[Path]:
    dirs = [repo_root() / "evalsets", Path.cwd() / "evalsets"]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [x.resolve() for x in out]:
            out.append(d)
    return out


def list_task_files(search_dirs: list[Path] | None = None) -> list[Path]:
    """Every evalsets/<name>/task.yaml (first search dir wins on name clashes)."""
    seen: dict[str, Path] = {}
    for d in search_dirs or default_search_dirs():
        if not Path(d).is_dir():
            continue
        for p in sorted(Path(d).glob(f"*/{TASK_FILE}")):
            seen.setdefault(p.parent.name, p)
    return [seen[k] for k in sorted(seen)]


def find_task_file(name_or_path: str | os.PathLike, search_dirs: list[Path] | None = None) -> Path:
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_file():
        return p.resolve()
    if p.is_dir() and (p / TASK_FILE).is_file():
        return (p / TASK_FILE).resolve()
    if str(name_or_path).endswith((".yaml", ".yml")) or os.sep in str(name_or_path):
        raise UserError(f"{name_or_path}: task file not found")
    for d in search_dirs or default_search_dirs():
        cand = Path(d) / str(name_or_path) / TASK_FILE
        if cand.is_file():
            return cand.resolve()
    known = [f.parent.name for f in list_task_files(search_dirs)]
    where = ", ".join(str(d) for d in (search_dirs or default_search_dirs()))
    raise UserError(f"unknown task {str(name_or_path)!r}: no {name_or_path}/{TASK_FILE} in {where} "
                    f"(known: {', '.join(known) or 'none'})")


# --------------------------------------------------------------------------- loading + validation


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def task_ref(task_cfg: Any) -> str:
    """THE reference of a configured task (the config's `task`): task.path when set, else task.name; a plain
    string is a name or path already. Every module that loads "the task of this config" goes through here."""
    if isinstance(task_cfg, (str, os.PathLike)):
        return str(task_cfg)
    tcfg = task_cfg or {}
    ref = tcfg.get("path") or tcfg.get("name")
    if not isinstance(ref, (str, os.PathLike)) or not str(ref):
        raise UserError(f"task.name: must name a task (evalsets/<name>/task.yaml) or set task.path, got {ref!r}")
    return str(ref)


def load_task(name_or_path: str | os.PathLike, search_dirs: list[Path] | None = None) -> Task:
    """Load and validate a task by name (evalsets/<name>/task.yaml) or by path to a yaml / task folder."""
    path = find_task_file(name_or_path, search_dirs)
    return _parse(path)


def _parse(path: Path) -> Task:
    disp = _display(path)
    raw, lines = load_yaml_with_lines(path, disp)

    def fail(keypath: tuple, msg: str):
        key = key_str(keypath)
        raise UserError(f"{disp}:{lines.get(keypath)}: {key + ': ' if key else ''}{msg}")

    if not isinstance(raw, dict):
        fail((), "expected a mapping of task settings")
    for k in raw:
        if k not in KNOWN:
            fail((k,), f"unknown key (known: {', '.join(KNOWN)})")
    for k in REQUIRED:
        if k not in raw or raw[k] in (None, "", [], {}):
            fail((k,) if k in raw else (), f"{k}: required key missing" if k not in raw else "must not be empty")

    name = raw["name"]
    if not isinstance(name, str):
        fail(("name",), "must be a string")
    check_safe_name(name, f"{disp}:{lines.get(('name',))}: name")  # it becomes a directory name and a model key

    # data
    data_raw = raw["data"]
    if not isinstance(data_raw, dict):
        fail(("data",), "must be a mapping {train, val, eval} of file paths")
    for k in data_raw:
        if k not in SPLITS:
            fail(("data", k), f"unknown split (known: {', '.join(SPLITS)})")
    if not data_raw.get("eval"):
        fail(("data",), "data.eval: required (the evaluation split)")
    data: dict[str, Path | None] = {}
    for split in SPLITS:
        v = data_raw.get(split)
        if v in (None, ""):
            data[split] = None
            continue
        if not isinstance(v, str):
            fail(("data", split), "must be a file path (relative to the task.yaml)")
        p = (path.parent / os.path.expanduser(v)).resolve()
        if not p.is_file():
            fail(("data", split), f"file not found: {_display(p)}")
        data[split] = p

    # strings
    for k in ("description", "system_prompt", "prompt_template", "knowledge_field"):
        if raw.get(k) is not None and not isinstance(raw[k], str):
            fail((k,), "must be a string")
    template = raw.get("prompt_template") or "{prompt}"
    if "{prompt}" not in template:
        fail(("prompt_template",), "must contain the {prompt} placeholder")

    # generation
    gen_raw = raw.get("generation") or {}
    if not isinstance(gen_raw, dict):
        fail(("generation",), "must be a mapping of generation settings")
    try:
        gen = GenParams.from_dict(gen_raw)
    except (TypeError, ValueError) as exc:
        bad = [k for k in gen_raw if k not in GenParams.__dataclass_fields__]
        fail(("generation", bad[0]) if bad else ("generation",), str(exc))
    if not isinstance(gen.max_new_tokens, int) or gen.max_new_tokens < 1:
        fail(("generation", "max_new_tokens"), "must be a positive integer")
    if not isinstance(gen.temperature, (int, float)) or gen.temperature < 0:
        fail(("generation", "temperature"), "must be a number >= 0")

    # schema
    schema = schema_path = None
    if raw.get("json_schema"):
        sv = raw["json_schema"]
        if isinstance(sv, dict):
            schema = sv
        elif isinstance(sv, str):
            schema_path = (path.parent / sv).resolve()
            if not schema_path.is_file():
                fail(("json_schema",), f"file not found: {_display(schema_path)}")
            try:
                schema = read_json(schema_path)
            except UserError as exc:  # InvalidJSON: "FILE:LINE: invalid JSON (...)", also bad UTF-8, deep nesting
                fail(("json_schema",), str(exc).replace(str(schema_path), _display(schema_path)))
        else:
            fail(("json_schema",), "must be a path to a JSON Schema file (or an inline mapping)")
        from jsonschema import exceptions as js_exc
        from jsonschema import validators

        if not isinstance(schema, dict):
            fail(("json_schema",), f"not a valid JSON Schema: expected an object, got {type(schema).__name__}")
        try:
            validators.validator_for(schema).check_schema(schema)
        except js_exc.SchemaError as exc:
            fail(("json_schema",), f"not a valid JSON Schema: {exc.message}")
        except (RecursionError, js_exc.UnknownType) as exc:
            fail(("json_schema",), f"not a valid JSON Schema ({type(exc).__name__})")

    # metrics
    metrics_raw = raw["metrics"]
    if not isinstance(metrics_raw, list):
        fail(("metrics",), "must be a list like [{name: exact_match}, ...]")
    metrics = []
    produced: list[str] = []
    for i, spec in enumerate(metrics_raw):
        if isinstance(spec, str):  # shorthand: "- exact_match"
            spec = {"name": spec}
        problems = validate_spec(spec)
        if problems:
            key, msg = problems[0]
            fail(("metrics", i) + ((key,) if key else ()), msg)
        if METRICS[spec["name"]].needs_schema and schema is None:
            fail(("metrics", i, "name"), f"{spec['name']} needs a json_schema in the task")
        outs = metric_outputs(spec)
        dup = [o for o in outs if o in produced]
        if dup:
            fail(("metrics", i), f"produces {dup[0]!r} twice (rename one with `as:`)")
        produced += outs
        metrics.append(dict(spec))
    primary, value_range = raw["primary_metric"], (0.0, 1.0)
    if isinstance(primary, str) and primary.startswith("judge:"):  # the judge decides (harness/judge_decision.py)
        try:
            value_range = judge_metric_range(primary)
        except ValueError as exc:
            fail(("primary_metric",), str(exc))
    elif primary not in produced:
        fail(("primary_metric",), f"{primary!r} is not produced by any metric (produced: {', '.join(produced)})")

    # few-shot
    fs = raw.get("few_shot") or {}
    if not isinstance(fs, dict) or any(k not in ("k", "seed") for k in fs):
        fail(("few_shot",), "must be a mapping {k, seed}")
    k, seed = fs.get("k", 3), fs.get("seed", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        fail(("few_shot", "k"), "must be an integer >= 0")
    if not isinstance(seed, int) or isinstance(seed, bool):
        fail(("few_shot", "seed"), "must be an integer")

    target = raw.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not value_range[0] <= float(target) <= value_range[1]):
        fail(("target",), f"must be a number in [{value_range[0]:g}, {value_range[1]:g}] (the primary metric's "
                          f"acceptance level), got {target!r}")

    pattern = raw.get("answer_pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            fail(("answer_pattern",), "must be a regular expression (the whole answer matches it)")
        try:
            re.compile(pattern)
        except re.error as exc:
            fail(("answer_pattern",), f"not a valid regular expression: {exc}")

    version = raw.get("version", 0)
    return Task(
        name=name, version=str(version), path=path, data=data, metrics=metrics, primary_metric=primary,
        description=(raw.get("description") or "").strip(), system_prompt=raw.get("system_prompt"),
        prompt_template=template, gen=gen, json_schema=schema, json_schema_path=schema_path,
        few_shot_k=k, few_shot_seed=seed,
        knowledge_field=raw.get("knowledge_field", "knowledge") or "",
        target=None if target is None else float(target), raw=raw,
    )


# --------------------------------------------------------------------------- few-shot


def build_few_shot(train_examples: list[Example], eval_examples: list[Example], k: int, seed: int) -> list[Example]:
    """k demonstration examples drawn (seeded) from train, never an eval item.

    An eval item is excluded by id AND by identical (normalised) user text, so a train copy of
    an eval question can never leak into the prompt. Examples without a target are skipped.
    """
    import random

    if k <= 0:
        return []
    eval_ids = {e.id for e in eval_examples}
    eval_texts = {_norm(e.user_text) for e in eval_examples}
    pool = []
    seen_texts: set[str] = set()
    for ex in train_examples:
        t = _norm(ex.user_text)
        if ex.id in eval_ids or t in eval_texts or not ex.target or t in seen_texts:
            continue
        seen_texts.add(t)
        pool.append(ex)
    pool.sort(key=lambda e: e.id)  # independent of file order
    rng = random.Random(seed)
    return rng.sample(pool, min(k, len(pool)))


def _norm(text: str) -> str:
    return " ".join((text or "").casefold().split())
