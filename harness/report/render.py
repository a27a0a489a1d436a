"""Report rendering: the decision first (headline, the three numbers, a chart, why, what next), then the
evidence (leaderboard, forgetting, judge, comparisons, plots, reproduce). Builds a list of blocks once and
renders it as Markdown and as one self-contained HTML page (inline CSS, plots as base64 PNG, no JS).

Block kinds: ("h", level, text, id) ("p", text) ("decision", Decision, chart|None, review_link|None)
("table", id, headers, rows) ("img", alt, filename, png) ("code", lang, text) ("details", summary, lang, text)
("ul", items) ("samples", intro, [(family, prompt, output)]): untrusted text, shown literally as code.
A table Cell with `href` is a link (the forgetting table links into review.html's probe view)."""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from harness.analysis import BASE, BASELINES, FEWSHOT, Analysis, Interval
from harness.decision import OUTCOMES, Decision
from harness.fmt import clip_line, fmt_comparison, fmt_interval
from harness.report.load import Sweep


@dataclass
class Cell:
    text: str
    cls: str = ""
    href: str | None = None        # a link (to review.html#...): the cell's text is the link text


def _f(v: Any, spec: str = ".3f") -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(x) else format(x, spec)


def _ci(i: Interval | None) -> str:
    return "—" if i is None or math.isnan(i.mean) else (f"{i.mean:.3f}" if math.isnan(i.lo) else fmt_interval(i))


def _bytes(n: Any) -> str:
    try:
        x = float(n)
    except (TypeError, ValueError):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1024 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return "—"


def _hp(hp: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hp.items()))


def _label(an: Analysis, m: str) -> str:
    return {BASE: "base (zero-shot)", FEWSHOT: "base + few-shot prompt"}.get(m, an.name(m))


_PROVENANCE = re.compile(r"(identity|sha256|hash|commit|seed|^task\.|quant|device)", re.I)


