"""Where the project keeps its caches, splits and runs: always relative to the project, never absolute.

`THESIS_HOME` overrides the project root (default: the folder holding pyproject.toml above this package,
else the current directory). `THESIS_CACHE` overrides the cache folder (default: `<home>/.cache`).
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project's root folder: $THESIS_HOME, else the checkout that holds this package, else cwd."""
    if env := os.environ.get("THESIS_HOME"):
        return Path(env).expanduser().resolve()
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir.parent, *package_dir.parent.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return Path.cwd().resolve()


def cache_dir() -> Path:
    """The project's cache folder (model hubs, detector weights, feature caches): $THESIS_CACHE or <root>/.cache."""
    if env := os.environ.get("THESIS_CACHE"):
        return Path(env).expanduser().resolve()
    return project_root() / ".cache"


