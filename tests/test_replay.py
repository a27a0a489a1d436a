"""train.replay: general prompts answered by the base model itself, mixed into training (harness/replay.py).

On the tiny model, through the real recipe: off is the run without the key; on adds the promised number of
examples, deterministically and resumably; the prompts never overlap the forgetting probes; and a real run
where the adapter answers probes in the task's JSON without replay bleeds less with it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main as cli
from harness.config import compose, to_dict

FAST = ["model=tiny_random", "tracking.wandb=disabled", "train.batch_size=8", "train.precision=fp32"]
VOCAB = ("the a an is are was my our your this that app page login screen button error slow fast broken missing "
         "cannot could would please help why how what when where who today yesterday again still after before "
         "order invoice payment card account email password phone laptop printer file report data server update "
         "install open close save send load show crash freeze stop start works fails wrong new old big small").split()
JSON_TASK = """name: jsontoy
version: 1
data: {train: train.jsonl, val: val.jsonl, eval: eval.jsonl}
system_prompt: "Reply with JSON only."
prompt_template: "Ticket: {prompt}"
generation: {max_new_tokens: 16, temperature: 0.0}
metrics:
  - {name: json_valid}
  - {name: exact_match}
primary_metric: exact_match
"""


def write_json_task(root: Path, answer: str = '{"ok": true}', n_train: int = 32) -> Path:
    """A ticket task whose every answer is one JSON object, asked with varied word salad: the tiny model learns
    that any input gets that object and, trained hard, answers the probes that way too (format bleed)."""
    import random

    root.mkdir(parents=True, exist_ok=True)

    def text(tag: str, i: int) -> str:
        rng = random.Random(f"{tag}{i}")
        return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(4, 16))).capitalize() + rng.choice(".?!")

    def rows(n: int, tag: str) -> str:
        return "".join(json.dumps({"id": f"{tag}-{i}", "messages": [
            {"role": "user", "content": text(tag, i)}, {"role": "assistant", "content": answer}]}) + "\n"
            for i in range(n))

    for split, n in (("train", n_train), ("val", 8), ("eval", 12)):
        (root / f"{split}.jsonl").write_text(rows(n, split))
    (root / "task.yaml").write_text(JSON_TASK)
    return root / "task.yaml"


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return write_json_task(tmp_path_factory.mktemp("jsontask"))


@pytest.fixture()
def gen_cache(tmp_path, monkeypatch):
    """A fresh replay generation cache per test (what was generated, and when, is then observable)."""
    import harness.replay as replay

    path = tmp_path / "replay-generations.jsonl"
    monkeypatch.setattr(replay, "generation_cache", lambda: path)
    return path


def cfg_for(task_yaml: Path, *extra: str) -> dict:
    return to_dict(compose(FAST + [f"task.path={task_yaml}", *extra]))


def read(run_dir: Path, name: str):
    return json.loads((Path(run_dir) / name).read_text())


# ----------------------------------------------------------------------------- off = before


def test_replay_zero_is_the_run_without_the_key(task, tmp_path):
    from harness.train import config_identity, train

    on = cfg_for(task, "train.max_steps=4", "train.eval_every=2")
    assert on["train"]["replay"] == 0.0  # the default
    off = json.loads(json.dumps(on))
    del off["train"]["replay"]
    a, b = train(on, tmp_path / "a", quiet=True), train(off, tmp_path / "b", quiet=True)
    assert a.run_id == b.run_id and config_identity(on) == config_identity(off)  # old runs keep their ids
    assert read(a.run_dir, "curves.json") == read(b.run_dir, "curves.json")
    assert a.metrics["replay_examples"] == 0 and not (a.run_dir / "replay.jsonl").exists()
    assert "replay" not in read(a.run_dir, "manifest.json")
    assert config_identity(cfg_for(task, "train.max_steps=4", "train.eval_every=2", "train.replay=0.1")) != a.run_id


@pytest.mark.parametrize("value", ["1.0", "1", "-0.1", "abc"])
def test_a_bad_replay_share_is_one_line_naming_the_key(task, tmp_path, value, capsys):
    rc = cli(["train", *FAST, f"task.path={task}", f"train.replay={value}", f"run_dir={tmp_path / 'r'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "train.replay" in err, err
    assert not (tmp_path / "r").exists()  # refused before any training


# ----------------------------------------------------------------------------- on: count, determinism, resume


def test_replay_adds_the_expected_examples_and_is_deterministic(task, tmp_path, gen_cache):
    from harness.replay import load_prompts, replay_count
    from harness.train import train

    assert replay_count(0.25, 32) == 11 and replay_count(0.1, 256) == 28 and replay_count(0.0, 100) == 0
    cfg = cfg_for(task, "train.max_steps=6", "train.eval_every=3", "train.replay=0.25")
    first = train(cfg, tmp_path / "a", quiet=True)
    rows = [json.loads(x) for x in (first.run_dir / "replay.jsonl").read_text().splitlines()]
    prompts = {p["id"]: p["prompt"] for p in load_prompts()}
    assert len(rows) == 11 and len({r["id"] for r in rows}) == 11  # no prompt twice before the set is used up
    assert all(prompts[r["id"]] == r["prompt"] for r in rows)
    assert first.metrics["replay_examples"] == 11 and first.metrics["train_examples"] == 32
    assert read(first.run_dir, "manifest.json")["replay"] == {"share": 0.25, "examples": 11, "file": "replay.jsonl"}
    assert "replay_prompts" in read(first.run_dir, "manifest.json")["data"]
    assert "32 train + 11 replay" in (first.run_dir / "train.log").read_text()
    cached = gen_cache.read_text()
    assert cached.count("\n") == 11
    # a second run of the same settings: the same data from the cache (no generation), the same curve
    second = train(cfg, tmp_path / "b", quiet=True)
    assert gen_cache.read_text() == cached
    assert (second.run_dir / "replay.jsonl").read_text() == (first.run_dir / "replay.jsonl").read_text()
    assert read(second.run_dir, "curves.json") == read(first.run_dir, "curves.json")
    # and replay changes training (the rows are really in the batches), while validation stays on the task
    plain = train(cfg_for(task, "train.max_steps=6", "train.eval_every=3"), tmp_path / "c", quiet=True)
    assert read(plain.run_dir, "curves.json")["train"] != read(first.run_dir, "curves.json")["train"]
    assert read(plain.run_dir, "curves.json")["val"][0] == read(first.run_dir, "curves.json")["val"][0]
    assert plain.run_id != first.run_id


def test_replay_rows_are_spread_through_every_batch():
    from harness.train_data import make_batches

    enc = [{"input_ids": [0] * (5 + i % 7)} for i in range(48)] + [{"input_ids": [1] * (3 + i % 5)} for i in range(16)]
    for group in (True, False):
        batches = make_batches(enc, 8, seed=3, epoch=1, group_by_length=group, n_replay=16)
        assert sorted(i for b in batches for i in b) == list(range(64))
        assert [sum(i >= 48 for i in b) for b in batches] == [2] * 8
        assert batches == make_batches(enc, 8, seed=3, epoch=1, group_by_length=group, n_replay=16)
    assert make_batches(enc, 8, 3, 1, True, 16) != make_batches(enc, 8, 3, 2, True, 16)  # reshuffled per epoch


def test_a_truncated_answer_is_trained_without_its_end_of_turn(tiny_spec):
    from harness.example import Example
    from harness.models import load_tokenizer
    from harness.train_data import encode_replay

    tok = load_tokenizer(tiny_spec)
    msgs = ({"role": "user", "content": "Give me three tips for saving money."},
            {"role": "assistant", "content": "Cook at home, walk more and"})
    done, cut = encode_replay(tok, [Example(msgs), Example(msgs, meta={"truncated": True})], 512)
    eot = tok(tok.eos_token, add_special_tokens=False)["input_ids"]
    assert done["input_ids"][-len(eot):] == eot and done["labels"][-len(eot):] == eot
    assert cut["input_ids"] == done["input_ids"][:-len(eot)] and cut["labels"] == done["labels"][:-len(eot)]
    # no system prompt of the task: the prompt is what the probes are asked with (the chat template's default)
    from harness.prompts import render_prompt

    prompt = render_prompt(tok, [msgs[0]])
    assert tok.decode(done["input_ids"]).startswith(prompt)


class Killed(BaseException):
    """Stands in for SIGKILL inside this process: nothing in train() catches it."""


def test_an_interrupted_replay_run_resumes_on_the_same_data_to_the_same_curve(task, tmp_path, gen_cache,
                                                                             monkeypatch):
    import harness.replay as replay
    from harness.train import train

    cfg = cfg_for(task, "train.max_steps=6", "train.eval_every=2", "train.checkpoint_every=2", "train.replay=0.25")

    def kill(state):
        if state.step == 3:
            raise Killed()

    with pytest.raises(Killed):
        train(cfg, tmp_path / "run", quiet=True, on_step=kill)
    assert read(tmp_path / "run", "status.json")["status"] == "running"
    saved = (tmp_path / "run" / "replay.jsonl").read_text()

    def no_generation(*args, **kwargs):
        raise AssertionError("a resumed run must read its replay.jsonl, not generate again")

    monkeypatch.setattr(replay, "_answer", no_generation)
    resumed = train(cfg, tmp_path / "run", quiet=True)
    assert "resuming run" in (tmp_path / "run" / "train.log").read_text()
    assert (tmp_path / "run" / "replay.jsonl").read_text() == saved
    monkeypatch.undo()
    straight = train(cfg, tmp_path / "straight", quiet=True)
    assert read(resumed.run_dir, "curves.json") == read(straight.run_dir, "curves.json")
    assert [p["step"] for p in read(resumed.run_dir, "curves.json")["train"]] == list(range(1, 7))


# ----------------------------------------------------------------------------- the prompts are not the test


def _probe_texts() -> list[str]:
    from harness.probes import load_probes

    return [m["content"] for name in ("default", "fast") for it in load_probes(name) for m in it["messages"]]


def overlap(prompt: str, probe_shingles: set, k: int = 6) -> float:
    """Share of the prompt's k-word shingles that also occur in a probe."""
    from harness.data import shingles

    mine = shingles(prompt, k)
    return len(mine & probe_shingles) / len(mine)


