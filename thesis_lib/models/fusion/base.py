"""What every fusion shares: the modalities it reads, its output width, and a checked way to get inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import nn

from thesis_lib.models.outputs import EncoderOutput, FusionOutput


class Fusion(nn.Module):
    """Encoder outputs by modality name -> a `FusionOutput` with `fused` of width `out_dim`."""

    reads_tokens: ClassVar[bool] = False  # True: uses token features, not only the pooled vectors
    produces_logits: ClassVar[bool] = False  # True: `fused` already holds the 23 genre logits

    def __init__(self, modalities: tuple[str, ...], out_dim: int):
        super().__init__()
        if not modalities:
            raise ValueError(f"{type(self).__name__} needs at least one modality")
        self.modalities = modalities  # fixed order: weights and concatenations follow it
        self.out_dim = out_dim

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        raise NotImplementedError

    def _inputs(self, encoded: Mapping[str, EncoderOutput]) -> list[EncoderOutput]:
        missing = [m for m in self.modalities if m not in encoded]
        if missing:
            raise KeyError(
                f"{type(self).__name__} fuses {list(self.modalities)} but got no encoder output for {missing}"
            )
        return [encoded[m] for m in self.modalities]
