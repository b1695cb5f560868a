"""The models of the capacity experiment: the project's own fusion classes on synthetic encoder outputs,
plus one token-level control that is not cross-attention, each scaled to about the same parameter count.

No backbone: the tokens of `tasks` are handed to the fusion as `EncoderOutput`s. The pooled fusions
(early, attention, late) read `pooled`, which here is a learned layer over the *mean of the tokens*
(Linear -> GELU, width `width`): the mean is taken before anything is learned, so which object has which
colour is gone before the fusion sees it. That is the point of the alignment task, and it holds by
construction: it says what token-level fusion buys over pooled vectors, not that cross-attention is the
only way to bind (a per-token encoder before the pooling, or the self-attention control, can bind too).

    early          EarlyFusion (concatenate pooled, MLP) -> linear head
    attention      AttentionFusion (softmax weights over the modalities) -> linear head
    late           LateFusion trained jointly (a linear head per modality, learned weights): its own logit
    xattn_d{1,2}_{oneway,bi}   CrossAttentionFusion, depth 1 or 2, text->image only or both ways -> linear head
    selfattn_d2    TokenSelfAttentionFusion: a 2-layer transformer encoder over [text; image] tokens with a
                   modality embedding, each stream mean-pooled as cross-attention's -> linear head

`WIDTHS` are searched so that every model's parameter count is within `tolerance` of `target_params`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from thesis_lib.models.fusion import AttentionFusion, CrossAttentionFusion, EarlyFusion, Fusion, LateFusion
from thesis_lib.models.heads import GenreHead
from thesis_lib.models.outputs import EncoderOutput, FusionOutput, masked_mean

HEADS = 4  # attention heads of every token-level model (their widths are multiples of it)
POOLED_MODELS = ("early", "attention", "late")
TOKEN_MODELS = ("xattn_d1_oneway", "xattn_d1_bi", "xattn_d2_oneway", "xattn_d2_bi", "selfattn_d2")
MODELS = POOLED_MODELS + TOKEN_MODELS
LABELS = {
    "early": "early (pooled)",
    "attention": "attention (pooled)",
    "late": "late, joint (pooled)",
    "xattn_d1_oneway": "cross-attn d1 one-way",
    "xattn_d1_bi": "cross-attn d1 bidirectional",
    "xattn_d2_oneway": "cross-attn d2 one-way",
    "xattn_d2_bi": "cross-attn d2 bidirectional",
    "selfattn_d2": "self-attn d2 over [text; image] (control)",
}


@dataclass(frozen=True)
class ModelSizing:
    target_params: int = 50_000  # every model is scaled to about this many parameters
    tolerance: float = 0.15  # allowed relative distance from the target
    max_width: int = 2048  # the width search stops here


class TokenSelfAttentionFusion(Fusion):
    """Self-attention over the concatenated text and image tokens: token-level, but not cross-attention.

    Both streams are projected to `dim` (Linear -> LayerNorm, as cross-attention's), a learned modality
    embedding marks text and image, and `depth` pre-norm transformer encoder layers mix all tokens with
    all tokens. The output is the masked mean of each stream after a final norm, concatenated (B, 2 * dim),
    exactly as `CrossAttentionFusion` pools.
    """

    reads_tokens = True

    def __init__(self, token_dims: Mapping[str, int], dim: int, depth: int, heads: int, ffn_ratio: int = 4):
        super().__init__(tuple(token_dims), out_dim=2 * dim)
        self.projections = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim)) for m, width in token_dims.items()}
        )
        self.modality_embedding = nn.Embedding(len(token_dims), dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_ratio * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        inputs = self._inputs(encoded)
        streams = [self.projections[m](out.tokens) + self.modality_embedding.weight[i]  # (B, N_m, D)
                   for i, (m, out) in enumerate(zip(self.modalities, inputs, strict=True))]
        lengths = [stream.shape[1] for stream in streams]
        mask = torch.cat([out.mask for out in inputs], dim=1)  # (B, N) True = real
        mixed = self.norm(self.encoder(torch.cat(streams, dim=1), src_key_padding_mask=~mask))  # (B, N, D)
        pooled = [masked_mean(part, part_mask)  # (B, D) per stream
                  for part, part_mask in zip(mixed.split(lengths, dim=1), mask.split(lengths, dim=1), strict=True)]
        return FusionOutput(fused=torch.cat(pooled, dim=-1), modalities=self.modalities)  # (B, 2D)


class PooledStandIn(nn.Module):
    """The pooled vector a pooled fusion reads: Linear -> GELU over the mean of the tokens (B, width)."""

    def __init__(self, token_dim: int, width: int):
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(token_dim, width), nn.GELU())

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.layer(masked_mean(tokens, mask))  # (B, N, D) -> (B, D) -> (B, width)


class CapacityModel(nn.Module):
    """Text and image tokens -> encoder outputs -> one of the project's fusions -> one logit per sample."""

    def __init__(self, fusion: Fusion, stand_ins: Mapping[str, PooledStandIn] | None):
        super().__init__()
        self.fusion = fusion
        self.stand_ins = nn.ModuleDict(stand_ins or {})
        # LateFusion already returns the logit; the others end in the project's head with one output.
        self.head = None if fusion.produces_logits else GenreHead(fusion.out_dim, dropout=0.0, num_genres=1)

    def forward(self, text: Tensor, image: Tensor) -> Tensor:
        encoded = {}
        for modality, tokens in (("text", text), ("image", image)):  # (B, N_m, D_m)
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, N_m)
            pooled = (self.stand_ins[modality](tokens, mask) if modality in self.stand_ins
                      else masked_mean(tokens, mask))  # (B, width) | (B, D_m)
            encoded[modality] = EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)
        fused = self.fusion(encoded).fused  # (B, D_fused) | (B, 1) logits
        logits = fused if self.head is None else self.head(fused)  # (B, 1)
        return logits[:, 0]  # (B,)


