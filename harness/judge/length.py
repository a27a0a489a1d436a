"""Length-controlled pairwise win rates (AlpacaEval 2 style), pure functions.

A judge that simply prefers longer answers makes a verbose adapter look better. Per comparison (a vs b):
each judged item's outcome y is 1 (a wins), 0 (b wins) or 0.5 (tie); the feature is the normalized length
difference d = tanh((len_a - len_b) / sd), sd = the standard deviation of len_a - len_b over the items
(characters). A logistic regression P(a wins) = sigmoid(b0 + b1 * d), fitted by IRLS on the fractional
outcomes (quasi-binomial), gives the length-controlled win rate sigmoid(b0): the predicted win rate at length
difference 0. Its CI and the length coefficient's p-value come from the robust (sandwich, HC0) covariance,
which is valid for fractional outcomes. A tiny ridge penalty keeps the fit finite when length separates the
outcomes perfectly. AlpacaEval 2 also has per-instruction terms; with one comparison at a time they cancel.

length_explained: length alone explains the preference: the length coefficient is significant (p < alpha),
the raw win rate's CI excludes 0.5 and the length-controlled one's covers it.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

RIDGE = (1e-6, 1e-3)  # on (intercept, length coefficient): finite under separation, ~no bias on the LC rate
OUTCOME = {"x": 1.0, "y": 0.0, "tie": 0.5}  # a judge verdict for (a=x, b=y) as an outcome for a


def length_feature(len_a: Sequence[float], len_b: Sequence[float]) -> np.ndarray:
    """tanh of the length difference over its standard deviation; zeros when every difference is the same."""
    diff = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    sd = float(diff.std()) if diff.size else 0.0
    return np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, ridge: Sequence[float] = RIDGE, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(coef [b0, b1], robust covariance 2x2) of P(y=1) = sigmoid(b0 + b1 x) for outcomes y in [0, 1]."""
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    penalty = np.diag(np.asarray(ridge, dtype=float))
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        w = np.clip(p * (1 - p), 1e-9, None)
        grad = X.T @ (y - p) - penalty @ beta
        hess = (X * w[:, None]).T @ X + penalty
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-(X @ beta)))
    bread = np.linalg.inv((X * np.clip(p * (1 - p), 1e-9, None)[:, None]).T @ X + penalty)
    meat = (X * ((y - p) ** 2)[:, None]).T @ X
    return beta, bread @ meat @ bread


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def length_controlled(outcomes: Sequence[float | None], len_a: Sequence[float], len_b: Sequence[float], *,
                      alpha: float = 0.05) -> dict:
    """{"n", "lc_win_rate", "lc_win_rate_ci", "lc_p", "length_coef", "length_p"} over items with an outcome (None =
    missing verdict, left out); lc_p is the Wald p of the LC win rate against 0.5. With fewer than 2 items, or no
    variation in length difference, the LC win rate is the raw win rate and its CI, lc_p, length_coef and length_p
    are None (length cannot explain anything: use the raw win rate's CI)."""
    keep = [i for i, o in enumerate(outcomes) if o is not None]
    y = np.asarray([outcomes[i] for i in keep], dtype=float)
    d = length_feature([len_a[i] for i in keep], [len_b[i] for i in keep])
    out = {"n": len(keep), "lc_win_rate": None, "lc_win_rate_ci": None, "lc_p": None, "length_coef": None, "length_p": None}
    if not keep:
        return out
    z = -_normal_ppf(alpha / 2)
    if len(keep) < 2 or not np.any(d):
        out["lc_win_rate"] = float(y.mean())
        return out
    beta, cov = fit_logistic(d, y)
    se0, se1 = (math.sqrt(max(cov[i, i], 0.0)) for i in (0, 1))
    p1 = _wald_p(beta[1], se1)
    out.update(lc_win_rate=_sigmoid(beta[0]), lc_win_rate_ci=[_sigmoid(beta[0] - z * se0), _sigmoid(beta[0] + z * se0)],
               lc_p=_wald_p(beta[0], se0), length_coef=float(beta[1]), length_p=float(p1))
    return out


def _wald_p(coef: float, se: float) -> float:
    """Two-sided Wald p-value of coef = 0 (for the intercept: LC win rate = 0.5)."""
    return float(math.erfc(abs(coef) / se / math.sqrt(2))) if se > 0 else (1.0 if coef == 0 else 0.0)


def length_explained(win_rate_ci: Sequence[float] | None, lc_ci: Sequence[float] | None, length_p: float | None,
                     alpha: float = 0.05) -> bool:
    """True when length alone explains the preference (see module doc)."""
    if win_rate_ci is None or lc_ci is None or length_p is None or length_p >= alpha:
        return False
    raw_excludes = not (win_rate_ci[0] <= 0.5 <= win_rate_ci[1])
    lc_covers = lc_ci[0] <= 0.5 <= lc_ci[1]
    return raw_excludes and lc_covers


def _normal_ppf(q: float) -> float:
    return NormalDist().inv_cdf(q)
