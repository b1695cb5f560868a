"""Download the MM-IMDb release (about 8.1 GB), resumably, verify it, and extract it safely.

Only the standard library talks to the network (urllib), so the download works on a bare machine.

- Resumable: bytes go to `dest/<name>.part`; a rerun sends an HTTP Range request for the rest, with
  If-Range naming the ETag (or Last-Modified) the download started with, kept next to it in
  `dest/.<name>.part.json`: a remote file that changed since answers 200 and the download restarts from
  byte 0, as it does for a server that ignores Range; a 206 whose validator differs restarts too. A 416
  answer means the .part file is already complete. Dropped connections are resumed within one call, at
  most `MAX_REQUESTS` requests per call. The .part file is only ever a regular file in `dest`: a link or
  FIFO planted under its name is refused, and it is opened with O_NOFOLLOW.
- Verified: the size against Content-Length / `expected_size`, and the sha256 when given, before the
  file gets its final name, so `dest/<name>` only ever holds a complete (and, with a hash, verified)
  archive. A body sent without any length (closed by the server) is probed with one more Range request
  (a 416 names the remote size); when nothing tells the size, the bytes stay in `.part` and the error
  says so. A file that fails verification is renamed to `<name>.rejected` (kept for inspection, never
  resumed from), so the next run starts a clean download instead of resuming corrupt bytes.
- A full disk, while downloading or extracting, is reported as such in one line; the archive and .part
  file are kept (never "delete it and download again").
- Safe extraction: every tar member is checked before it is written (no absolute paths, no `..`, no
  links or paths resolving outside the destination, no device files) and extracted with tarfile's
  "data" filter as a second line of defence. Extraction happens in a staging folder inside `dest` and
  is moved into place only when the whole archive is clean, so a rejected archive leaves nothing behind.
  Before the move, every symbolic link in the staging folder is resolved as it now stands: a link that
  leads out of it (possible when a later member turns a file that an earlier link ran through into a
  link, which no per-member check can see) refuses the whole archive.
- Idempotent: a marker `dest/.<name>.extracted.json` records a finished extraction; later calls return
  the release root at once (the archive itself may then be deleted to free 8 GB).

The URL is the argument, else $THESIS_MMIMDB_URL, else DEFAULT_URL (the archive.org mirror; the
original university link is often dead).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from thesis_lib.errors import ThesisError
from thesis_lib.logs import format_duration
from thesis_lib.storage import file_kind, read_regular_file, write_text_atomic

log = logging.getLogger(__name__)

DEFAULT_URL = "https://archive.org/download/mmimdb/mmimdb.tar.gz"
URL_ENV = "THESIS_MMIMDB_URL"
MAX_REQUESTS = 8                 # per call: first request plus resumes after dropped connections
CHUNK_BYTES = 1 << 20            # read/write/hash granularity
_LOG_EVERY_S = 15.0              # without a terminal: one progress line every 15 s (and the first at once)
_USER_AGENT = "thesis-lib-downloader/1 (+urllib)"
# What a connection that breaks mid-transfer raises; these are resumed, within MAX_REQUESTS.
_BROKEN_CONNECTION = (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException)
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_MIRROR_HINT = (
    f"If this host is unreachable, use a mirror: pass --url URL (Python: url=...) or set {URL_ENV}."
)


class DownloadError(ThesisError, RuntimeError):
    """The release could not be downloaded, verified or extracted; the message says why and what to do."""


class DownloadArgumentError(DownloadError, ValueError):
    """A parameter of the download is unusable (a sha256 that is no hex digest, a URL naming no file)."""


class ChecksumError(DownloadError):
    """The downloaded file's size or sha256 differs from the expected one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the destination (or is a device file)."""


