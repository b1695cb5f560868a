"""The timing harness: warm up, then time each step on its own, so a case reports a median and a spread.

GPU work is asynchronous. Each timed step is bracketed by CUDA events recorded on the stream (no host
synchronisation between steps, so the overlap of CPU launch work with GPU compute that a real training loop
has is kept); the host waits once, at the end, and reads the events. On the CPU each step is timed with the
wall clock. Warm-up steps absorb one-off costs (cuDNN autotuning, allocator growth, torch.compile's
compilation) and are reported apart. Throughput is computed from the *median* step; the spread (quartiles,
min, max) and the wall time of the whole timed run are kept next to it, so a noisy measurement shows as one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from thesis_lib.bench.hardware import synchronize


@dataclass(frozen=True)
class Timing:
    """Durations of `len(step_s)` steady-state steps (after `warmup_steps` untimed ones)."""

    warmup_steps: int
    warmup_s: float  # wall time of the warm-up (compilation shows up here)
    step_s: tuple[float, ...]  # each timed step's duration, in order
    wall_s: float  # wall time of the whole timed run, the host waiting for the device at its end

    @property
    def steps(self) -> int:
        return len(self.step_s)

    @property
    def seconds_per_step(self) -> float:
        """The median step: what throughput is computed from."""
        return statistics.median(self.step_s)

    def to_dict(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "warmup_s": self.warmup_s, "wall_s": self.wall_s,
                **step_statistics(self.step_s)}


def step_statistics(step_s: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, extremes and the relative spread (interquartile range / median) of step times."""
    values = sorted(step_s)
    if not values:
        raise ValueError("no timed steps")
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    median = statistics.median(values)
    return {
        "steps": len(values),
        "seconds_per_step": median,  # the median step
        "mean_s": statistics.fmean(values),
        "p25_s": quartiles[0],
        "p75_s": quartiles[2],
        "min_s": values[0],
        "max_s": values[-1],
        "spread": (quartiles[2] - quartiles[0]) / median if median > 0 else None,  # IQR / median
        "step_s": [round(value, 6) for value in step_s],
    }


def time_steps(step: Callable[[], Any], *, warmup: int, steps: int, device: torch.device) -> Timing:
    """Call `step` `warmup` times untimed, then `steps` times, each timed (see the module docstring)."""
    if steps < 2 or warmup < 1:
        raise ValueError(f"need steps >= 2 and warmup >= 1 for a median and a spread, got {steps}, {warmup}")
    synchronize(device)
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmed = time.perf_counter()
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        events[0].record()
        for index in range(steps):
            step()
            events[index + 1].record()
        synchronize(device)
        durations = tuple(events[i].elapsed_time(events[i + 1]) / 1000.0 for i in range(steps))  # ms -> s
    else:
        marks = [time.perf_counter()]
        for _ in range(steps):
            step()
            marks.append(time.perf_counter())
        durations = tuple(later - earlier for earlier, later in zip(marks, marks[1:], strict=False))
    return Timing(warmup_steps=warmup, warmup_s=warmed - started, step_s=durations,
                  wall_s=time.perf_counter() - warmed)


def matmul_peak(device: torch.device, size: int, *, warmup: int = 3, repeats: int = 10) -> dict[str, Any]:
    """bf16 FLOP/s of a (size x size) @ (size x size) matmul on `device`: the median of `repeats` timed
    products after `warmup` (each product 2 * size^3 FLOPs), with the spread."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=generator)  # (n, n)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=generator)  # (n, n)
    timing = time_steps(lambda: torch.mm(a, b), warmup=warmup, steps=repeats, device=device)
    flops = 2.0 * size**3
    return {"size": size, "dtype": "bfloat16", "flops_per_product": flops,
            "tflops": flops / timing.seconds_per_step / 1e12, "timing": timing.to_dict(),
            "how": "median of the timed products; random normal inputs"}
