"""What the benchmark runs on: the machine's record, two peaks to compute MFU against, and a peak-memory meter.

Model FLOPs utilisation (MFU) is achieved *useful* model FLOP/s (padding tokens not counted) over a peak,
reported against two peaks:
- the datasheet's dense bf16 peak (`thesis_lib.machine.PEAK_BF16_DENSE`, shared with the plan: H100 SXM
  989, H100 PCIe 756, H200 989, A100 312 TFLOP/s; no 2:4 sparsity), matched against the CUDA device name;
  a device the table does not know (and every CPU) has none, so that MFU is null ("n/a");
- the peak measured here at the start of the run: a large bf16 matmul timed on the device
  (`timing.matmul_peak`), the rate a perfect kernel reaches on this very card at its clocks today.
`--peak-tflops` on the command line replaces the datasheet's value.

Peak memory per case: on a GPU `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`; on the
host the main process's resident high-water mark (VmHWM), reset per case through /proc/self/clear_refs
where the kernel allows it, else the process-wide peak so far (the JSON's `*_kind` says which).
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch

from thesis_lib.machine import cpu_name, load_average, peak_bf16_flops, proc_bytes
from thesis_lib.versions import package_versions

SOFTWARE = ("torch", "torchvision", "transformers", "tokenizers", "timm", "accelerate", "safetensors", "numpy",
            "pillow", "scikit-learn", "pandas")


@dataclass(frozen=True)
class DeviceInfo:
    """The device a benchmark ran on, as recorded in its JSON."""

    type: str  # "cuda" | "cpu"
    name: str  # CUDA device name, or the CPU's model name
    peak_bf16_flops: float | None  # datasheet dense bf16 FLOP/s (MFU denominator); None: MFU is n/a
    peak_source: str | None  # where the peak comes from (datasheet line or "--peak-tflops")
    measured_peak_flops: float | None  # bf16 matmul FLOP/s measured on this device at the run's start
    memory_bytes: int | None  # GPU memory; None on CPU
    cpu_count: int  # logical CPUs the process may use (data-loader workers are sized from it)
    torch_threads: int  # intra-op threads of the main process

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe_device(device: torch.device, peak_tflops_override: float | None = None,
                    measured_peak_flops: float | None = None) -> DeviceInfo:
    """The DeviceInfo of `device`; `peak_tflops_override` (TFLOP/s) replaces the table's peak."""
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
        measured_peak_flops=measured_peak_flops,
        memory_bytes=memory,
        cpu_count=usable_cpus(),
        torch_threads=torch.get_num_threads(),
    )


def machine_record(device: torch.device) -> dict[str, Any]:
    """What the machine is: GPU, driver, CPUs, memory, /dev/shm (DataLoader workers pass batches through it),
    the load, and the installed versions of the packages the benchmark imports."""
    smi = _nvidia_smi()
    record: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "nproc": usable_cpus(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),  # "highest": plain float32 has no TF32
        "memory_bytes": proc_bytes("/proc/meminfo", "MemTotal"),
        "dev_shm_bytes": _disk_bytes("/dev/shm"),
        "load_average": load_average(),
        "driver": _smi_field(smi, 2),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": None,
        "nvidia_smi": smi,
        "software": package_versions(SOFTWARE),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        record["gpu"] = {"name": properties.name, "memory_bytes": int(properties.total_memory),
                         "multiprocessors": properties.multi_processor_count,
                         "capability": list(torch.cuda.get_device_capability(device)),
                         "count": torch.cuda.device_count()}
    return record


def _disk_bytes(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).total
    except OSError:
        return None


def _nvidia_smi() -> str | None:
    """nvidia-smi's one-line view of each GPU (name, memory, driver, max SM clock), or None without it."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = "name,memory.total,driver_version,clocks.max.sm,clocks.sm,power.limit"
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi failed: {error}"
    return (done.stdout or done.stderr).strip() or None


def _smi_field(smi: str | None, index: int) -> str | None:
    """Field `index` of nvidia-smi's first CSV line (2: the driver version)."""
    fields = [field.strip() for field in (smi or "").splitlines()[0].split(",")] if smi else []
    return fields[index] if len(fields) > index else None


class PeakMemory:
    """Peak memory of one benchmark case, on the device and on the host (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.host_kind = "process_max_rss"  # until a reset succeeds

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else self.host_kind

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.host_kind = "main_process_vmhwm_since_reset" if _reset_host_peak() else "process_max_rss"

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return self.host_peak_bytes()

    def host_peak_bytes(self) -> int:
        hwm = proc_bytes("/proc/self/status", "VmHWM")
        if hwm is not None:
            return hwm
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes

    def to_dict(self) -> dict[str, Any]:
        """The case's peaks: `peak_memory_bytes` (the device's; the host's on a CPU run) and the host's."""
        return {"peak_memory_bytes": self.peak_bytes(), "peak_memory_kind": self.kind,
                "host_peak_bytes": self.host_peak_bytes(), "host_peak_kind": self.host_kind}


def _reset_host_peak() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0: write 5 to /proc/self/clear_refs); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
