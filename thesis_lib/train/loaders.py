"""DataLoaders whose batch order is a pure function of (seed, epoch), so a run can be replayed or resumed.

The training shuffle draws from `torch.Generator().manual_seed(seed + epoch)`, created afresh for each
epoch: the order of epoch e does not depend on what ran before it, so a run resumed in the middle of epoch
e sees the same order and can skip the batches it already consumed (`accelerator.skip_first_batches`).
The loader also gets its own generator, re-seeded per epoch, for the per-iterator seed that torch draws
(it would otherwise draw from the global RNG and shift the dropout stream of a resumed run) and that seeds
worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A permutation of range(n) seeded by `seed + epoch`; call `set_epoch` before each epoch."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.num_samples, generator=generator).tolist()

    def __len__(self) -> int:
        return self.num_samples


class SeededLoader:
    """A DataLoader plus the handles that make its order reproducible: call `set_epoch(e)` before epoch e."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_workers: int,
        collate_fn: Callable[[list[Any]], Any] | None,
    ):
        self.sampler = EpochShuffleSampler(len(dataset), seed) if shuffle else None
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,  # None: sequential (evaluation keeps dataset order)
            shuffle=False,
            drop_last=False,
            num_workers=num_workers,
            collate_fn=collate_fn,
            generator=self.generator,
            persistent_workers=False,
        )

    def set_epoch(self, epoch: int) -> None:
        """Fix this epoch's shuffle and worker seeds (the generator object is shared with prepared copies)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)
