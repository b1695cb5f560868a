"""What the methods chapter shows about the models: the runs chapter 4 trains, as the grid builds them (what
each name stands for in this build, parameter counts per part), and the tensor shapes that flow through one
cross-attention block on a real batch.

The configs come from the grid's own path (`experiments.pipeline.prepare_config`), so chapter 3 counts
exactly the models chapter 4 trains: the profile's stand-ins and overrides included. Counts are taken from
models built with random weights (`pretrained=False`): the numbers are the same and nothing is loaded.
Shapes are traced with forward hooks on the real modules, so the figure cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.dataset import MODALITIES, MMIMDbDataset
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.text import CLEAN
from thesis_lib.experiments.grid import open_grid
from thesis_lib.experiments.pipeline import prepare_config
from thesis_lib.experiments.specs import BASELINE_SUMMARIES
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.fusion.cross_attention import CrossAttentionFusion
from thesis_lib.models.registry import build_from_config
from thesis_lib.models.text import load_tokenizer

if TYPE_CHECKING:
    import pandas as pd

    from thesis_lib.data.mmimdb import Release
    from thesis_lib.experiments.profile import Profile
    from thesis_lib.models.classifier import GenreClassifier

PARTS: tuple[str, ...] = (*MODALITIES, "fusion", "head")  # columns of the parameter table


def without_pretrained_weights(config: ModelConfig) -> ModelConfig:
    """The same architecture with random initialisation (counting parameters needs no weights)."""
    changes = {m: dataclasses.replace(getattr(config, m), pretrained=False)
               for m in ("text", "image") if getattr(config, m) is not None}
    return dataclasses.replace(config, **changes)


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def readable_counts(table: pd.DataFrame) -> pd.DataFrame:
    """`grid_parameter_table` for reading: counts as "22.57M" (or "6,976" below 100k), a missing part blank."""
    import pandas as pd

    def readable(count: Any) -> str:
        if count is None or count is pd.NA:
            return ""
        return f"{count / 1e6:.2f}M" if count >= 100_000 else f"{count:,}"

    counts = [*PARTS, "total", "trainable"]
    shown = table.astype({column: object for column in counts})
    shown[counts] = shown[counts].map(readable)
    return shown


def example_batch(release: Release, ids: Sequence[str], config: ModelConfig,
                  objects: dict[str, torch.Tensor] | None = None, tokenizer: Any = None) -> dict[str, Any]:
    """The batch the model `config` reads for the movies `ids` (evaluation transforms, cleaned plots), with
    `tokenizer` (default: the text backbone's own; a random backbone's is trained: `GridModel.tokenizer`)."""
    if tokenizer is None and config.text is not None:
        tokenizer = load_tokenizer(config.text)
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


# ------------------------------------------------------------------------------------------------------------
# The models as this build trains them


@dataclass(frozen=True)
class GridModel:
    """One run of the profile's grid (first seed, primary split) as the grid builds it."""

    name: str  # the run's name: a registry model, a variant (model@tag) or a baseline
    config: ModelConfig | None  # the network it trains (None: a baseline or the late fusion over runs)
    tokenizer: Any  # the tokenizer its plots are read with (None without text)
    sources: tuple[tuple[str, str], ...]  # (modality, run) a fusion starts from


def grid_models(profile: Profile) -> dict[str, GridModel]:
    """Every run the experiments chapter trains for this profile (first seed, primary split), with the model
    config the grid builds for it: `experiments.pipeline.prepare_config`, so the profile's model overrides
    and input sizes, a fusion's encoders from its source runs and a random text backbone's vocabulary from
    its trained tokenizer are all applied. Reads the release and makes the split as the grid does; trains
    nothing."""
    context = open_grid(profile, seeds=profile.seeds[:1])
    models = {}
    for spec in context.plan.values():
        if spec.split != profile.primary_split:
            continue
        config, tokenizer = (prepare_config(spec, context)[:2] if spec.kind == "train" else (None, None))
        models[spec.name] = GridModel(spec.name, config, tokenizer, spec.sources)
    return models


