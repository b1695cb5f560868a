"""Detections of a whole release as padded arrays, and the batch entries the models read from them.

A `DetectionTable` holds, for every poster id, its top-R detections (R = DetectorConfig.max_regions),
padded to exactly R by `detections.pad_detections`. `table.objects(ids)` returns batch["objects"] in the
format of `thesis_lib.data.batch` (boxes (B, R, 4), classes, scores, mask (B, R)), so a table is what the
collators of `data.batch` take as their `objects` source.

R is fixed rather than the batch's largest count, so every batch has the same shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from thesis_lib.detection.detections import Detections, pad_detections
from thesis_lib.detection.vocab import PERSON


@dataclass(frozen=True, eq=False)
class DetectionTable:
    """Every poster's top-R detections from one object source (see the module docstring)."""

    ids: tuple[str, ...]  # poster ids, one row each
    boxes: np.ndarray  # (N, R, 4) float32 normalised xyxy; zeros where mask is False
    classes: np.ndarray  # (N, R) int64 ids of `vocabulary`; 0 where mask is False
    scores: np.ndarray  # (N, R) float32 in [0, 1], sorted descending per row; 0 where mask is False
    mask: np.ndarray  # (N, R) bool, True = a real detection
    vocabulary: tuple[str, ...]  # class names, in id order
    source: str  # DetectorConfig.name of the detector that produced it
    provenance: Mapping[str, Any] = field(default_factory=dict)  # how it was made: detector, timings, dev mAP

    def __post_init__(self) -> None:
        count, regions = self.mask.shape
        if len(self.ids) != count or self.boxes.shape != (count, regions, 4) or self.classes.shape != (count, regions) \
                or self.scores.shape != (count, regions):
            raise ValueError(
                f"detection table of {self.source}: {len(self.ids)} ids, boxes {self.boxes.shape}, classes "
                f"{self.classes.shape}, scores {self.scores.shape}, mask {self.mask.shape} do not agree")
        if len(set(self.ids)) != count:
            raise ValueError(f"detection table of {self.source} lists a poster id twice")

    @classmethod
    def from_detections(cls, ids: Sequence[str], detections: Sequence[Detections], max_regions: int,
                        vocabulary: tuple[str, ...], source: str,
                        provenance: Mapping[str, Any] | None = None) -> DetectionTable:
        """Keep each poster's `max_regions` highest-scored detections, sorted by score, padded to that many rows."""
        if len(ids) != len(detections):
            raise ValueError(f"{len(ids)} poster ids but {len(detections)} detection lists")
        padded = pad_detections(detections, max_regions)  # (N, R, ...) tensors, top-R by score
        boxes, classes, scores, mask = (padded[key].numpy() for key in ("boxes", "classes", "scores", "mask"))
        return cls(tuple(ids), boxes, classes, scores, mask, tuple(vocabulary), source, dict(provenance or {}))

    @property
    def max_regions(self) -> int:
        return self.mask.shape[1]

    @property
    def person_class(self) -> int | None:
        """The id of "person" in this vocabulary (the people count), or None when it has none."""
        return self.vocabulary.index(PERSON) if PERSON in self.vocabulary else None

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {movie_id: row for row, movie_id in enumerate(self.ids)}

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """Row indices of `ids`; an id without detections is an error, never a silent empty row."""
        try:
            return np.array([self._rows[movie_id] for movie_id in ids], dtype=np.int64)
        except KeyError as error:
            raise KeyError(f"poster {error.args[0]!r} is not in the {self.source} detection table "
                           f"({len(self.ids)} posters): was it computed for another release?") from None

    def detections(self, movie_id: str) -> Detections:
        """One poster's real detections (padding removed)."""
        row = self.rows([movie_id])[0]
        keep = self.mask[row]
        return Detections(torch.from_numpy(self.boxes[row][keep]), torch.from_numpy(self.classes[row][keep]),
                          torch.from_numpy(self.scores[row][keep]))

    def objects(self, ids: Sequence[str]) -> dict[str, Tensor]:
        """batch["objects"] for `ids`, in that order (format: `thesis_lib.data.batch`)."""
        rows = self.rows(ids)
        return {
            "boxes": torch.from_numpy(self.boxes[rows]),  # (B, R, 4)
            "classes": torch.from_numpy(self.classes[rows]),  # (B, R)
            "scores": torch.from_numpy(self.scores[rows]),  # (B, R)
            "mask": torch.from_numpy(self.mask[rows]),  # (B, R)
        }

    def describe(self) -> dict[str, Any]:
        """What a run record says about these detections: source, number of classes, R, and how they were
        made (detector config, training report, timings)."""
        return {"source": self.source, "classes": len(self.vocabulary), "max_regions": self.max_regions,
                **dict(self.provenance)}
