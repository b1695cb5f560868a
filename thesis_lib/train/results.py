"""What training returns: per-epoch records and epoch statistics, the training budget, `FitResult`, predictions.

Plain frozen dataclasses of numbers and strings (`to_dict()` gives JSON-ready values), so run records and
training-curve figures can be built from them without the model or the training code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch, for run records and training-curve figures."""

    epoch: int  # 0-based
    train_loss: float  # mean training loss over the epoch's samples (all processes)
    val_loss: float
    val_metrics: dict[str, float]  # `validation_metrics` summary: macro_f1, map_macro, ...
    learning_rates: dict[str, float]  # per parameter part ("head", "backbone") at the end of the epoch
    optimizer_steps: int  # global step at the end of the epoch
    train_time_s: float  # seconds in training steps (this epoch; only the resumed part if it was interrupted)
    eval_time_s: float
    train_samples_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainingBudget:
    """How much training a model got: the experiment grid shows these side by side for every model."""

    max_epochs: int  # TrainConfig.epochs
    epochs_run: int
    optimizer_steps: int
    samples_seen: int  # training samples, summed over processes
    global_batch_size: int  # batch_size x processes x grad_accum_steps
    tuning_trials: int  # TrainConfig.tuning_trials: configurations tried for this model


@dataclass(frozen=True)
class FitResult:
    """What `fit` returns (on every process)."""

    best_epoch: int | None  # 0-based epoch of `best` (None if no epoch had a defined score)
    epochs_run: int
    best_metric: float | None
    monitor: str
    history: list[EpochRecord]
    train_samples_per_s: float  # training throughput over the whole run (excluding validation)
    wall_time_s: float  # fit's wall time, summed over the sessions of a resumed run
    stopped_early: bool
    budget: TrainingBudget
    config: dict[str, Any]  # TrainConfig.to_dict()
    checkpoint_dir: str
    # The validation predictions of the weights `fit` restored (the best epoch's, as its evaluation made them),
    # so a caller need not predict the validation set again; None when they were made by an earlier session
    # of a resumed run or the best weights were not restored. Not part of `to_dict` (a record stores its own).
    best_val_predictions: Predictions | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a JSON run record."""
        fields = (field.name for field in dataclasses.fields(self) if field.name != "best_val_predictions")
        return {name: _plain(getattr(self, name)) for name in fields}


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else (
        [_plain(item) for item in value] if isinstance(value, list) else value)


@dataclass(frozen=True)
class Predictions:
    """Per-movie outputs of a model on one dataset, in dataset order (what `predict` returns and a run
    record stores); unpacks as `ids, probs, labels`."""

    ids: np.ndarray  # (N,) str movie ids
    probs: np.ndarray  # (N, C) float32 sigmoid probabilities
    labels: np.ndarray  # (N, C) float32 multi-hot truth

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", np.asarray(self.ids, dtype=str))
        if self.probs.ndim != 2 or self.probs.shape[0] != len(self.ids) or self.labels.shape != self.probs.shape:
            raise ValueError(f"predictions: {len(self.ids)} ids, probs {self.probs.shape}, labels {self.labels.shape}")

    def __iter__(self) -> Iterator[Any]:
        return iter((self.ids, self.probs, self.labels))


@dataclass(frozen=True)
class EpochTrainStats:
    """What one call of `train_one_epoch` did."""

    loss: float  # mean training loss of the epoch over the samples of every process (a resumed epoch: all of it)
    samples: int  # training samples in this call, over all processes (a resumed epoch: its resumed part)
    seconds: float  # wall time of this call


@dataclass(frozen=True)
class EvalResult:
    loss: float
    metrics: dict[str, float]
    predictions: Predictions


@dataclass(frozen=True)
class StepEvent:
    """Passed to `fit(on_step_end=...)` after every optimizer step (and after `last` was saved, if due)."""

    epoch: int
    global_step: int
    batches_done: int  # batches of this epoch consumed by each process
    checkpoint_saved: bool
