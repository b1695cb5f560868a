"""The values that flow between encoders, fusions and the head (the MultiBench contract).

Every encoder returns an `EncoderOutput`, every fusion a `FusionOutput`, the whole model a `ModelOutput`.
They are plain dataclasses of tensors, so frozen-backbone features can be cached and fed back later
(`GenreClassifier.classify`), and the XAI code can read attention maps without hooks of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """One modality's features: a set of tokens with a padding mask, and one pooled vector per sample.

    `tokens` and `pooled` may have different widths (the object encoder's pooled vector is a fixed summary
    of the detections); each encoder reports them as `token_dim` and `pooled_dim`.
    """

    tokens: Tensor  # (B, N, D_tokens) word pieces | image patches / grid cells | detected regions
    mask: Tensor  # (B, N) bool, True = a real token; False = padding or an absent region
    pooled: Tensor  # (B, D_pooled) one vector per sample (CLS, global average, detection summary)
    attentions: tuple[Tensor, ...] | None = None  # the backbone's self-attention, one (B, H, N, N) per layer

    def __post_init__(self) -> None:
        # Cached features come back from disk: catch a transposed or mis-typed tensor here, not deep in a fusion.
        if self.tokens.dim() != 3:
            raise ValueError(f"EncoderOutput.tokens must be (B, N, D); got shape {tuple(self.tokens.shape)}")
        if self.mask.dtype != torch.bool or self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"EncoderOutput.mask must be bool (B, N) = {tuple(self.tokens.shape[:2])}; "
                f"got {self.mask.dtype} {tuple(self.mask.shape)}"
            )
        if self.pooled.dim() != 2 or self.pooled.shape[0] != self.tokens.shape[0]:
            raise ValueError(
                f"EncoderOutput.pooled must be (B, D) with B = {self.tokens.shape[0]}; got {tuple(self.pooled.shape)}"
            )

    def to(self, device: torch.device | str) -> EncoderOutput:
        """The same features on another device."""
        attentions = None if self.attentions is None else tuple(a.to(device) for a in self.attentions)
        return EncoderOutput(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), attentions)

    def detach(self) -> EncoderOutput:
        """The same features cut from the autograd graph (for caching frozen-backbone features)."""
        attentions = None if self.attentions is None else tuple(a.detach() for a in self.attentions)
        return EncoderOutput(self.tokens.detach(), self.mask, self.pooled.detach(), attentions)


@dataclass
class FusionOutput:
    """What a fusion hands to the head, plus whatever it can show about how it mixed the modalities."""

    fused: Tensor  # (B, D_fused); late fusion: already (B, 23) logits
    modalities: tuple[str, ...] = ()  # the order of M in the weights below
    # Cross-attention, one tensor per layer: "text_to_image" (B, H, N_text, N_image) and, when bidirectional,
    # "image_to_text" (B, H, N_image, N_text); the image side is image patches, then object regions.
    attentions: dict[str, tuple[Tensor, ...]] | None = None
    modality_weights: Tensor | None = None  # (B, M) per-sample importance, rows sum to 1 (attention fusion)
    genre_modality_weights: Tensor | None = None  # (M, 23) per-genre weights, columns sum to 1 (late fusion)
    modality_logits: dict[str, Tensor] | None = None  # (B, 23) per modality, before combination (late fusion)


@dataclass
class ModelOutput:
    """The model's answer for a batch: 23 genre logits and the explanations the fusion can give."""

    logits: Tensor  # (B, 23) one independent logit per genre (multi-label: sigmoid, not softmax)
    fused: Tensor  # (B, D_fused) the head's input
    modalities: tuple[str, ...] = ()
    attentions: dict[str, tuple[Tensor, ...]] | None = None  # see FusionOutput.attentions
    modality_weights: Tensor | None = None  # (B, M)
    genre_modality_weights: Tensor | None = None  # (M, 23)
    modality_logits: dict[str, Tensor] | None = None  # (B, 23) per modality (late fusion)
    # Each backbone's own self-attention (e.g. BERT over the plot), when its config asked for it.
    encoder_attentions: dict[str, tuple[Tensor, ...]] = field(default_factory=dict)


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real tokens of each sample; a sample without any real token gets zeros (not NaN)."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)  # (B, N, 1)
    total = (tokens * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1) at least 1, so an empty sample divides 0 by 1
    return total / count  # (B, D)
