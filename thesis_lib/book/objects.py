"""What the methods chapter shows about the object detectors: their weights in words, their quality, and
their detections on a few posters in the format the models read.

The detectors themselves (training on the twin, COCO weights, caching) belong to `thesis_lib.detection`;
this module only asks them for detections and scores them with its `evaluate_detector`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from thesis_lib import plots
from thesis_lib.detection import DetectionTable, coco_standin, evaluate_detector

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from thesis_lib.data.mmimdb import Release
    from thesis_lib.detection import Detector

DETECTOR_NAMES = {"yolo": "YOLOv8n", "frcnn": "Faster R-CNN"}  # how the prose names each kind


def detector_weights(detector: Detector) -> str:
    """Where a detector's weights come from, in a few words (for captions and tables)."""
    config = detector.config
    name = DETECTOR_NAMES.get(config.kind, config.kind)
    if config.weights == "coco":  # a rehearsal's stand-in is never called pretrained
        return f"{name}, COCO-pretrained" if coco_standin(config) is None else f"{name}, a random COCO stand-in"
    report = detector.training_report or {}
    epochs = config.training.epochs if config.training is not None else "?"
    return f"{name}, trained here from scratch on {report.get('train_posters', '?'):,} twin training posters " \
           f"({epochs} epochs)"


def detector_table(detectors: Mapping[str, Detector], release: Release, test_ids: Sequence[str] | None) -> pd.DataFrame:
    """One row per detector: weights ("twin" | "coco"), parameters, training time and dev mAP@0.5 (when
    trained here), and mAP@0.5 on `test_ids` (None: not measurable, e.g. MM-IMDb has no true boxes)."""
    import pandas as pd


    rows = {}
    for kind, detector in detectors.items():
        report = detector.training_report or {}
        test_map = evaluate_detector(detector, release, test_ids).map50 if test_ids else math.nan
        rows[DETECTOR_NAMES.get(kind, kind)] = {
            "weights": detector.config.weights,  # "twin" (trained here) or "coco" (pretrained)
            "parameters": f"{detector.num_parameters / 1e6:.1f}M",
            "training (s)": round(report["train_seconds"]) if "train_seconds" in report else None,
            "dev mAP@0.5": report.get("dev_map50", math.nan),
            "test mAP@0.5": test_map,
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(3)


def objects_batch(detector: Detector, ids: Sequence[str], posters: Sequence[Any]) -> dict[str, torch.Tensor]:
    """batch["objects"] for the posters `ids`, padded to the detector's max_regions like the experiment
    grid's cached tables (thesis_lib.detection.DetectionTable)."""
    table = DetectionTable.from_detections(list(ids), detector.detect(list(posters)), detector.config.max_regions,
                                           detector.vocabulary, detector.config.name)
    return table.objects(list(ids))


def map_sentence(table: pd.DataFrame, test_ids: Sequence[str] | None) -> str:
    """The prose's sentence about the test mAP of `detector_table` (lower case: it follows a semicolon)."""
    if not test_ids:
        return "mAP needs true boxes, which only the synthetic twin has, so it is not measured on MM-IMDb."
    scores = " and ".join(f"{name} {row['test mAP@0.5']:.2f}" for name, row in table.iterrows())
    return f"on {len(test_ids)} test posters of the twin, mAP@0.5 is {scores}."


def detections_figure(detectors: Mapping[str, Detector], ids: Sequence[str], posters: Sequence[Any]) -> Figure:
    """One row per detector: its detections (as the models receive them) drawn on `posters`."""
    images, boxes, labels, scores, titles = [], [], [], [], []
    for kind, detector in detectors.items():
        for movie_id, poster, found in zip(ids, posters, detector.detect(list(posters)), strict=True):
            images.append(poster)
            boxes.append(found.boxes.numpy())  # (K, 4) normalised xyxy
            labels.append([detector.vocabulary[c] for c in found.classes.tolist()])
            scores.append(found.scores.numpy())  # (K,)
            titles.append(f"{DETECTOR_NAMES.get(kind, kind)}: {movie_id}")
    return plots.detections_on_posters(images, boxes, labels, scores, titles, columns=len(ids))
