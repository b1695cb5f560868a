"""One epoch of training and one pass of evaluation: `train_one_epoch`, `evaluate`, `predict`.

The shape of torchvision's `references/classification/train.py`: plain functions that take a prepared
model, loss, optimizer, scheduler and loader and can be called on their own (from a notebook, a benchmark
or a test). `fit` (`loop.py`) is a short loop over them that adds set-up, resume, checkpoints and early
stopping.

Devices come from `accelerate`: the same code runs on CPU, on one GPU with bf16 autocast, and on several
GPUs with DDP under `accelerate launch` (no `.cuda()`; `accelerator.prepare` places the model and batches).
The model protocol is small: `model(batch).logits` is a (B, C) tensor of logits, where `batch` is the
collated dict of the data module (`ids`, `labels` and the model's inputs).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel
from torch import nn
from torch.utils.data import DataLoader

from thesis_lib.train.checkpoint import ProcessState, RunProgress
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.logging import StepLogger, progress_bar
from thesis_lib.train.optim import optimizer_steps_per_epoch
from thesis_lib.train.results import EpochTrainStats, EvalResult, Predictions, StepEvent
from thesis_lib.train.validation import validation_metrics

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- training


def train_one_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    accelerator: Accelerator,
    epoch: int,
    config: TrainConfig,
    *,
    progress: RunProgress | None = None,
    process_state: ProcessState | None = None,
    step_logger: StepLogger | None = None,
    save_checkpoint: Callable[[], None] | None = None,
    on_step_end: Callable[[StepEvent], None] | None = None,
) -> EpochTrainStats:
    """Train `model` for epoch `epoch` over `loader`; returns the epoch's mean loss, samples and seconds.

    Everything passed in is already prepared by `accelerator`, and `loader` is positioned by the caller
    (`set_epoch(epoch)`; a resumed epoch skips the batches it consumed). From `config` it reads
    `grad_clip_norm`, `checkpoint_every_steps`, `log_every`, `epochs` and `progress_bar`. One optimizer
    step per `accelerator.gradient_accumulation_steps` batches; the scheduler steps with the optimizer.

    Called on its own, the keywords can stay None. `fit` passes the run's state:
    - `progress`, `process_state`: where the run stands, updated in place (`progress.epoch` must be `epoch`;
      `process_state` carries the loss of a resumed epoch's first part, so the returned loss covers it all).
    - `step_logger`: the log line every `log_every` steps (None: one for this epoch alone).
    - `save_checkpoint`: called every `checkpoint_every_steps` optimizer steps, always at the end of an
      optimizer step (never inside an accumulation window), after `progress`/`process_state` are current.
    - `on_step_end`: called after every optimizer step (monitoring, tests that simulate a crash).
    """
    progress = RunProgress(epoch=epoch) if progress is None else progress
    if progress.epoch != epoch:
        raise ValueError(f"train_one_epoch(epoch={epoch}) was given the progress of epoch {progress.epoch}")
    process_state = ProcessState(rng={}) if process_state is None else process_state
    if step_logger is None:
        steps = optimizer_steps_per_epoch(len(loader), accelerator.gradient_accumulation_steps)
        step_logger = StepLogger(
            total_steps=progress.global_step + steps,  # the ETA runs to the end of this epoch
            epochs=config.epochs,
            log_every=config.log_every,
            first_step=progress.global_step,
            enabled=accelerator.is_main_process,
        )
    processes = accelerator.num_processes
    started = time.perf_counter()
    timed_until = started  # progress.train_time_s already holds the time before this instant
    # This process's loss since it was last banked into process_state: sum of (mean batch loss x batch size).
    # Kept on the device so a step never waits for the GPU; banked (one host sync) only when a checkpoint
    # is due and at the end of the epoch.
    unbanked_loss = torch.zeros((), device=accelerator.device)  # ()
    unbanked_samples = 0  # this process's samples since the last bank
    samples = 0  # all processes: samples in this call

    def bank() -> None:
        """Move the running loss sum and the elapsed time into the state a checkpoint saves."""
        nonlocal unbanked_samples, timed_until
        process_state.epoch_loss_sum += unbanked_loss.item()  # host sync: every checkpoint, not every step
        process_state.epoch_samples += unbanked_samples
        unbanked_loss.zero_()
        unbanked_samples = 0
        now = time.perf_counter()
        progress.train_time_s += now - timed_until
        timed_until = now

    model.train()  # a frozen encoder stays in eval mode (`Encoder.train`): no dropout, BatchNorm statistics kept
    show_bar = config.progress_bar and accelerator.is_local_main_process
    checked = False
    for batch in progress_bar(loader, total=len(loader), description=f"epoch {epoch + 1}", enabled=show_bar):
        if not checked:
            check_batch(model, batch)  # input values, once per epoch: it waits for the device
            checked = True
        with accelerator.accumulate(model):
            logits = model(batch).logits.float()  # (B, C) float32 even under bf16 autocast
            loss = loss_fn(logits, batch["labels"].float())  # () mean over B x C
            accelerator.backward(loss)  # divides by grad_accum_steps inside an accumulation window
            if accelerator.sync_gradients and config.grad_clip_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()  # a no-op inside an accumulation window (accelerate skips it)
            optimizer.zero_grad(set_to_none=True)
        batch_size = batch["labels"].shape[0]  # B of this process (the last batch may be smaller)
        unbanked_loss += loss.detach() * batch_size  # () device-side, no sync
        unbanked_samples += batch_size
        samples += batch_size * processes
        progress.batches_done += 1
        progress.samples_seen += batch_size * processes
        step_logger.record_batch(loss.detach(), batch_size * processes)
        if not accelerator.sync_gradients:
            continue  # inside an accumulation window: no optimizer step was taken
        # The schedule is stepped here, not through accelerate, so it counts this run's optimizer steps
        # (independent of the number of processes).
        scheduler.step()
        progress.global_step += 1
        if line := step_logger.optimizer_step(epoch=epoch, global_step=progress.global_step, optimizer=optimizer):
            log.info("%s", line)  # every `log_every` steps, main process only
        # Banked at the checkpoint steps even when nothing is saved: the loss is summed in the same pieces
        # as in a run that saves (and may resume), so the epoch's loss is the same to the last bit.
        due = config.checkpoint_every_steps > 0 and progress.global_step % config.checkpoint_every_steps == 0
        if due:
            bank()
            if save_checkpoint is not None:
                save_checkpoint()
        if on_step_end is not None:
            saved = due and save_checkpoint is not None
            on_step_end(StepEvent(epoch, progress.global_step, progress.batches_done, saved))
    bank()
    seconds = time.perf_counter() - started
    return EpochTrainStats(loss=epoch_train_loss(accelerator, process_state), samples=samples, seconds=seconds)


def epoch_train_loss(accelerator: Accelerator, process_state: ProcessState) -> float:
    """Mean training loss of the epoch over the samples of every process (a collective: all must call it)."""
    totals = [process_state.epoch_loss_sum, float(process_state.epoch_samples)]
    totals = torch.tensor(totals, dtype=torch.float64, device=accelerator.device)  # (2,) loss sum, samples
    loss_sum, samples = accelerator.reduce(totals, reduction="sum").tolist()
    return loss_sum / samples if samples else math.nan


def check_batch(model: nn.Module, batch: dict) -> None:
    """The model's check of a batch's values (`GenreClassifier.check_batch`: token ids within the vocabulary,
    normalised boxes, ...), when it has one; DDP / torch.compile wrappers are looked through.

    The forward pass checks shapes only (it never reads a tensor back to the host); this check does, so the
    loops run it on the first batch of each pass: one wait for the device per pass, not one per step."""
    check = getattr(extract_model_from_parallel(model), "check_batch", None)
    if check is not None:
        check(batch)


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
            if not ids:
                check_batch(model, batch)  # input values, on the first batch only: it waits for the device
            logits = model(batch).logits.float()  # (B, C) float32 even under bf16 autocast
            # gather_for_metrics drops the samples DDP duplicated to give every process equal batches.
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"].float()))  # (B', C) each
            ids += accelerator.gather_for_metrics(list(batch["ids"]), use_gather_object=True)
            # Moved to the host batch by batch: the whole split's logits need not fit next to the model.
            logits_parts.append(logits.cpu())
            label_parts.append(labels.cpu())
    if not logits_parts:
        raise ValueError("evaluation loader yielded no batch (empty dataset?)")
    return ids, torch.cat(logits_parts), torch.cat(label_parts)  # (N, C), (N, C)


def predict(model: nn.Module, loader: DataLoader, accelerator: Accelerator) -> Predictions:
    """(ids, probs (N, C), labels (N, C)) in dataset order, on every process, also under DDP.

    `loader` must be prepared by `accelerator` and not shuffled.
    """
    ids, logits, labels = _gather_outputs(model, loader, accelerator)
    return Predictions(ids, torch.sigmoid(logits).numpy(), labels.numpy())


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    accelerator: Accelerator,
    loss_fn: nn.BCEWithLogitsLoss | None = None,
    threshold: float = 0.5,
) -> EvalResult:
    """Loss, `validation_metrics` at `threshold`, and the predictions of `model` over `loader`.

    The loss is BCE-with-logits weighted as `loss_fn` (its `pos_weight`; None: unweighted), the same
    objective as training, over every movie at once. `loader` must be prepared and not shuffled.
    """
    ids, logits, labels = _gather_outputs(model, loader, accelerator)  # (N, C) each, on CPU
    pos_weight = None if loss_fn is None or loss_fn.pos_weight is None else loss_fn.pos_weight.cpu()  # (C,)
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight).item()  # CPU: no device sync
    probs = torch.sigmoid(logits).numpy()  # (N, C)
    predictions = Predictions(ids, probs, labels.numpy())
    return EvalResult(loss, validation_metrics(predictions.labels, probs, threshold), predictions)
