"""The MM-IMDb Dataset (one movie -> poster tensor, cleaned plot, labels) and the batching collator.

Items carry the cleaned plot as a string; tokenisation happens in `MultimodalCollator`, once per batch:
a fast tokenizer encodes a batch of plots in one call far faster than plot by plot, and padding to the
longest plot of the batch (not to 512) keeps short batches cheap.

The collator returns the batch contract every model and the training loop rely on:
    {"ids": list[str] (B),
     "image": float32 (B, 3, H, W) normalised            -- when the image modality is on,
     "input_ids": int64 (B, L), "attention_mask": int64 (B, L) 1 = real token   -- when text is on,
     "labels": float32 (B, 23) multi-hot}
Both classes are plain top-level objects, so DataLoader workers can pickle them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
# Every text encoder here has 512 positions.
MAX_TEXT_LENGTH = 512


class MMIMDbDataset(Dataset):
    """Movies -> dicts {"id", "image" (3, H, W) if "image" in modalities, "text" (cleaned plot) if
    "text" in modalities, "labels" float32 (23,)}.

    `tokenizer` is not used per item (see the module docstring); it is kept as `dataset.tokenizer` so
    the matching collator can be built from the dataset: `MultimodalCollator(dataset.tokenizer)`.
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


@dataclass(frozen=True, eq=False)
class MultimodalCollator:
    """List of dataset items -> the batch contract (see the module docstring).

    Text is tokenised here, batched: padded to the longest plot in the batch (rounded up to
    `pad_to_multiple_of` if set, which helps tensor cores) and truncated to `max_length` tokens.
    """

    tokenizer: Any = None                # a Hugging Face tokenizer; only needed when items carry text
    max_length: int = MAX_TEXT_LENGTH    # truncation length in tokens, special tokens included
    pad_to_multiple_of: int | None = None  # round L up (e.g. 8 for tensor cores); must divide max_length

    def __post_init__(self) -> None:
        if not 2 <= self.max_length <= MAX_TEXT_LENGTH:
            raise ValueError(f"max_length must be in [2, {MAX_TEXT_LENGTH}], got {self.max_length}")
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", MAX_TEXT_LENGTH)
        if self.max_length > tokenizer_limit:
            raise ValueError(f"max_length {self.max_length} exceeds the tokenizer's limit {tokenizer_limit}")
        multiple = self.pad_to_multiple_of
        if multiple is not None and (multiple < 1 or self.max_length % multiple):
            # Otherwise a batch truncated at max_length would be padded back beyond it.
            raise ValueError(
                f"max_length {self.max_length} is not a multiple of pad_to_multiple_of {self.pad_to_multiple_of}"
            )

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        keys = set(items[0])
        if any(set(item) != keys for item in items):
            raise ValueError("items in one batch carry different keys (mixed modalities?)")
        batch: dict[str, Any] = {"ids": [item["id"] for item in items]}
        if "image" in keys:
            batch["image"] = torch.stack([item["image"] for item in items])  # (B, 3, H, W)
        if "text" in keys:
            batch |= self._tokenize([item["text"] for item in items])
        batch["labels"] = torch.stack([item["labels"] for item in items]).float()  # (B, 23)
        return batch

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError("items carry text but the collator has no tokenizer")
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        return {
            "input_ids": encoded["input_ids"].long(),  # (B, L)
            "attention_mask": encoded["attention_mask"].long(),  # (B, L), 1 = real token
        }
