"""Train/dev/test splits: the official one from split.json, and the thesis's own 70/15/15 split.

The thesis split is stratified over the 23 genres with iterative stratification (Sechidis et al., 2011),
as implemented by the `iterative-stratification` package: first the test part is split off all movies,
then the dev part off the rest. It is a pure function of (the set of ids, their labels, seed, fractions):
ids are sorted first, so the order in which movies were read never changes the split.

A split is saved once and reused (`load_or_create_thesis_split`): a split file that no longer matches the
release raises instead of being regenerated, because a silently new test set would make every earlier
result incomparable without anyone noticing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from thesis_lib.data.mmimdb import SPLIT_NAMES, Release
from thesis_lib.errors import ThesisError
from thesis_lib.genres import GENRES, NUM_GENRES
from thesis_lib.storage import stable_hash, write_text_atomic

if TYPE_CHECKING:
    import pandas as pd

SplitName = Literal["official", "thesis"]
PART_NAMES: tuple[str, ...] = SPLIT_NAMES  # ("train", "dev", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train, dev, test


class SplitFileError(ThesisError, ValueError):
    """A split file is unreadable, malformed, inconsistent, or does not match the release it is used with."""


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of a release's ids. Validated on construction."""

    name: SplitName                                     # "official" (split.json) or "thesis" (stratified)
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]
    seed: int | None = None                             # stratifier seed; None for the official split
    fractions: tuple[float, float, float] | None = None  # requested train/dev/test shares; None for official

    def __post_init__(self) -> None:
        if self.name not in ("official", "thesis"):
            raise ValueError(f"split name must be 'official' or 'thesis', got {self.name!r}")
        seen: dict[str, str] = {}
        for part in PART_NAMES:
            ids = getattr(self, part)
            if not all(isinstance(movie_id, str) for movie_id in ids):
                raise ValueError(f"{part} holds a non-string id")
            if len(set(ids)) != len(ids):
                repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
                raise ValueError(f"{part} lists ids more than once: {', '.join(repeated)}")
            for movie_id in ids:
                if movie_id in seen:
                    raise ValueError(f"parts are not disjoint: {movie_id} is in {seen[movie_id]} and {part}")
                seen[movie_id] = part

    def part(self, name: str) -> tuple[str, ...]:
        """The ids of "train", "dev" or "test"."""
        if name not in PART_NAMES:
            raise KeyError(f"no part {name!r}; expected one of {', '.join(PART_NAMES)}")
        return getattr(self, name)

    @property
    def sizes(self) -> dict[str, int]:
        return {part: len(self.part(part)) for part in PART_NAMES}

    @property
    def ids(self) -> tuple[str, ...]:
        """Every id of the split, sorted."""
        return tuple(sorted((*self.train, *self.dev, *self.test)))

    def split_hash(self) -> str:
        """sha256 hex over the name and each part's ids (sorted within a part, so order does not matter)."""
        canonical = {"name": self.name} | {part: sorted(self.part(part)) for part in PART_NAMES}
        return stable_hash(canonical)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "seed": self.seed,
            "fractions": list(self.fractions) if self.fractions is not None else None,
            "sizes": self.sizes,
            "split_hash": self.split_hash(),
            **{part: list(self.part(part)) for part in PART_NAMES},
        }


# --------------------------------------------------------------------------------------------------------
# Making splits


def official_split(release: Release) -> Split:
    """The official split of split.json, restricted to the release's usable movies (split.json order)."""
    return Split("official", *(release.official_split[part] for part in PART_NAMES))


def named_split(release: Release, name: str, seed: int = 0) -> Split:
    """The split a profile names: "official" (split.json) or "thesis" (stratified 70/15/15 with `seed`).

    The thesis split is a pure function of the release and the seed, so this equals the file the grid
    stores under RUNS/splits/ (`load_or_create_thesis_split`); notebooks that only read use this.
    """
    if name == "official":
        return official_split(release)
    if name == "thesis":
        return thesis_split(release.ids, release.labels(release.ids), seed=seed)
    raise ValueError(f"unknown split {name!r}; expected 'thesis' or 'official'")


