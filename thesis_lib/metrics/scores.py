"""Point estimates of every multi-label metric on one split, as a `MetricReport`.

Conventions (the book's methods chapter cites these):
- A movie gets a genre when its probability is >= that genre's threshold.
- Precision, recall and F1 use `zero_division=0`: a genre that is never predicted has precision 0, a genre
  with no positives has recall 0, and a genre with neither has F1 0 (so it lowers the macro average; it is
  not skipped). For samples-F1 a movie with no true and no predicted genre scores 0 as well.
- ROC-AUC and average precision rank movies, which needs both classes: for a genre with no positives (or,
  rarer, only positives) in the split they are undefined. Such genres get NaN in the per-genre table, are
  left out of `roc_auc_macro` and `map_macro`, and are listed in `MetricReport.undefined_genres`. If no
  genre is defined the macro averages are NaN, not an error. `roc_auc_micro` pools every (movie, genre)
  pair, so it is defined whenever the pooled labels contain both classes (NaN otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    hamming_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from thesis_lib.metrics.inputs import check_pair, check_thresholds, resolve_genre_names

# Keys of `MetricReport.summary()`: downstream code (experiments, notebooks, the book) uses these names.
SUMMARY_METRICS: tuple[str, ...] = (
    "subset_accuracy",  # exact match: every one of the genres right
    "hamming_accuracy",  # fraction of (movie, genre) decisions right = 1 - Hamming loss
    "micro_precision",
    "micro_recall",
    "micro_f1",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",  # per-genre values weighted by the genre's support
    "weighted_recall",
    "weighted_f1",
    "samples_precision",  # per-movie values, averaged over movies
    "samples_recall",
    "samples_f1",
    "roc_auc_macro",  # mean over genres with both classes present
    "roc_auc_micro",  # all (movie, genre) pairs pooled
    "map_macro",  # mean average precision over genres with both classes present
)

# Columns of `MetricReport.per_genre()`, one row per genre.
PER_GENRE_COLUMNS: tuple[str, ...] = (
    "threshold",
    "support",  # movies that have the genre
    "predicted",  # movies given the genre
    "precision",
    "recall",
    "f1",
    "average_precision",  # NaN when undefined (see module docstring)
    "roc_auc",  # NaN when undefined
)

PREDICTION_RULE = "probability >= threshold"


@dataclass(frozen=True, eq=False)
class MetricReport:
    """Metrics of one model on one split under one threshold policy (e.g. 'fixed_0.5', 'tuned_per_genre')."""

    threshold_policy: str
    genre_names: tuple[str, ...]
    thresholds: np.ndarray  # (n_genres,) the threshold each genre was decided with
    n_movies: int
    scores: Mapping[str, float]  # SUMMARY_METRICS -> value (NaN where undefined)
    per_genre_scores: Mapping[str, np.ndarray]  # PER_GENRE_COLUMNS -> (n_genres,) values
    undefined_genres: tuple[str, ...]  # genres left out of roc_auc_macro and map_macro

    def summary(self) -> dict[str, float]:
        """Flat {metric name: value} with every name in SUMMARY_METRICS."""
        return {name: float(self.scores[name]) for name in SUMMARY_METRICS}

    def per_genre(self) -> pd.DataFrame:
        """One row per genre (canonical order), columns PER_GENRE_COLUMNS."""
        columns = {column: self.per_genre_scores[column] for column in PER_GENRE_COLUMNS}
        table = pd.DataFrame(columns, index=pd.Index(self.genre_names, name="genre"))
        return table.astype({"support": int, "predicted": int})

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON form for run records (NaN becomes None, since JSON has no NaN)."""
        return {
            "threshold_policy": self.threshold_policy,
            "prediction_rule": PREDICTION_RULE,
            "n_movies": self.n_movies,
            "summary": {name: _json_float(value) for name, value in self.summary().items()},
            "per_genre": {
                genre: {column: _json_float(self.per_genre_scores[column][i]) for column in PER_GENRE_COLUMNS}
                for i, genre in enumerate(self.genre_names)
            },
            "undefined_genres": list(self.undefined_genres),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> MetricReport:
        """Inverse of `to_dict`, for notebooks that read run records."""
        genre_names = tuple(record["per_genre"])
        per_genre = {
            column: np.array([_from_json_float(record["per_genre"][genre][column]) for genre in genre_names])
            for column in PER_GENRE_COLUMNS
        }
        return cls(
            threshold_policy=record["threshold_policy"],
            genre_names=genre_names,
            thresholds=per_genre["threshold"],
            n_movies=int(record["n_movies"]),
            scores={name: _from_json_float(record["summary"][name]) for name in SUMMARY_METRICS},
            per_genre_scores=per_genre,
            undefined_genres=tuple(record["undefined_genres"]),
        )


def evaluate(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray = 0.5,
    *,
    threshold_policy: str | None = None,
    genre_names: Sequence[str] | None = None,
) -> MetricReport:
    """All metrics for labels (n_movies, n_genres) and probabilities (n_movies, n_genres).

    `thresholds` is one value for every genre or one per genre (e.g. from `tune_thresholds` on the
    validation split). `threshold_policy` labels the report; by default 'fixed_<t>' for a single value and
    'custom' otherwise. `genre_names` defaults to the 23 canonical GENRES.
    """
    labels, probs = check_pair(y_true, y_prob)
    n_genres = labels.shape[1]
    names = resolve_genre_names(genre_names, n_genres)
    cutoffs = check_thresholds(thresholds, n_genres)
    if threshold_policy is None:
        threshold_policy = f"fixed_{cutoffs[0]:g}" if np.all(cutoffs == cutoffs[0]) else "custom"
    predicted = probs >= cutoffs  # (n_movies, n_genres) bool

    scores: dict[str, float] = {
        "subset_accuracy": accuracy_score(labels, predicted),
        "hamming_accuracy": 1.0 - hamming_loss(labels, predicted),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average=average, zero_division=0)
        scores |= {f"{average}_precision": precision, f"{average}_recall": recall, f"{average}_f1": f1}
    genre_precision, genre_recall, genre_f1, support = precision_recall_fscore_support(
        labels, predicted, average=None, zero_division=0
    )

    auc, average_precision, defined = ranking_scores_per_genre(labels, probs)
    scores["roc_auc_macro"] = float(auc[defined].mean()) if defined.any() else math.nan
    scores["map_macro"] = float(average_precision[defined].mean()) if defined.any() else math.nan
    pooled = labels.ravel()
    has_both_classes = 0 < pooled.sum() < pooled.size
    scores["roc_auc_micro"] = float(roc_auc_score(pooled, probs.ravel())) if has_both_classes else math.nan

    return MetricReport(
        threshold_policy=threshold_policy,
        genre_names=names,
        thresholds=cutoffs,
        n_movies=labels.shape[0],
        scores={name: float(scores[name]) for name in SUMMARY_METRICS},
        per_genre_scores={
            "threshold": cutoffs,
            "support": support.astype(np.float64),
            "predicted": predicted.sum(axis=0).astype(np.float64),
            "precision": genre_precision,
            "recall": genre_recall,
            "f1": genre_f1,
            "average_precision": average_precision,
            "roc_auc": auc,
        },
        undefined_genres=tuple(name for name, ok in zip(names, defined, strict=False) if not ok),
    )


def ranking_scores_per_genre(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-genre ROC-AUC and average precision (n_genres,), NaN where a genre lacks a class; plus that mask."""
    positives = labels.sum(axis=0)  # (n_genres,)
    defined = (positives > 0) & (positives < labels.shape[0])
    auc = np.full(labels.shape[1], math.nan)
    average_precision = np.full(labels.shape[1], math.nan)
    for genre in np.flatnonzero(defined):
        auc[genre] = roc_auc_score(labels[:, genre], probs[:, genre])
        average_precision[genre] = average_precision_score(labels[:, genre], probs[:, genre])
    return auc, average_precision, defined


def summary_table(reports: Mapping[str, MetricReport], metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Rows = named reports (models, baselines, threshold policies), columns = summary metrics."""
    unknown = [name for name in metrics if name not in SUMMARY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric names {unknown}; choose from {list(SUMMARY_METRICS)}")
    rows = [{name: report.summary()[name] for name in metrics} for report in reports.values()]
    return pd.DataFrame(rows, index=pd.Index(list(reports), name="run"))


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _from_json_float(value: float | None) -> float:
    return math.nan if value is None else float(value)
