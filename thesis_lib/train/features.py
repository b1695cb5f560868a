"""Frozen-backbone mode: run the encoders once, cache their outputs, train fusion + head on the cache.

With frozen backbones every epoch would recompute the same encoder outputs (the expensive part: BERT over
plots, a CNN/ViT over posters). `cache_encoder_features` computes them once per
(backbone identity, data fingerprint, split part) and stores them as one safetensors file under
`<cache>/features/`:
    labels               float32 (N, C)
    <modality>.pooled    float32 (N, D_pooled)
    <modality>.tokens    float16 (default) or float32 (N, N_max, D_tokens), padded to the longest sample
    <modality>.mask      bool    (N, N_max), True = real token
plus the movie ids (in dataset order) and the cache key in the file's metadata. float16 tokens halve the
space (ViT-B/16 patch tokens of the 15.5k MM-IMDb training movies: ~4.6 GB instead of ~9.3 GB) for a
relative rounding error of ~5e-4, far below what changes a prediction; choose float32 for bit-level checks.
The backbone identity is the caller's `backbone_id` (e.g. registry name + config) together with a hash of
the backbone weights, so fine-tuned or re-initialised encoders never reuse stale features.

`CachedFeatureDataset` reads a cache file, `collate_cached_features` batches it (trimming token padding to
the batch's longest sample, as the text collator does), and `FrozenBackboneClassifier` feeds the batches to
`model.classify` (fusion + head) without touching the backbones. Its checkpoints hold the full model's
weights (`checkpoint_module`), so they load straight back into `build_model(...)`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.paths import cache_dir
from thesis_lib.train.checkpoint import atomic_write
from thesis_lib.train.freezing import freeze_backbones

FEATURE_CACHE_FORMAT = 1
TokensDtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class FeatureCacheConfig:
    """How encoder outputs are computed and stored."""

    tokens_dtype: TokensDtype = "float16"  # storage type of token features; pooled vectors stay float32
    batch_size: int = 64  # batch size of the one pass over the data (inference only: no gradients kept)
    backbone_prefixes: tuple[str, ...] = ("encoders.",)  # parameters hashed into the backbone identity


def weights_fingerprint(model: nn.Module, prefixes: tuple[str, ...]) -> str:
    """sha256 of the names, dtypes, shapes and bytes of every state-dict tensor under `prefixes`."""
    digest = hashlib.sha256()
    matched = 0
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(prefixes):
            continue
        matched += 1
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if matched == 0:
        raise ValueError(f"{type(model).__name__} has no state-dict entry under {prefixes} to identify its backbones")
    return digest.hexdigest()


def feature_cache_path(
    model: nn.Module,
    *,
    backbone_id: str,
    data_fingerprint: str,
    part: str,
    config: FeatureCacheConfig,
    cache_root: Path | None = None,
) -> Path:
    """Where the features of (backbones of `model`, data, split part) are cached."""
    key = {
        "format": FEATURE_CACHE_FORMAT,
        "backbone_id": backbone_id,
        "backbone_weights": weights_fingerprint(model, config.backbone_prefixes),
        "data": data_fingerprint,
        "part": part,
        "tokens_dtype": config.tokens_dtype,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe_part = "".join(c if c.isalnum() or c in "-_" else "_" for c in part)
    return Path(cache_root or cache_dir()) / "features" / f"{safe_part}-{digest}.safetensors"


def cache_encoder_features(
    model: nn.Module,
    dataset: Dataset,
    *,
    backbone_id: str,
    data_fingerprint: str,
    part: str,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
    config: FeatureCacheConfig = FeatureCacheConfig(),
    cache_root: Path | None = None,
    accelerator: Accelerator | None = None,
) -> Path:
    """Compute `model.encode(batch)` over `dataset` once and cache it; returns the cache file's path.

    A cache file that already exists is reused as is. Under DDP (pass the `accelerator`) the main process
    computes the file and the others wait for it and reuse it.
    """
    key = {"backbone_id": backbone_id, "data_fingerprint": data_fingerprint, "part": part}
    path = feature_cache_path(model, **key, config=config, cache_root=cache_root)
    if accelerator is None:
        if not path.is_file():
            _write_feature_cache(model, dataset, path, collate_fn, config, device=_module_device(model))
        return path
    with accelerator.main_process_first():  # the others enter after the main process wrote the file
        if not path.is_file():
            _write_feature_cache(model, dataset, path, collate_fn, config, device=accelerator.device)
    return path


def _module_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _write_feature_cache(
    model: nn.Module, dataset: Dataset, path: Path, collate_fn, config: FeatureCacheConfig, device: torch.device
) -> None:
    model_device = _module_device(model)
    was_training = model.training
    model.to(device).eval()  # eval: no dropout, BatchNorm uses its running statistics
    ids: list[str] = []
    labels: list[torch.Tensor] = []
    parts: dict[str, dict[str, list[torch.Tensor]]] = {}
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, collate_fn=collate_fn)
    token_dtype = getattr(torch, config.tokens_dtype)
    try:
        with torch.inference_mode():
            for batch in loader:
                encoded: Mapping[str, EncoderOutput] = model.encode(send_to_device(batch, device))
                ids += list(batch["ids"])
                labels.append(batch["labels"].float().cpu())  # (B, C)
                for modality, output in encoded.items():
                    store = parts.setdefault(modality, {"tokens": [], "mask": [], "pooled": []})
                    store["tokens"].append(output.tokens.to("cpu", token_dtype))  # (B, N, D)
                    store["mask"].append(output.mask.to("cpu", torch.bool))  # (B, N)
                    store["pooled"].append(output.pooled.to("cpu", torch.float32))  # (B, D)
    finally:
        model.to(model_device).train(was_training)
    if not ids:
        raise ValueError(f"no features to cache for {path.name}: the dataset is empty")
    tensors = {"labels": torch.cat(labels)}  # (N, C)
    for modality, store in parts.items():
        longest = max(t.shape[1] for t in store["tokens"])
        # Batches were padded to their own longest sample: pad all to the longest of the split (mask False).
        tensors[f"{modality}.tokens"] = torch.cat([_pad_tokens(t, longest) for t in store["tokens"]])  # (N, N_max, D)
        tensors[f"{modality}.mask"] = torch.cat([_pad_tokens(m, longest) for m in store["mask"]])  # (N, N_max)
        tensors[f"{modality}.pooled"] = torch.cat(store["pooled"])  # (N, D)
    metadata = {"format": str(FEATURE_CACHE_FORMAT), "ids": json.dumps(ids), "modalities": json.dumps(sorted(parts))}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _pad_tokens(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dim 1 of (B, N, ...) to `length` (False for bool masks)."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    padding = torch.zeros((tensor.shape[0], missing, *tensor.shape[2:]), dtype=tensor.dtype)
    return torch.cat([tensor, padding], dim=1)


class CachedFeatureDataset(Dataset):
    """Items {"id", "labels" (C,), "features": {modality: {"tokens", "mask", "pooled"}}} from a cache file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no feature cache at {self.path} (build it with cache_encoder_features)")
        with safe_open(str(self.path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != str(FEATURE_CACHE_FORMAT):
            found = metadata.get("format")
            raise ValueError(f"{self.path} is not a format-{FEATURE_CACHE_FORMAT} feature cache (format: {found!r})")
        tensors = load_file(str(self.path))
        self.ids: list[str] = json.loads(metadata["ids"])
        self.modalities: tuple[str, ...] = tuple(json.loads(metadata["modalities"]))
        self.labels = tensors["labels"]  # (N, C): also what `fit` reads for pos_weight
        self.features = {m: {k: tensors[f"{m}.{k}"] for k in ("tokens", "mask", "pooled")} for m in self.modalities}
        counts = {name: t.shape[0] for name, t in tensors.items()}
        if any(n != len(self.ids) for n in counts.values()):
            raise ValueError(f"{self.path}: {len(self.ids)} ids but tensor rows {counts}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "id": self.ids[index],
            "labels": self.labels[index],
            "features": {m: {k: t[index] for k, t in parts.items()} for m, parts in self.features.items()},
        }


def collate_cached_features(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch {"ids", "labels" (B, C), "features": {modality: tokens (B, N, D) float32, mask (B, N), pooled}}."""
    features = {}
    for modality in items[0]["features"]:
        mask = torch.stack([item["features"][modality]["mask"] for item in items])  # (B, N_max)
        # Trim the split-wide padding to this batch's longest sample (fewer tokens to attend over).
        length = max(int(mask.any(dim=0).nonzero().max()) + 1, 1) if mask.any() else 1
        tokens = torch.stack([item["features"][modality]["tokens"][:length] for item in items])  # (B, N, D)
        features[modality] = {
            "tokens": tokens.float(),  # float16 storage -> float32 compute (CPUs lack fast fp16 kernels)
            "mask": mask[:, :length],  # (B, N)
            "pooled": torch.stack([item["features"][modality]["pooled"] for item in items]),  # (B, D)
        }
    return {
        "ids": [item["id"] for item in items],
        "labels": torch.stack([item["labels"] for item in items]),  # (B, C)
        "features": features,
    }


class FrozenBackboneClassifier(nn.Module):
    """Trains `model`'s fusion and head on cached encoder outputs; the backbones are frozen and never run."""

    def __init__(self, model: nn.Module, backbone_prefixes: tuple[str, ...] = ("encoders.",)):
        super().__init__()
        self.model = model
        freeze_backbones(model, backbone_prefixes)

    @property
    def checkpoint_module(self) -> nn.Module:
        """Checkpoints hold the wrapped model's weights (see `thesis_lib.train.checkpoint`)."""
        return self.model

    def forward(self, batch: Mapping[str, Any]) -> Any:
        return self.model.classify(encoder_outputs_from_features(batch["features"]))


def encoder_outputs_from_features(features: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, EncoderOutput]:
    """A cached-features batch entry {modality: {tokens, mask, pooled}} -> {modality: EncoderOutput}."""
    return {
        modality: EncoderOutput(tokens=parts["tokens"], mask=parts["mask"], pooled=parts["pooled"])
        for modality, parts in features.items()
    }
