"""The machine a run computes on, decided in one place: the device, the autocast precision, the workers.

Every product path that picks a device (training, feature extraction, detection, explanations) asks
`choose_device`, so `device: cpu` in a profile means the CPU everywhere and `device: auto` means the GPU
everywhere there is a usable one. `autocast_dtype` turns a profile's `mixed_precision` into what that
device can do: bf16 on a GPU without bf16 (pre-Ampere) becomes fp16 (logged once and recorded by the
caller), and autocast stays off on the CPU, where bf16 is slower than fp32 on most cores and changes the
numbers for nothing. `loader_workers` turns the profile's `num_workers: -1` into cores - 2: the main
process and the one feeding the GPU keep a core each.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

DEVICE_SETTINGS = ("cpu", "auto")
PRECISIONS = ("no", "bf16", "fp16")
AUTO_WORKERS = -1  # num_workers: -1 -> one per core less two

# (substring of the CUDA device name, dense bf16 peak in FLOP/s, where the number comes from). Checked in
# order: the PCIe/NVL variants before the plain "H100", which names the SXM part ("NVIDIA H100 80GB HBM3").
PEAK_BF16_DENSE: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 756e12, "NVIDIA H100 PCIe datasheet: 756 TFLOP/s dense bf16"),
    ("H100 NVL", 835e12, "NVIDIA H100 NVL datasheet: 835 TFLOP/s dense bf16"),
    ("H100", 989e12, "NVIDIA H100 SXM datasheet: 989 TFLOP/s dense bf16 (1,979 with sparsity)"),
    ("H200", 989e12, "NVIDIA H200: the H100 SXM chip, 989 TFLOP/s dense bf16"),
    ("A100", 312e12, "NVIDIA A100 datasheet: 312 TFLOP/s dense bf16"),
)


def gpu_usable() -> bool:
    """True when torch can run kernels on a CUDA GPU here (a GPU with a driver the installed torch accepts)."""
    return torch.cuda.is_available()


def choose_device(setting: str, local_rank: int | None = None) -> torch.device:
    """"cpu" -> the CPU; "auto" -> this process's GPU when one is usable, else the CPU.

    `local_rank` (default: $LOCAL_RANK, set by torchrun/accelerate launch) picks the GPU of this process."""
    if setting not in DEVICE_SETTINGS:
        raise ValueError(f"device {setting!r} is not one of {list(DEVICE_SETTINGS)}")
    if setting == "cpu" or not gpu_usable():
        return torch.device("cpu")
    rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
    return torch.device("cuda", rank % torch.cuda.device_count())


def supports_bf16(device: torch.device) -> bool:
    """bf16 tensor-core kernels on this GPU (Ampere and later); False on the CPU."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def effective_precision(device: torch.device, mixed_precision: str) -> str:
    """What a profile's `mixed_precision` becomes on `device`: "no" on the CPU, "fp16" for bf16 on a GPU
    without bf16 kernels, else itself."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision {mixed_precision!r} is not one of {list(PRECISIONS)}")
    if mixed_precision == "no" or device.type != "cuda":
        return "no"
    if mixed_precision == "bf16" and not supports_bf16(device):
        log.warning("bf16 asked for but %s has no bf16 kernels: computing in fp16 with loss scaling",
                    torch.cuda.get_device_name(device))
        return "fp16"
    return mixed_precision


def autocast_dtype(device: torch.device, mixed_precision: str) -> torch.dtype | None:
    """The dtype to autocast inference to on `device` (None: full precision)."""
    precision = effective_precision(device, mixed_precision)
    return {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def loader_workers(num_workers: int, cores: int | None = None) -> int:
    """DataLoader workers for a profile's `num_workers`: itself, or for -1 the usable cores less two (>= 0)."""
    if num_workers == AUTO_WORKERS:
        available = cores if cores is not None else len(os.sched_getaffinity(0))
        return max(available - 2, 0)
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, or {AUTO_WORKERS} for cores - 2, got {num_workers}")
    return num_workers


def peak_bf16_flops(device_name: str) -> tuple[float, str] | None:
    """(dense bf16 FLOP/s, source) for a CUDA device name, or None for a device the table does not know."""
    for fragment, flops, source in PEAK_BF16_DENSE:
        if fragment in device_name:
            return flops, source
    return None


