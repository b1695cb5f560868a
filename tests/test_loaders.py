"""Training loaders: persistent workers, item seeds and the batch order of every epoch.

The items draw random numbers (as poster augmentation does): the batches must be a function of
(seed, epoch) alone, whether the items are made in the main process or in persistent workers that live
across epochs, and whether an epoch is read whole or resumed after some batches.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch.utils.data import Dataset

from thesis_lib.train.loaders import PREFETCH_BATCHES, SeededLoader


class NoisyItems(Dataset):
    """Item i is (i, a random draw): the draw stands in for a random crop or flip."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "noise": torch.rand(()).item()}


def collate(items: list[dict]) -> list[tuple[int, float]]:
    return [(item["index"], item["noise"]) for item in items]


def epochs_of(workers: int, epochs: int = 3) -> list[list]:
    source = SeededLoader(NoisyItems(), batch_size=4, shuffle=True, seed=5, num_workers=workers, collate_fn=collate)
    seen = []
    for epoch in range(epochs):
        source.set_epoch(epoch)
        seen.append(list(source.loader))
    return seen


def test_persistent_workers_give_the_batches_of_the_main_process():
    main = epochs_of(workers=0)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    epochs_of(workers=0)
    assert torch.equal(torch.rand(3), before), "loading in the main process moved its RNG (dropout's stream)"
    workers = epochs_of(workers=2)
    assert workers == main
    assert main[0] != main[1], "every epoch must shuffle and draw anew"
    indices = [[index for batch in epoch for index, _ in batch] for epoch in main]
    assert all(sorted(order) == list(range(20)) for order in indices)


def test_loader_settings_follow_the_workers():
    persistent = SeededLoader(NoisyItems(), batch_size=4, shuffle=True, seed=0, num_workers=2, collate_fn=collate)
    assert persistent.loader.persistent_workers and persistent.loader.prefetch_factor == PREFETCH_BATCHES
    once = SeededLoader(NoisyItems(), batch_size=4, shuffle=False, seed=0, num_workers=2, collate_fn=collate,
                        persistent=False)
    assert not once.loader.persistent_workers
    plain = SeededLoader(NoisyItems(), batch_size=4, shuffle=True, seed=0, num_workers=0, collate_fn=collate)
    assert not plain.loader.persistent_workers and plain.loader.prefetch_factor is None


def test_a_resumed_epoch_continues_with_the_same_batches():
    accelerator = Accelerator(cpu=True)
    source = SeededLoader(NoisyItems(), batch_size=4, shuffle=True, seed=5, num_workers=2, collate_fn=collate)
    loader = accelerator.prepare(source.loader)
    source.set_epoch(0)
    list(loader)  # epoch 0 with the persistent workers
    source.set_epoch(1)
    loader.set_epoch(1)
    whole = list(loader)
    resumed = accelerator.skip_first_batches(loader, 2)  # a fresh loader, as after a restart
    resumed.set_epoch(1)  # as `prepare.positioned_train_loader`
    assert list(resumed) == whole[2:]
