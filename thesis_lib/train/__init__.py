"""Training: AdamW with warm-up, BCE-with-logits, early stopping, safetensors checkpoints, accelerate.

- `config`: `TrainConfig`, every knob with its default.
- `epoch`: `train_one_epoch`, `evaluate`, `predict`: one epoch, one evaluation pass, callable on their own.
- `loop`: `fit`, the loop over them (resume, checkpoints, early stopping, restore best).
- `prepare`: what `fit` sets up first (`make_accelerator`, loss, AdamW, seeded loaders, schedule, resume).
- `results`: what they return (`FitResult`, `EpochRecord`, `EpochTrainStats`, `TrainingBudget`, `Predictions`).
- `validation`: the validation scores that pick `best` (delegates to `thesis_lib.metrics`).
- `optim`: AdamW parameter groups (backbone vs head, decay vs no decay) and the warm-up schedule.
- `loss`: BCE-with-logits with MMBT's inverse-frequency `pos_weight`.
- `checkpoint`: `best`/`last` checkpoints, atomic writes, RNG states, resume.
- `loaders`: seeded, per-epoch-reproducible DataLoaders.
- `features`: frozen-backbone mode (cached encoder outputs).
- `logging`: one log line every N steps; tqdm only on a terminal.
"""

from thesis_lib.train.config import TrainConfig
from thesis_lib.train.epoch import evaluate, predict, train_one_epoch
from thesis_lib.train.loop import fit
from thesis_lib.train.prepare import make_accelerator
from thesis_lib.train.results import (
    EpochRecord,
    EpochTrainStats,
    EvalResult,
    FitResult,
    Predictions,
    StepEvent,
    TrainingBudget,
)

__all__ = [
    "EpochRecord",
    "EpochTrainStats",
    "EvalResult",
    "FitResult",
    "Predictions",
    "StepEvent",
    "TrainConfig",
    "TrainingBudget",
    "evaluate",
    "fit",
    "make_accelerator",
    "predict",
    "train_one_epoch",
]
