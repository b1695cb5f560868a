"""End to end: training steps and feature extraction fed by the project's real data path.

Posters are decoded and augmented, plots cleaned and tokenised by `MMIMDbDataset` + `MultimodalCollator`
in DataLoader workers, batches land in pinned memory and are copied to the device asynchronously, and the
model computes on them; nothing is precomputed. Throughput is measured over steady-state steps (after a
warm-up), and epoch or data-set times are *derived* from it (labelled so in the JSON): one MM-IMDb-size
training epoch = 18,171 movies (the thesis split's 70%) / samples per second.

FLOPs of batches of varying plot length come from `flops.QuadraticFlops`: three counts give the exact
FLOPs of every length, so MFU is known for length-grouped batches too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from thesis_lib.bench.batches import BatchShape, synthetic_batch, to_device
from thesis_lib.bench.cases import GRAD_CLIP_NORM
from thesis_lib.bench.hardware import DeviceInfo, PeakMemory, synchronize
from thesis_lib.bench.loading import LoaderSettings, make_loader
from thesis_lib.bench.techniques import Techniques, apply_memory_format, autocast, set_attention_kernels
from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.dataset import MMIMDbDataset
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import TextCleaningConfig
from thesis_lib.data.tokenizers import train_bpe_tokenizer, train_wordpiece_tokenizer
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.flops import QuadraticFlops, count_flops
from thesis_lib.models.registry import build_model
from thesis_lib.models.text import RANDOM_TEXT_BACKBONES, load_tokenizer
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.loaders import EpochShuffleSampler, LengthGroupedSampler
from thesis_lib.train.optim import build_optimizer

MMIMDB_TRAIN_MOVIES = 18_171  # the thesis split's training part (70% of 25,959)
MMIMDB_MOVIES = 25_959  # the whole release: what feature extraction runs over
PAD_TO_MULTIPLE_OF = 8  # tensor cores want matmul sizes in multiples of 8


@dataclass(frozen=True)
class ModelSpec:
    """A registry model in one form, with overrides (random weights: `*_pretrained=False`)."""

    name: str
    size: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def build(self, device: torch.device) -> GenreClassifier:
        torch.manual_seed(0)
        return build_model(self.name, size=self.size, **dict(self.overrides)).to(device)


def model_dataset(model: GenreClassifier, movies: Sequence[Movie], cleaning: TextCleaningConfig, *,
                  train: bool, modalities: Sequence[str]) -> tuple[MMIMDbDataset, MultimodalCollator]:
    """The project's Dataset and collator for `model` (its tokenizer, its image size and normalisation)."""
    transform = None
    if "image" in modalities:
        encoder = model.encoders["image"]
        stats = encoder.normalization()
        config = ImageTransformConfig(size=encoder.config.input_size, mean=stats.mean, std=stats.std)
        transform = build_image_transform(config, train=train)  # train: random crop, flip, colour jitter
    tokenizer = text_tokenizer(model, movies) if "text" in modalities else None
    dataset = MMIMDbDataset(movies, image_transform=transform, text_cleaning=cleaning, tokenizer=tokenizer,
                            modalities=tuple(modalities))
    max_length = model.encoders["text"].max_length if "text" in modalities else 512
    return dataset, MultimodalCollator(tokenizer, max_length=max_length, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)


def text_tokenizer(model: GenreClassifier, movies: Sequence[Movie]) -> Any:
    """The text backbone's tokenizer; a random small backbone gets one trained on these plots, as a run does."""
    config = model.encoders["text"].config
    if config.backbone not in RANDOM_TEXT_BACKBONES:
        return load_tokenizer(config)
    train = train_bpe_tokenizer if "roberta" in config.backbone else train_wordpiece_tokenizer
    tokenizer = train([movie.plot for movie in movies[:2000]], config.vocab_size)
    tokenizer.model_max_length = config.max_length
    return tokenizer


