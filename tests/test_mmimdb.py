"""The MM-IMDb release reader: every bad case is reported with its id and reason, the rest still loads."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from thesis_lib.data import mmimdb
from thesis_lib.data.mmimdb import (
    Movie,
    NotAReleaseError,
    SkipReason,
    choose_plot,
    load_release,
    parse_year,
    resolve_release_root,
)
from thesis_lib.genres import GENRES, NUM_GENRES

# --------------------------------------------------------------------------------------------------------
# A hand-made release holding every bad case


def jpeg_bytes(mode: str = "RGB", size: tuple[int, int] = (24, 36), image_format: str = "JPEG") -> bytes:
    """A small poster; noise so that truncating the file really cuts into the scan data."""
    pixels = np.random.default_rng(len(mode)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def write_movie(dataset: Path, movie_id: str, document: object = None, poster: bytes | None = b"rgb") -> None:
    """Write <id>.json (a dict/list as JSON, bytes as they are, None: no file) and <id>.jpeg."""
    if isinstance(document, bytes):
        (dataset / f"{movie_id}.json").write_bytes(document)
    elif document is not None:
        (dataset / f"{movie_id}.json").write_text(json.dumps(document))
    if poster == b"rgb":
        poster = jpeg_bytes()
    if poster is not None:
        (dataset / f"{movie_id}.jpeg").write_bytes(poster)


def movie_doc(genres: list[str], plot: list[str] | None = None, **extra: object) -> dict[str, object]:
    return {"genres": genres, "plot": plot if plot is not None else ["A plot."], **extra}


GOOD_PLOTS = ["A short plot.", "", "The longest plot of them all, by far.", "A middle plot here."]

# id -> the reason it must be skipped with
EXPECTED_SKIPS: dict[str, str] = {
    "0000010": SkipReason.MISSING_JSON,
    "0000011": SkipReason.JSON_NOT_A_FILE,  # a folder
    "0000012": SkipReason.INVALID_JSON,
    "0000013": SkipReason.NO_PLOT,
    "0000014": SkipReason.NO_GENRES,
    "0000015": SkipReason.EMPTY_PLOT,
    "0000016": SkipReason.EMPTY_PLOT,
    "0000017": SkipReason.NO_KNOWN_GENRE,
    "0000018": SkipReason.MISSING_POSTER,
    "0000019": SkipReason.BAD_POSTER,  # truncated
    "0000020": SkipReason.BAD_POSTER,  # not an image at all
    "0000021": SkipReason.NO_FILES,
    "0000022": SkipReason.NOT_IN_SPLIT,
    "0000023": SkipReason.IN_SEVERAL_SPLITS,
    "0000025": SkipReason.NOT_UTF8,
    "0000026": SkipReason.INVALID_JSON,  # valid JSON, but a list
    "0000027": SkipReason.BAD_POSTER,  # empty file
    "0000028": SkipReason.NOT_UTF8,  # lone surrogate escape
    "0000029": SkipReason.MISSING_POSTER,  # .jpg instead of .jpeg
    "0000030": SkipReason.NO_PLOT,  # plot is a string, not a list
    "123": SkipReason.BAD_ID,
    "4567890": SkipReason.BAD_ID,  # an int in split.json
    "tt0000024": SkipReason.BAD_ID,
    "abc": SkipReason.BAD_ID,  # dataset/abc.json
}
GOOD_IDS = {"0000001", "0000002", "0000003", "0000004", "0000005", "0000006"}


def build_release(root: Path) -> Path:
    """A release folder with six good movies (RGB, grayscale, CMYK and palette posters) and every bad case."""
    dataset = root / "dataset"
    dataset.mkdir(parents=True)
    write_movie(dataset, "0000001", movie_doc(["Comedy", "Drama", "News"], GOOD_PLOTS, title="Good One", year="1994"))
    write_movie(dataset, "0000002", movie_doc(["Horror"], ["", "   ", "Real plot."], year=2001), jpeg_bytes("L"))
    write_movie(dataset, "0000003", movie_doc(["Sci-Fi", "Adult"], year="unknown"), jpeg_bytes("CMYK"))
    write_movie(dataset, "0000004", movie_doc(["Film-Noir", "Crime"]), jpeg_bytes("P", image_format="PNG"))
    write_movie(dataset, "0000005", movie_doc(["Drama", "Sci Fi"]))  # an unknown genre name: warned about
    write_movie(dataset, "0000006", movie_doc(["War"], title=["not", "a", "string"]))

    write_movie(dataset, "0000010", None)
    (dataset / "0000011.json").mkdir()  # cannot be read as a file
    write_movie(dataset, "0000011", None)
    write_movie(dataset, "0000012", b'{"plot": ["x"], "genres": [')
    write_movie(dataset, "0000013", {"genres": ["Drama"]})
    write_movie(dataset, "0000014", {"plot": ["A plot."]})
    write_movie(dataset, "0000015", movie_doc(["Drama"], []))
    write_movie(dataset, "0000016", movie_doc(["Drama"], ["", "  "]))
    write_movie(dataset, "0000017", movie_doc(["News", "Talk-Show"]))
    write_movie(dataset, "0000018", movie_doc(["Drama"]), poster=None)
    full = jpeg_bytes(size=(64, 96))
    write_movie(dataset, "0000019", movie_doc(["Drama"]), poster=full[: len(full) // 2])
    write_movie(dataset, "0000020", movie_doc(["Drama"]), poster=b"this is not an image" * 10)
    write_movie(dataset, "0000022", movie_doc(["Drama"]))
    write_movie(dataset, "0000023", movie_doc(["Drama"]))
    write_movie(dataset, "0000025", '{"plot": ["Un café"], "genres": ["Drama"]}'.encode("latin-1"))
    write_movie(dataset, "0000026", [{"plot": ["A plot."], "genres": ["Drama"]}])
    write_movie(dataset, "0000027", movie_doc(["Drama"]), poster=b"")
    write_movie(dataset, "0000028", b'{"plot": ["bad \\ud800 text"], "genres": ["Drama"]}')
    write_movie(dataset, "0000029", movie_doc(["Drama"]), poster=None)
    (dataset / "0000029.jpg").write_bytes(jpeg_bytes())
    write_movie(dataset, "0000030", movie_doc(["Drama"], "A plot as one string."))  # type: ignore[arg-type]
    (dataset / "abc.json").write_text(json.dumps(movie_doc(["Drama"])))

    # Not movie files: ignored without a word.
    (dataset / ".DS_Store").write_bytes(b"\x00\x01")
    (dataset / "._0000001.jpeg").write_bytes(b"AppleDouble")
    (dataset / "notes.txt").write_text("hello")

    split = {
        "train": ["0000001", "0000002", "0000001", "0000010", "0000011", "0000012", "0000013", "0000014",
                  "0000023", "123"],
        "dev": ["0000003", "0000015", "0000016", "0000017", "0000018", 4567890, "0000025", "0000026"],
        "test": ["0000004", "0000005", "0000006", "0000019", "0000020", "0000021", "0000023", "tt0000024",
                 "0000027", "0000028", "0000029", "0000030"],
    }
    (root / "split.json").write_text(json.dumps(split))
    return root


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def release(release_dir: Path) -> mmimdb.Release:
    return load_release(release_dir)


# --------------------------------------------------------------------------------------------------------
# Bad cases


def test_every_bad_case_is_skipped_with_its_id_and_reason(release):
    found = {(entry.id, entry.reason) for entry in release.skipped}
    for movie_id, reason in EXPECTED_SKIPS.items():
        assert (movie_id, reason) in found, f"{movie_id} not skipped for {reason!r}: {release.skipped}"
    assert set(release.skipped_ids) == set(EXPECTED_SKIPS)  # and nothing else: good movies are not skipped


def test_the_good_movies_still_load(release):
    assert set(release.movies) == GOOD_IDS
    assert release.official_split == {
        "train": ("0000001", "0000002"),  # 0000001 listed twice: kept once, in split.json order
        "dev": ("0000003",),
        "test": ("0000004", "0000005", "0000006"),
    }


def test_skip_details_name_the_file_and_the_error(release):
    details = {entry.id: entry.detail for entry in release.skipped}
    assert "truncated" in details["0000019"] and "0000019.jpeg" in details["0000019"]
    assert "0000012.json" in details["0000012"] and "line 1" in details["0000012"]
    assert "byte" in details["0000025"]
    assert "0000029.jpg instead" in details["0000029"]
    assert "'News', 'Talk-Show'" in details["0000017"]
    assert "train and test" in details["0000023"]
    assert "4567890" in details["4567890"] and "'dev'" in details["4567890"]
    assert "dataset/abc.json" in details["abc"]


def test_ids_in_two_splits_and_outside_split_json_are_in_no_split(release):
    every_split_id = {i for ids in release.official_split.values() for i in ids}
    for movie_id in ("0000023", "0000022"):
        assert movie_id not in release.movies and movie_id not in every_split_id


def test_repeated_ids_and_unknown_genres_are_warnings_naming_the_id(release):
    assert any("0000001" in w and "more than once" in w and "'train'" in w for w in release.warnings)
    assert any("0000005" in w and "'Sci Fi'" in w for w in release.warnings)
    assert any("0000004" in w and "PNG" in w for w in release.warnings)


def test_non_movie_files_are_ignored(release):
    mentioned = " ".join(str(entry) for entry in release.skipped) + " ".join(release.warnings)
    for name in (".DS_Store", "._0000001", "notes"):
        assert name not in mentioned


def test_a_movie_with_two_problems_reports_both(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    write_movie(dataset, "0000001", b"{not json", poster=b"garbage")
    (tmp_path / "split.json").write_text(json.dumps({"train": ["0000001"], "dev": [], "test": []}))
    reasons = {entry.reason for entry in load_release(tmp_path).skipped if entry.id == "0000001"}
    assert reasons == {SkipReason.INVALID_JSON, SkipReason.BAD_POSTER}


# --------------------------------------------------------------------------------------------------------
# Good movies: genres, plot choice, title and year


def test_genres_are_filtered_to_the_23_in_canonical_order(release):
    assert release.movies["0000001"].genres == ("Drama", "Comedy")  # News dropped, order canonical
    assert release.movies["0000003"].genres == ("Sci-Fi",)  # Adult dropped
    assert release.movies["0000004"].genres == ("Crime", "Film-Noir")
    assert release.movies["0000005"].genres == ("Drama",)


@pytest.mark.parametrize(
    ("plot_choice", "expected"),
    [
        ("longest", "The longest plot of them all, by far."),
        ("first", "A short plot."),
        ("concat", "A short plot. The longest plot of them all, by far. A middle plot here."),
    ],
)
def test_plot_choice(release_dir, plot_choice, expected):
    loaded = load_release(release_dir, plot_choice=plot_choice)
    assert loaded.movies["0000001"].plot == expected
    assert loaded.movies["0000002"].plot == "Real plot."  # empty entries never win
    assert loaded.plot_choice == plot_choice


def test_choose_plot_rejects_lists_without_text_and_unknown_choices():
    with pytest.raises(ValueError, match="no non-empty"):
        choose_plot(["", " \n"])
    with pytest.raises(ValueError, match="plot_choice"):
        choose_plot(["x"], "shortest")  # type: ignore[arg-type]
    assert choose_plot(["same", "size"]) == "same"  # the first of equal lengths: deterministic


def test_title_year_and_poster_path(release, release_dir):
    movie = release.movies["0000001"]
    assert movie == Movie("0000001", movie.plot, ("Drama", "Comedy"), release_dir / "dataset" / "0000001.jpeg",
                          "Good One", 1994)
    assert release.movies["0000002"].year == 2001
    assert release.movies["0000003"].year is None
    assert release.movies["0000006"].title is None  # not a string: dropped, not mangled


@pytest.mark.parametrize(
    ("value", "year"),
    [(1994, 1994), ("1994", 1994), (" 1994-1996", 1994), ("1994/I", 1994), (1994.0, 1994),
     ("n/a", None), (None, None), (True, None), ([1994], None)],
)
def test_parse_year_is_lenient(value, year):
    assert parse_year(value) == year


def test_labels_and_movies_in_follow_the_requested_order(release):
    ids = ["0000004", "0000001"]
    labels = release.labels(ids)
    assert labels.shape == (2, NUM_GENRES) and labels.dtype == np.float32
    assert [GENRES[i] for i in np.flatnonzero(labels[0])] == ["Crime", "Film-Noir"]
    assert [GENRES[i] for i in np.flatnonzero(labels[1])] == ["Drama", "Comedy"]
    assert [movie.id for movie in release.movies_in(ids)] == ids
    with pytest.raises(KeyError, match="0000019"):
        release.labels(["0000019"])
    counts = release.genre_counts()
    assert list(counts) == list(GENRES) and counts["Drama"] == 2 and sum(counts.values()) == 8


# --------------------------------------------------------------------------------------------------------
# Posters


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_the_poster_check_accepts_every_colour_mode_and_catches_truncation(tmp_path, mode):
    data = jpeg_bytes(mode, size=(64, 96))
    loaded = load_release(one_poster_release(tmp_path, {"0000001": data, "0000002": data[: len(data) * 2 // 3]}))
    assert set(loaded.movies) == {"0000001"}
    [skip] = loaded.skipped
    assert skip.id == "0000002" and skip.reason == SkipReason.BAD_POSTER and "truncated" in skip.detail


def one_poster_release(root: Path, posters: dict[str, bytes]) -> Path:
    """A release of one good plot per movie and the given poster bytes, every movie in train."""
    dataset = root / "dataset"
    dataset.mkdir(parents=True)
    for movie_id, poster in posters.items():
        write_movie(dataset, movie_id, movie_doc(["Drama"]), poster)
    (root / "split.json").write_text(json.dumps({"train": sorted(posters), "dev": [], "test": []}))
    return root


def test_truncation_is_caught_even_when_another_module_allows_truncated_images(release_dir, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    loaded = load_release(release_dir)
    assert "0000019" not in loaded.movies
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


def test_cheaper_poster_checks_trade_detection_for_speed(release_dir, tmp_path):
    header = load_release(release_dir, verify_posters="header")
    assert {"0000019", "0000020", "0000027"}.isdisjoint(header.movies)  # a cut-off JPEG lacks its end marker
    assert set(header.movies) == GOOD_IDS
    unchecked = load_release(release_dir, verify_posters="none")
    assert {"0000019", "0000020"} <= set(unchecked.movies)  # files that exist are taken as they are
    assert "0000027" not in unchecked.movies  # but an empty file is caught by its size alone

    # A file that opens and ends properly, but whose Huffman table is bogus: only decoding sees it.
    data = bytearray(jpeg_bytes(size=(64, 96)))
    table = data.index(b"\xff\xc4")  # DHT marker, 2 length bytes, 1 class/id byte, then 16 code counts
    data[table + 5 : table + 21] = b"\xff" * 16  # far more codes than a table can hold
    bogus = one_poster_release(tmp_path / "bogus_huffman_table", {"0000001": bytes(data)})
    assert set(load_release(bogus, verify_posters="header").movies) == {"0000001"}
    assert set(load_release(bogus, verify_posters="full").movies) == set()


def test_the_thread_pool_gives_the_same_verdicts(release_dir, release, monkeypatch):
    monkeypatch.setattr(mmimdb, "_POOL_MIN_POSTERS", 1)
    monkeypatch.setattr(mmimdb, "_POSTER_CHUNK_MIN", 2)
    pooled = load_release(release_dir, workers=2)
    assert pooled.movies == release.movies and pooled.skipped == release.skipped


# --------------------------------------------------------------------------------------------------------
# Fingerprint


def test_fingerprint_depends_on_content_not_on_order(release_dir, release, tmp_path):
    copy = Path(shutil.copytree(release_dir, tmp_path / "copy", symlinks=True))
    split_path = copy / "split.json"
    split = json.loads(split_path.read_text())
    split_path.write_text(json.dumps({name: ids[::-1] for name, ids in reversed(split.items())}))
    assert load_release(copy, verify_posters="none").fingerprint == release.fingerprint

    fingerprints = {release.fingerprint}
    plot_file = copy / "dataset" / "0000002.json"
    plot_file.write_text(plot_file.read_text().replace("Real plot.", "Real plot!"))
    fingerprints.add(load_release(copy, verify_posters="none").fingerprint)
    with open(copy / "dataset" / "0000003.jpeg", "ab") as poster:
        poster.write(b"\x00")
    fingerprints.add(load_release(copy, verify_posters="none").fingerprint)
    split["dev"].append(split["train"].pop(0))
    split_path.write_text(json.dumps(split))
    fingerprints.add(load_release(copy, verify_posters="none").fingerprint)
    assert len(fingerprints) == 4  # a plot edit, a poster size change and a moved id each change it
    assert all(re.fullmatch(r"[0-9a-f]{64}", f) for f in fingerprints)


# --------------------------------------------------------------------------------------------------------
# Layouts and folders that are not releases


def test_the_tarball_layout_with_a_top_mmimdb_folder(tmp_path):
    build_release(tmp_path / "mmimdb")
    assert resolve_release_root(tmp_path) == tmp_path / "mmimdb"
    assert set(load_release(tmp_path).movies) == GOOD_IDS


def test_a_folder_without_split_json_is_not_a_release(tmp_path):
    (tmp_path / "dataset").mkdir()
    with pytest.raises(NotAReleaseError) as caught:
        load_release(tmp_path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in message
    assert message == (
        f"{tmp_path} is not an MM-IMDb release: no split.json (looked in {tmp_path} and {tmp_path / 'mmimdb'})"
    )


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda root: (root / "split.json").write_text("{}"), "no dataset/ folder"),
        (lambda root: ((root / "dataset").mkdir(), (root / "split.json").write_text("[1, 2")), "split.json"),
        (lambda root: ((root / "dataset").mkdir(), (root / "split.json").write_text('{"train": []}')), "dev/test"),
        (lambda root: root.rmdir(), "no such folder"),
    ],
)
def test_broken_release_skeletons_name_what_is_missing(tmp_path, setup, expected):
    root = tmp_path / "release"
    root.mkdir()
    setup(root)
    with pytest.raises(NotAReleaseError, match=expected):
        load_release(root)


# --------------------------------------------------------------------------------------------------------
# The synthetic twin (written in the same format) must load without a single skipped movie


def test_a_small_synthetic_twin_loads_without_skips(tmp_path):
    try:
        from thesis_lib.data.twin import TwinConfig, generate_twin
    except ImportError:
        pytest.skip("the twin generator (thesis_lib.data.twin.generate_twin) is not there yet")

    generate_twin(tmp_path / "twin", TwinConfig(n_movies=60, seed=0))
    loaded = load_release(tmp_path / "twin")
    assert loaded.skipped == [] and len(loaded.movies) == 60
    assert all(len(ids) > 0 for ids in loaded.official_split.values())
    assert all(movie.genres and movie.plot.strip() for movie in loaded.movies.values())
