"""What a detector produces for one poster (`Detections`), and the padding of many posters' detections
into batch["objects"] (`pad_detections`; the format is described in `thesis_lib.data.batch`).

Every producer of detections (YOLO, Faster R-CNN, the twin's true boxes as the oracle) returns
`Detections`; `DetectionTable.from_detections` pads a whole release with `pad_detections`, so a batch
made from a table and one padded directly hold the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from thesis_lib.data.batch import OBJECT_DTYPES


class Detections(NamedTuple):
    """One poster's detections (R may be 0)."""

    boxes: Tensor  # (R, 4) float, normalised xyxy
    classes: Tensor  # (R,) int64, contiguous class ids
    scores: Tensor  # (R,) float in [0, 1]


def pad_detections(detections: Sequence[Detections], max_regions: int | None = None) -> dict[str, Tensor]:
    """Per-poster detections -> batch["objects"] {"boxes" (B, R, 4), "classes", "scores", "mask" (B, R)}.

    Each row keeps its poster's `max_regions` highest-scored detections, sorted by score (a stable sort:
    ties keep the detector's order), padded with zeros and mask False to R = `max_regions` rows (default:
    the most detections any poster has)."""
    regions = max((len(d.classes) for d in detections), default=0) if max_regions is None else max_regions
    size = len(detections)
    objects = {
        "boxes": torch.zeros(size, regions, 4, dtype=OBJECT_DTYPES["boxes"]),  # (B, R, 4)
        "classes": torch.zeros(size, regions, dtype=OBJECT_DTYPES["classes"]),  # (B, R)
        "scores": torch.zeros(size, regions, dtype=OBJECT_DTYPES["scores"]),  # (B, R)
        "mask": torch.zeros(size, regions, dtype=OBJECT_DTYPES["mask"]),  # (B, R)
    }
    for row, poster in enumerate(detections):
        count = len(poster.classes)
        if not (poster.boxes.shape == (count, 4) and poster.scores.shape == (count,)):
            raise ValueError(
                f"detections of poster {row}: boxes {tuple(poster.boxes.shape)}, "
                f"classes {tuple(poster.classes.shape)}, scores {tuple(poster.scores.shape)} "
                f"do not describe the same {count} regions"
            )
        keep = torch.argsort(poster.scores, descending=True, stable=True)[:regions]  # (kept,) top-R by score
        kept = len(keep)
        objects["boxes"][row, :kept] = poster.boxes[keep]  # (kept, 4)
        objects["classes"][row, :kept] = poster.classes[keep]  # (kept,)
        objects["scores"][row, :kept] = poster.scores[keep]  # (kept,)
        objects["mask"][row, :kept] = True
    return objects