def blocks(sweep: Sweep, an: Analysis, d: Decision, *, chart: tuple | None, plots: list[tuple],
           review: str | None, reproduce: list[tuple[str, str, str, str]], command: str | None) -> list[tuple]:
    B: list[tuple] = [("h", 1, f"LoRA sweep report: {sweep.name}", "top"), ("decision", d, chart, review)]
    P = an.primary
    facts = [f"task `{sweep.meta.get('task') or sweep.summary.get('task') or '?'}`"
             + (f" (version {sweep.summary['task_version']})" if sweep.summary.get("task_version") else ""),
             f"base model `{sweep.meta.get('model') or '?'}`", f"primary metric `{P}`",
             f"{len(sweep.runs)} run{'s' if len(sweep.runs) != 1 else ''} ({len(an.adapters)} adapter"
             f"{'s' if len(an.adapters) != 1 else ''} scored)", f"{an.n_items} paired eval items",
             f"alpha {an.settings.alpha}"]
    for e in sweep.summary.get("engines") or []:  # which forward generated: lean, or the fallback and why
        if "lean" in e:
            facts.append(f"served by `{e['backend']}` on the " + (
                ("lean forward" + (" (packed weights)" if e.get("pack") else "")) if e["lean"]
                else f"transformers forward (not lean: {e.get('lean_reason')})")
                + (f" ({e['window_fallback']})" if e.get("window_fallback") else ""))
    # how the base model's chat template was used, when it was not as-is (system merged, no template, kwargs)
    facts += [n for n in ((sweep.summary.get("prompt_format") or {}).get("notes") or []) if isinstance(n, str)]
    B.append(("p", "; ".join(facts) + "."))

    # leaderboard
    B.append(("h", 2, "Leaderboard", "leaderboard"))
    others = [m for m in an.compared_metrics if m != P]
    headers = ["#", "model", "status", f"{P} (95% CI)"] + others + ["errors"] + \
              [f"Δ probe {f}" for f in an.families] + ["best val loss", "train time (s)", "tokens/s", "adapter", "run id"]
    runs = {r["run_id"]: r for r in sweep.runs}

    def key(m: str) -> tuple:
        i = an.models[m].metrics.get(P) if P else None  # a baseline has no number on judge:pairwise
        v = i.mean if i is not None else math.nan
        return (-(v if not math.isnan(v) else -1e9), m)

    rows = []
    for i, m in enumerate(sorted(an.models, key=key), 1):
        rv, st = an.runs.get(m), an.models[m]
        rm = (runs.get(m) or {}).get("metrics") or {}
        status = "baseline" if m in BASELINES else (rv.status if rv else "complete")
        if m in an.selection.excluded:
            status = "did not learn"
        cells: list[Any] = [str(i), Cell(_label(an, m) + (" ◀ chosen" if m == d.chosen else ""),
                                         "best" if m == d.chosen else ""), status, _ci(st.metrics.get(P))]
        cells += [_ci(st.metrics.get(k)) for k in others]
        cells.append(Cell(f"{st.errors}/{st.n}", "warn") if st.errors else "0")
        fg = an.forgetting.get(m, {})
        for f in an.families:
            if m == BASE:
                cells.append(_ci(st.probes.get(f)) + " (abs)")
            elif f in fg and fg[f].comparison:
                c = fg[f].comparison
                cells.append(Cell(f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}] {fg[f].status}",
                                  "warn" if fg[f].status == "fail" else ""))
            else:
                cells.append("—")
        cells += [_f(rm.get("best_val_loss"), ".4f"), _f(rm.get("train_time_s"), ".1f"),
                  _f(rm.get("tokens_per_s"), ".0f"), _bytes(rm.get("adapter_bytes")),
                  Cell(m if m in an.runs else "—", "mono")]
        rows.append(cells)
    for r in sweep.runs:  # runs with no scores: failed, pruned, incomplete
        if r["run_id"] not in an.models:
            rv = an.runs.get(r["run_id"])
            err = str(r.get("error") or "")[:160]
            rows.append(["—", Cell(rv.name if rv else r["run_id"]), Cell(r["status"] + (f": {err}" if err else ""),
                                                                          "warn" if r["status"] == "failed" else ""),
                         "not scored"] + [""] * (len(headers) - 5) + [Cell(r["run_id"], "mono")])
    if rows:
        B.append(("table", "leaderboard", headers, rows))
        B.append(("p", f"Cells: mean over eval items [95% bootstrap CI]. Δ probe: adapter minus base on the same probes "
                       f"[95% CI] and its non-inferiority status at margin {an.settings.margin:.2f}. Adapters are named by "
                       f"their hyperparameters; the chosen one was picked on the validation split ({d.selection})."))
    if an.rare_metrics:
        B.append(("p", "Not compared (fewer than "
                       f"{an.settings.min_events} items tell the models apart on them): "
                       + ", ".join(f"`{m}`" for m in an.rare_metrics) + "."))

    # forgetting
    B += _forgetting_blocks(an, d, review)

    # seeds
    if an.seeds:
        B.append(("h", 2, "Seed variance", "seeds"))
        B.append(("table", "seeds-table", ["configuration", "seeds", f"{P} per seed", "mean", "sd"],
                  [[sp.name, str(len(sp.runs)), ", ".join(f"{v:.3f}" for v in sp.values), _f(sp.mean), _f(sp.sd)]
                   for sp in an.seeds]))
        if an.seed_test:
            t = an.seed_test
            verdict = ("distinguishable across seeds" if t["p_value"] < an.settings.alpha
                       else "NOT distinguishable across seeds (only within one seed)")
            B.append(("p", f"Chosen `{t['chosen']}` vs runner-up `{t['runner_up']}`: {t['diff']:+.3f} on {P} "
                           f"(Welch p = {_f(t['p_value'])}, seeds {t['n_seeds'][0]} and {t['n_seeds'][1]}): {verdict}."))

    # judge
    B += _judge_blocks(an)

    # form vs knowledge
    if an.knowledge:
        krows = []
        for m, per in sorted(an.knowledge.items()):
            st = an.models[m].knowledge
            krows.append([_label(an, m), _ci(st.get("form")), _ci(st.get("knowledge")),
                          fmt_comparison(per["knowledge"]) if per.get("knowledge") else "—"])
        B.append(("h", 2, "Form vs knowledge", "knowledge"))
        B.append(("table", "knowledge-table", ["model", f"{P}: items not needing knowledge", f"{P}: knowledge items",
                                               "knowledge items vs base"], krows))

    # paired comparisons
    B.append(("h", 2, "Paired comparisons", "comparisons"))
    B.append(("p", "Each adapter against a baseline on the same items: diff = adapter minus baseline [95% paired-bootstrap "
                   "CI]; p from McNemar's test for pass/fail metrics, else the paired bootstrap. The chosen adapter was "
                   "picked on validation data, so its tests stand alone; the others are exploratory and Holm-adjusted. "
                   "Verdict: better / worse = p < alpha and the CI excludes 0."))
    for ref in an.baselines:
        crow = []
        for a in sorted(an.adapters, key=key):
            for k in an.compared_metrics:
                c = an.comparisons[ref].get(a, {}).get(k)
                if c:
                    crow.append([Cell(an.name(a), "best" if a == d.chosen else ""), k,
                                 Cell(fmt_comparison(c), {"better": "good", "worse": "warn"}.get(c.verdict, "")),
                                 c.test, c.verdict])
        if crow:
            B.append(("h", 3, f"vs {_label(an, ref)}", f"vs-{ref}"))
            B.append(("table", f"comparisons-{ref}", ["adapter", "metric", "diff [CI], p, n, discordant items", "test",
                                                       "verdict"], crow))
    err_models = [m for m, st in an.models.items() if st.errors]
    if err_models:
        B.append(("h", 2, "Backend errors", "errors"))
        B.append(("p", "Requests that failed are errors, not wrong answers: they are left out of every mean and comparison."))
        B.append(("table", "errors-table", ["model", "failed", "examples"],
                  [[_label(an, m), f"{an.models[m].errors}/{an.models[m].n}",
                    Cell("; ".join(f"{s}: {e[:100]}" for s, e in an.models[m].error_examples), "mono")]
                   for m in err_models]))

    B.append(("h", 2, "Plots", "plots"))
    B += [("img", alt, fname, png) for fname, alt, png in plots] or [("p", "Nothing to plot.")]

    B.append(("h", 2, "Reproduce", "reproduce"))
    if command:
        B += [("p", "The whole sweep:"), ("code", "bash", command)]
    B.append(("p", f"Scores: `harness eval {sweep.dir.name}` (scores/scores.jsonl sha256 `{sweep.scores_sha256 or 'n/a'}`); "
                   f"this report: `harness report {sweep.dir.name}`."))
    if reproduce:
        B.append(("table", "reproduce-table", ["run", "status", "command", "config.yaml sha256"],
                  [[n, st, Cell(cmd, "mono"), sha] for n, st, cmd, sha in reproduce]))
    B += _manifest_blocks(sweep)
    return B


