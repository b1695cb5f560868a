"""`train_one_epoch`, `evaluate`, `predict` and `fit`: the training loop, one code path for every device.

Devices come from `accelerate`: the same code runs on CPU, on one GPU with bf16 autocast, and on several
GPUs with DDP under `accelerate launch` (no `.cuda()`, the model and batches are placed by accelerate).
The model protocol is small: `model(batch).logits` is a (B, C) tensor of logits, where `batch` is the
collated dict of the data module (`ids`, `labels` and the model's inputs).

Reproducibility: `fit` seeds everything from `TrainConfig.seed`, shuffles epoch e with seed + e, and saves
RNG states in its checkpoints, so on CPU two runs give identical weights and a run killed mid-epoch and
resumed ends with the same weights as an uninterrupted one (both tested). The learning-rate schedule counts
optimizer steps of this run, so it does not depend on the number of processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thesis_lib.train.checkpoint import (
    BEST,
    MODEL_FILE,
    ProcessState,
    RunProgress,
    capture_rng_state,
    has_last,
    load_last,
    load_model_weights,
    restore_rng_state,
    save_best,
    save_last,
)
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.loaders import SeededLoader, item_lengths
from thesis_lib.train.logging import StepLogger, progress_bar, train_logger
from thesis_lib.train.loss import make_loss, training_label_matrix
from thesis_lib.train.optim import build_optimizer, build_scheduler, current_learning_rates, optimizer_steps_per_epoch
from thesis_lib.train.results import EpochRecord, EvalResult, FitResult, Predictions, StepEvent, TrainingBudget
from thesis_lib.train.validation import validation_metrics


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


# ------------------------------------------------------------------------------------ model handling



def make_accelerator(config: TrainConfig) -> Accelerator:
    """An Accelerator for this config: device from the environment (`accelerate launch` for several GPUs)."""
    return Accelerator(mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum_steps)


# ---------------------------------------------------------------------------------------- evaluation


def _gather_outputs(
    model: nn.Module, loader: DataLoader, accelerator: Accelerator
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(ids, logits (N, C), labels (N, C)) over a prepared loader, on CPU, in dataset order."""
    model.eval()
    ids: list[str] = []
    logits_parts, label_parts = [], []
    with torch.no_grad():
        for batch in loader:
            if "ids" not in batch or "labels" not in batch:
                raise KeyError(f"evaluation batches need 'ids' and 'labels' keys, got {sorted(batch)}")
            logits = model(batch).logits.float()  # (B, C) float32 even under bf16 autocast
            # gather_for_metrics drops the samples DDP duplicated to give every process equal batches.
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"].float()))
            ids += accelerator.gather_for_metrics(list(batch["ids"]), use_gather_object=True)
            logits_parts.append(logits.cpu())
            label_parts.append(labels.cpu())
    if not logits_parts:
        raise ValueError("evaluation loader yielded no batch (empty dataset?)")
    return ids, torch.cat(logits_parts), torch.cat(label_parts)


def predict(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> Predictions:
    """(ids, probs (N, C), labels (N, C)) in dataset order, on every process, also under DDP.

    `loader` must be prepared by `accelerator` and not shuffled.
    """
    ids, logits, labels = _gather_outputs(model, loader, accelerator)
    return Predictions(ids, torch.sigmoid(logits).numpy(), labels.numpy())


def evaluate(
    model: nn.Module, loader: DataLoader, accelerator: Accelerator, loss_fn: nn.BCEWithLogitsLoss, threshold: float
) -> EvalResult:
    """Validation loss (same weighting as training) and `validation_metrics` at `threshold`."""
    ids, logits, labels = _gather_outputs(model, loader, accelerator)
    pos_weight = None if loss_fn.pos_weight is None else loss_fn.pos_weight.cpu()
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight).item()
    probs = torch.sigmoid(logits).numpy()  # (N, C)
    predictions = Predictions(ids, probs, labels.numpy())
    return EvalResult(loss, validation_metrics(predictions.labels, probs, threshold), predictions)


