"""AdamW with separate learning rates for pretrained backbones and new layers, plus the warm-up schedules.

Parameters are split two ways:
- backbone vs head, by module path: names starting with one of `TrainConfig.backbone_prefixes`
  (the model zoo keeps pretrained encoders under `encoders.`) get `lr_backbone`, everything else `lr_head`;
- decay vs no decay, by shape (nanoGPT's rule): matrices and embeddings (ndim >= 2) are decayed, biases and
  norm scales (ndim < 2) are not, since shrinking them towards 0 only fights the normalisation.
Frozen parameters (requires_grad=False) are left out, so frozen-backbone runs optimise the head alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from thesis_lib.train.config import TrainConfig


def is_backbone_parameter(name: str, backbone_prefixes: tuple[str, ...]) -> bool:
    """True for parameters of pretrained backbones, recognised by their module path."""
    return name.startswith(backbone_prefixes)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """AdamW parameter groups `{name, params, lr, weight_decay}`, empty groups dropped."""
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if is_backbone_parameter(name, config.backbone_prefixes) else "head"
        decays = param.ndim >= 2
        key = f"{part}/{'decay' if decays else 'no_decay'}"
        group = groups.setdefault(
            key,
            {
                "name": key,  # kept in the optimizer state: checkpoints and logs say which group is which
                "params": [],
                "lr": config.lr_backbone if part == "backbone" else config.lr_head,
                "weight_decay": config.weight_decay if decays else 0.0,
            },
        )
        group["params"].append(param)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False)")
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups(model, config)`; `config.fused_adamw` uses the single-kernel update."""
    # fused=None (not False) keeps torch's default choice (the foreach kernels on a GPU).
    return torch.optim.AdamW(parameter_groups(model, config), fused=True if config.fused_adamw else None)


def optimizer_steps_per_epoch(batches_per_epoch: int, grad_accum_steps: int) -> int:
    """Optimizer steps in one epoch: accelerate also steps on a last, incomplete accumulation window."""
    return math.ceil(batches_per_epoch / grad_accum_steps)


class WarmupThenPlateau:
    """LambdaLR factor: linear warm-up to 1 over `warmup_steps`, then `scale`, which `reduce_on_plateau` lowers.

    A callable object, not a function: LambdaLR's state_dict keeps its attributes, so `scale` is checkpointed
    with the schedule and a resumed run continues at the reduced rate."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps = warmup_steps
        self.scale = 1.0

    def __call__(self, step: int) -> float:
        # as transformers' warm-up: 0 at the first step, 1 from step `warmup_steps` on
        warmup = step / self.warmup_steps if step < self.warmup_steps else 1.0
        return warmup * self.scale


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_ratio` of the run's optimizer steps, then `config.lr_schedule`: linear
    decay to 0 at the last step (BERT's schedule) or a constant rate lowered on plateaus (`reduce_on_plateau`)."""
    warmup_steps = round(config.warmup_ratio * total_steps)
    if config.lr_schedule == "plateau":
        # one factor object per parameter group (a single one would be shared and reduced once per group)
        factors = [WarmupThenPlateau(warmup_steps) for _ in optimizer.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
    return get_linear_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def reduce_on_plateau(scheduler: torch.optim.lr_scheduler.LRScheduler, factor: float) -> None:
    """Multiply a plateau schedule's rates by `factor` from the next optimizer step on (the epoch did not improve)."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR) or not all(
        isinstance(fn, WarmupThenPlateau) for fn in scheduler.lr_lambdas
    ):
        raise TypeError(f"reduce_on_plateau needs the plateau schedule, got {type(scheduler).__name__}")
    for fn in scheduler.lr_lambdas:
        fn.scale *= factor
    # The groups' rates were set by the last step; set them again so the very next step uses the lower rate.
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports


def current_learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Learning rate per part ("head", "backbone"), read from the groups built by `parameter_groups`."""
    rates: dict[str, float] = {}
    for group in optimizer.param_groups:
        rates[group.get("name", "head").split("/")[0]] = group["lr"]
    return rates
