"""Which code this is: the installed package's version and, in a checkout, its git commit.

`thesis --version` prints `version_line()`; every run record carries `git_state()` (through
`experiments.provenance`). Light on purpose (no torch): `--version` must answer at once. Git is only read
(`rev-parse`, `status --porcelain`); a folder that is not a git checkout gives nulls.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from thesis_lib import __version__
from thesis_lib.paths import project_root

DISTRIBUTION = "thesis_lib"  # the [project] name in pyproject.toml


def package_version() -> str:
    """The installed distribution's version (pyproject's, through the package metadata); the source tree's
    `thesis_lib.__version__` when the package runs from a checkout it was not installed from."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution, None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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


def source_checkout() -> Path | None:
    """The git checkout this package's files live in (pyproject.toml and .git beside the package), or None
    for an installed copy: the working directory's repository is never mistaken for the package's."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None


def version_line() -> str:
    """"thesis_lib 0.1.0 (commit 9e5cec8, uncommitted changes)", or without the commit outside a checkout."""
    line = f"{DISTRIBUTION} {package_version()}"
    checkout = source_checkout()
    state = git_state(checkout) if checkout else {"commit": None}
    if state["commit"]:
        line += f" (commit {state['commit'][:7]}{', uncommitted changes' if state['dirty'] else ''})"
    return line
