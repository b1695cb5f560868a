"""Splits: the official one, the stratified thesis split (shares kept, deterministic), files and the report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.data.splits import (
    Split,
    SplitFileError,
    load_or_create_thesis_split,
    load_split,
    official_split,
    save_split,
    stratification_report,
    thesis_split,
)
from thesis_lib.genres import GENRES, MMIMDB_GENRE_COUNTS, MMIMDB_NUM_MOVIES, NUM_GENRES

REAL_COUNTS = np.array(list(MMIMDB_GENRE_COUNTS.values()))  # (23,)


def mmimdb_like_labels(n_movies: int, seed: int = 0) -> np.ndarray:
    """(n_movies, 23) bool labels whose column sums are the real MM-IMDb genre counts (scaled to n_movies),
    every movie with at least one genre, and genres co-occurring through a low-rank affinity."""
    rng = np.random.default_rng(seed)
    counts = np.round(REAL_COUNTS * n_movies / MMIMDB_NUM_MOVIES).astype(int)  # (23,)
    labels = np.zeros((n_movies, NUM_GENRES), dtype=bool)
    slots = rng.permutation(np.repeat(np.arange(NUM_GENRES), counts))  # one slot per (movie, genre) pair
    primary = slots[:n_movies]  # first genre of each movie, drawn in proportion to the genre counts
    labels[np.arange(n_movies), primary] = True
    factors = rng.normal(size=(NUM_GENRES, 3))
    affinity = np.exp(factors @ factors.T)  # (23, 23): which genres tend to come together
    for genre in range(NUM_GENRES):
        free = np.flatnonzero(~labels[:, genre])
        weights = affinity[primary[free], genre]
        extra = rng.choice(free, size=counts[genre] - labels[:, genre].sum(), replace=False, p=weights / weights.sum())
        labels[extra, genre] = True
    return labels


@pytest.fixture(scope="module")
def full_size() -> tuple[list[str], np.ndarray]:
    labels = mmimdb_like_labels(MMIMDB_NUM_MOVIES)
    ids = [f"{i:07d}" for i in np.random.default_rng(1).choice(9_999_999, MMIMDB_NUM_MOVIES, replace=False)]
    return ids, labels


def test_the_synthetic_label_matrix_looks_like_mm_imdb(full_size):
    _, labels = full_size
    assert labels.shape == (MMIMDB_NUM_MOVIES, NUM_GENRES)
    assert (labels.sum(axis=0) == REAL_COUNTS).all()  # exactly the real genre counts
    assert labels.any(axis=1).all() and 2.4 < labels.sum(axis=1).mean() < 2.6
    correlation = np.corrcoef(labels.T) - np.eye(NUM_GENRES)
    assert np.abs(correlation).max() > 0.1  # genres co-occur, they are not independent


def test_thesis_split_keeps_every_genre_share_at_full_size(full_size):
    ids, labels = full_size
    start = time.perf_counter()
    split = thesis_split(ids, labels, seed=0)
    elapsed = time.perf_counter() - start
    report = stratification_report(split, dict(zip(ids, labels, strict=False)))
    print(
        f"\nstratifier: {elapsed:.2f} s for {len(ids):,} movies; sizes {split.sizes}; "
        f"max abs deviation {report.max_abs_dev_pp.max():.3f} pp; max relative deviation "
        f"{report.max_rel_dev.max():.4f} ({report.max_rel_dev.idxmax()})"
    )
    assert sorted(split.ids) == sorted(ids)
    for part, share in zip(("train", "dev", "test"), (0.70, 0.15, 0.15), strict=False):
        assert abs(split.sizes[part] / len(ids) - share) < 0.005
    assert (report.max_abs_dev_pp <= 1.0).all()
    assert (report.loc[report["count"] >= 100, "max_rel_dev"] <= 0.10).all()
    assert (report["count"] == REAL_COUNTS).all()


def test_an_unstratified_split_would_fail_the_same_bounds(full_size):
    # The bounds above have teeth: a plain random 70/15/15 split misses them for the rare genres.
    ids, labels = full_size
    order = np.random.default_rng(0).permutation(len(ids))
    cut_1, cut_2 = int(0.70 * len(ids)), int(0.85 * len(ids))
    parts = [tuple(ids[i] for i in order[a:b]) for a, b in ((0, cut_1), (cut_1, cut_2), (cut_2, len(ids)))]
    report = stratification_report(Split("thesis", *parts), dict(zip(ids, labels, strict=False)))
    assert (report.max_rel_dev > 0.10).any()


@pytest.fixture(scope="module")
def small() -> tuple[list[str], np.ndarray]:
    labels = mmimdb_like_labels(3000, seed=2)
    return [f"{i:07d}" for i in range(3000)], labels


def test_same_seed_same_split_other_seed_other_split(small):
    ids, labels = small
    first = thesis_split(ids, labels, seed=0)
    assert thesis_split(ids, labels, seed=0) == first
    other = thesis_split(ids, labels, seed=1)
    assert other.test != first.test and other.split_hash() != first.split_hash()


def test_input_order_does_not_matter(small):
    ids, labels = small
    order = np.random.default_rng(3).permutation(len(ids))
    shuffled = thesis_split([ids[i] for i in order], labels[order], seed=0)
    assert shuffled == thesis_split(ids, labels, seed=0)


def test_thesis_split_rejects_bad_input(small):
    ids, labels = small
    with pytest.raises(ValueError, match="shape"):
        thesis_split(ids[:-1], labels)
    with pytest.raises(ValueError, match="unique"):
        thesis_split([ids[0]] * len(ids), labels)
    with pytest.raises(ValueError, match="fractions"):
        thesis_split(ids, labels, fractions=(0.8, 0.15, 0.15))
    with pytest.raises(ValueError, match="too few"):
        thesis_split(ids[:5], labels[:5])


# --------------------------------------------------------------------------------------------------------
# The Split value: validation and hash


def test_split_parts_must_be_disjoint_and_free_of_repeats():
    with pytest.raises(ValueError, match="0000002 is in train and test"):
        Split("thesis", ("0000001", "0000002"), ("0000003",), ("0000002",))
    with pytest.raises(ValueError, match="more than once: 0000001"):
        Split("official", ("0000001", "0000001"), (), ())
    with pytest.raises(ValueError, match="official"):
        Split("mine", (), (), ())  # type: ignore[arg-type]


def test_split_hash_ignores_order_within_a_part_but_not_membership_or_name():
    base = Split("thesis", ("0000001", "0000002"), ("0000003",), ("0000004",), seed=0)
    assert Split("thesis", ("0000002", "0000001"), ("0000003",), ("0000004",), seed=0).split_hash() == base.split_hash()
    moved = Split("thesis", ("0000001",), ("0000002", "0000003"), ("0000004",), seed=0)
    renamed = Split("official", base.train, base.dev, base.test)
    assert len({base.split_hash(), moved.split_hash(), renamed.split_hash()}) == 3


# --------------------------------------------------------------------------------------------------------
# Files


def test_save_and_load_round_trip_atomically(tmp_path, small):
    ids, labels = small
    split = thesis_split(ids, labels, seed=4)
    path = save_split(split, tmp_path / "splits" / "thesis.json")
    assert load_split(path) == split
    assert [p.name for p in path.parent.iterdir()] == ["thesis.json"]  # no temporary file left behind
    assert json.loads(path.read_text())["split_hash"] == split.split_hash()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"name": "thesis", "train": ["0000001"], "dev": ["0000001"], "test": []}', "not disjoint"),
        ('{"name": "thesis", "train": [], "dev": []}', "no 'test' list"),
        ("[1, 2", "not a readable split file"),
        ('{"name": "thesis", "train": ["0000001"], "dev": [], "test": [], "split_hash": "00"}', "split_hash"),
    ],
)
def test_load_split_names_the_file_and_the_problem(tmp_path, content, expected):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(SplitFileError, match=expected) as caught:
        load_split(path)
    assert str(path) in str(caught.value)


# --------------------------------------------------------------------------------------------------------
# Splits of a release


def make_release(ids: list[str], labels: np.ndarray, official: dict[str, tuple[str, ...]] | None = None) -> Release:
    """A Release as load_release would return it (no files needed to test the splits)."""
    movies = {
        movie_id: Movie(movie_id, "A plot.", tuple(g for g, on in zip(GENRES, row, strict=True) if on), Path(f"dataset/{movie_id}.jpeg"))
        for movie_id, row in zip(ids, labels, strict=False)
    }
    official = official or {"train": tuple(ids[:-2]), "dev": (ids[-2],), "test": (ids[-1],)}
    return Release(Path("release"), movies, official, [], [], "0" * 64)


def test_official_split_follows_the_release(small):
    ids, labels = small
    official = {"train": tuple(ids[5:10]), "dev": tuple(ids[:2]), "test": tuple(ids[2:5])}
    release = make_release(ids[:10], labels[:10], official)
    split = official_split(release)
    assert (split.name, split.seed, split.fractions) == ("official", None, None)
    assert (split.train, split.dev, split.test) == (tuple(ids[5:10]), tuple(ids[:2]), tuple(ids[2:5]))


def test_load_or_create_writes_once_then_reuses(tmp_path, small):
    ids, labels = small
    release = make_release(ids[:400], labels[:400])
    path = tmp_path / "thesis_split.json"
    created = load_or_create_thesis_split(release, path, seed=0)
    assert path.exists() and created == thesis_split(release.ids, release.labels(release.ids), seed=0)
    written = path.stat().st_mtime_ns
    assert load_or_create_thesis_split(release, path, seed=0) == created
    assert path.stat().st_mtime_ns == written


def test_load_or_create_refuses_a_file_that_does_not_match(tmp_path, small):
    ids, labels = small
    path = tmp_path / "thesis_split.json"
    load_or_create_thesis_split(make_release(ids[:400], labels[:400]), path, seed=0)
    with pytest.raises(SplitFileError, match=r"1 usable movies are not in the file") as caught:
        load_or_create_thesis_split(make_release(ids[:401], labels[:401]), path, seed=0)
    assert str(path) in str(caught.value) and ids[400] in str(caught.value)
    with pytest.raises(SplitFileError, match="seed 0"):
        load_or_create_thesis_split(make_release(ids[:400], labels[:400]), path, seed=1)


# --------------------------------------------------------------------------------------------------------
# The stratification report


def test_stratification_report_by_hand():
    def row(*genres: str) -> np.ndarray:
        return np.array([genre in genres for genre in GENRES], dtype=float)

    labels = {
        "0000001": row("Drama"), "0000002": row("Drama", "Comedy"), "0000003": row("Comedy"), "0000004": row("Drama"),
        "0000005": row("Comedy"),
    }
    split = Split("thesis", ("0000001", "0000002", "0000003"), ("0000004",), ("0000005",))
    report = stratification_report(split, labels)
    assert list(report.index) == list(GENRES) and report.index.name == "genre"
    assert list(report.columns) == [
        "count", "overall_pct", "train_pct", "dev_pct", "test_pct", "max_abs_dev_pp", "max_rel_dev"
    ]
    drama = report.loc["Drama"]
    assert drama["count"] == 3 and drama["overall_pct"] == pytest.approx(60.0)
    assert (drama["train_pct"], drama["dev_pct"], drama["test_pct"]) == pytest.approx((200 / 3, 100.0, 0.0))
    assert drama["max_abs_dev_pp"] == pytest.approx(60.0)  # the test part has no Drama at all
    assert drama["max_rel_dev"] == pytest.approx(1.0)
    assert report.loc["Western", "count"] == 0 and np.isnan(report.loc["Western", "max_rel_dev"])
    with pytest.raises(KeyError, match="0000009"):
        stratification_report(Split("thesis", ("0000009",), (), ()), labels)
