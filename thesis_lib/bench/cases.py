"""One synthetic-batch case: the training step of a model as the product builds it, with one technique mix.

A training step is what `thesis_lib.train.epoch.train_one_epoch` does per batch: forward under autocast,
BCE-with-logits on float32 logits, backward, gradient clipping at 1.0, AdamW step (the project's parameter
groups), zero_grad. Synthetic batches keep the data loader out of the measurement (the loader-fed runs
are in `end_to_end`).

FLOPs. The hardware work of a step (`padded_flops_per_step`) is counted once per (model, shape) with
`FlopCounterMode` in float32 with eager attention and shared by every technique variant. MFU counts only
*useful* work: a padding token's share is not model work. For a batch with padding the FLOPs of a text
batch are an exact quadratic in its width (`flops.QuadraticFlops`, three counts), so each sample's FLOPs
at its own length are known and summed (`flops_per_step`); without padding the two are equal.

Attention masks. In eager mode transformers drops an all-ones attention mask and SDPA runs without one (the
flash kernel); while torch.compile traces it cannot look at the mask's values and keeps it (a masked
kernel). A batch with padding takes the masked kernel in both modes, so the compile section times eager and
compiled on the *same padded batch* (same kernel), and every text case records which it had
(`attention_mask`: "all real" | "padded").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from thesis_lib.bench.batches import BatchShape, synthetic_batch
from thesis_lib.bench.config import Overrides
from thesis_lib.bench.hardware import DeviceInfo, PeakMemory
from thesis_lib.bench.product import Product
from thesis_lib.bench.techniques import Techniques, apply_memory_format, autocast, set_attention_kernels
from thesis_lib.bench.timing import Timing, time_steps
from thesis_lib.data.mmimdb import Movie
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.flops import QuadraticFlops, count_flops, matmul_parameters, rule_flops
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.optim import build_optimizer

GRAD_CLIP_NORM = TrainConfig().grad_clip_norm  # the training loop's default clipping


@dataclass(frozen=True)
class Case:
    """What to measure: a training step of registry model `model` (with `overrides`) on a synthetic batch."""

    model: str  # registry name, e.g. "fusion_cross_attention"
    shape: BatchShape
    techniques: Techniques
    overrides: Overrides = ()  # registry overrides, e.g. (("modalities", ("text", "image")),)
    lengths: tuple[int, ...] | None = None  # real tokens per sample; None: every token is real
    label: str = ""  # how reports name the case (default: "train <model>")

    @property
    def name(self) -> str:
        return self.label or f"train {self.model}"

    def flops_key(self) -> tuple[Any, ...]:
        """Cases with equal keys do the same model work (they differ only in techniques)."""
        return (self.model, self.overrides, self.shape, self.lengths)


@dataclass(frozen=True)
class Flops:
    """FLOPs of one step: the hardware work, the useful (non-padding) work, the 6*N*tokens estimate."""

    padded: int
    useful: int
    rule: int | None  # single transformer encoders only


@dataclass
class CaseResult:
    """What a case measured; `to_dict` is one entry of the JSON's "cases" list."""

    case: Case
    size: str
    parameters: int
    timing: Timing
    flops: Flops
    memory: dict[str, Any]
    device: DeviceInfo
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.case.shape.batch_size / self.timing.seconds_per_step

    def to_dict(self) -> dict[str, Any]:
        seconds = self.timing.seconds_per_step
        useful = self.flops.useful / seconds
        peak, measured = self.device.peak_bf16_flops, self.device.measured_peak_flops
        return {
            "name": self.case.name,
            "model": self.case.model,
            "size": self.size,
            "task": "train",
            "modality": None,
            "variant": self.case.techniques.label,
            "techniques": self.case.techniques.to_dict(),
            "shape": self.case.shape.to_dict(),
            "overrides": {key: value for key, value in self.case.overrides},
            "parameters": self.parameters,
            "timing": self.timing.to_dict(),
            "samples_per_s": self.samples_per_s,
            "flops_per_step": self.flops.useful,  # useful: padding tokens not counted
            "padded_flops_per_step": self.flops.padded,  # the hardware work, padding included
            "flops_source": "torch.utils.flop_counter.FlopCounterMode (float32, eager attention)",
            "rule_flops_per_step": self.flops.rule,
            "achieved_tflops": useful / 1e12,
            "padded_tflops": self.flops.padded / seconds / 1e12,
            "mfu": None if peak is None else useful / peak,  # against the datasheet's dense bf16 peak
            "mfu_measured_peak": None if measured is None else useful / measured,  # against the matmul here
            **self.memory,
            **self.extra,
        }


