"""What the methods chapter shows about the models: parameter counts per part, and the tensor shapes that
flow through one cross-attention block on a real batch.

Counts are taken from models built with random weights (`pretrained=False`): the numbers are the same and
nothing is loaded. Shapes are traced with forward hooks on the real modules, so the figure cannot drift
from the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.dataset import MODALITIES, MMIMDbDataset
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.text import CLEAN
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.fusion.cross_attention import CrossAttentionFusion
from thesis_lib.models.registry import build_from_config, default_config, list_models
from thesis_lib.models.text import load_tokenizer

if TYPE_CHECKING:
    import pandas as pd

    from thesis_lib.data.mmimdb import Release
    from thesis_lib.models.classifier import GenreClassifier

PARTS: tuple[str, ...] = (*MODALITIES, "fusion", "head")  # columns of the parameter table


def without_pretrained_weights(config: ModelConfig) -> ModelConfig:
    """The same architecture with random initialisation (counting parameters needs no weights)."""
    changes = {m: dataclasses.replace(getattr(config, m), pretrained=False)
               for m in ("text", "image") if getattr(config, m) is not None}
    return dataclasses.replace(config, **changes)


def profile_config(name: str, size: str, image_size: int | None = None,
                   text_max_length: int | None = None) -> ModelConfig:
    """The registry recipe `name` in `size`, with a profile's input sizes applied to the parts it has
    (as the experiment grid does: thesis_lib.experiments.specs.resolve_model_config)."""
    config = default_config(name, size)
    overrides: dict[str, Any] = {}
    if config.image is not None and image_size is not None:
        overrides["image_input_size"] = image_size
    if config.text is not None and text_max_length is not None:
        overrides["text_max_length"] = text_max_length
    return config.with_overrides(**overrides) if overrides else config


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def parameter_table(size: str, names: Sequence[str] | None = None, *, image_size: int | None = None,
                    text_max_length: int | None = None) -> pd.DataFrame:
    """One row per registered model (its `size` recipe at the profile's input sizes): modalities, fusion
    kind, parameters per part, total and trainable. Parts a model lacks are <NA>."""
    import pandas as pd


    rows = {}
    for name in names or list_models():
        config = profile_config(name, size, image_size, text_max_length)
        model = build_from_config(without_pretrained_weights(config))
        total, trainable = model.parameter_counts()
        row: dict[str, Any] = {"modalities": " + ".join(model.modalities), "fusion_kind": config.fusion.kind}
        row |= {m: _count(model.encoders[m]) for m in model.modalities}
        row |= {"fusion": _count(model.fusion), "head": _count(model.head), "total": total, "trainable": trainable}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.reindex(columns=["modalities", "fusion_kind", *PARTS, "total", "trainable"])
    counts = [*PARTS, "total", "trainable"]
    return table.astype({column: "Int64" for column in counts})  # integers; a missing part stays <NA>


def readable_counts(table: pd.DataFrame) -> pd.DataFrame:
    """`parameter_table` for reading: counts as "22.57M" (or "6,976" below 100k), a missing part blank."""
    import pandas as pd

    def readable(count: Any) -> str:
        if count is None or count is pd.NA:
            return ""
        return f"{count / 1e6:.2f}M" if count >= 100_000 else f"{count:,}"

    counts = [*PARTS, "total", "trainable"]
    shown = table.drop(columns=["modalities"]).astype({column: object for column in counts})
    shown[counts] = shown[counts].map(readable)
    return shown


def example_batch(release: Release, ids: Sequence[str], config: ModelConfig,
                  objects: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The batch the model `config` reads for the movies `ids` (evaluation transforms, cleaned plots)."""
    tokenizer = load_tokenizer(config.text) if config.text is not None else None
    modalities = [m for m in ("image", "text") if getattr(config, m) is not None]
    transform = None
    if config.image is not None:
        transform = build_image_transform(ImageTransformConfig(size=config.image.input_size), train=False)
    dataset = MMIMDbDataset(release.movies_in(ids), image_transform=transform, text_cleaning=CLEAN,
                            tokenizer=tokenizer, modalities=modalities)
    max_length = config.text.max_length if config.text is not None else 512
    batch = MultimodalCollator(tokenizer, max_length=max_length)([dataset[i] for i in range(len(dataset))])
    if config.objects is not None:
        if objects is None:
            raise ValueError(f"model {config.name!r} reads detections: pass objects= (batch['objects'])")
        batch["objects"] = objects
    return batch


@dataclass(frozen=True)
class CrossAttentionTrace:
    """Shapes seen inside the first cross-attention block, text querying the image side."""

    shapes: dict[str, tuple[int, ...]]  # text, image, query, key, value (per head), weights, update
    heads: int
    head_dim: int
    image_parts: tuple[str, ...]  # what the image side is made of, in order (patches, then regions)


def trace_cross_attention(model: GenreClassifier, batch: dict[str, Any]) -> CrossAttentionTrace:
    """Run `model` once on `batch` (eval mode, no gradients) and record the shapes of the first block."""
    fusion = model.fusion
    if not isinstance(fusion, CrossAttentionFusion):
        raise TypeError(f"model {getattr(model.config, 'name', '?')!r} has no cross-attention fusion")
    block = fusion.blocks[0]
    attention = block.text_attends
    heads, head_dim = attention.heads, attention.head_dim
    shapes: dict[str, tuple[int, ...]] = {}

    def per_head(tensor: torch.Tensor) -> tuple[int, ...]:
        batch_size, tokens, _ = tensor.shape
        return (batch_size, heads, tokens, head_dim)  # how the module views it: (B, H, N, Dh)

    def record_inputs(_module: nn.Module, args: tuple) -> None:
        text, _text_mask, image, _image_mask = args
        shapes["text"], shapes["image"] = tuple(text.shape), tuple(image.shape)

    def record(name: str):
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            shapes[name] = per_head(output)
        return hook

    def record_attention(_module: nn.Module, _args: tuple, output: tuple) -> None:
        update, weights = output
        shapes["update"], shapes["weights"] = tuple(update.shape), tuple(weights.shape)

    handles = [
        block.register_forward_pre_hook(record_inputs),
        attention.query.register_forward_hook(record("query")),
        attention.key.register_forward_hook(record("key")),
        attention.value.register_forward_hook(record("value")),
        attention.register_forward_hook(record_attention),
    ]
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return CrossAttentionTrace(shapes, heads, head_dim, fusion.image_side)
