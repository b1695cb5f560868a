"""Detection and Grad-CAM on the device with random weights (no files, no downloads): `--device auto|cpu`."""
import argparse
import time

import torch

from thesis_lib import machine
from thesis_lib.detection import DetectorConfig, twin_classes
from thesis_lib.detection.frcnn import FrcnnDetector, build_twin_frcnn, coco_detector, twin_label_map
from thesis_lib.detection.yolo import TWIN_ARCHITECTURE, YoloDetector, _yolo_class
from thesis_lib.models import build_model
from thesis_lib.xai.gradcam import gradcam_maps, randomized_copy

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--device", choices=machine.DEVICE_SETTINGS, default="auto")
device = machine.choose_device(parser.parse_args().device)
torch.manual_seed(0)
posters = [torch.randint(0, 256, (3, 336, 224), dtype=torch.uint8) for _ in range(6)] + [
    torch.randint(0, 256, (3, 300, 200), dtype=torch.uint8) for _ in range(2)]  # two sizes: two batches
vocabulary, config = twin_classes(), DetectorConfig(kind="frcnn", score_threshold=0.0, batch_size=4)
detectors = {"frcnn-twin": FrcnnDetector(build_twin_frcnn(len(vocabulary), config), vocabulary, config,
                                         twin_label_map(vocabulary)),
             "frcnn-r50": coco_detector(DetectorConfig(kind="frcnn", weights="coco", score_threshold=0.0), None),
             "yolov8n": YoloDetector(_yolo_class()(TWIN_ARCHITECTURE), vocabulary, DetectorConfig(score_threshold=0.0))}
for name, detector in detectors.items():
    detector.to(device).detect(posters[:1])  # warm-up (ultralytics sets its predictor up here)
    started = time.perf_counter()
    found = detector.detect(posters)
    seconds = time.perf_counter() - started
    print(f"{name:>10} on {detector.device} ({detector.precision}): {sum(len(d.scores) for d in found)} boxes on "
          f"{len(posters)} posters in {1000 * seconds:.0f} ms; outputs on {found[0].boxes.device}")
for model_name in ("image_vit", "image_resnet50"):
    model = build_model(model_name, image_input_size=64).to(device).eval()
    batch = {"image": torch.rand(4, 3, 64, 64, device=device)}
    started = time.perf_counter()
    maps = gradcam_maps(model, batch, [(row, row) for row in range(4)])  # (4, 64, 64) numpy
    random_maps = gradcam_maps(randomized_copy(model), batch, [(0, 1)])
    print(f"{model_name:>10} Grad-CAM on {next(model.parameters()).device}: maps {maps.shape} in [{maps.min():.2f}, "
          f"{maps.max():.2f}], randomised {random_maps.shape}, {1000 * (time.perf_counter() - started):.0f} ms")
