"""Run records on disk: what a run's folder holds, written so that a finished run is unmistakable.

Where the files are is `layout`'s business (RUNS/<split>/<run>/seed<k>/ and the files in it). In
record.json, `config` is what decides the run (the recipe, overrides, training settings and, for a
fusion, its source runs' config hashes; `config_hash` hashes it), and `model_config` the ModelConfig the
run actually built (a fusion's encoder parts are its sources').

Every file is written to a temporary name and renamed into place, and record.json is written after
everything else: a run counts as finished exactly when its record exists with the same config hash, data
fingerprint and split hash (`is_finished`).
"""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from thesis_lib.data.mmimdb import Release
from thesis_lib.data.splits import Split, load_split, official_split
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.configs import (
    FusionConfig,
    ImageEncoderConfig,
    ModelConfig,
    ObjectEncoderConfig,
    TextEncoderConfig,
)
from thesis_lib.storage import atomic_write, write_text_atomic
from thesis_lib.train.results import Predictions

RECORD_FORMAT = 1


class RecordError(ThesisError, ValueError):
    """A run folder whose files are unreadable or do not belong together."""


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Strict JSON (NaN refused: convert it to null first), written atomically."""
    text = json.dumps(content, indent=1, allow_nan=False, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not UTF-8 or JSON; Recursion: nested too deep
        raise RecordError(f"{path}: not a readable JSON file: {error}") from None
    if not isinstance(content, dict):
        raise RecordError(f"{path}: expected a JSON object")
    return content


def json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, tuples -> lists, recursively (records are strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_predictions(path: Path, predictions: Predictions) -> None:
    """ids (str), probs and labels (float32) of the 23 genres as one .npz, written atomically."""
    _check_genres(predictions, path)
    buffer = io.BytesIO()
    np.savez(buffer, ids=np.asarray(predictions.ids, dtype=str), probs=predictions.probs.astype(np.float32),
             labels=predictions.labels.astype(np.float32))
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def read_predictions(path: Path) -> Predictions:
    try:
        with np.load(path, allow_pickle=False) as content:
            predictions = Predictions(ids=content["ids"], probs=content["probs"], labels=content["labels"])
    except (OSError, KeyError, ValueError) as error:
        raise RecordError(f"{path}: not a predictions file ({error})") from None
    _check_genres(predictions, path)
    return predictions


def _check_genres(predictions: Predictions, path: Path) -> None:
    if predictions.probs.shape[1] != NUM_GENRES:
        raise RecordError(f"{path}: predictions of {predictions.probs.shape[1]} classes, not the {NUM_GENRES} genres")


def read_record(run: RunFolder) -> dict[str, Any] | None:
    """The record of a run, or None when the run has not finished."""
    return read_json(run.record) if run.record.is_file() else None


def is_finished(run: RunFolder, *, config_hash: str, data_fingerprint: str, split_hash: str) -> bool:
    """True when the run's folder holds a record of this very config on this very data and split."""
    try:
        record = read_record(run)
    except RecordError:
        return False  # unreadable: rerun rather than trust it
    return (
        record is not None
        and record.get("config_hash") == config_hash
        and record.get("data", {}).get("fingerprint") == data_fingerprint
        and record.get("split", {}).get("hash") == split_hash
        and run.predictions("test").is_file()
        and run.predictions("dev").is_file()
    )


def start_run(run: RunFolder, config_hash: str) -> bool:
    """Prepare a run's folder for a (re)run; returns True when an interrupted run of this config may resume.

    A stale record and predictions go first, so a crash from here on never leaves files that look like a
    finished run; checkpoints of another config go too (they must not be resumed into this one).
    """
    run.path.mkdir(parents=True, exist_ok=True)
    for path in (run.record, run.predictions("test"), run.predictions("dev"), run.error):
        path.unlink(missing_ok=True)
    resumable = run.pending.is_file() and _pending_hash(run.pending) == config_hash
    if not resumable:
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        write_json(run.pending, {"config_hash": config_hash})
    return resumable


def _pending_hash(path: Path) -> str | None:
    try:
        return read_json(path).get("config_hash")
    except RecordError:
        return None


