"""The product's own paths fed by its own data path: feature extraction, the fusion on cached features, and
fine-tuning with the real training loader.

- `extract_features`: `train.features.cache_encoder_features`, called as the grid calls it
  (`experiments.pipeline`: the encoder seen alone, the run's dataset and collator, the full profile's
  `FeatureCacheConfig`: its batch size, precision, workers and length order), over synthetic movies (JPEG
  posters decoded, plots cleaned and tokenised, features written to a cache file). Timed as one call from
  the caller's side, start-up and file assembly included; a forward pre-hook stamps each batch, so the
  steady per-batch rate and the start-up are reported apart.
- `train_epoch`: `train.prepare.prepare_training` + `train.epoch.train_one_epoch`, the functions `fit`
  runs, with the full profile's `TrainConfig` (`experiments.runner.profile_train_config`): the real loader
  (`SeededLoader`: its workers, prefetch, pinned memory, length grouping), accelerate's autocast and AdamW.
  Used for fine-tuning on raw movies and for the default fusion on cached frozen features
  (`FrozenEncodersClassifier`, reported in samples/s: MFU is not its measure). Each optimizer step is
  stamped (`on_step_end`); the first steps are the warm-up, the clock of the steady rate starts at the end of
  the last warm-up step, and the start-up (worker start, batch 0, the first step) is reported apart.

Epoch and data-set times are *derived*: start-up + movies / steady rate when the timed steps outnumber twice
the batches the workers can queue during the warm-up (else movies / the whole run's rate, start-up included),
labelled so in the JSON.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from thesis_lib import machine
from thesis_lib.bench.batches import BatchShape, random_objects, synthetic_batch
from thesis_lib.bench.hardware import DeviceInfo, PeakMemory, synchronize
from thesis_lib.bench.product import Product
from thesis_lib.bench.techniques import set_attention_kernels
from thesis_lib.bench.timing import step_statistics
from thesis_lib.data.batch import CachedFeaturesCollator, MultimodalCollator
from thesis_lib.data.mmimdb import Movie
from thesis_lib.detection import DetectionTable
from thesis_lib.experiments.pipeline import (
    BuiltModel,
    CachedModalitiesDataset,
    SingleEncoder,
    image_transforms,
    multimodal_collator,
    raw_dataset,
)
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.flops import QuadraticFlops, count_flops
from thesis_lib.train.epoch import train_one_epoch
from thesis_lib.train.features import FrozenEncodersClassifier, cache_encoder_features
from thesis_lib.train.prepare import prepare_training

MMIMDB_TRAIN_MOVIES = 18_171  # the thesis split's training part (70% of 25,959)
MMIMDB_MOVIES = 25_959  # the whole release: what feature extraction runs over


def extract_features(product: Product, built: BuiltModel, modality: str, movies: Sequence[Movie],
                     cache_root: Path) -> tuple[dict[str, Any], Path]:
    """One feature-cache pass of `built`'s `modality` encoder over `movies`, as the grid runs it."""
    model = built.model
    transform = image_transforms(model)[False] if modality == "image" else None
    dataset = raw_dataset(movies, [modality], built, transform)
    collate = multimodal_collator(built) if modality == "text" else MultimodalCollator()
    encoder = model.encoders[modality]
    config = product.feature_cache_config(tokens=True)
    stamps: list[float] = []
    hook = encoder.register_forward_pre_hook(lambda module, args: stamps.append(time.perf_counter()))
    memory = PeakMemory(product.device)
    memory.reset()
    started = time.perf_counter()
    try:
        path = cache_encoder_features(
            SingleEncoder(modality, encoder), dataset, backbone_id=f"benchmark {model.config.name} {modality}",
            data_fingerprint=f"synthetic-{len(movies)}", part=f"bench-{modality}", collate_fn=collate,
            config=config, cache_root=cache_root, label="speed benchmark")
    finally:
        hook.remove()
    finished = time.perf_counter()
    seconds = finished - started
    if len(stamps) < 3:
        raise ValueError(f"extract {modality}: {len(stamps)} batches; give it more movies to time")
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # seconds per batch between batch starts
    rate = len(movies) / seconds
    startup = stamps[0] - started
    entry = {
        "name": f"extract {model.config.name} ({modality}, cache_encoder_features)",
        "task": "extract",
        "model": model.config.name,
        "size": product.profile.model_size,
        "modality": modality,
        "variant": f"product: {config.mixed_precision} -> {product.precision}, batch {config.batch_size}, "
                   f"{'longest first' if config.sort_by_length else 'dataset order'}",
        "feature_cache": dataclasses.asdict(config),
        "loader_workers": machine.loader_workers(config.num_workers),
        "movies": len(movies),
        "batches": len(stamps),
        "seconds": seconds,  # the whole call: hashing the weights, start-up, every batch, the file's assembly
        "movies_per_s": rate,
        "startup_s": startup,
        "steady_movies_per_s": config.batch_size / steady,
        "tail_s": finished - stamps[-1],  # the last batch and the file's assembly
        "cache_bytes": path.stat().st_size,
        **memory.to_dict(),
        "derived": {
            "mmimdb_all_movies_s": MMIMDB_MOVIES / rate,
            "how": f"derived: {MMIMDB_MOVIES} movies / movies per second of the whole call (start-up counted in "
                   "the rate: an upper bound)",
        },
    }
    return entry, path


