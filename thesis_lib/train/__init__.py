"""Training: AdamW with warm-up, BCE-with-logits, early stopping, safetensors checkpoints, accelerate.

- `config`: `TrainConfig`, every knob with its default.
- `loop`: `fit`, `train_one_epoch`, `evaluate`, `predict`.
- `results`: what they return (`FitResult`, `EpochRecord`, `TrainingBudget`, `Predictions`).
- `validation`: the validation scores that pick `best` (delegates to `thesis_lib.metrics`).
- `optim`: AdamW parameter groups (backbone vs head, decay vs no decay) and the warm-up schedule.
- `loss`: BCE-with-logits with MMBT's inverse-frequency `pos_weight`.
- `checkpoint`: `best`/`last` checkpoints, atomic writes, RNG states, resume.
- `loaders`: seeded, per-epoch-reproducible DataLoaders.
- `features`: frozen-backbone mode (cached encoder outputs).
- `logging`: one log line every N steps; tqdm only on a terminal.
"""

from thesis_lib.train.config import TrainConfig
from thesis_lib.train.loop import evaluate, fit, make_accelerator, predict, train_one_epoch
from thesis_lib.train.results import EpochRecord, EvalResult, FitResult, Predictions, StepEvent, TrainingBudget

__all__ = [
    "EpochRecord",
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
