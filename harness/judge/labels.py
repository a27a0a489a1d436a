"""Human labels for calibration: the file review.html downloads (.notes/labels_format.md) or LLMBar's dataset.json.

One object per JSONL line (or a JSON array): pairwise {"id", "question"|"input", "output_1", "output_2",
"label": 1|2|0 (0 = tie)} and optional "task", "sample_id", "model_1", "model_2", "reference", "score_1",
"score_2" (a person's pointwise score of each output); pointwise-only rows have no output_2/label and a score_1.
A later row with the same id replaces an earlier one (re-labelling appends). Errors name FILE:LINE and the key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.io import UserError

PAIR_LABELS = {1: 1, 2: 2, 0: "tie"}  # file value -> the category calibration compares with the judge's


def load_labels(path: str | Path, limit: int | None = None) -> list[dict]:
    """Validated label rows: {"id", "input", "output_1", "output_2"|None, "label": 1|2|0|None, "reference",
    "task", "sample_id", "model_1", "model_2", "score_1", "score_2"}; at most `limit` of them."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: calibration data file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    rows: list[tuple[int, Any]] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise UserError(f"{path}:{getattr(e, 'lineno', 1)}: invalid JSON: {getattr(e, 'msg', 'nested too deeply')}") from None
        rows = [(0, d) for d in data]
    else:
        for ln, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((ln, json.loads(line)))
            except (json.JSONDecodeError, RecursionError) as e:
                raise UserError(f"{path}:{ln}: invalid JSON line: {getattr(e, 'msg', 'nested too deeply')}") from None
    by_id: dict[str, dict] = {}
    for idx, (ln, d) in enumerate(rows):
        item = _check_row(d, f"{path}:{ln}" if ln else f"{path}: item {idx}", idx)
        by_id.pop(item["id"], None)  # re-labelled: the later row counts, at its later position
        by_id[item["id"]] = item
    out = list(by_id.values())[:limit] if limit is not None else list(by_id.values())
    if not out:
        raise UserError(f"{path}: no labelled items")
    tasks = sorted({it["task"] for it in out if it["task"] is not None})
    if len(tasks) > 1:
        raise UserError(f"{path}: key 'task': labels from several tasks ({', '.join(tasks)}); calibrate one task at a time")
    return out


def _check_row(d: Any, where: str, idx: int) -> dict:
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected an object with question, output_1, output_2, label")
    question = d.get("question", d.get("input"))
    if not isinstance(question, str):
        raise UserError(f"{where}: key 'question': missing or not a string (also accepted as 'input')")
    if not isinstance(d.get("output_1"), str):
        raise UserError(f"{where}: key 'output_1': missing or not a string")
    out2, label = d.get("output_2"), d.get("label")
    pointwise_only = out2 is None and label is None
    if not pointwise_only:
        if not isinstance(out2, str):
            raise UserError(f"{where}: key 'output_2': missing or not a string")
        if isinstance(label, bool) or label not in PAIR_LABELS:
            raise UserError(f"{where}: key 'label': must be 1, 2 or 0 (tie), got {label!r}")
    scores = {}
    for key in ("score_1", "score_2", "score"):
        s = d.get(key)
        if s is not None and (isinstance(s, bool) or not isinstance(s, int)):
            raise UserError(f"{where}: key '{key}': must be an integer score or null, got {s!r}")
        scores[key] = s
    if scores["score_1"] is None:
        scores["score_1"] = scores["score"]  # a lone "score" rates output_1
    if scores["score_2"] is not None and pointwise_only:
        raise UserError(f"{where}: key 'score_2': a row without output_2 cannot score it")
    if pointwise_only and scores["score_1"] is None:
        raise UserError(f"{where}: key 'label': missing (a row without output_2 needs score_1)")
    for key in ("id", "task", "sample_id", "model_1", "model_2", "reference"):
        v = d.get(key)
        if v is not None and not isinstance(v, (str, int)):
            raise UserError(f"{where}: key '{key}': must be a string, got {type(v).__name__}")
    return {"id": str(d.get("id", idx)), "input": question, "output_1": d["output_1"], "output_2": out2, "label": label,
            "reference": d.get("reference"), "task": None if d.get("task") is None else str(d["task"]),
            "sample_id": d.get("sample_id"), "model_1": d.get("model_1"), "model_2": d.get("model_2"),
            "score_1": scores["score_1"], "score_2": scores["score_2"]}
