"""Length-controlled win rates (harness/judge/length.py): pure functions on constructed verdicts."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness import judge as J
from harness.judge.run import pairwise_summary


def _items(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    len_a = rng.integers(50, 400, size=n)
    len_b = rng.integers(50, 400, size=n)
    return len_a, len_b, rng


def test_length_feature_is_tanh_of_the_standardized_difference():
    d = J.length_feature([10, 20, 30], [20, 20, 20])
    sd = np.std([-10, 0, 10])
    assert d == pytest.approx(np.tanh(np.array([-10, 0, 10]) / sd))
    assert not np.any(J.length_feature([15, 25], [10, 20]))  # every difference the same: no information


def test_fit_logistic_recovers_known_coefficients():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=4000)
    p = 1 / (1 + np.exp(-(0.5 + 2.0 * x)))
    y = (rng.uniform(size=x.size) < p).astype(float)
    beta, cov = J.fit_logistic(x, y)
    assert beta == pytest.approx([0.5, 2.0], abs=0.15)
    assert 0 < cov[0, 0] < 0.01 and 0 < cov[1, 1] < 0.01


def test_length_only_judge_is_flagged():
    """A judge driven by length (P(pick a) = sigmoid(3 * normalized length difference), no quality signal):
    the raw win rate is far above 0.5 only because the adapter writes longer answers; at equal length it is
    a coin flip, and length_explained says so."""
    len_a, len_b, rng = _items(120, seed=1)
    len_a = len_a + 120  # the adapter is longer on most items
    p_a = 1 / (1 + np.exp(-3 * J.length_feature(len_a, len_b)))
    outcomes = [1.0 if u < p else 0.0 for u, p in zip(rng.uniform(size=len(p_a)), p_a)]
    raw = sum(outcomes) / len(outcomes)
    lc = J.length_controlled(outcomes, len_a, len_b)
    assert raw > 0.65 and lc["length_coef"] > 0 and lc["length_p"] < 0.001
    assert lc["lc_win_rate_ci"][0] <= 0.5 <= lc["lc_win_rate_ci"][1]
    results = [{"verdict": "x" if o == 1.0 else "y", "consistent": True} for o in outcomes]
    s = pairwise_summary("run1", "base", results, len_a, len_b)
    assert s["win_rate"] == pytest.approx(raw) and s["win_rate_ci"][0] > 0.5
    assert s["length_explained"] is True


def test_quality_judge_is_not_flagged_and_lc_matches_raw():
    """Verdicts independent of length: the LC win rate stays near the raw one and length explains nothing."""
    len_a, len_b, rng = _items(200, seed=3)
    outcomes = [1.0 if u < 0.75 else 0.0 for u in rng.uniform(size=200)]
    lc = J.length_controlled(outcomes, len_a, len_b)
    raw = sum(outcomes) / len(outcomes)
    assert lc["lc_win_rate"] == pytest.approx(raw, abs=0.03) and lc["length_p"] > 0.05
    results = [{"verdict": "x" if o else "y", "consistent": True} for o in outcomes]
    assert pairwise_summary("a", "b", results, len_a, len_b)["length_explained"] is False


def test_ties_count_half_and_missing_are_left_out():
    outcomes = [1.0, 0.5, None, 0.0, 1.0, None]
    lens = [10, 30, 50, 20, 40, 60]
    lc = J.length_controlled(outcomes, lens, [25] * 6)
    assert lc["n"] == 4
    res = [{"verdict": v, "consistent": v is not None} for v in ("x", "tie", None, "y", "x", None)]
    s = pairwise_summary("a", "b", res, lens, [25] * 6)
    assert s["missing"] == 2 and s["n"] == 6 and s["win_rate"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_separation_stays_finite():
    """Length separates the verdicts perfectly: coefficients stay finite (ridge), no NaN anywhere."""
    lens_a = [100, 200, 300, 50, 60, 70]
    lens_b = [80, 80, 80, 80, 80, 80]
    outcomes = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    lc = J.length_controlled(outcomes, lens_a, lens_b)
    assert all(math.isfinite(v) for v in [lc["lc_win_rate"], lc["length_coef"], *lc["lc_win_rate_ci"]])
    assert lc["length_coef"] > 0


def test_no_judged_items():
    lc = J.length_controlled([None, None], [1, 2], [2, 1])
    assert lc == {"n": 0, "lc_win_rate": None, "lc_win_rate_ci": None, "lc_p": None, "length_coef": None,
                  "length_p": None}
    s = pairwise_summary("a", "b", [{"verdict": None, "consistent": None}] * 2, [1, 2], [2, 1])
    assert s["win_rate"] is None and s["win_rate_ci"] is None and s["missing"] == 2 and not s["length_explained"]


def test_length_explained_rule():
    assert J.length_explained([0.6, 0.8], [0.4, 0.6], 0.01) is True
    assert J.length_explained([0.6, 0.8], [0.4, 0.6], 0.2) is False      # coefficient not significant
    assert J.length_explained([0.4, 0.8], [0.4, 0.6], 0.01) is False     # raw already covers 0.5
    assert J.length_explained([0.6, 0.8], [0.55, 0.7], 0.01) is False    # the adapter still wins at equal length
    assert J.length_explained(None, [0.4, 0.6], 0.01) is False
