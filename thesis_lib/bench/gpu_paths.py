"""Does each product path that can use a GPU run on it? Detection, feature extraction and explanations, with
random weights, on the device `machine.choose_device` picks for the full profile.

Each check returns one entry {"check", "ok", "device", ...}: where the work ran and where its outputs
landed. A check whose package this machine lacks (ultralytics for YOLO, pytorch-grad-cam for Grad-CAM) is
returned as skipped with the reason, never as passed. Checks are small: they show a path runs on the device
and keeps its outputs where the callers expect them, not how fast (the other sections time that).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from thesis_lib import machine
from thesis_lib.bench.batches import BatchShape, synthetic_batch
from thesis_lib.bench.product import Product
from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.mmimdb import Movie
from thesis_lib.detection import DetectorConfig, twin_classes
from thesis_lib.detection.frcnn import FrcnnDetector, build_twin_frcnn, coco_detector, twin_label_map
from thesis_lib.experiments.pipeline import SingleEncoder, image_transforms, raw_dataset
from thesis_lib.train.features import FeatureCacheConfig, cache_encoder_features
from thesis_lib.xai.attention import explain_attention

PRECISION_NAMES = {"bf16": "bfloat16", "fp16": "float16", "no": "float32"}


def skipped(check: str, reason: str) -> dict[str, Any]:
    return {"check": check, "ok": None, "skipped": reason}


def check_device(product: Product) -> dict[str, Any]:
    """The device the full profile computes on here, and why not a GPU when it is the CPU."""
    banner = machine.device_banner(product.device, product.profile.mixed_precision)
    return {"check": "device", "ok": True, "device": str(product.device), "banner": banner.line(),
            "gpu_problem": machine.gpu_problem() if product.device.type != "cuda" else None}


def check_detector(name: str, product: Product, posters: Sequence[torch.Tensor]) -> dict[str, Any]:
    """One detector of the detection pipeline on the device: boxes for posters of two sizes (two batches)."""
    vocabulary = twin_classes()
    if name == "frcnn-twin":
        config = DetectorConfig(kind="frcnn", score_threshold=0.0, batch_size=4)
        detector = FrcnnDetector(build_twin_frcnn(len(vocabulary), config), vocabulary, config,
                                 twin_label_map(vocabulary))
    elif name == "frcnn-r50":
        detector = coco_detector(DetectorConfig(kind="frcnn", weights="coco", score_threshold=0.0), None)
    else:
        if importlib.util.find_spec("ultralytics") is None:
            return skipped(f"detect {name}", "ultralytics is not installed here")
        # Imported only when ultralytics is there: the module's YOLO class needs it.
        from thesis_lib.detection.yolo import TWIN_ARCHITECTURE, YoloDetector, _yolo_class

        detector = YoloDetector(_yolo_class()(TWIN_ARCHITECTURE), vocabulary, DetectorConfig(score_threshold=0.0))
    detector.to(product.device)
    found = detector.detect(list(posters))
    return {"check": f"detect {name}", "ok": len(found) == len(posters), "device": str(detector.device),
            "precision": detector.precision, "posters": len(posters),
            "boxes": int(sum(len(d.scores) for d in found)), "outputs_on": str(found[0].boxes.device)}


def check_extraction(product: Product, movies: Sequence[Movie], cache_root: Path) -> dict[str, Any]:
    """A feature-cache pass of the image encoder on the device, in the precision the profile asks for there."""
    config = product.model_config("image_vit", backbones="frozen")
    built = product.build(config, movies)
    dataset = raw_dataset(movies, ["image"], built, image_transforms(built.model)[False])
    cache_config = FeatureCacheConfig(batch_size=4, mixed_precision=product.profile.mixed_precision, num_workers=0)
    path = cache_encoder_features(SingleEncoder("image", built.model.encoders["image"]), dataset,
                                  backbone_id="gpu path check", data_fingerprint=f"synthetic-{len(movies)}",
                                  part="gpu-check-image", collate_fn=MultimodalCollator(), config=cache_config,
                                  cache_root=cache_root)
    with safe_open(str(path), framework="pt") as handle:
        key = json.loads(handle.metadata()["key"])
        pooled = handle.get_slice("image.pooled").get_shape()
    expected = PRECISION_NAMES[product.precision]
    return {"check": "extract image features", "ok": key["precision"] == expected and pooled[0] == len(movies),
            "device": str(product.device), "precision": key["precision"], "expected_precision": expected,
            "pooled_shape": list(pooled)}


def check_attention(product: Product, movies: Sequence[Movie]) -> dict[str, Any]:
    """Attention explanations of the cross-attention fusion on the device (maps stay there until read)."""
    config = product.model_config("fusion_cross_attention", (("text_need_attentions", True),))
    model = product.build(config, movies).model
    shape = BatchShape(2, min(32, product.profile.text_max_length), product.profile.image_size, 4)
    batch = synthetic_batch(model, shape, device=product.device)
    explanation = explain_attention(model, batch)
    maps = explanation.text_to_image
    return {"check": "explain attention", "ok": bool(maps) and bool(explanation.text_self_attention),
            "device": str(product.device), "maps_on": str(maps[0].device) if maps else None,
            "fusion_layers": len(maps), "text_layers": len(explanation.text_self_attention)}


def check_gradcam(product: Product, movies: Sequence[Movie]) -> dict[str, Any]:
    """Grad-CAM on the poster branch on the device (pytorch-grad-cam; skipped where it is not installed)."""
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        return skipped("explain Grad-CAM", "pytorch-grad-cam is not installed here")
    # Imported only when pytorch-grad-cam is there (xai.gradcam imports it lazily too).
    from thesis_lib.xai.gradcam import gradcam_maps, randomized_copy

    model = product.build(product.model_config("image_vit"), movies).model.eval()
    size = product.profile.image_size
    batch = {"image": torch.rand(2, 3, size, size, device=product.device)}  # (2, 3, S, S)
    maps = gradcam_maps(model, batch, [(0, 0), (1, 1)])  # (2, S, S) numpy
    random_maps = gradcam_maps(randomized_copy(model), batch, [(0, 1)])
    return {"check": "explain Grad-CAM", "ok": maps.shape == (2, size, size) and random_maps.shape[0] == 1,
            "device": str(next(model.parameters()).device), "maps_shape": list(maps.shape)}


def sample_posters(count: int = 8) -> list[torch.Tensor]:
    """`count` uint8 posters in two sizes, the last two smaller (the detectors batch posters of one size)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 336, 224), dtype=torch.uint8, generator=generator) for _ in range(count - 2)] + [
        torch.randint(0, 256, (3, 300, 200), dtype=torch.uint8, generator=generator) for _ in range(2)]
