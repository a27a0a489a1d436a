"""The judge: ask, parse strictly, retry the unparseable; pointwise scores and both-order pairwise verdicts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

from harness.backends.base import Completion, GenParams
from harness.backends.errors import completion_error
from harness.io import UserError
from harness.judge.client import JudgeClient
from harness.judge.parsing import VerdictError, check_not_echo, extract_json_object, parse_pairwise, parse_pointwise, weighted_score
from harness.judge.prompting import REMINDER, pairwise_messages, pointwise_messages
from harness.judge.rubrics import Rubric

def default_gen(cfg: dict | None = None) -> GenParams:
    base = {"max_new_tokens": 96, "temperature": 0.0, "seed": 0, "logprobs": 5}
    base.update(dict(cfg or {}))
    return GenParams.from_dict(base)


@dataclass
class Attempted:
    verdict: dict | None
    attempts: int
    raw: list[str]
    completion: Completion | None  # the completion the verdict came from (or the last one)
    error: str | None = None
    backend_error: bool = False  # the last attempt failed in the backend (endpoint down, HTTP error), not in parsing


class Judge:
    def __init__(self, client: JudgeClient, *, gen: GenParams | None = None, retries: int = 2,
                 retry_temperature: float = 0.7, max_chars: int | None = 4000,
                 log: Callable[[str], None] | None = None):
        self.client = client
        self.log = log
        self.gen = gen or default_gen()
        self.retries = max(0, int(retries))
        self.retry_temperature = float(retry_temperature)
        self.max_chars = max_chars

    def _attempt_params(self, k: int) -> GenParams:
        if k == 0:
            return self.gen
        return dataclasses.replace(self.gen, seed=self.gen.seed + k,
                                   temperature=max(self.gen.temperature, self.retry_temperature))

    @staticmethod
    def _with_reminder(msgs: list[dict]) -> list[dict]:
        msgs = [dict(m) for m in msgs]
        msgs[-1]["content"] = msgs[-1]["content"] + REMINDER
        return msgs

    def run(self, prompts: Sequence[list[dict]], parse: Callable[[str], dict], rubric_tag: str,
            untrusted: Sequence[Sequence[str | None]] | None = None) -> list[Attempted]:
        """Ask, parse strictly, re-ask the unparseable (up to `retries` times); `untrusted[i]` are the
        texts of prompt i whose JSON objects a verdict must not merely copy."""
        results = [Attempted(None, 0, [], None) for _ in prompts]
        pending = list(range(len(prompts)))
        for k in range(self.retries + 1):
            if not pending:
                break
            params = self._attempt_params(k)
            jobs = [((prompts[i] if k == 0 else self._with_reminder(prompts[i])), params) for i in pending]
            if self.log:
                what = "asking" if k == 0 else f"retry {k}/{self.retries}: re-asking"
                self.log(f"judge {rubric_tag}: {what} {len(jobs)} request(s)")
            comps = self.client.complete(jobs, rubric_tag)
            still = []
            for i, c in zip(pending, comps):
                r = results[i]
                r.attempts += 1
                r.raw.append(c.text)
                r.completion = c
                err = completion_error(c, 300)
                r.backend_error = err is not None
                if err is not None:
                    r.error = f"backend error: {err}"
                    still.append(i)
                    continue
                try:
                    v = parse(c.text)
                    if untrusted is not None:
                        check_not_echo(extract_json_object(c.text), untrusted[i])
                    r.verdict = v
                    r.error = None
                except VerdictError as e:
                    r.error = str(e)
                    still.append(i)
            pending = still
        return results

    # -- pointwise
    def score(self, rubric: Rubric, items: Sequence[dict]) -> list[dict]:
        """items: {"question", "answer", "reference"?, "format"?}; returns one result per item:
        {"score": int|None, "weighted_score": float|None, "reason", "missing": bool, "attempts", "raw", "error"}."""
        if rubric.type != "pointwise":
            raise UserError(f"{rubric.path}: key 'type': rubric {rubric.name!r} is {rubric.type}, pointwise needed")
        prompts = [pointwise_messages(rubric, it.get("question", ""), it.get("answer", ""), it.get("reference"),
                                      it.get("format"), self.max_chars) for it in items]
        untrusted = [[it.get("question"), it.get("answer"), it.get("reference"), it.get("format")] for it in items]
        res = self.run(prompts, lambda t: parse_pointwise(t, rubric), rubric.tag, untrusted)
        out = []
        for r in res:
            v = r.verdict
            out.append({
                "score": v["score"] if v else None,
                "weighted_score": weighted_score(r.completion, rubric) if (v and r.completion) else None,
                "reason": v["reason"] if v else None,
                "missing": v is None,
                "attempts": r.attempts,
                "raw": r.raw,
                "error": r.error,
                "backend_error": r.backend_error,
            })
        return out

    # -- pairwise
    def compare(self, rubric: Rubric, items: Sequence[dict]) -> list[dict]:
        """items: {"question", "x", "y", "reference"?}; both orders; returns per item
        {"verdict": "x"|"y"|"tie"|None, "consistent": bool|None, "order_ab": {...}, "order_ba": {...}, "missing": bool}
        (order_ab: x shown as A; order_ba: y shown as A)."""
        if rubric.type != "pairwise":
            raise UserError(f"{rubric.path}: key 'type': rubric {rubric.name!r} is {rubric.type}, pairwise needed")
        prompts = []
        for it in items:
            q, ref, fmt = it.get("question", ""), it.get("reference"), it.get("format")
            prompts.append(pairwise_messages(rubric, q, it["x"], it["y"], ref, fmt, self.max_chars))
            prompts.append(pairwise_messages(rubric, q, it["y"], it["x"], ref, fmt, self.max_chars))
        untrusted = []
        for it in items:
            u = [it.get("question"), it["x"], it["y"], it.get("reference"), it.get("format")]
            untrusted += [u, u]
        res = self.run(prompts, lambda t: parse_pairwise(t, rubric), rubric.tag, untrusted)
        out = []
        for j in range(len(items)):
            r1, r2 = res[2 * j], res[2 * j + 1]
            w1 = map_back(r1.verdict, swapped=False)
            w2 = map_back(r2.verdict, swapped=True)
            verdict, consistent = combine_orders(w1, w2)
            out.append({
                "verdict": verdict,
                "consistent": consistent,
                "missing": verdict is None,
                "order_ab": order_record(r1, w1, swapped=False),
                "order_ba": order_record(r2, w2, swapped=True),
            })
        return out


def order_record(r: Attempted, mapped: str | None, swapped: bool) -> dict:
    """One order's verdict as judge.jsonl keeps it: who was shown as A/B, the raw winner, x/y mapped, rationale."""
    v = r.verdict
    return {"a": "y" if swapped else "x", "b": "x" if swapped else "y", "winner": v["winner"] if v else None,
            "mapped": mapped, "reason": v["reason"] if v else None, "attempts": r.attempts, "raw": r.raw,
            "error": r.error, "backend_error": r.backend_error}


