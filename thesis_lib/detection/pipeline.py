"""Object sources by config: get a (trained, cached) detector, run it once over a release, cache the result.

    detector = get_detector(DetectorConfig(kind="yolo"), release)     # trains on the twin the first time
    table = detections_for_release(DetectorConfig(kind="yolo"), release)  # every poster, cached
    batch["objects"] = table.objects(batch["ids"])                    # padded boxes, classes, scores, mask

Detectors are frozen feature extractors: they are never fine-tuned with the genre model, so their output
is computed once per poster and reused by every model and seed.

Detection runs on the device the profile's `device` setting gives (`machine.choose_device`: the GPU when
there is one for "auto"), fed by `num_workers` poster-decoding processes (`posters.poster_loader`). The
cache key of a table is the detector's weights and config, the release and the output filter, not the
device: a GPU's detections differ from the CPU's by float rounding only (YOLO runs in fp16 there), which
moves a box by a fraction of a pixel or a detection across the score threshold, and every run reads the
one cached table whatever made it, so the runs of a grid stay comparable. A table made on the GPU node
thus serves a CPU machine it is copied to (and the reverse) instead of costing a recomputation (~1.3 s
per poster for Faster R-CNN on a CPU core). The table's provenance, which the run records carry, names
the device, its precision and the loader workers that made it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import torch

from thesis_lib import machine
from thesis_lib.data.mmimdb import Release
from thesis_lib.data.splits import Split, official_split
from thesis_lib.detection import cache, frcnn, yolo
from thesis_lib.detection.config import DetectorConfig, default_detector_config
from thesis_lib.detection.detections import Detections
from thesis_lib.detection.evaluate import MapResult, detection_map50
from thesis_lib.detection.features import DetectionTable
from thesis_lib.detection.oracle import oracle_table
from thesis_lib.detection.posters import Poster, header_shape, poster_loader, shape_batches
from thesis_lib.detection.truth import TwinAnnotations, load_truth_boxes, load_twin_annotations, truth_file
from thesis_lib.detection.vocab import twin_classes
from thesis_lib.logs import ProgressLog
from thesis_lib.models.pretrained import standin_reason
from thesis_lib.storage import stable_hash

log = logging.getLogger(__name__)

# Bump when a detector's architecture or training code changes in a way the config does not show.
FORMAT_VERSION = 1
# Detection quality is measured over the whole precision-recall curve, so evaluation keeps nearly every
# detection (ultralytics validates at conf 0.001 too), not only the confident top-R the models read.
EVAL_SCORE_THRESHOLD = 0.001
EVAL_MAX_REGIONS = 100


class Detector(Protocol):
    """What every detector offers (YoloDetector, FrcnnDetector)."""

    vocabulary: tuple[str, ...]
    config: DetectorConfig
    training_report: dict[str, Any] | None  # meta.json of a detector trained here; None for COCO weights
    device: torch.device  # where it detects (`to` moves it)

    @property
    def num_parameters(self) -> int: ...

    @property
    def precision(self) -> str: ...  # "fp32" | "fp16": what it computes in on its device

    def to(self, device: torch.device) -> Detector: ...

    def detect(self, images: Sequence[Poster], score_threshold: float | None = None,
               max_regions: int | None = None) -> list[Detections]: ...


class DetectorBackend(Protocol):
    """What each backend module (`yolo`, `frcnn`) offers: COCO weights, training on the twin, reloading."""

    def load_coco(self, config: DetectorConfig) -> Detector: ...

    def train_twin(self, config: DetectorConfig, annotations: TwinAnnotations, run_dir: Path) -> dict[str, Any]: ...

    def load_twin(self, weights: Path, vocabulary: tuple[str, ...], config: DetectorConfig) -> Detector: ...


# The backend of each detector kind; ultralytics itself is imported only inside yolo's functions.
# get_detector and detections_for_release take another mapping as `backends` (the tests pass stand-ins).
DETECTOR_BACKENDS: Mapping[str, DetectorBackend] = MappingProxyType({"yolo": yolo, "frcnn": frcnn})


def get_detector(config: DetectorConfig, release: Release | None = None,
                 truth_path: Path | str | None = None, split: Split | None = None, *,
                 backends: Mapping[str, DetectorBackend] = DETECTOR_BACKENDS, device: str = "cpu") -> Detector:
    """The detector `config` describes: COCO weights loaded, or twin weights trained once and then reused.

    `release` (and its twin_truth.json, or `truth_path`) is needed only for weights="twin"; such a detector
    trains on the train part of `split` (default: the official split) and is checked on its dev part, so
    pass the split the genre models are scored on: its test posters then stay unseen. A twin-trained
    detector carries `training_report` (split, train time, dev mAP@0.5, parameters) from its meta.json.
    `backends` maps each detector kind to the code that loads and trains it (default DETECTOR_BACKENDS).
    The detector is on `machine.choose_device(device)` ("cpu" | "auto"), and so is the dev check after
    training (the training itself stays with its backend).
    """
    if config.kind == "oracle":
        raise ValueError("the oracle reads the twin's boxes, not pixels: use detections_for_release(config, release)")
    on = machine.choose_device(device)
    if config.weights == "coco":
        return backends[config.kind].load_coco(config).to(on)
    if release is None:
        raise ValueError(f"{config.name}: a detector trained on the twin needs the twin release to train on")
    split = official_split(release) if split is None else split
    key = detector_key(config, release, truth_path, split)
    folder = cache.detector_dir(config.name, key)
    if not (folder / cache.META_FILE).is_file():
        _train(config, release, truth_path, split, folder, backends, on)
    meta = cache.read_meta(folder)
    detector = backends[config.kind].load_twin(folder / "weights.safetensors", tuple(meta["vocabulary"]), config)
    detector = detector.to(on)
    detector.training_report = meta
    return detector


def detector_key(config: DetectorConfig, release: Release, truth_path: Path | str | None = None,
                 split: Split | None = None) -> str:
    """Cache key of a detector: its model fields, vocabulary and, when trained here, the data it saw
    (release, truth file, and the split whose train part it learned from; default the official split)."""
    payload: dict[str, Any] = {"format": FORMAT_VERSION, "model": config.model_fields()}
    if config.weights == "twin":
        split = official_split(release) if split is None else split
        digest = hashlib.sha256(truth_file(release, truth_path).read_bytes()).hexdigest()
        payload |= {"vocabulary": twin_classes(), "release": release.fingerprint, "truth": digest,
                    "split": split.split_hash()}
    return stable_hash(payload, length=16)


def detections_for_release(config: DetectorConfig, release: Release, truth_path: Path | str | None = None,
                           split: Split | None = None, *,
                           backends: Mapping[str, DetectorBackend] = DETECTOR_BACKENDS, device: str = "cpu",
                           num_workers: int = 0) -> DetectionTable:
    """Every poster's top-R detections from the source `config` names, computed once and cached.

    A twin-trained detector learns from the train part of `split` (see `get_detector`, also for `backends`).
    The detector runs on `machine.choose_device(device)`, fed by `machine.loader_workers(num_workers)`
    poster-decoding workers; neither is part of the cache key (see the module docstring)."""
    if config.kind == "oracle":
        return oracle_table(config, release, truth_path)
    key = stable_hash({"detector": detector_key(config, release, truth_path, split), "release": release.fingerprint,
                       "output": config.output_fields()}, length=16)
    path = cache.table_path(config.name, key)
    if path.is_file():
        return cache.load_table(path)
    detector = get_detector(config, release, truth_path, split, backends=backends, device=device)
    ids = release.ids
    workers = machine.loader_workers(num_workers)
    started = time.perf_counter()
    detections = _detect_posters(detector, release, ids, workers)
    seconds = time.perf_counter() - started
    provenance = {
        "detector": config.model_fields(), "output": config.output_fields(), "release": release.fingerprint,
        "posters": len(ids), "seconds_per_poster": seconds / max(len(ids), 1),
        "parameters": detector.num_parameters, "training": detector.training_report,
        "device": device_name(detector.device), "precision": detector.precision, "loader_workers": workers,
    }
    table = DetectionTable.from_detections(ids, detections, config.max_regions, detector.vocabulary, config.name,
                                           provenance)
    cache.save_table(table, path)
    log.info("%s: %.2f detections per poster on %d posters in %.0f s (%.1f ms per poster, loading included) on %s",
             config.name, float(table.mask.sum()) / max(len(ids), 1), len(ids), seconds,
             1000 * provenance["seconds_per_poster"], provenance["device"])
    return table


def device_name(device: torch.device) -> str:
    """"cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)": what a table's provenance says it was computed on."""
    if device.type != "cuda":
        return str(device)
    return f"{device} ({torch.cuda.get_device_name(device)})"


