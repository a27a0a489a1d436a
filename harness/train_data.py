"""Training data for one run: the task's train/val examples, tokenized with completion-only labels, in
deterministic length-grouped batches (so a resumed run replays exactly the batches it would have seen)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from harness.example import Example
from harness.io import UserError


@dataclass
class TrainData:
    train: list[Example]
    val: list[Example]
    system_prompt: str | None
    prompt_template: str
    files: dict[str, str]  # split -> path
    task_name: str
    task_version: Any = None


def load_train_data(task_cfg: dict, seed: int, val_fraction: float) -> TrainData:
    from harness.tasks import load_task, task_ref

    task = load_task(task_ref(task_cfg))
    train = task.load_split("train")
    files = {"train": str(task.data["train"])}
    if task.data.get("val"):
        val = task.load_split("val")
        files["val"] = str(task.data["val"])
    else:
        rng = random.Random(seed)
        order = list(range(len(train)))
        rng.shuffle(order)
        n_val = max(1, int(len(train) * val_fraction))
        val = [train[i] for i in order[:n_val]]
        train = [train[i] for i in order[n_val:]]
    if not train or not val:
        raise UserError(f"task {task.name}: needs non-empty train and validation data")
    return TrainData(train, val, task.system_prompt, task.prompt_template, files, task.name, task.version)


def encode(tokenizer, examples: Sequence[Example], data: TrainData, max_length: int, completion_only: bool) -> list[dict]:
    return _encode(tokenizer, examples, data.system_prompt, data.prompt_template, max_length, completion_only)


def encode_replay(tokenizer, examples: Sequence[Example], max_length: int) -> list[dict]:
    """Replay examples (harness.replay): general prompts, so no system prompt and no task template."""
    return _encode(tokenizer, examples, None, "{prompt}", max_length, True)


def _encode(tokenizer, examples, system_prompt, prompt_template, max_length, completion_only) -> list[dict]:
    from harness.prompts import end_of_turn, tokenize_for_training

    eot = tokenizer(end_of_turn(tokenizer), add_special_tokens=False)["input_ids"] if end_of_turn(tokenizer) else []
    out = []
    for ex in examples:
        enc = tokenize_for_training(
            tokenizer, ex, system_prompt=system_prompt, prompt_template=prompt_template,
            max_length=max_length, completion_only=completion_only,
        )
        if ex.meta.get("truncated") and eot and enc["input_ids"][-len(eot):] == eot:
            # an answer cut at its token budget: never teach the model to end a turn mid-sentence
            enc = {k: v[:-len(eot)] for k, v in enc.items()}
        if sum(1 for x in enc["labels"][1:] if x != -100) == 0:
            continue  # nothing to learn (completion truncated away)
        out.append(enc)
    return out


def make_batches(encoded: list[dict], batch_size: int, seed: int, epoch: int, group_by_length: bool,
                 n_replay: int = 0) -> list[list[int]]:
    """Deterministic batch order for an epoch (so resume replays it exactly); grouping by length cuts padding.

    The last `n_replay` rows of `encoded` are replay rows (harness.replay): they are ordered on their own and
    spread evenly through the epoch, so every batch holds about the same share of them."""
    rng = random.Random(seed * 1000 + epoch)
    n_task = len(encoded) - n_replay
    idx = _order(list(range(n_task)), encoded, batch_size, rng, group_by_length)
    if n_replay:
        extra = _order(list(range(n_task, len(encoded))), encoded, batch_size, rng, group_by_length)
        total = len(idx) + len(extra)
        # row i of the epoch is a replay row when floor((i+1) * R / N) steps up: an even spread
        take = [(i + 1) * n_replay // total > i * n_replay // total for i in range(total)]
        it_task, it_extra = iter(idx), iter(extra)
        idx = [next(it_extra) if t else next(it_task) for t in take]
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def _order(idx: list[int], encoded: list[dict], batch_size: int, rng: random.Random, group_by_length: bool) -> list[int]:
    """Shuffled, then sorted by length within chunks of 16 batches (similar lengths share a batch)."""
    rng.shuffle(idx)
    if not group_by_length:
        return idx
    chunk = batch_size * 16
    grouped = []
    for i in range(0, len(idx), chunk):
        grouped += sorted(idx[i:i + chunk], key=lambda j: len(encoded[j]["input_ids"]))
    return grouped


def collate(encoded: list[dict], rows: list[int], pad_id: int):
    import torch

    width = max(len(encoded[r]["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        seq = encoded[r]["input_ids"]
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, : len(seq)] = torch.tensor(encoded[r]["labels"])
        mask[i, : len(seq)] = 1
    return ids, labels, mask


