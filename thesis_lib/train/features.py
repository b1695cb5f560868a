"""Frozen-backbone mode: run the encoders once, cache their outputs, train fusion + head on the cache.

With frozen backbones every epoch would recompute the same encoder outputs (the expensive part: BERT over
plots, a CNN/ViT over posters). `cache_encoder_features` computes them once per
(backbone identity, data fingerprint, split part, precision) and stores them as one safetensors file under
`<cache>/features/`:
    labels               float32 (N, C)
    <modality>.pooled    float32 (N, D_pooled)
    <modality>.tokens    float16 (default) or float32 (T, D_tokens): every movie's tokens, end to end
    <modality>.mask      bool    (T,), True = real token
    <modality>.offsets   int64   (N + 1,): movie i's rows are offsets[i]:offsets[i + 1]
plus the movie ids (in dataset order), the cache key and the caller's label in the file's metadata.
Tokens are stored ragged: a movie keeps its rows up to its last real token, so the padding of the batch
it was encoded in is dropped (the mask is kept for encoders whose padding is not all at the end). A
fusion that reads only pooled vectors (`Fusion.reads_tokens` False) asks for `tokens=False`: the file
then holds labels and pooled vectors only (metadata tokens="none"), N x (D + C) x 4 bytes.

Sizes (computed from this layout, not measured; `experiments.caches.feature_cache_bytes` is the
formula): a token costs 768 x 2 + 1 bytes in float16 with its mask, so MM-IMDb's 25,959 movies cost
    BERT-base plots     39.9 MB per token of mean plot length: 8.1 GB at a mean of 200, 20.5 GB at 512
    ViT-B/16 posters    197 tokens, all real: 7.9 GB
    pooled only         82 MB per modality
over the three parts of one split. The grid deletes a cache once no later run reads it
(`experiments.caches`), so at most one (split, seed) set is on disk at a time.

The pass streams: each batch's rows go to temporary files as they come (`rows_file.RowsFileWriter`) and
the file is assembled at the end, so host memory holds one batch, not the split (measured by
`benchmarks/feature_cache_memory.py`: 3,000 plots, a 1.15 GB file: peak RSS +6.2 GB with the former
in-memory writer, +0.19 GB streamed; on disk the folder peaked at the file's size: the temporary rows are moved
into the file, not copied next to it). Batches are sorted by `item_lengths()` when the dataset has it (less
padding), run on the accelerator's device under autocast (`machine.autocast_dtype`), with
`machine.loader_workers` workers and pinned memory on CUDA; rows are stored in dataset order whatever
the batch order.

float16 halves the space of float32 for a relative rounding error of ~5e-4, far below what changes a
prediction; choose float32 for bit-level checks. The backbone identity is the caller's `backbone_id`
(e.g. registry name + config) together with a hash of the backbone weights, so fine-tuned or
re-initialised encoders never reuse stale features. The format number is part of the key: a cache
written in an older layout is never read, the new one is built next to it (`thesis cache clean` removes
the old files).

`CachedFeatureDataset` reads a cache file without loading its tokens: they stay in the file and each item
reads its own rows through the file's memory map (`safetensors.safe_open` slices), so a 10 GB cache costs
page cache, not process memory (measured here: one epoch over a 621 MB cache in batches of 32 added 10 MB
of anonymous memory). `data.batch.CachedFeaturesCollator` pads a batch of its items to the longest movie
(batch["features"], described with the rest of the batch in `thesis_lib.data.batch`), and
`FrozenEncodersClassifier` feeds the batches to `model.classify` (fusion + head) without touching the
backbones. Its checkpoints are slim (`checkpoint.save_model_weights`): the wrapped model's keys without
the frozen backbones, which a restore loads from where they came from first.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thesis_lib import machine
from thesis_lib.data.batch import stored_lengths
from thesis_lib.logs import ProgressLog
from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.paths import cache_dir
from thesis_lib.storage import stable_hash
from thesis_lib.train.checkpoint import weights_fingerprint
from thesis_lib.train.epoch import check_batch
from thesis_lib.train.rows_file import RowsFileWriter

log = logging.getLogger(__name__)

FEATURE_CACHE_FORMAT = 3  # 3: pooled-only files besides token files, key names the precision; 2: ragged tokens
TokensDtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class FeatureCacheConfig:
    """How encoder outputs are computed and stored."""

    tokens_dtype: TokensDtype = "float16"  # storage type of token features; pooled vectors stay float32
    batch_size: int = 64  # batch size of the one pass over the data (inference only: no gradients kept)
    backbone_prefixes: tuple[str, ...] = ("encoders.",)  # parameters hashed into the backbone identity
    tokens: bool = True  # False: pooled vectors only (for fusions whose `reads_tokens` is False)
    mixed_precision: str = "no"  # autocast of the pass on a GPU (machine.autocast_dtype; off on the CPU)
    num_workers: int = 0  # DataLoader workers of the pass (a profile's value: machine.loader_workers)
    sort_by_length: bool = True  # batches of items of similar `item_lengths()` (stored in dataset order)


def feature_cache_path(
    model: nn.Module,
    *,
    backbone_id: str,
    data_fingerprint: str,
    part: str,
    config: FeatureCacheConfig,
    cache_root: Path | None = None,
    device: torch.device | None = None,
) -> Path:
    """Where the features of (backbones of `model`, data, split part) are cached; `device` (default: the
    model's) decides the precision the features are computed in, which is part of the key."""
    digest = stable_hash(_cache_key(model, backbone_id, data_fingerprint, part, config, device), length=20)
    safe_part = "".join(c if c.isalnum() or c in "-_" else "_" for c in part)
    return Path(cache_root or cache_dir()) / FEATURES_FOLDER / f"{safe_part}-{digest}.safetensors"


FEATURES_FOLDER = "features"  # under the cache folder: every feature cache file, and nothing else


def _cache_key(model: nn.Module, backbone_id: str, data_fingerprint: str, part: str, config: FeatureCacheConfig,
               device: torch.device | None) -> dict[str, Any]:
    autocast = machine.autocast_dtype(device or _module_device(model), config.mixed_precision)
    return {
        "format": FEATURE_CACHE_FORMAT,  # a new layout gets new files: older ones are never read
        "backbone_id": backbone_id,
        "backbone_weights": weights_fingerprint(model, config.backbone_prefixes),
        "data": data_fingerprint,
        "part": part,
        "tokens_dtype": config.tokens_dtype if config.tokens else None,  # None: no tokens stored
        "precision": str(autocast).removeprefix("torch.") if autocast is not None else "float32",
    }


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
    label: str = "",
) -> Path:
    """Compute `model.encode(batch)` over `dataset` once and cache it; returns the cache file's path.

    The pass runs on the accelerator's device (else the model's), autocast as `config.mixed_precision`
    allows there. A cache file that already exists is reused as is. Under DDP (pass the `accelerator`)
    the main process computes the file and the others wait for it and reuse it. `label` is stored in the
    file's metadata (the grid stores which runs' need it is, for `thesis cache clean`)."""
    device = accelerator.device if accelerator is not None else _module_device(model)
    key = _cache_key(model, backbone_id, data_fingerprint, part, config, device)
    path = feature_cache_path(model, backbone_id=backbone_id, data_fingerprint=data_fingerprint, part=part,
                              config=config, cache_root=cache_root, device=device)
    metadata = {"key": json.dumps(key, sort_keys=True), "label": label}
    if accelerator is None:
        if not path.is_file():
            _write_feature_cache(model, dataset, path, collate_fn, config, device, metadata)
        return path
    with accelerator.main_process_first():  # the others enter after the main process wrote the file
        if not path.is_file():
            _write_feature_cache(model, dataset, path, collate_fn, config, device, metadata)
    return path


