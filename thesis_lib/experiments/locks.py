"""Exclusive locks on run folders, and marks on the feature caches running runs read.

Two `thesis run` on one runs folder must never work in one run folder at once: one would delete the other's
checkpoints, or predict with the other's weights. The grid's main process holds `RunLock` on a run folder
from before it prepares the folder until its record is written (under torchrun / accelerate launch the other
processes wait at the grid's barrier, so one lock covers every rank and none can deadlock on it).

The lock is a marker file (filelock's `MarkerSoftFileLock`), not fcntl/flock: those locks are unreliable or
absent on network file systems (NFS without lockd, some FUSE and SMB mounts), where a runs folder on
cluster storage lives. The marker is created with O_CREAT|O_EXCL, which NFS v3+ servers perform atomically,
and records the holder's pid, host and process start time:
- a marker whose process is gone on this host is stale and is taken over, with a log line saying so;
- a marker from another host is respected (this host cannot see that process): the message shows its age
  and the file to delete once that host is known to be done.
A second process on a held run waits up to THESIS_LOCK_WAIT seconds (default 60), saying so in one line,
then gives up with one line naming the holder.

`CacheReadMark`: while a run holds its folder, the feature caches it reads are listed in a mark in the cache
folder (a marker of the same kind plus a JSON file), so `thesis cache clean` and other grids' cache
bookkeeping keep them (`live_cache_reads`); marks of dead processes are removed when found.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from filelock import MarkerSoftFileLock, Timeout

from thesis_lib.errors import ThesisError
from thesis_lib.storage import write_text_atomic

log = logging.getLogger(__name__)

LOCK_WAIT_ENV = "THESIS_LOCK_WAIT"  # seconds a second process waits for a held run folder
DEFAULT_LOCK_WAIT_S = 60.0
READERS_FOLDER = "feature-readers"  # under the cache root: one mark per run that reads feature caches


class RunLockedError(ThesisError, RuntimeError):
    """Another process holds the run folder (one line naming it)."""


def lock_wait_s() -> float:
    """THESIS_LOCK_WAIT, else 60 s; a value that is not a number of seconds >= 0 is an error naming it."""
    text = os.environ.get(LOCK_WAIT_ENV)
    if text is None:
        return DEFAULT_LOCK_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also refuses NaN
        raise ThesisError(f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds >= 0")
    return value


@dataclass(frozen=True)
class Holder:
    """Who holds a marker, as far as the marker says."""

    pid: int | None
    host: str | None
    age_s: float | None  # seconds since the marker was written

    def describe(self) -> str:
        who = "a process" if self.pid is None else f"pid {self.pid}"
        where = "" if self.host is None else (" on this host" if self.host == _this_host() else f" on host {self.host}")
        age = "" if self.age_s is None else f" for {_duration(self.age_s)}"
        return f"{who}{where}{age}"


def _this_host() -> str:
    return socket.gethostname()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _holder(lock: MarkerSoftFileLock, path: Path) -> Holder | None:
    """The holder the marker at `path` names; None when there is no marker."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    owner = lock.owner  # None for a marker still being written or of another format
    host = None if owner is None else owner.hostname.split("?pidns-")[0]  # filelock marks container pid namespaces
    return Holder(None if owner is None else owner.pid, host, max(age, 0.0))


class RunLock:
    """The exclusive lock of one folder (`path` is the marker file inside it); `what` names it in messages."""

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        self.what = what
        self._lock = MarkerSoftFileLock(self.path, thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self, wait_s: float | None = None) -> None:
        """Take the lock: at once when free or stale (a stale holder is logged), else after waiting up to
        `wait_s` seconds (default `lock_wait_s()`) with a one-line notice; `RunLockedError` when it stays held."""
        wait_s = lock_wait_s() if wait_s is None else wait_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        before = _holder(self._lock, self.path)
        if self._try(0):
            if before is not None:
                log.warning("%s: took over the lock %s of %s, which no longer runs", self.what, self.path,
                            before.describe())
            return
        holder = _holder(self._lock, self.path) or before
        described = "another process" if holder is None else holder.describe()
        if wait_s > 0:
            log.warning("%s is being run by %s; waiting up to %s for it (%s)", self.what, described,
                        _duration(wait_s), self.path)
            if self._try(wait_s):
                return
            holder = _holder(self._lock, self.path) or holder
            described = "another process" if holder is None else holder.describe()
        elsewhere = holder is not None and holder.host not in (None, _this_host())
        advice = (f"if that host no longer runs it, delete {self.path}" if elsewhere
                  else "wait for it, or pass --runs ANOTHER_FOLDER")
        raise RunLockedError(f"{self.what} is being run by {described} (lock {self.path}); {advice}")

    def _try(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout, poll_interval=min(0.5, max(timeout / 10, 0.01)))
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------------- feature caches being read


class CacheReadMark:
    """The feature caches one running run reads (their `FeatureCacheNeed.label`s), marked in the cache folder
    for as long as the run holds its folder: <cache>/feature-readers/<id>.lock (held) and <id>.json (what)."""

    def __init__(self, cache_root: Path, run_label: str, needs: Iterable[str]):
        folder = Path(cache_root) / READERS_FOLDER
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.marker = folder / f"{name}.lock"
        self.listing = folder / f"{name}.json"
        self.content = {"run": run_label, "needs": sorted(needs)}
        self._lock = MarkerSoftFileLock(self.marker, thread_local=False)

    def __enter__(self) -> CacheReadMark:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire(timeout=0)  # a fresh name: free
        write_text_atomic(self.listing, json.dumps(self.content))  # after the marker: a listing has a live holder
        return self

    def __exit__(self, *exc: object) -> None:
        self.listing.unlink(missing_ok=True)
        self._lock.release(force=True)


@dataclass(frozen=True)
class LiveReads:
    """What running runs read, from the marks in the cache folder."""

    needs: frozenset[str]  # FeatureCacheNeed labels
    runs: tuple[str, ...]  # labels of the runs reading them

    def __bool__(self) -> bool:
        return bool(self.runs)


def live_cache_reads(cache_root: Path) -> LiveReads:
    """The feature caches runs hold marks on now; a mark whose process is gone is removed on the way."""
    folder = Path(cache_root) / READERS_FOLDER
    needs: set[str] = set()
    runs: list[str] = []
    for listing in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        probe = MarkerSoftFileLock(listing.with_suffix(".lock"), thread_local=False)
        try:
            probe.acquire(timeout=0)  # free (or stale: taken over): that run is gone
        except Timeout:
            try:
                content = json.loads(listing.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed or rewritten meanwhile
            needs.update(str(need) for need in content.get("needs", []))
            runs.append(str(content.get("run")))
            continue
        listing.unlink(missing_ok=True)
        probe.release(force=True)
    return LiveReads(frozenset(needs), tuple(runs))
