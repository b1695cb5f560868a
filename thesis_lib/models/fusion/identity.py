"""Identity fusion: a unimodal model passes its one encoder's pooled vector straight to the head."""

from __future__ import annotations

from collections.abc import Mapping

from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput


class IdentityFusion(Fusion):
    """One modality's pooled vector, unchanged: the unimodal baselines (text_bert, image_vit, ...)."""

    def __init__(self, modality: str, pooled_dim: int):
        super().__init__((modality,), out_dim=pooled_dim)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        (only,) = self._inputs(encoded)
        return FusionOutput(fused=only.pooled, modalities=self.modalities)  # (B, D)