def resolve_url(url: str | None = None) -> str:
    """The download URL: the argument, else $THESIS_MMIMDB_URL, else DEFAULT_URL."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def download_release(
    dest: Path | str,
    url: str | None = None,
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    extract: bool = True,
    keep_archive: bool = False,
    progress: bool = True,
    timeout_s: float = 60.0,
) -> Path:
    """Download (resuming if possible), verify and extract the release into `dest`.

    Returns the release root: the archive's single top-level folder if it has one, else `dest`
    (with `extract=False`: the archive path). `timeout_s` bounds each socket wait, not the download.
    Once the release is extracted (and the extraction recorded, so a later call needs no archive) the
    archive is deleted unless `keep_archive`: 8.1 GB the full profile's 64 GB disk cannot spare.
    """
    url = resolve_url(url)
    expected_sha = _normalise_sha256(sha256)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, no permission: say which folder, not a traceback
        raise DownloadError(f"cannot use {dest} as the download folder: {error.strerror or error}") from None
    archive = dest / _archive_name(url)

    if extract and (root := _previous_extraction(archive, expected_sha, expected_size)) is not None:
        log.info("%s was already extracted to %s", archive.name, root)
        return root
    if archive.is_file():
        log.info("%s already downloaded; verifying", archive)
        _verify(archive, expected_size, expected_sha, source=url, rejected=None)
    else:
        part = archive.with_name(archive.name + ".part")
        _fetch(url, part, expected_size, expected_sha is not None, progress, timeout_s)
        try:
            _verify(part, expected_size, expected_sha, source=url,
                    rejected=archive.with_name(archive.name + ".rejected"))
        finally:
            if not part.exists():  # moved aside as .rejected: its validators belong to no download now
                _validators_path(part).unlink(missing_ok=True)
        os.replace(part, archive)  # atomic: the final name only ever holds a complete file
        _validators_path(part).unlink(missing_ok=True)
        log.info("downloaded %s (%d bytes)", archive, archive.stat().st_size)
    if not extract:
        return archive
    root = extract_release(archive, dest, verified_sha256=expected_sha)
    if not keep_archive:
        size = archive.stat().st_size
        archive.unlink()  # the extraction marker answers later calls: the archive is not needed again
        log.info("deleted %s (%.1f GB) after extracting it; --keep-archive keeps it", archive.name, size / 1e9)
    return root


# --- downloading ---------------------------------------------------------------------------------


def _archive_name(url: str) -> str:
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    if name in {"", ".", ".."}:
        raise DownloadArgumentError(f"cannot tell the archive's file name from the URL {url!r}")
    return name


def _fetch(url: str, part: Path, expected_size: int | None, hash_known: bool, progress: bool, timeout_s: float) -> None:
    """Fill `part` with the whole remote file, resuming from its current size; bounded requests.

    `hash_known`: a sha256 will check the result, so a body of unknown length may be taken as it is."""
    probing = False  # the last body came without a length: this request asks the server for the rest or the size
    for _ in range(MAX_REQUESTS):
        offset = _part_size(part)
        if expected_size is not None and offset >= expected_size:
            if offset == expected_size:
                return  # complete from an earlier run
            log.warning("%s is larger than expected (%d > %d bytes); restarting", part, offset, expected_size)
            _discard(part)
            continue
        known = _read_validators(part, url) if offset else {}
        headers = {"User-Agent": _USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator := known.get("etag") or known.get("last_modified"):
                headers["If-Range"] = validator  # a changed remote file answers 200 (all of it), not 206
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:
                remote_size = _parse_content_range(error.headers.get("Content-Range", ""))[1]
                if remote_size == offset:
                    return  # the .part file already holds the whole remote file
                if probing:
                    raise _unverifiable(url, part, offset) from None
                log.warning("%s does not match the remote file (%s bytes); restarting", part, remote_size)
                _discard(part)
                continue
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}. {_MIRROR_HINT}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(f"could not reach {url}: {reason}. {_MIRROR_HINT}") from error

        with response:
            remote = _validators(response.headers)
            if response.status == 206:
                probing = False  # the server answers ranges: Content-Range names the size
                start, total = _parse_content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    raise DownloadError(f"{url}: asked for bytes from {offset}, the server sent from {start}")
                changed = _changed(known, remote, total)
                if changed:  # a server that ignores If-Range still shows what it sends
                    log.warning("%s changed on the server since %s was started (%s); restarting", url, part.name,
                                changed)
                    _discard(part)
                    continue
                append = True
            elif response.status == 200:
                if probing:
                    raise _unverifiable(url, part, offset)
                if offset:
                    log.warning("%s sent the whole file (it ignored Range, or it changed since %s was started); "
                                "restarting from byte 0", url, part.name)
                offset, append = 0, False
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                _write_validators(part, url, remote | {"size": total})
            else:
                raise DownloadError(f"{url}: unexpected HTTP {response.status}. {_MIRROR_HINT}")
            if total is not None and expected_size is not None and total != expected_size:
                raise ChecksumError(
                    f"{url}: the server reports {total} bytes but {expected_size} were expected "
                    f"(a different file version?). {_MIRROR_HINT}"
                )
            framed = bool(getattr(response, "chunked", False))  # chunked encoding marks its own end
            try:
                _stream_to_file(response, part, append, offset, total, progress)
            except _BROKEN_CONNECTION as error:  # (a full disk is not retried: it raises DownloadError)
                log.warning("connection to %s broke after %d bytes (%s); resuming", url, _part_size(part), error)
                continue
        size = _part_size(part)
        probing = False
        if total is None and not framed:  # the server closed the stream: complete, or cut off?
            if expected_size is not None:
                total = expected_size
            elif hash_known:
                return  # the sha256 decides
            else:
                probing = True  # ask for the bytes after `size`: a 416 names the remote size
                continue
        if total is None or size == total:
            return
        if size > total:
            raise DownloadError(f"{url}: received {size} bytes, more than the announced {total}")
        log.warning("%s: got %d of %d bytes; resuming", url, size, total)
    got = _part_size(part)
    raise DownloadError(
        f"{url}: still incomplete after {MAX_REQUESTS} requests ({got} bytes in {part}); rerun to resume. "
        f"{_MIRROR_HINT}"
    )


def _unverifiable(url: str, part: Path, size: int) -> DownloadError:
    return DownloadError(
        f"{url} sent {size} bytes without saying how many it has, so the download cannot be known to be "
        f"complete; kept as {part} (not given the final name): pass --sha256 to check it, or use a mirror "
        f"that sends Content-Length"
    )


def _part_size(part: Path) -> int:
    """Size of the .part file, 0 if there is none; refuses anything but a regular file (a planted link
    would have the download write wherever it points)."""
    try:
        info = os.lstat(part)
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(info.st_mode):
        raise DownloadError(f"{part} is {file_kind(info.st_mode)}, not a regular file; refusing to write "
                            f"through it (remove it and rerun)")
    return info.st_size


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _validators_path(part).unlink(missing_ok=True)


# What identifies the remote file a .part holds the start of: kept next to it, so that a resume in a
# later process can send If-Range and notice a replaced file.


def _validators_path(part: Path) -> Path:
    return part.with_name(f".{part.name}.json")


def _validators(headers) -> dict[str, str]:
    """The strong ETag and the Last-Modified date of a response, where the server sent them (a weak ETag
    may not be used in If-Range)."""
    found = {}
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        found["etag"] = etag
    if modified := (headers.get("Last-Modified") or "").strip():
        found["last_modified"] = modified
    return found


def _changed(known: dict, remote: dict[str, str], total: int | None) -> str | None:
    """How a 206 answer shows that the remote file is not the one the .part file started from, or None."""
    for key in ("etag", "last_modified"):
        if known.get(key) and remote.get(key) and known[key] != remote[key]:
            return f"{key.replace('_', '-')} {known[key]} -> {remote[key]}"
    if isinstance(known.get("size"), int) and total is not None and known["size"] != total:
        return f"size {known['size']} -> {total} bytes"
    return None


def _read_validators(part: Path, url: str) -> dict:
    try:
        known = json.loads(read_regular_file(_validators_path(part), 1 << 16))
    except (OSError, ValueError):
        known = None
    if not isinstance(known, dict) or known.get("url") != url:
        log.warning("%s: no record of the remote file it was started from; resuming without checking that "
                    "it is unchanged (a sha256 would catch a change)", part.name)
        return {}
    return known


def _write_validators(part: Path, url: str, validators: dict) -> None:
    try:
        write_text_atomic(_validators_path(part), json.dumps({"url": url} | validators))
    except OSError as error:
        raise _write_error(error, f"recording what {part.name} is downloaded from") from None


def _write_error(error: OSError, doing: str, then: str = "free space and rerun") -> DownloadError:
    """A one-line error for a failed write; a full disk is called a full disk, and `then` says what to do."""
    if error.errno in _FULL_DISK:
        return DownloadError(f"no space left on the device (or quota reached) while {doing}; {then}")
    if error.errno == errno.ELOOP:
        return DownloadError(f"{error.filename} became a symbolic link while {doing}; refusing to follow it")
    return DownloadError(f"cannot write {error.filename or 'the file'} while {doing}: {error.strerror or error}")


def _parse_content_range(header: str) -> tuple[int | None, int | None]:
    """'bytes 100-999/1000' -> (100, 1000); 'bytes */1000' -> (None, 1000); unknown parts -> None."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _stream_to_file(response, part: Path, append: bool, offset: int, total: int | None, progress: bool) -> None:
    """Write the response's body to `part` (appended, or from byte 0); unbuffered, so that every failed
    write surfaces at once, as a full disk (DownloadError), never from a flush when the file closes."""
    doing, then = f"writing {part}", "free space and rerun to resume (the bytes so far are kept)"
    try:
        sink = open(part, "ab" if append else "wb", buffering=0, opener=_no_follow)
    except OSError as error:
        raise _write_error(error, doing, then) from None
    with sink, _ByteProgress(part.name.removesuffix(".part"), total, offset, progress) as bar:
        if not stat.S_ISREG(os.fstat(sink.fileno()).st_mode):
            raise DownloadError(f"{part} is not a regular file; refusing to write to it (remove it and rerun)")
        while chunk := response.read(CHUNK_BYTES):
            view = memoryview(chunk)
            try:
                while view:
                    view = view[sink.write(view):]
            except OSError as error:
                raise _write_error(error, doing, then) from None
            bar.update(len(chunk))