class FlopCache:
    """FLOPs per `Case.flops_key()`, counted on the first case that needs them."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, ...], Flops] = {}

    def get(self, key: tuple[Any, ...], count: Callable[[], Flops]) -> Flops:
        if key not in self.counts:
            self.counts[key] = count()
        return self.counts[key]


def run_case(case: Case, product: Product, info: DeviceInfo, flop_cache: FlopCache, movies: Sequence[Movie], *,
             warmup: int, steps: int, compile_backend: str = "inductor") -> CaseResult:
    """Build (as the grid builds it), count FLOPs (once per model work), warm up and time one case.
    `movies`: plots a random text backbone's tokenizer is trained on (its vocabulary sizes the embedding)."""
    device = product.device
    memory = PeakMemory(device)
    model = product.build(product.model_config(case.model, case.overrides), movies).model.train()
    batch = synthetic_batch(model, case.shape, device=device, lengths=case.lengths)
    flops = flop_cache.get(case.flops_key(), lambda: _count_flops(model, batch, case))
    set_attention_kernels(model, case.techniques.sdpa)
    apply_memory_format(model, case.techniques.channels_last)
    if case.techniques.channels_last and "image" in batch:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)  # (B, 3, S, S) as NHWC
    step = _train_step(model, batch, case.techniques, device, compile_backend)
    extra = _mask_note(batch, case.techniques)
    memory.reset()
    if case.techniques.compile:
        from torch import _dynamo  # slow to import, and only a compiled case needs it

        _dynamo.reset()  # a fresh count of graph breaks for this model
        _dynamo.utils.counters.clear()
    timing = time_steps(step, warmup=warmup, steps=steps, device=device)
    if case.techniques.compile:
        extra |= _graph_breaks(compile_backend)
    return CaseResult(case=case, size=product.profile.model_size,
                      parameters=sum(p.numel() for p in model.parameters()), timing=timing, flops=flops,
                      memory=memory.to_dict(), device=info, extra=extra)


def _train_step(model: GenreClassifier, batch: Mapping[str, Any], techniques: Techniques, device: torch.device,
                compile_backend: str) -> Callable[[], None]:
    # Built before compilation: the optimizer holds the real parameters, which the compiled module shares.
    optimizer = build_optimizer(model, TrainConfig(fused_adamw=techniques.fused_adamw))
    loss_fn = nn.BCEWithLogitsLoss()
    parameters = [p for p in model.parameters() if p.requires_grad]
    runnable = torch.compile(model, backend=compile_backend) if techniques.compile else model

    def step() -> None:
        with autocast(device, techniques.bf16):
            logits = runnable(batch).logits.float()  # (B, 23) float32 even under bf16 autocast
            loss = loss_fn(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _count_flops(model: GenreClassifier, batch: Mapping[str, Any], case: Case) -> Flops:
    """Hardware and useful FLOPs of one step (float32, eager attention); gradients are discarded."""
    set_attention_kernels(model, sdpa=False)
    loss_fn = nn.BCEWithLogitsLoss()

    def count(step_batch: Mapping[str, Any]) -> int:
        def forward_backward() -> None:
            loss_fn(model(step_batch).logits.float(), step_batch["labels"]).backward()

        flops = count_flops(forward_backward)
        model.zero_grad(set_to_none=True)
        return flops

    if case.lengths is None or "text" not in model.encoders:
        padded = count(batch)
        return Flops(padded, padded, _rule_estimate(model, case))
    width = case.shape.text_length
    widths = (max(width // 8, 2), max(width // 2, 3), width)
    counts = []
    for length in widths:
        shape = BatchShape(case.shape.batch_size, length, case.shape.image_size, case.shape.regions)
        counts.append(count(synthetic_batch(model, shape, device=batch["labels"].device)))
    flops = QuadraticFlops(widths, (counts[0], counts[1], counts[2]))
    useful = sum(flops(length) for length in case.lengths) / case.shape.batch_size  # each sample at its length
    return Flops(int(flops(width)), int(useful), None)


def _rule_estimate(model: GenreClassifier, case: Case) -> int | None:
    """6*N*tokens for a single transformer encoder; None for CNNs and fusions, where the rule does not apply
    (weights reused across positions, or several token streams)."""
    if len(model.encoders) != 1:
        return None
    modality, encoder = next(iter(model.encoders.items()))
    if modality == "text":
        tokens = case.shape.text_length
    elif modality == "image" and getattr(encoder, "is_vit", False):
        patch = encoder.backbone.patch_embed.patch_size[0]
        tokens = (case.shape.image_size // patch) ** 2 + encoder.num_prefix_tokens
    else:
        return None
    return rule_flops(matmul_parameters(encoder), tokens * case.shape.batch_size, training=True)


def _mask_note(batch: Mapping[str, Any], techniques: Techniques) -> dict[str, Any]:
    """Which attention kernel the text encoder gets (see the module docstring)."""
    if "attention_mask" not in batch:
        return {}
    padded = bool((batch["attention_mask"] == 0).any())  # once, before timing: never inside a step
    if padded:
        note = "padded: eager and compiled both run SDPA with the mask"
    elif techniques.compile:
        note = "all real: compiled keeps the all-ones mask (masked SDPA), eager drops it (no mask): kernels differ"
    else:
        note = "all real: eager drops the all-ones mask (SDPA without a mask)"
    return {"attention_mask": "padded" if padded else "all real", "attention_note": note}


def _graph_breaks(backend: str) -> dict[str, Any]:
    """torch.compile's graph breaks while the case warmed up (each one a piece compiled apart)."""
    from torch import _dynamo  # imported by the compiled case already

    breaks = dict(_dynamo.utils.counters.get("graph_break", {}))
    return {"compile_backend": backend, "graph_breaks": int(sum(breaks.values())),
            "graph_break_reasons": [str(reason)[:300] for reason in list(breaks)[:20]]}
