"""The numbers behind the decision, computed once: score tables, CIs, paired comparisons, forgetting as
non-inferiority, form vs knowledge items, backend errors, sample sizes, seed spread. Pure functions of
the per-item score rows and run facts; no I/O (harness.report.load reads the files).

`analyze(rows, runs, settings, judge=None) -> Analysis`. The decision (harness.decision), the report and
the gate all read the same Analysis object, so every comparison has exactly one verdict everywhere.

Statistical choices (the formulas live in harness.stats):
- every mean gets a (1 - alpha) percentile-bootstrap CI over items;
- a comparison of two models is paired on sample_id: bootstrap CI of the mean difference; for pass/fail
  metrics McNemar's test gives the p-value. `better` = p < alpha AND CI above 0; `worse` the mirror;
  otherwise `no difference shown`;
- the chosen adapter is picked on the validation split, so its comparisons with the baselines are single
  pre-specified tests (no multiplicity correction); every other adapter's comparisons are exploratory and
  Holm-adjusted over those adapters. When the choice had to use the eval items (no validation signal), the
  chosen adapter is Holm-adjusted with the rest and the selection is marked biased;
- forgetting, per probe family: `pass` when the CI's lower bound of (adapter - base) is above -margin,
  `fail` when the drop is significant and its point estimate beyond the margin, else `inconclusive` (with the
  number of probes that would settle it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.metrics import FORMAT_DEVIATIONS
from harness.runs import display_name
from harness.stats import bootstrap_ci, compare_paired, diff_sd, holm, mde_paired, n_needed_paired, welch

BASE, FEWSHOT, RELEASED = "base", "fewshot", "released"
BASELINES = (BASE, FEWSHOT, RELEASED)
BETTER, WORSE, NO_DIFF = "better", "worse", "no difference shown"
MC_SUFFIX = "-mc"  # a multiple-choice probe family is its generated family's name + this ("general-mc")


@dataclass(frozen=True)
class Settings:
    """Everything that turns numbers into verdicts. One copy per sweep (sweep.json `decision`), shared by
    report and gate; CLI flags and the gate config may override `target` (said where it is shown)."""
    alpha: float = 0.05            # two-sided significance level; CIs are (1 - alpha)
    margin: float = 0.10           # forgetting: largest acceptable drop on a probe family (non-inferiority)
    max_bleed: float = 0.02        # forgetting: largest acceptable excess share of probes answered in the task's form
    min_items: int = 20            # fewer paired eval items than this cannot support any decision
    min_effect: float = 0.10       # smallest gain on the primary metric worth acting on
    max_error_rate: float = 0.05   # above this share of backend errors, a model's comparison is unusable
    max_judge_missing: float = 0.10  # above this share of missing judge verdicts, judge numbers are unusable
    min_judge_consistency: float = 0.7  # a judge whose verdicts survive an order swap less often cannot decide
    power: float = 0.8             # for minimum detectable effects and items-needed estimates
    min_events: int = 5            # a metric is compared only when at least this many items tell models apart
    target: float | None = None    # acceptance level of the primary metric (task.yaml `target`)
    target_source: str | None = None  # "task" | "gate" | "command line"
    select_by: str = "val_loss"    # how the winner is chosen: val_loss | a task metric scored on the val split
    n_boot: int = 2000
    seed: int = 0


@dataclass
class Interval:
    mean: float
    lo: float
    hi: float
    n: int


@dataclass
class Comparison:
    a: str
    b: str
    metric: str
    diff: float
    lo: float
    hi: float
    p_value: float
    test: str
    n: int
    sd: float
    a_only: int | None = None      # pass/fail metrics: items a passes and b fails
    b_only: int | None = None      # ... and the other way round (the discordant pairs McNemar counts)
    p_adjusted: float | None = None  # Holm-adjusted p when the comparison is one of many (exploratory)
    adjusted_over: int = 1
    verdict: str = NO_DIFF

    @property
    def p(self) -> float:
        """The p-value the verdict used."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted


