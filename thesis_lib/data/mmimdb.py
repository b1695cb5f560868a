"""Reader and validator for the MM-IMDb release (and the synthetic twin, which uses the same on-disk format).

Release layout (the official tarball unpacks to a top folder `mmimdb/`; both forms are accepted):

    <root>/split.json            {"train": [...], "dev": [...], "test": [...]}, 7-digit id strings
    <root>/dataset/<id>.json     IMDb metadata; we read `plot` (list of strings), `genres`, `title`, `year`
    <root>/dataset/<id>.jpeg     the poster

`load_release` never stops at a bad movie: every problem is recorded as a `Skipped(id, reason, detail)`
(or, when the movie is still usable, as a warning) and the rest of the release loads. Only a folder that
is not a release at all (no split.json, no dataset/, an unusable split.json) raises `NotAReleaseError`.

Posters are verified by decoding them (at reduced scale) in worker threads; only verdicts are kept, never
pixels. A 25,959-movie release loads and validates in well under a minute on two cores.

Only regular files are read (thesis_lib.storage.open_regular_file): a plot file or poster that is a FIFO
(which would block forever), a device (a link to /dev/zero never ends) or a folder is a named skip, and
so is a plot file over MAX_PLOT_FILE_BYTES or a poster over the pixel cap (`max_poster_pixels`, default
DEFAULT_MAX_POSTER_PIXELS, or $THESIS_MAX_POSTER_PIXELS), whose size is read from the image header before
anything is decoded. Links are followed: a release whose files link to scratch storage loads, with one
warning saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings as warnings_module
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from thesis_lib.errors import ThesisError
from thesis_lib.genres import GENRES, filter_genres, to_multi_hot, unknown_genres
from thesis_lib.storage import FileTooLargeError, NotRegularFileError, open_regular_file, read_regular_file

PlotChoice = Literal["longest", "first", "concat"]
PosterCheck = Literal["full", "header", "none"]  # see load_release

SPLIT_NAMES: tuple[str, ...] = ("train", "dev", "test")
RELEASE_SUBFOLDER = "mmimdb"  # the top folder inside mmimdb.tar.gz
JSON_SUFFIX = ".json"
POSTER_SUFFIX = ".jpeg"
_MOVIE_SUFFIXES = {JSON_SUFFIX, POSTER_SUFFIX, ".jpg"}  # other files in dataset/ are not movie files
_ID_PATTERN = re.compile(r"[0-9]{7}")
_YEAR_PATTERN = re.compile(r"\s*([0-9]{4})")  # "1994", "1994-1996", "1994/I" -> 1994

# Poster verification is spread over worker threads in chunks; small releases are checked in the calling
# thread, where a pool would cost more than it saves.
_POSTER_CHUNK_MIN, _POSTER_CHUNK_MAX = 64, 512
_POOL_MIN_POSTERS = 256
_EOI_WINDOW = 1024  # header mode looks for the JPEG end-of-image marker in the file's last bytes
_DRAFT_SIZE = (64, 64)  # JPEG draft mode decodes at 1/2..1/8 scale: every byte is still read, ~0.3 ms/poster

# A plot file is IMDb metadata for one movie: a few kB, a few hundred kB with a long cast list. 8 MiB is
# far above any of those (the real release was not at hand to measure its largest) and far below the tens
# of MB that would mean the file is something else; at most this + 1 bytes are ever read.
MAX_PLOT_FILE_BYTES = 8 << 20
_MAX_SPLIT_FILE_BYTES = 64 << 20  # the real split.json is 0.5 MB
# Real posters are IMDb thumbnails, well under one megapixel. 4 MP leaves a factor of four over that, and
# bounds what checking or training on one poster costs (~12 MB of RGB); a 13000x13000 PNG of 530 kB
# (169 MP) took 8.6 s and 1.4 GB to check and slowed training eightfold before the cap.
DEFAULT_MAX_POSTER_PIXELS = 4_000_000
POSTER_PIXELS_ENV = "THESIS_MAX_POSTER_PIXELS"


@dataclass(frozen=True)
class Movie:
    """One usable movie of a release: everything downstream code needs, nothing it must re-parse."""

    id: str                      # 7-digit IMDb id string, taken from the file name ("0106714")
    plot: str                    # the plot chosen by PlotChoice, raw (not cleaned)
    genres: tuple[str, ...]      # filtered to the 23 MM-IMDb genres, in canonical GENRES order
    poster: Path                 # path of <id>.jpeg
    title: str | None = None     # for display only
    year: int | None = None      # for display only


class NotAReleaseError(ThesisError, ValueError):
    """The folder is not an MM-IMDb release at all (as opposed to a release with some bad movies)."""


class SkipReason:
    """Why a movie was left out. Short fixed phrases, so that reports can group by them; specifics go in
    `Skipped.detail`."""

    BAD_ID = "id is not a 7-digit string"
    NO_FILES = "listed in split.json but has no files"
    IN_SEVERAL_SPLITS = "listed in more than one split"
    NOT_IN_SPLIT = "in dataset/ but not in split.json"
    MISSING_JSON = "missing JSON"
    UNREADABLE_JSON = "unreadable JSON"
    JSON_NOT_A_FILE = "JSON is not a regular file"
    JSON_TOO_LARGE = "JSON file too large"
    NOT_UTF8 = "JSON text is not valid UTF-8"
    INVALID_JSON = "invalid JSON"
    NO_PLOT = "JSON has no plot"
    NO_GENRES = "JSON has no genres"
    EMPTY_PLOT = "empty plot"
    NO_KNOWN_GENRE = "no genre left after filtering"
    MISSING_POSTER = "missing poster"
    BAD_POSTER = "corrupt poster"
    POSTER_TOO_LARGE = "poster above the pixel cap"


@dataclass(frozen=True)
class Skipped:
    """A movie (or a would-be movie file) that was left out, and why. One movie can have several entries
    (e.g. invalid JSON *and* a truncated poster), so that one pass reports everything to fix."""

    id: str       # the id as written in split.json or the file name (str() of a non-string id)
    reason: str   # one of the SkipReason phrases
    detail: str = ""  # the specific file and error

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Release:
    """A loaded release: the usable movies, the official split restricted to them, and what was left out."""

    root: Path                                   # the folder holding split.json and dataset/
    movies: dict[str, Movie]                     # id -> Movie, usable movies only
    official_split: dict[str, tuple[str, ...]]   # train/dev/test -> usable ids, in split.json order
    skipped: list[Skipped]                       # everything left out, with reasons
    warnings: list[str]                          # problems that did not cost a movie
    fingerprint: str                             # sha256 hex of the release's content (see _fingerprint)
    plot_choice: PlotChoice = "longest"          # how each Movie.plot was picked from the plot list

    @property
    def ids(self) -> tuple[str, ...]:
        """All usable ids, sorted."""
        return tuple(sorted(self.movies))

    @property
    def skipped_ids(self) -> tuple[str, ...]:
        """Distinct ids that were left out, sorted."""
        return tuple(sorted({entry.id for entry in self.skipped}))

    def movies_in(self, ids: Iterable[str]) -> list[Movie]:
        """The movies for `ids`, in that order; an id that is not a usable movie raises KeyError."""
        return [self._movie(movie_id) for movie_id in ids]

    def labels(self, ids: Iterable[str]) -> np.ndarray:
        """Multi-hot genre labels, float32 of shape (N, 23), rows in the order of `ids`."""
        rows = [to_multi_hot(self._movie(movie_id).genres) for movie_id in ids]
        return np.stack(rows) if rows else np.zeros((0, len(GENRES)), dtype=np.float32)  # (N, 23)

    def labels_by_id(self) -> dict[str, np.ndarray]:
        """id -> multi-hot float32 vector of shape (23,), for every usable movie."""
        return {movie_id: to_multi_hot(movie.genres) for movie_id, movie in self.movies.items()}

    def genre_counts(self) -> dict[str, int]:
        """Number of usable movies per genre, all 23 genres in canonical order."""
        counts = dict.fromkeys(GENRES, 0)
        for movie in self.movies.values():
            for genre in movie.genres:
                counts[genre] += 1
        return counts

    def _movie(self, movie_id: str) -> Movie:
        try:
            return self.movies[movie_id]
        except KeyError:
            raise KeyError(f"{movie_id!r} is not a usable movie of the release at {self.root}") from None


# --------------------------------------------------------------------------------------------------------
# Small public helpers


def is_movie_id(value: object) -> bool:
    """True for a 7-digit id string such as "0106714" (the form of every id in the release)."""
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def choose_plot(plots: Sequence[str], plot_choice: PlotChoice = "longest") -> str:
    """Pick one plot from a movie's plot list. Empty or whitespace-only entries are ignored first.

    longest: the longest entry (the first of equals), as most published loaders do;
    first:   the first non-empty entry (MMF/MMBT take plot[0]);
    concat:  all non-empty entries joined with a space.
    Raises ValueError when no entry is left.
    """
    texts = [text for text in plots if text.strip()]
    if not texts:
        raise ValueError("the plot list has no non-empty entry")
    if plot_choice == "longest":
        return max(texts, key=len)  # max() keeps the first of equal lengths: deterministic
    if plot_choice == "first":
        return texts[0]
    if plot_choice == "concat":
        return " ".join(texts)
    raise ValueError(f"unknown plot_choice {plot_choice!r}; expected 'longest', 'first' or 'concat'")


def parse_year(value: object) -> int | None:
    """Lenient year: 1994, "1994", "1994-1996", 1994.0 -> 1994; anything else -> None (display only)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and (match := _YEAR_PATTERN.match(value)):
        return int(match[1])
    return None


