"""One benchmark case: a registry model, a task (training step or feature extraction), a technique mix.

A training step is what `thesis_lib.train.epoch.train_one_epoch` does per batch: forward under autocast,
BCE-with-logits on float32 logits, backward, gradient clipping at 1.0, AdamW step (the project's
parameter groups), zero_grad. Feature extraction is one frozen encoder's forward in inference mode.
FLOPs are counted once per (model, task, shape) and shared by every technique variant (see `flops`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from thesis_lib.bench.batches import BatchShape, synthetic_batch
from thesis_lib.bench.hardware import DeviceInfo, PeakMemory
from thesis_lib.bench.techniques import Techniques, apply_memory_format, autocast, set_attention_kernels
from thesis_lib.bench.timing import Timing, time_steps
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.flops import count_flops, matmul_parameters, rule_flops
from thesis_lib.models.registry import build_model
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.optim import build_optimizer

TASKS = ("train", "extract")
GRAD_CLIP_NORM = TrainConfig().grad_clip_norm  # the training loop's default clipping


@dataclass(frozen=True)
class Case:
    """What to measure: `task` on registry model `model` (its `size` form with `overrides`)."""

    model: str  # registry name, e.g. "fusion_cross_attention"
    task: str  # "train": a full optimizer step of the whole model; "extract": one encoder's forward
    shape: BatchShape
    techniques: Techniques
    size: str = "small"  # registry form: "small" | "full"
    overrides: tuple[tuple[str, Any], ...] = ()  # registry overrides, e.g. (("text_pretrained", False),)
    modality: str | None = None  # "extract" only: which encoder ("text" | "image")
    label: str = ""  # how reports name the case (default: model, task and modality)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        if (self.task == "extract") != (self.modality is not None):
            raise ValueError("a modality is given exactly for extract cases")

    @property
    def name(self) -> str:
        return self.label or f"{self.task} {self.model}" + (f" ({self.modality})" if self.modality else "")

    def flops_key(self) -> tuple[Any, ...]:
        """Cases with equal keys do the same model work (they differ only in techniques)."""
        return (self.model, self.size, self.overrides, self.task, self.modality, self.shape)


@dataclass
class CaseResult:
    """What a case measured; `to_dict` is one entry of the JSON's "cases" list."""

    case: Case
    parameters: int
    timing: Timing
    flops_per_step: int
    rule_flops_per_step: int | None  # the 6*N*tokens (train) or 2*N*tokens (extract) estimate, transformers only
    peak_memory_bytes: int
    peak_memory_kind: str
    device: DeviceInfo
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.case.shape.batch_size / self.timing.seconds_per_step

    @property
    def achieved_flops(self) -> float:
        return self.flops_per_step / self.timing.seconds_per_step

    @property
    def mfu(self) -> float | None:
        peak = self.device.peak_bf16_flops
        return None if peak is None else self.achieved_flops / peak

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.case.name,
            "model": self.case.model,
            "size": self.case.size,
            "task": self.case.task,
            "modality": self.case.modality,
            "variant": self.case.techniques.label,
            "techniques": self.case.techniques.to_dict(),
            "shape": self.case.shape.to_dict(),
            "overrides": dict(self.case.overrides),
            "parameters": self.parameters,
            "timing": self.timing.to_dict(),
            "samples_per_s": self.samples_per_s,
            "flops_per_step": self.flops_per_step,
            "flops_source": "torch.utils.flop_counter.FlopCounterMode",
            "rule_flops_per_step": self.rule_flops_per_step,
            "achieved_tflops": self.achieved_flops / 1e12,
            "mfu": self.mfu,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.peak_memory_kind,
            **self.extra,
        }


