"""Teacher-forced likelihood measures (harness.likelihood) on the tiny model: drift (KL along the base answer) and
multiple-choice probes, checked against slow token-by-token references; the MC set generator and loader."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import likelihood as LK
from harness.io import UserError
from harness.probes import load_probes, probes_dir
from harness.stats import mde_paired, n_needed_paired
from tests.conftest import TINY_CFG, make_random_adapter

REFERENCE_TOL = 1e-5


def _maker():
    spec = importlib.util.spec_from_file_location("make_mc_probes", probes_dir() / "make_mc_probes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- slow references (transformers only)


@pytest.fixture(scope="module")
def ref_models(tiny_spec, tiny_adapters):
    """Independent loads: the plain base model, and base + adapter a1 as its own PeftModel."""
    from peft import PeftModel

    from harness.models import load_model, load_tokenizer

    base = load_model(tiny_spec, device="cpu", dtype="float32").eval()
    a1 = PeftModel.from_pretrained(load_model(tiny_spec, device="cpu", dtype="float32"), str(tiny_adapters["a1"])).eval()
    return {"base": base, "a1": a1}, load_tokenizer(tiny_spec)


def _ref_logprobs(model, tok, messages: list[dict], continuation: str):
    """log_softmax rows predicting each token of continuation + end-of-turn, one unbatched forward."""
    import torch

    from harness.prompts import render_prompt

    p = tok(render_prompt(tok, messages), add_special_tokens=False)["input_ids"]
    c = tok(continuation + tok.eos_token, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([p + c])).logits[0]
    return torch.log_softmax(logits.float(), -1)[len(p) - 1:len(p) - 1 + len(c)], c


def _ref_choice_sum(model, tok, messages, choice) -> float:
    """log P(" " + choice | prompt + answer cue), picked token by token from one unbatched forward; the cue and the
    choice tokenized on their own, and no end-of-turn token."""
    import torch

    from harness.prompts import render_prompt

    p = tok(render_prompt(tok, messages) + LK.ANSWER_CUE, add_special_tokens=False)["input_ids"]
    c = tok(" " + choice, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([p + c])).logits[0]
    lp = torch.log_softmax(logits.float(), -1)[len(p) - 1:len(p) - 1 + len(c)]
    return sum(float(lp[k, t]) for k, t in enumerate(c))


MIXED_ITEMS = [  # a system message shortens the shared prefix; choices of very different lengths; two choices
    {"id": "x-sys", "family": "general", "messages": [{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Name a colour."}],
     "choices": ["red", "a very long and winding answer about colours", "blue"], "answer": 2},
    {"id": "x-two", "family": "reading", "messages": [{"role": "user", "content": "Yes or no?"}],
     "choices": ["yes", "no"], "answer": 0},
]


@pytest.fixture(scope="module")
def scorer(tiny_adapters):
    sc = LK.Scorer(TINY_CFG, {"a1": tiny_adapters["a1"], "zero": tiny_adapters["zero"]}, device="cpu", max_tokens=96)
    yield sc
    sc.close()


def test_mc_scores_equal_a_token_by_token_reference_and_pick_the_argmax(scorer, ref_models):
    models, tok = ref_models
    items = LK.load_mc_probes("mc")[::72] + MIXED_ITEMS
    res = scorer.mc(items, ["base", "a1"])
    batches = scorer._plan(scorer.mc_rows(items))[1]
    assert len(batches) > 1 and any((b.mask < 0).any() for b in batches)  # padding and several batches exercised
    for key in ("base", "a1"):
        for it in items:
            ref = [_ref_choice_sum(models[key], tok, it["messages"], c) for c in it["choices"]]
            got = res[key][it["id"]]
            assert len(got["logprobs"]) == len(it["choices"])
            assert max(abs(a - b) for a, b in zip(ref, got["logprobs"])) <= REFERENCE_TOL, (key, it["id"])
            best = max(range(len(ref)), key=lambda j: ref[j])
            norm = max(range(len(ref)), key=lambda j: ref[j] / len(it["choices"][j]))
            assert got["choice"] == best and got["pass"] == float(best == it["answer"])
            assert got["choice_norm"] == norm and got["pass_norm"] == float(norm == it["answer"])
    assert res["base"] != res["a1"]


def test_every_model_continues_the_same_answer_cue_and_no_end_of_turn_is_scored(scorer, monkeypatch):
    """Base and adapter are fed the very same tokens: prompt, the answer cue, then " " + choice, never the end of
    the turn (scoring it measured the answer's form: a terse adapter looked like it knew more)."""
    items = LK.load_mc_probes("mc_fast")[::30] + MIXED_ITEMS
    seen: dict[str, list] = {}
    real = scorer.logprobs

    def spy(key, batch, prefix):
        seen.setdefault(key, []).append((list(prefix), batch.ids.tolist(), batch.targets.tolist()))
        return real(key, batch, prefix)

    monkeypatch.setattr(scorer, "logprobs", spy)
    res = scorer.mc(items, ["base", "a1"])
    assert seen["base"] == seen["a1"] and seen["base"]
    tok = scorer.tokenizer
    eot = tok.convert_tokens_to_ids(tok.eos_token)
    assert all(eot not in targets for _, _, targets in seen["base"])
    cue = tok(LK.ANSWER_CUE, add_special_tokens=False)["input_ids"]
    for it, row in zip(items, scorer.mc_rows(items)):
        assert row.prompt == scorer.prompt_ids(it["messages"]) + cue
        assert [tok.decode(c) for c in row.conts] == [" " + c for c in it["choices"]]
        assert res["a1"][it["id"]]["tokens"] == [len(c) for c in row.conts]


def test_choose_breaks_ties_to_the_first_and_normalises_by_characters():
    assert LK.choose([-1.0, -1.0, -3.0], [1, 1, 1]) == (0, 0)
    assert LK.choose([-4.0, -6.0], [2, 6]) == (0, 1)  # -2 per char vs -1 per char


def test_kl_of_the_base_against_itself_is_exactly_zero(scorer):
    """An all-zero LoRA adds exact zeros: the adapter's distributions are the base's, bit for bit."""
    probes = load_probes("fast")[:12]
    kls = scorer.kl_per_prompt([p["messages"] for p in probes], [p.get("reference", "") for p in probes], ["zero", "a1"])
    assert all(k["zero"] == 0.0 for k in kls)
    assert all(k["a1"] > 0.0 for k in kls)
    res = LK.drift(TINY_CFG, {"zero": None}, [(p["id"], p["family"], p["messages"]) for p in probes],
                   {p["id"]: p.get("reference", "") for p in probes}, scorer=scorer)
    assert res["zero"]["all"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "n": 12}
    assert all(v["mean"] == 0.0 for v in res["zero"]["families"].values())


def test_drift_equals_a_reference_kl_over_the_answer_and_its_end(scorer, ref_models):
    """Mean over every answer token and the end-of-turn token of sum_v p_base (log p_base - log p_adapter)."""
    models, tok = ref_models
    probes = load_probes("fast")[::20]
    answers = ["", "Paris is the capital.", "42", "yes"] * 3
    got = scorer.kl_per_prompt([p["messages"] for p in probes], answers[:len(probes)], ["a1"])
    for p, a, g in zip(probes, answers, got):
        lb, c = _ref_logprobs(models["base"], tok, p["messages"], a)
        la, _ = _ref_logprobs(models["a1"], tok, p["messages"], a)
        assert len(c) == len(tok(a, add_special_tokens=False)["input_ids"]) + 1
        kl = (lb.double().exp() * (lb.double() - la.double())).sum(-1).mean()
        assert g["a1"] == pytest.approx(float(kl), rel=1e-4, abs=1e-7)


def test_drift_summary_has_a_ci_per_family_and_overall():
    per = {f"p{i}": {"a": 0.1 * (i % 5)} for i in range(20)}
    fams = {f"p{i}": ("general" if i < 12 else "reading") for i in range(20)}
    s = LK.summarize_drift(per, fams, n_boot=500)["a"]
    assert s["families"]["general"]["n"] == 12 and s["families"]["reading"]["n"] == 8 and s["all"]["n"] == 20
    for iv in [s["all"], *s["families"].values()]:
        assert iv["lo"] <= iv["mean"] <= iv["hi"] and iv["lo"] < iv["hi"]
    assert s["all"]["mean"] == pytest.approx(0.2)


# ----------------------------------------------------------------------------- trained adapters


def _train(task_yaml: Path, run_dir: Path, steps: int) -> Path:
    from harness.cli import main as cli

    assert cli(["train", "model=tiny_random", "model.init_std=0.5", "tracking.wandb=disabled", "train.batch_size=8",
                f"task.path={task_yaml}", f"train.max_steps={steps}", f"train.eval_every={steps}", "train.patience=0",
                "train.lr=5e-3", "train.precision=fp32", "lora.dropout=0.0", f"run_dir={run_dir}"]) == 0
    return run_dir / "adapter"


def test_a_longer_trained_adapter_drifts_more_than_a_shorter_one(tmp_path):
    from tests.toy_task import write_toy_task

    task = write_toy_task(tmp_path / "toy")
    short, long = _train(task, tmp_path / "short", 2), _train(task, tmp_path / "long", 10)
    for run in ("short", "long"):  # each kept its last step (else the comparison would not be short vs long)
        m = json.loads((tmp_path / run / "metrics.json").read_text())
        assert m["best_step"] == m["final_step"], m
    probes = load_probes("fast")[::4]
    cfg = {**TINY_CFG, "init_std": 0.5}
    res = LK.drift(cfg, {"short": short, "long": long}, [(p["id"], p["family"], p["messages"]) for p in probes],
                   {p["id"]: p.get("reference", "") for p in probes}, n_boot=200)
    s, lg = res["short"]["all"], res["long"]["all"]
    assert 0.0 < s["mean"] < lg["mean"], (s, lg)
    per_s, per_l = res["short"]["per_prompt"], res["long"]["per_prompt"]
    assert len(per_l) == len(probes) and all(v > 0 for v in per_l.values())
    assert sum(per_l[p] > per_s[p] for p in per_l) >= 0.9 * len(per_l)  # prompt by prompt, not only on average


# ----------------------------------------------------------------------------- MC items: generator, validator, loader


def test_mc_set_is_a_fresh_deterministic_build_and_check_mode_says_so(tmp_path):
    mk = _maker()
    assert mk.build() == mk.build()
    assert mk.build(seed=1) != mk.build()
    for path, text in mk.outputs().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run make_mc_probes.py"
    assert LK.load_mc_probes("mc_fast") == mk.P.fast_subset(LK.load_mc_probes("mc"), mk.FAST_PER_FAMILY)
    r = subprocess.run([sys.executable, str(probes_dir() / "make_mc_probes.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mc_set_families_ids_and_size():
    items = LK.load_mc_probes("mc")
    ids = [it["id"] for it in items]
    assert all(i.startswith("mc-") for i in ids) and not set(ids) & {p["id"] for p in load_probes("default")}
    n = {f: sum(it["family"] == f for it in items) for f in LK.MC_FAMILIES}
    assert set(n) == {"arithmetic", "general", "reading"} and len(set(n.values())) == 1
    mk = _maker()
    assert min(n.values()) == mk.PER_FAMILY
    # the size it claims: a drop of MARGIN shown at 80% power with the assumed discordance (make_mc_probes.py)
    sd = mk.DISCORDANCE ** 0.5  # a paired pass/fail difference's sd at that discordance
    assert n_needed_paired(sd, mk.MARGIN) <= mk.PER_FAMILY
    assert mde_paired(sd, mk.FAST_PER_FAMILY) == pytest.approx(0.14, abs=0.005)
    assert mde_paired(0.076 ** 0.5, mk.FAST_PER_FAMILY) <= 0.10
    for it in items:
        assert it["choices"][it["answer"]] not in it["choices"][:it["answer"]] + it["choices"][it["answer"] + 1:]
    reading = [it for it in items if it["family"] == "reading"]
    text = lambda it: it["messages"][-1]["content"]  # noqa: E731
    # the passage's other fact is among the choices (a reader that copies the wrong half must lose)
    assert sum(sum(c in text(it) for c in it["choices"]) >= 2 for it in reading) >= 0.9 * len(reading)


def test_arithmetic_items_have_the_right_result():
    import re

    for it in LK.load_mc_probes("mc"):
        if it["family"] == "arithmetic" and it["kind"] in ("add", "sub", "mul", "div"):
            a, op, b = re.match(r"What is (\d+) (\+|-|times|divided by) (\d+)\?", it["messages"][-1]["content"]).groups()
            a, b = int(a), int(b)
            want = {"+": a + b, "-": a - b, "times": a * b, "divided by": a // b}[op]
            assert it["choices"][it["answer"]] == str(want), it


GOOD = {"id": "mc-x", "family": "general", "messages": [{"role": "user", "content": "q?"}], "choices": ["a", "b"],
        "answer": 1}


@pytest.mark.parametrize("bad, where", [
    ({"answer": 2}, "answer"), ({"answer": True}, "answer"), ({"answer": -1}, "answer"),
    ({"choices": ["a"]}, "choices"), ({"choices": ["a", "a"]}, "choices"), ({"choices": ["a", " "]}, "choices"),
    ({"family": "ifeval"}, "family"), ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
    ({"messages": []}, "messages"), ({"anwser": 1}, "anwser"), ({"id": ""}, "id"),
    ({"choices": ["85", "8", "9"]}, "choices: '8' is a prefix of '85'"),
    ({"choices": ["Paris, Texas", "paris "]}, "choices: 'paris ' is a prefix of 'Paris, Texas'"),
])
def test_load_mc_probes_names_file_and_line_of_a_bad_item(tmp_path, bad, where):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "mc-y", **bad}) + "\n")
    with pytest.raises(UserError, match=rf"m.jsonl:2: {where}"):
        LK.load_mc_probes(p)


def test_the_generator_never_pairs_a_choice_with_its_prefix():
    import random

    mk = _maker()
    for seed in range(50):
        choices, ans = mk._options(random.Random(seed), "8", ["85", "80", "9", "7", "18", "6", "10", "1", "88"])
        assert choices[ans] == "8" and len(choices) == 4 and LK.prefix_pair(choices) is None
        assert not {"85", "80", "88"} & set(choices)
    with pytest.raises(RuntimeError, match="distractors"):
        mk._options(random.Random(0), "1", ["10", "11", "12", "2"])  # one usable distractor, three asked


def test_load_mc_probes_missing_key_duplicate_empty_and_bad_json(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps({k: v for k, v in GOOD.items() if k != "choices"}) + "\n")
    with pytest.raises(UserError, match=r"m.jsonl:2: choices: required"):
        LK.load_mc_probes(p)
    p.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(UserError, match=r"m.jsonl:3: duplicate id 'mc-x'"):
        LK.load_mc_probes(p)
    p.write_text(json.dumps(GOOD) + '\n{"id": \n')
    with pytest.raises(UserError, match=r"m.jsonl:2: invalid JSON"):
        LK.load_mc_probes(p)
    p.write_text("\n")
    with pytest.raises(UserError, match="empty"):
        LK.load_mc_probes(p)
    with pytest.raises(UserError, match="not found"):
        LK.load_mc_probes(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------- measure(): files and reuse


def _scores_dir(tmp_path: Path, probes: list[dict]) -> Path:
    d = tmp_path / "scores"
    d.mkdir()
    rows = [{"model": "base", "split": "probe", "sample_id": p["id"], "family": p["family"],
             "output": p.get("reference", ""), "error": None} for p in probes]
    rows[0]["error"], rows[0]["output"] = "backend error", ""  # no answer to teacher-force: skipped, named
    rows.append({"model": "a1", "split": "probe", "sample_id": probes[1]["id"], "output": "other", "error": None})
    (d / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_measure_writes_drift_and_mc_scores_and_reuses_them(tmp_path, tiny_adapters, monkeypatch):
    probes = load_probes("fast")[::16]
    mc = LK.load_mc_probes("mc")[::60]
    d = _scores_dir(tmp_path, probes)
    adapters = {"a1": tiny_adapters["a1"]}
    out = LK.measure(d, TINY_CFG, adapters, probes, mc, scores_path=d / "scores.jsonl", n_boot=200)
    assert out["skipped_prompts"] == [probes[0]["id"]] and out["n_prompts"] == len(probes) - 1
    assert json.loads((d / "drift.json").read_text()) == json.loads(json.dumps(out))
    assert out["drift"]["a1"]["all"]["n"] == len(probes) - 1 and out["drift"]["a1"]["all"]["mean"] > 0
    rows = [json.loads(line) for line in (d / "mc_scores.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["base"] * len(mc) + ["a1"] * len(mc)
    assert [r["sample_id"] for r in rows[:len(mc)]] == [it["id"] for it in mc]
    r = rows[0]
    assert r["split"] == "mc" and set(r["metrics"]) == {"pass", "pass_norm"} and len(r["logprobs"]) == len(mc[0]["choices"])
    assert out["mc"]["base"]["all"]["n"] == len(mc)

    def no_load(*a, **k):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(LK, "Scorer", no_load)
    # same inputs: nothing recomputed
    assert LK.measure(d, TINY_CFG, adapters, probes, mc, scores_path=d / "scores.jsonl", n_boot=200) == out
    monkeypatch.undo()
    monkeypatch.setattr(LK, "drift", no_load)  # a changed MC set recomputes MC only
    again = LK.measure(d, TINY_CFG, adapters, probes, mc[:2], scores_path=d / "scores.jsonl", n_boot=200)
    assert again["drift"] == out["drift"] and again["mc"]["base"]["all"]["n"] == 2
    assert len((d / "mc_scores.jsonl").read_text().splitlines()) == 4


def test_measure_never_writes_through_a_symlink(tmp_path, tiny_adapters):
    probes = load_probes("fast")[::40]
    d = _scores_dir(tmp_path, probes)
    target = tmp_path / "elsewhere.json"
    target.write_text("keep")
    (d / "drift.json").symlink_to(target)
    try:  # harness.io either replaces the link or refuses it; it never writes into the file it points to
        LK.measure(d, TINY_CFG, {"a1": tiny_adapters["a1"]}, probes, LK.load_mc_probes("mc")[:1],
                   scores_path=d / "scores.jsonl", n_boot=50)
        assert not (d / "drift.json").is_symlink()
    except UserError as e:
        assert "symbolic link" in str(e)
    assert target.read_text() == "keep"


def test_an_adapter_pass_merges_into_a_copy_and_gives_the_base_its_own_weights_back(scorer, monkeypatch):
    """The merged adapter pass equals PEFT's unmerged forward up to round-off; the base weights afterwards are the
    very same tensors with the same values (the base pass after it is bit for bit the one before)."""
    items = LK.load_mc_probes("mc")[::90]
    params = {n: p for n, p in scorer.model.named_parameters() if "base_layer" in n}
    ptrs = {n: p.data_ptr() for n, p in params.items()}
    values = {n: p.detach().clone() for n, p in params.items()}
    before = scorer.mc(items, ["base"])
    merged = scorer.mc(items, ["a1"])
    assert scorer._mergeable(scorer.names["a1"])  # the merged path ran
    assert scorer.mc(items, ["base"]) == before
    assert all(p.data_ptr() == ptrs[n] and torch_equal(p, values[n]) for n, p in params.items())
    monkeypatch.setattr(scorer, "_mergeable", lambda name: None)  # PEFT's own forward
    peft = scorer.mc(items, ["a1"])
    for iid, r in merged["a1"].items():
        assert max(abs(a - b) for a, b in zip(r["logprobs"], peft["a1"][iid]["logprobs"])) <= REFERENCE_TOL


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
