"""Attention fusion: a per-sample weighting of the modalities, which the book can plot per movie.

Each modality's pooled vector is projected to a common width; then either
- `gating="softmax"`: a score per modality (additive attention, v . tanh(W h_m)), softmax over modalities,
  and the fused vector is the weighted sum of the projections; or
- `gating="gmu"`: the Gated Multimodal Unit of Arevalo et al. (2017), introduced on MM-IMDb: tanh
  projections mixed by per-feature gates computed from all modalities at once (softmax over modalities,
  the M-modality form of the paper's sigmoid gate).
Either way `modality_weights` (B, M) says how much each modality counted for each sample (for the GMU the
gates averaged over features); rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput


class AttentionFusion(Fusion):
    """Pooled vectors -> common width -> weighted sum, weights per sample (softmax) or per feature (GMU)."""

    def __init__(self, pooled_dims: Mapping[str, int], dim: int, gating: str, dropout: float):
        super().__init__(tuple(pooled_dims), out_dim=dim)
        if gating not in ("softmax", "gmu"):
            raise ValueError(f"attention fusion gating {gating!r} is not 'softmax' or 'gmu'")
        self.gating = gating
        self.projections = nn.ModuleDict(
            {m: nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim)) for m, width in pooled_dims.items()}
        )
        if gating == "softmax":
            self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        else:
            # One gate per modality and feature, from all modalities' (normed) inputs together.
            self.gate = nn.Linear(sum(pooled_dims.values()), len(pooled_dims) * dim)
            self.input_norms = nn.ModuleDict({m: nn.LayerNorm(width) for m, width in pooled_dims.items()})
        self.dropout = nn.Dropout(dropout)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        pooled = dict(zip(self.modalities, (out.pooled for out in self._inputs(encoded)), strict=True))  # m -> (B, D_m)
        projected = torch.stack([self.projections[m](pooled[m]) for m in self.modalities], dim=1)  # (B, M, dim)
        if self.gating == "softmax":
            weights = self.score(projected).squeeze(-1).softmax(dim=-1)  # (B, M)
            fused = (weights.unsqueeze(-1) * projected).sum(dim=1)  # (B, dim)
        else:
            normed = torch.cat([self.input_norms[m](pooled[m]) for m in self.modalities], dim=-1)  # (B, sum D_m)
            gates = self.gate(normed).view(projected.shape).softmax(dim=1)  # (B, M, dim) sums to 1 over M
            fused = (gates * torch.tanh(projected)).sum(dim=1)  # (B, dim)
            weights = gates.mean(dim=-1)  # (B, M) still sums to 1 over M
        return FusionOutput(fused=self.dropout(fused), modalities=self.modalities, modality_weights=weights)