# ------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class EpochTrainStats:
    """What one call of `train_one_epoch` did (a resumed epoch counts only its resumed part)."""

    seconds: float
    samples: int  # training samples over all processes


def train_one_epoch(
    parts: TrainingParts,
    loader: DataLoader,
    progress: RunProgress,
    process_state: ProcessState,
    step_logger: StepLogger,
    on_step_end: Callable[[StepEvent], None] | None = None,
) -> EpochTrainStats:
    """Train epoch `progress.epoch` over `loader` (already positioned: a resumed epoch skips consumed batches).

    Updates `progress` and `process_state` in place and saves `last` every `checkpoint_every_steps`
    optimizer steps (always at the end of an optimizer step, never inside an accumulation window).
    """
    accelerator, model, config, epoch = parts.accelerator, parts.model, parts.config, progress.epoch
    started = time.perf_counter()
    timed_until = started  # progress.train_time_s already holds the time before this instant
    model.train()  # a frozen encoder stays in eval mode (`Encoder.train`): no dropout, BatchNorm statistics kept
    loss_sum = torch.zeros((), device=accelerator.device)  # this process, since the last save: sum of loss x batch size
    unsaved_samples = 0  # this process: samples since the last save
    samples = 0  # all processes: samples in this call
    show_bar = config.progress_bar and accelerator.is_local_main_process
    for batch in progress_bar(loader, total=len(loader), description=f"epoch {epoch + 1}", enabled=show_bar):
        with accelerator.accumulate(model):
            logits = model(batch).logits.float()  # (B, C) float32 even under bf16 autocast
            loss = parts.loss_fn(logits, batch["labels"].float())  # mean over B x C
            accelerator.backward(loss)  # divides by grad_accum_steps inside an accumulation window
            if accelerator.sync_gradients and config.grad_clip_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            parts.optimizer.step()  # a no-op inside an accumulation window (accelerate skips it)
            parts.optimizer.zero_grad(set_to_none=True)
        batch_size = batch["labels"].shape[0]
        loss_sum += loss.detach() * batch_size
        unsaved_samples += batch_size
        samples += batch_size * accelerator.num_processes
        progress.batches_done += 1
        progress.samples_seen += batch_size * accelerator.num_processes
        step_logger.record_batch(loss.detach(), batch_size * accelerator.num_processes)
        if not accelerator.sync_gradients:
            continue
        # The schedule is stepped here, not through accelerate, so it counts this run's optimizer steps.
        parts.scheduler.step()
        progress.global_step += 1
        learning_rates = current_learning_rates(parts.optimizer)
        step_logger.optimizer_step(epoch=epoch, global_step=progress.global_step, learning_rates=learning_rates)
        due = config.checkpoint_every_steps > 0 and progress.global_step % config.checkpoint_every_steps == 0
        if due:
            process_state.epoch_loss_sum += loss_sum.item()
            process_state.epoch_samples += unsaved_samples
            loss_sum.zero_()
            unsaved_samples = 0
            now = time.perf_counter()
            progress.train_time_s += now - timed_until
            timed_until = now
            _save_last(parts, progress, process_state)
        if on_step_end is not None:
            on_step_end(StepEvent(epoch, progress.global_step, progress.batches_done, due))
    process_state.epoch_loss_sum += loss_sum.item()
    process_state.epoch_samples += unsaved_samples
    now = time.perf_counter()
    progress.train_time_s += now - timed_until
    return EpochTrainStats(seconds=now - started, samples=samples)


def _save_last(parts: TrainingParts, progress: RunProgress, process_state: ProcessState) -> None:
    progress.wall_time_s = parts.clock.total_s()
    process_state.rng = capture_rng_state()
    save_last(
        parts.checkpoint_dir,
        parts.accelerator,
        parts.model,
        parts.optimizer,
        parts.scheduler,
        progress,
        process_state,
        parts.config.to_dict(),
    )


