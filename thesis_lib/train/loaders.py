"""DataLoaders whose batch order is a pure function of (seed, epoch), so a run can be replayed or resumed.

The training shuffle draws from `torch.Generator().manual_seed(seed + epoch)`, created afresh for each
epoch: the order of epoch e does not depend on what ran before it, so a run resumed in the middle of epoch
e sees the same order and can skip the batches it already consumed (`accelerator.skip_first_batches`).
The loader also gets its own generator, re-seeded per epoch, for the per-iterator seed that torch draws
(it would otherwise draw from the global RNG and shift the dropout stream of a resumed run) and that seeds
worker processes.

`LengthGroupedSampler` (TrainConfig.group_by_length) is the same kind of seeded permutation, arranged so
that each batch holds plots of similar length: a batch is padded to its longest plot, so mixing a 60-token
plot with a 512-token one wastes most of the attention and matmul work on padding. Pinned host memory
(on a machine with a GPU) lets batches be copied to the device asynchronously.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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


class LengthGroupedSampler(Sampler[int]):
    """A permutation seeded by `seed + epoch` whose consecutive runs of `batch_size` indices have similar lengths.

    As Hugging Face's `LengthGroupedSampler`: shuffle, cut into mega-batches of `batch_size * group_batches`
    items, sort each mega-batch by length, cut it into batches, then shuffle the order of the full batches
    (an incomplete last batch stays last, so the DataLoader's batch boundaries fall where these do).
    Batches still mix movies at random within a length range, and the order changes every epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_batches: int = 50):
        if batch_size < 1 or group_batches < 1:
            raise ValueError(f"batch_size and group_batches must be >= 1, got {batch_size}, {group_batches}")
        self.lengths = [int(length) for length in lengths]
        self.batch_size = batch_size
        self.seed = seed
        self.group_batches = group_batches  # 50: a mega-batch is a small random sample of the whole length range
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order (what `__iter__` yields, flattened)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        mega = self.batch_size * self.group_batches
        full, partial = [], []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start:start + mega], key=lambda index: self.lengths[index])
            for first in range(0, len(chunk), self.batch_size):
                batch = chunk[first:first + self.batch_size]
                (full if len(batch) == self.batch_size else partial).append(batch)
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return shuffled + partial  # at most one partial batch (the remainder of the last mega-batch)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.lengths)


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
        lengths: Sequence[int] | None = None,
    ):
        """`lengths` (one per item, e.g. plot lengths): shuffle in batches of similar length instead."""
        if lengths is not None and len(lengths) != len(dataset):
            raise ValueError(f"{len(lengths)} lengths for a dataset of {len(dataset)} items")
        if not shuffle:
            self.sampler = None
        elif lengths is not None:
            self.sampler = LengthGroupedSampler(lengths, batch_size, seed)
        else:
            self.sampler = EpochShuffleSampler(len(dataset), seed)
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
            pin_memory=torch.cuda.is_available(),  # page-locked batches: the host-to-GPU copy can run async
        )

    def set_epoch(self, epoch: int) -> None:
        """Fix this epoch's shuffle and worker seeds (the generator object is shared with prepared copies)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed + epoch)


def item_lengths(dataset: Dataset) -> list[int]:
    """Per-item lengths for `LengthGroupedSampler`, from the dataset's own `item_lengths()`."""
    lengths = getattr(dataset, "item_lengths", None)
    if lengths is None:
        raise TypeError(
            f"group_by_length needs {type(dataset).__name__}.item_lengths() (one length per item, e.g. plot words)"
        )
    return list(lengths())
