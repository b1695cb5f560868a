"""The oracle object source: the twin's true boxes, delivered in exactly the format a detector's are.

A perfect detector (every planted object found, exact box, score 1, nothing else) bounds what any
detector can add to genre classification: the gap between `objects_oracle` and `objects_yolo` is the
price of imperfect detection. It exists only for the synthetic twin and only for that ablation; it is
never the default object source. It is computed from twin_truth.json on every call (about a second for
2,000 posters), so it needs no cache and can never be stale.
"""

from __future__ import annotations

from pathlib import Path

from thesis_lib.data.mmimdb import Release
from thesis_lib.detection.config import DetectorConfig
from thesis_lib.detection.features import DetectionTable
from thesis_lib.detection.truth import load_truth_boxes, truth_file
from thesis_lib.detection.vocab import twin_classes


def oracle_table(config: DetectorConfig, release: Release, truth_path: Path | str | None = None) -> DetectionTable:
    """Every poster's true objects as a DetectionTable (normalised boxes, twin class ids, score 1).

    A poster with more than `config.max_regions` objects keeps the first R in the truth file's order
    (all scores tie at 1); the twin draws at most 12, below the default R of 16.
    """
    vocabulary = twin_classes()
    ids = release.ids
    truth = load_truth_boxes(release, ids, vocabulary, truth_path)
    return DetectionTable.from_detections(
        ids, [truth[movie_id].as_detections() for movie_id in ids], config.max_regions, vocabulary, config.name,
        provenance={"source": "oracle", "truth_file": str(truth_file(release, truth_path))},
    )
