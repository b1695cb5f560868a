"""Writing files so that a reader never sees half of one, reading only regular files of a sane size, and
hashing JSON-able values stably.

Every file the project writes for later (run records, predictions, checkpoints, split files, detection
and feature caches, benchmark results) goes through `atomic_write`; every cache key and config hash
through `stable_hash`. Files handed to us (a release's plot files and posters) are read through
`open_regular_file` / `read_regular_file`, which refuse FIFOs, devices and oversized files. All of it
depends on nothing else in the project.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


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


def read_json_document(path: Path, schema: str, error: type[Exception], what: str, kind: str | None = None,
                       remedy: str = "") -> dict[str, Any]:
    """The JSON object at `path` whose "schema" is `schema` (a results file, a benchmark result); otherwise
    `error` with one line naming the file and what it is not: "PATH: not a readable <what> (...)" or "PATH: not
    a <kind> (schema 'x', '<schema>' expected)" (`kind` defaults to "<schema> <what>"); `remedy` ends both."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f"{path}: not a readable {what} ({problem}){remedy}") from None
    if not isinstance(document, dict) or document.get("schema") != schema:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise error(f"{path}: not a {kind or f'{schema} {what}'} (schema {found!r}, {schema!r} expected){remedy}")
    return document


def canonical_json(payload: Any) -> str:
    """JSON independent of dict order and spacing (tuples as lists): what `stable_hash` digests."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def stable_hash(payload: Any, length: int | None = None) -> str:
    """sha256 hex of `canonical_json(payload)`, cut to `length` characters when given (a cache key)."""
    digest = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
    return digest if length is None else digest[:length]


# --------------------------------------------------------------------------------------------------------
# Reading files that others hand us: only regular files, and only as much as such a file can hold.

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


class NotRegularFileError(OSError):
    """A path that should hold a file's bytes is a FIFO, a device, a folder, a socket (or links to one)."""

    def __init__(self, path: os.PathLike[str] | str, kind: str):
        super().__init__(errno.EINVAL, f"not a regular file but {kind}", os.fspath(path))
        self.kind = kind


class FileTooLargeError(OSError):
    """A file larger than what the caller accepts for its kind (read at most `limit` + 1 bytes of it)."""

    def __init__(self, path: os.PathLike[str] | str, size: int, limit: int):
        super().__init__(errno.EFBIG, f"{_bytes(size)} is over the {_bytes(limit)} limit", os.fspath(path))
        self.size, self.limit = size, limit


def file_kind(mode: int) -> str:
    """'a FIFO', 'a folder', ... for an st_mode; 'a regular file' for one."""
    return next((kind for test, kind in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode) else "a special file")


def open_regular_file(path: os.PathLike[str] | str) -> BinaryIO:
    """Open `path` for reading only if it is (or links to) a regular file; raise NotRegularFileError else.

    Why not plain open(): opening a FIFO blocks until a writer appears (forever), and reading a link to
    /dev/zero never ends. The kind is checked before the open (a device is never opened) and again on the
    open descriptor (a file swapped for a FIFO in between is caught); O_NONBLOCK keeps that open from
    blocking. Links are followed: a release whose files link to scratch storage keeps working."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFileError(path, file_kind(before.st_mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags)
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):
            raise NotRegularFileError(path, file_kind(opened.st_mode))
        return open(path, "rb", opener=lambda _path, _flags: descriptor)  # keeps the name for messages
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_file(path: os.PathLike[str] | str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; NotRegularFileError or FileTooLargeError else.

    At most `max_bytes` + 1 bytes are ever read, so a file that grows while it is read (or lies about its
    size) cannot make the caller hold more than that."""
    with open_regular_file(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise FileTooLargeError(path, size, max_bytes)
        content = handle.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise FileTooLargeError(path, len(content), max_bytes)
    return content


def _bytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count:,} bytes"


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
