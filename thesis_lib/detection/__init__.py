"""Object detection as auxiliary poster features: YOLO (ultralytics) and Faster R-CNN (torchvision).

Detectors are frozen feature extractors. Each poster's detections (`Detections`) are computed once,
cached as a `DetectionTable`, and handed to the models as batch["objects"] (boxes, classes, scores, mask;
top-R by score; the format is in `thesis_lib.data.batch`), which `models.object_encoder` turns into region
tokens and the fixed detection summary (per class count, max score, covered area; people count).

    from thesis_lib.detection import DetectorConfig, detections_for_release
    table = detections_for_release(DetectorConfig(kind="yolo", weights="twin"), release)
    batch["objects"] = table.objects(batch["ids"])     # or MultimodalCollator(..., objects=table)

Full profile: COCO-pretrained YOLOv8n / Faster R-CNN R50-FPN (weights="coco"; see `vocab` for what COCO
can and cannot name). Offline: both are trained on the synthetic twin's boxes (weights="twin"), cached by
data fingerprint and config. The "oracle" source reads the twin's true boxes (ablation upper bound).
ultralytics is imported only when a YOLO is built.
"""

from thesis_lib.detection.config import (
    FRCNN_TRAINING,
    YOLO_TRAINING,
    DetectorConfig,
    TwinTraining,
    default_detector_config,
)
from thesis_lib.detection.detections import Detections, pad_detections
from thesis_lib.detection.evaluate import MapResult, average_precision, detection_map50
from thesis_lib.detection.features import DetectionTable
from thesis_lib.detection.pipeline import (
    DETECTOR_BACKENDS,
    Detector,
    DetectorBackend,
    coco_standin,
    detections_for_release,
    detector_standin,
    evaluate_detector,
    get_detector,
    source_detections,
)
from thesis_lib.detection.vocab import coco_classes, twin_classes

__all__ = [
    "DETECTOR_BACKENDS",
    "FRCNN_TRAINING",
    "YOLO_TRAINING",
    "DetectionTable",
    "Detections",
    "Detector",
    "DetectorBackend",
    "DetectorConfig",
    "MapResult",
    "TwinTraining",
    "average_precision",
    "coco_classes",
    "default_detector_config",
    "detection_map50",
    "detections_for_release",
    "coco_standin",
    "detector_standin",
    "evaluate_detector",
    "get_detector",
    "pad_detections",
    "source_detections",
    "twin_classes",
]