def random_detection_table(ids: Sequence[str], num_classes: int, regions: int, seed: int = 0) -> DetectionTable:
    """A detection table of random boxes for `ids` (speed does not depend on what the boxes show)."""
    batch = random_objects(len(ids), num_classes, regions, torch.Generator().manual_seed(seed))
    return DetectionTable(ids=tuple(ids), boxes=batch["boxes"].numpy(), classes=batch["classes"].numpy(),
                          scores=np.sort(batch["scores"].numpy(), axis=1)[:, ::-1].copy(),
                          mask=batch["mask"].numpy(), vocabulary=tuple(f"class{i}" for i in range(num_classes)),
                          source="benchmark (random boxes)")


def cached_fusion(built: BuiltModel, paths: Mapping[str, Path],
                  objects: DetectionTable | None) -> tuple[nn.Module, Dataset, Any]:
    """(what `fit` trains, the dataset, the collator) of a fusion on cached features, as
    `pipeline.build_run_data` builds them for frozen encoders."""
    trainable = FrozenEncodersClassifier(built.model, tuple(paths))
    return trainable, CachedModalitiesDataset(paths), CachedFeaturesCollator(objects)


def train_epoch(product: Product, trainable: nn.Module, model: GenreClassifier, train_set: Dataset, collate: Any, *,
                warmup: int, steps: int, scratch: Path, info: DeviceInfo, name: str,
                text_flops: bool) -> dict[str, Any]:
    """`warmup + steps` optimizer steps of `fit`'s own epoch loop with the product's TrainConfig.

    `trainable` is what `fit` trains (the model, or a `FrozenEncodersClassifier` around it); `text_flops`:
    count the useful FLOPs (fine-tuning on raw movies; plots at each sample's own length) for MFU."""
    lengths_known = hasattr(train_set, "item_lengths") and "text" in model.encoders
    prefixes = ("encoders.",) if trainable is model else ("model.encoders.",)
    config = product.train_config(lengths_known=lengths_known, prefixes=prefixes)
    config = dataclasses.replace(config, max_steps_per_epoch=warmup + steps, epochs=1, log_every=10**6)
    if len(train_set) < (warmup + steps) * config.batch_size:
        raise ValueError(f"{name}: {warmup + steps} steps of {config.batch_size} need "
                         f"{(warmup + steps) * config.batch_size} movies, got {len(train_set)}")
    accelerator = product.accelerator
    parts = prepare_training(trainable, train_set, train_set, config, scratch / "checkpoints", collate, accelerator)
    widths: list[int] = []  # padded text width of each batch
    real: list[torch.Tensor] = []  # (B,) real tokens per sample of each batch, on the device: read after the epoch
    stamps: list[float] = []

    def record_batch(module: nn.Module, args: tuple[Any, ...]) -> None:
        batch = args[0]
        if text_flops and "attention_mask" in batch:
            widths.append(batch["input_ids"].shape[1])
            real.append(batch["attention_mask"].sum(dim=1))  # (B,) stays on the device: no sync here

    hook = model.register_forward_pre_hook(record_batch)
    memory = PeakMemory(product.device)
    parts.train_source.set_epoch(0)
    memory.reset()
    started = time.perf_counter()
    try:
        train_one_epoch(parts.model, parts.loss_fn, parts.optimizer, parts.scheduler, parts.train_loader, accelerator,
                        0, config, on_step_end=lambda event: stamps.append(time.perf_counter()))
    finally:
        hook.remove()
    synchronize(product.device)
    finished = time.perf_counter()
    peaks = memory.to_dict()
    accelerator.free_memory()  # the Accelerator keeps what it prepared: let this run's model and loaders go
    loader = {"workers": config.num_workers, "batch_size": config.batch_size,
              "pin_memory": parts.train_source.loader.pin_memory,
              "prefetch_factor": parts.train_source.loader.prefetch_factor,
              "persistent_workers": parts.train_source.loader.persistent_workers,
              "group_by_length": config.group_by_length}
    del parts
    gc.collect()  # the loader's persistent workers end here, not when the collector gets round to it
    if len(stamps) != warmup + steps:
        raise RuntimeError(f"{name}: {len(stamps)} optimizer steps, expected {warmup + steps}")
    timed_from = stamps[warmup - 1]
    seconds = finished - timed_from
    samples_per_s = steps * config.batch_size / seconds
    startup = stamps[0] - started
    whole_run = (warmup + steps) * config.batch_size / (finished - started)  # start-up included
    # Workers fill up to workers x prefetch batches during the warm-up; timed steps fewer than twice that may
    # be fed from the queue and overstate a loader-bound rate: the epoch is then derived from the whole run.
    queued = loader["workers"] * (loader["prefetch_factor"] or 0)
    steady_is_fair = steps > 2 * queued
    result: dict[str, Any] = {
        "name": name,
        "task": "train",
        "model": model.config.name,
        "size": product.profile.model_size,
        "variant": f"product: {config.mixed_precision} -> {product.precision}"
                   + ("+fused_adamw" if config.fused_adamw else "") + ("+channels_last" if config.channels_last else "")
                   + ("+group_by_length" if config.group_by_length else ""),
        "loader": loader,
        "warmup_steps": warmup,
        "startup_s": startup,
        "warmup_s": timed_from - started,
        "steps": steps,
        "seconds": seconds,
        "step_timing": step_statistics(np.diff(np.asarray(stamps[warmup - 1:])).tolist()),
        "samples_per_s": samples_per_s,  # steady: from the end of the warm-up
        "whole_run_samples_per_s": whole_run,
        "queued_batches": queued,  # what the workers may have prepared during the warm-up
        **peaks,
        "derived": {
            "mmimdb_train_epoch_s": (startup + MMIMDB_TRAIN_MOVIES / samples_per_s) if steady_is_fair
            else MMIMDB_TRAIN_MOVIES / whole_run,
            "how": (f"derived: start-up + {MMIMDB_TRAIN_MOVIES} training movies / steady samples per second"
                    if steady_is_fair else
                    f"derived: {MMIMDB_TRAIN_MOVIES} training movies / samples per second of the whole run, start-up "
                    f"included ({steps} timed steps are not more than twice the {queued} batches the workers "
                    "may have queued)"),
        },
    }
    if text_flops and widths:
        result |= _useful_flops(model, config.batch_size, widths[warmup:], real[warmup:], seconds, info)
    elif text_flops:  # no plots: every sample does the same work
        per_step = _constant_flops(model, config.batch_size)
        result |= _rates(per_step * steps, per_step * steps, steps, seconds, info)
    return result


