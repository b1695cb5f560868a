"""Early fusion: concatenate the modalities' pooled vectors and mix them with an MLP."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput


class EarlyFusion(Fusion):
    """LayerNorm each pooled vector, concatenate, then Linear -> GELU -> Dropout to `dim`.

    The per-modality LayerNorm puts vectors of very different scales (a BERT CLS vector, a ResNet average,
    detection counts) on one footing, so no modality dominates the first layer just by its magnitude.
    """

    def __init__(self, pooled_dims: Mapping[str, int], dim: int, dropout: float):
        super().__init__(tuple(pooled_dims), out_dim=dim)
        self.norms = nn.ModuleDict({m: nn.LayerNorm(width) for m, width in pooled_dims.items()})
        self.mlp = nn.Sequential(nn.Linear(sum(pooled_dims.values()), dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        inputs = self._inputs(encoded)
        normed = [self.norms[m](out.pooled) for m, out in zip(self.modalities, inputs, strict=True)]  # M x (B, D_m)
        fused = self.mlp(torch.cat(normed, dim=-1))  # (B, sum D_m) -> (B, dim)
        return FusionOutput(fused=fused, modalities=self.modalities)