def _module_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def extraction_batches(dataset: Dataset, batch_size: int, sort_by_length: bool = True) -> list[list[int]]:
    """Dataset indices in batches: longest items first when the dataset knows its `item_lengths()` (plots:
    less padding, and an out-of-memory batch shows at once), else in dataset order."""
    indices = list(range(len(dataset)))  # type: ignore[arg-type]
    lengths = getattr(dataset, "item_lengths", None)
    if sort_by_length and lengths is not None:
        sizes = list(lengths())
        indices.sort(key=lambda i: -sizes[i])  # stable: equal lengths keep dataset order
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]


def _write_feature_cache(
    model: nn.Module, dataset: Dataset, path: Path, collate_fn, config: FeatureCacheConfig, device: torch.device,
    metadata: Mapping[str, str],
) -> None:
    """One pass of `model.encode` over `dataset`, each batch streamed to disk (`RowsFileWriter`)."""
    model_device = _module_device(model)
    was_training = model.training
    model.to(device).eval()  # eval: no dropout, BatchNorm uses its running statistics
    batches = extraction_batches(dataset, config.batch_size, config.sort_by_length)
    workers = machine.loader_workers(config.num_workers)
    loader = DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate_fn, num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
    )
    autocast = machine.autocast_dtype(device, config.mixed_precision)
    token_dtype = getattr(torch, config.tokens_dtype)
    ids: list[str] = []
    order: list[int] = []
    modalities: list[str] = []
    progress = ProgressLog(log, f"features {path.name}", total=sum(map(len, batches)),
                           unit="movies")
    try:
        with RowsFileWriter(path.parent) as writer:
            with torch.inference_mode(), torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                for indices, batch in zip(batches, loader, strict=True):
                    if not ids:
                        check_batch(model, batch)  # input values, once, while the batch is still on the host
                    batch = send_to_device(batch, device, non_blocking=True)
                    encoded: Mapping[str, EncoderOutput] = model.encode(batch)
                    order += indices
                    ids += list(batch["ids"])
                    progress.update(len(ids))
                    writer.append("labels", batch["labels"].float().cpu())  # (B, C)
                    modalities = sorted(encoded)
                    for modality, output in encoded.items():
                        writer.append(f"{modality}.pooled", output.pooled.to("cpu", torch.float32))  # (B, D)
                        if not config.tokens:
                            continue
                        mask = output.mask.to("cpu", torch.bool)  # (B, N)
                        lengths = stored_lengths(mask)  # (B,)
                        kept = torch.arange(mask.shape[1]) < lengths[:, None]  # (B, N): each sample's stored rows
                        # Boolean indexing walks (B, N) row-major: sample 0's rows, then sample 1's, ...
                        writer.append(f"{modality}.tokens", output.tokens.to("cpu", token_dtype)[kept], lengths)
                        writer.append(f"{modality}.mask", mask[kept], lengths)  # (sum(lengths),)
            if not ids:
                raise ValueError(f"no features to cache for {path.name}: the dataset is empty")
            extra = {}
            if config.tokens:
                for modality in modalities:
                    counts = torch.tensor(writer.item_counts(f"{modality}.tokens"))  # (N,) in append order
                    lengths = torch.empty_like(counts)
                    lengths[torch.tensor(order)] = counts  # (N,) in dataset order
                    extra[f"{modality}.offsets"] = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])  # (N + 1,)
            in_order = [""] * len(ids)
            for position, index in enumerate(order):
                in_order[index] = ids[position]
            writer.finish(path, order, {
                **metadata,
                "format": str(FEATURE_CACHE_FORMAT),
                "ids": json.dumps(in_order),
                "modalities": json.dumps(modalities),
                "tokens": "ragged" if config.tokens else "none",
            }, extra)
    finally:
        model.to(model_device).train(was_training)