def build_model(name: str, width: int, text_dim: int, image_dim: int) -> CapacityModel:
    """Model `name` of MODELS at `width` (pooled: the stand-ins' and fusion's width; token-level: `dim`)."""
    token_dims = {"text": text_dim, "image": image_dim}
    if name in POOLED_MODELS:
        stand_ins = {m: PooledStandIn(d, width) for m, d in token_dims.items()}
        pooled = {m: width for m in token_dims}
        fusion: Fusion = {
            "early": lambda: EarlyFusion(pooled, dim=width, dropout=0.0),
            "attention": lambda: AttentionFusion(pooled, dim=width, gating="softmax", dropout=0.0),
            "late": lambda: LateFusion(pooled, dropout=0.0, num_labels=1),
        }[name]()
        return CapacityModel(fusion, stand_ins)
    if name.startswith("xattn_"):
        depth, direction = int(name.split("_")[1][1:]), name.split("_")[2]
        return CapacityModel(CrossAttentionFusion(token_dims, dim=width, depth=depth, heads=HEADS, dropout=0.0,
                                                  bidirectional=direction == "bi"), None)
    if name == "selfattn_d2":
        return CapacityModel(TokenSelfAttentionFusion(token_dims, dim=width, depth=2, heads=HEADS), None)
    raise ValueError(f"unknown capacity model {name!r}; known: {list(MODELS)}")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_width(name: str, sizing: ModelSizing, text_dim: int, image_dim: int) -> tuple[int, int]:
    """(width, parameter count) of `name` closest to the target; ValueError when none is within tolerance."""
    step = 1 if name in POOLED_MODELS else HEADS
    best: tuple[int, int] | None = None
    for width in range(step, sizing.max_width + 1, step):
        count = parameter_count(build_model(name, width, text_dim, image_dim))
        if best is None or abs(count - sizing.target_params) < abs(best[1] - sizing.target_params):
            best = (width, count)
        if count > sizing.target_params:
            break  # counts grow with the width
    assert best is not None
    if abs(best[1] - sizing.target_params) > sizing.tolerance * sizing.target_params:
        raise ValueError(f"{name}: no width gives {sizing.target_params} parameters within "
                         f"{sizing.tolerance:.0%} (closest: width {best[0]}, {best[1]} parameters)")
    return best
