"""Small, pure statistics used by the report and the gate.

Choices (documented once, here):
- Confidence intervals are percentile bootstrap intervals with a fixed seed, so the same inputs
  always give the same numbers (reports are byte-for-byte reproducible).
- paired_bootstrap resamples *items* (the per-sample differences a_i - b_i), which keeps the pairing:
  both models are judged on the same sample_ids. Its two-sided p-value is the null-centred bootstrap
  p-value: the share of resampled mean differences, shifted to mean 0, at least as far from 0 as the
  observed difference, with a +1 correction so it is never exactly 0.
- mcnemar is the test for pass/fail metrics on paired items: exact two-sided binomial test on the
  discordant pairs when there are fewer than 25 of them, otherwise the chi-square statistic with
  continuity correction (1 degree of freedom).
- Sample sizes (mde_paired, n_needed_paired) use the normal approximation for a paired mean difference:
  MDE = (z_{1-alpha/2} + z_power) * sd / sqrt(n), with sd the standard deviation of the per-item
  differences (for pass/fail items sd^2 = share of discordant items - diff^2); when the observed sd is 0
  (too few items to see any disagreement) a conservative sd of 0.5 is assumed.
- welch is Welch's unequal-variance t-test, used across seeds (a handful of per-seed means).
- holm is the Holm-Bonferroni step-down adjustment: it controls the family-wise error rate under any
  dependence between the tests (adapters trained on the same data are far from independent, so
  Benjamini-Hochberg's FDR assumptions would be shakier) and is uniformly more powerful than Bonferroni.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Iterable, Sequence

import numpy as np

EXACT_MCNEMAR_BELOW = 25


def _clean(values: Iterable[float | None]) -> np.ndarray:
    out = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return np.asarray(out, dtype=float)


def bootstrap_ci(values: Sequence[float | None], *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of `values` and its (1-alpha) percentile bootstrap interval.

    None/NaN values are dropped. Empty input gives (nan, nan, nan); one value gives (v, v, v).
    """
    x = _clean(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1 or np.all(x == x[0]):
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (mean, float(lo), float(hi))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, alpha: float = 0.05,
                     seed: int = 0) -> dict:
    """Paired bootstrap of mean(a - b) over items: {"diff", "lo", "hi", "p_value", "n"}.

    `a` and `b` are aligned per sample (same sample_id at the same index); pairs where either side
    is None/NaN are dropped. p_value is two-sided (see module docstring).
    """
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: lengths differ ({len(a)} vs {len(b)})")
    pairs = [(float(x), float(y)) for x, y in zip(a, b)
             if x is not None and y is not None and not math.isnan(float(x)) and not math.isnan(float(y))]
    n = len(pairs)
    if n == 0:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "p_value": math.nan, "n": 0}
    d = np.asarray([x - y for x, y in pairs], dtype=float)
    diff = float(d.mean())
    if n == 1 or np.all(d == d[0]):
        # No variability to resample. One pair is no evidence (p=1); n>=2 identical non-zero
        # differences are as extreme as the bootstrap can see (the +1-corrected minimum).
        p = 1.0 if (diff == 0 or n == 1) else 1.0 / (n_boot + 1)
        return {"diff": diff, "lo": diff, "hi": diff, "p_value": p, "n": n}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    extreme = np.abs(means - diff) >= abs(diff) - 1e-12
    p = (int(extreme.sum()) + 1) / (n_boot + 1)
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p_value": float(min(1.0, p)), "n": n}


def compare_paired(a: dict[str, float | None], b: dict[str, float | None], *, n_boot: int = 2000,
                   alpha: float = 0.05, seed: int = 0) -> dict | None:
    """THE paired comparison of two models' per-item values keyed by sample_id: mean(a - b) with a paired
    bootstrap CI; for pass/fail values McNemar's test supplies the p-value (its discordant counts are kept).
    Items missing or None on either side are left out. None when no item pairs up.
    Returns {"diff", "lo", "hi", "p_value", "n", "test", ["mcnemar", "p_bootstrap"]}."""
    ids = sorted(set(a) & set(b))
    keep = [(a[i], b[i]) for i in ids if a[i] is not None and b[i] is not None
            and not math.isnan(float(a[i])) and not math.isnan(float(b[i]))]
    if not keep:
        return None
    xs, ys = [k[0] for k in keep], [k[1] for k in keep]
    res = paired_bootstrap(xs, ys, n_boot=n_boot, alpha=alpha, seed=seed)
    res["test"] = "paired bootstrap"
    if is_binary(xs) and is_binary(ys):
        mc = mcnemar(xs, ys)
        res["mcnemar"] = mc
        res["p_bootstrap"] = res["p_value"]
        res["p_value"] = mc["p_value"]
        res["test"] = f"McNemar ({mc['method']})"
    return res