NOT_MEASURED = ("format bleed: not measured (the task's answers have no fixed form; task.yaml `answer_pattern:` "
                "names one)")
BLEED_EXAMPLES = 2


def _forgetting_blocks(an: Analysis, d: Decision, review: str | None) -> list[tuple]:
    """The chosen adapter vs base per probe family: pass-rate change with its non-inferiority status, format bleed
    (adapter vs base count of n, and a summary row with the paired CI against decision.max_bleed), links to
    review.html's probe view with the matching filter, and a bleeding example or two."""
    fg = an.forgetting.get(d.chosen or "", {})
    if not fg:
        return []
    bl = an.bleed.get(d.chosen or "")
    dr = an.drift.get(d.chosen or "") or {}

    def link(text: str, flt: str, family: str | None, cls: str = "") -> Cell:
        if not review:
            return Cell(text, cls)
        return Cell(text, cls, f"{review}#probes-{flt}" + (f"/{quote(family, safe='')}" if family else ""))

    rows = []
    for f, r in sorted(fg.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        c, fam = r.comparison, (None if f == "all" else f)
        row: list[Any] = [f, _f(r.base_mean), Cell(f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}]" if c else "—"),
                          str(c.n if c else 0), Cell(r.status, {"fail": "warn", "pass": "good"}.get(r.status, "")),
                          str(r.probes_needed) if r.probes_needed else "—"]
        if bl is not None:
            k, kb, n = bl.families.get(f, (0, 0, 0)) if fam else (bl.count, bl.base_count, bl.n)
            row.append(link(f"{k} vs {kb} of {n}", "bleed", fam, "warn" if k > kb else "") if n else "—")
        for flt, k in (("regressed", c.b_only if c else None), ("improved", c.a_only if c else None)):
            row.append(link(str(k) if k is not None else "outputs", flt, fam, "warn" if flt == "regressed" and k else ""))
        if dr:
            i = dr.get(f)
            row.append(f"{i.mean:.3f} [{i.lo:.3f}, {i.hi:.3f}]" if i is not None and not math.isnan(i.mean) else "—")
        rows.append(row)
    headers = ["probe family", "base pass rate", "change [95% CI]", "n", "status", "probes to settle"]
    if bl is not None:
        c = bl.comparison
        status = (f"{bl.status}: {bl.excess:+.1%} over base, "
                  f"{'above' if bl.status == 'bleeds' else 'within'} the {an.settings.max_bleed:.0%} allowed")
        rows.append(["format bleed rate (all probes)", _f(bl.base_rate.mean if bl.base_rate else None),
                     Cell(f"{c.diff:+.3f} [{c.lo:+.3f}, {c.hi:+.3f}]" if c else "—"), str(c.n if c else bl.n),
                     Cell(status, "warn" if bl.status == "bleeds" else "good"), "—",
                     link(f"{bl.count} vs {bl.base_count} of {bl.n} ({bl.rate.mean:.1%})", "bleed", None,
                          "warn" if bl.status == "bleeds" else ""),
                     link("bleeding answers", "bleed", None), ""] + (["—"] if dr else []))
        headers.append("format bleed: adapter vs base")
    headers += ["regressed: base passes, adapter fails", "improved: base fails, adapter passes"]
    if dr:
        headers.append("drift: KL to base [95% CI]")
    B: list[tuple] = [("h", 2, f"Forgetting: {d.chosen_name} vs base", "forgetting"),
                      ("table", "forgetting-table", headers, rows),
                      ("p", f"pass: the CI's lower bound is above -{an.settings.margin:.2f}; fail: a significant drop "
                            "beyond the margin; inconclusive: neither, with the number of probes that would settle it if "
                            "the observed change held. Format bleed: probe answers in the fine-tuning task's output form "
                            f"though the probe did not ask for it; allowed up to {an.settings.max_bleed:.0%} of probes "
                            "above base (`decision.max_bleed`)." + (
                                " Drift: the mean per-token KL divergence of the adapter's next-token distribution from "
                                "the base model's, along the base's own answers to the generated probes (nats; 0 = "
                                "unchanged; no labels needed). Families ending in -mc are multiple-choice probes scored "
                                "by likelihood (the right choice most likely), as lm-evaluation-harness scores ARC."
                                if dr else ""))]
    if bl is None:
        B.append(("p", NOT_MEASURED[0].upper() + NOT_MEASURED[1:] + "."))
    elif bl.status == "bleeds" and bl.examples:
        B.append(("samples", f"{d.chosen_name} answering in the task's form, unasked:",
                  [(str(e.get("family") or ""), clip_line(e.get("prompt"), 100), clip_line(e.get("output"), 140))
                   for e in bl.examples[:BLEED_EXAMPLES]]))
    return B