def finish_run(run: RunFolder, record: dict[str, Any], dev: Predictions, test: Predictions) -> None:
    """Write predictions, then the record (last: its presence marks the run finished)."""
    write_predictions(run.predictions("dev"), dev)
    write_predictions(run.predictions("test"), test)
    write_json(run.record, json_safe(record))
    run.pending.unlink(missing_ok=True)


def write_error(run: RunFolder, text: str) -> None:
    """The traceback of a failed attempt, in the run's error.txt."""
    write_text_atomic(run.error, text)


def iter_records(runs: RunsFolder, split: str | None, seeds: Sequence[int] | None = None
                 ) -> Iterator[tuple[RunFolder, dict[str, Any]]]:
    """(run, record) of every finished run of `split` (None: of every split) in `runs`; with `seeds`, only
    the runs of those seeds (a book built for a profile shows that profile's seeds, even when the folder
    also holds runs of others)."""
    if not runs.root.is_dir():
        raise RecordError(f"{runs.root}: no such runs folder")
    for run in runs.recorded(split, seeds):
        record = read_json(run.record)
        check_scored_record(run.record, record)
        yield run, record


# What the results table, `results compare` and the book read from every record (a key path -> its type);
# checked once where they read records, so a record cut short or from elsewhere is one line, not a KeyError.
SCORED_RECORD_KEYS: dict[tuple[str, ...], type] = {
    ("name",): str, ("seed",): int, ("split", "name"): str, ("split", "hash"): str, ("data", "fingerprint"): str,
    **{("metrics", policy, part): dict for policy in ("fixed_0.5", "tuned_per_genre") for part in ("summary", "per_genre")},
}


def check_scored_record(path: Path, record: dict[str, Any]) -> None:
    """RecordError naming `path` and the first key of SCORED_RECORD_KEYS the record lacks or holds wrongly."""
    for keys, kind in SCORED_RECORD_KEYS.items():
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordError(f"{path}: not a finished run's record: {'/'.join(keys)!r} is missing or not a "
                              f"{kind.__name__}")


def tuned_thresholds(record: dict[str, Any], policy: str = "tuned_per_genre") -> np.ndarray:
    """The (23,) thresholds a record's policy decided with (chosen on the dev split)."""
    try:
        per_genre = record["metrics"][policy]["per_genre"]
        return np.array([per_genre[genre]["threshold"] for genre in per_genre], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:  # a record from elsewhere, or cut short by hand
        raise RecordError(f"the record's metrics hold no {policy} thresholds ({type(error).__name__}: {error})") from None


def model_config_from_dict(content: Any) -> ModelConfig:
    """A record's `model_config` (JSON) back to the `ModelConfig` the run built (lists become tuples);
    RecordError when it is not one (missing, an unknown field, a wrong type)."""
    if not isinstance(content, dict):
        raise RecordError(f"model_config is missing or not a JSON object (got {type(content).__name__})")
    parts = {"text": TextEncoderConfig, "image": ImageEncoderConfig, "objects": ObjectEncoderConfig}
    try:
        values = {name: None if content.get(name) is None else kind(**_tuples(content[name]))
                  for name, kind in parts.items()}
        return ModelConfig(name=content["name"], fusion=FusionConfig(**content["fusion"]),
                           head_dropout=content["head_dropout"], **values)
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # a key missing, unknown or of a wrong type
        raise RecordError(f"model_config is not a model's config ({type(error).__name__}: {error})") from None


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        return tuple(convert(item) for item in value) if isinstance(value, list) else value

    return {key: convert(value) for key, value in fields.items()}


def run_split(record: dict[str, Any], run: RunFolder, release: Release) -> Split:
    """The split the run was trained and tested on, found by the hash its
    record holds (never re-drawn): the official split of `release`, or a thesis split file in the runs
    folder's splits/."""
    wanted = record["split"]["hash"]
    if record["split"]["name"] == "official":
        candidates = [official_split(release)]
    else:
        candidates = [load_split(path) for path in sorted(run.runs.splits.glob("*.json"))]
    for split in candidates:
        if split.split_hash() == wanted:
            return split
    raise RecordError(f"run {run.label}: its {record['split']['name']} split (hash {wanted[:12]}) is neither the "
                      f"release's official split nor a split file in {run.runs.splits}")