def resolve_release_root(path: str | os.PathLike[str]) -> Path:
    """The folder holding split.json and dataset/: `path` itself or `path/mmimdb` (the tarball's top folder).

    Raises NotAReleaseError with a one-line message naming what is missing.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise NotAReleaseError(f"{folder} is not an MM-IMDb release: {what}")
    candidates = (folder, folder / RELEASE_SUBFOLDER)
    for candidate in candidates:
        if (candidate / "split.json").is_file():
            if not (candidate / "dataset").is_dir():
                raise NotAReleaseError(
                    f"{candidate} is not an MM-IMDb release: split.json but no dataset/ folder next to it"
                )
            return candidate
    looked_in = " and ".join(str(c) for c in candidates)
    raise NotAReleaseError(f"{folder} is not an MM-IMDb release: no split.json (looked in {looked_in})")


# --------------------------------------------------------------------------------------------------------
# Loading


def load_release(
    root: str | os.PathLike[str],
    plot_choice: PlotChoice = "longest",
    verify_posters: PosterCheck = "full",
    workers: int | None = None,
    max_poster_pixels: int | None = None,
) -> Release:
    """Read and validate a release; see the module docstring.

    plot_choice:    which plot of each movie's list becomes Movie.plot (see `choose_plot`);
    verify_posters: "full" decodes every poster at reduced scale (the default), "header" only opens it and
                    checks a JPEG's end marker (~10x faster), "none" only checks that it exists and is not
                    empty;
    workers:        poster-check threads (None: one per available CPU; 1: check in the calling thread);
    max_poster_pixels: posters with more pixels are skipped ("header" and "full" checks; None: the value of
                    $THESIS_MAX_POSTER_PIXELS, else DEFAULT_MAX_POSTER_PIXELS).
    """
    if plot_choice not in ("longest", "first", "concat"):
        raise ValueError(f"unknown plot_choice {plot_choice!r}; expected 'longest', 'first' or 'concat'")
    if verify_posters not in ("full", "header", "none"):
        raise ValueError(f"unknown verify_posters {verify_posters!r}; expected 'full', 'header' or 'none'")
    pixel_cap = poster_pixel_cap(max_poster_pixels)
    root = resolve_release_root(root)
    dataset = root / "dataset"
    skipped: list[Skipped] = []
    warnings: list[str] = []

    split_lists = _read_split_file(root / "split.json", warnings)
    membership = _split_membership(split_lists, skipped, warnings)  # valid id -> split names
    links: list[str] = []  # movie files that are symbolic links
    files = _list_movie_files(dataset, skipped, links)  # 7-digit stem -> {suffix: size in bytes}
    warnings += _link_warnings(dataset, links)
    for movie_id in sorted(set(files) - set(membership)):
        names = ", ".join(f"dataset/{movie_id}{suffix}" for suffix in sorted(files[movie_id]))
        skipped.append(Skipped(movie_id, SkipReason.NOT_IN_SPLIT, names))

    candidates = []  # ids in exactly one split, in a stable order
    for movie_id, splits in membership.items():
        if len(splits) > 1:
            skipped.append(Skipped(movie_id, SkipReason.IN_SEVERAL_SPLITS, "listed in " + " and ".join(splits)))
        else:
            candidates.append(movie_id)

    # Posters first: worker threads decode them while this thread parses the JSON files.
    to_verify, poster_ok = _poster_jobs(dataset, candidates, files, verify_posters, skipped)
    with _PosterVerifier(to_verify, verify_posters, workers, pixel_cap) as verifier:
        parsed: dict[str, Movie] = {}
        json_digests: dict[str, str] = {}
        for movie_id in candidates:
            sizes = files.get(movie_id, {})
            if sizes and JSON_SUFFIX not in sizes:
                skipped.append(Skipped(movie_id, SkipReason.MISSING_JSON, f"no dataset/{movie_id}.json"))
            elif JSON_SUFFIX in sizes:
                movie = _parse_movie(dataset, movie_id, plot_choice, skipped, warnings, json_digests)
                if movie is not None:
                    parsed[movie_id] = movie
        for movie_id, reason, error, image_format in verifier.results():
            if reason is not None:
                skipped.append(Skipped(movie_id, reason, f"dataset/{movie_id}.jpeg: {error}"))
                continue
            poster_ok.add(movie_id)
            if image_format != "JPEG":
                warnings.append(f"{movie_id}: poster dataset/{movie_id}.jpeg holds {image_format} data, not JPEG")

    movies = {movie_id: movie for movie_id, movie in parsed.items() if movie_id in poster_ok}
    official = {
        name: tuple(movie_id for movie_id in _unique(split_lists[name]) if movie_id in movies)
        for name in SPLIT_NAMES
    }
    fingerprint = _fingerprint(dataset, membership, files, json_digests)
    skipped.sort(key=lambda entry: entry.id)  # stable: one id's entries stay in the order they were found
    return Release(root, movies, official, skipped, warnings, fingerprint, plot_choice)


def _poster_jobs(
    dataset: Path, candidates: list[str], files: dict[str, dict[str, int]], mode: PosterCheck, skipped: list[Skipped]
) -> tuple[list[tuple[str, str]], set[str]]:
    """Report missing and empty posters; return the (id, path) pairs still to decode and, when `mode` is
    "none", the ids whose poster is accepted as it stands."""
    to_verify: list[tuple[str, str]] = []
    accepted: set[str] = set()
    for movie_id in candidates:
        sizes = files.get(movie_id, {})
        if not sizes:
            skipped.append(Skipped(movie_id, SkipReason.NO_FILES, f"no dataset/{movie_id}.json or .jpeg"))
        elif POSTER_SUFFIX not in sizes:
            hint = f"; found dataset/{movie_id}.jpg instead" if ".jpg" in sizes else ""
            skipped.append(Skipped(movie_id, SkipReason.MISSING_POSTER, f"no dataset/{movie_id}.jpeg{hint}"))
        elif sizes[POSTER_SUFFIX] == 0:
            skipped.append(Skipped(movie_id, SkipReason.BAD_POSTER, f"dataset/{movie_id}.jpeg is empty (0 bytes)"))
        elif sizes[POSTER_SUFFIX] < 0:
            skipped.append(Skipped(movie_id, SkipReason.BAD_POSTER, f"dataset/{movie_id}.jpeg is not a readable file"))
        elif mode == "none":
            accepted.add(movie_id)
        else:
            to_verify.append((movie_id, str(dataset / f"{movie_id}{POSTER_SUFFIX}")))
    return to_verify, accepted


def poster_pixel_cap(value: int | None = None) -> int:
    """The poster pixel cap: `value`, else $THESIS_MAX_POSTER_PIXELS, else DEFAULT_MAX_POSTER_PIXELS."""
    if value is None:
        text = os.environ.get(POSTER_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_POSTER_PIXELS
        digits = text.replace("_", "")
        if not digits.isdigit() or int(digits) < 1:
            raise ThesisError(f"${POSTER_PIXELS_ENV} must be a positive whole number of pixels, got {text!r}")
        return int(digits)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ThesisError(f"max_poster_pixels must be a positive whole number of pixels, got {value!r}")
    return value


def _link_warnings(dataset: Path, links: list[str]) -> list[str]:
    """One line for a dataset/ that is a link and one for movie files that are links (a release put
    together by hand, its files on scratch storage): they load, read where they point, but a moved or
    cleaned target would make movies vanish, so the reader is told."""
    lines = []
    if dataset.is_symlink():
        lines.append(f"dataset/ is a symbolic link to {os.path.realpath(dataset)}; its files are read there")
    if links:
        example = f"dataset/{links[0]} -> {os.readlink(dataset / links[0])}"
        lines.append(f"{len(links):,} movie files in dataset/ are symbolic links (e.g. {example}); they are read "
                     f"where they point, and only if that is a regular file")
    return lines


def _unique(values: Iterable[object]) -> list[str]:
    """The valid ids of `values`, each once, in their first-seen order."""
    return list(dict.fromkeys(v for v in values if is_movie_id(v)))  # type: ignore[misc]


def _read_split_file(path: Path, warnings: list[str]) -> dict[str, list[object]]:
    """split.json -> {"train": [...], "dev": [...], "test": [...]} (raw entries, validated later)."""
    try:
        content = json.loads(read_regular_file(path, _MAX_SPLIT_FILE_BYTES).decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8, not JSON; Recursion: nested too deep
        raise NotAReleaseError(f"{path} is not a readable MM-IMDb split file: {error}") from None
    if not isinstance(content, dict):
        raise NotAReleaseError(f"{path} is not an MM-IMDb split file: expected an object with train/dev/test lists")
    missing = [name for name in SPLIT_NAMES if not isinstance(content.get(name), list)]
    if missing:
        raise NotAReleaseError(f"{path} is not an MM-IMDb split file: no {'/'.join(missing)} list")
    extra = sorted(set(content) - set(SPLIT_NAMES))
    if extra:
        warnings.append(f"split.json: ignored keys {', '.join(map(repr, extra))} (only train/dev/test are read)")
    return {name: content[name] for name in SPLIT_NAMES}


def _split_membership(
    split_lists: dict[str, list[object]], skipped: list[Skipped], warnings: list[str]
) -> dict[str, list[str]]:
    """Valid id -> names of the splits listing it (in split.json order). Reports bad and repeated ids."""
    membership: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        seen_here: set[str] = set()
        reported_bad: set[str] = set()
        for entry in split_lists[name]:
            if not is_movie_id(entry):
                shown = str(entry)
                if shown not in reported_bad:
                    reported_bad.add(shown)
                    skipped.append(Skipped(shown, SkipReason.BAD_ID, f"split.json {name!r} lists {entry!r}"))
                continue
            movie_id: str = entry  # type: ignore[assignment]
            if movie_id in seen_here:
                warnings.append(f"{movie_id}: listed more than once in split.json {name!r}; kept once")
                continue
            seen_here.add(movie_id)
            membership.setdefault(movie_id, []).append(name)
    return membership


def _list_movie_files(dataset: Path, skipped: list[Skipped], links: list[str]) -> dict[str, dict[str, int]]:
    """7-digit id -> {suffix: size in bytes, -1 if it is no regular file}. Hidden files (.DS_Store, macOS ._*
    twins) and other suffixes are not movie files and are ignored; a movie-like name that is not a 7-digit
    id is reported. Entries are not filtered to regular files: a folder or dangling link named like a movie
    file is reported as unreadable rather than silently missing. Names of movie files that are symbolic
    links are appended to `links`."""
    files: dict[str, dict[str, int]] = {}
    try:
        entries = os.scandir(dataset)
    except OSError as error:
        raise NotAReleaseError(f"{dataset} cannot be listed: {error.strerror or error}") from None
    with entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            stem, suffix = os.path.splitext(entry.name)
            if suffix not in _MOVIE_SUFFIXES:
                continue
            if not _ID_PATTERN.fullmatch(stem):
                skipped.append(Skipped(stem, SkipReason.BAD_ID, f"file name dataset/{entry.name}"))
                continue
            try:
                size = entry.stat().st_size if entry.is_file() else -1
                if entry.is_symlink():
                    links.append(entry.name)
            except OSError:  # e.g. a dangling link
                size = -1
            files.setdefault(stem, {})[suffix] = size
    return files


def _parse_movie(
    dataset: Path,
    movie_id: str,
    plot_choice: PlotChoice,
    skipped: list[Skipped],
    warnings: list[str],
    json_digests: dict[str, str],
) -> Movie | None:
    """Read dataset/<id>.json into a Movie (poster not yet verified); report and return None when unusable."""
    path = dataset / f"{movie_id}{JSON_SUFFIX}"
    name = f"dataset/{path.name}"

    def skip(reason: str, detail: str) -> None:
        skipped.append(Skipped(movie_id, reason, f"{name}: {detail}"))

    try:
        raw = read_regular_file(path, MAX_PLOT_FILE_BYTES)
    except NotRegularFileError as error:
        skip(SkipReason.JSON_NOT_A_FILE, error.kind)
        return None
    except FileTooLargeError as error:
        skip(SkipReason.JSON_TOO_LARGE, f"{error.strerror}: not a plot file")
        return None
    except OSError as error:
        skip(SkipReason.UNREADABLE_JSON, error.strerror or str(error))
        return None
    json_digests[movie_id] = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        skip(SkipReason.NOT_UTF8, f"{error.reason} at byte {error.start}")
        return None
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as error:  # not JSON, a number of 5,000 digits, arrays nested too deep
        skip(SkipReason.INVALID_JSON, str(error))
        return None
    if not isinstance(content, dict):
        skip(SkipReason.INVALID_JSON, f"top level is a {type(content).__name__}, expected an object")
        return None

    plots, genres = content.get("plot"), content.get("genres")
    problems = False
    if not _is_list_of_str(plots):
        skip(SkipReason.NO_PLOT, _describe_field("plot", plots))
        problems = True
    if not _is_list_of_str(genres):
        skip(SkipReason.NO_GENRES, _describe_field("genres", genres))
        problems = True
    if problems:
        return None
    # JSON escapes can smuggle in lone surrogates ("\ud800"), which no UTF-8 consumer can encode.
    if not all(_encodes_as_utf8(s) for s in (*plots, *genres)):
        skip(SkipReason.NOT_UTF8, "plot or genres hold a lone surrogate escape")
        return None
    try:
        plot = choose_plot(plots, plot_choice)
    except ValueError:
        skip(SkipReason.EMPTY_PLOT, f"plot list of {len(plots)} entries, none with text")
        return None
    unknown = unknown_genres(genres)
    if unknown:
        names = ", ".join(map(repr, unknown))
        warnings.append(f"{movie_id}: unknown genre(s) {names} ignored (neither one of the 23 nor a documented drop)")
    kept = filter_genres(genres)
    if not kept:
        skip(SkipReason.NO_KNOWN_GENRE, f"genres {list(genres)!r}")
        return None
    title = content.get("title")
    return Movie(
        id=movie_id,
        plot=plot,
        genres=kept,
        poster=dataset / f"{movie_id}{POSTER_SUFFIX}",
        title=title if isinstance(title, str) and _encodes_as_utf8(title) else None,
        year=parse_year(content.get("year")),
    )


def _is_list_of_str(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _describe_field(key: str, value: object) -> str:
    if value is None:
        return f"no {key!r} key (or null)"
    return f"{key!r} is a {type(value).__name__}, expected a list of strings"


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fingerprint(
    dataset: Path, membership: dict[str, list[str]], files: dict[str, dict[str, int]], json_digests: dict[str, str]
) -> str:
    """sha256 over every id listed in split.json, sorted: its split(s), its JSON bytes' sha256 and its poster
    size. Content-based and order-independent: reordering split.json or the directory changes nothing,
    while any edited label/plot, moved id or resized poster changes the fingerprint."""
    digest = hashlib.sha256()
    for movie_id in sorted(membership):
        sizes = files.get(movie_id, {})
        json_digest = json_digests.get(movie_id)
        if json_digest is None and JSON_SUFFIX in sizes:  # not parsed (e.g. listed in two splits)
            try:
                raw = read_regular_file(dataset / f"{movie_id}{JSON_SUFFIX}", MAX_PLOT_FILE_BYTES)
                json_digest = hashlib.sha256(raw).hexdigest()
            except OSError:
                json_digest = "unreadable"
        poster_size = sizes.get(POSTER_SUFFIX, -1)
        splits = "+".join(sorted(membership[movie_id]))
        digest.update(f"{movie_id}\t{splits}\t{json_digest or '-'}\t{poster_size}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# Poster verification: a thread pool over chunks of posters. Pillow releases the GIL while it decodes, so
# threads scale like processes here (measured on 2 cores, 25,959 posters: serial 12.2 s, 2 threads 6.4 s,
# 2 spawned processes 6.1 s) without a process pool's pitfalls (a script without an `if __name__ ==
# "__main__"` guard re-runs itself in every spawned worker; fork copies the locks of torch's threads).
# Decoded images are dropped at once: only verdicts are kept.


@contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """Another module may allow truncated images process-wide (ImageFile.LOAD_TRUNCATED_IMAGES, the only
    switch Pillow has); a validator must not, so it is turned off while posters are checked."""
    from PIL import ImageFile

    allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = allowed


_Verdict = tuple[str | None, str | None, str | None]  # (SkipReason or None, what is wrong, image format)
_Result = tuple[str, str | None, str | None, str | None]  # (id, *_Verdict)


def _check_poster(path: str, mode: PosterCheck, max_pixels: int) -> _Verdict:
    """Open the poster (a regular file only) and check it; the pixel count comes from the header, before
    anything is decoded."""
    from PIL import Image  # lazily: a release read with verify_posters="none" never needs Pillow

    try:
        with open_regular_file(path) as handle, Image.open(handle) as image:
            image_format = image.format
            if image.width < 1 or image.height < 1:
                return SkipReason.BAD_POSTER, f"empty image {image.width}x{image.height}", image_format
            if image.width * image.height > max_pixels:
                size = f"{image.width}x{image.height} = {image.width * image.height:,} pixels"
                cap = f"the cap of {max_pixels:,} (max_poster_pixels or ${POSTER_PIXELS_ENV})"
                return SkipReason.POSTER_TOO_LARGE, f"{size}, over {cap}", image_format
            if mode == "full":
                image.draft("RGB", _DRAFT_SIZE)  # no-op for non-JPEG formats: those decode fully
                image.load()
                image.convert("RGB")  # grayscale, CMYK and palette posters must all become RGB
            elif image_format == "JPEG" and not _ends_with_jpeg_eoi(handle):
                return SkipReason.BAD_POSTER, "no end-of-image marker: the file is truncated", image_format
            return None, None, image_format
    except Image.DecompressionBombError as error:  # over Pillow's own limit (far above ours): same verdict
        return SkipReason.POSTER_TOO_LARGE, str(error), None
    except Image.UnidentifiedImageError:
        return SkipReason.BAD_POSTER, "not an image Pillow can identify (unknown format or corrupt header)", None
    except Exception as error:  # noqa: BLE001 - any failure to open or decode makes the poster unusable
        return SkipReason.BAD_POSTER, f"{type(error).__name__}: {error}", None


def _ends_with_jpeg_eoi(handle: BinaryIO) -> bool:
    """A complete JPEG has its end-of-image marker (FF D9) at the end; some writers pad a little after it."""
    handle.seek(max(0, os.fstat(handle.fileno()).st_size - _EOI_WINDOW))
    return b"\xff\xd9" in handle.read()


def _check_chunk(chunk: list[tuple[str, str]], mode: PosterCheck, max_pixels: int) -> list[_Result]:
    return [(movie_id, *_check_poster(path, mode, max_pixels)) for movie_id, path in chunk]


class _PosterVerifier:
    """Starts the poster checks on entry (in worker threads for large releases) so that the caller can
    parse JSON meanwhile; `results()` then yields (id, reason, error, format) in input order.

    While it runs, Pillow's DecompressionBombWarning is silenced when the pixel cap is below Pillow's limit
    (89 MP): every image large enough to raise the warning is then over the cap and becomes a named skip,
    and the warning would only repeat that on stderr. (The warning filters are process-wide, as are
    Pillow's switches; hence one context around all worker threads rather than one per thread.)"""

    def __init__(self, posters: list[tuple[str, str]], mode: PosterCheck, workers: int | None,
                 max_pixels: int = DEFAULT_MAX_POSTER_PIXELS) -> None:
        self.posters, self.mode, self.max_pixels = posters, mode, max_pixels
        self.workers = workers if workers is not None else _available_cpus()
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[Future] = []
        self.refusing_truncated = _truncated_images_refused()
        self.quiet_bombs = warnings_module.catch_warnings()

    def __enter__(self) -> _PosterVerifier:
        from PIL import Image  # lazily, as in _check_poster

        self.refusing_truncated.__enter__()
        self.quiet_bombs.__enter__()
        if self.max_pixels <= (Image.MAX_IMAGE_PIXELS or 0):
            warnings_module.simplefilter("ignore", Image.DecompressionBombWarning)
        if self.workers > 1 and len(self.posters) >= _POOL_MIN_POSTERS:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="poster-check")
            size = len(self.posters) // (self.workers * 8) + 1  # ~8 chunks per worker evens out slow disks
            size = min(max(size, _POSTER_CHUNK_MIN), _POSTER_CHUNK_MAX)
            chunks = [self.posters[i : i + size] for i in range(0, len(self.posters), size)]
            self.futures = [self.pool.submit(_check_chunk, chunk, self.mode, self.max_pixels) for chunk in chunks]
        return self

    def results(self) -> Iterator[_Result]:
        if self.pool is None:
            yield from _check_chunk(self.posters, self.mode, self.max_pixels)
            return
        for future in self.futures:
            yield from future.result()

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self.quiet_bombs.__exit__(None, None, None)
            self.refusing_truncated.__exit__(None, None, None)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
