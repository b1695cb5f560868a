"""The 23 MM-IMDb genres, in the fixed order used for every label vector in this project.

The order is the one of the genre counts over the whole release (most to least frequent), as in
Arevalo et al. (2017). Label vectors, per-genre tables and figures all index genres in this order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Genre counts over the whole MM-IMDb release (25,959 movies, mean ~2.5 genres per movie).
MMIMDB_GENRE_COUNTS: dict[str, int] = {
    "Drama": 13967,
    "Comedy": 8592,
    "Romance": 5364,
    "Thriller": 5192,
    "Crime": 3838,
    "Action": 3550,
    "Adventure": 2710,
    "Horror": 2703,
    "Documentary": 2082,
    "Mystery": 2057,
    "Sci-Fi": 1991,
    "Fantasy": 1933,
    "Family": 1668,
    "Biography": 1343,
    "War": 1335,
    "History": 1143,
    "Music": 1045,
    "Animation": 997,
    "Musical": 841,
    "Western": 705,
    "Sport": 634,
    "Short": 471,
    "Film-Noir": 338,
}
MMIMDB_NUM_MOVIES = 25959

GENRES: tuple[str, ...] = tuple(MMIMDB_GENRE_COUNTS)
NUM_GENRES = len(GENRES)  # 23
GENRE_INDEX: dict[str, int] = {genre: i for i, genre in enumerate(GENRES)}

# Genres that appear in the release but are dropped by every published MM-IMDb loader (too rare).
DROPPED_GENRES: tuple[str, ...] = ("News", "Adult", "Talk-Show", "Reality-TV")


def filter_genres(genres: Iterable[str]) -> tuple[str, ...]:
    """Keep the 23 MM-IMDb genres (deduplicated, in canonical order); drop everything else."""
    present = set(genres)
    return tuple(genre for genre in GENRES if genre in present)


def unknown_genres(genres: Iterable[str]) -> tuple[str, ...]:
    """Genres that are neither one of the 23 nor one of the four documented drops (worth a warning)."""
    return tuple(sorted({g for g in genres if g not in GENRE_INDEX and g not in DROPPED_GENRES}))


def to_multi_hot(genres: Iterable[str]) -> np.ndarray:
    """Genre names -> float32 multi-hot vector of shape (23,). Names outside the 23 are ignored."""
    vector = np.zeros(NUM_GENRES, dtype=np.float32)
    for genre in genres:
        index = GENRE_INDEX.get(genre)
        if index is not None:
            vector[index] = 1.0
    return vector


