"""Cross-attention fusion (the thesis's proposal): plot tokens and poster regions read each other.

Two token streams, both projected to a common width `dim`:
- the text stream: the plot's word-piece features;
- the image side: the poster's patches (or grid cells), followed by the detected object regions when the
  model has them, each part marked by a learned type embedding so attention can tell a patch from a region.

Each block lets every text token query the image side and (when `bidirectional`) every image-side token
query the text; both directions read the block's input (co-attention, as in ViLBERT), each with pre-norm,
a residual connection, and a feed-forward layer per stream. Padded text tokens and absent regions are
never attended to. The fused vector is the masked mean of each stream after a final norm, concatenated:
(B, 2 * dim).

This is where an *alignment* signal can be learned that pooled vectors lose: the plot names one of several
objects on the poster, and the genre depends on what that object looks like.

Attention weights come back per layer: "text_to_image" (B, H, N_text, N_image) and, when bidirectional,
"image_to_text" (B, H, N_image, N_text), where the image side is N_image = patches + regions in that order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput, masked_mean


class MultiHeadCrossAttention(nn.Module):
    """Queries from one stream attend over keys/values from the other; padded keys get weight exactly 0.

    Written out rather than `nn.MultiheadAttention` so that a sample with no real key at all (a poster
    without detections, when regions are the whole image side) yields zeros instead of NaN, and so the
    per-head weights are returned as computed.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.attention_dropout = nn.Dropout(dropout)

    def forward(self, queries: Tensor, keys: Tensor, key_mask: Tensor) -> tuple[Tensor, Tensor]:
        batch, n_queries, dim = queries.shape
        n_keys = keys.shape[1]
        q = self.query(queries).view(batch, n_queries, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nq, Dh)
        k = self.key(keys).view(batch, n_keys, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nk, Dh)
        v = self.value(keys).view(batch, n_keys, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nk, Dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, Nq, Nk)
        allowed = key_mask[:, None, None, :]  # (B, 1, 1, Nk)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)  # (B, H, Nq, Nk)
        # exp(min - max) underflows to 0, so padded keys get exactly 0; multiplying by the mask also turns a
        # row with no real key (uniform over padding) into zeros.
        weights = scores.softmax(dim=-1) * allowed  # (B, H, Nq, Nk) rows sum to 1 over real keys
        mixed = self.attention_dropout(weights) @ v  # (B, H, Nq, Dh)
        mixed = mixed.transpose(1, 2).reshape(batch, n_queries, dim)  # (B, Nq, D)
        return self.out(mixed), weights


class FeedForward(nn.Module):
    """Pre-norm position-wise MLP: LayerNorm -> Linear -> GELU -> Linear (residual added by the caller)."""

    def __init__(self, dim: int, ratio: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, ratio * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ratio * dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, N, D)


class CrossAttentionBlock(nn.Module):
    """Text <- image-side cross-attention (and image side <- text when bidirectional), then feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float, ffn_ratio: int, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.text_norm = nn.LayerNorm(dim)
        self.image_norm = nn.LayerNorm(dim)
        self.text_attends = MultiHeadCrossAttention(dim, heads, dropout)
        self.text_ffn = FeedForward(dim, ffn_ratio, dropout)
        if bidirectional:
            self.image_attends = MultiHeadCrossAttention(dim, heads, dropout)
            self.image_ffn = FeedForward(dim, ffn_ratio, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, text: Tensor, text_mask: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        text_in = self.text_norm(text)  # (B, Nt, D) pre-norm; both directions read this block's input
        image_in = self.image_norm(image)  # (B, Ni, D)
        text_update, text_to_image = self.text_attends(text_in, image_in, image_mask)  # (B, Nt, D), (B, H, Nt, Ni)
        text = text + self.dropout(text_update)  # (B, Nt, D)
        text = text + self.text_ffn(text)  # (B, Nt, D)
        image_to_text = None
        if self.bidirectional:
            image_update, image_to_text = self.image_attends(image_in, text_in, text_mask)  # (B, Ni, D), (B, H, Ni, Nt)
            image = image + self.dropout(image_update)  # (B, Ni, D)
            image = image + self.image_ffn(image)  # (B, Ni, D)
        return text, image, text_to_image, image_to_text


class CrossAttentionFusion(Fusion):
    """Stacked bidirectional cross-attention between plot tokens and poster patches/object regions."""

    reads_tokens = True

    def __init__(
        self,
        token_dims: Mapping[str, int],
        dim: int,
        depth: int,
        heads: int,
        dropout: float,
        bidirectional: bool = True,
        ffn_ratio: int = 4,
    ):
        modalities = tuple(token_dims)
        image_side = tuple(m for m in modalities if m != "text")
        if "text" not in modalities or not image_side:
            raise ValueError(f"cross-attention needs text and at least one of image/objects; got {list(modalities)}")
        super().__init__(modalities, out_dim=2 * dim)
        self.image_side = image_side  # order of the parts on the image side (patches first, then regions)
        self.bidirectional = bidirectional
        # Each encoder's width -> the common width; the norm starts both streams on the same scale.
        self.projections = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim)) for m, width in token_dims.items()}
        )
        self.type_embedding = nn.Embedding(len(image_side), dim)  # patch vs. region on the image side
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(dim, heads, dropout, ffn_ratio, bidirectional) for _ in range(depth)
        )
        self.text_norm = nn.LayerNorm(dim)
        self.image_norm = nn.LayerNorm(dim)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        inputs = dict(zip(self.modalities, self._inputs(encoded), strict=True))
        text = self.projections["text"](inputs["text"].tokens)  # (B, Nt, D)
        text_mask = inputs["text"].mask  # (B, Nt)
        image_parts = [
            self.projections[m](inputs[m].tokens) + self.type_embedding.weight[i]  # (B, N_m, D) marked by type
            for i, m in enumerate(self.image_side)
        ]
        image = torch.cat(image_parts, dim=1)  # (B, Ni, D) patches, then regions
        image_mask = torch.cat([inputs[m].mask for m in self.image_side], dim=1)  # (B, Ni)
        text_to_image: list[Tensor] = []
        image_to_text: list[Tensor] = []
        for block in self.blocks:
            text, image, t2i, i2t = block(text, text_mask, image, image_mask)  # (B, Nt, D), (B, Ni, D)
            text_to_image.append(t2i)  # (B, H, Nt, Ni)
            if i2t is not None:
                image_to_text.append(i2t)  # (B, H, Ni, Nt)
        text_pooled = masked_mean(self.text_norm(text), text_mask)  # (B, D)
        image_pooled = masked_mean(self.image_norm(image), image_mask)  # (B, D)
        attentions = {"text_to_image": tuple(text_to_image)}
        if self.bidirectional:
            attentions["image_to_text"] = tuple(image_to_text)
        fused = torch.cat([text_pooled, image_pooled], dim=-1)  # (B, 2D) text half first
        return FusionOutput(fused=fused, modalities=self.modalities, attentions=attentions)