def _judge_blocks(an: Analysis) -> list[tuple]:
    j = an.judge
    if j is None:
        return []
    B: list[tuple] = [("h", 2, "LLM judge", "judge")]
    if j["status"] == "unavailable":
        B.append(("p", f"**The judge did not run**: {j.get('error') or 'endpoint unavailable'}. Task metrics above are "
                       "unaffected; re-run the sweep to fill in the judge once the endpoint answers."))
        return B
    cal = j["calibration"]
    ctext = (f"{j['calibration_source']} calibration: kappa {_f(cal.get('kappa'), '.2f')}, accuracy "
             f"{_f(cal.get('accuracy'), '.2f')}, position consistency {_f(cal.get('position_consistency'), '.2f')}, "
             f"n = {cal.get('n', '?')}" if cal else "not calibrated")
    status = "reliable" if j["reliable"] else "UNRELIABLE: do not trust its scores"
    B.append(("p", f"Judge `{j['judge_model']}`, rubric `{j['rubric']}`: {ctext}: **{status}**."
                   + (f" Judge status: {j['status']} ({j.get('error')})." if j["status"] != "ok" else "")))
    if j["too_many_missing"]:
        B.append(("p", "**Too many missing verdicts** (over "
                       f"{an.settings.max_judge_missing:.0%}) for: " + ", ".join(j["too_many_missing"]) + "."))
    if j["pointwise"]:
        B.append(("table", "judge-pointwise", ["model", "mean score", "n", "missing"],
                  [[_label(an, m), _f(v.get("mean"), ".2f"), str(v.get("n", "?")), str(v.get("missing", 0))]
                   for m, v in sorted(j["pointwise"].items()) if isinstance(v, dict)]))
    if j["pairwise"]:
        rows = []
        for p in j["pairwise"]:
            lc = _f(p.get("lc_win_rate"), ".2f")
            rows.append([_label(an, str(p.get("a"))), _label(an, str(p.get("b"))),
                         f"{p.get('wins')}/{p.get('losses')}/{p.get('ties')}", _f(p.get("win_rate"), ".2f"),
                         Cell(lc + (" (length explains it)" if p.get("length_explained") else ""),
                              "warn" if p.get("length_explained") else ""),
                         str(p.get("inconsistent", "—")), str(p.get("missing", 0)), str(p.get("n"))])
        B.append(("table", "judge-pairwise", ["a", "b", "wins/losses/ties", "win rate", "length-controlled",
                                              "order-inconsistent", "missing", "n"], rows))
    return B


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _manifest_blocks(sweep: Sweep) -> list[tuple]:
    flats = {r["run_id"]: {k: v for k, v in _flatten(r.get("manifest") or {}).items()
                           if _PROVENANCE.search(k) and not isinstance(v, (dict, list))} for r in sweep.runs}
    keys = sorted({k for f in flats.values() for k in f})
    if not keys:
        return []
    common = [k for k in keys if len({json.dumps(f.get(k)) for f in flats.values()}) == 1]
    differ = [k for k in keys if k not in common]
    some = next(iter(flats.values()))
    B: list[tuple] = [("h", 3, "Manifest hashes", "manifest"),
                      ("table", "manifest-common", ["manifest key (same for every run)", "value"],
                       [[k, Cell(str(some.get(k)), "mono")] for k in common])]
    if differ:
        B.append(("table", "manifest-differ", ["run"] + differ,
                  [[rid] + [Cell(str(f.get(k, "—")), "mono") for k in differ] for rid, f in flats.items()]))
    for r in sweep.runs:
        if r["config_text"]:
            B.append(("details", f"{r['run_id']}: config.yaml", "yaml", r["config_text"].rstrip("\n")))
    return B


