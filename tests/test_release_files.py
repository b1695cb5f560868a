"""Files a release hands the shared loader that are not what their names promise: FIFOs, devices, plot
files of tens of megabytes, posters of too many pixels, and links to files on scratch storage.

The loader (thesis_lib.data.mmimdb.load_release) serves `data check`, `data split`, `run`, `xai check`
and the book, so each case is tested there once. The cases that used to hang or eat memory run in a
child process with a time and memory limit, so that a regression fails the test instead of the suite.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from thesis_lib.cli import main
from thesis_lib.data.mmimdb import (
    MAX_PLOT_FILE_BYTES,
    POSTER_PIXELS_ENV,
    SkipReason,
    load_release,
    poster_pixel_cap,
)
from thesis_lib.errors import ThesisError
from thesis_lib.storage import NotRegularFileError, read_regular_file

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")

_CHILD = textwrap.dedent("""
    import json, sys
    from thesis_lib.data.mmimdb import load_release
    release = load_release(sys.argv[1], workers=1)
    print(json.dumps({"movies": sorted(release.movies),
                      "skipped": [[s.id, s.reason, s.detail] for s in release.skipped]}))
""")
_CHILD_MEMORY = 3 << 30  # address space of the child: imports need ~1 GB; reading /dev/zero would need all


def _release(root: Path, split: dict[str, list[str]]) -> Path:
    (root / "dataset").mkdir(parents=True)
    (root / "split.json").write_text(json.dumps(split))
    return root


def _image(size: tuple[int, int], image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, image_format)  # one colour: compresses like a bomb
    return buffer.getvalue()


def _movie(dataset: Path, movie_id: str, plot_file: bool = True, poster: bytes | None = None) -> None:
    """dataset/<id>.json with a usable plot (unless `plot_file` is False) and <id>.jpeg (a small JPEG by
    default; None: no poster file)."""
    if plot_file:
        (dataset / f"{movie_id}.json").write_text(json.dumps({"plot": ["A plot."], "genres": ["Drama"]}))
    if poster is None:
        poster = _image((24, 36))
    if poster:
        (dataset / f"{movie_id}.jpeg").write_bytes(poster)


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY, _CHILD_MEMORY))


def test_plot_files_that_are_fifos_or_devices_are_named_skips_and_nothing_hangs(tmp_path):
    root = _release(tmp_path / "release", {"train": ["0000001", "0000002", "0000004"], "dev": ["0000003"],
                                           "test": ["0000004", "0000005"]})
    dataset = root / "dataset"
    _movie(dataset, "0000001")
    _movie(dataset, "0000002", plot_file=False)
    os.mkfifo(dataset / "0000002.json")  # no writer: a plain open() blocks for good
    _movie(dataset, "0000003", plot_file=False)
    (dataset / "0000003.json").symlink_to("/dev/zero")  # never ends
    _movie(dataset, "0000004", plot_file=False)
    os.mkfifo(dataset / "0000004.json")  # in two splits: only the fingerprint reads it
    _movie(dataset, "0000005", poster=b"")
    (dataset / "0000005.jpeg").symlink_to("/dev/zero")

    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(root)], capture_output=True, text=True,
                               timeout=30, preexec_fn=_limit_child)
    except subprocess.TimeoutExpired:
        pytest.fail("load_release hung on a FIFO")
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["movies"] == ["0000001"]
    reasons = {movie_id: (reason, detail) for movie_id, reason, detail in found["skipped"]}
    assert reasons["0000002"] == (SkipReason.JSON_NOT_A_FILE, "dataset/0000002.json: a FIFO")
    assert reasons["0000003"] == (SkipReason.JSON_NOT_A_FILE, "dataset/0000003.json: a character device")
    assert reasons["0000004"][0] == SkipReason.IN_SEVERAL_SPLITS
    assert reasons["0000005"][0] == SkipReason.BAD_POSTER


def test_a_plot_file_of_tens_of_megabytes_is_skipped_unread(tmp_path):
    root = _release(tmp_path, {"train": ["0000001", "0000002"], "dev": [], "test": []})
    _movie(root / "dataset", "0000001")
    _movie(root / "dataset", "0000002", plot_file=False)
    with open(root / "dataset" / "0000002.json", "wb") as huge:
        huge.truncate(32 << 20)  # sparse: costs no disk
    release = load_release(root, workers=1)
    assert set(release.movies) == {"0000001"}
    [skip] = release.skipped
    assert (skip.id, skip.reason) == ("0000002", SkipReason.JSON_TOO_LARGE)
    assert "32.0 MiB" in skip.detail and f"{MAX_PLOT_FILE_BYTES / 2**20:.1f} MiB" in skip.detail


def test_read_regular_file_reads_at_most_the_cap_plus_one_byte(tmp_path):
    path = tmp_path / "plot.json"
    path.write_bytes(b"x" * 10)
    assert read_regular_file(path, 10) == b"x" * 10
    with pytest.raises(OSError, match="over the 9 bytes limit"):
        read_regular_file(path, 9)
    with pytest.raises(NotRegularFileError, match="a folder"):
        read_regular_file(tmp_path, 10)


def test_a_release_whose_files_link_to_scratch_storage_loads_with_one_warning(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _movie(scratch, "0000001")
    _movie(scratch, "0000002")
    root = _release(tmp_path / "release", {"train": ["0000001"], "dev": ["0000002"], "test": []})
    for path in sorted(scratch.iterdir()):
        (root / "dataset" / path.name).symlink_to(path)
    release = load_release(root, workers=1)
    assert set(release.movies) == {"0000001", "0000002"} and release.skipped == []
    [warning] = release.warnings
    assert "4 movie files in dataset/ are symbolic links" in warning and str(scratch) in warning

    linked_folder = _release(tmp_path / "linked_folder", {"train": ["0000001"], "dev": ["0000002"], "test": []})
    (linked_folder / "dataset").rmdir()
    (linked_folder / "dataset").symlink_to(scratch)
    release = load_release(linked_folder, workers=1)
    assert set(release.movies) == {"0000001", "0000002"}
    assert release.warnings == [f"dataset/ is a symbolic link to {scratch.resolve()}; its files are read there"]


# --------------------------------------------------------------------------------------------------------
# The poster pixel cap


def test_posters_over_the_pixel_cap_are_a_named_skip_read_from_the_header(tmp_path, monkeypatch, capsys):
    root = _release(tmp_path, {"train": ["0000001", "0000002", "0000003"], "dev": [], "test": []})
    _movie(root / "dataset", "0000001", poster=_image((40, 60)))  # 2,400 pixels
    _movie(root / "dataset", "0000002", poster=_image((100, 100), "PNG"))  # 10,000
    _movie(root / "dataset", "0000003", poster=_image((120, 90)))  # 10,800
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # Pillow warns above this (and refuses above twice it)
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or load(image))

    for mode in ("full", "header"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # it must not reach stderr
            release = load_release(root, verify_posters=mode, workers=1, max_poster_pixels=5_000)
        assert set(release.movies) == {"0000001"}
        assert [(skip.id, skip.reason) for skip in release.skipped] == [
            ("0000002", SkipReason.POSTER_TOO_LARGE), ("0000003", SkipReason.POSTER_TOO_LARGE)]
        assert "100x100 = 10,000 pixels, over the cap of 5,000" in release.skipped[0].detail
    assert set(decoded) == {(40, 60)}  # only the poster under the cap was decoded: the others' size is the header's

    # Every consumer reads the cap from the environment: `thesis data check` names the skip.
    monkeypatch.setenv(POSTER_PIXELS_ENV, "5_000")
    assert set(load_release(root, workers=1).movies) == {"0000001"}
    main(["data", "check", str(root)])
    assert f"{SkipReason.POSTER_TOO_LARGE} (2):" in capsys.readouterr().out


def test_the_default_cap_keeps_real_posters_and_bad_values_are_one_line(monkeypatch):
    monkeypatch.delenv(POSTER_PIXELS_ENV, raising=False)
    assert poster_pixel_cap() == 4_000_000 > 500 * 750  # IMDb posters are a few hundred pixels wide
    monkeypatch.setenv(POSTER_PIXELS_ENV, "lots")
    with pytest.raises(ThesisError, match=f"\\${POSTER_PIXELS_ENV} must be a positive whole number.*'lots'"):
        poster_pixel_cap()
    with pytest.raises(ThesisError, match="max_poster_pixels must be a positive whole number"):
        poster_pixel_cap(0)
