"""Synthetic batches in the batch contract (`thesis_lib.data.batch`), shaped for a built model (speed does not
depend on content).

Text: random ids below the encoder's vocabulary, real tokens first and padding after (`lengths` per
sample, else every sample is `text_length` long). Image: standard-normal pixels (already "normalised").
Objects: `regions` random boxes per poster, all real. Labels: random multi-hot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.classifier import GenreClassifier

_FIRST_ORDINARY_ID = 5  # below this sit the special tokens of every vocabulary here ([PAD], <s>, ...)


@dataclass(frozen=True)
class BatchShape:
    """The size of one synthetic batch."""

    batch_size: int  # movies per batch
    text_length: int  # L: tokens per plot (special tokens included), the padded width of the batch
    image_size: int  # S: poster side in pixels
    regions: int = 8  # R: detections per poster, for models that read objects

    def to_dict(self) -> dict[str, int]:
        return {"batch_size": self.batch_size, "text_length": self.text_length,
                "image_size": self.image_size, "regions": self.regions}


def synthetic_batch(
    model: GenreClassifier,
    shape: BatchShape,
    *,
    device: torch.device,
    seed: int = 0,
    lengths: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A batch for every input `model` reads, on `device` (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    size = shape.batch_size
    batch: dict[str, Any] = {
        "ids": [f"{index:07d}" for index in range(size)],
        "labels": (torch.rand(size, NUM_GENRES, generator=generator) < 0.1).float(),  # (B, 23)
    }
    if "text" in model.encoders:
        batch |= _text(model, shape, generator, lengths)
    if "image" in model.encoders:
        pixels = torch.randn(size, 3, shape.image_size, shape.image_size, generator=generator)  # (B, 3, S, S)
        batch["image"] = pixels
    if "objects" in model.encoders:
        num_classes = model.encoders["objects"].config.num_classes
        batch["objects"] = random_objects(size, num_classes, shape.regions, generator)
    return {key: _to(value, device) for key, value in batch.items()}


def _text(model: GenreClassifier, shape: BatchShape, generator: torch.Generator,
          lengths: Sequence[int] | None) -> dict[str, torch.Tensor]:
    encoder = model.encoders["text"]
    size, width = shape.batch_size, shape.text_length
    real = torch.full((size,), width) if lengths is None else torch.as_tensor(list(lengths))  # (B,)
    if real.shape != (size,) or int(real.max()) > width or int(real.min()) < 1:
        raise ValueError(f"lengths must be {size} values in 1..{width}, got {list(real)}")
    ids = torch.randint(_FIRST_ORDINARY_ID, encoder.vocab_size, (size, width), generator=generator)  # (B, L)
    mask = (torch.arange(width)[None, :] < real[:, None]).long()  # (B, L) 1 = real token
    ids = ids.masked_fill(mask == 0, encoder.pad_token_id)  # (B, L) padding holds the pad id
    return {"input_ids": ids, "attention_mask": mask}


def random_objects(size: int, num_classes: int, regions: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """`regions` random detections for each of `size` posters, all real (the batch["objects"] format)."""
    corners = torch.rand(size, regions, 2, 2, generator=generator)  # (B, R, 2 points, xy)
    low, high = corners.min(dim=2).values, corners.max(dim=2).values  # (B, R, 2) each
    return {
        "boxes": torch.cat([low, high], dim=-1),  # (B, R, 4) normalised xyxy, x1 <= x2, y1 <= y2
        "classes": torch.randint(0, num_classes, (size, regions), generator=generator),  # (B, R)
        "scores": torch.rand(size, regions, generator=generator),  # (B, R)
        "mask": torch.ones(size, regions, dtype=torch.bool),  # (B, R) every region is a real detection
    }


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to(item, device) for key, item in value.items()}
    return value


def to_device(batch: dict[str, Any], device: torch.device, *, non_blocking: bool = False) -> dict[str, Any]:
    """Move every tensor of a (nested) batch to `device`; pinned host memory makes non_blocking copies async."""
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            moved[key] = value.to(device, non_blocking=non_blocking)
        elif isinstance(value, dict):
            moved[key] = to_device(value, device, non_blocking=non_blocking)
        else:
            moved[key] = value
    return moved
