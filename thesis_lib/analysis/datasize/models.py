"""The fusions compared on the twin's fixed tokens: the project's own classes, one genre head of 23.

    early            EarlyFusion over pooled vectors -> GenreHead
    attention        AttentionFusion (softmax weights over the modalities) over pooled vectors -> GenreHead
    cross_attention  CrossAttentionFusion over the tokens (bidirectional, as the smoke profile's) -> GenreHead

The pooled vector of a modality is `analysis.capacity.PooledStandIn`: a learned layer over the masked
mean of its tokens, so (as in the capacity experiment) which object looks how is averaged away before
anything is learned, while everything that is on the poster (a knife, a red prop) stays in the mean.
Every model has the same width; the parameter counts go into the results file.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from thesis_lib.analysis.capacity.models import HEADS, PooledStandIn, parameter_count
from thesis_lib.models.fusion import AttentionFusion, CrossAttentionFusion, EarlyFusion, Fusion
from thesis_lib.models.heads import GenreHead
from thesis_lib.models.outputs import EncoderOutput, masked_mean

FUSIONS = ("early", "attention", "cross_attention")
LABELS = {"early": "early (pooled)", "attention": "attention (pooled)", "cross_attention": "cross-attention"}
__all__ = ["FUSIONS", "LABELS", "DataSizeModel", "build_model", "parameter_count"]


class DataSizeModel(nn.Module):
    """Text and object tokens (with masks) -> encoder outputs -> one fusion -> 23 genre logits."""

    def __init__(self, fusion: Fusion, stand_ins: Mapping[str, PooledStandIn] | None):
        super().__init__()
        self.fusion = fusion
        self.stand_ins = nn.ModuleDict(stand_ins or {})
        self.head = GenreHead(fusion.out_dim, dropout=0.0)

    def forward(self, text: Tensor, text_mask: Tensor, image: Tensor, image_mask: Tensor) -> Tensor:
        encoded = {}
        for modality, tokens, mask in (("text", text, text_mask), ("image", image, image_mask)):  # (B, N_m, D_m)
            pooled = (self.stand_ins[modality](tokens, mask) if modality in self.stand_ins
                      else masked_mean(tokens, mask))  # (B, width) | (B, D_m)
            encoded[modality] = EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)
        return self.head(self.fusion(encoded).fused)  # (B, D_fused) -> (B, 23)


def build_model(name: str, width: int, text_dim: int, image_dim: int, depth: int = 2) -> DataSizeModel:
    token_dims = {"text": text_dim, "image": image_dim}
    if name in ("early", "attention"):
        stand_ins = {m: PooledStandIn(d, width) for m, d in token_dims.items()}
        pooled = dict.fromkeys(token_dims, width)
        fusion: Fusion = (EarlyFusion(pooled, dim=width, dropout=0.0) if name == "early"
                          else AttentionFusion(pooled, dim=width, gating="softmax", dropout=0.0))
        return DataSizeModel(fusion, stand_ins)
    if name == "cross_attention":
        return DataSizeModel(CrossAttentionFusion(token_dims, dim=width, depth=depth, heads=HEADS, dropout=0.0,
                                                  bidirectional=True), None)
    raise ValueError(f"unknown data-size fusion {name!r}; known: {list(FUSIONS)}")