def map_back(verdict: dict | None, swapped: bool) -> str | None:
    if verdict is None:
        return None
    w = verdict["winner"]
    if w == "tie":
        return "tie"
    if not swapped:
        return "x" if w == "A" else "y"
    return "y" if w == "A" else "x"


def combine_orders(w1: str | None, w2: str | None) -> tuple[str | None, bool | None]:
    """Both orders mapped back to x/y/tie -> (verdict, consistent). A win needs both orders to agree."""
    if w1 is None or w2 is None:
        return None, None
    if w1 == w2:
        return w1, True
    return "tie", False


def pairwise_tally(results: Sequence[dict]) -> dict:
    """wins/losses/ties for x vs y, missing, position consistency over pairs with both orders parsed."""
    wins = sum(r["verdict"] == "x" for r in results)
    losses = sum(r["verdict"] == "y" for r in results)
    ties = sum(r["verdict"] == "tie" for r in results)
    missing = sum(r["verdict"] is None for r in results)
    judged = [r for r in results if r["consistent"] is not None]
    pc = (sum(bool(r["consistent"]) for r in judged) / len(judged)) if judged else None
    return {"wins": wins, "losses": losses, "ties": ties, "missing": missing, "position_consistency": pc,
            "inconsistent": sum(r["consistent"] is False for r in judged), "n": len(results), "n_judged": len(judged)}
