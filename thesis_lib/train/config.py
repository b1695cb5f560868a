"""The one configuration object of a training run: every knob of `fit`, with its default and why.

A run record stores `TrainConfig.to_dict()`; a resumed run must agree with the saved config (see
`RESUME_SAFE_FIELDS` for the knobs that may change between an interrupted run and its resumption).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

MixedPrecision = Literal["no", "bf16", "fp16"]
PosWeight = Literal["none", "inverse_frequency", "sqrt_inverse_frequency"]
Monitor = Literal["macro_f1", "map_macro", "loss"]
LrSchedule = Literal["linear", "plateau"]

# Fields that only change how a run is observed or fed, not what it computes: a resumed run may differ here.
RESUME_SAFE_FIELDS = frozenset({"log_every", "progress_bar", "num_workers", "checkpoint_every_steps"})


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and run settings of `thesis_lib.train.fit`."""

    epochs: int = 10  # upper bound on epochs; early stopping may end the run sooner
    # At most this many optimizer steps per epoch (each epoch reads the first batches of its shuffle); None:
    # the whole training set. A rehearsal of the full profile takes a step or two per run (experiments.rehearsal).
    max_steps_per_epoch: int | None = None
    batch_size: int = 32  # per process: the global batch is batch_size x processes x grad_accum_steps
    lr_head: float = 1e-3  # AdamW lr for new layers (projections, fusion, head): trained from scratch
    lr_backbone: float = 2e-5  # AdamW lr for pretrained encoders: small, or fine-tuning forgets pretraining
    weight_decay: float = 0.01  # decoupled (AdamW) decay on matrices only; never on biases or norm scales
    warmup_ratio: float = 0.1  # share of the run's optimizer steps (epochs x steps per epoch) with linear warm-up
    # After the warm-up: "linear" decays to 0 at the last epoch (BERT's schedule; the budget sets the decay);
    # "plateau" holds the rate and multiplies it by `plateau_factor` after every epoch that does not improve
    # `monitor` (ReduceLROnPlateau with patience 1), so `epochs` is only a cap and early stopping ends the run.
    lr_schedule: LrSchedule = "linear"
    plateau_factor: float = 0.5
    grad_clip_norm: float | None = 1.0  # clip the global gradient L2 norm (transformer fine-tuning); None: off
    grad_accum_steps: int = 1  # batches per optimizer step (a larger effective batch on a small GPU)
    pos_weight: PosWeight = "none"  # "inverse_frequency": BCE pos_weight = n_train / n_positive (as MMBT);
    # "sqrt_inverse_frequency": its square root (rare genres still up-weighted, the frequent ones less starved)
    monitor: Monitor = "macro_f1"  # validation score that picks `best` and drives early stopping
    patience: int | None = 3  # epochs without improvement of `monitor` before stopping; None: never stop early
    min_delta: float = 0.0  # an improvement must beat the best score by more than this
    threshold: float = 0.5  # decision threshold for the validation F1 (the MM-IMDb papers report at 0.5)
    log_every: int = 50  # one log line every this many optimizer steps
    checkpoint_every_steps: int = 0  # also save `last` every N optimizer steps (mid-epoch resume); 0: epoch ends only
    mixed_precision: MixedPrecision = "no"  # "bf16": autocast on GPU (no loss scaling); "fp16": with loss scaling
    seed: int = 0  # seeds python/numpy/torch, the per-epoch shuffling (seed + epoch) and dropout
    num_workers: int = 0  # DataLoader worker processes (0 loads in the main process)
    backbone_prefixes: tuple[str, ...] = ("encoders.",)  # parameter-name prefixes of pretrained backbones
    restore_best: bool = True  # when fit ends, load the `best` weights into the model
    progress_bar: bool = False  # a tqdm bar, shown only when stderr is a terminal (never in papermill logs)
    tuning_trials: int = 1  # configurations (e.g. learning rates) tried for this model: recorded as its budget
    # Speed only (see benchmarks/README.md); off by default so existing runs compute exactly what they did.
    fused_adamw: bool = False  # one fused kernel per AdamW update (same maths; rounding may differ in the last bit)
    channels_last: bool = False  # NHWC convolution weights: faster tensor-core convolutions for CNNs on a GPU
    group_by_length: bool = False  # batches of plots of similar length (less padding); needs dataset.item_lengths()

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "grad_accum_steps", "log_every", "tuning_trials")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"TrainConfig.max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")
        for name in ("lr_head", "lr_backbone", "weight_decay", "min_delta", "checkpoint_every_steps", "num_workers"):
            if not getattr(self, name) >= 0 or math.isinf(getattr(self, name)):  # NaN fails `>= 0`
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"TrainConfig.plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"TrainConfig.threshold must be in (0, 1), got {self.threshold}")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"TrainConfig.grad_clip_norm must be > 0 or None, got {self.grad_clip_norm}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}")
        choices = {"pos_weight": PosWeight, "monitor": Monitor, "mixed_precision": MixedPrecision,
                   "lr_schedule": LrSchedule}
        for name, literal in choices.items():
            if getattr(self, name) not in literal.__args__:
                raise ValueError(f"TrainConfig.{name} must be one of {literal.__args__}, got {getattr(self, name)!r}")
        if isinstance(self.backbone_prefixes, str):
            raise TypeError("TrainConfig.backbone_prefixes must be a tuple of strings, not one string")

    @property
    def monitor_higher_is_better(self) -> bool:
        return self.monitor != "loss"

    def to_dict(self) -> dict[str, Any]:
        """Plain values for run records and checkpoints (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def resume_mismatches(self, saved: dict[str, Any]) -> list[str]:
        """Fields whose saved value differs from this config, ignoring `RESUME_SAFE_FIELDS`."""
        current = self.to_dict()
        # A knob added after a checkpoint was written reads as its default there (it did not exist, so it was off).
        defaults = TrainConfig().to_dict()
        return sorted(
            f"{name}: saved {saved.get(name, defaults[name])!r}, now {value!r}"
            for name, value in current.items()
            if name not in RESUME_SAFE_FIELDS and saved.get(name, defaults[name]) != value
        )

