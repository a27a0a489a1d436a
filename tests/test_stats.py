"""Hand-computed cases for harness.stats."""
from __future__ import annotations

import math

import pytest

from harness.stats import bootstrap_ci, cohen_kappa, holm, is_binary, mcnemar, paired_bootstrap


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    vals = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1] * 5  # mean 0.7
    m, lo, hi = bootstrap_ci(vals, seed=0)
    assert m == pytest.approx(0.7)
    assert lo < 0.7 < hi
    # binomial SE = sqrt(.7*.3/50) = 0.0648 -> 95% CI about +-0.127
    assert hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.21 / 50), abs=0.04)
    assert bootstrap_ci(vals, seed=0) == (m, lo, hi)


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([1, None, 0])[0] == 0.5


def test_paired_bootstrap_known_difference():
    # a is b plus exactly 0.1 on every item, except noise that averages to zero.
    b = [0.2, 0.5, 0.3, 0.8, 0.6, 0.4, 0.7, 0.1] * 5
    noise = [0.02, -0.02] * 20
    a = [x + 0.1 + e for x, e in zip(b, noise)]
    r = paired_bootstrap(a, b, seed=0)
    assert r["n"] == 40
    assert r["diff"] == pytest.approx(0.1)
    assert r["lo"] > 0.09 and r["hi"] < 0.11
    assert r["p_value"] < 0.001


def test_paired_bootstrap_identical_models():
    a = [0, 1, 1, 0, 1, 0.5, 0.25] * 6
    r = paired_bootstrap(a, list(a))
    assert r["diff"] == 0 and r["lo"] == 0 and r["hi"] == 0
    assert r["p_value"] == 1.0


def test_paired_bootstrap_noise_not_significant():
    a = [1, 0, 1, 0, 1, 0, 1, 0] * 4
    b = [0, 1, 1, 0, 0, 1, 1, 0] * 4  # same mean, different items
    r = paired_bootstrap(a, b)
    assert r["diff"] == 0
    assert r["lo"] < 0 < r["hi"]
    assert r["p_value"] > 0.5


def test_paired_bootstrap_drops_none_pairs_and_checks_length():
    r = paired_bootstrap([1, None, 1], [0, 1, None])
    assert r["n"] == 1 and r["diff"] == 1 and r["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 2])


def test_mcnemar_exact_hand_counted():
    # 10 items: a fails & b passes on 1 item, a passes & b fails on 6 items, rest concordant.
    a = [1, 1, 1, 1, 1, 1, 0, 1, 0, 1]
    b = [0, 0, 0, 0, 0, 0, 1, 1, 0, 1]
    r = mcnemar(a, b)
    assert (r["b01"], r["b10"]) == (1, 6)
    assert r["method"] == "exact"
    # by hand: 2 * (C(7,0)+C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125
    assert r["p_value"] == pytest.approx(0.125)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert r["p_value"] == pytest.approx(scipy_stats.binomtest(1, 7, 0.5).pvalue)


@pytest.mark.parametrize("b01,b10", [(0, 0), (0, 5), (3, 3), (2, 12), (10, 14)])
def test_mcnemar_exact_matches_scipy(b01, b10):
    scipy_stats = pytest.importorskip("scipy.stats")
    a = [0] * b01 + [1] * b10 + [1] * 7 + [0] * 4
    b = [1] * b01 + [0] * b10 + [1] * 7 + [0] * 4
    r = mcnemar(a, b)
    assert (r["b01"], r["b10"]) == (b01, b10)
    expected = 1.0 if b01 + b10 == 0 else scipy_stats.binomtest(b01, b01 + b10, 0.5).pvalue
    assert r["p_value"] == pytest.approx(expected)


def test_mcnemar_chi2_with_continuity_correction():
    # b01=10, b10=30: (|10-30|-1)^2/40 = 361/40 = 9.025; p = chi2.sf(9.025, 1)
    a = [0] * 10 + [1] * 30 + [1] * 20
    b = [1] * 10 + [0] * 30 + [1] * 20
    r = mcnemar(a, b)
    assert r["method"] == "chi2_cc"
    assert r["statistic"] == pytest.approx(9.025)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert r["p_value"] == pytest.approx(scipy_stats.chi2.sf(9.025, 1))


def test_holm_textbook_example():
    # Classic example: p = (0.01, 0.04, 0.03, 0.005), m = 4
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max -> 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan():
    adj = holm([0.5, 0.9, math.nan])
    assert adj[0] == pytest.approx(1.0) and adj[1] == pytest.approx(1.0)
    assert math.isnan(adj[2])
    assert holm([]) == []
    assert holm([0.02]) == [0.02]


def test_cohen_kappa_hand_made_table():
    # 2x2 table: yes/yes 20, yes/no 5, no/yes 10, no/no 15 (n=50)
    # po = 35/50 = 0.7; pe = (25*30 + 25*20)/2500 = 0.5; kappa = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["x"] * 4, ["x"] * 4) == 1.0
    assert math.isnan(cohen_kappa([], []))


def test_is_binary():
    assert is_binary([0, 1, None, 1.0])
    assert not is_binary([0, 0.5])
    assert not is_binary([None])