def _no_follow(path: str, flags: int) -> int:
    """open() opener: never through a symbolic link, never blocking on a FIFO."""
    extra = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags | extra, 0o644)


class _ByteProgress:
    """A tqdm bar in a terminal (redrawn at most once a second); without one (a log file, a notebook, nohup),
    plain lines: one after the first chunk, so the download is seen to start, then one every
    `_LOG_EVERY_S` seconds with the rate and, when the size is known, the share and the time left, and
    one at the end."""

    def __init__(self, label: str, total: int | None, initial: int, enabled: bool):
        interactive = enabled and sys.stderr.isatty()
        self.label, self.total, self.done, self.initial = label, total, initial, initial
        self.log_lines = enabled and not interactive
        self.start = time.monotonic()
        self.last_line: float | None = None
        self.bar = tqdm(
            total=total, initial=initial, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
            mininterval=1.0, disable=not interactive,
        )

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        now = time.monotonic()
        if self.log_lines and (self.last_line is None or now - self.last_line >= _LOG_EVERY_S):
            self._line(now)

    def _line(self, now: float, end: bool = False) -> None:
        self.last_line = now
        rate = (self.done - self.initial) / max(now - self.start, 1e-9)  # bytes/s of this session
        text = f"{self.label}: {self.done / 2**20:.1f} MiB"
        if self.total:
            text += f" of {self.total / 2**20:.1f} MiB ({100 * self.done / self.total:.0f}%)"
        text += f", {rate / 2**20:.1f} MiB/s"
        if end:
            text += f", done in {format_duration(now - self.start)}"
        elif self.total and rate > 0:
            text += f", eta {format_duration((self.total - self.done) / rate)}"
        log.info("%s", text)

    def __enter__(self) -> _ByteProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if self.log_lines and exc[0] is None and self.done > self.initial:
            self._line(time.monotonic(), end=True)