@dataclass
class Forgetting:
    family: str
    comparison: Comparison | None
    status: str                    # pass | fail | inconclusive
    probes_needed: int | None = None
    base_mean: float | None = None


@dataclass
class Bleed:
    """Format bleed of one model vs base: probe answers given in the task's output form though not asked for it
    (harness.bleed). `status` "bleeds" when the excess over base, rate.mean - base_rate.mean, is above max_bleed."""
    rate: Interval
    base_rate: Interval | None
    comparison: Comparison | None  # model - base on the same probes (a positive diff is more bleed)
    count: int
    n: int
    base_count: int
    families: dict[str, tuple[int, int, int]]  # family -> (model's bleeding answers, base's, probes measured)
    examples: list[dict]           # first bleeding answers of each family: family, sample_id, prompt, output
    status: str                    # bleeds | clean

    @property
    def excess(self) -> float:
        return self.rate.mean - (self.base_rate.mean if self.base_rate is not None else 0.0)


@dataclass
class RunView:
    run_id: str
    name: str
    status: str                    # complete | failed | incomplete | pruned
    hparams: dict
    best_val_loss: float | None = None
    improved: bool | None = None
    curves: dict = field(default_factory=dict)
    seed: int | None = None
    config_id: str | None = None
    error: str | None = None


@dataclass
class Selection:
    chosen: str | None
    method: str                    # "val_loss" | "val:<metric>" | "eval:<metric> (biased)" | "only adapter"
    unbiased: bool
    values: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # run_id -> why it could not be chosen


@dataclass
class ModelStats:
    kind: str                      # baseline | adapter
    n: int                         # eval items with a row
    errors: int
    error_rate: float
    error_examples: list[tuple[str, str]]  # (sample_id, error message), first few
    metrics: dict[str, Interval]
    probes: dict[str, Interval]
    knowledge: dict[str, Interval]  # "form" / "knowledge" on the primary metric, when items are marked


@dataclass
class SeedSpread:
    config_id: str
    name: str
    runs: list[str]
    values: list[float]            # primary metric on the eval items, one per seed
    mean: float
    sd: float


@dataclass
class Analysis:
    settings: Settings
    primary: str | None
    metrics: list[str]             # task metrics, primary first
    compared_metrics: list[str]    # metrics with enough varying items to compare
    rare_metrics: list[str]        # seen on too few items to mean anything
    families: list[str]
    models: dict[str, ModelStats]
    adapters: list[str]            # scored adapters (run ids)
    baselines: list[str]
    runs: dict[str, RunView]
    selection: Selection
    comparisons: dict[str, dict[str, dict[str, Comparison]]]  # ref -> adapter -> metric -> Comparison
    baseline_comparisons: dict[str, Comparison]  # "fewshot_vs_base" on the primary metric
    forgetting: dict[str, dict[str, Forgetting]]  # adapter -> family (and "all") -> result
    bleed: dict[str, Bleed]        # model (not base) -> format bleed vs base; absent when not measurable
    drift: dict[str, dict[str, Interval]]  # adapter -> family (and "all") -> mean per-token KL(base || adapter)
    knowledge: dict[str, dict[str, Comparison | None]]  # adapter -> form|knowledge -> vs base, primary
    seeds: list[SeedSpread]
    seed_test: dict | None         # chosen config vs runner-up across seeds
    judge: dict | None
    n_items: int                   # eval items the chosen adapter and base share

    def comparison(self, a: str, ref: str, metric: str | None = None) -> Comparison | None:
        return self.comparisons.get(ref, {}).get(a, {}).get(metric or self.primary)

    def name(self, model: str) -> str:
        """What a person reads: base / few-shot / the adapter's hyperparameters."""
        if model in self.runs:
            return self.runs[model].name
        return {BASE: "base", FEWSHOT: "few-shot", RELEASED: "released"}.get(model, model)


# ------------------------------------------------------------------------------------------- score table

