"""The timing harness: warm up, then time a run of steps as one wall-clock interval.

GPU work is asynchronous, so the clock is read only after `torch.cuda.synchronize`; timing each step on
its own would need a synchronisation per step and hide the overlap of CPU launch work with GPU compute
that a real training loop has. Warm-up steps absorb one-off costs (cuDNN autotuning, allocator growth,
torch.compile's compilation) and are reported separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from thesis_lib.bench.hardware import synchronize


@dataclass(frozen=True)
class Timing:
    """Wall time of `steps` steady-state steps (after `warmup_steps` untimed ones)."""

    warmup_steps: int
    warmup_s: float  # wall time of the warm-up (compilation shows up here)
    steps: int
    seconds: float  # wall time of the timed steps

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "warmup_steps": self.warmup_steps,
            "warmup_s": self.warmup_s,
            "steps": self.steps,
            "seconds": self.seconds,
            "seconds_per_step": self.seconds_per_step,
        }


def time_steps(step: Callable[[], Any], *, warmup: int, steps: int, device: torch.device) -> Timing:
    """Call `step` `warmup` times untimed, then `steps` times timed; GPU work is waited for each time."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    synchronize(device)
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmed = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return Timing(warmup_steps=warmup, warmup_s=warmed - started, steps=steps, seconds=time.perf_counter() - warmed)
