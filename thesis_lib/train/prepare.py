"""The set-up of a training run (what `fit` does before its first epoch, in the order of torchvision's `main`):
an Accelerator, the loss, AdamW, the seeded loaders, the schedule, and a resumed run's state from `last`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thesis_lib.train.checkpoint import ProcessState, RunProgress, load_last, restore_rng_state
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.loaders import SeededLoader, item_lengths
from thesis_lib.train.loss import make_loss, training_label_matrix
from thesis_lib.train.optim import build_optimizer, build_scheduler, optimizer_steps_per_epoch

log = logging.getLogger(__name__)


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for this config: device from the environment (`accelerate launch` for several GPUs)."""
    return Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum_steps)


class RunClock:
    """Wall time of a run across sessions: the time saved by earlier sessions plus this one's."""

    def __init__(self, earlier_sessions_s: float = 0.0):
        self.earlier_sessions_s = earlier_sessions_s
        self.session_start = time.perf_counter()

    def total_s(self) -> float:
        return self.earlier_sessions_s + time.perf_counter() - self.session_start


@dataclass
class TrainingParts:
    """The prepared objects one training run works with (built once by `fit`)."""

    accelerator: Accelerator
    model: nn.Module  # prepared: DDP-wrapped when there are several processes
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.BCEWithLogitsLoss
    train_source: SeededLoader  # holds the per-epoch seeds of the training order
    train_loader: DataLoader  # prepared (sharded across processes)
    val_loader: DataLoader  # prepared, dataset order
    total_steps: int  # optimizer steps of the whole run (the schedule's length)
    config: TrainConfig
    checkpoint_dir: Path
    clock: RunClock


def check_accelerator(accelerator: Accelerator, config: TrainConfig) -> None:
    """A caller's own Accelerator must accumulate and autocast as the config says (the config is recorded)."""
    given = (accelerator.gradient_accumulation_steps, accelerator.mixed_precision)
    if given != (config.grad_accum_steps, config.mixed_precision):
        raise ValueError(
            f"the accelerator's (grad_accum_steps, mixed_precision) = {given} disagree with the config's "
            f"{(config.grad_accum_steps, config.mixed_precision)}"
        )


def prepare_training(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    checkpoint_dir: Path,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None,
    accelerator: Accelerator,
) -> TrainingParts:
    """Loss, optimizer, seeded loaders and schedule for `model`, all prepared by `accelerator`."""
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D (convolution) weights only; inputs follow the weights
    train_labels = training_label_matrix(train_set) if config.pos_weight != "none" else None
    loss_fn = make_loss(config, train_labels).to(accelerator.device)
    optimizer = build_optimizer(model, config)
    lengths = item_lengths(train_set) if config.group_by_length else None
    # A step cap reads the first items of each epoch's order: the batches of that many optimizer steps on every
    # process (accelerate deals the batches out to the processes in turn).
    max_items = None if config.max_steps_per_epoch is None else (
        config.max_steps_per_epoch * config.grad_accum_steps * config.batch_size * accelerator.num_processes)
    train_source, val_source = (
        SeededLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=shuffle,
            seed=config.seed,
            num_workers=config.num_workers,
            collate_fn=collate_fn,
            lengths=lengths if shuffle else None,
            max_items=max_items if shuffle else None,
        )
        for dataset, shuffle in ((train_set, True), (val_set, False))
    )
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_source.loader, val_source.loader
    )
    # Counted on the prepared (per-process) loader: the real number of optimizer steps of this run.
    total_steps = optimizer_steps_per_epoch(len(train_loader), config.grad_accum_steps) * config.epochs
    scheduler = build_scheduler(optimizer, config, total_steps)
    return TrainingParts(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        train_source=train_source,
        train_loader=train_loader,
        val_loader=val_loader,
        total_steps=total_steps,
        config=config,
        checkpoint_dir=checkpoint_dir,
        clock=RunClock(),
    )


def resume_from_last(parts: TrainingParts) -> tuple[RunProgress, ProcessState]:
    """Load `last` into the prepared parts and restore this process's RNG streams; returns the run's state."""
    directory, accelerator = parts.checkpoint_dir, parts.accelerator
    progress, process_state, saved_config = load_last(
        directory, accelerator, parts.model, parts.optimizer, parts.scheduler
    )
    if mismatches := parts.config.resume_mismatches(saved_config):
        raise ValueError(f"cannot resume {directory}: the config changed ({'; '.join(mismatches)})")
    restore_rng_state(process_state.rng)
    parts.clock = RunClock(earlier_sessions_s=progress.wall_time_s)
    if accelerator.is_main_process:
        log.info(
            "resuming %s at epoch %d, step %d (batch %d of the epoch)",
            directory, progress.epoch + 1, progress.global_step, progress.batches_done,
        )  # fmt: skip
    return progress, process_state


def positioned_train_loader(parts: TrainingParts, epoch: int, batches_done: int) -> DataLoader:
    """The training loader for `epoch`, past the `batches_done` batches a resumed epoch already consumed."""
    parts.train_source.set_epoch(epoch)
    parts.train_loader.set_epoch(epoch)  # accelerate re-applies its own epoch counter to the sampler: keep them equal
    if not batches_done:
        return parts.train_loader
    loader = parts.accelerator.skip_first_batches(parts.train_loader, batches_done)
    loader.set_epoch(epoch)
    return loader