def thesis_split(
    ids: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> Split:
    """Multi-label stratified train/dev/test split of `ids` with multi-hot `labels` of shape (N, 23).

    Deterministic: the same (set of ids, labels, seed, fractions) gives the same split whatever the input
    order. Part sizes can differ from `fractions` by a few movies: the stratifier prefers matching every
    genre's share over exact part sizes.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # imports scikit-learn: lazily

    ids = list(ids)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != len(ids):
        raise ValueError(f"labels must have shape ({len(ids)}, n_genres) for {len(ids)} ids, got {labels.shape}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids are not unique")
    _check_fractions(fractions)
    train_share, dev_share, test_share = fractions
    if min(fractions) * len(ids) < 1:
        raise ValueError(f"{len(ids)} movies are too few for fractions {fractions}: a part would be empty")

    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")  # sorted ids: input order is irrelevant
    sorted_ids = [ids[i] for i in order]
    y = labels[order] > 0.5  # (N, K) bool
    rng = np.random.RandomState(seed)  # one stream for both stages: seeded, hence reproducible

    def stratified_halves(rows: np.ndarray, second_share: float) -> tuple[np.ndarray, np.ndarray]:
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=second_share, random_state=rng)
        first, second = next(splitter.split(np.zeros((len(rows), 1)), y[rows]))
        return rows[first], rows[second]

    def as_ids(rows: np.ndarray) -> tuple[str, ...]:
        return tuple(sorted_ids[i] for i in np.sort(rows))

    rest, test = stratified_halves(np.arange(len(sorted_ids)), test_share)
    train, dev = stratified_halves(rest, dev_share / (train_share + dev_share))
    return Split("thesis", as_ids(train), as_ids(dev), as_ids(test), seed=seed, fractions=tuple(fractions))


def load_or_create_thesis_split(
    release: Release,
    path: str | os.PathLike[str],
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> Split:
    """The thesis split of `release`: read from `path` if it exists, else made once and written there.

    An existing file must hold a thesis split with this seed and fractions over exactly the release's usable
    ids; otherwise SplitFileError says what differs (delete the file, or pass another path, to make a new
    split on purpose).
    """
    path = Path(path)
    ids = release.ids
    if not path.exists():
        split = thesis_split(ids, release.labels(ids), seed=seed, fractions=fractions)
        save_split(split, path)
        return split
    split = load_split(path)
    if split.name != "thesis":
        raise SplitFileError(f"{path} holds the {split.name!r} split, not a thesis split")
    if split.seed != seed or split.fractions is None or not np.allclose(split.fractions, fractions):
        raise SplitFileError(
            f"{path} was made with seed {split.seed} and fractions {split.fractions}; asked for seed {seed} and "
            f"fractions {tuple(fractions)} (use another path for another split)"
        )
    in_file, in_release = set(split.ids), set(ids)
    if in_file != in_release:
        extra, missing = sorted(in_file - in_release), sorted(in_release - in_file)
        raise SplitFileError(
            f"{path} does not match the release at {release.root}: {len(extra)} ids in the file are not usable "
            f"movies of the release{_examples(extra)}, {len(missing)} usable movies are not in the file"
            f"{_examples(missing)}; delete the file to make a new split (earlier results then no longer compare)"
        )
    return split


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3 or min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be three positive train/dev/test shares summing to 1, got {fractions}")


def _examples(ids: list[str], limit: int = 3) -> str:
    return f" (e.g. {', '.join(ids[:limit])})" if ids else ""


# --------------------------------------------------------------------------------------------------------
# Files


def save_split(split: Split, path: str | os.PathLike[str]) -> Path:
    """Write `split` as JSON, atomically (a reader never sees half a file); returns the path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(split.to_dict(), indent=1) + "\n")
    return path


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a split file written by `save_split`; SplitFileError names the file and the problem."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8, not JSON; Recursion: nested too deep
        raise SplitFileError(f"{path}: not a readable split file: {error}") from None
    if not isinstance(content, dict):
        raise SplitFileError(f"{path}: not a split file (expected a JSON object)")
    for part in PART_NAMES:
        if not isinstance(content.get(part), list):
            raise SplitFileError(f"{path}: no {part!r} list")
    fractions = content.get("fractions")
    try:
        split = Split(
            name=content.get("name"),  # type: ignore[arg-type]
            train=tuple(content["train"]),
            dev=tuple(content["dev"]),
            test=tuple(content["test"]),
            seed=content.get("seed"),
            fractions=tuple(fractions) if isinstance(fractions, list) else None,  # type: ignore[arg-type]
        )
    except ValueError as error:
        raise SplitFileError(f"{path}: {error}") from None
    stored_hash = content.get("split_hash")
    if stored_hash is not None and stored_hash != split.split_hash():
        raise SplitFileError(f"{path}: its ids do not match its split_hash (edited by hand?)")
    return split


# --------------------------------------------------------------------------------------------------------
# How well a split keeps each genre's share


def stratification_report(split: Split, labels_by_id: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per genre (rows, canonical order): how many movies of the split have it, its share overall and in
    each part (percent), the largest absolute deviation of a part from the overall share (percentage
    points), and the largest relative deviation (a fraction of the overall share)."""
    import pandas as pd  # heavy: only the data notebook and tests need it

    def matrix(ids: Sequence[str]) -> np.ndarray:
        try:
            rows = [np.asarray(labels_by_id[movie_id], dtype=np.float64) > 0.5 for movie_id in ids]
        except KeyError as error:
            raise KeyError(f"no labels for id {error.args[0]!r} of the {split.name} split") from None
        return np.stack(rows) if rows else np.zeros((0, NUM_GENRES), dtype=bool)  # (N, 23)

    parts = {part: matrix(split.part(part)) for part in PART_NAMES}
    overall = np.concatenate(list(parts.values()))  # (N_all, 23)
    if overall.shape[1] != NUM_GENRES:
        raise ValueError(f"labels have {overall.shape[1]} columns, expected {NUM_GENRES} genres")
    overall_share = overall.mean(axis=0) * 100  # (23,)
    part_shares = np.stack([parts[part].mean(axis=0) * 100 for part in PART_NAMES])  # (3, 23)
    deviation = np.abs(part_shares - overall_share)  # (3, 23), percentage points
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(overall_share > 0, deviation / overall_share, np.nan)  # (3, 23)
    table = pd.DataFrame(
        {
            "count": overall.sum(axis=0).astype(int),
            "overall_pct": overall_share,
            **{f"{part}_pct": part_shares[i] for i, part in enumerate(PART_NAMES)},
            "max_abs_dev_pp": deviation.max(axis=0),
            "max_rel_dev": relative.max(axis=0),
        },
        index=pd.Index(GENRES, name="genre"),
    )
    return table
