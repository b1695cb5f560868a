"""Release download against a local HTTP server: full, resumed, verified, and safely extracted.

All traffic goes to a server on 127.0.0.1 started by the test. The archive is a small synthetic twin
(split.json + dataset/<id>.json + <id>.jpeg + twin_truth.json), packed in memory.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import socket
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from thesis_lib.cli import main
from thesis_lib.data import download as download_module
from thesis_lib.data.download import (
    URL_ENV,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_release,
    extract_release,
)
from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.twin import TwinConfig, generate_twin

ARCHIVE_NAME = "mmimdb.tar.gz"
TWIN_MOVIES = 12


def _release_files() -> dict[str, bytes]:
    """Relative path inside the archive -> content: a small synthetic twin under the tarball's `mmimdb/`."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "mmimdb"
        generate_twin(root, TwinConfig(n_movies=TWIN_MOVIES, seed=3), workers=1)
        return {f"mmimdb/{path.relative_to(root)}": path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _tar_gz(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, content = entry
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


RELEASE_FILES = _release_files()
RELEASE_ARCHIVE = _tar_gz(list(RELEASE_FILES.items()))
RELEASE_SHA256 = hashlib.sha256(RELEASE_ARCHIVE).hexdigest()


class _FileHandler(BaseHTTPRequestHandler):
    """Serves `server.payload` at /<ARCHIVE_NAME>, with Range (and If-Range against `server.etag`) support
    that tests can switch off, and Content-Length on 200 answers that they can leave out."""

    def do_GET(self):
        state = self.server
        if_range = self.headers.get("If-Range")
        state.requests.append({"path": self.path, "range": self.headers.get("Range"), "if_range": if_range})
        if self.path != f"/{ARCHIVE_NAME}":
            self.send_error(404)
            return
        payload, start = state.payload, 0
        range_header = self.headers.get("Range")
        changed = if_range is not None and state.honour_if_range and if_range != state.etag
        if range_header and state.honour_range and not changed:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        if state.etag:
            self.send_header("ETag", state.etag)
        if state.send_length or start:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drops_left > 0:  # announce the whole body, send part of it, hang up
            state.drops_left -= 1
            self.wfile.write(body[: state.drop_after])
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    """An HTTP/1.0 server on 127.0.0.1 (a free port) in a thread; tests adjust its attributes."""
    httpd = HTTPServer(("127.0.0.1", 0), _FileHandler)
    httpd.payload, httpd.honour_range, httpd.requests = RELEASE_ARCHIVE, True, []
    httpd.drops_left, httpd.drop_after = 0, 0
    httpd.etag, httpd.honour_if_range, httpd.send_length = None, True, True
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/{ARCHIVE_NAME}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    """urllib honours *_proxy variables; make sure requests go straight to 127.0.0.1."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(URL_ENV, raising=False)


def _files_under(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_full_download_extracts_the_release(server, tmp_path):
    dest = tmp_path / "data"
    root = download_release(dest, server.url, sha256=RELEASE_SHA256, expected_size=len(RELEASE_ARCHIVE), progress=False)
    assert root == dest / "mmimdb"
    assert _files_under(root) == {name.removeprefix("mmimdb/"): content for name, content in RELEASE_FILES.items()}
    assert not (dest / ARCHIVE_NAME).exists()  # extracted and recorded: the archive's space is freed
    assert not (dest / f"{ARCHIVE_NAME}.part").exists()
    assert [request["range"] for request in server.requests] == [None]
    assert sorted(p.name for p in dest.iterdir() if p.name.startswith(".extracting")) == []  # staging cleaned
    release = load_release(root)  # the downloaded release is usable as it is
    assert len(release.movies) == TWIN_MOVIES and release.skipped == []


def test_a_second_call_reuses_the_extraction_even_without_the_archive(server, tmp_path):
    root = download_release(tmp_path, server.url, progress=False)
    assert not (tmp_path / ARCHIVE_NAME).exists()  # deleted after extraction
    assert download_release(tmp_path, server.url, sha256=RELEASE_SHA256, progress=False) == root
    assert len(server.requests) == 1


def test_without_a_terminal_the_download_says_it_started_and_when_it_ended(server, tmp_path, caplog):
    """stderr not a terminal (pytest captures it, as nohup or a log file would): plain lines, the first as
    soon as bytes arrive, the last with the time it took."""
    with caplog.at_level("INFO", logger="thesis_lib.data.download"):
        download_release(tmp_path, server.url, extract=False, progress=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ARCHIVE_NAME + ": ")]
    size = f"of {len(RELEASE_ARCHIVE) / 2**20:.1f} MiB"
    assert len(lines) >= 2 and size in lines[0] and "MiB/s" in lines[0], lines
    assert "(100%)" in lines[-1] and ", done in " in lines[-1]


def test_keep_archive_keeps_the_verified_archive(server, tmp_path):
    download_release(tmp_path, server.url, sha256=RELEASE_SHA256, keep_archive=True, progress=False)
    assert (tmp_path / ARCHIVE_NAME).read_bytes() == RELEASE_ARCHIVE


def test_a_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    already = len(RELEASE_ARCHIVE) // 3
    (tmp_path / f"{ARCHIVE_NAME}.part").write_bytes(RELEASE_ARCHIVE[:already])
    archive = download_release(tmp_path, server.url, sha256=RELEASE_SHA256, extract=False, progress=False)
    assert [request["range"] for request in server.requests] == [f"bytes={already}-"]
    assert archive == tmp_path / ARCHIVE_NAME
    assert archive.read_bytes() == RELEASE_ARCHIVE


def test_a_complete_part_file_is_finished_by_a_416_answer(server, tmp_path):
    (tmp_path / f"{ARCHIVE_NAME}.part").write_bytes(RELEASE_ARCHIVE)
    archive = download_release(tmp_path, server.url, extract=False, progress=False)
    assert [request["range"] for request in server.requests] == [f"bytes={len(RELEASE_ARCHIVE)}-"]
    assert archive.read_bytes() == RELEASE_ARCHIVE


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    (tmp_path / f"{ARCHIVE_NAME}.part").write_bytes(b"stale bytes from some other file")
    archive = download_release(tmp_path, server.url, extract=False, progress=False)
    assert [request["range"] for request in server.requests] == ["bytes=32-"]  # asked, got a 200
    assert archive.read_bytes() == RELEASE_ARCHIVE  # not the stale prefix plus the whole file


def test_a_dropped_connection_is_resumed_within_the_call(server, tmp_path):
    server.drops_left, server.drop_after = 2, 1000
    archive = download_release(tmp_path, server.url, sha256=RELEASE_SHA256, extract=False, progress=False)
    assert [request["range"] for request in server.requests] == [None, "bytes=1000-", "bytes=2000-"]
    assert archive.read_bytes() == RELEASE_ARCHIVE


def test_a_connection_that_keeps_dropping_gives_up_after_a_bounded_number_of_requests(server, tmp_path):
    server.drops_left, server.drop_after = 1000, 10
    with pytest.raises(DownloadError, match="still incomplete.*rerun to resume"):
        download_release(tmp_path, server.url, extract=False, progress=False)
    assert len(server.requests) == download_module.MAX_REQUESTS
    assert (tmp_path / f"{ARCHIVE_NAME}.part").stat().st_size == 10 * download_module.MAX_REQUESTS  # kept


def test_a_sha256_mismatch_names_the_file_and_both_hashes(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as caught:
        download_release(tmp_path, server.url, sha256=wrong, progress=False)
    message = str(caught.value)
    assert ARCHIVE_NAME in message and wrong in message and RELEASE_SHA256 in message
    assert not (tmp_path / ARCHIVE_NAME).exists()  # never under the final name
    assert not (tmp_path / f"{ARCHIVE_NAME}.part").exists()  # so a rerun does not resume bad bytes
    assert (tmp_path / f"{ARCHIVE_NAME}.rejected").read_bytes() == RELEASE_ARCHIVE  # kept for inspection
    assert not (tmp_path / "mmimdb").exists()


def test_a_size_other_than_expected_is_refused_before_downloading(server, tmp_path):
    with pytest.raises(ChecksumError, match=f"{len(RELEASE_ARCHIVE)} bytes but 123 were expected"):
        download_release(tmp_path, server.url, expected_size=123, progress=False)


@pytest.mark.parametrize(
    ("make_member", "problem"),
    [
        (lambda outside: ("../evil", b"owned"), "'..' path component"),
        (lambda outside: (str(outside / "absolute_evil"), b"owned"), "absolute path"),
        (lambda outside: _symlink("mmimdb/link", "../../outside"), "points outside"),
        (lambda outside: _symlink("mmimdb/abs_link", str(outside)), "absolute path"),
    ],
    ids=["dotdot", "absolute", "symlink-escape", "symlink-absolute"],
)
def test_malicious_archives_are_rejected_and_nothing_is_written(tmp_path, make_member, problem):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    member = make_member(outside)
    benign = list(RELEASE_FILES.items())[:2]
    archive = dest / ARCHIVE_NAME
    archive.write_bytes(_tar_gz([*benign, member, ("mmimdb/link/escaped", b"owned")]))
    member_name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(member_name)) + ".*" + problem):
        extract_release(archive, dest)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "outside"]
    assert [p.name for p in dest.iterdir()] == [ARCHIVE_NAME]  # not even the benign members stay


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_a_malicious_archive_from_the_server_is_rejected(server, tmp_path):
    server.payload = _tar_gz([("mmimdb/split.json", b"{}"), ("../evil", b"owned")])
    with pytest.raises(UnsafeArchiveError, match="'../evil'"):
        download_release(tmp_path / "dest", server.url, progress=False)
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "dest" / "mmimdb").exists()


def test_links_inside_the_release_are_allowed(tmp_path):
    archive = tmp_path / "release.tar.gz"
    archive.write_bytes(_tar_gz([("mmimdb/dataset/a.json", b"{}"), _symlink("mmimdb/latest.json", "dataset/a.json")]))
    root = extract_release(archive, tmp_path)
    assert (root / "latest.json").read_bytes() == b"{}"


def test_existing_files_are_never_overwritten(tmp_path):
    archive = tmp_path / "release.tar.gz"
    archive.write_bytes(RELEASE_ARCHIVE)
    (tmp_path / "mmimdb").mkdir()
    (tmp_path / "mmimdb" / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="already exists"):
        extract_release(archive, tmp_path)
    assert _files_under(tmp_path / "mmimdb") == {"notes.txt": b"mine"}


def test_network_errors_name_the_url_and_the_mirror_option(server, tmp_path):
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/{ARCHIVE_NAME}"
    with pytest.raises(DownloadError, match=f"could not reach {re.escape(dead_url)}.*{URL_ENV}"):
        download_release(tmp_path, dead_url, progress=False, timeout_s=5)
    missing_url = server.url.replace(ARCHIVE_NAME, "missing.tar.gz")
    with pytest.raises(DownloadError, match=f"{re.escape(missing_url)}: HTTP 404.*--url"):
        download_release(tmp_path, missing_url, progress=False)


def test_the_cli_entry_point_uses_the_mirror_variable(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(URL_ENV, server.url)
    assert main(["data", "download", str(tmp_path), "--sha256", RELEASE_SHA256]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mmimdb")
    # A bad download is the user's input (a wrong hash, a mirror serving other bytes): the CLI's one-line
    # error convention, exit status 2.
    assert main(["data", "download", str(tmp_path / "other"), "--sha256", "f" * 64, "--no-extract"]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert main(["data", "download", str(tmp_path / "other"), "--sha256", "not-hex", "--no-extract"]) == 2


# --- faults: planted links, a remote file that changed, a body without a length, a full disk --------------


def _crafted_escape(dest: Path, target: Path) -> bytes:
    """An archive whose every member passes the member check and tarfile's "data" filter, yet whose
    dataset/0000001.json ends up a link to `target`: a plain file x deep in the tree; a link through
    "x/.." (where ".." undoes x, as long as x is a file); then x replaced by a link to the staging root,
    after which "x/.." is the staging folder's parent and the link climbs out."""
    depth = len(dest.resolve().parts) + 2  # more levels than dest has above it: climbing from dest reaches /
    folders = "/".join(f"d{i}" for i in range(depth))
    up = "../" * (depth + 1)  # from mmimdb/<folders>/ to the staging root
    return _tar_gz([
        *list(RELEASE_FILES.items())[:2],
        (f"mmimdb/{folders}/x", b"a plain file, for now"),
        _symlink("mmimdb/dataset/0000001.json", f"../{folders}/x/../{up}{str(target.resolve()).lstrip('/')}"),
        _symlink(f"mmimdb/{folders}/x", up.rstrip("/")),
    ])


def test_a_link_that_a_later_member_turns_outward_is_refused_before_anything_moves(tmp_path):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    secret = outside / "passwd"
    secret.write_text("root:x:0:0")
    archive = dest / ARCHIVE_NAME
    archive.write_bytes(_crafted_escape(dest, secret))
    with pytest.raises(UnsafeArchiveError, match="refusing to extract it: 'mmimdb/.*' is a symbolic link") as caught:
        extract_release(archive, dest)
    assert "\n" not in str(caught.value) and "nothing was extracted" in str(caught.value)
    assert [p.name for p in dest.iterdir()] == [ARCHIVE_NAME]  # nothing moved, staging removed, no marker
    assert secret.read_text() == "root:x:0:0"


@pytest.mark.parametrize("target", ["existing", "dangling"])
def test_a_planted_part_link_is_refused_and_what_it_points_to_is_untouched(server, tmp_path, target):
    victim, dest = tmp_path / "victim", tmp_path / "dest"
    dest.mkdir()
    if target == "existing":
        victim.write_bytes(b"precious")
    (dest / f"{ARCHIVE_NAME}.part").symlink_to(victim)
    with pytest.raises(DownloadError, match=r"\.part is a symbolic link, not a regular file; refusing"):
        download_release(dest, server.url, progress=False)
    assert (victim.read_bytes() == b"precious") if target == "existing" else not victim.exists()
    assert server.requests == []


@pytest.mark.parametrize("server_checks_if_range", [True, False], ids=["server-checks", "client-checks"])
def test_a_resume_restarts_when_the_remote_file_changed(server, tmp_path, server_checks_if_range):
    server.etag, server.drops_left, server.drop_after = '"v1"', 1000, 10
    with pytest.raises(DownloadError, match="still incomplete"):  # leaves 80 bytes of version 1 in .part
        download_release(tmp_path, server.url, extract=False, progress=False)
    changed = bytes(reversed(RELEASE_ARCHIVE))  # same size: only the ETag tells them apart
    server.payload, server.etag, server.drops_left, server.requests = changed, '"v2"', 0, []
    server.honour_if_range = server_checks_if_range  # else the client sees the new ETag on the 206 answer
    archive = download_release(tmp_path, server.url, extract=False, progress=False)
    assert archive.read_bytes() == changed
    assert server.requests[0]["range"] == "bytes=80-" and server.requests[0]["if_range"] == '"v1"'
    assert not (tmp_path / f".{ARCHIVE_NAME}.part.json").exists()


def test_a_body_without_a_length_gets_the_final_name_only_once_its_size_is_known(server, tmp_path):
    server.send_length, server.drops_left, server.drop_after = False, 1, 1000  # cut off: looks like the end
    archive = download_release(tmp_path / "a", server.url, extract=False, progress=False)
    assert archive.read_bytes() == RELEASE_ARCHIVE  # one more Range request found the missing bytes
    assert [request["range"] for request in server.requests] == [None, "bytes=1000-"]

    server.honour_range, server.drops_left = False, 1  # and now nothing can tell the size
    with pytest.raises(DownloadError, match=r"cannot be known to be complete; kept as .*\.part \(not given"):
        download_release(tmp_path / "b", server.url, extract=False, progress=False)
    assert not (tmp_path / "b" / ARCHIVE_NAME).exists()
    assert (tmp_path / "b" / f"{ARCHIVE_NAME}.part").read_bytes() == RELEASE_ARCHIVE[:1000]


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written (as on a full disk)."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_full_disk_while_downloading_is_one_line_and_keeps_the_part_file(server, tmp_path, monkeypatch):
    def full_disk_open(file, mode="r", *args, **kwargs):
        handle = open(file, mode, *args, **kwargs)
        return _FullDisk(handle, room=0) if str(file).endswith(".part") else handle

    monkeypatch.setattr(download_module, "open", full_disk_open, raising=False)  # the module's writes only
    with pytest.raises(DownloadError) as caught:
        download_release(tmp_path, server.url, progress=False)
    message = str(caught.value)
    assert message.startswith("no space left on the device") and "rerun to resume" in message
    assert "\n" not in message and ARCHIVE_NAME in message
    assert (tmp_path / f"{ARCHIVE_NAME}.part").exists() and not (tmp_path / ARCHIVE_NAME).exists()


def test_a_full_disk_while_extracting_is_not_called_a_bad_archive(tmp_path, monkeypatch):
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(RELEASE_ARCHIVE)

    def full_disk(self, tarinfo, targetpath):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "makefile", full_disk)
    with pytest.raises(DownloadError) as caught:
        extract_release(archive, tmp_path)
    message = str(caught.value)
    assert message.startswith("no space left on the device") and "intact and kept" in message
    assert "delete" not in message and "not a readable tar archive" not in message and "\n" not in message
    assert [p.name for p in tmp_path.iterdir()] == [ARCHIVE_NAME]
    assert archive.read_bytes() == RELEASE_ARCHIVE
