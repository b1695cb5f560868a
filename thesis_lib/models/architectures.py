"""The published architectures of the full-size backbones, buildable without their files or weights.

Speed, FLOPs and parameter bytes depend on a backbone's architecture, never on its weights, so the plan
(`experiments.forecast`) and the stand-ins (`models.standins`) need the architecture alone. The
text ones are written out here, so no config.json from the Hugging Face hub is needed: BERT-base uncased
(12 layers, 768 wide, 30,522 word pieces, 512 positions) and RoBERTa-base (the same body with 50,265
byte-level BPE tokens and 514 positions). timm builds its image architectures from the name alone.
`meta_backbone` builds either kind on PyTorch's meta device: shapes without storage, built in a second,
so `FlopCounterMode` can count a forward (and backward) pass of the real architecture at any input size.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from transformers import AutoModel, BertConfig, PretrainedConfig, RobertaConfig

from thesis_lib.models.configs import allowed_timm_kwargs
from thesis_lib.models.pretrained import check_backbone_name


def text_architectures() -> dict[str, tuple[PretrainedConfig, str]]:
    """Hugging Face backbone name -> (its published architecture, tokenizer kind "wordpiece" | "bpe")."""
    bert = BertConfig(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
    )
    roberta = RobertaConfig(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
        eos_token_id=2,
    )
    return {"bert-base-uncased": (bert, "wordpiece"), "roberta-base": (roberta, "bpe")}


def meta_text_backbone(name: str) -> nn.Module:
    """The transformers model of a published text architecture on the meta device, eager attention (its
    attention matmuls are then visible to a FLOP counter; SDPA computes the same products)."""
    architectures = text_architectures()
    if name not in architectures:
        raise KeyError(f"no published architecture for text backbone {name!r}; known: {sorted(architectures)}")
    with torch.device("meta"):
        return AutoModel.from_config(architectures[name][0], attn_implementation="eager")


def meta_image_backbone(
    name: str, *, input_size: int = 224, depth: int | None = None, timm_kwargs: dict[str, object] | None = None
) -> nn.Module:
    """The timm image backbone `name` (no classifier) on the meta device, with unfused attention."""
    import timm  # seconds to import; only the image side needs it

    kwargs: dict[str, object] = allowed_timm_kwargs(timm_kwargs or {})
    if "vit" in name:
        kwargs["img_size"] = input_size
        if depth is not None:
            kwargs["depth"] = depth
    with torch.device("meta"):
        model = timm.create_model(check_backbone_name(name), pretrained=False, num_classes=0, **kwargs)
    for module in model.modules():  # the fused kernel has no FLOP formula on every device; same products
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return model


def image_input_problem(backbone: str, input_size: int, *, depth: int | None = None,
                        timm_kwargs: tuple[tuple[str, object], ...] = ()) -> str | None:
    """Why posters of `input_size` pixels do not suit the image backbone, or None when they do.

    A ViT cuts the poster into patches: its side must be a multiple of the patch size (224 for the pretrained
    position embeddings, other multiples get them interpolated; anything else would silently drop the
    poster's last rows and columns). A CNN shrinks the poster by its total stride (32 for a ResNet): a smaller
    poster leaves not one cell of real pixels in its last feature map. Read from the architecture itself
    (built on the meta device, once per backbone), so a profile is refused before any data is read."""
    is_vit, step = _image_geometry(backbone, depth, tuple(timm_kwargs))
    if is_vit and (input_size < step or input_size % step):
        return (f"{backbone} cuts posters into {step} x {step} patches: the image size must be a multiple of "
                f"{step} (224 as pretrained), not {input_size}")
    if not is_vit and input_size < step:
        return f"{backbone} shrinks posters {step}-fold: the image size must be at least {step} pixels, not {input_size}"
    return None


@functools.cache
def _image_geometry(backbone: str, depth: int | None, timm_kwargs: tuple[tuple[str, object], ...]) -> tuple[bool, int]:
    """(a ViT?, its patch side | a CNN's total stride) of a timm backbone."""
    model = meta_image_backbone(backbone, depth=depth, timm_kwargs=dict(timm_kwargs))
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None:
        return True, int(patch_embed.patch_size[0])
    return False, int(model.feature_info[-1]["reduction"])