class MappedRows:
    """One tensor of a safetensors file, read a slice of rows at a time through the file's memory map.

    The file is opened on first use in each process (a DataLoader worker opens its own: the open handle
    cannot be pickled), and never read whole."""

    def __init__(self, path: Path, name: str):
        self.path, self.name = Path(path), name
        self._handle: Any = None
        with safe_open(str(self.path), framework="pt") as handle:
            view = handle.get_slice(name)
            self.shape: tuple[int, ...] = tuple(view.get_shape())
            self.dtype: torch.dtype = view[0:0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        if self._handle is None:
            self._handle = safe_open(str(self.path), framework="pt")
        return self._handle.get_slice(self.name)[rows]  # reads just these rows

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None}


class RaggedRows:
    """Rows of different lengths stored end to end: item i is `values[offsets[i]:offsets[i + 1]]`."""

    def __init__(self, values: torch.Tensor | MappedRows, offsets: torch.Tensor):
        self.values = values
        self.offsets: list[int] = offsets.tolist()  # plain ints: indexing a tensor per item costs more

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor(self.offsets).diff()  # (N,)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = range(len(self))[operator.index(index)]  # negative indices; IndexError past the end
        return self.values[self.offsets[index] : self.offsets[index + 1]]  # (n_i, ...)


class NoTokens:
    """The tokens (or mask) of a pooled-only cache: every item has none, (0, 0) (or (0,) bool). Batched by
    `CachedFeaturesCollator` into (B, 1, 0) tokens with an all-False mask, which a pooled-only fusion never reads."""

    def __init__(self, n: int, dtype: torch.dtype = torch.float32):
        self.n, self.dtype = n, dtype

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        range(self.n)[operator.index(index)]  # IndexError past the end, as the other columns
        return torch.zeros(0, dtype=self.dtype) if self.dtype == torch.bool else torch.zeros(0, 0, dtype=self.dtype)