def metric_value(v: Any) -> float | None:
    """A metric value as float; None for missing, non-numeric, NaN or infinite (json.loads reads NaN and Infinity
    from a score file; one rule for analysis, report and review)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def probe_value(metrics: dict) -> float | None:
    """A probe row's pass value: `pass` (or `score`), else the single metric it has (`bleed` is no pass value)."""
    for k in ("pass", "score"):
        if k in metrics and metric_value(metrics[k]) is not None:
            return metric_value(metrics[k])
    vals = [metric_value(v) for k, v in metrics.items() if k != "bleed" and metric_value(v) is not None]
    return vals[0] if len(vals) == 1 else (sum(vals) / len(vals) if vals else None)


@dataclass
class ScoreTable:
    """Per-item values: split -> model -> metric (or probe family) -> sample_id -> value (None = no value)."""
    task: dict[str, dict[str, dict[str, float | None]]]
    val: dict[str, dict[str, dict[str, float | None]]]
    probes: dict[str, dict[str, dict[str, float | None]]]
    knowledge: dict[str, bool]     # sample_id -> needs knowledge
    errors: dict[str, dict[str, str]]  # model -> sample_id -> error message (task split)
    metrics: list[str]
    bleed: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)  # model -> family -> id -> 0/1
    bled: dict[str, list[dict]] = field(default_factory=dict)  # model -> bleeding probe answers (prompt, output)


def score_table(rows: list[dict]) -> ScoreTable:
    """Index scores.jsonl rows. A row with an `error` (or finish_reason "error") has no values: it counts
    as an error of its model, never as a wrong answer."""
    t = ScoreTable({}, {}, {}, {}, {}, [])
    names: set[str] = set()
    for r in rows:
        split = r.get("split") or "task"
        model, sid = str(r["model"]), str(r["sample_id"])
        err = r.get("error") or ("backend error" if r.get("finish_reason") == "error" else None)
        metrics = r.get("metrics") or {}
        if split in ("probe", "mc"):  # mc: multiple-choice probes scored by likelihood, a family of their own
            fam = (r.get("family") or "probe") + (MC_SUFFIX if split == "mc" else "")
            t.probes.setdefault(model, {}).setdefault(fam, {})[sid] = None if err else probe_value(metrics)
            b = None if err else metric_value(metrics.get("bleed"))
            if b is not None:
                t.bleed.setdefault(model, {}).setdefault(fam, {})[sid] = b
                if b:
                    t.bled.setdefault(model, []).append({"family": fam, "sample_id": sid, "output": r.get("output"),
                                                         "prompt": _last_user(r.get("prompt"))})
            continue
        target = t.task if split == "task" else t.val if split == "val" else None
        if target is None:
            continue
        per = target.setdefault(model, {})
        for k, v in metrics.items():
            if split == "task":
                names.add(k)
            per.setdefault(k, {})[sid] = None if err else metric_value(v)
        if split == "task":
            per.setdefault("__items__", {})[sid] = None
            t.knowledge[sid] = bool(r.get("knowledge"))
            if err:
                t.errors.setdefault(model, {})[sid] = str(err)
    t.metrics = sorted(names)
    return t


def _last_user(prompt: Any) -> str:
    """The last user message of a row's prompt (chat messages), or the prompt itself when it is text."""
    if isinstance(prompt, list):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return str(prompt or "")


# ------------------------------------------------------------------------------------------------ pieces

def interval(values: list[float | None], s: Settings) -> Interval:
    mean, lo, hi = bootstrap_ci(values, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed)
    return Interval(mean, lo, hi, sum(1 for v in values if v is not None))


def compare(a_name: str, b_name: str, metric: str, a: dict[str, float | None], b: dict[str, float | None],
            s: Settings) -> Comparison | None:
    """Paired comparison of model a against b on the items both have (verdict set without adjustment)."""
    res = compare_paired(a, b, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed)
    if res is None:
        return None
    ids = [i for i in sorted(set(a) & set(b)) if a[i] is not None and b[i] is not None]
    mc = res.get("mcnemar")
    c = Comparison(a_name, b_name, metric, res["diff"], res["lo"], res["hi"], res["p_value"], res["test"], res["n"],
                   diff_sd([a[i] for i in ids], [b[i] for i in ids]),
                   a_only=mc["b10"] if mc else None, b_only=mc["b01"] if mc else None)
    set_verdict(c, s.alpha)
    return c


