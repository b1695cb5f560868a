"""Bootstrap confidence intervals on the test split, and a paired bootstrap test between two models.

Movies are resampled with replacement (n draws from n movies, `n_resamples` times, numpy's PCG64 seeded
with `seed`); every metric of a resample is computed by `WeightedMetrics` from how often each movie was
drawn. Intervals are percentile intervals of the resampled values (Efron & Tibshirani 1993, ch. 13).

The paired test resamples the *same* movies for both models, so the movie-to-movie difficulty they share
cancels out of the difference. Its p-value is two-sided and read off the bootstrap distribution of the
difference d* = metric_a - metric_b:
    p = min(1, 2 * min((1 + #{d* <= 0}) / (R + 1), (1 + #{d* >= 0}) / (R + 1)))
i.e. twice the smaller tail mass at zero, with the +1 so that p is never exactly 0 from finitely many
resamples. It agrees with the percentile interval: the (1 - alpha) interval excludes 0 roughly when
p < alpha. Identical models give d* = 0 throughout, hence p = 1.

Ranking metrics can be undefined in a resample (a rare genre drawn without positives): such a genre is
left out of that resample's macro average, as in `evaluate`; a resample where the metric is undefined
altogether is dropped from the interval (its value is NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thesis_lib.metrics.inputs import check_genre_subset, check_pair, check_thresholds
from thesis_lib.metrics.weighted import WeightedMetrics


@dataclass(frozen=True)
class PairedResult:
    """Model a minus model b on one metric, over the same movies."""

    delta: float  # metric_a - metric_b on the full set
    ci_low: float  # percentile interval of the resampled deltas
    ci_high: float
    p_value: float  # two-sided, see the module docstring
    metric: str
    value_a: float  # metric of model a on the full set
    value_b: float
    n_resamples: int


def bootstrap_indices(n_movies: int, n_resamples: int, seed: int) -> np.ndarray:
    """Movie indices (n_resamples, n_movies) of each resample; the single source of the resampling."""
    if n_movies < 1 or n_resamples < 1:
        raise ValueError(
            f"need at least one movie and one resample, got n_movies={n_movies}, n_resamples={n_resamples}"
        )
    return np.random.default_rng(seed).integers(0, n_movies, size=(n_resamples, n_movies), dtype=np.int32)


def resample_counts(indices: np.ndarray, n_movies: int) -> np.ndarray:
    """Indices (R, n) -> how often each movie was drawn in each resample, float64 (R, n_movies)."""
    n_resamples = indices.shape[0]
    offsets = np.arange(n_resamples, dtype=np.int64)[:, None] * n_movies  # one bincount for all rows
    counts = np.bincount((indices + offsets).ravel(), minlength=n_resamples * n_movies)
    return counts.reshape(n_resamples, n_movies).astype(np.float64)


def bootstrap_distribution(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    metric_names: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    genres: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """{metric name: (n_resamples,) resampled values}, optionally on a subset of genre columns."""
    labels, probs, cutoffs = _prepare(y_true, y_prob, thresholds, genres)
    counts = resample_counts(bootstrap_indices(labels.shape[0], n_resamples, seed), labels.shape[0])
    return WeightedMetrics(labels, probs, cutoffs).compute(counts, list(metric_names))


def bootstrap_ci(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    metric_names: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    genres: Sequence[int] | None = None,
) -> dict[str, tuple[float, float]]:
    """{metric name: (low, high)} percentile bootstrap interval (95% by default) over resampled movies."""
    distribution = bootstrap_distribution(y_true, y_prob, thresholds, metric_names, n_resamples, seed, genres)
    return {name: _percentile_interval(values, confidence) for name, values in distribution.items()}


def paired_bootstrap(
    y_true: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    thresholds_a: float | Sequence[float] | np.ndarray,
    thresholds_b: float | Sequence[float] | np.ndarray,
    metric: str = "macro_f1",
    n_resamples: int = 1000,
    seed: int = 0,
    genres: Sequence[int] | None = None,
    confidence: float = 0.95,
) -> PairedResult:
    """Paired bootstrap of metric(a) - metric(b) on the same movies; `genres` restricts both to those columns."""
    labels, probs_a, cutoffs_a = _prepare(y_true, prob_a, thresholds_a, genres, "prob_a", "thresholds_a")
    _, probs_b, cutoffs_b = _prepare(y_true, prob_b, thresholds_b, genres, "prob_b", "thresholds_b")
    n_movies = labels.shape[0]
    everyone_once = np.ones((1, n_movies))  # the full set is the resample that draws each movie once
    counts = resample_counts(bootstrap_indices(n_movies, n_resamples, seed), n_movies)
    engine_a, engine_b = WeightedMetrics(labels, probs_a, cutoffs_a), WeightedMetrics(labels, probs_b, cutoffs_b)
    value_a = float(engine_a.compute(everyone_once, [metric])[metric][0])
    value_b = float(engine_b.compute(everyone_once, [metric])[metric][0])
    deltas = engine_a.compute(counts, [metric])[metric] - engine_b.compute(counts, [metric])[metric]  # (R,)
    deltas = deltas[~np.isnan(deltas)]
    low, high = _percentile_interval(deltas, confidence)
    return PairedResult(
        delta=value_a - value_b,
        ci_low=low,
        ci_high=high,
        p_value=_two_sided_p_value(deltas),
        metric=metric,
        value_a=value_a,
        value_b=value_b,
        n_resamples=n_resamples,
    )


def _prepare(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray,
    genres: Sequence[int] | None,
    prob_name: str = "y_prob",
    thresholds_name: str = "thresholds",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate, then keep only the requested genre columns (thresholds are given for all genres)."""
    labels, probs = check_pair(y_true, y_prob, prob_name)
    cutoffs = check_thresholds(thresholds, labels.shape[1], thresholds_name)
    columns = check_genre_subset(genres, labels.shape[1])
    return labels[:, columns], probs[:, columns], cutoffs[columns]


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return (float(low), float(high))


def _two_sided_p_value(deltas: np.ndarray) -> float:
    if deltas.size == 0:
        return float("nan")
    below = (1 + np.count_nonzero(deltas <= 0)) / (deltas.size + 1)
    above = (1 + np.count_nonzero(deltas >= 0)) / (deltas.size + 1)
    return float(min(1.0, 2.0 * min(below, above)))
