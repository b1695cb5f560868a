"""Tests for thesis_lib.metrics: expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import inspect
import json
import math
import warnings

import numpy as np
import pytest

from thesis_lib.genres import GENRES
from thesis_lib.metrics import (
    SUMMARY_METRICS,
    MetricReport,
    bootstrap_ci,
    bootstrap_distribution,
    bootstrap_indices,
    evaluate,
    evaluate_threshold_policies,
    frequency_baseline_probs,
    paired_bootstrap,
    summary_table,
    tune_thresholds,
)

ABC = ("a", "b", "c")
DOWNSTREAM_NAMES = (
    "macro_f1", "micro_f1", "weighted_f1", "samples_f1", "subset_accuracy", "hamming_accuracy", "macro_precision",
    "macro_recall", "micro_precision", "micro_recall", "roc_auc_macro", "roc_auc_micro", "map_macro",
)  # fmt: skip

# 3 movies x 3 genres (a, b, c). At threshold 0.5 the predictions are
#   m0: true {a, c}  pred {a, b}      m1: true {b}  pred {b}      m2: true {a, b}  pred {b}
SMALL_TRUE = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
SMALL_PROB = np.array(
    [
        [0.90, 0.75, 0.40],
        [0.20, 0.70, 0.10],
        [0.40, 0.80, 0.40],
    ]
)


@pytest.fixture(scope="module")
def small_report() -> MetricReport:
    return evaluate(SMALL_TRUE, SMALL_PROB, 0.5, genre_names=ABC)


def test_small_case_threshold_metrics_match_hand_arithmetic(small_report: MetricReport) -> None:
    s = small_report.summary()
    # Per genre: a TP1 FP0 FN1 -> P 1, R 1/2, F1 2/3;  b TP2 FP1 FN0 -> P 2/3, R 1, F1 4/5;
    #            c TP0 FP0 FN1 -> P 0 (zero_division), R 0, F1 0.  Supports 2, 2, 1.
    table = small_report.per_genre()
    np.testing.assert_allclose(table["precision"], [1, 2 / 3, 0])
    np.testing.assert_allclose(table["recall"], [1 / 2, 1, 0])
    np.testing.assert_allclose(table["f1"], [2 / 3, 4 / 5, 0])
    assert table["support"].tolist() == [2, 2, 1] and table["predicted"].tolist() == [1, 3, 0]
    # Micro: TP 3, FP 1, FN 2 -> P 3/4, R 3/5, F1 6/9.
    assert s["micro_precision"] == pytest.approx(3 / 4)
    assert s["micro_recall"] == pytest.approx(3 / 5)
    assert s["micro_f1"] == pytest.approx(2 / 3)
    # Macro: P (1 + 2/3 + 0)/3 = 5/9, R (1/2 + 1 + 0)/3 = 1/2, F1 (2/3 + 4/5 + 0)/3 = 22/45.
    assert s["macro_precision"] == pytest.approx(5 / 9)
    assert s["macro_recall"] == pytest.approx(1 / 2)
    assert s["macro_f1"] == pytest.approx(22 / 45)
    # Weighted by support (2, 2, 1)/5: P (2 + 4/3)/5 = 2/3, R (1 + 2)/5 = 3/5, F1 (4/3 + 8/5)/5 = 44/75.
    assert s["weighted_precision"] == pytest.approx(2 / 3)
    assert s["weighted_recall"] == pytest.approx(3 / 5)
    assert s["weighted_f1"] == pytest.approx(44 / 75)
    # Per movie (P, R, F1): m0 (1/2, 1/2, 1/2), m1 (1, 1, 1), m2 (1, 1/2, 2/3).
    assert s["samples_precision"] == pytest.approx(5 / 6)
    assert s["samples_recall"] == pytest.approx(2 / 3)
    assert s["samples_f1"] == pytest.approx(13 / 18)
    # Only m1 is exactly right; 3 of the 9 decisions are wrong (m0 b, m0 c, m2 a).
    assert s["subset_accuracy"] == pytest.approx(1 / 3)
    assert s["hamming_accuracy"] == pytest.approx(6 / 9)


def test_small_case_ranking_metrics_match_hand_arithmetic(small_report: MetricReport) -> None:
    table = small_report.per_genre()
    # AUC = share of (positive, negative) pairs ranked right, ties count 1/2.
    #   a: pos .9 .4 vs neg .2 -> 2/2 = 1;  b: pos .7 .8 vs neg .75 -> 1/2;  c: pos .4 vs neg .1, .4 (tie) -> 3/4.
    np.testing.assert_allclose(table["roc_auc"], [1, 1 / 2, 3 / 4])
    assert small_report.summary()["roc_auc_macro"] == pytest.approx(3 / 4)
    # AP = sum over descending thresholds of (recall gained) x precision:
    #   a: .9+ .4+ -> 1;  b: .8+ (P 1, R 1/2), .75- , .7+ (P 2/3, R 1) -> 1/2 + 1/3 = 5/6;
    #   c: the tie at .4 holds one positive and one negative -> P 1/2 at R 1 -> 1/2.
    np.testing.assert_allclose(table["average_precision"], [1, 5 / 6, 1 / 2])
    assert small_report.summary()["map_macro"] == pytest.approx(7 / 9)
    # Micro AUC over the 9 pooled pairs: positives .9 .4 .7 .8 .4 vs negatives .2 .75 .1 .4
    #   wins per positive: 4, 2.5, 3, 4, 2.5 = 16 of 5 x 4 = 20 pairs.
    assert small_report.summary()["roc_auc_micro"] == pytest.approx(16 / 20)
    assert small_report.undefined_genres == ()


def test_genre_without_positives_is_excluded_from_ranking_macros_and_listed() -> None:
    # Genre c has no positives in this split; m0 is still (wrongly) given c.
    y_true = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    y_prob = np.array([[0.8, 0.1, 0.6], [0.3, 0.9, 0.1], [0.6, 0.2, 0.2], [0.7, 0.4, 0.3]])
    report = evaluate(y_true, y_prob, genre_names=ABC)
    s = report.summary()
    assert report.undefined_genres == ("c",)
    table = report.per_genre()
    assert math.isnan(table.loc["c", "roc_auc"]) and math.isnan(table.loc["c", "average_precision"])
    # a: pos .8 .6 vs neg .3 .7 -> 3 of 4 pairs -> 3/4; b: pos .9 .4 vs neg .1 .2 -> 1. Macro over a, b only.
    assert s["roc_auc_macro"] == pytest.approx((3 / 4 + 1) / 2)
    # AP a: .8+ (P 1, R 1/2), .7-, .6+ (P 2/3, R 1) -> 5/6; b: both positives on top -> 1.
    assert s["map_macro"] == pytest.approx((5 / 6 + 1) / 2)
    # F1 keeps c (zero_division=0 -> 0): a TP2 FP1 -> 4/5, b TP1 FN1 -> 2/3, c 0 -> macro 22/45.
    assert table.loc["c", "f1"] == 0.0
    assert s["macro_f1"] == pytest.approx(22 / 45)


def test_no_genre_with_both_classes_gives_nan_not_a_crash() -> None:
    y_true = np.zeros((4, 3), dtype=int)
    y_prob = np.full((4, 3), 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the undefined cases are handled, not warned about
        report = evaluate(y_true, y_prob, genre_names=ABC)
    s = report.summary()
    assert math.isnan(s["roc_auc_macro"]) and math.isnan(s["map_macro"]) and math.isnan(s["roc_auc_micro"])
    assert report.undefined_genres == ABC
    # Every decision is a correct "no": exact match 1, but F1 0 everywhere under zero_division=0.
    assert s["subset_accuracy"] == 1.0 and s["macro_f1"] == 0.0 and s["samples_f1"] == 0.0


def test_movies_with_empty_predictions_score_zero_in_samples_metrics() -> None:
    # m0 has genre a but nothing is predicted (P 0 by zero_division, R 0); m1 has nothing and gets
    # nothing: F1 = 2*0/(0+0) -> 0 by zero_division (not 1). m2 is right: 1. Mean F1 = 1/3.
    y_true = np.array([[1, 0], [0, 0], [0, 1]])
    y_prob = np.array([[0.2, 0.1], [0.3, 0.1], [0.1, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = evaluate(y_true, y_prob, genre_names=("a", "b")).summary()
    assert s["samples_f1"] == pytest.approx(1 / 3)
    assert s["samples_precision"] == pytest.approx(1 / 3)
    assert s["samples_recall"] == pytest.approx(1 / 3)


def test_report_keys_table_and_json_form_for_the_23_genres() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.random((60, len(GENRES))) < 0.3
    y_true[:, GENRES.index("Film-Noir")] = False
    report = evaluate(y_true, rng.random((60, len(GENRES))), thresholds=np.linspace(0.3, 0.7, len(GENRES)))
    assert set(DOWNSTREAM_NAMES) <= set(report.summary())
    table = report.per_genre()
    assert list(table.index) == list(GENRES)
    np.testing.assert_allclose(table["threshold"], np.linspace(0.3, 0.7, len(GENRES)))
    assert report.undefined_genres == ("Film-Noir",) and report.threshold_policy == "custom"
    record = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON: NaN became null
    assert record["per_genre"]["Film-Noir"]["roc_auc"] is None
    restored = MetricReport.from_dict(record)
    assert restored.summary() == pytest.approx(report.summary())
    assert restored.per_genre().equals(table)


def test_bad_inputs_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="sigmoid"):
        evaluate(SMALL_TRUE, SMALL_PROB * 4 - 2, genre_names=ABC)  # logits
    with pytest.raises(ValueError, match="0/1"):
        evaluate(SMALL_TRUE * 0.5, SMALL_PROB, genre_names=ABC)  # soft labels
    with pytest.raises(ValueError, match="y_prob"):
        evaluate(SMALL_TRUE, SMALL_PROB.T[:2], genre_names=ABC)
    with pytest.raises(ValueError, match="thresholds"):
        evaluate(SMALL_TRUE, SMALL_PROB, [0.5, 0.5], genre_names=ABC)
    with pytest.raises(ValueError, match="23"):
        evaluate(SMALL_TRUE, SMALL_PROB)  # 3 columns but the default names are the 23 GENRES
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(SMALL_TRUE, SMALL_PROB, 0.5, ["f1_macro"], n_resamples=5)


# Validation split, 6 movies. F1 of each genre as a function of the threshold t (predict when p >= t):
#   a: labels 1 1 1 0 0 0, probs .9 .35 .25 .3 .1 .05
#      t in (.10, .25] -> TP3 FP1 -> 6/7 (best); (.30, .35] -> 4/5; (.25, .30] -> 2/3; (.35, .9] -> 1/2
#   b: labels 1 1 0 0 0 0, probs .95 .85 .8 .2 .1 .6
#      t in (.80, .85] -> TP2 FP0 -> 1 (best); (.6, .8] -> 4/5; (.2, .6] -> 2/3; (.1, .2] -> 4/7
#   c: no positives -> F1 0 at every t -> fallback 0.5
VAL_TRUE = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
VAL_PROB = np.array(
    [[0.90, 0.95, 0.7], [0.35, 0.85, 0.7], [0.25, 0.80, 0.7], [0.30, 0.20, 0.7], [0.10, 0.10, 0.7], [0.05, 0.60, 0.7]]
)


def test_per_genre_tuning_picks_the_f1_maximising_threshold() -> None:
    thresholds = tune_thresholds(VAL_TRUE, VAL_PROB, mode="per_genre")
    # a: the grid points 0.11..0.25 all give 6/7; the tie goes to the one closest to 0.5 -> 0.25.
    # b: 0.81..0.85 all give 1 -> 0.81.  c: no validation positives -> 0.5.
    np.testing.assert_allclose(thresholds, [0.25, 0.81, 0.5])
    f1 = evaluate(VAL_TRUE, VAL_PROB, thresholds, genre_names=ABC).per_genre()["f1"]
    np.testing.assert_allclose(f1, [6 / 7, 1, 0])


def test_global_tuning_maximises_mean_f1_with_one_threshold() -> None:
    # Sum of the a and b F1 curves (c adds 0): (.20, .25] -> 6/7 + 2/3 = 1.524 (best);
    # (.80, .85] -> 1/2 + 1 = 1.5; (.30, .35] -> 4/5 + 2/3 = 1.467; (.10, .20] -> 6/7 + 4/7 = 1.429.
    thresholds = tune_thresholds(VAL_TRUE, VAL_PROB, mode="global")
    np.testing.assert_allclose(thresholds, [0.25, 0.25, 0.25])
    macro_f1 = evaluate(VAL_TRUE, VAL_PROB, thresholds, genre_names=ABC).summary()["macro_f1"]
    assert macro_f1 == pytest.approx((6 / 7 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="mode"):
        tune_thresholds(VAL_TRUE, VAL_PROB, mode="test")


def test_threshold_policies_tune_on_validation_only() -> None:
    # The tuning API has no place for test data at all.
    assert list(inspect.signature(tune_thresholds).parameters) == ["val_true", "val_prob", "mode", "grid"]
    rng = np.random.default_rng(0)
    test_true = rng.random((40, 3)) < 0.4
    reports = evaluate_threshold_policies(VAL_TRUE, VAL_PROB, test_true, rng.random((40, 3)), genre_names=ABC)
    other_test = evaluate_threshold_policies(VAL_TRUE, VAL_PROB, ~test_true, rng.random((40, 3)), genre_names=ABC)
    assert list(reports) == ["fixed_0.5", "tuned_global", "tuned_per_genre"]
    assert [r.threshold_policy for r in reports.values()] == list(reports)
    np.testing.assert_allclose(reports["fixed_0.5"].thresholds, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(reports["tuned_global"].thresholds, [0.25, 0.25, 0.25])
    np.testing.assert_allclose(reports["tuned_per_genre"].thresholds, [0.25, 0.81, 0.5])
    for policy in reports:  # different test data, same thresholds; the reports are on the test split
        np.testing.assert_array_equal(reports[policy].thresholds, other_test[policy].thresholds)
        assert reports[policy].n_movies == 40
    assert list(summary_table(reports, ["macro_f1"]).index) == list(reports)


def _synthetic_split(n_movies: int, seed: int, signal: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labels with MM-IMDb-like rarity (one rare genre); probabilities rounded to 0.01 (so, many ties)
    that lift positives by `signal` over uniform noise: classes overlap for any signal < 1."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.5, 0.3, 0.15, 0.05])
    y_true = rng.random((n_movies, 4)) < prevalence
    y_prob = np.round(signal * y_true + (1 - signal) * rng.random((n_movies, 4)), 2)
    return y_true, y_prob


def test_bootstrap_resamples_agree_with_evaluate_on_the_resampled_movies() -> None:
    # The vectorised engine must give, for every resample, what `evaluate` gives on those movies,
    # including resamples where the rare genre (2 positives) has no positive left.
    y_true, y_prob = _synthetic_split(30, seed=1)
    y_true[:, 3] = False
    y_true[[4, 9], 3] = True
    thresholds = np.array([0.5, 0.4, 0.6, 0.3])
    names = ("w", "x", "y", "z")
    distribution = bootstrap_distribution(y_true, y_prob, thresholds, SUMMARY_METRICS, n_resamples=25, seed=7)
    indices = bootstrap_indices(30, 25, seed=7)
    assert any(not y_true[rows, 3].any() for rows in indices)  # the undefined-genre path is exercised
    for r, rows in enumerate(indices):
        expected = evaluate(y_true[rows], y_prob[rows], thresholds, genre_names=names).summary()
        got = {name: distribution[name][r] for name in SUMMARY_METRICS}
        assert got == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_bootstrap_ci_contains_the_estimate_narrows_with_data_and_is_reproducible() -> None:
    metrics = ["macro_f1", "micro_f1", "roc_auc_macro", "map_macro"]
    widths = {}
    for n_movies in (150, 2400):
        y_true, y_prob = _synthetic_split(n_movies, seed=2)
        estimate = evaluate(y_true, y_prob, genre_names=tuple("wxyz")).summary()
        intervals = bootstrap_ci(y_true, y_prob, 0.5, metrics, n_resamples=300, seed=0)
        for name, (low, high) in intervals.items():
            assert low < estimate[name] < high, name
        widths[n_movies] = {name: high - low for name, (low, high) in intervals.items()}
    for name in metrics:  # 16x the movies -> about 1/4 the width; ask for under 1/2
        assert widths[2400][name] < widths[150][name] / 2, name
    y_true, y_prob = _synthetic_split(150, seed=2)
    again = bootstrap_ci(y_true, y_prob, 0.5, metrics, n_resamples=300, seed=0)
    other_seed = bootstrap_ci(y_true, y_prob, 0.5, metrics, n_resamples=300, seed=1)
    assert again == bootstrap_ci(y_true, y_prob, 0.5, metrics, n_resamples=300, seed=0)
    assert again != other_seed


def test_paired_bootstrap_identical_models_give_zero_delta_and_p_one() -> None:
    y_true, y_prob = _synthetic_split(200, seed=3)
    result = paired_bootstrap(y_true, y_prob, y_prob.copy(), 0.5, 0.5, metric="macro_f1", n_resamples=200, seed=0)
    assert (result.delta, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_detects_a_clearly_better_model_reproducibly() -> None:
    y_true, sharp = _synthetic_split(300, seed=4, signal=0.5)
    _, blurry = _synthetic_split(300, seed=4, signal=0.1)  # same labels (same seed), weaker scores
    names = tuple("wxyz")
    result = paired_bootstrap(y_true, sharp, blurry, 0.5, 0.5, metric="macro_f1", n_resamples=400, seed=0)
    sharp_f1 = evaluate(y_true, sharp, genre_names=names).summary()["macro_f1"]
    blurry_f1 = evaluate(y_true, blurry, genre_names=names).summary()["macro_f1"]
    expected_delta = sharp_f1 - blurry_f1
    assert result.delta == pytest.approx(expected_delta) and result.delta > 0
    assert 0 < result.ci_low < result.delta < result.ci_high
    assert result.p_value == pytest.approx(2 / 401)  # no resample at or below 0: 2 * 1/(R+1)
    assert result == paired_bootstrap(y_true, sharp, blurry, 0.5, 0.5, metric="macro_f1", n_resamples=400, seed=0)
    # Reversed roles: the same difference with the sign flipped.
    reverse = paired_bootstrap(y_true, blurry, sharp, 0.5, 0.5, metric="macro_f1", n_resamples=400, seed=0)
    assert reverse.delta == pytest.approx(-result.delta) and reverse.ci_high < 0


def test_paired_bootstrap_on_a_genre_subset_uses_only_those_columns() -> None:
    y_true, sharp = _synthetic_split(200, seed=5, signal=0.5)
    _, blurry = _synthetic_split(200, seed=5, signal=0.1)
    thresholds_a, thresholds_b = np.array([0.5, 0.4, 0.3, 0.6]), 0.5
    sub = [1, 3]
    result = paired_bootstrap(
        y_true, sharp, blurry, thresholds_a, thresholds_b, metric="micro_f1", n_resamples=50, genres=sub
    )
    expected_a = evaluate(y_true[:, sub], sharp[:, sub], thresholds_a[sub], genre_names=("x", "z")).summary()
    expected_b = evaluate(y_true[:, sub], blurry[:, sub], 0.5, genre_names=("x", "z")).summary()
    assert (result.value_a, result.value_b) == pytest.approx((expected_a["micro_f1"], expected_b["micro_f1"]))
    with pytest.raises(ValueError, match="genres"):
        paired_bootstrap(y_true, sharp, blurry, 0.5, 0.5, genres=[4])


def test_frequency_baseline_uses_training_frequencies() -> None:
    # Training frequencies: a 3/4, b 1/4, c 0.
    train = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    probs = frequency_baseline_probs(train, 5)
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs, np.tile([0.75, 0.25, 0.0], (5, 1)))
    # On a test split with prevalences a 2/5, b 1/5, c 0: constant scores tie every pair -> AUC 1/2,
    # and AP = prevalence (one threshold, recall 1 at precision = prevalence). Only a (0.75) is predicted.
    test_true = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    report = evaluate(test_true, probs, genre_names=ABC)
    np.testing.assert_allclose(report.per_genre()["roc_auc"].iloc[:2], [0.5, 0.5])
    np.testing.assert_allclose(report.per_genre()["average_precision"].iloc[:2], [2 / 5, 1 / 5])
    assert report.per_genre()["predicted"].tolist() == [5, 0, 0]
    with pytest.raises(ValueError, match="n"):
        frequency_baseline_probs(train, 0)
