"""What the benchmark runs on: the device, its stated peak bf16 throughput, and a peak-memory meter.

Model FLOPs utilisation (MFU) is achieved model FLOP/s over the device's *dense* bf16 peak as NVIDIA
states it (no 2:4 sparsity). The table (`thesis_lib.machine.PEAK_BF16_DENSE`, shared with the plan) is
matched against `torch.cuda.get_device_name`; a device it does not know (and every CPU) has no peak, so its MFU is reported as null ("n/a") and only the achieved
FLOP/s are given. `--peak-tflops` on the command line overrides the table.
"""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch

from thesis_lib.machine import cpu_name, peak_bf16_flops


@dataclass(frozen=True)
class DeviceInfo:
    """The device a benchmark ran on, as recorded in its JSON."""

    type: str  # "cuda" | "cpu"
    name: str  # CUDA device name, or the CPU's model name
    peak_bf16_flops: float | None  # dense bf16 FLOP/s used as the MFU denominator; None: MFU is n/a
    peak_source: str | None  # where the peak comes from (datasheet line or "--peak-tflops")
    memory_bytes: int | None  # GPU memory; None on CPU
    cpu_count: int  # logical CPUs the process may use (data-loader workers are sized from it)
    torch_threads: int  # intra-op threads of the main process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_device(device: torch.device, peak_tflops_override: float | None = None) -> DeviceInfo:
    """The DeviceInfo of `device`; `peak_tflops_override` (TFLOP/s) replaces the table's peak."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        name, memory = properties.name, int(properties.total_memory)
        known = peak_bf16_flops(name)
    else:
        name, memory, known = cpu_name(), None, None
    if peak_tflops_override is not None:
        known = (peak_tflops_override * 1e12, "--peak-tflops")
    return DeviceInfo(
        type=device.type,
        name=name,
        peak_bf16_flops=None if known is None else known[0],
        peak_source=None if known is None else known[1],
        memory_bytes=memory,
        cpu_count=cpus,
        torch_threads=torch.get_num_threads(),
    )


class PeakMemory:
    """Peak memory of one benchmark case.

    CUDA: `torch.cuda.max_memory_allocated` since `reset()` (tensors only, the caching allocator's reserve
    not included). CPU: the process's peak resident set size, which the OS never resets, so on CPU it is the
    peak *so far* in the process (an upper bound for the case, labelled so in the JSON).
    """

    def __init__(self, device: torch.device):
        self.device = device

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "process_max_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