# --- verification --------------------------------------------------------------------------------


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise DownloadArgumentError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return value


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (an 8 GB archive never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected_size: int | None, expected_sha: str | None, *, source: str,
            rejected: Path | None) -> None:
    """Check size and sha256; on failure move a fresh download aside to `rejected` and raise."""
    size = path.stat().st_size
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"size mismatch: expected {expected_size} bytes, got {size}"
    elif expected_sha is not None and (actual := file_sha256(path)) != expected_sha:
        problem = f"sha256 mismatch: expected {expected_sha}, got {actual}"
    if problem is None:
        return
    if rejected is not None:
        os.replace(path, rejected)
        where = f"the bytes were kept as {rejected} for inspection (delete it to free space); a rerun downloads afresh"
    else:
        where = f"delete {path} to download it again"
    raise ChecksumError(f"{path.name} from {source}: {problem}; {where}. {_MIRROR_HINT}")


# --- extraction ----------------------------------------------------------------------------------


def extract_release(archive: Path, dest: Path, *, verified_sha256: str | None = None) -> Path:
    """Extract a (possibly compressed) tar archive into `dest` safely; return the release root.

    The root is the archive's single top-level folder if it has exactly one, else `dest`. Existing
    files are never overwritten: a top-level entry that already exists in `dest` is an error. The
    marker written at the end records the archive's sha256 (hashed here unless `verified_sha256` is
    given), so a later call with a hash can be answered without the archive.
    """
    archive, dest = Path(archive), Path(dest)
    prefix = f".extracting-{archive.name}-"
    for stale in dest.glob(f"{prefix}*"):  # left by an extraction that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=dest))
    try:
        try:
            # Stream mode ("r|*"): one pass over the compressed file, members checked as they come.
            with tarfile.open(archive, "r|*") as tar:
                tar.extractall(staging, members=_checked_members(tar, staging, archive), filter="data")
        except tarfile.FilterError as error:  # our check missed something the "data" filter caught
            raise UnsafeArchiveError(
                f"{archive}: refusing to extract member {error.tarinfo.name!r}: {error}; nothing was extracted"
            ) from error
        except OSError as error:
            if _written_under(error, staging) or error.errno in _FULL_DISK:  # the disk, not the archive
                raise _write_error(error, f"extracting {archive.name} into {dest}",
                                   f"nothing was moved there and {archive.name} is intact and kept: free space "
                                   f"(the release needs about as much again as the archive) and rerun") from None
            raise DownloadError(
                f"{archive} is not a readable tar archive ({error}); delete it and download again"
            ) from error
        except (tarfile.TarError, EOFError) as error:
            raise DownloadError(
                f"{archive} is not a readable tar archive ({error}); delete it and download again"
            ) from error
        if problem := _escaping_link(staging):
            raise UnsafeArchiveError(f"{archive}: refusing to extract it: {problem}; nothing was extracted")
        entries = sorted(staging.iterdir())
        for entry in entries:
            if (dest / entry.name).exists():
                raise DownloadError(
                    f"{dest / entry.name} already exists; refusing to overwrite it with {archive}'s copy "
                    f"(remove it, or extract to another folder)"
                )
        for entry in entries:
            os.replace(entry, dest / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    single_folder = len(entries) == 1 and (dest / entries[0].name).is_dir()
    root = dest / entries[0].name if single_folder else dest
    _write_marker(archive, dest, root, verified_sha256 or file_sha256(archive))
    log.info("extracted %s to %s", archive.name, root)
    return root


def _written_under(error: OSError, folder: Path) -> bool:
    """The error names a file inside `folder` (so writing it failed, not reading the archive)."""
    return bool(error.filename) and os.path.abspath(os.fsdecode(error.filename)).startswith(str(folder.absolute()))


def _escaping_link(staging: Path) -> str | None:
    """The first symbolic link under `staging` whose real path, now that every member is written, is
    `staging` itself or outside it (after the move `staging` itself is `dest`), or an absolute link."""
    root = os.path.realpath(staging)
    for folder, names, files in os.walk(staging):  # does not descend into linked folders
        for name in names + files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                continue
            shown = os.path.relpath(path, staging)
            target = os.readlink(path)
            if os.path.isabs(target):
                return f"{shown!r} is a symbolic link to the absolute path {target!r}"
            real = os.path.realpath(path)
            if real == root:
                return f"{shown!r} is a symbolic link to the folder the archive is extracted into"
            if os.path.commonpath([real, root]) != root:
                return f"{shown!r} is a symbolic link that leads out of the archive (to {real})"
    return None


def _checked_members(tar: tarfile.TarFile, staging: Path, archive: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        problem = _unsafe_member_problem(member, staging)
        if problem:
            raise UnsafeArchiveError(
                f"{archive}: refusing to extract member {member.name!r}: {problem}; nothing was extracted"
            )
        yield member


def _unsafe_member_problem(member: tarfile.TarInfo, staging: Path) -> str | None:
    """Why writing this member would be unsafe, or None. `staging` stands for the destination."""
    name = member.name
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts:
        return "'..' path component (would escape the destination)"
    root = staging.resolve()
    target = (staging / name).resolve()  # follows links that earlier members created
    if not target.is_relative_to(root):
        return "path resolves outside the destination"
    if member.issym():
        if PurePosixPath(member.linkname).is_absolute():
            return f"symbolic link to the absolute path {member.linkname!r}"
        if not (target.parent / member.linkname).resolve().is_relative_to(root):
            return f"symbolic link to {member.linkname!r} points outside the destination"
    if member.islnk() and not (staging / member.linkname).resolve().is_relative_to(root):
        return f"hard link to {member.linkname!r} points outside the destination"
    if member.isdev():
        return "device file or FIFO"
    return None


def _marker_path(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.extracted.json")


def _write_marker(archive: Path, dest: Path, root: Path, sha256: str) -> None:
    record = {"archive": archive.name, "size": archive.stat().st_size, "sha256": sha256,
              "root": os.path.relpath(root, dest)}
    try:
        write_text_atomic(_marker_path(archive), json.dumps(record, indent=2))
    except OSError as error:
        raise _write_error(error, f"recording that {archive.name} was extracted to {root}") from None


def _previous_extraction(archive: Path, expected_sha: str | None, expected_size: int | None) -> Path | None:
    """The root recorded by an earlier extraction of this archive, if it matches what is asked for."""
    marker = _marker_path(archive)
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text())
        root, size, sha = archive.parent / record["root"], record["size"], record["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    if not root.is_dir():
        return None
    if expected_sha is not None and sha != expected_sha:
        return None
    if expected_size is not None and size != expected_size:
        return None
    if archive.is_file() and archive.stat().st_size != size:
        return None  # the archive was replaced since
    return root
