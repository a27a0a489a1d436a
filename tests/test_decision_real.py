"""The decision on real runs: `harness sweep` on the tiny random llama (real training, real generation, real
report and gate) reaches `ship` when the adapter learns the task and the forgetting probes show nothing lost
(`ship_with_care` while they are not measured), and `no_gain` when what it learns is not what the eval asks for."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main as cli

TASK = """name: {name}
version: 1
data: {{train: train.jsonl, val: val.jsonl, eval: eval.jsonl}}
system_prompt: "Answer with one word."
prompt_template: "{{prompt}}"
generation: {{max_new_tokens: 3, temperature: 0.0}}
metrics:
  - {{name: exact_match}}
primary_metric: exact_match
few_shot: {{k: 2, seed: 0}}
"""
WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "ocean", "pencil", "garden", "silver", "window", "forest"]
COMMON = ["model=tiny_random", "model.init_std=0.5", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8", "train.epochs=6",
          "train.eval_every=6", "train.patience=0", "train.lr=1e-2", "lora.r=8", "train.precision=fp32",
          "eval.probes=null", "gate=none"]


def _task(root: Path, name: str, train_answer: str, eval_answer: str) -> Path:
    """Every train/val target is `train_answer`; every eval reference is `eval_answer`."""
    root.mkdir(parents=True)

    def rows(n: int, answer: str, tag: str) -> str:
        return "".join(json.dumps({"id": f"{tag}-{i}", "messages": [
            {"role": "user", "content": f"Item {i}: {WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} #{tag}{i}"},
            {"role": "assistant", "content": answer}]}) + "\n" for i in range(n))

    (root / "train.jsonl").write_text(rows(32, train_answer, "t"))
    (root / "val.jsonl").write_text(rows(8, train_answer, "v"))
    (root / "eval.jsonl").write_text(rows(30, eval_answer, "e"))
    (root / "task.yaml").write_text(TASK.format(name=name))
    return root / "task.yaml"


def _sweep(root: Path, task: Path, name: str) -> Path:
    rc = cli(["sweep", *COMMON, f"task.path={task}", f"output_root={root}", f"sweep_name={name}"])
    assert rc == 0, rc
    return root / name


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    return {"learn": _sweep(root, _task(root / "t1", "learn", "yes", "yes"), "learn"),
            "mismatch": _sweep(root, _task(root / "t2", "mismatch", "no", "yes"), "mismatch")}


def _verdict(sweep: Path) -> dict:
    return json.loads((sweep / "report" / "verdict.json").read_text())


def _gate(tmp_path: Path, allowed: str) -> Path:
    p = tmp_path / "gate.yaml"
    p.write_text(f"checks:\n  - decision: {allowed}\n")
    return p


@pytest.mark.timeout(900)
def test_an_adapter_that_learns_the_answer_ships(sweeps, tmp_path):
    verdict = _verdict(sweeps["learn"])
    nums = verdict["numbers"]
    assert verdict["outcome"] == "ship_with_care", verdict["headline"]  # probes were not run: said, not hidden
    assert "forgetting was not measured" in verdict["headline"]
    assert nums["adapter"]["mean"] >= 0.9 and nums["base"]["mean"] == 0.0
    assert verdict["comparisons"]["fewshot"]["exact_match"]["verdict"] == "better"
    assert cli(["gate", str(sweeps["learn"]), "--config", str(_gate(tmp_path, "[ship, ship_with_care]")), "--quiet"]) == 0


@pytest.mark.timeout(900)
def test_with_forgetting_measured_an_adapter_that_says_yes_to_everything_is_not_shipped(sweeps, tmp_path):
    """The same sweep, re-scored with the 160 forgetting probes. The adapter learned to answer every request with
    the task's one label, "yes": the probes it answers that way did not ask for it (format bleed), so the decision
    is at most `ship_with_care`, names the bleed with an example, and a `[ship]` gate fails. (Before bleed was
    measured this sweep read "ship, no forgetting".)"""
    import shutil

    sweep = tmp_path / "learn"
    shutil.copytree(sweeps["learn"], sweep)
    assert cli(["eval", str(sweep), "eval.probes=fast", "--no-progress"]) == 0
    rows = [json.loads(x) for x in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]
    adapter_probes = [r for r in rows if r["split"] == "probe" and r["model"] not in ("base", "fewshot")]
    bled = [r for r in adapter_probes if r["metrics"]["bleed"] == 1.0]
    assert bled and all(r["output"].strip().strip(".").lower() == "yes" for r in bled)
    assert cli(["report", str(sweep)]) == 0
    verdict = _verdict(sweep)
    assert verdict["outcome"] == "ship_with_care", verdict["headline"]
    assert f"{len(bled)} of {len(adapter_probes)} probes in the task's output form" in verdict["headline"], verdict["headline"]
    assert "no forgetting" not in verdict["headline"]
    assert cli(["gate", str(sweep), "--config", str(_gate(tmp_path, "[ship]")), "--quiet"]) == 1
    # the same evaluation measured drift and the multiple-choice probes (harness.likelihood) and the report shows them
    drift = json.loads((sweep / "scores" / "drift.json").read_text())
    (adapter,) = drift["drift"]
    assert drift["drift"][adapter]["all"]["mean"] > 0 and drift["n_prompts"] == 160
    assert {"arithmetic-mc", "general-mc", "reading-mc"} <= set(verdict["forgetting"])
    assert any(r.startswith("Drift from base") for r in verdict["reasons"])
    assert "drift: KL to base" in (sweep / "report" / "report.md").read_text()


@pytest.mark.timeout(900)
def test_an_adapter_that_learns_the_wrong_answer_is_no_gain(sweeps, tmp_path):
    verdict = _verdict(sweeps["mismatch"])
    assert verdict["outcome"] == "no_gain", verdict["headline"]
    assert verdict["numbers"]["adapter"]["mean"] == 0.0
    assert cli(["gate", str(sweeps["mismatch"]), "--config", str(_gate(tmp_path, "[ship, ship_with_care]")),
                "--quiet"]) == 1


@pytest.mark.timeout(900)
def test_gate_against_the_released_adapter(sweeps, tmp_path):
    """A retrained adapter is gated against what is in production, re-scored on the same eval items."""
    import shutil

    released = sweeps["learn"]
    candidate = tmp_path / "candidate"
    shutil.copytree(released, candidate)  # the same adapter again: not worse than itself
    cfg = str(_gate(tmp_path, "[ship, ship_with_care]"))
    assert cli(["gate", str(candidate), "--config", cfg, "--against", str(released), "--quiet"]) == 0
    res = json.loads((candidate / "gate" / "gate.json").read_text())
    check = next(c for c in res["checks"] if c["kind"] == "non-inferiority")
    assert check["status"] == "pass" and check["value"] == 0.0
    # an adapter trained on the wrong answer regresses against the released one on the released task's items
    wrong = tmp_path / "wrong"
    shutil.copytree(released, wrong)
    mismatch_run = next(p for p in (sweeps["mismatch"] / "runs").iterdir() if (p / "adapter").is_dir())
    learn_run = next(p for p in (wrong / "runs").iterdir() if (p / "adapter").is_dir())
    shutil.rmtree(learn_run / "adapter")
    shutil.copytree(mismatch_run / "adapter", learn_run / "adapter")
    shutil.rmtree(wrong / "scores")
    assert cli(["eval", str(wrong)]) == 0
    assert cli(["gate", str(wrong), "--config", cfg, "--against", str(released), "--quiet"]) == 1
    res = json.loads((wrong / "gate" / "gate.json").read_text())
    check = next(c for c in res["checks"] if c["kind"] == "non-inferiority")
    assert check["status"] == "fail" and check["value"] < -0.9