def set_verdict(c: Comparison, alpha: float) -> None:
    p = c.p
    if p < alpha and c.lo > 0:
        c.verdict = BETTER
    elif p < alpha and c.hi < 0:
        c.verdict = WORSE
    else:
        c.verdict = NO_DIFF


def forgetting_status(c: Comparison | None, margin: float, s: Settings) -> tuple[str, int | None]:
    """Non-inferiority of an adapter against base on one probe family (see the module docstring)."""
    if c is None:
        return "inconclusive", None
    if c.lo > -margin:
        return "pass", None
    if c.verdict == WORSE and c.diff < -margin:
        return "fail", None
    # how many probes would settle it if the true change were what we observed: enough to put the CI's lower
    # bound above -margin, or (a drop already beyond the margin) enough to show the drop is real
    room = margin + c.diff
    need = n_needed_paired(c.sd, room if room > 0 else -c.diff, alpha=s.alpha, power=s.power)
    return "inconclusive", need


def _varying_items(table: ScoreTable, metric: str, models: list[str]) -> int:
    """Items on which the models do not all give the metric's most common value."""
    cols = [table.task.get(m, {}).get(metric, {}) for m in models]
    values = [v for col in cols for v in col.values() if v is not None]
    if not values:
        return 0
    mode = max(set(values), key=values.count)
    ids = set().union(*[set(c) for c in cols])
    return sum(1 for i in ids if any(c.get(i) is not None and c.get(i) != mode for c in cols))


# ------------------------------------------------------------------------------------------------ select

def select(adapters: list[str], runs: dict[str, RunView], table: ScoreTable, s: Settings) -> Selection:
    """Choose the adapter to ship on the validation split, never on the eval items that then test it."""
    excluded: dict[str, str] = {}
    cands = []
    for a in adapters:
        rv = runs.get(a)
        if rv is not None and rv.improved is False:
            excluded[a] = "did not learn: validation loss never improved (the adapter equals the base model)"
        else:
            cands.append(a)
    if not cands:
        return Selection(None, "none", True, excluded=excluded)
    if len(cands) == 1:
        return Selection(cands[0], "only adapter", True, excluded=excluded)
    if s.select_by != "val_loss":
        vals = {a: interval(list(table.val.get(a, {}).get(s.select_by, {}).values()), s).mean for a in cands}
        vals = {a: v for a, v in vals.items() if not math.isnan(v)}
        if len(vals) == len(cands):
            loss = {a: runs[a].best_val_loss if a in runs and runs[a].best_val_loss is not None else math.inf
                    for a in cands}
            best = min(cands, key=lambda a: (-vals[a], loss[a], a))
            return Selection(best, f"val:{s.select_by}", True, vals, excluded)
    loss = {a: runs[a].best_val_loss for a in cands if a in runs and runs[a].best_val_loss is not None}
    if len(loss) == len(cands):
        # with seeds, a configuration is judged by its mean validation loss; its best seed is shipped
        by_cfg: dict[str, list[str]] = {}
        for a in cands:
            by_cfg.setdefault(runs[a].config_id or a, []).append(a)
        cfg_loss = {c: sum(loss[a] for a in rs) / len(rs) for c, rs in by_cfg.items()}
        best_cfg = min(cfg_loss, key=lambda c: (cfg_loss[c], c))
        best = min(by_cfg[best_cfg], key=lambda a: (loss[a], a))
        return Selection(best, "val_loss", True, loss, excluded)
    # no validation signal: the eval items decide, which makes the winner's numbers optimistic
    primary = table.metrics[0] if table.metrics else None
    vals = {a: interval(list(table.task.get(a, {}).get(primary, {}).values()), s).mean for a in cands}
    best = max(cands, key=lambda a: (-math.inf if math.isnan(vals[a]) else vals[a], a))
    return Selection(best, f"eval:{primary} (biased)", False, vals, excluded)


