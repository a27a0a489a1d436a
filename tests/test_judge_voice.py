"""The voice example end to end through the judge path (issue #24): a sweep's outputs -> harness judge run against an
OpenAI-compatible judge server of our own on 127.0.0.1 that scores by the house rules -> labels from the rules ->
harness judge calibrate --sweep -> report's analysis -> decision and gate. And the embedded SmolLM2-135M as judge:
calibrated on the same kind of labels, it agrees near chance, and the decision says it cannot tell (slow).

The truth is known: evalsets/voice/generate.py `violations` is the house style; the adapters answer in it, the
few-shot prompt breaks one rule per reply, the base model two to four.
"""
from __future__ import annotations

import importlib.util
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fixtures_sweep import write_sweep
from harness.decision import decide
from harness.gate import evaluate_gate, exit_code
from harness.io import read_json, read_jsonl
from harness.judge import calibrate, run_judge
from harness.metrics import score_sample
from harness.report import write_report
from harness.report.load import analyze_sweep, load_sweep, settings_for
from harness.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("voice_generate", REPO / "evalsets" / "voice" / "generate.py")
V = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(V)  # type: ignore[union-attr]
N_ITEMS = 30


def test_voice_files_are_what_the_generator_makes():
    data = V.generate(0)
    for split, rows in data.items():
        assert (REPO / "evalsets" / "voice" / f"{split}.jsonl").read_text(encoding="utf-8") == \
            "".join(json.dumps(r) + "\n" for r in rows)


def test_task_rule_metrics_agree_with_the_house_rules():
    """Every reference reply keeps the four rules; an off-style reply breaks some, and the task's regex metrics
    flag exactly the rules `violations` says it breaks."""
    task = load_task(REPO / "evalsets" / "voice" / "task.yaml")
    rng = random.Random(1)
    for line in (REPO / "evalsets" / "voice" / "eval.jsonl").read_text().splitlines():
        msg, good = (m["content"] for m in json.loads(line)["messages"])
        first = V.customer_of(msg)
        assert V.violations(good, first) == []
        assert all(v == 1.0 for k, v in score_sample(good, good, task.metrics)[0].items() if k in V.RULES)
        bad = V.off_style(good, first, rng)
        broken = set(V.violations(bad, first))
        scores = score_sample(bad, good, task.metrics)[0]
        assert broken and {k for k in V.RULES if scores[k] == 0.0} == broken


def _block(text: str, label: str) -> str | None:
    m = re.search(rf"<<<{label}\n(.*?)\n{label}>>>", text, re.S)
    return m.group(1) if m else None


class RuleJudge(ThreadingHTTPServer):
    """An OpenAI-compatible chat endpoint that judges by the house rules: pointwise 5 - (rules broken), pairwise the
    reply that breaks fewer rules (tie when equal), each with its reason."""
    daemon_threads = True

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @staticmethod
    def verdict(prompt: str) -> dict:
        first = V.customer_of(_block(prompt, "QUESTION") or "")
        one = _block(prompt, "CANDIDATE")
        if one is not None:
            broken = V.violations(one, first)
            return {"score": max(1, 5 - len(broken)), "reason": "breaks " + (", ".join(broken) or "no rule")}
        a = V.violations(_block(prompt, "CANDIDATE_A") or "", first)
        b = V.violations(_block(prompt, "CANDIDATE_B") or "", first)
        winner = "A" if len(a) < len(b) else "B" if len(b) < len(a) else "tie"
        return {"winner": winner, "reason": f"A breaks {len(a)} house rules, B breaks {len(b)}"}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, obj: dict, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "rule-judge", "object": "model"}]} if self.path.endswith("/models")
                   else {"error": "not found"}, 200 if self.path.endswith("/models") else 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        srv: RuleJudge = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.calls += 1
        text = json.dumps(RuleJudge.verdict(body["messages"][-1]["content"]))
        self._send({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}})