def test_no_replay_prompt_overlaps_a_forgetting_probe():
    import importlib.util

    from harness.config import repo_root
    from harness.data import shingles
    from harness.replay import load_prompts, prompts_path

    prompts = [p["prompt"] for p in load_prompts()]
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    probes = _probe_texts()
    probe_shingles = set().union(*(shingles(t, 6) for t in probes))
    assert not set(prompts) & set(probes)
    worst = max(prompts, key=lambda p: overlap(p, probe_shingles))
    assert overlap(worst, probe_shingles) == 0.0, worst
    # the check can fail: a probe reworded at its end still shares most of its shingles
    assert overlap(probes[0].rstrip(".") + " please.", probe_shingles) > 0.5
    # the committed file is the generator's output
    spec = importlib.util.spec_from_file_location("make_replay", repo_root() / "evalsets" / "replay" / "make_replay.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert prompts_path().read_text(encoding="utf-8") == mod.render(mod.build())
    kinds = {p["kind"] for p in load_prompts()}
    assert len(kinds) >= 15


# ----------------------------------------------------------------------------- the point: less format bleed


def _bleed(row: dict) -> float | None:
    """The row's format bleed. scores.jsonl carries it (harness.bleed); the fallback is the same definition for
    a JSON task: the answer parses as a JSON object (the probes used here never ask for JSON)."""
    if "bleed" in row["metrics"]:
        return row["metrics"]["bleed"]
    from harness.metrics import extract_json

    return float(isinstance(extract_json(row["output"]).value, dict))


@pytest.mark.timeout(600)
def test_replay_lowers_format_bleed_on_a_real_tiny_run(tmp_path, gen_cache):
    """Trained hard on a JSON task, the tiny model answers probes in the task's JSON; with replay (same steps,
    same lr) it keeps the base model's free-text answers on general prompts and bleeds less."""
    from harness.evaluate import evaluate_models
    from harness.probes import load_probes
    from harness.train import train

    task = write_json_task(tmp_path / "task")
    common = ["model.init_std=0.5", "train.lr=2e-2", "lora.r=16", "train.max_steps=60", "train.eval_every=10",
              "train.patience=0"]
    runs = {}
    for name, share in (("plain", "0.0"), ("replay", "0.1")):
        res = train(cfg_for(task, *common, f"train.replay={share}"), tmp_path / name, quiet=True)
        assert res.metrics["final_step"] == 60
        runs[name] = res.run_dir / "adapter"
    assert read(tmp_path / "replay", "metrics.json")["replay_examples"] == 4
    counts: dict[str, int] = {}
    for it in load_probes("fast"):  # 10 per family, none of which asks for JSON
        if counts.setdefault(it["family"], 0) < 10 and it["kind"] != "json":
            counts[it["family"]] += 1
            with open(tmp_path / "probes.jsonl", "a") as fh:
                fh.write(json.dumps(it) + "\n")
    model_cfg = cfg_for(task, "model.init_std=0.5")["model"]
    ecfg = {"probes": str(tmp_path / "probes.jsonl"), "few_shot_k": 0, "likelihood": False}  # bleed only
    evaluate_models(tmp_path / "scores", str(task), model_cfg, {"kind": "hf", "batch_size": 64}, runs, eval_cfg=ecfg,
                    quiet=True)
    rows = [json.loads(x) for x in (tmp_path / "scores" / "scores.jsonl").read_text().splitlines()]
    bleed = {m: sum(_bleed(r) or 0 for r in rows if r["model"] == m and r["split"] == "probe")
             for m in ("base", "plain", "replay")}
    task_score = {m: sum(r["metrics"]["exact_match"] for r in rows if r["model"] == m and r["split"] == "task")
                  for m in ("plain", "replay")}
    assert sum(1 for r in rows if r["model"] == "plain" and r["split"] == "probe") == 40
    assert bleed["base"] == 0, bleed
    assert bleed["plain"] >= 20, (bleed, "the tiny model no longer bleeds: the test would prove nothing")
    assert bleed["replay"] <= bleed["plain"] / 4, bleed
    assert task_score["plain"] >= 10 and task_score["replay"] >= 9, task_score  # both learn the task (12 items)