# ----------------------------------------------------------------------------------------------- analyze

def analyze(rows: list[dict], runs: list[RunView], s: Settings, *, primary: str | None = None,
            judge: dict | None = None, swept: list[str] | None = None, drift: dict | None = None) -> Analysis:
    table = score_table(rows)
    metrics = list(table.metrics)
    if primary not in metrics:
        primary = metrics[0] if metrics else primary
    if primary in metrics:
        metrics = [primary] + [m for m in metrics if m != primary]
    table.metrics = metrics
    run_by_id = {r.run_id: r for r in runs}
    for rv in runs:  # names from the swept axes, so two runs never share one (all of them for a single point)
        rv.name = rv.name or display_name(rv.hparams, swept or None)
    in_rows = sorted(set(table.task))
    adapters = sorted(m for m in in_rows if m not in BASELINES)
    baselines = [b for b in BASELINES if b in in_rows]

    models = {m: _model_stats(m, table, primary, s) for m in in_rows}
    sel = select(adapters, run_by_id, table, s)
    compared = [m for m in metrics if m == primary or _varying_items(table, m, in_rows) >= s.min_events]
    rare = [m for m in metrics if m not in compared]

    comparisons: dict[str, dict[str, dict[str, Comparison]]] = {}
    for ref in baselines:
        per: dict[str, dict[str, Comparison]] = {a: {} for a in adapters}
        for metric in compared:
            for a in adapters:
                c = compare(a, ref, metric, table.task[a].get(metric, {}), table.task[ref].get(metric, {}), s)
                if c is not None:
                    per[a][metric] = c
            # exploratory comparisons are adjusted together; the validation-chosen one stands alone
            family = [a for a in adapters if metric in per[a] and not (a == sel.chosen and sel.unbiased)]
            for a, p in zip(family, holm([per[a][metric].p_value for a in family])):
                per[a][metric].p_adjusted, per[a][metric].adjusted_over = p, len(family)
                set_verdict(per[a][metric], s.alpha)
        comparisons[ref] = per
    base_cmp = {}
    if BASE in table.task and FEWSHOT in table.task and primary:
        c = compare(FEWSHOT, BASE, primary, table.task[FEWSHOT].get(primary, {}), table.task[BASE].get(primary, {}), s)
        if c:
            base_cmp["fewshot_vs_base"] = c

    forgetting: dict[str, dict[str, Forgetting]] = {}
    families = sorted({f for per in table.probes.values() for f in per})
    if BASE in table.probes:
        for m in [x for x in sorted(table.probes) if x != BASE]:
            out = {}
            for f in families + ["all"]:
                if f == "all":
                    a = {f"{g}/{k}": v for g in families for k, v in table.probes[m].get(g, {}).items()}
                    b = {f"{g}/{k}": v for g in families for k, v in table.probes[BASE].get(g, {}).items()}
                else:
                    a, b = table.probes[m].get(f, {}), table.probes[BASE].get(f, {})
                if not a or not b:
                    continue
                c = compare(m, BASE, f"probe:{f}", a, b, s)
                status, need = forgetting_status(c, s.margin, s)
                out[f] = Forgetting(f, c, status, need, interval(list(b.values()), s).mean)
            forgetting[m] = out

    bleed = {m: b for m in sorted(table.bleed) if m != BASE and (b := _bleed(m, table, s)) is not None}

    knowledge: dict[str, dict[str, Comparison | None]] = {}
    if BASE in table.task and primary and any(table.knowledge.values()):
        for a in adapters + ([FEWSHOT] if FEWSHOT in table.task else []):
            per_k = {}
            for part, want in (("form", False), ("knowledge", True)):
                av = {i: v for i, v in table.task[a].get(primary, {}).items() if table.knowledge.get(i) is want}
                bv = {i: v for i, v in table.task[BASE].get(primary, {}).items() if table.knowledge.get(i) is want}
                per_k[part] = compare(a, BASE, primary, av, bv, s) if av and bv else None
            knowledge[a] = per_k

    seeds, seed_test = _seed_spread(adapters, run_by_id, table, primary, sel)
    n_items = 0
    if sel.chosen and BASE in table.task and primary:
        c = comparisons.get(BASE, {}).get(sel.chosen, {}).get(primary)
        n_items = c.n if c else 0
    elif BASE in models:
        n_items = models[BASE].n - models[BASE].errors
    return Analysis(s, primary, metrics, compared, rare, families, models, adapters, baselines, run_by_id, sel,
                    comparisons, base_cmp, forgetting, bleed, drift_view(drift), knowledge, seeds, seed_test, judge_view(judge, s), n_items)


