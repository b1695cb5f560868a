"""Run records on disk: one folder per (split, run, seed), written so that a finished run is unmistakable.

    RUNS/<run>/seed<k>/                 runs of the primary split (RUNS/<split>/<run>/seed<k>/ for the others)
        record.json                     `RunRecord`: config + hash, metrics, budget, provenance (written last)
        predictions_dev.npz             ids, probabilities, labels of the dev split (late fusion, thresholds)
        predictions_test.npz            the same for the test split (the results table, bootstrap intervals)
        checkpoints/                    best/ and last/ weights (safetensors) of trained runs
        pending.json                    the config hash of a run in progress (lets an interrupted run resume)
        error.txt                       the traceback of the latest failed attempt

In record.json, `config` is what decides the run (the recipe, overrides, training settings and, for a
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

from thesis_lib.errors import ThesisError
from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.configs import (
    FusionConfig,
    ImageEncoderConfig,
    ModelConfig,
    ObjectEncoderConfig,
    TextEncoderConfig,
)
from thesis_lib.storage import atomic_write
from thesis_lib.train.results import Predictions

SPLITS_FOLDER = "splits"  # RUNS/splits/: the thesis split files the grid made (reused on later runs)

RECORD_FORMAT = 1
RECORD_FILE = "record.json"
PREDICTIONS_DEV = "predictions_dev.npz"
PREDICTIONS_TEST = "predictions_test.npz"
CHECKPOINTS = "checkpoints"
PENDING_FILE = "pending.json"
ERROR_FILE = "error.txt"


class RecordError(ThesisError, ValueError):
    """A run folder whose files are unreadable or do not belong together."""


def run_dir(runs_root: Path, *, split: str, primary_split: str, name: str, seed: int) -> Path:
    """RUNS/<name>/seed<k> for the primary split, RUNS/<split>/<name>/seed<k> for any other."""
    base = runs_root if split == primary_split else runs_root / split
    return base / name / f"seed{seed}"


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Strict JSON (NaN refused: convert it to null first), written atomically."""
    text = json.dumps(content, indent=1, allow_nan=False, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
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


def read_record(directory: Path) -> dict[str, Any] | None:
    """The record of a run folder, or None when the run has not finished."""
    path = directory / RECORD_FILE
    return read_json(path) if path.is_file() else None


def is_finished(directory: Path, *, config_hash: str, data_fingerprint: str, split_hash: str) -> bool:
    """True when the folder holds a record of this very config on this very data and split."""
    try:
        record = read_record(directory)
    except RecordError:
        return False  # unreadable: rerun rather than trust it
    return (
        record is not None
        and record.get("config_hash") == config_hash
        and record.get("data", {}).get("fingerprint") == data_fingerprint
        and record.get("split", {}).get("hash") == split_hash
        and (directory / PREDICTIONS_TEST).is_file()
        and (directory / PREDICTIONS_DEV).is_file()
    )


def start_run(directory: Path, config_hash: str) -> bool:
    """Prepare a folder for a (re)run; returns True when an interrupted run of this config may resume.

    A stale record and predictions go first, so a crash from here on never leaves files that look like a
    finished run; checkpoints of another config go too (they must not be resumed into this one).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in (RECORD_FILE, PREDICTIONS_TEST, PREDICTIONS_DEV, ERROR_FILE):
        (directory / name).unlink(missing_ok=True)
    pending = directory / PENDING_FILE
    resumable = pending.is_file() and _pending_hash(pending) == config_hash
    if not resumable:
        shutil.rmtree(directory / CHECKPOINTS, ignore_errors=True)
        write_json(pending, {"config_hash": config_hash})
    return resumable


def _pending_hash(path: Path) -> str | None:
    try:
        return read_json(path).get("config_hash")
    except RecordError:
        return None


def finish_run(directory: Path, record: dict[str, Any], dev: Predictions, test: Predictions) -> None:
    """Write predictions, then the record (last: its presence marks the run finished)."""
    write_predictions(directory / PREDICTIONS_DEV, dev)
    write_predictions(directory / PREDICTIONS_TEST, test)
    write_json(directory / RECORD_FILE, json_safe(record))
    (directory / PENDING_FILE).unlink(missing_ok=True)


def write_error(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / ERROR_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def iter_records(runs_dir: Path, seeds: Sequence[int] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(folder, record) of every finished run directly under runs_dir (RUNS/<run>/seed<k>/record.json);
    with `seeds`, only the runs of those seeds (a book built for a profile shows that profile's seeds, even
    when the folder also holds runs of other seeds)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise RecordError(f"{runs_dir}: no such runs folder")
    wanted = None if seeds is None else {int(seed) for seed in seeds}
    for path in sorted(runs_dir.glob(f"*/seed*/{RECORD_FILE}")):
        record = read_json(path)
        if wanted is None or int(record["seed"]) in wanted:
            yield path.parent, record


def tuned_thresholds(record: dict[str, Any], policy: str = "tuned_per_genre") -> np.ndarray:
    """The (23,) thresholds a record's policy decided with (chosen on the dev split)."""
    per_genre = record["metrics"][policy]["per_genre"]
    return np.array([per_genre[genre]["threshold"] for genre in per_genre], dtype=np.float64)


def model_config_from_dict(content: dict[str, Any]) -> ModelConfig:
    """A record's `model_config` (JSON) back to the `ModelConfig` the run built (lists become tuples)."""
    parts = {"text": TextEncoderConfig, "image": ImageEncoderConfig, "objects": ObjectEncoderConfig}
    values = {name: None if content.get(name) is None else kind(**_tuples(content[name]))
              for name, kind in parts.items()}
    return ModelConfig(name=content["name"], fusion=FusionConfig(**content["fusion"]),
                       head_dropout=content["head_dropout"], **values)


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        return tuple(convert(item) for item in value) if isinstance(value, list) else value

    return {key: convert(value) for key, value in fields.items()}


def run_split(record: dict[str, Any], folder: Path, release: Any) -> Any:
    """The split (`thesis_lib.data.splits.Split`) the run in `folder` was trained and tested on, found by the
    hash its record holds (never re-drawn): the official split of `release`, or a thesis split file under
    the runs folder's `splits/` (RUNS/<model>/seed<k> for the primary split, RUNS/<split>/<model>/seed<k>
    for another one)."""
    from thesis_lib.data.splits import load_split, official_split

    wanted = record["split"]["hash"]
    if record["split"]["name"] == "official":
        candidates = [official_split(release)]
    else:
        folders = [Path(folder).parents[level] / SPLITS_FOLDER for level in (1, 2) if len(Path(folder).parents) > level]
        candidates = [load_split(path) for splits in folders for path in sorted(splits.glob("*.json"))]
    for split in candidates:
        if split.split_hash() == wanted:
            return split
    raise RecordError(f"run {folder}: its {record['split']['name']} split (hash {wanted[:12]}) is neither the "
                      f"release's official split nor a split file under the runs folder's {SPLITS_FOLDER}/")