def source_detections(source: str, release: Release, model_size: str, split: Split, *, device: str = "cpu",
                      num_workers: int = 0) -> DetectionTable:
    """The detections of an object source ("yolo" | "frcnn" | "oracle", as the registry's object configs name
    it) in a profile's model size (`default_detector_config`: trained on the twin's boxes for "small", COCO
    weights for "full"), for every poster of `release`; a detector trained here learns from `split`'s train
    part only, never from its test part. Computed once and cached, so every run and seed reads the same
    detections (the grid's default `objects_factory`). `device` ("cpu" | "auto") and `num_workers` are the
    profile's settings of the same names (see `detections_for_release`)."""
    return detections_for_release(default_detector_config(source, model_size), release, split=split, device=device,
                                  num_workers=num_workers)


def detector_standin(source: str, model_size: str) -> str | None:
    """What the stand-in an object source's COCO detector would load is (`models.pretrained.standin_reason`),
    or None: a run record says so next to its detections, as it does for a stand-in encoder."""
    return None if source == "oracle" else coco_standin(default_detector_config(source, model_size))


def coco_standin(config: DetectorConfig) -> str | None:
    """What the stand-in a COCO detector of `config` loads is, or None (real COCO weights, or trained here)."""
    if config.weights != "coco":
        return None
    return standin_reason(yolo.coco_weights_path(config) if config.kind == "yolo" else frcnn.coco_weights_path())


