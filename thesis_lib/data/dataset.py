"""The MM-IMDb Dataset: one movie -> {"id", poster tensor, cleaned plot, labels}.

Items carry the cleaned plot as a string; `thesis_lib.data.batch.MultimodalCollator` tokenises a batch of
them at once and assembles the batch (its module docstring is the reference for the batch's keys).
The dataset is a plain top-level object, so DataLoader workers can pickle it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from thesis_lib.data.images import load_poster
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import TextCleaningConfig, clean_text
from thesis_lib.genres import GENRE_INDEX, to_multi_hot

MODALITIES = ("text", "image", "objects")  # the canonical order of modalities everywhere (weights, concatenation)
RELEASE_MODALITIES = ("text", "image")  # what a dataset item reads from the release; detections come with the batch


class MMIMDbDataset(Dataset):
    """Movies -> dicts {"id", "image" (3, H, W) if "image" in modalities, "text" (cleaned plot) if
    "text" in modalities, "labels" float32 (23,)}.

    `tokenizer` is not used per item (see the module docstring); it is kept as `dataset.tokenizer` so
    the matching collator can be built from the dataset: `data.batch.MultimodalCollator(dataset.tokenizer)`.
    """

    def __init__(
        self,
        movies: Sequence[Movie],
        *,
        image_transform: Callable[[Image.Image], torch.Tensor] | None,
        text_cleaning: TextCleaningConfig,
        tokenizer: Any = None,
        modalities: Sequence[str] = RELEASE_MODALITIES,
    ):
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in RELEASE_MODALITIES]
        if unknown or not modalities:
            raise ValueError(f"modalities must be a non-empty subset of {RELEASE_MODALITIES}, got {modalities}")
        if "image" in modalities and image_transform is None:
            raise ValueError("the image modality needs an image_transform (see build_image_transform)")
        _check_movies(movies)
        self.movies = list(movies)
        self.image_transform = image_transform
        self.text_cleaning = text_cleaning
        self.tokenizer = tokenizer
        self.modalities = modalities
        # (N, 23) multi-hot labels of every movie, so callers (pos_weight, baselines) need not load items.
        self.labels = torch.from_numpy(np.stack([to_multi_hot(m.genres) for m in self.movies]))

    def __len__(self) -> int:
        return len(self.movies)

    def item_lengths(self) -> list[int]:
        """Words per cleaned plot (0 without text), the sort key of length-grouped batches
        (TrainConfig.group_by_length). Words, not tokens, so no tokenizer runs here; the two grow together."""
        if "text" not in self.modalities:
            return [0] * len(self.movies)
        return [len(clean_text(movie.plot, self.text_cleaning).split()) for movie in self.movies]

    def __getitem__(self, index: int) -> dict[str, Any]:
        movie = self.movies[index]
        item: dict[str, Any] = {"id": movie.id}
        if "image" in self.modalities:
            item["image"] = self.image_transform(load_poster(movie.poster))  # (3, H, W)
        if "text" in self.modalities:
            item["text"] = clean_text(movie.plot, self.text_cleaning)
        item["labels"] = torch.from_numpy(to_multi_hot(movie.genres))  # float32 (23,)
        return item


def _check_movies(movies: Sequence[Movie]) -> None:
    """Refuse input that would silently mislabel: duplicate ids, genres outside the 23."""
    seen = set()
    for movie in movies:
        if movie.id in seen:
            raise ValueError(f"movie {movie.id} appears twice")
        seen.add(movie.id)
        unknown = [genre for genre in movie.genres if genre not in GENRE_INDEX]
        if unknown:
            raise ValueError(f"movie {movie.id} has genres outside the 23 MM-IMDb genres: {unknown}")
