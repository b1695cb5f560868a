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

import torch

log = logging.getLogger(__name__)

DEVICE_SETTINGS = ("cpu", "auto")
PRECISIONS = ("no", "bf16", "fp16")
AUTO_WORKERS = -1  # num_workers: -1 -> one per core less two


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
