"""Freezing backbone parameters by name prefix (shared by the training loop and the feature-cache wrapper)."""

from __future__ import annotations

from torch import nn


def freeze_backbones(model: nn.Module, backbone_prefixes: tuple[str, ...]) -> int:
    """Set requires_grad=False on backbone parameters; returns how many tensors were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if name.startswith(backbone_prefixes):
            param.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(f"freeze_backbones: no parameter of {type(model).__name__} starts with {backbone_prefixes}")
    return frozen
