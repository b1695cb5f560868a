"""What a detector is and how it is trained: typed, frozen, and hashable into cache keys.

Two profiles share one config. Full profile: `weights="coco"`, pretrained YOLOv8n or Faster R-CNN R50-FPN
(a COCO-80 vocabulary). Smoke profile (offline, no COCO weights exist here): `weights="twin"`, the same
detector families trained from scratch on the synthetic twin's own box annotations (training posters
only), with a small budget that still reaches mAP@0.5 of about 0.9 on the twin's dev posters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DETECTOR_KINDS = ("yolo", "frcnn", "oracle")
WEIGHT_SOURCES = ("coco", "twin")


@dataclass(frozen=True)
class TwinTraining:
    """How a detector learns the twin's object kinds from scratch (weights="twin")."""

    train_posters: int = 1200  # at most this many training posters, a seeded subsample (1200 = all of the default twin)
    epochs: int = 3  # passes over those posters
    batch_size: int = 16  # posters per optimiser step
    learning_rate: float = 0.003  # AdamW peak learning rate
    seed: int = 0  # subsample, initialisation, augmentation order

    def __post_init__(self) -> None:
        for name in ("train_posters", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TwinTraining.{name} must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"TwinTraining.learning_rate must be positive, got {self.learning_rate}")


# Measured on the default 2,000-movie twin (1,200 training posters), 2 shared CPU cores: YOLOv8n trains in
# ~105 s to a dev VOC mAP@0.5 of 0.89 (ultralytics' own: 0.94), the tiny Faster R-CNN in ~85 s to 0.96.
# YOLO's mosaic augmentation wants one pass more; Faster R-CNN learns from fewer, smaller batches.
YOLO_TRAINING = TwinTraining(epochs=3, batch_size=16, learning_rate=0.003)
FRCNN_TRAINING = TwinTraining(epochs=2, batch_size=8, learning_rate=0.002)


@dataclass(frozen=True)
class DetectorConfig:
    """One object source: which detector, which weights, and what of its output reaches the model."""

    kind: str = "yolo"  # "yolo" | "frcnn" | "oracle" (the twin's true boxes: an upper bound, never the default)
    weights: str = "twin"  # "coco": pretrained weight file (full profile); "twin": trained here on the twin's boxes
    image_size: int = 224  # YOLO: side of the letterboxed square; Faster R-CNN: shorter side (longer <= 1.5x)
    max_regions: int = 16  # top-R detections by score kept per poster (the region tokens)
    score_threshold: float = 0.25  # detections scored lower are dropped
    nms_iou: float = 0.6  # boxes of one class overlapping more than this are merged by non-maximum suppression
    coco_model: str = "yolov8n.pt"  # YOLO + "coco" only: the ultralytics checkpoint (yolov8n.pt, yolo11n.pt, ...)
    training: TwinTraining | None = field(default=None)  # "twin" only; None: YOLO_TRAINING / FRCNN_TRAINING
    batch_size: int = 32  # posters per detection call (memory only; results do not depend on it)

    def __post_init__(self) -> None:
        if self.kind not in DETECTOR_KINDS:
            raise ValueError(f"DetectorConfig.kind must be one of {DETECTOR_KINDS}, got {self.kind!r}")
        if self.weights not in WEIGHT_SOURCES:
            raise ValueError(f"DetectorConfig.weights must be one of {WEIGHT_SOURCES}, got {self.weights!r}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(
                f"DetectorConfig.image_size must be a multiple of 32 (YOLO's stride), got {self.image_size}")
        if self.max_regions < 1:
            raise ValueError(f"DetectorConfig.max_regions must be at least 1, got {self.max_regions}")
        for name in ("score_threshold", "nms_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DetectorConfig.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.training is None and self.kind != "oracle" and self.weights == "twin":
            object.__setattr__(self, "training", YOLO_TRAINING if self.kind == "yolo" else FRCNN_TRAINING)

    @property
    def name(self) -> str:
        """Short label for logs and cache folders: "yolo-twin", "frcnn-coco", "oracle"."""
        return "oracle" if self.kind == "oracle" else f"{self.kind}-{self.weights}"

    def model_fields(self) -> dict[str, Any]:
        """The fields that decide the detector's weights (not how its output is filtered)."""
        fields: dict[str, Any] = {"kind": self.kind, "weights": self.weights, "image_size": self.image_size}
        if self.kind == "yolo" and self.weights == "coco":
            fields["coco_model"] = self.coco_model
        if self.weights == "twin" and self.training is not None:
            fields["training"] = dataclasses.asdict(self.training)
        return fields

    def output_fields(self) -> dict[str, Any]:
        """The fields that decide which detections are kept."""
        return {"max_regions": self.max_regions, "score_threshold": self.score_threshold, "nms_iou": self.nms_iou}


def default_detector_config(kind: str, size: str) -> DetectorConfig:
    """The object source the model registry's sizes assume: "small" = trained on the twin, "full" = COCO."""
    if size not in ("small", "full"):
        raise ValueError(f"unknown model size {size!r}; expected 'small' or 'full'")
    return DetectorConfig(kind=kind, weights="twin" if size == "small" else "coco")
