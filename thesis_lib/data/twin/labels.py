"""Genre sets for the synthetic twin: MM-IMDb-like frequencies and co-occurrence, label noise, ids, split.

Labels come from a Gaussian copula: a latent vector z ~ N(0, R) per movie, genre g present when
z_g > Phi^-1(1 - p_g). The thresholds fix the marginal frequencies p_g (MM-IMDb's, with the rare tail
lifted to a floor); the correlation matrix R makes plausible pairs co-occur (Crime-Thriller,
Animation-Family, ...) and implausible ones avoid each other (Documentary-Drama).

Everything here is vectorised over movies and uses its own random streams, so the label draw can be
checked (frequencies, floor, test counts) without rendering a single poster.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.genres import GENRE_INDEX, GENRES, MMIMDB_GENRE_COUNTS, MMIMDB_NUM_MOVIES, NUM_GENRES

# Random streams under the root seed (per-movie streams are default_rng([seed, index]), two entries;
# these have three, so they can never collide with a movie's stream).
LABEL_STREAM = (1, 0)
NOISE_STREAM = (2, 0)
ID_STREAM = (3, 0)
SPLIT_STREAM = (4, 0)

# Latent correlations of the copula (symmetric pairs; unlisted pairs are 0).
GENRE_CORRELATIONS: dict[tuple[str, str], float] = {
    ("Crime", "Thriller"): 0.45, ("Action", "Adventure"): 0.45, ("Animation", "Family"): 0.6,
    ("Comedy", "Romance"): 0.35, ("Drama", "Romance"): 0.3, ("Music", "Musical"): 0.45,
    ("Biography", "History"): 0.45, ("War", "History"): 0.45, ("Horror", "Thriller"): 0.35,
    ("Mystery", "Thriller"): 0.4, ("Crime", "Drama"): 0.2, ("Action", "Thriller"): 0.3,
    ("Action", "Crime"): 0.25, ("Adventure", "Fantasy"): 0.35, ("Family", "Fantasy"): 0.3,
    ("Action", "Sci-Fi"): 0.3, ("Horror", "Sci-Fi"): 0.2, ("Adventure", "Family"): 0.3,
    ("Animation", "Short"): 0.35, ("Biography", "Drama"): 0.25, ("Drama", "War"): 0.25,
    ("Drama", "Sport"): 0.15, ("Comedy", "Family"): 0.25, ("Crime", "Film-Noir"): 0.4,
    ("Mystery", "Film-Noir"): 0.3, ("Action", "Western"): 0.15, ("Biography", "Documentary"): 0.3,
    ("Documentary", "History"): 0.3, ("Documentary", "Music"): 0.25, ("Documentary", "Drama"): -0.4,
    ("Comedy", "Documentary"): -0.2, ("Comedy", "Drama"): -0.25, ("Drama", "Horror"): -0.2,
    ("Horror", "Mystery"): 0.25, ("Musical", "Romance"): 0.25, ("Comedy", "Musical"): 0.2,
    ("Animation", "Comedy"): 0.3, ("Documentary", "Short"): 0.2, ("Animation", "Drama"): -0.2,
    ("Crime", "Mystery"): 0.3, ("Sport", "Documentary"): 0.1,
}


def target_frequencies(floor: float) -> np.ndarray:
    """MM-IMDb genre frequencies, shape (23,), with the rare tail lifted to a floor.

    Genres below floor + 0.01 are mapped linearly into [floor, floor + 0.01], so they keep their
    MM-IMDb order while each gets enough movies (at 2,000 movies and 30% test, floor 0.04 means ~24
    test movies expected). The other genres are scaled down by the same factor so the expected
    number of genres per movie stays MM-IMDb's (~2.48).
    """
    frequencies = np.array([MMIMDB_GENRE_COUNTS[g] / MMIMDB_NUM_MOVIES for g in GENRES])  # (23,)
    total = frequencies.sum()
    knee = floor + 0.01
    rarest = frequencies.min()
    tail = frequencies < knee
    if rarest < floor:
        frequencies[tail] = floor + (frequencies[tail] - rarest) / (knee - rarest) * (knee - floor)
        head_total = frequencies[~tail].sum()
        frequencies[~tail] *= (total - frequencies[tail].sum()) / head_total
    return frequencies


def copula_correlation() -> np.ndarray:
    """The latent correlation matrix R (23, 23), made positive definite by eigenvalue clipping."""
    correlation = np.eye(NUM_GENRES)
    for (a, b), rho in GENRE_CORRELATIONS.items():
        correlation[GENRE_INDEX[a], GENRE_INDEX[b]] = correlation[GENRE_INDEX[b], GENRE_INDEX[a]] = rho
    eigenvalues, eigenvectors = np.linalg.eigh(correlation)
    if eigenvalues.min() < 1e-3:
        correlation = eigenvectors @ np.diag(np.clip(eigenvalues, 1e-3, None)) @ eigenvectors.T
        scale = 1.0 / np.sqrt(np.diag(correlation))
        correlation = correlation * scale[:, None] * scale[None, :]
    return correlation


@dataclass(frozen=True)
class LabelDraw:
    """The label side of one twin: everything decided before any poster or plot is made."""

    clean: np.ndarray    # bool (N, 23): the genres the generating rule will plant evidence for
    written: np.ndarray  # bool (N, 23): clean with label noise, as written to <id>.json
    ids: list[str]       # N unique 7-digit id strings; movie i has ids[i]
    split: dict[str, list[int]]  # "train"/"dev"/"test" -> movie indices (disjoint, complete)


def sample_clean_labels(config: TwinConfig) -> np.ndarray:
    """Draw the clean genre sets from the copula: bool (N, 23), every row with 1..max_genres genres."""
    rng = np.random.default_rng([config.seed, *LABEL_STREAM])
    frequencies = target_frequencies(config.genre_frequency_floor)  # (23,)
    thresholds = np.array([NormalDist().inv_cdf(1.0 - p) for p in frequencies])  # (23,)
    cholesky = np.linalg.cholesky(copula_correlation())  # (23, 23)

    def draw(count: int) -> np.ndarray:
        latent = rng.standard_normal((count, NUM_GENRES)) @ cholesky.T  # (count, 23) ~ N(0, R)
        labels = latent > thresholds  # (count, 23)
        # A movie needs a genre: give an empty row the genre whose latent came closest to its threshold
        # (mostly Drama or Comedy, as an MM-IMDb movie with a single genre usually has).
        empty = ~labels.any(axis=1)
        labels[empty, np.argmax(latent[empty] - thresholds, axis=1)] = True
        return labels

    labels = draw(config.n_movies)
    while (crowded := labels.sum(axis=1) > config.max_genres_per_movie).any():
        labels[crowded] = draw(int(crowded.sum()))
    return labels


def add_label_noise(clean: np.ndarray, config: TwinConfig) -> np.ndarray:
    """Written labels: each movie, with probability noise_rate, gets exactly one edit (see TwinConfig.noise_rate)."""
    rng = np.random.default_rng([config.seed, *NOISE_STREAM])
    frequencies = target_frequencies(config.genre_frequency_floor)  # (23,)
    written = clean.copy()
    noisy = rng.random(len(clean)) < config.noise_rate  # (N,)
    removes = rng.random(len(clean)) < 0.5  # (N,)
    for index in np.flatnonzero(noisy):
        present = np.flatnonzero(clean[index])
        if removes[index] and len(present) >= 2:
            written[index, rng.choice(present)] = False
        else:
            absent = np.flatnonzero(~clean[index])
            weights = frequencies[absent] / frequencies[absent].sum()
            written[index, rng.choice(absent, p=weights)] = True
    return written


def sample_ids(config: TwinConfig) -> list[str]:
    """N unique 7-digit IMDb-style id strings ("0106714")."""
    rng = np.random.default_rng([config.seed, *ID_STREAM])
    numbers = rng.choice(9_999_999, size=config.n_movies, replace=False) + 1  # 0000001 .. 9999999
    return [f"{number:07d}" for number in numbers]


def assign_split(config: TwinConfig) -> dict[str, list[int]]:
    """A random train/dev/test partition of the movie indices in the configured proportions."""
    rng = np.random.default_rng([config.seed, *SPLIT_STREAM])
    order = rng.permutation(config.n_movies)
    n_test = round(config.n_movies * config.split_fractions[2])
    n_dev = round(config.n_movies * config.split_fractions[1])
    n_train = config.n_movies - n_dev - n_test
    return {
        "train": order[:n_train].tolist(),
        "dev": order[n_train:n_train + n_dev].tolist(),
        "test": order[n_train + n_dev:].tolist(),
    }


def draw_labels(config: TwinConfig) -> LabelDraw:
    """The whole label side of a twin (cheap: no posters, no plots)."""
    clean = sample_clean_labels(config)
    return LabelDraw(clean=clean, written=add_label_noise(clean, config), ids=sample_ids(config),
                     split=assign_split(config))
