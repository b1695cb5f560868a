"""Write a synthetic twin: a miniature MM-IMDb release plus the ground truth that explains every label.

    OUT/split.json              {"train": [...], "dev": [...], "test": [...]} of 7-digit id strings
    OUT/dataset/<id>.json       MM-IMDb keys: plot (list), genres, title, year, kind, ...
    OUT/dataset/<id>.jpeg       the poster
    OUT/twin_truth.json         never read by training code: rules, boxes, cue spans, noise, Bayes F1

twin_truth.json holds: seed, config, genres (column order of `oracle_predict`), genre_evidence
{genre: image|text|both|interaction|alignment}, rules (declarative, see rules.GenreRule.to_json),
noise_rate (configured) and label_noise_measured, bayes_macro_f1 / bayes_micro_f1 (the rule on the test
split against the written labels, sklearn f1_score with zero_division=0), split_sizes, and movies:
{id: {
    objects:  [{label, box: [x0, y0, x1, y1] (JPEG pixels, x1/y1 exclusive), color, glow,
                role: evidence|distractor|prop|clutter, genre: the genre whose rule names the kind or null}],
    palette, named_object (index into objects; always a prop),
    cue_words: [{word, genre, role: evidence|distractor, plot_index, char_span: [start, end]}],
    named_object_mention: {word, plot_index, char_span}, genre_mentions: [{word, genre, plot_index, char_span}],
    clean_genres, written_genres, poster_mode: RGB|CMYK}}
where char_span indexes the raw string plot[plot_index] of <id>.json (the longest entry).

The labels are drawn first for all movies (labels.py, cheap). Each movie is then built from its own
random stream default_rng([seed, index]) (evidence plan, plot, metadata, poster), so the result does
not depend on the number of worker processes or the order they finish in: the same config gives
byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.data.twin.evidence import plan_evidence
from thesis_lib.data.twin.labels import draw_labels
from thesis_lib.data.twin.metadata import movie_json, sample_metadata
from thesis_lib.data.twin.plot import write_plot
from thesis_lib.data.twin.poster import render_poster
from thesis_lib.data.twin.rules import GENRE_EVIDENCE, oracle_predict, rule_fires, rules_to_json
from thesis_lib.errors import ThesisError
from thesis_lib.genres import GENRES

TRUTH_FILE = "twin_truth.json"
SPLIT_FILE = "split.json"
DATASET_DIR = "dataset"
# Present while a twin is being written; lets --force clean up an interrupted run (but nothing else).
INCOMPLETE_MARKER = ".twin-incomplete"
DROPPED_GENRE = "News"  # listed now and then, as in MM-IMDb; loaders must drop it
MIN_MOVIES_PER_PROCESS = 64  # below this, worker start-up costs more than it saves

ProgressCallback = Callable[[int, int], None]  # (movies done, movies total)


@dataclass(frozen=True)
class TwinSummary:
    """What `generate_twin` wrote, for a one-line report."""

    root: Path
    n_movies: int
    split_sizes: dict[str, int]
    label_noise: float       # fraction of movies whose written genres differ from the clean ones
    bayes_macro_f1: float    # the noise-free rule on the test split, against the written labels
    bayes_micro_f1: float
    seconds: float           # wall time of the generation
    workers: int             # processes used

    def __str__(self) -> str:
        sizes = " / ".join(f"{name} {count}" for name, count in self.split_sizes.items())
        return (f"synthetic twin: {self.n_movies} movies ({sizes}) in {self.root}; label noise {self.label_noise:.1%}; "
                f"Bayes test F1 macro {self.bayes_macro_f1:.3f} / micro {self.bayes_micro_f1:.3f}")


@dataclass(frozen=True)
class _MovieJob:
    """Everything one worker needs to build one movie (picklable)."""

    index: int
    movie_id: str
    clean: tuple[str, ...]
    written: tuple[str, ...]
    dataset_dir: str
    config: TwinConfig


def _span(start: int, end: int) -> list[int]:
    return [int(start), int(end)]


def _build_movie(job: _MovieJob) -> dict[str, Any]:
    """Plan, write and draw one movie; returns its twin_truth.json entry."""
    config = job.config
    rng = np.random.default_rng([config.seed, job.index])
    clean = frozenset(job.clean)
    plan = plan_evidence(clean, rng, config)
    plot = write_plot(plan, rng, config)
    meta = sample_metadata(rng)
    listed_genres = sorted([*job.written, *([DROPPED_GENRE] if rng.random() < config.dropped_genre_rate else [])])
    image, boxes = render_poster(plan.objects, plan.palette, meta.title, meta.cast, meta.director,
                                 config.poster_size, rng)
    cmyk = bool(rng.random() < config.cmyk_rate)

    folder = Path(job.dataset_dir)
    document = movie_json(job.movie_id, plot.entries, listed_genres, plot.outline, meta)
    (folder / f"{job.movie_id}.json").write_text(
        json.dumps(document, sort_keys=True, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    (image.convert("CMYK") if cmyk else image).save(
        folder / f"{job.movie_id}.jpeg", "JPEG", quality=config.jpeg_quality, subsampling="4:2:0",
        optimize=False, progressive=False)

    record = {
        "objects": [
            {"label": obj.label, "box": list(box), "color": obj.color, "glow": obj.glow, "role": obj.role, "genre": obj.genre}
            for obj, box in zip(plan.objects, boxes, strict=False)
        ],
        "palette": plan.palette,
        "cue_words": [
            {"word": span.word, "genre": span.genre, "role": span.role, "plot_index": plot.main_index,
             "char_span": _span(span.start, span.end)}
            for span in plot.cue_spans
        ],
        "named_object": plan.named_object,
        "named_object_mention": {"word": plot.prop_span.word, "plot_index": plot.main_index,
                                 "char_span": _span(plot.prop_span.start, plot.prop_span.end)},
        "genre_mentions": [] if plot.genre_mention_span is None else [
            {"word": plot.genre_mention_span.word, "genre": plot.genre_mention_span.genre,
             "plot_index": plot.main_index,
             "char_span": _span(plot.genre_mention_span.start, plot.genre_mention_span.end)}],
        "clean_genres": [genre for genre in GENRES if genre in clean],
        "written_genres": [genre for genre in GENRES if genre in job.written],
        "poster_mode": "CMYK" if cmyk else "RGB",
    }
    rules = rules_to_json()
    wrong = [genre for genre in GENRES if rule_fires(rules[genre], record) != (genre in clean)]
    if wrong:  # a generator bug, never a property of the data: fail loudly
        raise RuntimeError(f"twin movie {job.movie_id}: planted evidence disagrees with the clean labels for {wrong}")
    return record


class TwinOutputError(ThesisError, FileExistsError):
    """The output folder cannot take a twin (a file, or a non-empty folder that is not an earlier twin)."""


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless overwrite, and then only if it holds a (possibly unfinished) twin."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TwinOutputError(f"cannot write a synthetic twin to {out_dir}: it is a file")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise TwinOutputError(
                f"{out_dir} is not empty; refusing to write a synthetic twin into it "
                "(pass overwrite=True / --force to replace an earlier twin)")
        if not ((out_dir / TRUTH_FILE).is_file() or (out_dir / INCOMPLETE_MARKER).is_file()):
            raise TwinOutputError(
                f"{out_dir} is not empty and does not hold a synthetic twin (no {TRUTH_FILE}); "
                "refusing to overwrite it even with overwrite=True")
        shutil.rmtree(out_dir / DATASET_DIR, ignore_errors=True)
        for name in (SPLIT_FILE, TRUTH_FILE):
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / DATASET_DIR).mkdir(parents=True, exist_ok=True)
    (out_dir / INCOMPLETE_MARKER).touch()


def _build_all(jobs: list[_MovieJob], workers: int, progress: ProgressCallback | None) -> list[dict[str, Any]]:
    total = len(jobs)
    if workers <= 1:
        records = []
        for job in jobs:
            records.append(_build_movie(job))
            if progress is not None and (len(records) % 100 == 0 or len(records) == total):
                progress(len(records), total)
        return records
    chunksize = max(1, min(100, total // (workers * 8)))
    records = []
    # spawn, not fork: forking a process that already runs torch or notebook threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for record in pool.map(_build_movie, jobs, chunksize=chunksize):
            records.append(record)
            if progress is not None and (len(records) % 100 == 0 or len(records) == total):
                progress(len(records), total)
    return records


def _f1_scores(truth: dict[str, Any], test_ids: list[str]) -> tuple[float, float]:
    """Macro and micro F1 of the noise-free rule on the test split, against the written labels."""
    from sklearn.metrics import f1_score

    predicted = oracle_predict(truth, test_ids)  # (N_test, 23)
    written = np.array([[genre in truth["movies"][i]["written_genres"] for genre in GENRES] for i in test_ids],
                       dtype=np.int64)  # (N_test, 23)
    macro = f1_score(written, predicted, average="macro", zero_division=0)
    micro = f1_score(written, predicted, average="micro", zero_division=0)
    return float(macro), float(micro)


def generate_twin(out_dir: Path, config: TwinConfig, *, workers: int | None = None, overwrite: bool = False,
                  progress: ProgressCallback | None = None) -> TwinSummary:
    """Write a synthetic MM-IMDb twin to `out_dir` (see the module docstring for the layout).

    Args:
        out_dir: output folder; must be missing or empty, unless `overwrite` and it holds an earlier twin.
        config: what to generate; the same config gives byte-identical files.
        workers: processes to use (default: all CPUs; small twins use one).
        overwrite: replace an earlier twin in `out_dir` (other files in the folder are left alone).
        progress: called as progress(done, total) every 100 movies; nothing is printed here.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    labels = draw_labels(config)
    dataset_dir = str(out_dir / DATASET_DIR)
    jobs = [
        _MovieJob(index, labels.ids[index],
                  tuple(g for g, on in zip(GENRES, labels.clean[index], strict=False) if on),
                  tuple(g for g, on in zip(GENRES, labels.written[index], strict=False) if on), dataset_dir, config)
        for index in range(config.n_movies)
    ]
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    workers = min(workers, max(1, config.n_movies // MIN_MOVIES_PER_PROCESS))
    records = _build_all(jobs, workers, progress)

    split = {name: [labels.ids[i] for i in indices] for name, indices in labels.split.items()}
    (out_dir / SPLIT_FILE).write_text(json.dumps(split, indent=4) + "\n", encoding="utf-8")
    truth: dict[str, Any] = {
        "format": "thesis-synthetic-twin/1",
        "seed": config.seed,
        "config": config.to_json(),
        "genres": list(GENRES),
        "genre_evidence": dict(GENRE_EVIDENCE),
        "rules": rules_to_json(),
        "noise_rate": config.noise_rate,
        "label_noise_measured": float((labels.clean != labels.written).any(axis=1).mean()),
        "split_sizes": {name: len(ids) for name, ids in split.items()},
        "movies": {labels.ids[i]: record for i, record in enumerate(records)},
    }
    truth["bayes_macro_f1"], truth["bayes_micro_f1"] = _f1_scores(truth, split["test"])
    (out_dir / TRUTH_FILE).write_text(
        json.dumps(truth, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    (out_dir / INCOMPLETE_MARKER).unlink()
    return TwinSummary(root=out_dir, n_movies=config.n_movies, split_sizes=truth["split_sizes"],
                       label_noise=truth["label_noise_measured"], bayes_macro_f1=truth["bayes_macro_f1"],
                       bayes_micro_f1=truth["bayes_micro_f1"], seconds=time.perf_counter() - started, workers=workers)


def load_twin_truth(root: Path | str) -> dict[str, Any]:
    """Read `<root>/twin_truth.json` (for evaluation and XAI checks; no genre classifier reads it, the
    twin-trained detectors learn from its training posters' boxes and the `oracle` object source reads its boxes)."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a synthetic twin, or its generation did not finish")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    missing = [key for key in ("rules", "movies", "genre_evidence", "genres") if key not in truth]
    if missing:
        raise ValueError(f"{path} lacks the keys {missing}; it was not written by generate_twin")
    return truth
