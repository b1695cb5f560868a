"""YOLO (ultralytics) as a frozen object detector: COCO-pretrained, or trained here on the twin's boxes.

ultralytics is imported only inside these functions (the rest of the library imports without it), and
only after `prepare_ultralytics()` made it safe offline. Its trainer works on files, so twin training
writes a small YOLO-format data set (symlinked posters, one label file per poster) next to the run,
trains `yolov8n.yaml` from random initialisation, keeps the weights as a safetensors state dict and
deletes ultralytics' pickled checkpoints.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from thesis_lib.data.download import file_sha256
from thesis_lib.detection.config import DetectorConfig
from thesis_lib.detection.detections import Detections
from thesis_lib.detection.posters import Poster, as_bgr_array, poster_shape, shape_batches
from thesis_lib.detection.truth import PosterBoxes, TwinAnnotations
from thesis_lib.detection.vocab import coco_classes
from thesis_lib.errors import ThesisError
from thesis_lib.logs import format_duration
from thesis_lib.models.pretrained import (
    FETCH_COMMAND,
    WeightState,
    file_size,
    mark_standin,
    remove_standin,
    standin_reason,
)
from thesis_lib.offline import is_online, prepare_ultralytics
from thesis_lib.paths import cache_dir

log = logging.getLogger(__name__)

TWIN_ARCHITECTURE = "yolov8n.yaml"  # the smallest YOLOv8 (3.0M parameters), built from scratch for the twin
WEIGHTS_FILE = "weights.safetensors"  # the name pipeline and cache expect
# The sha256 of the COCO checkpoints ultralytics publishes (github.com/ultralytics/assets releases). Such a
# checkpoint is a pickle, and unpickling runs code: `load_coco` hands ultralytics only a file with one of these
# digests (or a marked stand-in, which is never called pretrained). yolov8n.pt of release v8.4.0 (the one
# ultralytics 8.4 downloads) and of v0.0.0 (the first, January 2023, 6,534,387 bytes).
TRUSTED_SHA256_VARIABLE = "THESIS_TRUSTED_SHA256"
KNOWN_COCO_SHA256: Mapping[str, frozenset[str]] = MappingProxyType({
    "yolov8n.pt": frozenset({
        "f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36",  # assets release v8.4.0
        "31e20dde3def09e2cf938c7be6fe23d9150bbbe503982af13345706515f2ef95",  # assets release v0.0.0
    }),
})


def _yolo_class() -> type:
    """ultralytics' YOLO class, imported offline-safe and quiet (its own progress bars stay off)."""
    os.environ.setdefault("YOLO_VERBOSE", "False")  # read once, at ultralytics' import
    prepare_ultralytics()
    from ultralytics import YOLO

    return YOLO


class YoloDetector:
    """A frozen YOLO: posters in, `Detections` (normalised xyxy, contiguous ids, scores) out.

    It detects on `device` (`to`): ultralytics moves the network there at the first `predict`, in half
    precision on a GPU (fp16 runs on every CUDA GPU; YOLO's own validation uses it too), float32 on the CPU."""

    def __init__(self, model: Any, vocabulary: tuple[str, ...], config: DetectorConfig):
        self.model = model  # ultralytics.YOLO
        self.vocabulary = vocabulary
        self.config = config
        self.training_report: dict[str, Any] | None = None  # set by get_detector for twin-trained weights
        self.device = torch.device("cpu")

    @property
    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.model.parameters())

    @property
    def precision(self) -> str:
        return "fp16" if self.device.type == "cuda" else "fp32"

    def to(self, device: torch.device) -> YoloDetector:
        """Detect on `device` from now on (ultralytics sets its predictor up again at the next `predict`)."""
        self.device = torch.device(device)
        self.model.predictor = None  # a predictor keeps the device and precision it was set up with
        return self

    def detect(self, images: Sequence[Poster], score_threshold: float | None = None,
               max_regions: int | None = None) -> list[Detections]:
        """Detections per image (PIL or uint8 (3, H, W)), sorted by score; thresholds default to the config's.

        Posters are batched with posters of their own size only (`posters.shape_batches`): a poster's
        detections do not depend on the others it is detected with."""
        config = self.config
        threshold = config.score_threshold if score_threshold is None else score_threshold
        limit = config.max_regions if max_regions is None else max_regions
        results: list[Detections | None] = [None] * len(images)
        for batch in shape_batches([poster_shape(image) for image in images], config.batch_size):
            arrays = [as_bgr_array(images[index]) for index in batch]  # (H, W, 3) uint8 BGR, as from a PIL image
            predictions = self.model.predict(arrays, imgsz=config.image_size, conf=threshold, iou=config.nms_iou,
                                             max_det=limit, device=str(self.device),
                                             quantize=16 if self.precision == "fp16" else None,  # 8.4's `half`
                                             verbose=False)
            for index, prediction in zip(batch, predictions, strict=True):
                results[index] = _to_detections(prediction)
        return results  # type: ignore[return-value]  # every index was filled