def evaluate_detector(detector: Detector, release: Release, ids: Sequence[str] | None = None,
                      truth_path: Path | str | None = None) -> MapResult:
    """VOC mAP@0.5 of `detector` against the twin's true boxes on `ids` (default: the dev posters), over
    the object kinds its vocabulary names (a COCO detector has no class for some of the twin's objects)."""
    ids = list(release.official_split["dev"] if ids is None else ids)
    truth = load_truth_boxes(release, ids, detector.vocabulary, truth_path, named_only=True)
    predictions = _detect_posters(detector, release, ids, score_threshold=EVAL_SCORE_THRESHOLD,
                                  max_regions=EVAL_MAX_REGIONS)
    return detection_map50(predictions, [truth[movie_id].as_detections() for movie_id in ids])


def _detect_posters(detector: Detector, release: Release, ids: Sequence[str], workers: int = 0,
                    **thresholds: Any) -> list[Detections]:
    """Run `detector` over the posters `ids` (in that order), decoded by `workers` loader processes.

    Posters of one size are batched together (their sizes read from the file headers first), so every
    batch reaches the detector whole: see `posters` for why a batch holds one size only."""
    paths = [release.movies[movie_id].poster for movie_id in ids]
    batches = shape_batches([header_shape(path) for path in paths], detector.config.batch_size)
    loader = poster_loader(paths, batches, workers, pin_memory=detector.device.type == "cuda")
    detections: list[Detections | None] = [None] * len(ids)
    progress = ProgressLog(log, f"{detector.config.name}: detection", total=len(ids), unit="posters")
    done = 0
    for batch, posters in zip(batches, loader, strict=True):
        for index, found in zip(batch, detector.detect(posters, **thresholds), strict=True):
            detections[index] = found
        done += len(batch)
        progress.update(done)
    return detections  # type: ignore[return-value]  # every index was filled


def _train(config: DetectorConfig, release: Release, truth_path: Path | str | None, split: Split,
           folder: Path, backends: Mapping[str, DetectorBackend], device: torch.device) -> None:
    """Train on the split's training posters, measure dev mAP@0.5, and publish the folder when all is done."""
    training = config.training
    assert training is not None
    annotations = load_twin_annotations(release, twin_classes(), training.train_posters, training.seed, truth_path,
                                        split)
    log.info("%s: training on %d twin posters of the %s split's train part (dev: %d) into %s", config.name,
             len(annotations.train), split.name, len(annotations.dev), folder)
    with cache.building(folder) as work:
        measured = backends[config.kind].train_twin(config, annotations, work)
        detector = backends[config.kind].load_twin(work / "weights.safetensors", annotations.vocabulary, config)
        detector = detector.to(device)
        dev = evaluate_detector(detector, release, list(annotations.dev), truth_path)
        meta = {
            "config": config.model_fields(), "vocabulary": list(annotations.vocabulary),
            "release": release.fingerprint, "split": {"name": split.name, "split_hash": split.split_hash()},
            "train_posters": len(annotations.train),
            "dev_posters": len(annotations.dev), "dev_map50": dev.map50,
            "dev_ap50_per_class": {annotations.vocabulary[c]: ap for c, ap in dev.per_class.items()},
            "parameters": detector.num_parameters, **measured,
        }
        cache.write_meta(work, meta)
    log.info("%s: dev mAP@0.5 %.3f after %.0f s of training", config.name, dev.map50, measured["train_seconds"])