@pytest.fixture(scope="module")
def rule_judge():
    srv = RuleJudge()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def voice_sweep(root: Path, name: str = "voice") -> Path:
    """A sweep of the voice task (the fixture sweep's runs, its task rows replaced by voice outputs scored with the
    task's own rule metrics; identical probe answers for every model, so forgetting is measured and absent)."""
    task = load_task(REPO / "evalsets" / "voice" / "task.yaml")
    sweep = write_sweep(root, "clear_win", judge=None, name=name)
    meta = read_json(sweep / "sweep.json")
    meta["task"] = "voice"
    (sweep / "sweep.json").write_text(json.dumps(meta))
    models = sorted({r["model"] for r in map(json.loads, (sweep / "scores" / "scores.jsonl").read_text().splitlines())})
    items = [json.loads(line) for line in (REPO / "evalsets" / "voice" / "eval.jsonl").read_text().splitlines()][:N_ITEMS]
    rng = random.Random(0)
    rows = []
    for it in items:
        msg, good = it["messages"][0]["content"], it["messages"][1]["content"]
        first = V.customer_of(msg)
        for m in models:
            out = good if m not in ("base", "fewshot") else \
                V.off_style(good, first, rng, breaks=1 if m == "fewshot" else rng.randint(2, 4))
            metrics, _ = score_sample(out, good, task.metrics)
            rows.append({"model": m, "split": "task", "sample_id": it["id"], "metrics": metrics, "output": out,
                         "reference": good, "error": None, "knowledge": False,
                         "prompt": [{"role": "system", "content": task.system_prompt}, {"role": "user", "content": msg}]})
    for m in models:
        rows += [{"model": m, "split": "probe", "family": "general", "sample_id": f"g{i}", "metrics": {"pass": float(i % 3 > 0)},
                  "output": "an answer", "prompt": [{"role": "user", "content": f"question {i}?"}]} for i in range(150)]
    (sweep / "scores" / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (sweep / "scores" / "summary.json").write_text(json.dumps({"primary_metric": task.primary_metric, "task": "voice",
                                                               "target": task.target}))
    return sweep


def rule_labels(sweep: Path, path: Path, n: int) -> Path:
    """What a person labelling review.html would give: adapter vs base/few-shot pairs, the reply that keeps the house
    style preferred (output order alternates, so a judge that always says "A" cannot agree)."""
    rows = [json.loads(line) for line in (sweep / "scores" / "scores.jsonl").read_text().splitlines()]
    by = {(r["model"], r["sample_id"]): r for r in rows if r["split"] == "task"}
    adapter = "r8-lr0.0002"
    out = []
    for i, sid in enumerate(sorted({s for _, s in by})[:n]):
        ref = "base" if i % 3 else "fewshot"
        a, b = by[(adapter, sid)], by[(ref, sid)]
        first = V.customer_of(a["prompt"][-1]["content"])
        o1, o2, m1, m2 = (a, b, adapter, ref) if i % 2 else (b, a, ref, adapter)
        v1, v2 = len(V.violations(o1["output"], first)), len(V.violations(o2["output"], first))
        out.append({"id": f"{sid}:{ref}", "task": "voice", "sample_id": sid, "question": a["prompt"][-1]["content"],
                    "output_1": o1["output"], "output_2": o2["output"], "model_1": m1, "model_2": m2,
                    "label": 1 if v1 < v2 else 2 if v2 < v1 else 0})
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def openai_judge_cfg(srv: RuleJudge, **extra) -> dict:
    return {"enabled": True, "model": "rule-judge", "rubric": "voice", "pairwise_rubric": "pairwise", "pairwise": True,
            "backend": {"kind": "openai", "base_url": f"http://127.0.0.1:{srv.server_address[1]}/v1",
                        "api_key_env": "VOICE_TEST_NO_KEY", "concurrency": 4, "timeout_s": 10, "max_retries": 1,
                        "backoff_base_s": 0.01, "backoff_max_s": 0.02},
            "min_kappa": 0.4, "max_items": N_ITEMS, "retries": 0, "max_chars": 4000,
            "gen": {"max_new_tokens": 64, "temperature": 0.0, "seed": 0, "logprobs": 0}, **extra}


def decision_of(sweep: Path):
    sw = load_sweep(sweep, require_scores=True)
    an = analyze_sweep(sw, settings_for(sw, n_boot=400))
    return an, decide(an)


def judged(root: Path, srv: RuleJudge, **cfg_extra) -> tuple[Path, dict]:
    sweep = voice_sweep(root)
    cfg = openai_judge_cfg(srv, **cfg_extra)
    run_judge(sweep / "scores", cfg, log=lambda s: None)
    return sweep, cfg


@pytest.fixture(scope="module")
def uncalibrated_voice(tmp_path_factory, rule_judge):
    return judged(tmp_path_factory.mktemp("voice-uncal"), rule_judge)[0]


@pytest.fixture(scope="module")
def calibrated_voice(tmp_path_factory, rule_judge):
    root = tmp_path_factory.mktemp("voice-cal")
    sweep, cfg = judged(root, rule_judge)
    cal = calibrate(rule_labels(sweep, root / "labels.jsonl", 30), cfg, sweep_dir=sweep, log=lambda s: None)
    return sweep, cal


GATE = {"checks": [{"decision": ["ship"]}, {"metric": "judge:voice", "min": 4.0},
                   {"metric": "judge:voice", "min_improvement_over": "fewshot"},
                   {"judge": "pairwise", "vs": "fewshot", "min_win_rate": 0.6}]}


def test_rule_judge_is_uncalibrated_until_labelled(uncalibrated_voice):
    _, d = decision_of(uncalibrated_voice)
    assert d.outcome == "inconclusive"
    assert "no calibration on this task's labels" in d.headline


def test_gate_on_an_uncalibrated_judge_metric_is_inconclusive(uncalibrated_voice):
    res = evaluate_gate(uncalibrated_voice, {"checks": GATE["checks"][:3]})
    assert res["status"] == "inconclusive" and exit_code(res) == 3
    metric = [r for r in res["checks"] if r.kind == "metric"]
    assert metric and all(r.status == "inconclusive" and "the judge cannot decide" in r.reason for r in metric)


def test_rule_judge_on_loopback_calibrated_on_task_labels_ships(calibrated_voice):
    sweep, cal = calibrated_voice
    assert cal["source"] == "task" and cal["kappa"] == pytest.approx(1.0) and cal["reliable"]
    an, d = decision_of(sweep)
    assert an.primary == "judge:voice" and an.models[d.chosen].metrics["judge:voice"].mean == pytest.approx(5.0)
    assert d.outcome == "ship", d.headline
    assert any("kappa 1.00" in r for r in d.reasons)
    # the rule checks are task metrics beside the judge: the base model breaks them, the adapter does not
    assert an.models[d.chosen].metrics["signs_off"].mean == 1.0
    assert an.models["base"].metrics["greets_by_name"].mean < 1.0


def test_gate_on_the_calibrated_judge_metric_passes_with_the_decision(calibrated_voice):
    sweep, _ = calibrated_voice
    res = evaluate_gate(sweep, GATE)
    assert res["status"] == "pass", [(r.name, r.status, r.reason) for r in res["checks"]]
    assert res["decision"]["outcome"] == "ship"


def test_judge_scores_the_tasks_rubric_whatever_judge_rubric_says(tmp_path, rule_judge):
    sweep, _ = judged(tmp_path, rule_judge, rubric="helpfulness")
    rubrics = {r["rubric"] for r in read_jsonl(sweep / "scores" / "judge.jsonl") if r["kind"] == "pointwise"}
    assert rubrics == {"voice@1"}


def test_pairwise_judge_primary_ships_on_the_same_sweep(calibrated_voice):
    sweep, _ = calibrated_voice
    s = read_json(sweep / "scores" / "summary.json")
    (sweep / "scores" / "summary.json").write_text(json.dumps({**s, "primary_metric": "judge:pairwise", "target": 0.6}))
    try:
        an, d = decision_of(sweep)
    finally:
        (sweep / "scores" / "summary.json").write_text(json.dumps(s))
    assert d.outcome == "ship", d.headline
    c = an.comparison(d.chosen, "fewshot")
    assert c.test == "sign test" and c.a_only == N_ITEMS and c.b_only == 0


def test_report_leads_with_the_judge_decision_for_both_judge_primaries(calibrated_voice):
    sweep, _ = calibrated_voice
    s = read_json(sweep / "scores" / "summary.json")
    try:
        for primary, target in (("judge:voice", 4), ("judge:pairwise", 0.6)):
            (sweep / "scores" / "summary.json").write_text(json.dumps({**s, "primary_metric": primary, "target": target}))
            out = write_report(sweep)
            md = out["report_md"].read_text()
            assert out["decision"].outcome == "ship" and f"primary metric `{primary}`" in md
            assert "kappa 1.00" in md
    finally:
        (sweep / "scores" / "summary.json").write_text(json.dumps(s))


def test_length_explained_preference_is_gated_and_decided_on_the_controlled_rate(calibrated_voice, tmp_path):
    """The judge's preference for the adapter over the few-shot prompt follows the answers' lengths: the decision
    and the gate's judge check both use the length-controlled win rate and say so."""
    import shutil

    import numpy as np

    from harness.judge.length import length_feature
    from harness.judge.run import pairwise_summary

    sweep = Path(shutil.copytree(calibrated_voice[0], tmp_path / "voice"))
    summary = read_json(sweep / "scores" / "judge_summary.json")
    chosen = decision_of(sweep)[1].chosen
    rng = np.random.default_rng(1)
    len_b = rng.integers(50, 400, size=120)
    len_a = rng.integers(50, 400, size=120) + 120
    p_a = 1 / (1 + np.exp(-3 * length_feature(len_a, len_b)))
    res = [{"verdict": "x" if u < q else "y", "consistent": True} for u, q in zip(rng.uniform(size=120), p_a)]
    by_length = pairwise_summary(chosen, "fewshot", res, list(len_a), list(len_b))
    assert by_length["length_explained"]
    summary["pairwise"] = [p for p in summary["pairwise"] if (p["a"], p["b"]) != (chosen, "fewshot")] + [by_length]
    (sweep / "scores" / "judge_summary.json").write_text(json.dumps(summary))
    meta = read_json(sweep / "scores" / "summary.json")
    (sweep / "scores" / "summary.json").write_text(json.dumps({**meta, "primary_metric": "judge:pairwise",
                                                                "target": None}))
    an, d = decision_of(sweep)
    assert an.comparison(chosen, "fewshot").test.startswith("length-controlled")
    assert d.outcome != "ship" and "length explains the judge's preference" in d.headline
    res = evaluate_gate(sweep, {"checks": [{"judge": "pairwise", "vs": "fewshot", "min_win_rate": 0.5}]})
    (check,) = res["checks"]
    assert "length explains the preference" in check.reason
    assert check.value == pytest.approx(by_length["lc_win_rate"]) and check.status != "pass"


@pytest.mark.timeout(900)
def test_real_voice_sweep_with_the_loopback_judge_says_it_cannot_tell_before_labels(tmp_path, rule_judge):
    """`harness sweep task.name=voice judge=openai ...` on the tiny random model: real training, generation, the judge
    run on loopback with the task's rubric, report: the decision waits for labels instead of trusting the judge."""
    from harness.cli import main as cli

    port = rule_judge.server_address[1]
    rc = cli(["sweep", "model=tiny_random", "tracking.wandb=disabled", "sweep=none", "train.batch_size=8",
              "train.epochs=1", "train.eval_every=8", "train.patience=0", "lora.r=4", "train.precision=fp32",
              "eval.probes=null", "eval.mc_probes=null", "eval.max_eval=24", "gate=none", "task.name=voice",
              f"output_root={tmp_path}", "sweep_name=voice", "judge=openai", "judge.model=rule-judge",
              f"judge.backend.base_url=http://127.0.0.1:{port}/v1", "judge.max_items=24"])
    assert rc == 0
    sweep = tmp_path / "voice"
    verdict = json.loads((sweep / "report" / "verdict.json").read_text())
    assert verdict["primary"] == "judge:voice" and verdict["outcome"] == "inconclusive"
    assert "no calibration on this task's labels" in verdict["headline"]
    rows = list(read_jsonl(sweep / "scores" / "judge.jsonl"))
    assert {r["rubric"] for r in rows if r["kind"] == "pointwise"} == {"voice@1"}
    assert sum(r["kind"] == "pairwise" for r in rows) == 2 * 24


@pytest.mark.slow
def test_embedded_smollm2_as_judge_is_inconclusive_with_its_measured_kappa(tmp_path, smol_spec, rule_judge):
    """SmolLM2-135M judges the same pairs: its agreement with the labels is measured and too low to decide on."""
    from conftest import SMOL_CFG

    sweep = voice_sweep(tmp_path)
    labels = rule_labels(sweep, tmp_path / "labels.jsonl", 8)
    cfg = {"enabled": True, "model": dict(SMOL_CFG), "rubric": "voice", "pairwise_rubric": "pairwise",
           "backend": {"kind": "hf", "batch_size": 8}, "min_kappa": 0.4, "max_items": 4, "retries": 0,
           "max_chars": 600, "gen": {"max_new_tokens": 32, "temperature": 0.0, "seed": 0, "logprobs": 0}}
    run_judge(sweep / "scores", cfg, pairs=[], log=lambda s: None)
    cal = calibrate(labels, cfg, sweep_dir=sweep, log=lambda s: None)
    assert not cal["reliable"]
    _, d = decision_of(sweep)
    assert d.outcome == "inconclusive"
    kappa = "n/a (undefined)" if cal["kappa"] is None else f"kappa {cal['kappa']:.2f}"
    assert kappa in d.headline and "(n = 8" in d.headline
    if cal["missing"]:
        assert f"no verdict on {cal['missing']}" in d.headline