# ---------------------------------------------------------------------------------------------- renderers

def _num_label(d: Decision, key: str) -> str:
    return {"base": "base", "fewshot": "few-shot prompt"}.get(key, f"adapter {d.chosen_name}")


def _decision_md(d: Decision, chart: tuple | None, review: str | None) -> list[str]:
    out = [f"## Decision: {OUTCOMES[d.outcome]}", f"> **{_md_text(d.headline)}**"]
    if d.numbers:
        out.append("| | " + " | ".join(_md_cell(_num_label(d, k)) for k in d.numbers) + " |\n|---|" + "---|" * len(d.numbers)
                   + "\n| " + _md_cell(d.primary or "") + " | " + " | ".join(fmt_interval(v) for v in d.numbers.values()) + " |")
    if chart:
        out.append(f"![{_md_text(chart[1])}](plots/{chart[0]})")
    if d.reasons:
        out.append("**Why**\n\n" + "\n".join(f"- {_md_text(r)}" for r in d.reasons))
    out.append("**Next steps**\n\n" + "\n".join(f"- {_md_text(r)}" for r in d.next_steps))
    out.append(f"Chosen adapter: {_md_text(d.selection)}.")
    if review:
        out.append(f"See every output side by side: [{review}]({review})")
    return out


def _md_cell(c: Any) -> str:
    t = (c.text if isinstance(c, Cell) else str(c)).replace("|", "\\|").replace("\n", " ")
    if isinstance(c, Cell) and c.cls == "mono" and t not in ("—", ""):
        t = f"`{t}`"
    if isinstance(c, Cell) and c.cls == "best":
        t = f"**{t}**"
    if isinstance(c, Cell) and c.href:
        t = f"[{t}]({c.href})"
    return _md_text(t)


