"""`fit`: the loop over epochs. Set up and resume (`prepare.py`), then per epoch `train_one_epoch` +
`evaluate` (`epoch.py`) + checkpoints + early stopping, and at the end restore the best weights.

Reproducibility: `fit` seeds everything from `TrainConfig.seed`, shuffles epoch e with seed + e, and saves
RNG states in its checkpoints, so on CPU two runs give identical weights and a run killed mid-epoch and
resumed ends with the same weights as an uninterrupted one (both tested). The learning-rate schedule counts
optimizer steps of this run, so it does not depend on the number of processes.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import Dataset

from thesis_lib.train.checkpoint import (
    BEST,
    MODEL_FILE,
    ProcessState,
    RunProgress,
    capture_rng_state,
    discard_unusable_last,
    has_last,
    load_model_weights,
    save_last,
)
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.epoch import evaluate, train_one_epoch
from thesis_lib.train.logging import StepLogger
from thesis_lib.train.optim import current_learning_rates, reduce_on_plateau
from thesis_lib.train.prepare import (
    TrainingParts,
    check_accelerator,
    make_accelerator,
    positioned_train_loader,
    prepare_training,
    resume_from_last,
)
from thesis_lib.train.results import EpochRecord, FitResult, Predictions, StepEvent, TrainingBudget

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ epoch end


def _save_last(
    parts: TrainingParts,
    progress: RunProgress,
    process_state: ProcessState,
    metadata: dict[str, str] | None,
    best: dict[str, str] | None = None,
) -> None:
    """Write `last` (every process must call it): weights, optimizer, schedule, progress, RNG streams; with
    `best`, the same weights become `best` too (one unit, see `checkpoint`)."""
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
        best=best,
        metadata=metadata,
    )


def _improves(score: float, best: float | None, config: TrainConfig) -> bool:
    if math.isnan(score):
        return False  # an undefined score (e.g. mAP with no positives) never becomes `best`
    if best is None:
        return True
    margin = score - best if config.monitor_higher_is_better else best - score
    return margin > config.min_delta


def _close_epoch(
    progress: RunProgress, process_state: ProcessState, record: EpochRecord, config: TrainConfig
) -> bool:
    """Record the finished epoch, update best / early stopping, move on to the next epoch.

    Returns whether the epoch improved on the best score (then its weights become `best`)."""
    progress.history.append(record.to_dict())
    score = record.val_loss if config.monitor == "loss" else record.val_metrics[config.monitor]
    improved = _improves(score, progress.best_metric, config)
    if improved:
        progress.best_metric, progress.best_epoch, progress.epochs_without_improvement = score, record.epoch, 0
    else:
        progress.epochs_without_improvement += 1
    out_of_patience = config.patience is not None and progress.epochs_without_improvement >= config.patience
    progress.epoch, progress.batches_done = record.epoch + 1, 0
    progress.stopped_early = out_of_patience and progress.epoch < config.epochs
    progress.finished = progress.stopped_early or progress.epoch >= config.epochs
    process_state.epoch_loss_sum, process_state.epoch_samples = 0.0, 0  # the next epoch's loss starts at zero
    return improved


def _log_epoch(record: EpochRecord, progress: RunProgress, config: TrainConfig) -> None:
    best = "none" if progress.best_epoch is None else f"{progress.best_metric:.4f} (epoch {progress.best_epoch + 1})"
    stop = f" | early stop after {config.patience} epochs without improvement" if progress.stopped_early else ""
    log.info(
        "epoch %d/%d done: train_loss %.4f val_loss %.4f macro_f1 %.4f map_macro %.4f | best %s %s"
        " | %.1f s, %.1f samples/s%s",
        record.epoch + 1, config.epochs, record.train_loss, record.val_loss,
        record.val_metrics["macro_f1"], record.val_metrics["map_macro"], config.monitor, best,
        record.train_time_s, record.train_samples_per_s, stop,
    )  # fmt: skip


def _tracked_values(record: EpochRecord) -> dict[str, float]:
    """One epoch for a tracker: grouped names (TensorBoard draws one panel per group)."""
    values = {"loss/train": record.train_loss, "loss/dev": record.val_loss,
              "speed/train_samples_per_s": record.train_samples_per_s}
    values |= {f"dev/{name}": float(value) for name, value in record.val_metrics.items()}
    values |= {f"lr/{part}": rate for part, rate in record.learning_rates.items()}
    return values


def _fit_result(
    progress: RunProgress, config: TrainConfig, accelerator: Accelerator, checkpoint_dir: Path,
    best_val_predictions: Predictions | None = None,
) -> FitResult:
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
        best_val_predictions=best_val_predictions,
    )


# ----------------------------------------------------------------------------------------------- fit


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
    checkpoint_metadata: dict[str, str] | None = None,
    tracker: GeneralTracker | None = None,
) -> FitResult:
    """Train `model` on `train_set`, validate every epoch on `val_set`, keep `best` and `last` checkpoints.

    With `resume=True` the run continues from `checkpoint_dir/last` (mid-epoch included) if it exists; a
    finished run returns its result without training. Without `resume`, an existing `last` is an error
    (a new run never overwrites an old one by accident). `config.restore_best` loads the best weights into
    `model` at the end. `on_step_end` is called after each optimizer step (for monitoring and tests).
    `checkpoint_metadata` goes into every weights file it saves (the grid's config hash). A `last` that cannot
    be resumed (`checkpoint.discard_unusable_last`) is discarded with a warning and the run starts again.
    `tracker` (an accelerate tracker, started; e.g. TensorBoard) gets every epoch's losses, dev metrics,
    learning rates and speed at the epoch's last optimizer step, from the main process.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if has_last(checkpoint_dir) and not resume:
        raise FileExistsError(
            f"{checkpoint_dir} already holds a run (last/): pass resume=True or use another directory"
        )
    accelerator = accelerator or make_accelerator(config)
    check_accelerator(accelerator, config)
    if resume and (problem := discard_unusable_last(checkpoint_dir, accelerator)) and accelerator.is_main_process:
        log.warning("%s; starting this run again from its first step", problem)
    set_seed(config.seed)
    parts = prepare_training(model, train_set, val_set, config, checkpoint_dir, collate_fn, accelerator)
    progress, process_state = RunProgress(), ProcessState(rng={})
    if resume and has_last(checkpoint_dir):
        progress, process_state = resume_from_last(parts)
    step_logger = StepLogger(
        total_steps=parts.total_steps,
        epochs=config.epochs,
        log_every=config.log_every,
        first_step=progress.global_step,
        enabled=accelerator.is_main_process,
    )
    save_checkpoint = functools.partial(_save_last, parts, progress, process_state, checkpoint_metadata)
    best_predictions: Predictions | None = None  # the validation predictions of `best`, if made in this session

    while not progress.finished:
        epoch = progress.epoch
        trained = train_one_epoch(
            parts.model, parts.loss_fn, parts.optimizer, parts.scheduler,
            positioned_train_loader(parts, epoch, progress.batches_done), accelerator, epoch, config,
            progress=progress, process_state=process_state, step_logger=step_logger,
            save_checkpoint=save_checkpoint, on_step_end=on_step_end,
        )  # fmt: skip
        eval_start = time.perf_counter()
        result = evaluate(parts.model, parts.val_loader, accelerator, parts.loss_fn, config.threshold)
        record = EpochRecord(
            epoch=epoch,
            train_loss=trained.loss,
            val_loss=result.loss,
            val_metrics=result.metrics,
            learning_rates=current_learning_rates(parts.optimizer),
            optimizer_steps=progress.global_step,
            train_time_s=trained.seconds,
            eval_time_s=time.perf_counter() - eval_start,
            train_samples_per_s=trained.samples / max(trained.seconds, 1e-9),
        )
        improved = _close_epoch(progress, process_state, record, config)
        if config.lr_schedule == "plateau" and not improved and not progress.finished:
            reduce_on_plateau(parts.scheduler, config.plateau_factor)  # before `last`: a resume keeps the cut
        # `last` at every epoch end (a resumed run starts the next epoch); an improving epoch's is `best` too.
        save_checkpoint(best={config.monitor: repr(progress.best_metric)} if improved else None)
        if improved:
            best_predictions = result.predictions
        if accelerator.is_main_process:
            _log_epoch(record, progress, config)
            if tracker is not None:
                tracker.log(_tracked_values(record), step=progress.global_step)

    best_path = checkpoint_dir / BEST / MODEL_FILE
    restored = config.restore_best and best_path.is_file()
    if restored:
        load_model_weights(accelerator.unwrap_model(parts.model), best_path)
    return _fit_result(progress, config, accelerator, checkpoint_dir, best_predictions if restored else None)
