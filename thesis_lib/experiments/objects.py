"""Where a run's detections come from: `thesis_lib.detection`, asked once per grid and object source.

The registry's object configs name a source ("yolo", "frcnn", "oracle"); the detector that source means
in this profile's size is `detection.default_detector_config(source, size)`: trained on the twin's boxes
for "small", COCO weights for "full". `detections_for_release` runs (and, the first time, trains) it over
every poster of the release and caches the table, so every run and seed reads the same detections. A
detector trained on the twin learns from the train part of the split being scored, never from its test part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from thesis_lib.data.mmimdb import Release
from thesis_lib.data.splits import Split
from thesis_lib.detection import default_detector_config, detections_for_release


@dataclass
class ObjectsProvider:
    """Detections of one source for every poster of the release, batched as `batch["objects"]`."""

    source: str  # "yolo" | "frcnn" | "oracle"
    table: Any  # thesis_lib.detection.DetectionTable

    @classmethod
    def create(cls, source: str, release: Release, model_size: str, split: Split) -> ObjectsProvider:
        """The detections of `source`; a detector trained here learns from `split`'s train part only."""
        config = default_detector_config(source, model_size)
        return cls(source, detections_for_release(config, release, split=split))

    def objects(self, ids: list[str]) -> dict[str, torch.Tensor]:
        """{"boxes", "classes", "scores", "mask"} padded to the table's R regions, rows in `ids` order."""
        return self.table.objects(ids)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.table.vocabulary

    def provenance(self) -> dict[str, Any]:
        """What the record says about the detector (its config, training report, timings)."""
        return {"source": self.table.source, "classes": len(self.table.vocabulary),
                "max_regions": self.table.max_regions, **dict(self.table.provenance)}