# ------------------------------------------------------------------------------------------ diagnosis


def gpu_problem() -> str | None:
    """Why no CUDA GPU can run this torch build's kernels here, in one phrase; None when one can.

    The usual causes, told apart so the user knows what to fix: a CPU-only torch build, no NVIDIA device,
    a driver older than the CUDA version torch was built for (torch sees the device but refuses it), and a
    GPU whose compute capability this build ships no kernels for (a pre-Volta card under a CUDA 13 build).
    """
    built_for = torch.version.cuda
    if built_for is None:
        return "the installed torch is a CPU-only build (torch.version.cuda is None)"
    count = torch.cuda.device_count()
    driver = _nvidia_driver_version()
    if not torch.cuda.is_available():
        if count == 0 and driver is None:
            return "no CUDA device (no NVIDIA driver loaded, torch.cuda.device_count() == 0)"
        found = f"NVIDIA driver {driver}" if driver else f"{count} CUDA device(s)"
        return (f"{found} found, but torch (built for CUDA {built_for}) cannot use it: the driver is probably "
                f"too old for CUDA {built_for}; update the driver or install a torch built for an older CUDA")
    built = torch.cuda.get_arch_list()
    for index in range(count):
        major, minor = torch.cuda.get_device_capability(index)
        if not _has_kernels(major, minor, built):
            return (f"GPU {index} ({torch.cuda.get_device_name(index)}, sm_{major}{minor}) has no kernels in this "
                    f"torch build (built for {', '.join(built)})")
    return None


def _has_kernels(major: int, minor: int, built: list[str]) -> bool:
    """sm_XY compiled in, or PTX (compute_XY) of an equal or older capability that the driver can JIT."""
    if not built or f"sm_{major}{minor}" in built:
        return True
    capability = major * 10 + minor
    return any(int(arch.removeprefix("compute_")) <= capability
               for arch in built if arch.startswith("compute_") and arch.removeprefix("compute_").isdigit())


def _nvidia_driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version (from /proc), or None when none is loaded."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as file:
            words = file.readline().split()
    except OSError:
        return None
    numbers = [word for word in words if word[:1].isdigit() and "." in word]
    return numbers[0] if numbers else "unknown version"


@dataclass(frozen=True)
class DeviceBanner:
    """What a run computes on, as the grid logs it once and every run record keeps it."""

    type: str                   # "cuda" | "cpu"
    name: str                   # GPU name, or the CPU's
    count: int                  # GPUs visible to this process (0 on the CPU)
    memory_bytes: int | None    # memory of one GPU; None on the CPU
    bf16: bool                  # bf16 kernels available
    mixed_precision: str        # the profile's setting
    effective_precision: str    # what autocast uses here ("no" on the CPU, fp16 for bf16 without bf16)

    def line(self) -> str:
        if self.type != "cuda":
            return (f"device: CPU ({self.name}), {os.cpu_count()} cores; no autocast "
                    f"(profile mixed_precision={self.mixed_precision})")
        return (f"device: {self.name} x{self.count}, {self.memory_bytes / 2**30:.1f} GiB each, "
                f"bf16 {'yes' if self.bf16 else 'no'}, fp16 yes; mixed precision {self.mixed_precision} -> "
                f"{self.effective_precision}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_banner(device: torch.device, mixed_precision: str) -> DeviceBanner:
    """The banner of `device` (as `choose_device` returned it) for a profile's `mixed_precision`."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return DeviceBanner("cuda", properties.name, torch.cuda.device_count(), int(properties.total_memory),
                            supports_bf16(device), mixed_precision, effective_precision(device, mixed_precision))
    return DeviceBanner("cpu", cpu_name(), 0, None, False, mixed_precision, "no")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): how busy the machine was."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def proc_bytes(path: str, field: str) -> int | None:
    """A kB field of a Linux /proc file in bytes: `proc_bytes("/proc/meminfo", "MemAvailable")`,
    `proc_bytes("/proc/self/status", "VmHWM")`; None where the file or the field is missing (not Linux)."""
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None