def _binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided binomial p-value for k successes out of n at p=0.5 (symmetric case)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test of paired preferences (ties left out, as the sign test does): exact binomial at 0.5."""
    return _binom_two_sided_half(int(wins), int(wins) + int(losses))


def mcnemar(a_pass: Sequence[bool | float], b_pass: Sequence[bool | float]) -> dict:
    """McNemar's test on paired pass/fail outcomes: {"b01", "b10", "statistic", "p_value", "method"}.

    b01 = items a failed and b passed; b10 = items a passed and b failed. Pairs with a None are dropped.
    Exact binomial (statistic = min(b01, b10)) when b01 + b10 < 25, otherwise chi-square with
    continuity correction: (|b01 - b10| - 1)^2 / (b01 + b10).
    """
    if len(a_pass) != len(b_pass):
        raise ValueError(f"mcnemar: lengths differ ({len(a_pass)} vs {len(b_pass)})")
    b01 = b10 = 0
    for x, y in zip(a_pass, b_pass):
        if x is None or y is None:
            continue
        xa, yb = bool(round(float(x))), bool(round(float(y)))
        if not xa and yb:
            b01 += 1
        elif xa and not yb:
            b10 += 1
    n = b01 + b10
    if n < EXACT_MCNEMAR_BELOW:
        return {"b01": b01, "b10": b10, "statistic": float(min(b01, b10)),
                "p_value": _binom_two_sided_half(min(b01, b10), n), "method": "exact"}
    stat = (abs(b01 - b10) - 1) ** 2 / n
    p = math.erfc(math.sqrt(stat / 2.0))  # survival function of chi-square with 1 dof
    return {"b01": b01, "b10": b10, "statistic": float(stat), "p_value": float(p), "method": "chi2_cc"}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order. NaN inputs stay NaN and do not count."""
    ps = [float(p) for p in p_values]
    valid = [i for i, p in enumerate(ps) if not math.isnan(p)]
    m = len(valid)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, i in enumerate(sorted(valid, key=lambda j: (ps[j], j))):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa between two raters' labels on the same items.

    When chance agreement is 1 (both raters always give the same single label), kappa is undefined;
    this returns 1.0 if they agree everywhere (they do) and nan for empty input.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: lengths differ ({len(a)} vs {len(b)})")
    n = len(a)
    if n == 0:
        return math.nan
    po = sum(1 for x, y in zip(a, b) if x == y) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    if pe >= 1.0:
        return 1.0 if po >= 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def is_binary(values: Iterable[float | None]) -> bool:
    """True when every non-null value is 0 or 1 (a pass/fail metric) and there is at least one."""
    seen = False
    for v in values:
        if v is None:
            continue
        if float(v) not in (0.0, 1.0):
            return False
        seen = True
    return seen


DEFAULT_SD = 0.5  # worst case for a pass/fail difference with ~25% discordant items; used when nothing disagrees yet


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def diff_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """Sample standard deviation of the per-item differences a_i - b_i (0.0 for fewer than 2 items)."""
    d = np.asarray([float(x) - float(y) for x, y in zip(a, b)], dtype=float)
    return float(d.std(ddof=1)) if d.size >= 2 else 0.0


def mde_paired(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a paired comparison on n items (two-sided alpha, given power)."""
    if n <= 0:
        return math.inf
    sd = sd if sd > 0 else DEFAULT_SD
    return (_z(1 - alpha / 2) + _z(power)) * sd / math.sqrt(n)


def n_needed_paired(sd: float, effect: float, *, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Paired items needed to detect `effect` (> 0) with the given power; None when effect <= 0."""
    if effect <= 0:
        return None
    sd = sd if sd > 0 else DEFAULT_SD
    return int(math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / effect) ** 2))


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's t-test of mean(a) - mean(b): {"diff", "p_value", "n_a", "n_b"}; p is nan with < 2 values a side."""
    xa, xb = _clean(a), _clean(b)
    out = {"diff": float(xa.mean() - xb.mean()) if xa.size and xb.size else math.nan, "p_value": math.nan,
           "n_a": int(xa.size), "n_b": int(xb.size)}
    if xa.size < 2 or xb.size < 2:
        return out
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    if va + vb == 0:
        out["p_value"] = 1.0 if out["diff"] == 0 else 0.0
        return out
    from scipy.stats import t

    tstat = out["diff"] / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (xa.size - 1) + vb ** 2 / (xb.size - 1))
    out["p_value"] = float(2 * t.sf(abs(tstat), dof))
    return out
