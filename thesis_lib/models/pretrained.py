"""Where pretrained weights come from: a local folder first, else the Hugging Face cache (or hub).

The full profile names backbones as upstream does (`bert-base-uncased`, `roberta-base`, timm's `resnet50`
and `vit_base_patch16_224`). On a machine allowed to download (THESIS_ONLINE=1) they land in the Hugging
Face cache under $HF_HOME. An offline machine can be handed the same weights as plain files in the
pretrained folder ($THESIS_PRETRAINED_DIR, default `<cache>/pretrained`):

    <pretrained>/bert-base-uncased/          a `save_pretrained` folder: config.json, weights, tokenizer files
    <pretrained>/roberta-base/               (a hub name with an owner keeps it: <pretrained>/owner/name/)
    <pretrained>/timm/resnet50.safetensors   a timm state dict (`safetensors.torch.save_file`)

Only the location differs: the builders run the same code either way. (The offline MiniLM comes from its
pip package: `thesis_lib.data.tokenizers.minilm_dir()`.)
"""

from __future__ import annotations

import os
from pathlib import Path

from thesis_lib.paths import cache_dir


def pretrained_dir() -> Path:
    """The local pretrained-weights folder: $THESIS_PRETRAINED_DIR, else <cache>/pretrained."""
    if env := os.environ.get("THESIS_PRETRAINED_DIR"):
        return Path(env).expanduser().resolve()
    return cache_dir() / "pretrained"


def hf_source(name: str) -> str:
    """What to pass to `from_pretrained`: the local folder for `name` when it holds a model, else `name`."""
    local = pretrained_dir() / name
    return str(local) if (local / "config.json").is_file() else name


def timm_weights_file(name: str) -> Path | None:
    """The local safetensors file for timm model `name`, or None (timm then looks in the HF cache)."""
    local = pretrained_dir() / "timm" / f"{name}.safetensors"
    return local if local.is_file() else None


def missing_weights_hint(name: str) -> str:
    """The sentence to add to an error when weights for `name` cannot be found offline."""
    return (
        f"no pretrained weights for {name!r} on this machine: put them in {pretrained_dir()} "
        f"(see thesis_lib.models.pretrained), or run once with THESIS_ONLINE=1 to download them"
    )