def train_with_loader(spec: ModelSpec, movies: Sequence[Movie], *, techniques: Techniques,
                      settings: LoaderSettings, group_by_length: bool, cleaning: TextCleaningConfig,
                      warmup: int, steps: int, device: torch.device, info: DeviceInfo) -> dict[str, Any]:
    """Training steps of `spec` on batches from the real loader; samples/s, loader wait, MFU, derived epoch."""
    needed = (warmup + steps) * settings.batch_size
    if len(movies) < needed:
        raise ValueError(f"{warmup + steps} steps of {settings.batch_size} need {needed} movies, got {len(movies)}")
    model = spec.build(device).train()
    modalities = [m for m in ("image", "text") if m in model.encoders]
    dataset, collator = model_dataset(model, movies, cleaning, train=True, modalities=modalities)
    if group_by_length:
        sampler = LengthGroupedSampler(dataset.item_lengths(), settings.batch_size, seed=0)
    else:
        sampler = EpochShuffleSampler(len(dataset), seed=0)
    loader = make_loader(dataset, settings, collate_fn=collator, sampler=sampler)
    set_attention_kernels(model, techniques.sdpa)
    apply_memory_format(model, techniques.channels_last)
    optimizer = build_optimizer(model, TrainConfig(fused_adamw=techniques.fused_adamw))
    loss_fn = nn.BCEWithLogitsLoss()
    parameters = [p for p in model.parameters() if p.requires_grad]
    memory = PeakMemory(device)
    widths: list[int] = []  # padded text width L of each timed batch
    real_tokens: list[int] = []  # real (unpadded) tokens of each timed batch
    waited = 0.0
    started = time.perf_counter()
    iterator = iter(loader)
    for index in range(warmup + steps):
        if index == warmup:
            synchronize(device)
            memory.reset()
            timed_from, waited = time.perf_counter(), 0.0
        before = time.perf_counter()
        batch = to_device(next(iterator), device, non_blocking=settings.pin_memory)
        waited += time.perf_counter() - before
        if index >= warmup and "input_ids" in batch:
            widths.append(batch["input_ids"].shape[1])
            real_tokens.append(int(batch["attention_mask"].sum()))
        with autocast(device, techniques.bf16):
            logits = model(batch).logits.float()  # (B, 23)
            loss = loss_fn(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - timed_from
    warmup_s = timed_from - started
    del iterator
    samples_per_s = steps * settings.batch_size / seconds
    result: dict[str, Any] = {
        "name": f"train {spec.name} (real loader" + (", length-grouped)" if group_by_length else ")"),
        "task": "train",
        "model": spec.name,
        "size": spec.size,
        "variant": techniques.label + ("+group_by_length" if group_by_length else ""),
        "techniques": techniques.to_dict(),
        "group_by_length": group_by_length,
        "loader": settings.to_dict(),
        "warmup_steps": warmup,
        "warmup_s": warmup_s,
        "steps": steps,
        "seconds": seconds,
        "samples_per_s": samples_per_s,
        "loader_wait_fraction": waited / seconds,  # share of the timed wall time spent waiting for batches
        "peak_memory_bytes": memory.peak_bytes(),
        "peak_memory_kind": memory.kind,
        "derived": {
            "mmimdb_train_epoch_s": MMIMDB_TRAIN_MOVIES / samples_per_s,
            "how": f"derived: {MMIMDB_TRAIN_MOVIES} training movies / measured steady-state samples per second",
        },
    }
    if widths:
        flops = text_length_flops(model, settings.batch_size, device, _flop_lengths(model))
        total = float(sum(flops(width) for width in widths))
        result |= {
            "text_width_mean": float(np.mean(widths)),  # padded L per batch
            "real_tokens_per_sample_mean": float(np.sum(real_tokens)) / (steps * settings.batch_size),
            "padding_fraction": 1.0 - float(np.sum(real_tokens)) / float(np.sum(widths) * settings.batch_size),
            "flops_per_step_mean": total / steps,
            "achieved_tflops": total / seconds / 1e12,
            "mfu": None if info.peak_bf16_flops is None else total / seconds / info.peak_bf16_flops,
        }
    return result


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
    return QuadraticFlops(lengths, (counts[0], counts[1], counts[2]))


def _flop_lengths(model: GenreClassifier) -> tuple[int, int, int]:
    longest = model.encoders["text"].max_length
    return (max(longest // 8, 2), max(longest // 2, 3), longest)


def _image_size(model: GenreClassifier) -> int:
    return model.encoders["image"].config.input_size if "image" in model.encoders else 224


def extract_with_loader(spec: ModelSpec, modality: str, movies: Sequence[Movie], *, techniques: Techniques,
                        settings: LoaderSettings, sort_by_length: bool, cleaning: TextCleaningConfig,
                        device: torch.device) -> dict[str, Any]:
    """Frozen-encoder features over `movies` from the real loader, stored as the feature cache stores them
    (tokens float16 and pooled float32, on the host); movies/s including decode or tokenisation."""
    model = spec.build(device)
    encoder = model.encoders[modality]
    encoder.set_frozen(True)  # eval mode, no gradients
    dataset, collator = model_dataset(model, movies, cleaning, train=False, modalities=[modality])
    order: Sequence[int] = range(len(dataset))
    sort_by_length = sort_by_length and modality == "text"  # only plots have lengths
    if sort_by_length:
        lengths = dataset.item_lengths()
        order = sorted(order, key=lambda index: lengths[index])  # neighbours in a batch have similar lengths
    loader = make_loader(dataset, settings, collate_fn=collator, sampler=order)
    set_attention_kernels(encoder, techniques.sdpa)
    apply_memory_format(encoder, techniques.channels_last)
    started = time.perf_counter()
    movies_timed = 0
    with torch.inference_mode():
        for index, batch in enumerate(loader):
            batch = to_device(batch, device, non_blocking=settings.pin_memory)
            if "image" in batch and techniques.channels_last:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with autocast(device, techniques.bf16):
                output = encoder(batch)
            output.tokens.to("cpu", torch.float16)  # (B, N, D) what the cache keeps
            output.pooled.to("cpu", torch.float32)  # (B, D)
            if index == 0:  # the first batch pays for worker start-up and kernel selection
                synchronize(device)
                timed_from = time.perf_counter()
            else:
                movies_timed += len(batch["ids"])
    synchronize(device)
    seconds = time.perf_counter() - timed_from
    rate = movies_timed / seconds
    return {
        "name": f"extract {spec.name} ({modality}, real loader" + (", sorted by length)" if sort_by_length else ")"),
        "task": "extract",
        "model": spec.name,
        "size": spec.size,
        "modality": modality,
        "variant": techniques.label + ("+sorted_by_length" if sort_by_length else ""),
        "techniques": techniques.to_dict(),
        "loader": settings.to_dict(),
        "startup_s": timed_from - started,
        "movies": movies_timed,
        "seconds": seconds,
        "movies_per_s": rate,
        "derived": {
            "mmimdb_all_movies_s": MMIMDB_MOVIES / rate,
            "how": f"derived: {MMIMDB_MOVIES} movies / measured steady-state movies per second",
        },
    }
