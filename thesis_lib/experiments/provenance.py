"""Where a result came from: code version, library versions, device, data and config identity.

Every run record carries `provenance(...)`, so a number in the book can be traced to the commit (and
whether the checkout had uncommitted changes), the libraries, the machine and the exact data it came from.
The git state is `thesis_lib.versions.git_state` (what `thesis --version` reads too); a folder that is not a
git checkout records nulls.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from thesis_lib.machine import device_banner
from thesis_lib.versions import git_state as git_state  # re-exported: the run record's and the book's git state
from thesis_lib.versions import package_versions

VERSIONED_PACKAGES = ("torch", "transformers", "timm", "torchvision", "numpy", "scikit-learn", "accelerate",
                      "thesis_lib")


def library_versions() -> dict[str, str | None]:
    """Python and the versions of the libraries that decide the numbers."""
    return {"python": platform.python_version(), **package_versions(VERSIONED_PACKAGES)}


def device_info(device: torch.device, *, processes: int, mixed_precision: str) -> dict[str, Any]:
    """What the run computed on: the device banner the grid logs (type, name, GPU count and memory, bf16,
    the profile's `mixed_precision` and the precision autocast really used), processes and CPU threads."""
    banner = device_banner(device, mixed_precision)
    return {
        **banner.to_dict(),
        "processes": processes,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": sys.platform,
    }
