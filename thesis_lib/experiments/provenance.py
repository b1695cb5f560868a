"""Where a result came from: code version, library versions, device, data and config identity.

Every run record carries `provenance(...)`, so a number in the book can be traced to the commit (and
whether the checkout had uncommitted changes), the libraries, the machine and the exact data it came from.
Git is only read (`rev-parse`, `status --porcelain`); a folder that is not a git checkout records nulls.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from thesis_lib.machine import device_banner
from thesis_lib.paths import project_root

VERSIONED_PACKAGES = ("torch", "transformers", "timm", "torchvision", "numpy", "scikit-learn", "accelerate",
                      "thesis_lib")


def git_state(root: Path | None = None) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": bool or None} of the checkout holding the project."""
    root = root or project_root()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def library_versions() -> dict[str, str | None]:
    """Python and the versions of the libraries that decide the numbers."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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
