"""The synthetic twin's true object boxes, per poster: training targets, evaluation truth and the oracle.

The twin's generator records every drawn object in `twin_truth.json` (`movies[id]["objects"]`: label and
box [x0, y0, x1, y1] in the poster JPEG's pixels). A real MM-IMDb release has no such file: there the
only object source is a COCO-pretrained detector.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from thesis_lib.data.mmimdb import Release
from thesis_lib.data.splits import Split, official_split
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.detection.detections import Detections
from thesis_lib.detection.vocab import class_index
from thesis_lib.errors import ThesisError


@dataclass(frozen=True)
class PosterBoxes:
    """The true objects of one poster."""

    boxes: np.ndarray  # (K, 4) float32 xyxy in the poster's pixels
    classes: np.ndarray  # (K,) int64 ids of the vocabulary they were read with
    size: tuple[int, int]  # (width, height) of the poster JPEG

    def normalised(self) -> np.ndarray:
        """Boxes as fractions of the poster's width and height, (K, 4) in [0, 1]."""
        width, height = self.size
        return self.boxes / np.array([width, height, width, height], dtype=np.float32)  # (K, 4)

    def as_detections(self) -> Detections:
        """The truth as a perfect detector's output: normalised boxes, score 1 (the oracle source)."""
        return Detections(torch.from_numpy(self.normalised()), torch.from_numpy(self.classes),
                          torch.ones(len(self.classes)))


@dataclass(frozen=True)
class TwinAnnotations:
    """What a detector is trained and checked on: true boxes of the training and the dev posters."""

    vocabulary: tuple[str, ...]
    train: dict[str, PosterBoxes]  # id -> boxes, the (subsampled) training posters
    dev: dict[str, PosterBoxes]  # id -> boxes, all dev posters: mAP@0.5 is measured here
    posters: dict[str, Path]  # id -> poster JPEG, for every id above


def truth_file(release: Release, truth_path: Path | str | None = None) -> Path:
    """`truth_path`, else the release's own twin_truth.json; a clear error when there is none."""
    path = Path(truth_path) if truth_path is not None else release.root / TRUTH_FILE
    if not path.is_file():
        raise ThesisError(
            f"{path} not found: object boxes exist only for the synthetic twin. On a real MM-IMDb release use "
            "COCO-pretrained detectors (DetectorConfig(weights='coco')); the 'oracle' source is twin-only"
        )
    return path


def load_truth_boxes(release: Release, ids: Sequence[str], vocabulary: tuple[str, ...],
                     truth_path: Path | str | None = None, *, named_only: bool = False) -> dict[str, PosterBoxes]:
    """The true boxes of the posters `ids` (in that order), with class ids of `vocabulary`. A label outside
    `vocabulary` is an error, unless `named_only`: then only the objects `vocabulary` names are kept (a COCO
    detector scored on the twin, whose lamps COCO has no class for)."""
    path = truth_file(release, truth_path)
    movies = _read_movies(path)
    result = {}
    for movie_id in ids:
        if movie_id not in movies:
            raise ThesisError(
                f"{path} has no entry for movie {movie_id}: is it the truth of the release at {release.root}?")
        objects = [obj for obj in movies[movie_id]["objects"] if not named_only or obj["label"] in vocabulary]
        where = f"{path} (movie {movie_id})"
        boxes = np.array([obj["box"] for obj in objects], dtype=np.float32).reshape(-1, 4)  # (K, 4)
        classes = np.array([class_index(vocabulary, obj["label"], where) for obj in objects], dtype=np.int64)  # (K,)
        with Image.open(release.movies[movie_id].poster) as image:  # header only: the size, not the pixels
            size = image.size
        width, height = size
        if len(boxes) and (boxes.min() < 0 or (boxes[:, [0, 2]] > width).any() or (boxes[:, [1, 3]] > height).any()
                           or (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any()):
            raise ThesisError(f"{where}: boxes {boxes.tolist()} are not xyxy inside the {width}x{height} poster")
        result[movie_id] = PosterBoxes(boxes=boxes, classes=classes, size=size)
    return result


def _read_movies(path: Path) -> dict:
    """The `movies` entry of a twin truth file (id -> objects, ...)."""
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ThesisError(f"{path} is not valid JSON: {error}") from error
    if "movies" not in truth:
        raise ThesisError(f"{path} has no 'movies' entry: it was not written by generate_twin")
    return truth["movies"]


def load_twin_annotations(release: Release, vocabulary: tuple[str, ...], train_posters: int, seed: int,
                          truth_path: Path | str | None = None, split: Split | None = None) -> TwinAnnotations:
    """True boxes of up to `train_posters` training posters (a seeded subsample) and of every dev poster.

    Train and dev posters come from `split` (default: the official split), so that a detector never sees
    a poster of the test part of the split its genre models are scored on.
    """
    split = official_split(release) if split is None else split
    train_ids, dev_ids = list(split.train), list(split.dev)
    if not train_ids or not dev_ids:
        raise ThesisError(f"{release.root}: detectors are trained on the train part and checked on the dev part; "
                          f"the {split.name} split has {len(train_ids)} train and {len(dev_ids)} dev posters")
    if len(train_ids) > train_posters:
        chosen = np.random.default_rng(seed).choice(len(train_ids), size=train_posters, replace=False)
        train_ids = [train_ids[index] for index in sorted(chosen)]
    return TwinAnnotations(
        vocabulary=vocabulary,
        train=load_truth_boxes(release, train_ids, vocabulary, truth_path),
        dev=load_truth_boxes(release, dev_ids, vocabulary, truth_path),
        posters={movie_id: release.movies[movie_id].poster for movie_id in train_ids + dev_ids},
    )