# a CommonMark code span: a backtick run (not escaped, not part of a longer run) closed by a run of the same length
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def _md_text(text: Any) -> str:
    """Text for report.md: `<`, `>` and `&` outside code spans become entities, so a run name, metric or output
    is never raw HTML in a Markdown viewer (a code span shows its content literally already)."""
    s, out, pos = str(text), [], 0
    for m in _CODE_SPAN.finditer(s):
        out += [html.escape(s[pos:m.start()], quote=False), m.group(0)]
        pos = m.end()
    return "".join(out) + html.escape(s[pos:], quote=False)


def _md_fenced(info: str, text: str) -> str:
    """A fenced block longer than any backtick run inside it: a config holding ``` cannot close it early."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence}{info}\n{text}\n{fence}"


def _md_code(text: str) -> str:
    """An inline code span that holds any text literally (markup in model outputs stays text in Markdown)."""
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_md(B: list[tuple]) -> str:
    out: list[str] = []
    for b in B:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + _md_text(b[2]))
        elif kind == "p":
            out.append(_md_text(b[1]))
        elif kind == "decision":
            out += _decision_md(b[1], b[2], b[3])
        elif kind == "table":
            _, _id, headers, rows = b
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{_md_text(b[1])}](plots/{b[2]})")
        elif kind == "code":
            out.append(_md_fenced(b[1], b[2]))
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(b[1])}</summary>\n\n{_md_fenced(b[2], b[3])}\n\n</details>")
        elif kind == "ul":
            out.append("\n".join(f"- {_md_text(x)}" for x in b[1]))
        elif kind == "samples":
            out.append(_md_text(b[1]) + "\n\n" + "\n".join(f"- {_md_text(fam)}: {_md_code(q)} -> {_md_code(a)}"
                                                             for fam, q, a in b[2]))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:14px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:1.35em;margin:4px 0 8px;color:#3a4356}
h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:10px 0;font-size:12.5px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}
tr:nth-child(even) td{background:#fafbfc}
td.best{font-weight:700;color:#1a4fb5}
td.warn{color:#a3231a;font-weight:600}
td.good{color:#1e6b2f;font-weight:600}
td.mono,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
pre{background:#f0f2f5;padding:10px;overflow-x:auto;border-radius:4px}
pre code{background:none;padding:0}
#decision{display:flex;gap:22px;align-items:flex-start;border-left:8px solid #3b6fd8;background:#f1f5fd;padding:12px 16px;margin:6px 0 12px}
#decision.ship{border-color:#1e7b34;background:#eef8f0}
#decision.warn{border-color:#c77700;background:#fdf6ea}
#decision.stop{border-color:#a3231a;background:#fcefee}
#decision .text{flex:1 1 46%;min-width:320px}
#decision .chart{flex:1 1 50%}
#decision .chart img{max-width:100%;border:0}
#decision .outcome{font-size:13px;font-weight:700;letter-spacing:.06em;color:#3a4356}
#decision .headline{font-size:17px;font-weight:600;margin:2px 0 8px}
#decision table{font-size:12.5px;margin:6px 0}
#decision ul{margin:4px 0 6px 18px;padding:0;font-size:13px}
#decision .small{font-size:12px;color:#4a5263}
figure{margin:14px 0}
figure img{max-width:100%;border:1px solid #e1e4ea}
figcaption{font-size:12px;color:#5a6272}
details{margin:6px 0}
summary{cursor:pointer;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
"""
_TONE = {"ship": "ship", "ship_with_care": "warn", "keep_training": "warn", "inconclusive": "warn",
         "use_prompt": "", "no_gain": "stop", "wrong_tool": "stop", "unusable": "stop"}


