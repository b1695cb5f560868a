"""`thesis data check`: the report's JSON schema, its text summary, and the command's exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from thesis_lib.cli import main
from thesis_lib.cli.data import EXIT_NOT_A_RELEASE, EXIT_UNUSABLE, EXIT_USABLE
from thesis_lib.data.check import CheckReport, check_release
from thesis_lib.data.mmimdb import SkipReason, load_release
from thesis_lib.genres import GENRES


def tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 24), (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_release(root: Path, movies: dict[str, tuple[str, list[str]]], poster: dict[str, bytes] | None = None) -> Path:
    """movies: id -> (split name, genres). Every movie gets a one-line plot and a tiny poster."""
    dataset = root / "dataset"
    dataset.mkdir(parents=True)
    split: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for movie_id, (part, genres) in movies.items():
        split[part].append(movie_id)
        (dataset / f"{movie_id}.json").write_text(json.dumps({"plot": [f"Plot of {movie_id}."], "genres": genres}))
        (dataset / f"{movie_id}.jpeg").write_bytes((poster or {}).get(movie_id, tiny_jpeg()))
    (root / "split.json").write_text(json.dumps(split))
    return root


MOVIES = {
    "0000001": ("train", ["Drama", "Romance"]),
    "0000002": ("train", ["Comedy", "Drama"]),
    "0000003": ("dev", ["Horror", "News"]),
    "0000004": ("test", ["Drama"]),
    "0000005": ("test", ["Western"]),
}


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    return write_release(tmp_path / "release", MOVIES, poster={"0000005": b"not a jpeg"})


def test_report_json_has_exactly_the_documented_keys_and_counts(release_dir):
    report = check_release(release_dir).to_dict()
    assert set(report) == {"movies", "splits", "genres", "skipped", "root", "fingerprint", "warnings"}
    assert json.loads(json.dumps(report)) == report  # JSON-able as it stands
    assert report["movies"] == 4
    assert report["splits"] == {"train": 2, "dev": 1, "test": 1}
    assert list(report["genres"]) == list(GENRES)  # all 23, canonical order, zeros included
    assert report["genres"]["Drama"] == 3 and report["genres"]["Horror"] == 1 and report["genres"]["Western"] == 0
    assert sum(report["genres"].values()) == 6  # News is not one of the 23
    assert [(s["id"], s["reason"]) for s in report["skipped"]] == [("0000005", SkipReason.BAD_POSTER)]
    assert "0000005.jpeg" in report["skipped"][0]["detail"]
    assert report["root"] == str(release_dir) and len(report["fingerprint"]) == 64


def test_text_summary_shows_counts_genres_and_skipped_grouped_by_reason(tmp_path):
    movies = MOVIES | {"0000006": ("train", ["Talk-Show"]), "0000007": ("dev", ["News"])}
    text = check_release(write_release(tmp_path, movies)).format_text()
    assert "usable movies: 5" in text and "train 2" in text and "dev 1" in text and "test 2" in text
    for genre in GENRES:
        assert genre in text
    group = text.split(f"{SkipReason.NO_KNOWN_GENRE} (2):")[1]
    assert "0000006" in group and "0000007" in group
    assert "Verdict: usable" in text


def check_command(root, as_json: bool = False, plot_choice: str = "longest") -> int:
    """`thesis data check ROOT [--json] [--plot CHOICE]`, run in-process."""
    return main(["data", "check", str(root), *(["--json"] if as_json else []), "--plot", plot_choice])


def test_check_command_prints_text_or_one_json_object(release_dir, capsys):
    assert check_command(release_dir, as_json=False) == EXIT_USABLE
    out = capsys.readouterr().out
    assert "usable movies: 4" in out and SkipReason.BAD_POSTER in out

    assert check_command(release_dir, as_json=True) == EXIT_USABLE
    captured = capsys.readouterr()
    assert json.loads(captured.out) == check_release(release_dir).to_dict()
    assert captured.err == ""


def test_check_command_passes_the_plot_choice_on(release_dir, capsys, monkeypatch):
    from thesis_lib.data import check

    seen = []

    def recording_load_release(root, **options):
        seen.append(options["plot_choice"])
        return load_release(root, **options)

    monkeypatch.setattr(check, "load_release", recording_load_release)
    for plot_choice in ("longest", "first", "concat"):
        assert check_command(release_dir, as_json=True, plot_choice=plot_choice) == EXIT_USABLE
    assert seen == ["longest", "first", "concat"]
    with pytest.raises(ValueError, match="plot_choice"):
        check_release(release_dir, plot_choice="shortest")  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as usage_error:  # the command's --plot has fixed choices
        check_command(release_dir, plot_choice="shortest")
    assert usage_error.value.code == 2


def test_check_command_accepts_the_tarball_layout(tmp_path, capsys):
    write_release(tmp_path / "mmimdb", MOVIES)
    assert check_command(tmp_path, as_json=True) == EXIT_USABLE
    assert json.loads(capsys.readouterr().out)["root"] == str(tmp_path / "mmimdb")


def test_check_command_on_a_folder_that_is_no_release_prints_one_line_and_fails(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code = check_command(tmp_path / "photos", as_json=True)
    captured = capsys.readouterr()
    assert code == EXIT_NOT_A_RELEASE != EXIT_USABLE
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "no split.json" in captured.err and str(tmp_path / "photos") in captured.err


def test_check_command_fails_when_a_split_has_no_usable_movie(tmp_path, capsys):
    movies = {movie_id: entry for movie_id, entry in MOVIES.items() if entry[0] != "dev"}
    movies["0000009"] = ("dev", ["News"])  # its only genre is dropped: dev ends up empty
    assert check_command(write_release(tmp_path, movies), as_json=False) == EXIT_UNUSABLE
    assert "no usable movie in dev" in capsys.readouterr().out


def test_report_from_release_matches_check_release(release_dir):
    assert CheckReport.from_release(load_release(release_dir)) == check_release(release_dir)