def stands_for(model: GridModel) -> str:
    """What a run's name stands for in this build, e.g. "image_resnet50": "resnet18 with layers 1-1-1-1
    (ResNet-10), channels 16-32-64-128 (0.25x width); random init; fine-tuned; 128 px"."""
    if model.name in BASELINE_SUMMARIES:
        return BASELINE_SUMMARIES[model.name]
    if model.config is None:  # the late fusion over finished runs
        runs = ", ".join(run for _, run in model.sources)
        return f"late fusion: per-genre weighted mean of the probabilities of {runs} (weights tuned on dev)"
    config = model.config
    reused = dict(model.sources)  # modality -> the run whose encoder a fusion starts from
    parts = []
    if config.text is not None:
        text = config.text
        pooling = "" if config.fusion.kind == "label_attention" else f"{text.pooling} pooling, "  # reads tokens
        parts.append(_encoder_words("text", text.backbone, text, reused, f"{pooling}{text.max_length} tokens"))
    if config.image is not None:
        image = config.image
        architecture = image_architecture(image.backbone, dict(image.timm_kwargs), image.depth)
        parts.append(_encoder_words("image", architecture, image, reused, f"{image.input_size} px"))
    if config.objects is not None:
        parts.append(f"{config.objects.source} detections as class, box and score")
    fusion = config.fusion
    if fusion.kind == "cross_attention":
        parts.append(f"cross-attention fusion ({fusion.depth} blocks, {fusion.heads} heads, width {fusion.dim}, "
                     f"{'bidirectional' if fusion.bidirectional else 'one-way'})")
    elif fusion.kind == "late":
        parts.append("late fusion trained end to end (a head per modality, learned per-genre weights)")
    elif fusion.kind == "label_attention":
        parts.append("label-wise attention: each genre attends over the tokens (CAML), a logit per genre")
    elif fusion.kind != "identity":
        parts.append(f"{fusion.kind} fusion (width {fusion.dim})")
    return "; ".join(parts)


def image_architecture(backbone: str, timm_kwargs: dict[str, Any], depth: int | None = None) -> str:
    """A timm backbone with its shape changes in words: a ResNet's depth and width, a ViT's width and blocks."""
    words = []
    layers, channels = timm_kwargs.get("layers"), timm_kwargs.get("channels")
    if layers is not None and backbone.startswith(("resnet18", "resnet34")):  # basic blocks: 2 convolutions each
        words.append(f"layers {'-'.join(map(str, layers))} (ResNet-{2 * sum(layers) + 2})")
    if channels is not None and backbone.startswith("resnet"):
        words.append(f"channels {'-'.join(map(str, channels))} ({channels[0] / 64:g}x width)")
    if "embed_dim" in timm_kwargs:
        words.append(f"width {timm_kwargs['embed_dim']}")
    if "num_heads" in timm_kwargs:
        words.append(f"{timm_kwargs['num_heads']} heads")
    if depth is not None:
        words.append(f"{depth} blocks")
    known = {"layers", "channels", "embed_dim", "num_heads"}
    words += [f"{key}={value}" for key, value in timm_kwargs.items() if key not in known]
    return backbone + (f" with {', '.join(words)}" if words else "")


def _encoder_words(modality: str, architecture: str, part: Any, reused: Mapping[str, str], inputs: str) -> str:
    """One encoder in words: the source run's (a fusion's, by name) or its own architecture, origin, training
    and inputs."""
    state = "frozen" if part.frozen else "fine-tuned"
    if modality in reused:
        return f"{modality} encoder of {reused[modality]} ({state})"
    origin = "random init" if not part.pretrained or part.backbone.startswith("random-") else "pretrained"
    return f"{modality} {architecture} ({origin}, {state}, {inputs})"


def grid_parameter_table(models: Mapping[str, GridModel]) -> pd.DataFrame:
    """One row per run of the grid: what its name stands for, its parameters per part (built with random
    weights: counts do not depend on them), total and trainable (a frozen encoder trains nothing). Runs that
    train no network have no counts (<NA>)."""
    import pandas as pd

    rows = {}
    for name, model in models.items():
        row: dict[str, Any] = {"stands for (this build)": stands_for(model)}
        if model.config is not None:
            network = build_from_config(without_pretrained_weights(model.config))
            total, trainable = network.parameter_counts()
            row |= {m: _count(network.encoders[m]) for m in network.modalities}
            row |= {"fusion": _count(network.fusion), "head": _count(network.head), "total": total,
                    "trainable": trainable}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(
        columns=["stands for (this build)", *PARTS, "total", "trainable"])
    counts = [*PARTS, "total", "trainable"]
    return table.astype({column: "Int64" for column in counts}).rename_axis("run")
