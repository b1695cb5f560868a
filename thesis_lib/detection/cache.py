"""Where trained detectors and computed detections live, and how they are written without half-files.

    <cache>/detectors/<name>/<key>/weights.safetensors, meta.json   a detector trained on the twin
    <cache>/detectors/coco/<file>                                    YOLO's COCO checkpoints (torchvision: TORCH_HOME)
    <cache>/detections/<name>/<key>.safetensors                      one table per (detector, release, output filter)

A detector's key hashes its config's model fields, its vocabulary and, when trained on the twin, the
release fingerprint and the truth file's digest; a table's key adds the release fingerprint and the
output filter (top-R, score threshold, NMS). Folders are built under a temporary name and renamed when
complete, so an interrupted run leaves nothing that a later run could mistake for a finished one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file, save_file

from thesis_lib.detection.features import DetectionTable
from thesis_lib.errors import ThesisError
from thesis_lib.paths import cache_dir
from thesis_lib.storage import atomic_write

META_FILE = "meta.json"


def detector_dir(name: str, key: str) -> Path:
    return cache_dir() / "detectors" / name / key


def table_path(name: str, key: str) -> Path:
    return cache_dir() / "detections" / name / f"{key}.safetensors"


@contextmanager
def building(final_dir: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final_dir`; it becomes `final_dir` only if the block succeeds."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    work.chmod(0o755)  # mkdtemp's private 0700 would outlive the rename
    try:
        yield work
        if final_dir.exists():  # another process finished the same build meanwhile: keep its result
            shutil.rmtree(work)
        else:
            work.rename(final_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ThesisError(f"{path}: unreadable detector metadata ({error}); delete {folder} to retrain") from error


def save_table(table: DetectionTable, path: Path) -> None:
    """Write a table as one safetensors file: the padded arrays; ids, vocabulary, provenance as metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ids": json.dumps(list(table.ids)), "vocabulary": json.dumps(list(table.vocabulary)),
                "source": table.source, "provenance": json.dumps(dict(table.provenance), sort_keys=True)}
    arrays = {"boxes": table.boxes, "classes": table.classes, "scores": table.scores, "mask": table.mask}
    atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))


def load_table(path: Path) -> DetectionTable:
    """Read a table written by `save_table`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        arrays = load_file(str(path))
        return DetectionTable(
            ids=tuple(json.loads(metadata["ids"])), boxes=arrays["boxes"], classes=arrays["classes"],
            scores=arrays["scores"], mask=arrays["mask"].astype(bool),  # older caches stored uint8
            vocabulary=tuple(json.loads(metadata["vocabulary"])), source=metadata["source"],
            provenance=json.loads(metadata["provenance"]),
        )
    except (OSError, KeyError, ValueError) as error:
        raise ThesisError(f"{path}: unreadable detection table ({error}); delete it to recompute") from error