def drift_view(drift: dict | None) -> dict[str, dict[str, Interval]]:
    """drift.json's per-adapter KL (harness.likelihood) as Intervals: adapter -> family (and "all")."""
    out: dict[str, dict[str, Interval]] = {}
    for a, per in (drift or {}).items():
        if not isinstance(per, dict):
            continue
        fams = dict(per.get("families") or {}, **({"all": per["all"]} if isinstance(per.get("all"), dict) else {}))
        out[str(a)] = {str(f): Interval(*(metric_value(v.get(k)) if metric_value(v.get(k)) is not None else math.nan
                                          for k in ("mean", "lo", "hi")), int(v.get("n") or 0))
                       for f, v in fams.items() if isinstance(v, dict)}
    return out


def _per_family(rows: list[dict], k: int = 2) -> list[dict]:
    """The first k bleeding answers of each family (so every family that bleeds has an example to show)."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        seen[r["family"]] = seen.get(r["family"], 0) + 1
        if seen[r["family"]] <= k:
            out.append(r)
    return out


def _bleed(m: str, table: ScoreTable, s: Settings) -> Bleed | None:
    """Model m's format bleed against base on the probes both answered (None when bleed was not measured)."""
    mine, base = table.bleed.get(m, {}), table.bleed.get(BASE, {})
    a = {f"{f}/{i}": v for f, per in mine.items() for i, v in per.items()}
    if not a:
        return None
    b = {f"{f}/{i}": v for f, per in base.items() for i, v in per.items()}
    c = compare(m, BASE, "bleed", a, b, s) if b else None
    fams = {f: (int(sum(v for v in per.values() if v)), int(sum(v for v in base.get(f, {}).values() if v)), len(per))
            for f, per in sorted(mine.items())}
    out = Bleed(interval(list(a.values()), s), interval(list(b.values()), s) if b else None, c,
                int(sum(a.values())), len(a), int(sum(v for v in b.values() if v)), fams, _per_family(table.bled.get(m, [])),
                "clean")
    out.status = "bleeds" if out.excess > s.max_bleed else "clean"
    return out


def _model_stats(m: str, table: ScoreTable, primary: str | None, s: Settings) -> ModelStats:
    per = table.task.get(m, {})
    items = per.get("__items__", {})
    errs = table.errors.get(m, {})
    n = len(items)
    know = {}
    if primary and any(table.knowledge.values()):
        vals = per.get(primary, {})
        know = {"form": interval([v for i, v in vals.items() if not table.knowledge.get(i)], s),
                "knowledge": interval([v for i, v in vals.items() if table.knowledge.get(i)], s)}
    return ModelStats(
        kind="baseline" if m in BASELINES else "adapter", n=n, errors=len(errs),
        error_rate=len(errs) / n if n else 0.0, error_examples=sorted(errs.items())[:5],
        metrics={k: interval(list(per.get(k, {}).values()), s) for k in table.metrics},
        probes={f: interval(list(v.values()), s) for f, v in sorted(table.probes.get(m, {}).items())},
        knowledge=know)


