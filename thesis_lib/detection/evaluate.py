"""Detection quality: VOC-style average precision at IoU 0.5 (mAP@0.5), the same number for every detector.

ultralytics reports its own mAP50 for YOLO, but Faster R-CNN and the oracle need one too, and the book
compares them: this is the Pascal VOC (2010+) definition, small enough to test by hand.

Per class, the detections of all posters are ranked by score. Going down the ranking, a detection is a
true positive when its best-overlapping true box of that class on the same poster has IoU >= 0.5 and has
not been claimed by a higher-scored detection; otherwise (no overlap, or a duplicate) it is a false
positive. AP is the area under the precision-recall curve after making precision monotone (all-point
interpolation). mAP averages AP over the classes that occur in the truth: a class that never occurs has
no recall to measure and is left out (as in VOC and COCO), so its false positives do not count;
`per_class` says which classes were scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from thesis_lib.detection.detections import Detections

MAP_IOU = 0.5


@dataclass(frozen=True)
class MapResult:
    """mAP@0.5 over the classes present in the truth, and each class's AP."""

    map50: float  # mean of per_class; nan when no class occurs in the truth
    per_class: dict[int, float]  # class id -> AP, only classes with at least one true box
    num_posters: int
    num_true_boxes: int


def average_precision(scores: np.ndarray, true_positive: np.ndarray, num_true: int) -> float:
    """All-point interpolated AP of one class from its detections' scores and TP flags (any order)."""
    if num_true <= 0:
        raise ValueError("average precision is undefined for a class without true boxes")
    order = np.argsort(-scores, kind="stable")  # highest score first; ties keep their given order
    hits = true_positive[order].astype(np.float64)  # (N,)
    tp, fp = np.cumsum(hits), np.cumsum(1.0 - hits)  # (N,) each
    recall = tp / num_true  # (N,)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)  # (N,)
    recall = np.concatenate([[0.0], recall, [1.0]])  # (N + 2,)
    precision = np.concatenate([[0.0], precision, [0.0]])  # (N + 2,)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    steps = np.flatnonzero(recall[1:] != recall[:-1])  # where recall grows
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def detection_map50(predictions: Sequence[Detections], truths: Sequence[Detections],
                    iou_threshold: float = MAP_IOU) -> MapResult:
    """VOC mAP of `predictions` against `truths` (one Detections per poster, same order, same box units).

    The truth's `scores` are ignored. Boxes may be normalised or in pixels, as long as both sides agree.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} posters of predictions but {len(truths)} posters of truth")
    true_classes = torch.cat([truth.classes for truth in truths]) if truths else torch.zeros(0, dtype=torch.long)
    per_class = {}
    for class_id in sorted(set(true_classes.tolist())):
        scores, hits, num_true = [], [], 0
        for predicted, truth in zip(predictions, truths, strict=False):
            true_boxes = truth.boxes[truth.classes == class_id].float()  # (T, 4)
            keep = predicted.classes == class_id
            boxes, box_scores = predicted.boxes[keep].float(), predicted.scores[keep].float()  # (P, 4), (P,)
            num_true += len(true_boxes)
            scores.append(box_scores.numpy())
            hits.append(_match(boxes, box_scores, true_boxes, iou_threshold))
        per_class[class_id] = average_precision(np.concatenate(scores), np.concatenate(hits), num_true)
    map50 = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return MapResult(map50=map50, per_class=per_class, num_posters=len(truths), num_true_boxes=len(true_classes))


def _match(boxes: torch.Tensor, scores: torch.Tensor, true_boxes: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """TP flags of one poster's detections of one class, matched greedily by descending score (VOC rule)."""
    hits = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(true_boxes) == 0:
        return hits
    overlaps = box_iou(boxes, true_boxes)  # (P, T)
    claimed = np.zeros(len(true_boxes), dtype=bool)
    for index in torch.argsort(scores, descending=True, stable=True).tolist():
        best = int(overlaps[index].argmax())
        if float(overlaps[index, best]) >= iou_threshold and not claimed[best]:
            claimed[best] = hits[index] = True
    return hits
