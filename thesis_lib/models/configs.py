"""Typed, frozen configs for every model part; a `ModelConfig` names one model completely.

Defaults describe a sensible single part; the registry's recipes (`thesis_lib.models.registry`) choose
the small (offline, CPU) and full (pretrained, GPU) forms. Fields are overridden by `section_field=value`
with typed values (e.g. `text_backbone="bert-base-uncased"`, `fusion_depth=2`), see `with_overrides`; text
from a command line or papermill is typed where it enters (`thesis_lib.experiments.profile`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from thesis_lib.data.dataset import MODALITIES
from thesis_lib.errors import ThesisError

FUSION_KINDS = ("identity", "label_attention", "early", "late", "attention", "cross_attention")
UNIMODAL_KINDS = ("identity", "label_attention")  # readouts of one modality (no fusion of two)
SIZES = ("small", "full")
# The timm.create_model arguments an ImageEncoderConfig may carry: the size and regularisation of a ResNet or
# a ViT, as numbers and flags. Configs come back from run records, which may come from another machine:
# checkpoint_path=, pretrained_cfg_overlay=dict(file=...), cache_dir= or a layer named by a string would let
# such a record make timm open a file of its choosing or build something else, so only these pass.
TIMM_KWARGS_ALLOWED = frozenset({
    # ResNet
    "layers", "channels", "stem_width", "base_width", "cardinality", "output_stride", "block_reduce_first",
    "down_kernel_size", "avg_down", "replace_stem_pool", "drop_block_rate", "zero_init_last",
    # ViT
    "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "qk_norm", "init_values",
    "class_token", "no_embed_class", "reg_tokens", "pre_norm", "final_norm", "fc_norm", "dynamic_img_size",
    "dynamic_img_pad", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate",
    # both
    "drop_rate", "drop_path_rate",
})


class ModelConfigError(ThesisError, ValueError):
    """A config value no builder may be handed (see TIMM_KWARGS_ALLOWED)."""


def allowed_timm_kwargs(pairs: tuple[tuple[str, Any], ...] | dict[str, Any]) -> dict[str, Any]:
    """`ImageEncoderConfig.timm_kwargs` as keyword arguments, or ModelConfigError naming what is refused:
    a name outside TIMM_KWARGS_ALLOWED, or a value other than a number, a flag, None or a tuple of numbers."""
    kwargs = dict(pairs)
    refused = sorted(set(kwargs) - TIMM_KWARGS_ALLOWED, key=str)
    if refused:
        raise ModelConfigError(f"image timm_kwargs {refused} are not allowed: only the architecture's sizes and "
                               f"dropout rates are ({', '.join(sorted(TIMM_KWARGS_ALLOWED))})")
    odd = sorted(key for key, value in kwargs.items() if not _is_plain_number(value))
    if odd:
        raise ModelConfigError(f"image timm_kwargs {odd}: values must be numbers, flags or lists of numbers")
    return kwargs


def _is_plain_number(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(isinstance(item, int | float) for item in value)  # bools are ints too: fine
    return value is None or isinstance(value, int | float)


@dataclass(frozen=True)
class TextEncoderConfig:
    # "minilm" (packaged all-MiniLM-L6-v2, pretrained, offline), "random-bert-small" / "random-roberta-small"
    # (hidden 128, 2 layers, 2 heads, random init), or any Hugging Face name ("bert-base-uncased", "roberta-base").
    backbone: str = "minilm"
    pretrained: bool = True  # load pretrained weights where the backbone has them (random-* never do)
    frozen: bool = False  # features only: no gradients, eval mode (dropout off); cacheable
    need_attentions: bool = False  # eager attention, returning per-layer maps (SDPA computes none)
    max_length: int = 512  # longest token sequence accepted; the tokenizer truncates plots to it
    pooling: str = "cls"  # "cls" (the [CLS]/<s> token, BERT's convention) or "mean" over real tokens
    # random-* only: must fit the tokenizer trained on the plots (thesis_lib.data.tokenizers, whose default
    # vocabulary is 8000; min_frequency can leave it smaller, which only leaves embedding rows unused).
    vocab_size: int = 8000
    pad_token_id: int | None = None  # None: 0 for BERT ([PAD]), 1 for RoBERTa (<pad>)

    def __post_init__(self) -> None:
        _check_choice("text pooling", self.pooling, ("cls", "mean"))


@dataclass(frozen=True)
class ImageEncoderConfig:
    # Any timm name: "resnet50" (local features = the layer4 grid, 7x7 at 224 px), "vit_base_patch16_224"
    # (patch tokens + CLS); offline: "resnet18", "vit_tiny_patch16_224" with fewer blocks.
    backbone: str = "resnet50"
    pretrained: bool = True  # timm pretrained weights (local file, else the HF cache/hub)
    frozen: bool = False  # features only: no gradients, eval mode (BatchNorm keeps its running stats)
    need_attentions: bool = False  # ViT: unfused attention, returning per-block maps (CNNs have none)
    input_size: int = 224  # side of the square input in pixels; ViT position embeddings are built for it
    depth: int | None = None  # ViT: number of blocks (None = the architecture's own); fewer = cheaper offline
    # Extra timm.create_model arguments as (name, value) pairs, e.g. (("channels", (8, 16, 32, 64)),) to shrink
    # a ResNet in tests; kept as pairs so the config stays immutable.
    timm_kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ObjectEncoderConfig:
    source: str = "yolo"  # whose detections fill batch["objects"]: "yolo" | "frcnn" | "oracle" (twin ground truth)
    num_classes: int = 80  # the detector's vocabulary; class ids are 0..num_classes-1 (COCO-80 order if pretrained)
    person_class: int | None = 0  # id of "person" (COCO-80: 0) for the people count; None if the detector has none
    dim: int = 128  # width of a region token
    max_people: int = 10  # the people count saturates here (a crowd is a crowd)
    frozen: bool = False  # reuse a trained object encoder without updating it

    def __post_init__(self) -> None:
        _check_choice("objects source", self.source, ("yolo", "frcnn", "oracle"))
        if self.person_class is not None and not 0 <= self.person_class < self.num_classes:
            raise ValueError(f"objects person_class {self.person_class} is outside 0..{self.num_classes - 1}")


@dataclass(frozen=True)
class FusionConfig:
    # "identity" | "label_attention" (one modality: its pooled vector | each genre attends over its tokens),
    # "early", "late", "attention", "cross_attention"
    kind: str = "identity"
    dim: int = 256  # common width the modalities are projected to
    dropout: float = 0.1  # inside the fusion (attention weights, feed-forward, MLP)
    # attention fusion
    gating: str = "softmax"  # "softmax": one weight per modality; "gmu": per-feature gates (Arevalo et al. 2017)
    # cross-attention fusion
    depth: int = 2  # stacked cross-attention blocks
    heads: int = 4  # attention heads (dim must divide by it)
    bidirectional: bool = True  # False: text queries the image side only (ablation)
    ffn_ratio: int = 4  # feed-forward hidden width = ffn_ratio * dim

    def __post_init__(self) -> None:
        _check_choice("fusion kind", self.kind, FUSION_KINDS)
        _check_choice("fusion gating", self.gating, ("softmax", "gmu"))
        if self.dim % self.heads:
            raise ValueError(f"fusion dim {self.dim} must be divisible by fusion heads {self.heads}")


@dataclass(frozen=True)
class ModelConfig:
    name: str  # the registry name this config was made from (kept in run records)
    text: TextEncoderConfig | None = None  # None: the model does not read the plot
    image: ImageEncoderConfig | None = None  # None: the model does not read the poster
    objects: ObjectEncoderConfig | None = None  # None: the model does not read detections
    fusion: FusionConfig = field(default_factory=FusionConfig)
    head_dropout: float = 0.1  # dropout before the final linear layer

    def __post_init__(self) -> None:
        modalities = self.modalities
        if not modalities:
            raise ValueError(f"model {self.name!r} has no encoder: give at least one of text, image, objects")
        if self.fusion.kind in UNIMODAL_KINDS and len(modalities) != 1:
            raise ValueError(
                f"model {self.name!r}: {self.fusion.kind} takes exactly one modality, got {list(modalities)}"
            )
        if self.fusion.kind == "cross_attention" and (
            "text" not in modalities or not {"image", "objects"} & set(modalities)
        ):
            raise ValueError(
                f"model {self.name!r}: cross-attention needs text and at least one of image/objects, "
                f"got {list(modalities)}"
            )

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model reads, in canonical order."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def with_overrides(self, **overrides: Any) -> ModelConfig:
        """A copy with fields replaced by `section_field=value`.

        Keys: `head_dropout`; `text_*`, `image_*`, `objects_*`, `fusion_*` for a field of that part
        (e.g. `image_frozen=True`, `fusion_kind="early"`); `text` / `image` / `objects` = a config or
        None to replace or drop a whole part; `modalities=("text", "image")` (or "text,image") to keep
        only those parts. Values must have the field's type (an int is taken for a float); text is not
        parsed here: a profile or `thesis run KEY=VALUE` types it once, by the same rule everywhere.
        """
        changes: dict[str, Any] = {}
        section_changes: dict[str, dict[str, Any]] = {}
        for key, value in overrides.items():
            if key == "modalities":
                keep = _parse_modalities(value)
                for modality in MODALITIES:
                    if modality not in keep:
                        changes[modality] = None
                    elif getattr(self, modality) is None:
                        raise ValueError(
                            f"model {self.name!r} has no {modality} encoder to keep; "
                            f"pass {modality}=<{modality} config> to add one"
                        )
            elif key in MODALITIES:
                changes[key] = value
            elif key == "head_dropout":
                changes[key] = _checked(value, _field_types(ModelConfig)[key], key)
            elif (section := key.partition("_")[0]) in (*MODALITIES, "fusion"):
                section_changes.setdefault(section, {})[key.partition("_")[2]] = value
            else:
                raise ValueError(f"unknown model override {key!r}; {_OVERRIDE_HELP}")
        for section, fields in section_changes.items():
            current = changes.get(section, getattr(self, section))
            if current is None:
                raise ValueError(f"model {self.name!r} has no {section} encoder; cannot set {sorted(fields)}")
            known = {f.name: f for f in dataclasses.fields(current)}
            for field_name in fields:
                if field_name not in known:
                    raise ValueError(
                        f"unknown model override {section}_{field_name}: {type(current).__name__} has fields "
                        f"{sorted(known)}"
                    )
            hints = _field_types(type(current))
            typed = {name: _checked(value, hints[name], f"{section}_{name}") for name, value in fields.items()}
            changes[section] = dataclasses.replace(current, **typed)
        return dataclasses.replace(self, **changes)


_OVERRIDE_HELP = (
    "use head_dropout, modalities, text|image|objects (a config or None), or <section>_<field> "
    "with section in text, image, objects, fusion"
)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} {value!r} is not one of {list(choices)}")


def _parse_modalities(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in MODALITIES]
    if unknown or not names:
        raise ValueError(f"modalities {value!r}: each must be one of {list(MODALITIES)}")
    return tuple(names)


def _field_types(config_class: type) -> dict[str, Any]:
    """Field name -> annotation of a config dataclass (int, str | None, tuple[...])."""
    return typing.get_type_hints(config_class)


def _checked(value: Any, hint: Any, key: str) -> Any:
    """`value` if it has the type `hint` allows (an int is taken for a float), else ValueError naming `key`."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        kind = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is not Any and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    raise ValueError(f"model override {key}={value!r}: expected {_type_name(hint)}, got {type(value).__name__}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)
