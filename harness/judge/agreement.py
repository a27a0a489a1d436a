"""Agreement of a judge with people, as numbers: Cohen's kappa with a bootstrap CI, how many more labels are
needed, accuracy, position consistency and length bias on labelled pairs, and the reliability rule. Pure
statistics over lists (no file I/O); harness.judge.calibration runs the judge on labels and stores the result.

Kappa's undefined case: when judge and humans together use a single category (e.g. three labels, all "1",
all agreed), chance agreement is 1 and kappa is undefined. harness.stats.cohen_kappa returns 1.0 there; a
calibration must not call that evidence, so this module reports kappa None (and labels_needed) instead.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

from harness.judge.core import pairwise_tally
from harness.judge.labels import PAIR_LABELS
from harness.judge.settings import DEFAULT_MIN_KAPPA
from harness.stats import cohen_kappa

KAPPA_HALF_WIDTH = 0.15   # labels_needed: enough labels to know kappa within +-0.15 (95%)
Z95 = 1.959964


def defined_kappa(judged: Sequence[Hashable], gold: Sequence[Hashable]) -> float | None:
    """harness.stats.cohen_kappa, None when undefined (no items, or one category overall: see module doc)."""
    if not judged or len(set(judged) | set(gold)) < 2:
        return None
    k = cohen_kappa(judged, gold)
    return None if math.isnan(k) else float(k)


def kappa_ci(judged: Sequence[Hashable], gold: Sequence[Hashable], *, n_boot: int = 1000, alpha: float = 0.05,
             seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of kappa over items (fixed seed, like harness.stats); resamples where kappa
    is undefined are left out. None when fewer than half of the resamples are defined."""
    n = len(judged)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    j, g = list(judged), list(gold)
    ks = []
    for idx in rng.integers(0, n, size=(n_boot, n)):
        k = defined_kappa([j[i] for i in idx], [g[i] for i in idx])
        if k is not None:
            ks.append(k)
    if len(ks) < n_boot / 2:
        return None
    lo, hi = np.quantile(np.asarray(ks), [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def labels_needed(judged: Sequence[Hashable], gold: Sequence[Hashable], ci: Sequence[float] | None,
                  half_width: float = KAPPA_HALF_WIDTH) -> int:
    """More labels needed until kappa's 95% CI is within +-half_width: the larger of two estimates,
    (1) the bootstrap CI's half-width shrinking like 1/sqrt(n), and (2) the large-sample standard error
    sqrt(po(1-po)/n)/(1-pe) with po smoothed to (agree+1)/(n+2) so a few perfect agreements are not
    taken for certainty (pe capped at 0.9, and 0.5 when undefined)."""
    n = len(judged)
    agree = sum(x == y for x, y in zip(judged, gold))
    po = (agree + 1) / (n + 2)
    cats = set(judged) | set(gold)
    pe = sum((sum(x == c for x in judged) / n) * (sum(y == c for y in gold) / n) for c in cats) if n else 0.5
    pe = 0.5 if pe >= 1.0 else min(pe, 0.9)
    need = (Z95 * math.sqrt(po * (1 - po)) / ((1 - pe) * half_width)) ** 2
    if ci is not None:
        need = max(need, n * ((ci[1] - ci[0]) / 2 / half_width) ** 2)
    return max(0, math.ceil(need) - n)


def calibration_metrics(items: Sequence[dict], results: Sequence[dict], min_kappa: float = DEFAULT_MIN_KAPPA) -> dict:
    """Judge verdicts vs human pairwise labels (x = output_1, y = output_2).

    Categories are 1, 2 and "tie" for both the judge and the people (label 0 = tie). A missing verdict
    (unparseable after retries in either order) counts as "tie" for accuracy and kappa (no credit for
    failing) and is reported as `missing`. Position consistency: share of items with both orders parsed
    whose verdicts survive the swap. Length bias: among items whose human winner is strictly shorter
    (characters), the share where the judge picked the longer answer; None if no such item.
    reliable: kappa >= min_kappa and the lower end of its 95% CI above 0 (better than chance, with evidence).
    """
    gold = [PAIR_LABELS[it["label"]] for it in items]
    judged = [1 if r["verdict"] == "x" else 2 if r["verdict"] == "y" else "tie" for r in results]
    n = len(items)
    kappa = defined_kappa(judged, gold)
    ci = kappa_ci(judged, gold) if kappa is not None else None
    tally = pairwise_tally(results)
    short_gold = []
    for it, j, g in zip(items, judged, gold):
        l1, l2 = len(it["output_1"]), len(it["output_2"])
        if g == "tie" or l1 == l2:
            continue
        if (l1 < l2) == (g == 1):  # the human winner is the shorter one
            short_gold.append(j == (2 if g == 1 else 1))
    return {
        "n": n,
        "accuracy": sum(g == j for g, j in zip(gold, judged)) / n if n else None,
        "kappa": kappa,
        "kappa_ci": ci,
        "labels_needed": labels_needed(judged, gold, ci) if n else None,
        "position_consistency": tally["position_consistency"],
        "length_bias": (sum(short_gold) / len(short_gold)) if short_gold else None,
        "length_bias_n": len(short_gold),
        "missing": tally["missing"],
        "ties": sum(j == "tie" for j in judged),
        "human_ties": sum(g == "tie" for g in gold),
        "min_kappa": min_kappa,
        "reliable": is_reliable(kappa, ci, min_kappa),
    }


def is_reliable(kappa: float | None, ci: Sequence[float] | None, min_kappa: float) -> bool:
    return kappa is not None and kappa >= min_kappa and ci is not None and ci[0] > 0


def pointwise_metrics(human: Sequence[int], judge: Sequence[int | None]) -> dict:
    """A person's 1-5 scores vs the judge's: exact agreement, within one point, kappa over the score values
    (a missing judge score is its own category: no credit), mean absolute error over the judged ones."""
    n = len(human)
    cat = ["missing" if s is None else s for s in judge]
    judged = [(h, s) for h, s in zip(human, judge) if s is not None]
    kappa = defined_kappa(cat, list(human))
    return {"n": n, "missing": n - len(judged),
            "exact": sum(h == s for h, s in judged) / n if n else None,
            "within_1": sum(abs(h - s) <= 1 for h, s in judged) / n if n else None,
            "kappa": kappa, "kappa_ci": kappa_ci(cat, list(human)) if kappa is not None else None,
            "mae": sum(abs(h - s) for h, s in judged) / len(judged) if judged else None}
