"""apps.groups.stats against scipy / scikit-learn on known data (no database)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from apps.groups import stats

RNG = random.Random(7)
Y_TRUE = [RNG.random() < 0.4 for _ in range(300)]
SCORES = [min(1.0, max(0.0, 0.3 * t + RNG.gauss(0.4, 0.25))) for t in Y_TRUE]
Y_TRUE_I = [int(t) for t in Y_TRUE]
Y_PRED_I = [int(s >= 0.5) for s in SCORES]


def test_wilson_interval_matches_the_closed_form_on_known_numbers():
    est = stats.wilson_interval(81, 263)
    # Reference values of the Wilson score interval for 81/263 at 95 %.
    assert est.value == pytest.approx(81 / 263)
    assert est.low == pytest.approx(0.2553, abs=1e-4)
    assert est.high == pytest.approx(0.3662, abs=1e-4)
    assert stats.wilson_interval(0, 0).value is None


def test_wilson_interval_matches_scipy_binomtest():
    ci = sps.binomtest(81, 263).proportion_ci(method="wilson")
    est = stats.wilson_interval(81, 263)
    assert (est.low, est.high) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_classification_metrics_match_scikit_learn():
    assert stats.accuracy(Y_TRUE_I, Y_PRED_I).value == pytest.approx(
        skm.accuracy_score(Y_TRUE_I, Y_PRED_I)
    )
    assert stats.precision(Y_TRUE_I, Y_PRED_I).value == pytest.approx(
        skm.precision_score(Y_TRUE_I, Y_PRED_I)
    )
    assert stats.recall(Y_TRUE_I, Y_PRED_I).value == pytest.approx(
        skm.recall_score(Y_TRUE_I, Y_PRED_I)
    )
    f1 = stats.f1(Y_TRUE_I, Y_PRED_I)
    assert f1.value == pytest.approx(skm.f1_score(Y_TRUE_I, Y_PRED_I))
    assert f1.low < f1.value < f1.high
    # Fixed seed: the same data gives the same interval.
    assert stats.f1(Y_TRUE_I, Y_PRED_I) == f1


def test_auc_is_the_mann_whitney_statistic_and_matches_roc_auc():
    est = stats.auc(Y_TRUE_I, SCORES)
    assert est.value == pytest.approx(skm.roc_auc_score(Y_TRUE_I, SCORES))
    pos = [s for s, t in zip(SCORES, Y_TRUE_I, strict=True) if t]
    neg = [s for s, t in zip(SCORES, Y_TRUE_I, strict=True) if not t]
    u = sps.mannwhitneyu(pos, neg).statistic
    assert est.value == pytest.approx(u / (len(pos) * len(neg)))
    assert est.low < est.value < est.high
    # Ties share their rank.
    assert stats.auc([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9]).value == pytest.approx(
        skm.roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.1, 0.9])
    )


def test_mae_and_rmse_with_intervals():
    truth = [RNG.gauss(10, 3) for _ in range(200)]
    pred = [t + RNG.gauss(0.5, 1) for t in truth]
    mae = stats.mae(truth, pred)
    errors = [abs(p - t) for t, p in zip(truth, pred, strict=True)]
    assert mae.value == pytest.approx(skm.mean_absolute_error(truth, pred))
    low, high = sps.t.interval(
        0.95, len(errors) - 1, loc=mae.value, scale=sps.sem(errors)
    )
    assert (mae.low, mae.high) == pytest.approx((low, high))
    rmse = stats.rmse(truth, pred)
    assert rmse.value == pytest.approx(math.sqrt(skm.mean_squared_error(truth, pred)))
    assert rmse.low < rmse.value < rmse.high


def test_two_proportion_z_test_matches_scipy_chi_square():
    result = stats.two_proportion_ztest(420, 500, 445, 500)
    chi2, p, _, _ = sps.chi2_contingency([[420, 80], [445, 55]], correction=False)
    assert result.statistic**2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p)
    assert result.difference == pytest.approx(0.05)
    assert result.effect_size == pytest.approx(
        2 * math.asin(math.sqrt(0.89)) - 2 * math.asin(math.sqrt(0.84))
    )


def test_welch_t_test_matches_scipy():
    a = [RNG.gauss(1.0, 1.0) for _ in range(40)]
    b = [RNG.gauss(1.6, 2.0) for _ in range(55)]
    ours = stats.welch_from_values(a, b)
    theirs = sps.ttest_ind(b, a, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)


def test_sample_size_for_proportions_matches_the_textbook_formula():
    # Fleiss (without continuity correction): 0.90 vs 0.92 at alpha 0.05, power 0.8.
    assert stats.sample_size_proportions(0.90, 0.02) == 3213
    # A bigger effect needs fewer.
    assert stats.sample_size_proportions(0.5, 0.1) == 388
    assert stats.sample_size_means(1.0, 0.5) == 63


def test_histogram_percentiles_are_within_one_bucket_of_the_exact_ones():
    values = [RNG.lognormvariate(3, 0.8) for _ in range(5000)]
    hist = [0] * stats.HIST_SIZE
    for v in values:
        hist[stats.latency_bucket(v)] += 1
    for q in (50, 95, 99):
        exact = float(sps.scoreatpercentile(values, q))
        estimate = stats.percentile_from_hist(hist, q)
        assert exact / stats.LATENCY_RATIO <= estimate <= exact * stats.LATENCY_RATIO
    assert stats.percentile_from_hist([0] * stats.HIST_SIZE, 95) is None


def _verdict(sa, na, sb, nb, mde=0.02):
    champion = stats.wilson_interval(sa, na)
    challenger = stats.wilson_interval(sb, nb)
    return stats.decide(
        metric="accuracy",
        champion=champion,
        challenger=challenger,
        test=stats.two_proportion_ztest(sa, na, sb, nb),
        required_per_arm=stats.sample_size_proportions(champion.value, mde),
        mde=mde,
    )


def test_no_verdict_before_the_minimum_sample_size():
    verdict = _verdict(90, 100, 95, 100)
    assert verdict.verdict == "needs_more_data"
    assert verdict.required_per_arm == 3213
    assert verdict.needed_more == 2 * (3213 - 100)
    assert verdict.message.startswith("Needs 6226 more labelled requests")


def test_verdicts_after_the_minimum_sample_size():
    assert _verdict(3000, 4000, 3200, 4000, 0.05).verdict == "challenger_better"
    assert _verdict(3200, 4000, 3000, 4000, 0.05).verdict == "champion_better"
    assert _verdict(3000, 4000, 3010, 4000, 0.05).verdict == "no_difference"


def test_lower_is_better_metrics_flip_the_winner():
    champion = stats.Estimate(0.2, 0.1, 0.3, 5000)
    challenger = stats.Estimate(0.1, 0.05, 0.15, 5000)
    verdict = stats.decide(
        metric="error_rate",
        champion=champion,
        challenger=challenger,
        test=stats.two_proportion_ztest(1000, 5000, 500, 5000),
        required_per_arm=100,
        mde=0.02,
    )
    assert verdict.verdict == "challenger_better"