def _to_detections(prediction: Any) -> Detections:
    """One ultralytics `Results` -> Detections with boxes as fractions of the poster's width and height."""
    height, width = prediction.orig_shape
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = (prediction.boxes.xyxy.float().cpu() / scale).clamp(0.0, 1.0)  # (R, 4)
    scores = prediction.boxes.conf.float().cpu()  # (R,)
    order = torch.argsort(scores, descending=True, stable=True)
    return Detections(boxes[order], prediction.boxes.cls.long().cpu()[order], scores[order])


def coco_weights_path(config: DetectorConfig) -> Path:
    """Where the COCO checkpoint is looked for (and downloaded to, when THESIS_ONLINE=1)."""
    return cache_dir() / "detectors" / "coco" / config.coco_model


def coco_weights_state(config: DetectorConfig) -> WeightState:
    """Whether the COCO checkpoint is where `load_coco` reads it (and is not a marked stand-in); a file that is
    not ultralytics' own (see KNOWN_COCO_SHA256) counts as missing: `load_coco` would refuse it."""
    path = coco_weights_path(config)
    if not path.is_file():
        return WeightState("missing", path, 0, f"ultralytics {config.coco_model}")
    if (what := standin_reason(path)) is not None:
        return WeightState("stand-in", path, file_size(path), what)
    if (problem := coco_weights_problem(config, path)) is not None:
        return WeightState("missing", path, file_size(path), problem)
    return WeightState("cached", path, file_size(path), f"ultralytics {config.coco_model}")


def coco_weights_problem(config: DetectorConfig, path: Path) -> str | None:
    """Why the (unmarked) file at `path` is not the checkpoint ultralytics publishes as `config.coco_model`, or
    None when its sha256 is a known one. Read before anything unpickles it."""
    # The digests above were read from published listings, not from a download here: a user who has checked a
    # newer release's file names its digest in $THESIS_TRUSTED_SHA256 (comma-separated) rather than edit this.
    trusted = {digest.strip().lower() for digest in os.environ.get(TRUSTED_SHA256_VARIABLE, "").split(",") if digest.strip()}
    known = KNOWN_COCO_SHA256.get(config.coco_model, frozenset()) | trusted
    if not known:
        return (f"no known sha256 for {config.coco_model!r} (known: {', '.join(KNOWN_COCO_SHA256)}): add the one "
                "ultralytics publishes to KNOWN_COCO_SHA256 in thesis_lib/detection/yolo.py")
    digest = file_sha256(path)
    if digest not in known:
        return (f"sha256 {digest[:12]}... is not that of ultralytics' {config.coco_model} "
                f"({', '.join(sorted(d[:12] + '...' for d in known))}): not loaded (if you checked the file, "
                f"{TRUSTED_SHA256_VARIABLE}={digest} trusts it)")
    return None


def _verified_coco_weights(config: DetectorConfig, path: Path) -> None:
    """ThesisError naming `path` unless it is ultralytics' checkpoint or a marked stand-in."""
    if standin_reason(path) is None and (problem := coco_weights_problem(config, path)) is not None:
        raise ThesisError(f"COCO weights {path}: {problem}; delete the file and run `{FETCH_COMMAND}`")


