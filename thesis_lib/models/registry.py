"""Models by name: each recipe is a `ModelConfig` in a small (offline, CPU) and a full (pretrained) form.

    build_model("fusion_cross_attention")                                  # small form
    build_model("fusion_cross_attention", size="full")                     # BERT-base + ViT-B/16 + YOLO regions
    build_model("text_bert", size="full", text_backbone="roberta-base")    # section_field=value overrides

Small forms: the packaged pretrained MiniLM for "BERT", a random 2-layer RoBERTa, random ResNet-18 and a
4-block ViT-Tiny, small fusion widths. Full forms: bert-base-uncased / roberta-base, ResNet-50 /
ViT-B/16 (ImageNet weights), detections from a COCO-80 detector. Multimodal recipes read text + image +
objects (the thesis default); `modalities="text,image"` drops a part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from thesis_lib.errors import ThesisError
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import (
    SIZES,
    FusionConfig,
    ImageEncoderConfig,
    ModelConfig,
    ObjectEncoderConfig,
    TextEncoderConfig,
)
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.fusion import FUSIONS, build_fusion
from thesis_lib.models.heads import GenreHead
from thesis_lib.models.object_encoder import ObjectEncoder

Recipe = Callable[[str], ModelConfig]  # size -> config
_RECIPES: dict[str, Recipe] = {}


class UnknownModelError(ThesisError, KeyError):
    """A model name that no recipe is registered under (a KeyError, as a dict lookup would raise)."""

    def __str__(self) -> str:
        return str(self.args[0])  # KeyError would quote the whole message


def register_model(name: str) -> Callable[[Recipe], Recipe]:
    """Decorator: register a recipe (a function of the size) under `name`; its docstring describes it."""

    def add(recipe: Recipe) -> Recipe:
        if name in _RECIPES:
            raise ValueError(f"model {name!r} is registered twice")
        _RECIPES[name] = recipe
        return recipe

    return add


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_RECIPES)


def model_summary(name: str) -> str:
    """One line on what the model reads and how it combines it: its recipe's docstring's first line."""
    if name not in _RECIPES:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return (_RECIPES[name].__doc__ or name).strip().splitlines()[0]


def default_config(name: str, size: str = "small") -> ModelConfig:
    """The recipe `name` in the given size ("small" | "full")."""
    if name not in _RECIPES:
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    if size not in SIZES:
        raise ValueError(f"model size {size!r} is not one of {list(SIZES)}")
    return _RECIPES[name](size)


def build_model(
    name: str, config: ModelConfig | None = None, *, size: str = "small", **overrides: Any
) -> GenreClassifier:
    """Build the registered model `name` (its `size` form, or `config`), with `section_field=value` overrides."""
    config = default_config(name, size) if config is None else config
    if config.name != name:
        raise ValueError(f"build_model({name!r}) was given the config of {config.name!r}")
    return build_from_config(config.with_overrides(**overrides) if overrides else config)


def build_from_config(config: ModelConfig) -> GenreClassifier:
    """Build the model a `ModelConfig` describes (e.g. one read back from a run record)."""
    reads_tokens = FUSIONS[config.fusion.kind].reads_tokens
    encoders = {m: build_encoder(m, getattr(config, m), reads_tokens=reads_tokens) for m in config.modalities}
    fusion = build_fusion(config.fusion, encoders)
    head = nn.Identity() if fusion.produces_logits else GenreHead(fusion.out_dim, dropout=config.head_dropout)
    return GenreClassifier(encoders, fusion, head, config=config)


def build_encoder(
    modality: str,
    config: TextEncoderConfig | ImageEncoderConfig | ObjectEncoderConfig,
    *,
    reads_tokens: bool = True,
) -> Encoder:
    """The encoder for one modality. `reads_tokens=False` (pooled-only fusion) skips unused token layers."""
    # Imported here: transformers and timm take seconds to import, and `thesis models list` needs neither.
    if modality == "text":
        from thesis_lib.models.text import TextEncoder  # transformers: seconds to import

        return TextEncoder.from_config(config)
    if modality == "image":
        from thesis_lib.models.image import ImageEncoder  # timm: seconds to import

        return ImageEncoder.from_config(config)
    if modality == "objects":
        return ObjectEncoder.from_config(config, region_tokens=reads_tokens)
    raise ValueError(f"unknown modality {modality!r}")


def describe_model(name: str, config: ModelConfig | None = None, *, size: str = "small") -> str:
    """Parameters (total / trainable, per part) and the batch the model expects, as printable text.

    Built with random weights (`pretrained=False`): the counts are the same and nothing is loaded.
    """
    label = size if config is None else "custom config"
    config = default_config(name, size) if config is None else config
    model = build_from_config(_without_pretrained_weights(config))
    total, trainable = model.parameter_counts()
    lines = [
        f"{name} ({label}): {' + '.join(model.modalities)} -> {config.fusion.kind} fusion -> 23 genre logits",
        f"  parameters: {total:,} total, {trainable:,} trainable",
    ]
    parts: list[tuple[str, nn.Module, str]] = [
        (m, model.encoders[m], _backbone_name(getattr(config, m))) for m in model.modalities
    ]
    parts += [("fusion", model.fusion, config.fusion.kind), ("head", model.head, "dropout + linear")]
    for part, module, what in parts:
        count = sum(p.numel() for p in module.parameters())
        frozen = " (frozen)" if getattr(module, "frozen", False) else ""
        lines.append(f"    {part:<8} {what}: {count:,}{frozen}")
    lines.append("  expects batch keys:")
    for encoder in model.encoders.values():
        lines += [f"    {key:<15} {what}" for key, what in encoder.expected_input()]
    return "\n".join(lines)


def _without_pretrained_weights(config: ModelConfig) -> ModelConfig:
    changes = {
        m: _replace(getattr(config, m), pretrained=False)
        for m in ("text", "image")
        if getattr(config, m) is not None
    }
    return _replace(config, **changes)


def _replace(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)


def _backbone_name(config: Any) -> str:
    return getattr(config, "backbone", None) or f"{config.source} detections"


# ---------------------------------------------------------------------------------------------------------
# Recipes. Each part has one small and one full form; the recipes only combine them.


def _bert(size: str) -> TextEncoderConfig:
    if size == "small":  # the packaged all-MiniLM-L6-v2: a real pretrained BERT, 22.7M parameters
        return TextEncoderConfig(backbone="minilm", pretrained=True, max_length=128)
    return TextEncoderConfig(backbone="bert-base-uncased", pretrained=True, max_length=512)


def _roberta(size: str) -> TextEncoderConfig:
    if size == "small":  # no RoBERTa ships offline: a small random one for a locally trained BPE tokenizer
        return TextEncoderConfig(backbone="random-roberta-small", pretrained=False, max_length=128)
    return TextEncoderConfig(backbone="roberta-base", pretrained=True, max_length=512)


def _resnet(size: str) -> ImageEncoderConfig:
    if size == "small":
        return ImageEncoderConfig(backbone="resnet18", pretrained=False)
    return ImageEncoderConfig(backbone="resnet50", pretrained=True)


def _vit(size: str) -> ImageEncoderConfig:
    if size == "small":  # ViT-Tiny cut to 4 blocks: ~2M parameters
        return ImageEncoderConfig(backbone="vit_tiny_patch16_224", pretrained=False, depth=4)
    return ImageEncoderConfig(backbone="vit_base_patch16_224", pretrained=True)


def _objects(size: str, source: str) -> ObjectEncoderConfig:
    if size == "small":
        # Detectors trained on the synthetic twin: a few dozen object kinds at most, "person" at id 0.
        return ObjectEncoderConfig(source=source, num_classes=32, person_class=0, dim=64)
    return ObjectEncoderConfig(source=source, num_classes=80, person_class=0, dim=128)  # COCO-80


def _fusion(size: str, kind: str) -> FusionConfig:
    if size == "small":
        return FusionConfig(kind=kind, dim=128, depth=2, heads=4, dropout=0.1)
    return FusionConfig(kind=kind, dim=256, depth=2, heads=8, dropout=0.1)


def _multimodal(name: str, size: str, kind: str) -> ModelConfig:
    """The thesis default inputs: BERT on the plot, ViT on the poster, YOLO regions."""
    return ModelConfig(
        name=name, text=_bert(size), image=_vit(size), objects=_objects(size, "yolo"), fusion=_fusion(size, kind)
    )


@register_model("text_bert")
def text_bert(size: str) -> ModelConfig:
    """BERT on the plot alone ([CLS] -> head)."""
    return ModelConfig(name="text_bert", text=_bert(size))


@register_model("text_roberta")
def text_roberta(size: str) -> ModelConfig:
    """RoBERTa on the plot alone (<s> -> head)."""
    return ModelConfig(name="text_roberta", text=_roberta(size))


@register_model("image_resnet50")
def image_resnet50(size: str) -> ModelConfig:
    """ResNet-50 on the poster alone (global average pool -> head); small form: random ResNet-18."""
    return ModelConfig(name="image_resnet50", image=_resnet(size))


@register_model("image_vit")
def image_vit(size: str) -> ModelConfig:
    """ViT-B/16 on the poster alone (CLS -> head); small form: 4-block ViT-Tiny."""
    return ModelConfig(name="image_vit", image=_vit(size))


@register_model("objects_yolo")
def objects_yolo(size: str) -> ModelConfig:
    """YOLO detections alone: the detection summary (counts, scores, areas, people) -> head."""
    return ModelConfig(name="objects_yolo", objects=_objects(size, "yolo"))


@register_model("objects_frcnn")
def objects_frcnn(size: str) -> ModelConfig:
    """Faster R-CNN detections alone: the detection summary -> head."""
    return ModelConfig(name="objects_frcnn", objects=_objects(size, "frcnn"))


@register_model("objects_oracle")
def objects_oracle(size: str) -> ModelConfig:
    """The twin's ground-truth objects as a perfect detector (upper bound for the object modality; twin only)."""
    return ModelConfig(name="objects_oracle", objects=_objects(size, "oracle"))


@register_model("fusion_early")
def fusion_early(size: str) -> ModelConfig:
    """Text + image + objects: pooled vectors concatenated, MLP."""
    return _multimodal("fusion_early", size, "early")


@register_model("fusion_late")
def fusion_late(size: str) -> ModelConfig:
    """Text + image + objects: a head per modality, logits averaged with learned per-genre weights."""
    return _multimodal("fusion_late", size, "late")


@register_model("fusion_attention")
def fusion_attention(size: str) -> ModelConfig:
    """Text + image + objects: per-sample softmax weights over the modalities' projected pooled vectors."""
    return _multimodal("fusion_attention", size, "attention")


@register_model("fusion_cross_attention")
def fusion_cross_attention(size: str) -> ModelConfig:
    """Text + image + objects: plot tokens and poster patches/regions cross-attend (the thesis's proposal)."""
    return _multimodal("fusion_cross_attention", size, "cross_attention")
