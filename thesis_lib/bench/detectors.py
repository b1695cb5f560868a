"""Detector throughput, reported apart from the encoders: detections are computed once per poster and cached.

Faster R-CNN is timed as the project runs it (`thesis_lib.detection.frcnn`: torchvision's model with
min/max size near the poster's, float32, a list of posters per call), full form R50-FPN (random weights:
no COCO file offline) or the small twin detector. Random weights propose random boxes, so the
post-processing share (NMS over proposals) is only indicative. YOLO needs ultralytics, which the GPU
machine lacks; it is reported as skipped there.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from thesis_lib.bench.hardware import PeakMemory
from thesis_lib.bench.timing import time_steps
from thesis_lib.detection.config import DetectorConfig
from thesis_lib.detection.frcnn import MAX_ASPECT, build_twin_frcnn, coco_detector
from thesis_lib.models.flops import count_flops

TWIN_CLASSES = 16  # the small detector's vocabulary size (a few dozen kinds at most on the twin)


def frcnn_throughput(size: str, *, batch_size: int, image_size: int, warmup: int, steps: int,
                     device: torch.device) -> dict[str, Any]:
    """Posters per second through Faster R-CNN in inference mode (`size` "full": R50-FPN, "small": twin)."""
    config = DetectorConfig(kind="frcnn", weights="coco" if size == "full" else "twin", image_size=image_size)
    torch.manual_seed(0)
    if size == "full":
        model = coco_detector(config, weights=None).model  # R50-FPN, random weights
    else:
        model = build_twin_frcnn(TWIN_CLASSES, config)
    model = model.to(device).eval()
    height = round(MAX_ASPECT * image_size)
    posters = [torch.rand(3, height, image_size, device=device) for _ in range(batch_size)]  # (3, H, W) in [0, 1]

    def detect() -> Any:
        with torch.inference_mode():
            return model(posters)

    flops = count_flops(detect)  # convolutions and box-head matmuls; RoIAlign and NMS have no FLOP formula
    memory = PeakMemory(device)
    memory.reset()
    timing = time_steps(detect, warmup=warmup, steps=steps, device=device)
    return {
        "name": f"detect frcnn ({'R50-FPN' if size == 'full' else 'twin'})",
        "detector": "frcnn",
        "size": size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "poster_size": [image_size, height],
        "batch_size": batch_size,
        "precision": "float32 (as the detection pipeline runs it)",
        "timing": timing.to_dict(),
        "posters_per_s": batch_size / timing.seconds_per_step,
        "flops_per_step": flops,
        "achieved_tflops": flops / timing.seconds_per_step / 1e12,
        **memory.to_dict(),
    }


def yolo_status() -> dict[str, Any]:
    """YOLO is not timed by this benchmark: say whether it could run here at all."""
    available = importlib.util.find_spec("ultralytics") is not None
    reason = ("not timed: ultralytics' own predictor runs it (thesis_lib.detection.yolo)" if available
              else "skipped: ultralytics is not installed on this machine")
    return {"name": "detect yolo", "detector": "yolo", "status": reason}
