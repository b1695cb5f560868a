"""Fusions: encoder outputs by modality name -> one fused vector (and, where they have them, weights).

identity (unimodal: the pooled vector) | label_attention (unimodal: each genre attends over the tokens) | early (concatenate + MLP) | late (per-modality heads, weighted) | attention
(per-sample modality weights) | cross_attention (plot tokens <-> poster patches and regions).
"""

from __future__ import annotations

from collections.abc import Mapping

from thesis_lib.models.configs import FusionConfig
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.fusion.attention import AttentionFusion
from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.fusion.cross_attention import CrossAttentionFusion
from thesis_lib.models.fusion.early import EarlyFusion
from thesis_lib.models.fusion.identity import IdentityFusion
from thesis_lib.models.fusion.label_attention import LabelAttention
from thesis_lib.models.fusion.late import LateFusion, combine_late, fit_late_fusion_weights

FUSIONS: dict[str, type[Fusion]] = {
    "identity": IdentityFusion,
    "label_attention": LabelAttention,
    "early": EarlyFusion,
    "late": LateFusion,
    "attention": AttentionFusion,
    "cross_attention": CrossAttentionFusion,
}


def build_fusion(config: FusionConfig, encoders: Mapping[str, Encoder]) -> Fusion:
    """The fusion `config.kind` sized for these encoders (their widths set its input projections)."""
    pooled_dims = {m: encoder.pooled_dim for m, encoder in encoders.items()}
    if config.kind == "identity":
        if len(encoders) != 1:
            raise ValueError(f"identity fusion takes exactly one encoder, got {list(encoders)}")
        ((modality, width),) = pooled_dims.items()
        return IdentityFusion(modality, width)
    if config.kind == "label_attention":
        if len(encoders) != 1:
            raise ValueError(f"label_attention takes exactly one encoder, got {list(encoders)}")
        ((modality, encoder),) = encoders.items()
        return LabelAttention(modality, encoder.token_dim, dropout=config.dropout)
    if config.kind == "early":
        return EarlyFusion(pooled_dims, dim=config.dim, dropout=config.dropout)
    if config.kind == "late":
        return LateFusion(pooled_dims, dropout=config.dropout)
    if config.kind == "attention":
        return AttentionFusion(pooled_dims, dim=config.dim, gating=config.gating, dropout=config.dropout)
    if config.kind == "cross_attention":
        return CrossAttentionFusion(
            {m: encoder.token_dim for m, encoder in encoders.items()},
            dim=config.dim,
            depth=config.depth,
            heads=config.heads,
            dropout=config.dropout,
            bidirectional=config.bidirectional,
            ffn_ratio=config.ffn_ratio,
        )
    raise ValueError(f"unknown fusion kind {config.kind!r}; known: {sorted(FUSIONS)}")


__all__ = [
    "FUSIONS",
    "AttentionFusion",
    "CrossAttentionFusion",
    "EarlyFusion",
    "Fusion",
    "IdentityFusion",
    "LabelAttention",
    "LateFusion",
    "build_fusion",
    "combine_late",
    "fit_late_fusion_weights",
]
