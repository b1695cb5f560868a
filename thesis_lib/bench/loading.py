"""Data-loader throughput: poster decode, decode + augmentation, and whole batches, each on its own.

Every measurement is a plain `torch.utils.data.DataLoader` over the project's own code (`load_poster`,
`build_image_transform`, `MMIMDbDataset`, `MultimodalCollator`), timed from its first batch (worker
start-up is reported apart) to its last, with 0 workers (the plain version) and with many. The items/s
of a stage bounds what any model can consume through it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from thesis_lib.data.images import load_poster


@dataclass(frozen=True)
class LoaderSettings:
    """How a DataLoader is run."""

    batch_size: int
    workers: int  # worker processes; 0 loads in the main process (the plain version)
    pin_memory: bool = False  # page-locked batches, so host-to-GPU copies can be asynchronous
    prefetch_factor: int = 4  # batches each worker prepares ahead (workers > 0 only)

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "workers": self.workers, "pin_memory": self.pin_memory,
                "prefetch_factor": self.prefetch_factor if self.workers else None}


@dataclass(frozen=True)
class LoaderThroughput:
    """Items per second of one loader, after its first batch."""

    stage: str  # "decode" | "decode_resize" | "decode_augment" | "batches"
    settings: LoaderSettings
    items: int  # items timed (the first batch excluded)
    seconds: float
    startup_s: float  # until the first batch arrived (worker start-up, first decode)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, **self.settings.to_dict(), "items": self.items, "seconds": self.seconds,
                "startup_s": self.startup_s, "items_per_s": self.items_per_s}


class PosterDecodes(Dataset):
    """Decode only: each item opens and fully decodes one poster; only its size leaves the worker."""

    def __init__(self, posters: Sequence[Path]):
        self.posters = list(posters)

    def __len__(self) -> int:
        return len(self.posters)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return load_poster(self.posters[index]).size


class PosterTensors(Dataset):
    """Decode + transform: each item is the (3, S, S) float tensor the model reads."""

    def __init__(self, posters: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor]):
        self.posters = list(posters)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.posters)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_poster(self.posters[index]))  # (3, S, S)


def make_loader(dataset: Dataset, settings: LoaderSettings, *, collate_fn: Callable | None = None,
                sampler: Sampler[int] | Iterable[int] | None = None) -> DataLoader:
    """A DataLoader with `settings` (persistent workers: later epochs reuse them)."""
    workers = settings.workers
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=settings.pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=settings.prefetch_factor if workers else None,
    )


def measure_loader(stage: str, loader: DataLoader, settings: LoaderSettings) -> LoaderThroughput:
    """Iterate `loader` once; items/s from the end of the first batch to the end of the last."""
    started = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter()
    items = 0
    for batch in iterator:
        items += _batch_items(batch)
    finished = time.perf_counter()
    del iterator
    if items == 0:
        raise ValueError(f"{stage}: the loader yielded a single batch; give it more items to time")
    return LoaderThroughput(stage, settings, items, finished - first, first - started)


def _batch_items(batch: Any) -> int:
    if isinstance(batch, dict):
        return len(batch["ids"])
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]  # default collation of (width, height) pairs: two tensors of B sizes
    return len(batch)
