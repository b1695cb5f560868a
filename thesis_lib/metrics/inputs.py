"""Checks shared by every metric entry point: label matrices, probability matrices, thresholds.

Metrics are only as trustworthy as their inputs, and the usual mistakes are silent (logits passed as
probabilities, a transposed matrix, soft labels, a threshold vector for another genre order). So each
public function checks its arrays here and fails with a message naming the argument and the problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thesis_lib.genres import GENRES


def check_labels(y_true: np.ndarray, name: str = "y_true") -> np.ndarray:
    """Multi-hot labels (n_movies, n_genres) of 0/1 (bool, int or float) -> a bool matrix."""
    labels = np.asarray(y_true)
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected a (n_movies, n_genres) label matrix, got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise ValueError(f"{name}: no movies (shape {labels.shape}); metrics need at least one movie")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        bad = np.unique(labels[~np.isin(labels, (0, 1))])[:5]
        raise ValueError(f"{name}: labels must be 0/1 multi-hot, found values such as {bad.tolist()}")
    return labels.astype(bool)


def check_probabilities(y_prob: np.ndarray, n_genres: int, name: str = "y_prob") -> np.ndarray:
    """Scores (n_movies, n_genres) in [0, 1] -> a float64 matrix. Logits are refused, not squashed."""
    probs = np.asarray(y_prob, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != n_genres:
        raise ValueError(f"{name}: expected shape (n_movies, {n_genres}), got {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{name}: contains NaN or infinite values ({int((~np.isfinite(probs)).sum())} entries)")
    if probs.min() < 0.0 or probs.max() > 1.0:
        # Thresholding logits at 0.5 would silently mean p >= 0.62: make the caller apply the sigmoid.
        raise ValueError(
            f"{name}: values outside [0, 1] (min {probs.min():.4g}, max {probs.max():.4g}); "
            "pass probabilities (apply a sigmoid to logits first)"
        )
    return probs


def check_pair(y_true: np.ndarray, y_prob: np.ndarray, prob_name: str = "y_prob") -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities for the same movies and genres -> (bool labels, float64 probabilities)."""
    labels = check_labels(y_true)
    probs = check_probabilities(y_prob, labels.shape[1], prob_name)
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"y_true has {labels.shape[0]} movies but {prob_name} has {probs.shape[0]}")
    return labels, probs


def check_thresholds(
    thresholds: float | Sequence[float] | np.ndarray, n_genres: int, name: str = "thresholds"
) -> np.ndarray:
    """One threshold for all genres (a scalar) or one per genre -> a float64 vector (n_genres,)."""
    values = np.asarray(thresholds, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(n_genres, float(values))
    if values.shape != (n_genres,):
        raise ValueError(f"{name}: expected a scalar or shape ({n_genres},), got {values.shape}")
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(f"{name}: thresholds must be finite and in [0, 1], got {values.tolist()}")
    return values


def resolve_genre_names(genre_names: Sequence[str] | None, n_genres: int) -> tuple[str, ...]:
    """Column names: the 23 canonical GENRES by default; any other width needs explicit names."""
    names = tuple(GENRES if genre_names is None else genre_names)
    if len(names) != n_genres:
        default_hint = " (the default is the 23 MM-IMDb GENRES; pass genre_names for other widths)"
        hint = default_hint if genre_names is None else ""
        raise ValueError(f"genre_names: {len(names)} names for {n_genres} label columns{hint}")
    if len(set(names)) != len(names):
        raise ValueError(f"genre_names: duplicate names in {list(names)}")
    return names


def check_genre_subset(genres: Sequence[int] | None, n_genres: int) -> np.ndarray:
    """Optional subset of genre column indices (e.g. the synthetic twin's 'alignment' genres) -> index array."""
    if genres is None:
        return np.arange(n_genres)
    indices = np.asarray(genres)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"genres: expected a non-empty list of integer genre indices, got {genres!r}")
    if indices.min() < 0 or indices.max() >= n_genres or len(np.unique(indices)) != indices.size:
        raise ValueError(f"genres: indices must be distinct and in [0, {n_genres}), got {indices.tolist()}")
    return indices