def _epoch_train_loss(accelerator: Accelerator, process_state: ProcessState) -> float:
    """Mean training loss of the epoch over the samples of every process."""
    totals = [process_state.epoch_loss_sum, float(process_state.epoch_samples)]
    totals = torch.tensor(totals, dtype=torch.float64, device=accelerator.device)  # (2,)
    loss_sum, samples = accelerator.reduce(totals, reduction="sum").tolist()
    return loss_sum / samples if samples else math.nan


def _improves(score: float, best: float | None, config: TrainConfig) -> bool:
    if math.isnan(score):
        return False  # an undefined score (e.g. mAP with no positives) never becomes `best`
    if best is None:
        return True
    margin = score - best if config.monitor_higher_is_better else best - score
    return margin > config.min_delta


def _prepare_training(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    checkpoint_dir: Path,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None,
    accelerator: Accelerator,
) -> TrainingParts:
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D (convolution) weights only; inputs follow the weights
    train_labels = training_label_matrix(train_set) if config.pos_weight == "inverse_frequency" else None
    loss_fn = make_loss(config, train_labels).to(accelerator.device)
    optimizer = build_optimizer(model, config)
    lengths = item_lengths(train_set) if config.group_by_length else None
    train_source, val_source = (
        SeededLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=shuffle,
            seed=config.seed,
            num_workers=config.num_workers,
            collate_fn=collate_fn,
            lengths=lengths if shuffle else None,
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


def _positioned_train_loader(parts: TrainingParts, progress: RunProgress) -> DataLoader:
    """The training loader for `progress.epoch`, past the batches a resumed epoch already consumed."""
    epoch = progress.epoch
    parts.train_source.set_epoch(epoch)
    parts.train_loader.set_epoch(epoch)  # accelerate re-applies its own epoch counter to the sampler: keep them equal
    if not progress.batches_done:
        return parts.train_loader
    loader = parts.accelerator.skip_first_batches(parts.train_loader, progress.batches_done)
    loader.set_epoch(epoch)
    return loader


def _finish_epoch(
    parts: TrainingParts, progress: RunProgress, process_state: ProcessState, trained: EpochTrainStats
) -> None:
    """Validate, record the epoch, update best / early stopping, save `best` (if improved) and `last`."""
    accelerator, config, epoch = parts.accelerator, parts.config, progress.epoch
    eval_start = time.perf_counter()
    result = evaluate(parts.model, parts.val_loader, accelerator, parts.loss_fn, config.threshold)
    record = EpochRecord(
        epoch=epoch,
        train_loss=_epoch_train_loss(accelerator, process_state),
        val_loss=result.loss,
        val_metrics=result.metrics,
        learning_rates=current_learning_rates(parts.optimizer),
        optimizer_steps=progress.global_step,
        train_time_s=trained.seconds,
        eval_time_s=time.perf_counter() - eval_start,
        train_samples_per_s=trained.samples / max(trained.seconds, 1e-9),
    )
    progress.history.append(record.to_dict())
    score = result.loss if config.monitor == "loss" else result.metrics[config.monitor]
    if _improves(score, progress.best_metric, config):
        progress.best_metric, progress.best_epoch, progress.epochs_without_improvement = score, epoch, 0
        save_best(parts.checkpoint_dir, accelerator, parts.model, {"epoch": str(epoch), config.monitor: repr(score)})
    else:
        progress.epochs_without_improvement += 1
    out_of_patience = config.patience is not None and progress.epochs_without_improvement >= config.patience
    progress.epoch, progress.batches_done = epoch + 1, 0
    progress.stopped_early = out_of_patience and progress.epoch < config.epochs
    progress.finished = progress.stopped_early or progress.epoch >= config.epochs
    process_state.epoch_loss_sum, process_state.epoch_samples = 0.0, 0
    _save_last(parts, progress, process_state)
    if accelerator.is_main_process:
        train_logger().info(
            "epoch %d/%d done: train_loss %.4f val_loss %.4f macro_f1 %.4f map_macro %.4f | best %s %s"
            " | %.1f s, %.1f samples/s%s",
            epoch + 1, config.epochs, record.train_loss, record.val_loss,
            result.metrics["macro_f1"], result.metrics["map_macro"], config.monitor,
            "none" if progress.best_epoch is None else f"{progress.best_metric:.4f} (epoch {progress.best_epoch + 1})",
            trained.seconds, record.train_samples_per_s,
            f" | early stop after {config.patience} epochs without improvement" if progress.stopped_early else "",
        )  # fmt: skip


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    *,
    checkpoint_dir: str | Path,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    resume: bool = False,
    accelerator: Accelerator | None = None,
    on_step_end: Callable[[StepEvent], None] | None = None,
) -> FitResult:
    """Train `model` on `train_set`, validate every epoch on `val_set`, keep `best` and `last` checkpoints.

    With `resume=True` the run continues from `checkpoint_dir/last` (mid-epoch included) if it exists; a
    finished run returns its result without training. Without `resume`, an existing `last` is an error
    (a new run never overwrites an old one by accident). `config.restore_best` loads the best weights into
    `model` at the end. `on_step_end` is called after each optimizer step (for monitoring and tests).
    """
    checkpoint_dir = Path(checkpoint_dir)
    if has_last(checkpoint_dir) and not resume:
        raise FileExistsError(
            f"{checkpoint_dir} already holds a run (last/): pass resume=True or use another directory"
        )
    accelerator = accelerator or make_accelerator(config)
    given = (accelerator.gradient_accumulation_steps, accelerator.mixed_precision)
    if given != (config.grad_accum_steps, config.mixed_precision):
        raise ValueError(
            f"the accelerator's (grad_accum_steps, mixed_precision) = {given} disagree with the config's "
            f"{(config.grad_accum_steps, config.mixed_precision)}"
        )
    logger = train_logger()
    set_seed(config.seed)
    parts = _prepare_training(model, train_set, val_set, config, checkpoint_dir, collate_fn, accelerator)
    progress, process_state = RunProgress(), ProcessState(rng={})
    if resume and has_last(checkpoint_dir):
        progress, process_state, saved_config = load_last(
            checkpoint_dir, accelerator, parts.model, parts.optimizer, parts.scheduler
        )
        if mismatches := config.resume_mismatches(saved_config):
            raise ValueError(f"cannot resume {checkpoint_dir}: the config changed ({'; '.join(mismatches)})")
        restore_rng_state(process_state.rng)
        parts.clock = RunClock(earlier_sessions_s=progress.wall_time_s)
        if accelerator.is_main_process:
            logger.info(
                "resuming %s at epoch %d, step %d (batch %d of the epoch)",
                checkpoint_dir, progress.epoch + 1, progress.global_step, progress.batches_done,
            )  # fmt: skip
    step_logger = StepLogger(
        logger,
        total_steps=parts.total_steps,
        epochs=config.epochs,
        log_every=config.log_every,
        first_step=progress.global_step,
        enabled=accelerator.is_main_process,
    )
    while not progress.finished:
        loader = _positioned_train_loader(parts, progress)
        trained = train_one_epoch(parts, loader, progress, process_state, step_logger, on_step_end)
        _finish_epoch(parts, progress, process_state, trained)

    best_path = checkpoint_dir / BEST / MODEL_FILE
    if config.restore_best and best_path.is_file():
        load_model_weights(accelerator.unwrap_model(parts.model), best_path)
    history = [EpochRecord(**record) for record in progress.history]
    return FitResult(
        best_epoch=progress.best_epoch,
        epochs_run=len(history),
        best_metric=progress.best_metric,
        monitor=config.monitor,
        history=history,
        train_samples_per_s=progress.samples_seen / max(progress.train_time_s, 1e-9),
        wall_time_s=progress.wall_time_s,
        stopped_early=progress.stopped_early,
        budget=TrainingBudget(
            max_epochs=config.epochs,
            epochs_run=len(history),
            optimizer_steps=progress.global_step,
            samples_seen=progress.samples_seen,
            global_batch_size=config.batch_size * accelerator.num_processes * config.grad_accum_steps,
            tuning_trials=config.tuning_trials,
        ),
        config=config.to_dict(),
        checkpoint_dir=str(checkpoint_dir),
    )
