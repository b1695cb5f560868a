"""Decision thresholds tuned on the validation split, and the three threshold policies side by side.

Tuning maximises F1 over a fixed grid of candidate thresholds (default 0.01, 0.02, ..., 0.99):
- 'per_genre': each genre gets the threshold that maximises its own validation F1. Since macro-F1 is the
  mean of the genres' F1, this is also the macro-F1-optimal choice when every genre may differ.
- 'global': one threshold for every genre, the one that maximises validation macro-F1 (so both modes
  optimise the same quantity; 'global' is the constrained version).
Ties (F1 is flat between neighbouring scores) go to the candidate closest to 0.5, the untuned default.
A genre with no validation positives has F1 0 at every threshold (zero_division=0), so nothing can be
learned about it: it falls back to 0.5 (FALLBACK_THRESHOLD).

The tuning functions take validation arrays only; `evaluate_threshold_policies` is the one place that
sees both splits, and it tunes on validation before it touches the test arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from thesis_lib.metrics.inputs import check_pair
from thesis_lib.metrics.scores import MetricReport, evaluate

FALLBACK_THRESHOLD = 0.5
# Rounded so that 0.5 is exactly a candidate (the tie-break and the fallback rely on it).
DEFAULT_THRESHOLD_GRID: np.ndarray = np.round(np.arange(1, 100) / 100, 2)  # (99,) 0.01 .. 0.99

THRESHOLD_POLICIES: tuple[str, ...] = ("fixed_0.5", "tuned_global", "tuned_per_genre")


def f1_per_threshold(
    val_true: np.ndarray, val_prob: np.ndarray, grid: Sequence[float] | np.ndarray = DEFAULT_THRESHOLD_GRID
) -> np.ndarray:
    """F1 of every genre at every candidate threshold -> (n_genres, n_candidates), zero_division=0."""
    labels, probs = check_pair(val_true, val_prob, "val_prob")
    candidates = _check_grid(grid)
    scores = np.empty((labels.shape[1], candidates.size))
    for k, threshold in enumerate(candidates):
        predicted = probs >= threshold  # (n_movies, n_genres)
        true_pos = (predicted & labels).sum(axis=0)
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (#predicted + #positive); 0 when both counts are 0.
        denominator = predicted.sum(axis=0) + labels.sum(axis=0)
        scores[:, k] = np.divide(2.0 * true_pos, denominator, out=np.zeros(labels.shape[1]), where=denominator > 0)
    return scores


def tune_thresholds(
    val_true: np.ndarray,
    val_prob: np.ndarray,
    mode: Literal["global", "per_genre"] = "per_genre",
    grid: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Thresholds (n_genres,) chosen on the validation split only (see the module docstring for the rule).

    `grid` replaces the default candidates; 0.5 is always added, as the tie-break and fallback value.
    """
    if mode not in ("global", "per_genre"):
        raise ValueError(f"mode: expected 'global' or 'per_genre', got {mode!r}")
    candidates = DEFAULT_THRESHOLD_GRID if grid is None else _check_grid(grid)
    if FALLBACK_THRESHOLD not in candidates:
        candidates = np.sort(np.append(candidates, FALLBACK_THRESHOLD))  # keep the tie-break target reachable
    scores = f1_per_threshold(val_true, val_prob, candidates)  # (n_genres, n_candidates)
    n_genres = scores.shape[0]
    if mode == "global":
        return np.full(n_genres, _best_candidate(scores.mean(axis=0), candidates))
    has_positives = np.asarray(val_true).astype(bool).any(axis=0)  # (n_genres,)
    best = [_best_candidate(scores[genre], candidates) for genre in range(n_genres)]
    return np.where(has_positives, best, FALLBACK_THRESHOLD)


def evaluate_threshold_policies(
    val_true: np.ndarray,
    val_prob: np.ndarray,
    test_true: np.ndarray,
    test_prob: np.ndarray,
    *,
    grid: Sequence[float] | np.ndarray | None = None,
    genre_names: Sequence[str] | None = None,
) -> dict[str, MetricReport]:
    """Test-split reports under each of THRESHOLD_POLICIES; tuned thresholds come from validation only."""
    tuned_global = tune_thresholds(val_true, val_prob, mode="global", grid=grid)
    tuned_per_genre = tune_thresholds(val_true, val_prob, mode="per_genre", grid=grid)
    policies = {"fixed_0.5": FALLBACK_THRESHOLD, "tuned_global": tuned_global, "tuned_per_genre": tuned_per_genre}
    return {
        policy: evaluate(test_true, test_prob, thresholds, threshold_policy=policy, genre_names=genre_names)
        for policy, thresholds in policies.items()
    }


def _best_candidate(scores: np.ndarray, candidates: np.ndarray) -> float:
    """The best-scoring candidate; among ties (up to float noise) the one closest to 0.5, then the lower."""
    tied = np.flatnonzero(scores >= scores.max() - 1e-12)
    distance = np.abs(candidates[tied] - FALLBACK_THRESHOLD)
    return float(candidates[tied[np.argmin(distance)]])  # argmin takes the first, i.e. lower, of equals


def _check_grid(grid: Sequence[float] | np.ndarray) -> np.ndarray:
    candidates = np.asarray(grid, dtype=np.float64)
    if candidates.ndim != 1 or candidates.size == 0 or not np.isfinite(candidates).all():
        raise ValueError(f"grid: expected a non-empty 1-D list of finite thresholds, got {grid!r}")
    if candidates.min() < 0.0 or candidates.max() > 1.0:
        raise ValueError(f"grid: thresholds must lie in [0, 1], got min {candidates.min()} max {candidates.max()}")
    return np.unique(candidates)  # sorted ascending, so ties resolve the same way whatever the input order
