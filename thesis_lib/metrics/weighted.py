"""Every summary metric under per-movie weights, for many weightings at once: the bootstrap's engine.

A bootstrap resample of movies is the same as weighting each movie by how often it was drawn, so one
(n_resamples, n_movies) count matrix turns the resampled metrics into matrix products:
- threshold metrics need only per-genre TP/FP/FN counts (`weights @ tp`, ...) and per-movie scores
  (exact match, Hamming, samples-P/R/F1) averaged with the weights;
- ROC-AUC and average precision need, for each positive, the weight of the negatives (and positives)
  ranked above it; each genre is sorted once, so a resample costs two running sums and a few gathers.
No metric is recomputed movie by movie, which is what makes 1000 resamples of the test split take seconds.
The definitions (zero_division=0, undefined ranking scores left out of macro averages, ties in scores
counted half in AUC, sklearn's step-wise average precision) match `scores.evaluate`; the tests check that
each resample agrees with `evaluate` on the explicitly resampled arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thesis_lib.metrics.scores import SUMMARY_METRICS

# Metrics built from the per-genre TP/FP/FN counts.
_COUNT_METRICS = frozenset(
    f"{average}_{kind}" for average in ("micro", "macro", "weighted") for kind in ("precision", "recall", "f1")
)
# Bounds the temporaries of the ranking metrics (elements, float64) whatever the number of resamples.
_CHUNK_ELEMENTS = 4_000_000


class WeightedMetrics:
    """Metrics of fixed (labels, probabilities, thresholds) under many per-movie weightings."""

    def __init__(self, labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> None:
        # Inputs are already validated: labels bool (n, G), probs float64 (n, G), thresholds (G,).
        self.labels = labels
        self.probs = probs
        predicted = probs >= thresholds  # (n, G)
        self.true_pos = (labels & predicted).astype(np.float64)  # (n, G)
        self.false_pos = (~labels & predicted).astype(np.float64)
        self.false_neg = (labels & ~predicted).astype(np.float64)
        # Per-movie scores, averaged over movies by the samples/accuracy metrics.
        hits = self.true_pos.sum(axis=1)  # (n,)
        n_true, n_pred = labels.sum(axis=1), predicted.sum(axis=1)
        self.per_movie = {
            "subset_accuracy": (labels == predicted).all(axis=1).astype(np.float64),
            "hamming_accuracy": (labels == predicted).mean(axis=1),
            "samples_precision": _safe_divide(hits, n_pred),
            "samples_recall": _safe_divide(hits, n_true),
            "samples_f1": _safe_divide(2.0 * hits, n_true + n_pred),
        }

    def compute(self, weights: np.ndarray, metric_names: Sequence[str]) -> dict[str, np.ndarray]:
        """weights (R, n) of movie multiplicities -> {metric name: (R,) values}, NaN where undefined."""
        unknown = [name for name in metric_names if name not in SUMMARY_METRICS]
        if unknown:
            raise ValueError(f"unknown metric names {unknown}; choose from {list(SUMMARY_METRICS)}")
        total_weight = weights.sum(axis=1)  # (R,)
        results: dict[str, np.ndarray] = {}
        for name, values in self.per_movie.items():
            if name in metric_names:
                results[name] = weights @ values / total_weight
        if _COUNT_METRICS.intersection(metric_names):
            results |= self._count_metrics(weights)
        if "roc_auc_macro" in metric_names or "map_macro" in metric_names:
            results["roc_auc_macro"], results["map_macro"] = self._per_genre_ranking(weights)
        if "roc_auc_micro" in metric_names:
            results["roc_auc_micro"] = self._micro_auc(weights)
        return {name: results[name] for name in metric_names}

    def _count_metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        true_pos = weights @ self.true_pos  # (R, G) weighted counts
        false_pos = weights @ self.false_pos
        false_neg = weights @ self.false_neg
        support = true_pos + false_neg  # (R, G)
        per_genre = {
            "precision": _safe_divide(true_pos, true_pos + false_pos),
            "recall": _safe_divide(true_pos, support),
            "f1": _safe_divide(2.0 * true_pos, 2.0 * true_pos + false_pos + false_neg),
        }
        tp, fp, fn = true_pos.sum(axis=1), false_pos.sum(axis=1), false_neg.sum(axis=1)  # (R,) pooled
        micro = {
            "precision": _safe_divide(tp, tp + fp),
            "recall": _safe_divide(tp, tp + fn),
            "f1": _safe_divide(2.0 * tp, 2.0 * tp + fp + fn),
        }
        results = {}
        for kind, values in per_genre.items():
            results[f"micro_{kind}"] = micro[kind]
            results[f"macro_{kind}"] = values.mean(axis=1)
            results[f"weighted_{kind}"] = _safe_divide((values * support).sum(axis=1), support.sum(axis=1))
        return results

    def _per_genre_ranking(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Macro ROC-AUC and macro AP (R,), each over the genres that have both classes in that resample."""
        n_resamples, n_movies = weights.shape
        n_genres = self.labels.shape[1]
        auc = np.empty((n_resamples, n_genres))
        average_precision = np.empty((n_resamples, n_genres))
        chunk = max(1, _CHUNK_ELEMENTS // n_movies)
        for genre in range(n_genres):
            ranking = _Ranking(self.probs[:, genre], self.labels[:, genre])
            for start in range(0, n_resamples, chunk):
                rows = slice(start, start + chunk)
                auc[rows, genre], average_precision[rows, genre] = ranking.auc_and_ap(weights[rows])
        return _mean_over_defined(auc), _mean_over_defined(average_precision)

    def _micro_auc(self, weights: np.ndarray) -> np.ndarray:
        """ROC-AUC of all (movie, genre) pairs pooled; each pair carries its movie's weight."""
        n_resamples, n_movies = weights.shape
        n_genres = self.labels.shape[1]
        movie_of_pair = np.repeat(np.arange(n_movies), n_genres)  # (n * G,) row-major: pair i*G+g is movie i
        ranking = _Ranking(self.probs.ravel(), self.labels.ravel(), movie_of_pair)
        auc = np.empty(n_resamples)
        chunk = max(1, _CHUNK_ELEMENTS // (n_movies * n_genres))
        for start in range(0, n_resamples, chunk):
            rows = slice(start, start + chunk)
            auc[rows] = ranking.auc_and_ap(weights[rows], with_ap=False)[0]
        return auc


class _Ranking:
    """Scored items ranked once (highest first), with what each positive needs to know about its rank.

    An item is a movie (one genre's column) or a (movie, genre) pair (micro-AUC); `movie_of_item` says
    whose weight each item carries (None: item i is movie i). Items with equal scores form a tie group.
    For each positive we keep, as column indices into running sums over the ranked negatives/positives,
    how many negatives rank strictly above its group, how many rank up to the end of its group, and how
    many positives rank up to the end of its group. A weighting then needs one cumulative sum over the
    negatives and one over the positives, and gathers at those indices: no per-resample sorting.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, movie_of_item: np.ndarray | None = None) -> None:
        order = np.argsort(-scores, kind="stable")  # (items,) highest score first
        ranked_scores, ranked_labels = scores[order], labels[order].astype(bool)
        ranked_movies = order if movie_of_item is None else movie_of_item[order]  # (items,)
        group = np.cumsum(np.r_[0, ranked_scores[1:] != ranked_scores[:-1]])  # (items,) tie-group id
        n_groups = int(group[-1]) + 1
        negatives_in = np.bincount(group[~ranked_labels], minlength=n_groups)  # (groups,)
        negatives_through = np.cumsum(negatives_in)  # (groups,)
        positives_through = np.cumsum(np.bincount(group[ranked_labels], minlength=n_groups))
        positive_group = group[ranked_labels]  # (P,) in rank order
        self.positive_movies = ranked_movies[ranked_labels]  # (P,)
        self.negative_movies = ranked_movies[~ranked_labels]  # (N,)
        self.negatives_above = (negatives_through - negatives_in)[positive_group]  # (P,) indices into (N+1,)
        self.negatives_through = negatives_through[positive_group]  # (P,)
        self.positives_through = positives_through[positive_group]  # (P,) indices into (P+1,)

    def auc_and_ap(self, weights: np.ndarray, with_ap: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """weights (r, n_movies) -> ROC-AUC (r,) and average precision (r,), NaN where undefined."""
        positive_weight = weights[:, self.positive_movies]  # (r, P) in rank order
        negative_running = _running_sum(weights[:, self.negative_movies])  # (r, N+1), column 0 is 0
        total_pos, total_neg = positive_weight.sum(axis=1), negative_running[:, -1]  # (r,)
        negatives_above = negative_running[:, self.negatives_above]  # (r, P)
        negatives_through = negative_running[:, self.negatives_through]  # (r, P)
        defined = (total_pos > 0) & (total_neg > 0)
        # AUC = P(positive outranks negative) + 1/2 P(tie), in weighted Mann-Whitney form: each positive
        # beats the negatives below its group (total - through) and half-beats those tied with it.
        beaten = total_neg[:, None] - 0.5 * (negatives_through + negatives_above)  # (r, P)
        auc = np.where(defined, _safe_divide((positive_weight * beaten).sum(axis=1), total_pos * total_neg), np.nan)
        if not with_ap:
            return auc, None
        # AP = sum over thresholds (descending) of recall gained x precision there (sklearn's step-wise
        # definition): each positive adds its weight / total_pos of recall at the precision of its group.
        positives_through = _running_sum(positive_weight)[:, self.positives_through]  # (r, P)
        precision = _safe_divide(positives_through, positives_through + negatives_through)  # (r, P)
        recall_times_precision = _safe_divide((positive_weight * precision).sum(axis=1), total_pos)
        average_precision = np.where(defined, recall_times_precision, np.nan)
        return auc, average_precision


def _running_sum(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along axis 1 with a leading 0 column: (r, k) -> (r, k + 1)."""
    running = np.zeros((values.shape[0], values.shape[1] + 1))
    np.cumsum(values, axis=1, out=running[:, 1:])
    return running


def _mean_over_defined(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN (undefined genres); NaN for a row with no defined genre, without a warning."""
    defined = ~np.isnan(values)
    return _safe_divide(np.where(defined, values, 0.0).sum(axis=1), defined.sum(axis=1), fill=np.nan)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """numerator / denominator, `fill` where the denominator is 0 (zero_division=0 by default)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.broadcast_to(np.asarray(denominator, dtype=np.float64), numerator.shape)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, fill), where=denominator != 0)
