"""Posters as the detectors read them: decoded in DataLoader workers, batched only with posters of their size.

A GPU detector is fed by however many cores decode JPEGs: `poster_loader` decodes in worker processes
(`machine.loader_workers` of the profile's `num_workers`) into uint8 (3, H, W) tensors, pinned on a GPU
machine so the copy to the device overlaps the next decode.

Batches hold posters of one size only (`shape_batches`), because both detectors treat a batch of mixed
sizes differently from each poster alone: ultralytics letterboxes a same-size batch to the smallest
stride-multiple rectangle but a mixed one to the full square, and Faster R-CNN pads every poster of a batch
to the largest one, which changes the features near its border. With one size per batch a poster's
detections are those it gets alone, whatever else is detected with it, in whichever batch size.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from thesis_lib.data.images import load_poster

Poster = Image.Image | Tensor  # PIL RGB, or uint8 (3, H, W) RGB as `PosterImages` yields


def as_uint8(poster: Poster) -> Tensor:
    """A poster as a uint8 (3, H, W) RGB tensor (a tensor is taken as it is)."""
    return poster if isinstance(poster, Tensor) else TF.to_image(poster).as_subclass(Tensor)


def as_bgr_array(poster: Poster) -> np.ndarray:
    """A poster as ultralytics reads a PIL image: contiguous uint8 (H, W, 3) in BGR order."""
    rgb = as_uint8(poster).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def poster_shape(poster: Poster) -> tuple[int, int]:
    """(H, W) of a poster."""
    if isinstance(poster, Tensor):
        return int(poster.shape[-2]), int(poster.shape[-1])
    return poster.height, poster.width


def shape_batches(shapes: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices of `shapes` in batches of at most `batch_size`, each of one shape; shapes in order of first
    appearance, indices ascending within a shape (posters of one size only: consecutive batches as before)."""
    groups: dict[Hashable, list[int]] = {}
    for index, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(index)
    return [group[start:start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)]


def header_shape(path: Path) -> tuple[int, int] | None:
    """(H, W) from a poster file's header, without decoding it (None if unreadable: `load_poster` then names
    the problem when the poster is decoded)."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class PosterImages(Dataset):
    """Poster files -> uint8 (3, H, W) RGB tensors, decoded when asked for (in a loader worker)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return as_uint8(load_poster(self.paths[index]))  # (3, H, W) uint8


def poster_loader(paths: Sequence[Path], batches: Sequence[Sequence[int]], workers: int,
                  pin_memory: bool = False) -> DataLoader:
    """Lists of decoded posters, one per batch of `batches` (indices into `paths`), in that order."""
    return DataLoader(PosterImages(paths), batch_sampler=[list(batch) for batch in batches], num_workers=workers,
                      collate_fn=list, pin_memory=pin_memory and torch.cuda.is_available(),
                      prefetch_factor=4 if workers else None)