def _seed_spread(adapters: list[str], runs: dict[str, RunView], table: ScoreTable, primary: str | None,
                 sel: Selection) -> tuple[list[SeedSpread], dict | None]:
    """Per configuration (same hyperparameters, different seeds): the primary metric's spread across seeds,
    and whether the chosen configuration is distinguishable from the runner-up across seeds (Welch)."""
    groups: dict[str, list[str]] = {}
    for a in adapters:
        rv = runs.get(a)
        if rv is not None and rv.config_id:
            groups.setdefault(rv.config_id, []).append(a)
    if not primary or not any(len(v) > 1 for v in groups.values()):
        return [], None
    spreads = []
    for cid, rs in sorted(groups.items()):
        vals = [v for v in (_mean(table.task[a].get(primary, {}).values()) for a in rs) if v is not None]
        mean = sum(vals) / len(vals) if vals else math.nan
        sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
        hp = {k: v for k, v in runs[rs[0]].hparams.items() if k != "seed"}
        spreads.append(SeedSpread(cid, display_name(hp), sorted(rs), vals, mean, sd))
    test = None
    chosen_cfg = runs[sel.chosen].config_id if sel.chosen in runs else None
    others = [sp for sp in spreads if sp.config_id != chosen_cfg and len(sp.values) > 1]
    mine = next((sp for sp in spreads if sp.config_id == chosen_cfg), None)
    if mine and len(mine.values) > 1 and others:
        # the runner-up is the other configuration with the lowest mean validation loss
        def cfg_loss(sp: SeedSpread) -> float:
            ls = [runs[a].best_val_loss for a in sp.runs if runs[a].best_val_loss is not None]
            return sum(ls) / len(ls) if ls else math.inf
        ru = min(others, key=lambda sp: (cfg_loss(sp), sp.config_id))
        w = welch(mine.values, ru.values)
        test = {"chosen": mine.name, "runner_up": ru.name, "diff": w["diff"], "p_value": w["p_value"],
                "n_seeds": [w["n_a"], w["n_b"]]}
    return spreads, test


def _mean(values) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def judge_view(js: dict | None, s: Settings) -> dict | None:
    """The judge summary as the decision reads it: status, calibration and whether its numbers are usable."""
    if not isinstance(js, dict):
        return None
    calib = js.get("calibration") if isinstance(js.get("calibration"), dict) else None
    pointwise = js.get("pointwise") or {}
    pairwise = js.get("pairwise") or []
    missing = [(k, v.get("missing", 0), v.get("n", 0)) for k, v in pointwise.items() if isinstance(v, dict)]
    missing += [(f"{p.get('a')} vs {p.get('b')}", p.get("missing", 0), p.get("n", 0)) for p in pairwise]
    # `n` counts every item asked, missing ones included
    too_many = [k for k, miss, n in missing if (miss or 0) > s.max_judge_missing * max(1, n or 0)]
    return {"status": js.get("status", "ok"), "error": js.get("error"), "judge_model": js.get("judge_model"),
            "rubric": js.get("rubric"), "calibration": calib,
            "reliable": bool(calib and calib.get("reliable") is True),
            "calibration_source": (calib or {}).get("source") or ("generic" if calib else None),
            "pointwise": pointwise, "pairwise": pairwise, "too_many_missing": too_many}


def sample_size(an: Analysis, ref: str) -> dict:
    """Minimum detectable effect of the chosen adapter vs `ref` at this n, and items needed for min_effect."""
    s = an.settings
    c = an.comparison(an.selection.chosen, ref) if an.selection.chosen else None
    n = c.n if c else an.n_items
    sd = c.sd if c else 0.0
    return {"n": n, "mde": mde_paired(sd, n, alpha=s.alpha, power=s.power),
            "items_needed": n_needed_paired(sd, s.min_effect, alpha=s.alpha, power=s.power)}


def form_gains(an: Analysis, a: str, ref: str) -> dict[str, Comparison]:
    """Other metrics (not the primary, not format deviations) on which `a` beats `ref` with confidence."""
    return {m: c for m, c in (an.comparisons.get(ref, {}).get(a) or {}).items()
            if m != an.primary and m not in FORMAT_DEVIATIONS and c.verdict == BETTER}