def download_coco(config: DetectorConfig) -> Path:
    """Download the COCO checkpoint through ultralytics' own asset download into `coco_weights_path`
    (replacing a marked stand-in); checked to be a torch zip archive, not an error page."""
    path = coco_weights_path(config)
    if standin_reason(path) is not None:
        remove_standin(path)
    elif path.is_file() and coco_weights_problem(config, path) is not None:
        path.unlink()  # not ultralytics' file: ultralytics would keep it instead of downloading
    _yolo_class()  # offline-safe set-up of ultralytics before its download module is imported
    from ultralytics.utils import downloads  # ultralytics: only inside functions (see the module docstring)

    path.parent.mkdir(parents=True, exist_ok=True)
    downloads.attempt_download_asset(str(path))
    if not path.is_file() or not zipfile.is_zipfile(path):
        path.unlink(missing_ok=True)  # an error page or half a file must not read as cached next time
        raise ThesisError(f"the download of {config.coco_model} gave no torch checkpoint (no such ultralytics "
                          f"asset, or a broken download): nothing was kept at {path}")
    if (problem := coco_weights_problem(config, path)) is not None:
        path.unlink()
        raise ThesisError(f"the download of {config.coco_model}: {problem}; nothing was kept at {path}")
    return path


STANDIN_PERSON_LOGIT = 0.0  # a stand-in's "person" score before the random layers: sigmoid 0.5, above the threshold


def write_coco_standin(config: DetectorConfig, what: str) -> Path:
    """A random YOLO of `config.coco_model`'s architecture with COCO's 80 class names at `coco_weights_path`,
    saved as ultralytics saves a checkpoint (the pickled model, half precision), marked with `what`. Its
    "person" bias is raised so that it reports boxes: the region path downstream sees detections."""
    path = coco_weights_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = _yolo_class()(Path(config.coco_model).with_suffix(".yaml").name)  # yolov8n.pt -> yolov8n.yaml
    network = model.model
    network.names = dict(enumerate(coco_classes()))
    head = network.model[-1]  # Detect: one class branch per feature level, the last layer a 1x1 conv
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias[0] = STANDIN_PERSON_LOGIT
    model.save(str(path))
    mark_standin(path, what)
    return path


def load_coco(config: DetectorConfig) -> YoloDetector:
    """A COCO-pretrained YOLO; its vocabulary is the checkpoint's own class names (COCO-80)."""
    path = coco_weights_path(config)
    if not path.is_file() and not is_online():
        raise ThesisError(
            f"COCO weights {path} not found and downloads are off: run `{FETCH_COMMAND}` on a machine with "
            f"network (then copy the cache, see the README), or place {config.coco_model} there"
        )
    if not path.is_file():
        download_coco(config)  # checked against KNOWN_COCO_SHA256 there
    _verified_coco_weights(config, path)  # before ultralytics unpickles it
    model = _yolo_class()(str(path))
    names = model.names
    return YoloDetector(model, tuple(names[index] for index in range(len(names))), config)


def load_twin(weights: Path, vocabulary: tuple[str, ...], config: DetectorConfig) -> YoloDetector:
    """A YOLO trained on the twin, rebuilt from its architecture and a safetensors state dict."""
    yolo = _yolo_class()(TWIN_ARCHITECTURE)
    from ultralytics.nn.tasks import DetectionModel

    network = DetectionModel(TWIN_ARCHITECTURE, nc=len(vocabulary), verbose=False)
    network.load_state_dict(load_file(weights))
    network.names = dict(enumerate(vocabulary))
    network.args, network.task = yolo.model.args, "detect"
    yolo.model = network.eval()
    return YoloDetector(yolo, vocabulary, config)


