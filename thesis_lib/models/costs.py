"""What one sample costs a model, counted on the real architecture: FLOPs and parameter bytes.

`FlopCounterMode` counts the matmuls, convolutions and attention products of a forward (and backward) pass
of the very modules the project trains, built on PyTorch's meta device (shapes, no storage, no weights:
a BERT-base pass "runs" in milliseconds). Encoders are counted on their own, per (backbone, input length),
and the fusion + head on encoder outputs of the right shapes, so a plan combines them per run: a fine-tune
pays encoder forward + backward, a frozen-backbone run pays one encoder forward per cached movie and the
fusion + head for training. Counts are per sample (batch 1, no padding: `group_by_length` batches are
close to that) and cached in-process, since a plan asks for the same few shapes again and again.

Not counted: the object encoder's region layers (a few MFLOP per poster, below 0.01% of any encoder) and
elementwise work (norms, activations, the optimizer), which costs time but no matmul FLOPs (MFU already
accounts for it).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
from torch import nn

from thesis_lib.models.architectures import meta_image_backbone, meta_text_backbone, text_architectures
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import ImageEncoderConfig, ModelConfig, TextEncoderConfig
from thesis_lib.models.flops import count_flops
from thesis_lib.models.fusion import FUSIONS, build_fusion
from thesis_lib.models.heads import GenreHead
from thesis_lib.models.image import ImageEncoder
from thesis_lib.models.object_encoder import ObjectEncoder
from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.models.text import TextEncoder, load_text_backbone

REGIONS = 16  # detections kept per poster (detection.DetectorConfig.max_regions): the object tokens


@dataclass(frozen=True)
class EncoderCost:
    """One encoder's cost per sample at one input length."""

    forward: int            # FLOPs of a forward pass
    train: int              # FLOPs of forward + backward (weights and activations)
    tokens: int             # tokens it outputs (what a token cache stores per sample)
    token_dim: int          # width of a token
    pooled_dim: int         # width of the pooled vector
    parameters: int         # parameters of the encoder


def meta_text_encoder(config: TextEncoderConfig) -> TextEncoder:
    """The project's text encoder on the meta device: the published architecture for a known name (no file
    needed), else the backbone's own config (local files; the random-* small ones need none)."""
    if config.backbone in text_architectures():
        backbone = meta_text_backbone(config.backbone)
    else:
        with torch.device("meta"):
            backbone = load_text_backbone(dataclasses.replace(config, pretrained=False, need_attentions=True))
    return TextEncoder(backbone, config)


def meta_image_encoder(config: ImageEncoderConfig) -> ImageEncoder:
    return ImageEncoder(meta_image_backbone(config.backbone, input_size=config.input_size, depth=config.depth,
                                            timm_kwargs=dict(config.timm_kwargs)), config)


@functools.cache
def meta_classifier(config: ModelConfig) -> GenreClassifier:
    """The whole model of `config` on the meta device (for parameter counts and fusion FLOPs; built once
    per config, since building BERT + ViT even without storage takes a second)."""
    reads_tokens = FUSIONS[config.fusion.kind].reads_tokens
    encoders: dict[str, nn.Module] = {}
    with torch.device("meta"):
        for modality in config.modalities:
            part = getattr(config, modality)
            if modality == "text":
                encoders[modality] = meta_text_encoder(part)
            elif modality == "image":
                encoders[modality] = meta_image_encoder(part)
            else:
                encoders[modality] = ObjectEncoder.from_config(part, region_tokens=reads_tokens)
        fusion = build_fusion(config.fusion, encoders)
        head = nn.Identity() if fusion.produces_logits else GenreHead(fusion.out_dim, dropout=config.head_dropout)
        return GenreClassifier(encoders, fusion, head, config=config)


@functools.cache
def text_cost(config: TextEncoderConfig, length: int) -> EncoderCost:
    """Per-sample cost of the text encoder over `length` tokens (special tokens included)."""
    encoder = meta_text_encoder(config)
    encoder.requires_grad_(True)
    ids = torch.zeros(1, length, dtype=torch.long, device="meta")  # (1, L); no mask: no padding to skip

    def forward() -> torch.Tensor:
        return encoder.backbone(input_ids=ids).last_hidden_state  # (1, L, D)

    return _encoder_cost(encoder, forward, tokens=length)


@functools.cache
def image_cost(config: ImageEncoderConfig) -> EncoderCost:
    """Per-sample cost of the image encoder on one poster of `config.input_size` pixels."""
    encoder = meta_image_encoder(config)
    encoder.requires_grad_(True)
    posters = torch.zeros(1, 3, config.input_size, config.input_size, device="meta")  # (1, 3, S, S)

    def forward() -> torch.Tensor:
        return encoder({"image": posters}).tokens  # (1, N, D)

    with torch.device("meta"):
        tokens = forward().shape[1]
    return _encoder_cost(encoder, forward, tokens=tokens)


def _encoder_cost(encoder: nn.Module, forward, tokens: int) -> EncoderCost:
    forward_flops = count_flops(forward)

    def train() -> None:
        forward().float().sum().backward()

    return EncoderCost(forward_flops, count_flops(train), tokens, encoder.token_dim, encoder.pooled_dim,
                       sum(p.numel() for p in encoder.parameters()))


@functools.cache
def classify_cost(config: ModelConfig, text_length: int) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs per sample of the fusion + head, on encoder outputs of the shapes
    the encoders produce (`text_length` plot tokens, the image encoder's tokens, REGIONS detections)."""
    model = meta_classifier(config)
    model.requires_grad_(True)
    encoded = {}
    for modality, encoder in model.encoders.items():
        count = {"text": text_length, "objects": REGIONS}.get(modality)
        if modality == "image":
            count = image_cost(config.image).tokens
        tokens = torch.zeros(1, count, encoder.token_dim, device="meta", requires_grad=True)  # (1, N, D)
        pooled = torch.zeros(1, encoder.pooled_dim, device="meta", requires_grad=True)  # (1, D)
        mask = torch.ones(1, count, dtype=torch.bool, device="meta")  # (1, N)
        encoded[modality] = EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def forward() -> torch.Tensor:
        return model.classify(encoded).logits  # (1, 23)

    def train() -> None:
        forward().float().sum().backward()

    return count_flops(forward), count_flops(train)


@functools.cache
def parameter_counts(config: ModelConfig) -> dict[str, int]:
    """Parameters by part ("text", "image", "objects", "fusion", "head") of the model `config` describes."""
    model = meta_classifier(config)
    counts = {m: sum(p.numel() for p in encoder.parameters()) for m, encoder in model.encoders.items()}
    counts["fusion"] = sum(p.numel() for p in model.fusion.parameters())
    counts["head"] = sum(p.numel() for p in model.head.parameters())
    return counts
