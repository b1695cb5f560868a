"""The GPU techniques the benchmark switches on and off, each one applied to a built model.

`Techniques` names one combination; `PLAIN` (float32, foreach AdamW, eager attention, NCHW, no compile)
is the baseline every variant is compared with in the same run. What each switch does:

- bf16: autocast matmuls and convolutions to bfloat16 (weights and optimizer state stay float32; bf16 has
  float32's range, so no loss scaling is needed, unlike fp16);
- fused_adamw: `torch.optim.AdamW(fused=True)`, one kernel for the whole update (TrainConfig.fused_adamw);
- sdpa: fused scaled-dot-product attention (flash / memory-efficient kernels) in BERT/RoBERTa and timm's
  ViT; off means eager attention, which the models only use when attention maps are requested;
- channels_last: NHWC layout for convolution weights and inputs, which tensor-core convolutions read
  without transposes (TrainConfig.channels_last; only CNNs are affected);
- compile: `torch.compile` (inductor) of the whole model; benchmark-only so far (see benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from thesis_lib.models.text_attention import VARLEN_ATTENTION


@dataclass(frozen=True)
class Techniques:
    """One combination of speed techniques (see the module docstring)."""

    bf16: bool = True  # autocast to bfloat16
    fused_adamw: bool = True  # single-kernel AdamW update
    sdpa: bool = True  # fused attention kernels (eager attention when False)
    channels_last: bool = True  # NHWC convolutions (CNNs only)
    compile: bool = False  # torch.compile the model (slow to warm up: compilation is in the warm-up time)

    @property
    def label(self) -> str:
        """"plain" or the switched-on techniques joined by "+", e.g. "bf16+fused_adamw+sdpa"."""
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return "+".join(on) if on else "plain"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: bool) -> Techniques:
        return replace(self, **changes)


PLAIN = Techniques(bf16=False, fused_adamw=False, sdpa=False, channels_last=False, compile=False)
BEST_EAGER = Techniques()  # everything but compile


def set_attention_kernels(model: nn.Module, sdpa: bool) -> None:
    """Switch every Hugging Face transformer and timm ViT inside `model` to fused (SDPA) or eager attention.

    The project's own fusion layers compute attention by hand (they return the weights), so they are not
    affected; their share of the FLOPs is small (see the JSON's per-case FLOP counts).
    """
    fused = ("sdpa", VARLEN_ATTENTION)  # the project's padding-free attention is SDPA too (models.text_attention)
    for module in model.modules():
        if hasattr(module, "set_attn_implementation") and hasattr(module, "config"):
            current = getattr(module.config, "_attn_implementation", None)
            if (current in fused) != sdpa:
                module.set_attn_implementation("sdpa" if sdpa else "eager")
        if hasattr(module, "fused_attn"):  # timm Attention blocks read this flag at every forward
            module.fused_attn = sdpa


def apply_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """NHWC (channels_last) or NCHW weights for every 4-D parameter; other parameters are untouched."""
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """The autocast context of a step: bfloat16 when asked, else disabled (float32)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