def _useful_flops(model: GenreClassifier, batch_size: int, widths: list[int], real: list[torch.Tensor],
                  seconds: float, info: DeviceInfo) -> dict[str, Any]:
    """MFU of loader-fed steps on useful FLOPs: each sample's work at its own plot length (padding not counted)."""
    lengths = [row.cpu().tolist() for row in real]  # one host read, after the timed steps
    flops = text_length_flops(model, batch_size, model_device(model), _flop_widths(model))
    useful = sum(flops(length) for batch in lengths for length in batch) / batch_size
    padded = sum(flops(width) * len(batch) for width, batch in zip(widths, lengths, strict=True)) / batch_size
    tokens = sum(sum(batch) for batch in lengths)
    return {
        "text_width_mean": float(np.mean(widths)),  # padded L per batch
        "real_tokens_per_sample_mean": tokens / sum(len(batch) for batch in lengths),
        "padding_fraction": 1.0 - tokens / float(sum(w * len(b) for w, b in zip(widths, lengths, strict=True))),
        **_rates(useful, padded, len(lengths), seconds, info),
    }


def _rates(useful: float, padded: float, steps: int, seconds: float, info: DeviceInfo) -> dict[str, Any]:
    peak, measured = info.peak_bf16_flops, info.measured_peak_flops
    return {
        "flops_per_step_mean": useful / steps,
        "padded_flops_per_step_mean": padded / steps,
        "achieved_tflops": useful / seconds / 1e12,
        "mfu": None if peak is None else useful / seconds / peak,
        "mfu_measured_peak": None if measured is None else useful / seconds / measured,
    }


def _constant_flops(model: GenreClassifier, batch_size: int) -> int:
    """FLOPs of one training step of a model that reads no plots (float32, eager attention)."""
    set_attention_kernels(model, sdpa=False)
    batch = synthetic_batch(model, BatchShape(batch_size, 8, _image_size(model)), device=model_device(model))
    flops = count_flops(lambda: nn.BCEWithLogitsLoss()(model(batch).logits.float(), batch["labels"]).backward())
    model.zero_grad(set_to_none=True)
    set_attention_kernels(model, sdpa=True)
    return flops


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def text_length_flops(model: GenreClassifier, batch_size: int, device: torch.device,
                      lengths: tuple[int, int, int]) -> QuadraticFlops:
    """FLOPs of one training step of `model` as a function of the text width (float32, eager attention)."""
    set_attention_kernels(model, sdpa=False)
    loss_fn = nn.BCEWithLogitsLoss()
    counts = []
    for length in lengths:
        batch = synthetic_batch(model, BatchShape(batch_size, length, _image_size(model)), device=device)

        def forward_backward(batch: dict[str, Any] = batch) -> None:
            loss_fn(model(batch).logits.float(), batch["labels"]).backward()

        counts.append(count_flops(forward_backward))
        model.zero_grad(set_to_none=True)
    set_attention_kernels(model, sdpa=True)
    return QuadraticFlops(lengths, (counts[0], counts[1], counts[2]))


def _flop_widths(model: GenreClassifier) -> tuple[int, int, int]:
    longest = model.encoders["text"].max_length
    return (max(longest // 8, 2), max(longest // 2, 3), longest)


def _image_size(model: GenreClassifier) -> int:
    return model.encoders["image"].config.input_size if "image" in model.encoders else 224
