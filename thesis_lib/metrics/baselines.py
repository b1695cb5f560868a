"""Reference predictors that need no model: a row of the comparison table every model must beat."""

from __future__ import annotations

import numpy as np

from thesis_lib.metrics.inputs import check_labels


def frequency_baseline_probs(train_labels: np.ndarray, n: int) -> np.ndarray:
    """Each genre's training frequency as its probability, for `n` movies -> float64 (n, n_genres).

    Every movie gets the same scores, so ROC-AUC is exactly 0.5 and AP equals each genre's prevalence in
    the evaluated split; at threshold 0.5 only genres present in over half the training movies (on
    MM-IMDb: Drama, about 54%) are predicted.
    """
    labels = check_labels(train_labels, "train_labels")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive number of movies, got {n!r}")
    frequencies = labels.mean(axis=0)  # (n_genres,)
    return np.tile(frequencies, (int(n), 1))  # (n, n_genres)