class CachedFeatureDataset(Dataset):
    """Items {"id", "labels" (C,), "features": {modality: {"tokens" (n_i, D), "mask" (n_i,), "pooled" (D,)}}}
    from a cache file (batched by `data.batch.CachedFeaturesCollator`). Tokens stay in the file
    (memory-mapped); labels, masks, offsets and pooled vectors (small) are read into memory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no feature cache at {self.path} (build it with cache_encoder_features)")
        with safe_open(str(self.path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != str(FEATURE_CACHE_FORMAT):
                found = metadata.get("format")
                raise ValueError(
                    f"{self.path} is not a format-{FEATURE_CACHE_FORMAT} feature cache (format: {found!r}); "
                    f"cache_encoder_features builds the current format under a new name"
                )
            self.ids: list[str] = json.loads(metadata["ids"])
            self.modalities: tuple[str, ...] = tuple(json.loads(metadata["modalities"]))
            self.labels = handle.get_tensor("labels")  # (N, C): also what `fit` reads for pos_weight
            self.features: dict[str, dict[str, Any]] = {}
            self.has_tokens = metadata.get("tokens") != "none"  # "none": a pooled-only cache
            for modality in self.modalities:
                pooled = handle.get_tensor(f"{modality}.pooled")  # (N, D)
                if not self.has_tokens:
                    if len(pooled) != len(self.ids):
                        raise ValueError(f"{self.path}: {len(self.ids)} ids but {len(pooled)} {modality} pooled rows")
                    self.features[modality] = {"tokens": NoTokens(len(pooled)), "mask": NoTokens(len(pooled), torch.bool),
                                               "pooled": pooled}
                    continue
                offsets = handle.get_tensor(f"{modality}.offsets")  # (N + 1,)
                tokens = MappedRows(self.path, f"{modality}.tokens")  # (T, D), read per item
                mask = handle.get_tensor(f"{modality}.mask")  # (T,)
                self._check_layout(modality, offsets, len(tokens), len(mask), len(pooled))
                self.features[modality] = {
                    "tokens": RaggedRows(tokens, offsets),
                    "mask": RaggedRows(mask, offsets),
                    "pooled": pooled,
                }
        if len(self.labels) != len(self.ids):
            raise ValueError(f"{self.path}: {len(self.ids)} ids but {len(self.labels)} label rows")

    def _check_layout(self, modality: str, offsets: torch.Tensor, tokens: int, masks: int, pooled: int) -> None:
        """Offsets that start at 0, never go back and end at the last token row; one pooled row per movie."""
        n = len(self.ids)
        ok = (
            offsets.shape == (n + 1,)
            and int(offsets[0]) == 0
            and bool((offsets.diff() >= 0).all())
            and int(offsets[-1]) == tokens == masks
            and pooled == n
        )
        if not ok:
            raise ValueError(
                f"{self.path}: {modality} features do not fit {n} movies (offsets {tuple(offsets.shape)} ending at "
                f"{int(offsets[-1]) if len(offsets) else None}, {tokens} token rows, {masks} mask rows, "
                f"{pooled} pooled rows)"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "id": self.ids[index],
            "labels": self.labels[index],
            "features": {m: {k: t[index] for k, t in parts.items()} for m, parts in self.features.items()},
        }


class FrozenEncodersClassifier(nn.Module):
    """Trains the fusion and head (and any live encoder, e.g. the object encoder) of `model` on cached
    outputs of its frozen encoders `cached`, which never run.

    Checkpoints hold `model`'s keys (its own parameter names) without the cached encoders
    (`checkpoint_excludes`): those are not trained here, and they come back from where they were built or
    loaded (the registry or a source run) before the checkpoint is loaded."""

    def __init__(self, model: nn.Module, cached: tuple[str, ...]):
        super().__init__()
        for modality in cached:
            if not getattr(model.encoders[modality], "frozen", False):
                raise ValueError(f"the {modality} encoder is not frozen: its features cannot be cached")
        self.model = model
        self.cached = tuple(cached)
        self.checkpoint_excludes: tuple[str, ...] = tuple(f"encoders.{modality}." for modality in cached)

    @property
    def checkpoint_module(self) -> nn.Module:
        """Checkpoints hold the wrapped model's weights (see `thesis_lib.train.checkpoint`)."""
        return self.model

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """The live encoders' input check (`Encoder.check_input`); cached features were checked when cached."""
        for modality, encoder in self.model.encoders.items():
            if modality not in self.cached:
                encoder.check_input(batch)

    def forward(self, batch: Mapping[str, Any]) -> Any:
        encoded = encoder_outputs_from_features(batch["features"])
        for modality, encoder in self.model.encoders.items():
            if modality not in encoded:  # a live encoder reads its own batch keys
                encoded[modality] = encoder(batch)
        return self.model.classify(encoded)


def encoder_outputs_from_features(features: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, EncoderOutput]:
    """A cached-features batch entry {modality: {tokens, mask, pooled}} -> {modality: EncoderOutput}."""
    return {
        modality: EncoderOutput(tokens=parts["tokens"], mask=parts["mask"], pooled=parts["pooled"])
        for modality, parts in features.items()
    }
