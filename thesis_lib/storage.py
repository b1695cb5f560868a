"""Writing files so that a reader never sees half of one, and hashing JSON-able values stably.

Every file the project writes for later (run records, predictions, checkpoints, split files, detection
and feature caches, benchmark results) goes through `atomic_write`; every cache key and config hash
through `stable_hash`. Both depend on nothing else in the project.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run `write(tmp)`, flush tmp to disk, then move it onto `path` in one step.

    tmp sits in the same folder, so `os.replace` is atomic: a crash leaves the old file or the new one,
    never a mixture; a failing `write` leaves `path` untouched and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:  # flush to disk before the rename makes the file visible
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """`atomic_write` of a UTF-8 text file."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def canonical_json(payload: Any) -> str:
    """JSON independent of dict order and spacing (tuples as lists): what `stable_hash` digests."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def stable_hash(payload: Any, length: int | None = None) -> str:
    """sha256 hex of `canonical_json(payload)`, cut to `length` characters when given (a cache key)."""
    digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    return digest if length is None else digest[:length]


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to disk: without it a rename that
    commits something can be lost in a power cut even though the file's bytes were flushed. A no-op where the
    file system cannot sync folders (EINVAL, EBADF, EACCES: some network and Windows file systems)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES, errno.ENOTSUP):
            raise
    finally:
        os.close(handle)