def train_twin(config: DetectorConfig, annotations: TwinAnnotations, run_dir: Path) -> dict[str, Any]:
    """Train YOLOv8n from scratch on the twin's training boxes; write run_dir/weights.safetensors.

    Returns what the run measured: seconds, posters, epochs and ultralytics' own dev mAP@0.5.
    """
    training = config.training
    assert training is not None, "weights='twin' configs always carry a TwinTraining"
    data_yaml = _write_yolo_dataset(annotations, run_dir / "data")
    YOLO = _yolo_class()
    model = YOLO(TWIN_ARCHITECTURE)
    started = time.perf_counter()

    def log_epoch(trainer: Any) -> None:  # ultralytics' on_train_epoch_end callback (its own output is off)
        done, elapsed = trainer.epoch + 1, time.perf_counter() - started
        named = trainer.label_loss_items(trainer.tloss, prefix="loss") if trainer.tloss is not None else {}
        losses = " ".join(f"{name.removeprefix('loss/')} {value:.3f}" for name, value in named.items())
        log.info("yolo epoch %d/%d %s %s so far, eta %s", done, trainer.epochs, losses, format_duration(elapsed),
                 format_duration(elapsed / done * (trainer.epochs - done)))

    model.add_callback("on_train_epoch_end", log_epoch)
    with _global_state_kept():
        metrics = model.train(
            data=str(data_yaml), epochs=training.epochs, imgsz=config.image_size, batch=training.batch_size,
            nbs=training.batch_size,  # one optimiser step per batch: ultralytics would accumulate up to 64 posters
            optimizer="AdamW", lr0=training.learning_rate,
            warmup_epochs=0.5,  # the default of 3 warm-up epochs would be the whole run
            close_mosaic=1,  # last epoch on whole posters, as they are seen at detection time
            seed=training.seed, deterministic=True, workers=0, cache=False, amp=False,  # AMP's check downloads weights
            val=False,  # the final epoch is still validated on the dev posters
            plots=False, project=str(run_dir / "ultralytics"), name="train", exist_ok=True, verbose=False,
        )
    seconds = time.perf_counter() - started
    save_file({name: tensor.contiguous() for name, tensor in model.model.float().state_dict().items()},
              str(run_dir / WEIGHTS_FILE))
    for checkpoint in (run_dir / "ultralytics").rglob("*.pt"):  # pickled modules: the safetensors copy replaces them
        checkpoint.unlink()
    shutil.rmtree(run_dir / "data")
    map50 = float(metrics.box.map50)
    log.info("trained YOLOv8n on %d twin posters x %d epochs in %.0f s; ultralytics dev mAP@0.5 %.3f",
             len(annotations.train), training.epochs, seconds, map50)
    return {"train_seconds": seconds, "ultralytics_dev_map50": map50}


def _write_yolo_dataset(annotations: TwinAnnotations, folder: Path) -> Path:
    """images/{train,val}/<id>.jpeg (links to the posters) + labels/{train,val}/<id>.txt + data.yaml."""
    import yaml  # ships with ultralytics

    for split, posters in (("train", annotations.train), ("val", annotations.dev)):
        images, labels = folder / "images" / split, folder / "labels" / split
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for movie_id, truth in posters.items():
            _link_rgb_poster(annotations.posters[movie_id], images / f"{movie_id}.jpeg")
            (labels / f"{movie_id}.txt").write_text(_yolo_labels(truth), encoding="utf-8")
    data_yaml = folder / "data.yaml"
    names = dict(enumerate(annotations.vocabulary))
    data_yaml.write_text(yaml.safe_dump({"path": str(folder), "train": "images/train", "val": "images/val",
                                         "names": names}), encoding="utf-8")
    return data_yaml


def _link_rgb_poster(poster: Path, target: Path) -> None:
    """Link an RGB poster; re-save any other mode as RGB (OpenCV, which ultralytics reads with, mishandles CMYK)."""
    with Image.open(poster) as image:
        if image.mode == "RGB":
            target.symlink_to(poster.resolve())
        else:
            image.convert("RGB").save(target, "JPEG", quality=95)


def _yolo_labels(truth: PosterBoxes) -> str:
    """One line per box: class x_centre y_centre width height, as fractions of the poster."""
    lines = []
    for (x0, y0, x1, y1), class_id in zip(truth.normalised().tolist(), truth.classes.tolist(), strict=False):
        lines.append(f"{class_id} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
    return "\n".join(lines) + "\n"


@contextmanager
def _global_state_kept() -> Iterator[None]:
    """ultralytics seeds the global RNGs and switches on deterministic algorithms for the whole process:
    restore both afterwards, so training a detector does not change the experiments' random streams."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)
