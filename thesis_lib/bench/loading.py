"""Data-loader throughput: poster decode, decode + augmentation, and whole batches, each on its own.

Every measurement iterates a DataLoader over the project's own code (`load_poster`, `build_image_transform`,
and the training loader itself: `SeededLoader` over `MMIMDbDataset` + `MultimodalCollator`). The clock starts
*before* the iterator is made, so worker start-up and the first batch are inside the measured time (with many
workers and few batches, starting after batch 0 would credit the workers' head start to the rate); the
start-up (until batch 0 arrives) is also reported on its own, and enough batches are read that it is a small
share. The items/s of a stage bounds what any model can consume through it.
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
from thesis_lib.train.loaders import PREFETCH_BATCHES


@dataclass(frozen=True)
class LoaderSettings:
    """How a DataLoader is run."""

    batch_size: int
    workers: int  # worker processes; 0 loads in the main process (the plain version)
    pin_memory: bool = False  # page-locked batches, so host-to-GPU copies can be asynchronous
    prefetch_factor: int = PREFETCH_BATCHES  # batches each worker prepares ahead (workers > 0), as the training loader

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "workers": self.workers, "pin_memory": self.pin_memory,
                "prefetch_factor": self.prefetch_factor if self.workers else None}


@dataclass(frozen=True)
class LoaderThroughput:
    """Items per second of one pass over a loader, start-up included."""

    stage: str  # "decode" | "decode_resize" | "decode_augment" | "training_loader"
    settings: LoaderSettings
    items: int  # every item of the pass, batch 0 included
    batches: int
    seconds: float  # from before the iterator was made to the last batch
    startup_s: float  # until batch 0 arrived (worker start-up, the first decode)

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, **self.settings.to_dict(), "items": self.items, "batches": self.batches,
                "seconds": self.seconds, "startup_s": self.startup_s, "items_per_s": self.items_per_s,
                "startup_share": self.startup_s / self.seconds}


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


def measure_loader(stage: str, loader: Iterable[Any], settings: LoaderSettings) -> LoaderThroughput:
    """Iterate `loader` once; items/s from before its iterator was made to its last batch."""
    started = time.perf_counter()
    items = batches = 0
    first = None
    for batch in loader:
        if first is None:
            first = time.perf_counter()
        items += _batch_items(batch)
        batches += 1
    finished = time.perf_counter()
    if first is None:
        raise ValueError(f"{stage}: the loader yielded no batch")
    return LoaderThroughput(stage, settings, items, batches, finished - started, first - started)


def _batch_items(batch: Any) -> int:
    if isinstance(batch, dict):
        return len(batch["ids"])
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]  # default collation of (width, height) pairs: two tensors of B sizes
    return len(batch)