class FlopCache:
    """FLOPs per `Case.flops_key()`, counted on the first case that needs them."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Any, ...], int] = {}

    def get(self, key: tuple[Any, ...], count: Callable[[], int]) -> int:
        if key not in self.counts:
            self.counts[key] = count()
        return self.counts[key]


def build_case_model(case: Case, device: torch.device, seed: int = 0) -> GenreClassifier:
    """The registry model of a case on `device`, in training mode (its encoders decide their own mode)."""
    torch.manual_seed(seed)  # the same initial weights for every variant of a case
    model = build_model(case.model, size=case.size, **dict(case.overrides))
    return model.to(device).train()


def run_case(case: Case, device: torch.device, info: DeviceInfo, flop_cache: FlopCache,
             *, warmup: int, steps: int) -> CaseResult:
    """Build, count FLOPs (once per model work), warm up and time one case."""
    memory = PeakMemory(device)
    model = build_case_model(case, device)
    batch = synthetic_batch(model, case.shape, device=device)
    if case.task == "train":
        module, make_step, parameters = model, _train_step_factory(model, case.techniques), model
    else:
        encoder = model.encoders[case.modality]
        encoder.set_frozen(True)  # feature extraction: no gradients, eval mode (dropout off, BatchNorm frozen)
        module, make_step, parameters = encoder, _extract_step_factory(encoder, case.techniques), encoder
    flops = flop_cache.get(case.flops_key(), lambda: _count_case_flops(module, batch, case, device))
    set_attention_kernels(module, case.techniques.sdpa)
    apply_memory_format(module, case.techniques.channels_last)
    if case.techniques.channels_last and "image" in batch:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)  # (B, 3, S, S) as NHWC
    runnable = torch.compile(module) if case.techniques.compile else module
    step = make_step(runnable, batch, device)
    memory.reset()
    timing = time_steps(step, warmup=warmup, steps=steps, device=device)
    return CaseResult(
        case=case,
        parameters=sum(p.numel() for p in parameters.parameters()),
        timing=timing,
        flops_per_step=flops,
        rule_flops_per_step=_rule_estimate(model, case),
        peak_memory_bytes=memory.peak_bytes(),
        peak_memory_kind=memory.kind,
        device=info,
    )


StepFactory = Callable[[nn.Module, Mapping[str, Any], torch.device], Callable[[], Any]]


def _train_step_factory(model: GenreClassifier, techniques: Techniques) -> StepFactory:
    # Built before compilation: the optimizer holds the real parameters, which the compiled module shares.
    # Unfused is torch's default (the foreach kernels on a GPU): what the training loop used before.
    optimizer = build_optimizer(model, TrainConfig(fused_adamw=techniques.fused_adamw))
    loss_fn = nn.BCEWithLogitsLoss()
    parameters = [p for p in model.parameters() if p.requires_grad]

    def make(runnable: nn.Module, batch: Mapping[str, Any], device: torch.device) -> Callable[[], Any]:
        def step() -> None:
            with autocast(device, techniques.bf16):
                logits = runnable(batch).logits.float()  # (B, 23) float32 even under bf16 autocast
                loss = loss_fn(logits, batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    return make


def _extract_step_factory(encoder: nn.Module, techniques: Techniques) -> StepFactory:
    def make(runnable: nn.Module, batch: Mapping[str, Any], device: torch.device) -> Callable[[], Any]:
        def step() -> Any:
            with torch.inference_mode(), autocast(device, techniques.bf16):
                return runnable(batch).pooled  # (B, D); tokens are computed too (the cache stores both)

        return step

    return make


def _count_case_flops(module: nn.Module, batch: Mapping[str, Any], case: Case, device: torch.device) -> int:
    """FLOPs of one step of the case, in float32 with eager attention (see `flops`); gradients are discarded."""
    set_attention_kernels(module, sdpa=False)
    if case.task == "extract":
        def forward() -> None:
            with torch.inference_mode():
                module(batch)

        return count_flops(forward)
    loss_fn = nn.BCEWithLogitsLoss()

    def forward_backward() -> None:
        loss_fn(module(batch).logits.float(), batch["labels"]).backward()

    flops = count_flops(forward_backward)
    module.zero_grad(set_to_none=True)
    return flops


def _rule_estimate(model: GenreClassifier, case: Case) -> int | None:
    """6*N*tokens (2*N*tokens for extraction) for a single transformer encoder; None for CNNs and fusions,
    where the rule does not apply (weights reused across positions, or several token streams)."""
    encoders = [case.modality] if case.modality else list(model.encoders)
    if len(encoders) != 1 or (case.task == "train" and len(model.encoders) != 1):
        return None
    modality = encoders[0]
    encoder = model.encoders[modality]
    if modality == "text":
        tokens = case.shape.text_length
    elif modality == "image" and getattr(encoder, "is_vit", False):
        patch = encoder.backbone.patch_embed.patch_size[0]
        tokens = (case.shape.image_size // patch) ** 2 + encoder.num_prefix_tokens
    else:
        return None
    return rule_flops(matmul_parameters(encoder), tokens * case.shape.batch_size, training=case.task == "train")