def _decision_html(d: Decision, chart: tuple | None, review: str | None) -> str:
    nums = ""
    if d.numbers:
        nums = ("<table id=\"decision-numbers\"><thead><tr><th></th>" + "".join(f"<th>{html.escape(_num_label(d, k))}</th>" for k in d.numbers)
                + f"</tr></thead><tbody><tr><td>{html.escape(d.primary or '')}</td>"
                + "".join(f"<td>{fmt_interval(v)}</td>" for v in d.numbers.values()) + "</tr></tbody></table>")
    link = f'<p class="small"><a href="{html.escape(review)}">See every output side by side</a></p>' if review else ""
    text = (f'<div class="text"><div class="outcome">DECISION: {OUTCOMES[d.outcome]}</div>'
            f'<div class="headline" id="headline">{_inline(d.headline)}</div>{nums}'
            "<details open><summary>Why</summary><ul>" + "".join(f"<li>{_inline(r)}</li>" for r in d.reasons) + "</ul></details>"
            "<strong>Next steps</strong><ul>" + "".join(f"<li>{_inline(r)}</li>" for r in d.next_steps) + "</ul>"
            f'<p class="small">Chosen adapter: {_inline(d.selection)}.</p>{link}</div>')
    img = ""
    if chart:
        img = (f'<div class="chart"><img id="headline-chart" alt="{html.escape(chart[1])}" '
               f'src="data:image/png;base64,{base64.b64encode(chart[2]).decode("ascii")}"></div>')
    return f'<section id="decision" class="{_TONE.get(d.outcome, "")}">{text}{img}</section>'


def render_html(B: list[tuple], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>"]
    for b in B:
        kind = b[0]
        if kind == "h":
            out.append(f'<h{b[1]} id="{b[3]}">{_inline(b[2])}</h{b[1]}>')
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "decision":
            out.append(_decision_html(b[1], b[2], b[3]))
        elif kind == "table":
            _, tid, headers, rows = b
            h = "".join(f"<th>{_inline(str(x))}</th>" for x in headers)
            body = []
            for row in rows:
                tds = []
                for c in row:
                    if isinstance(c, Cell):
                        cls = f' class="{c.cls}"' if c.cls else ""
                        text = html.escape(c.text, quote=False)
                        if c.href:
                            text = f'<a href="{html.escape(c.href)}">{text}</a>'
                        tds.append(f"<td{cls}>{text}</td>")
                    else:
                        tds.append(f"<td>{_inline(str(c))}</td>")
                body.append("<tr>" + "".join(tds) + "</tr>")
            out.append(f'<table id="{tid}"><thead><tr>{h}</tr></thead><tbody>' + "".join(body) + "</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(b[3]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(b[1])}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(b[2], quote=False)}</code></pre>")
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(b[1])}</summary><pre><code>"
                       f"{html.escape(b[3], quote=False)}</code></pre></details>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "samples":
            out.append(f"<p>{_inline(b[1])}</p><ul class=\"samples\">" + "".join(
                f"<li>{html.escape(fam)}: <code>{html.escape(q)}</code> &rarr; <code>{html.escape(a)}</code></li>"
                for fam, q, a in b[2]) + "</ul>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
