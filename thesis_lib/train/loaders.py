"""DataLoaders whose batch order is a pure function of (seed, epoch), so a run can be replayed or resumed.

The training shuffle draws from `torch.Generator().manual_seed(seed + epoch)`, created afresh for each
epoch: the order of epoch e does not depend on what ran before it, so a run resumed in the middle of epoch
e sees the same order and can skip the batches it already consumed (`accelerator.skip_first_batches`).
The loader also gets its own generator, re-seeded per epoch, for the per-iterator seed that torch draws
(it would otherwise draw from the global RNG and shift the dropout stream of a resumed run) and that seeds
worker processes.

Random draws inside an item (poster augmentation) come from the item's own seed, a pure function of
(seed, epoch, index) (`ItemSeeds` + `SeededItems`), never from the process that happens to load it: so the
workers may live across epochs (`persistent_workers`: no re-spawn and re-import per epoch at cores - 2 workers),
and a run gets the same augmented batches with 0 or 14 workers, on 1 or 8 GPUs, resumed or not. (A
persistent worker's own RNG is seeded once, when it starts, so per-epoch worker seeds could not do this.)

`LengthGroupedSampler` (TrainConfig.group_by_length) is the same kind of seeded permutation, arranged so
that each batch holds plots of similar length: a batch is padded to its longest plot, so mixing a 60-token
plot with a 512-token one wastes most of the attention and matmul work on padding. Pinned host memory
(on a machine with a GPU) lets batches be copied to the device asynchronously; with workers, each keeps
`PREFETCH_BATCHES` batches ready (the setting `thesis bench` measures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

PREFETCH_BATCHES = 4  # per worker (workers > 0): as `bench.loading.LoaderSettings`, whose throughput it measures
ITEM_SEED_STRIDE = 2**24  # item seed = (seed + epoch) * stride + index: distinct for datasets below 16.7M items


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


class ItemSeeds(Sampler[tuple[int, int]]):
    """`sampler`'s indices, each paired with its item seed `(seed + epoch) * ITEM_SEED_STRIDE + index`; with
    `limit`, only the first `limit` of them (the epoch's first batches: a step cap, `max_items` below)."""

    def __init__(self, sampler: EpochShuffleSampler | LengthGroupedSampler, limit: int | None = None):
        self.sampler = sampler
        self.limit = limit

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.sampler.seed + self.sampler.epoch) * ITEM_SEED_STRIDE
        for count, index in enumerate(self.sampler):
            if self.limit is not None and count >= self.limit:
                return
            yield index, base + index

    def __len__(self) -> int:
        return len(self.sampler) if self.limit is None else min(len(self.sampler), self.limit)


class SeededItems(Dataset):
    """`dataset` read with `ItemSeeds` keys: torch's RNG is seeded with the item's seed while the item is made,
    and restored afterwards (in the main process, dropout's stream must not move when 0 workers load)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        # The host generator only (transforms run on the host), swapped by hand: torch.random.fork_rng +
        # torch.manual_seed cost ~130 us per item and would also reseed every CUDA generator each item.
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


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
        persistent: bool = True,
        max_items: int | None = None,
    ):
        """`lengths` (one per item, e.g. plot lengths): shuffle in batches of similar length instead.
        `persistent`: keep the workers across epochs (False for a loader read once, e.g. test predictions).
        `max_items` (shuffled loaders only): each epoch reads only the first `max_items` of its order, so the
        loader ends early instead of the training loop breaking out of it (`TrainConfig.max_steps_per_epoch`)."""
        if max_items is not None and not shuffle:
            raise ValueError("max_items caps a shuffled (training) loader; evaluation reads every item")
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
            dataset if self.sampler is None else SeededItems(dataset),
            batch_size=batch_size,
            sampler=None if self.sampler is None else ItemSeeds(self.sampler, max_items),  # None: dataset order
            shuffle=False,
            drop_last=False,
            num_workers=num_workers,
            collate_fn=collate_fn,
            generator=self.generator,
            persistent_workers=persistent and num_workers > 0,
            pin_memory=torch.cuda.is_available(),  # page-locked batches: the host-to-GPU copy can run async
            prefetch_factor=PREFETCH_BATCHES if num_workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        """Fix this epoch's shuffle, item seeds and the seeds of newly started workers (the generator object is
        shared with prepared copies)."""
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
