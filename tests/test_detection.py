"""Object detection features: mAP@0.5, the oracle, the batch format, caching, and detectors that learn.

One tiny twin (150 movies) and one short training per detector are shared by the whole module; each
detector trains for ~15 s on 90 posters, which is far from good but already lands on planted objects.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from thesis_lib.data.images import load_poster
from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.splits import official_split, thesis_split
from thesis_lib.data.twin.poster import DRAWERS
from thesis_lib.detection import (
    DETECTOR_BACKENDS,
    Detections,
    DetectionTable,
    DetectorConfig,
    TwinTraining,
    average_precision,
    cache,
    coco_classes,
    detection_map50,
    detections_for_release,
    get_detector,
    pad_detections,
    pipeline,
    twin_classes,
)
from thesis_lib.detection.frcnn import coco_detector
from thesis_lib.detection.truth import load_twin_annotations
from thesis_lib.detection.vocab import coco_id_to_contiguous
from thesis_lib.errors import ThesisError
from thesis_lib.models.configs import ObjectEncoderConfig
from thesis_lib.models.object_encoder import ObjectEncoder

POSTER_SIZE = (224, 336)
TINY_TRAINING = {  # enough to find objects, far from enough to name them well: keeps this file fast
    "yolo": TwinTraining(train_posters=90, epochs=3, batch_size=16, learning_rate=0.003),
    "frcnn": TwinTraining(train_posters=90, epochs=3, batch_size=8, learning_rate=0.002),
}


def _detections(boxes, classes, scores=None) -> Detections:
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.ones(len(boxes)) if scores is None else torch.tensor(scores, dtype=torch.float32)
    return Detections(boxes, torch.tensor(classes, dtype=torch.long), scores)


# --- mAP@0.5 on hand-made boxes -------------------------------------------------------------------------

def test_perfect_detections_score_one():
    truth = [_detections([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]), _detections([[5, 5, 15, 30]], [1])]
    result = detection_map50(truth, truth)
    assert result.map50 == pytest.approx(1.0)
    assert result.per_class == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert result.num_true_boxes == 3


def test_boxes_shifted_below_half_overlap_score_zero():
    truth = [_detections([[0, 0, 10, 10]], [0])]
    shifted = [_detections([[6, 0, 16, 10]], [0], [0.9])]  # IoU = 40 / 160 = 0.25
    assert detection_map50(shifted, truth).map50 == 0.0
    wrong_class = [_detections([[0, 0, 10, 10]], [1], [0.9])]
    assert detection_map50(wrong_class, truth).map50 == 0.0


def test_half_the_objects_found_scores_one_half():
    truth = [_detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    one_found = [_detections([[0, 0, 10, 10], [80, 80, 90, 90]], [0, 0], [0.9, 0.8])]
    # ranking: TP (precision 1, recall 1/2), FP -> area under the curve = 1/2 * 1
    assert detection_map50(one_found, truth).map50 == pytest.approx(0.5)


def test_a_false_positive_ranked_first_halves_precision():
    truth = [_detections([[0, 0, 10, 10]], [0])]
    predictions = [_detections([[30, 30, 40, 40], [1, 0, 11, 10]], [0, 0], [0.9, 0.8])]  # FP, then TP (IoU 9/11)
    assert detection_map50(predictions, truth).map50 == pytest.approx(0.5)


def test_a_duplicate_detection_is_a_false_positive():
    truth = [_detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    predictions = [_detections([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0, 0, 0], [0.9, 0.8, 0.7])]
    # TP (P 1, R 1/2), duplicate FP (P 1/2), TP (P 2/3, R 1): AP = 1/2 * 1 + 1/2 * 2/3
    assert detection_map50(predictions, truth).map50 == pytest.approx(0.5 + 1 / 3)


def test_average_precision_interpolates_precision_from_the_right():
    # TP, FP, TP over 2 true boxes: precision 1 up to recall 1/2, then 2/3 up to recall 1.
    ap = average_precision(np.array([0.7, 0.9, 0.8]), np.array([True, True, False]), num_true=2)
    assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    with pytest.raises(ValueError, match="without true boxes"):
        average_precision(np.array([0.5]), np.array([False]), num_true=0)


def test_map_averages_only_the_classes_present_in_the_truth():
    truth = [_detections([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])]
    predictions = [_detections([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 2], [0.9, 0.9])]  # class 2 never occurs
    result = detection_map50(predictions, truth)
    assert result.per_class == {0: pytest.approx(1.0), 1: 0.0}
    assert result.map50 == pytest.approx(0.5)


# --- vocabularies and config ---------------------------------------------------------------------------

def test_coco_vocabulary_comes_from_the_weights_metadata():
    names = coco_classes()
    assert len(names) == 80 and names[0] == "person" and names[-1] == "toothbrush"
    assert {"knife", "car", "horse"} <= set(names) and not {"gun", "sky", "explosion"} & set(names)
    mapping = coco_id_to_contiguous()
    assert len(mapping) == 80 and mapping[1] == 0 and mapping[90] == 79  # torchvision ids have gaps


def test_twin_vocabulary_puts_person_first_and_covers_every_drawn_kind():
    names = twin_classes()
    assert names[0] == "person" and set(names) == set(DRAWERS) and len(names) == len(set(names))


def test_config_rejects_unknown_choices_and_fills_per_kind_training():
    with pytest.raises(ValueError, match="kind"):
        DetectorConfig(kind="ssd")
    with pytest.raises(ValueError, match="weights"):
        DetectorConfig(weights="imagenet")
    assert DetectorConfig(kind="yolo").training != DetectorConfig(kind="frcnn").training
    assert DetectorConfig(kind="yolo", weights="coco").training is None


@pytest.mark.slow
def test_the_package_imports_without_ultralytics():
    # None in sys.modules makes `import ultralytics` fail, as if it were not installed.
    code = ("import sys; sys.modules['ultralytics'] = None; import thesis_lib.detection.pipeline; "
            "from thesis_lib.detection import DetectorConfig; print(DetectorConfig(kind='frcnn').name)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "frcnn-twin"


def test_missing_coco_weights_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("THESIS_ONLINE", raising=False)
    with pytest.raises(ThesisError, match=r"yolov8n\.pt.*not found"):
        get_detector(DetectorConfig(kind="yolo", weights="coco"))
    with pytest.raises(ThesisError, match=r"fasterrcnn_resnet50_fpn_coco.*not found"):
        get_detector(DetectorConfig(kind="frcnn", weights="coco"))


def test_coco_faster_rcnn_keeps_posters_small_and_reports_contiguous_coco_ids():
    detector = coco_detector(DetectorConfig(kind="frcnn", weights="coco"), weights=None)  # random: no download
    poster = torch.rand(3, 336, 224)
    resized = detector.model.transform([poster])[0]
    assert resized.image_sizes == [(336, 224)], "a 224x336 poster must not be upscaled towards 800 px"
    image = Image.fromarray((poster.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    (found,) = detector.detect([image], score_threshold=0.0, max_regions=50)
    assert len(found.classes) > 0 and int(found.classes.min()) >= 0 and int(found.classes.max()) < 80
    assert float(found.boxes.min()) >= 0 and float(found.boxes.max()) <= 1
    assert torch.all(found.scores[:-1] >= found.scores[1:])


# --- the tiny twin: oracle, batch format, caching, learning ---------------------------------------------

@pytest.fixture(scope="module")
def twin(tmp_path_factory, make_twin):
    """A 150-movie twin (90 train / 15 dev / 45 test) and a private cache for this module."""
    root = make_twin(150)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THESIS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_release(root, verify_posters="none")


def _truth_objects(release) -> dict:
    return json.loads((release.root / "twin_truth.json").read_text())["movies"]


def test_oracle_reproduces_the_truth_boxes_normalised(twin):
    table = detections_for_release(DetectorConfig(kind="oracle"), twin)
    truth = _truth_objects(twin)
    assert set(table.ids) == set(twin.ids)
    width, height = POSTER_SIZE
    for movie_id in twin.ids:
        objects = truth[movie_id]["objects"]
        found = table.detections(movie_id)
        expected = torch.tensor([obj["box"] for obj in objects], dtype=torch.float32) / torch.tensor(
            [width, height, width, height])
        torch.testing.assert_close(found.boxes, expected)
        assert [table.vocabulary[c] for c in found.classes.tolist()] == [obj["label"] for obj in objects]
        assert torch.all(found.scores == 1)


def test_batch_matches_the_object_encoder_contract(twin):
    table = detections_for_release(DetectorConfig(kind="oracle", max_regions=16), twin)
    ids = list(twin.official_split["test"][:6])
    objects = table.objects(ids)
    assert objects["boxes"].shape == (6, 16, 4) and objects["boxes"].dtype == torch.float32
    assert objects["classes"].shape == (6, 16) and objects["classes"].dtype == torch.int64
    assert objects["scores"].dtype == torch.float32 and objects["mask"].dtype == torch.bool
    counts = [len(_truth_objects(twin)[movie_id]["objects"]) for movie_id in ids]
    assert objects["mask"].sum(dim=1).tolist() == counts
    assert torch.all(objects["boxes"][~objects["mask"]] == 0) and torch.all(objects["scores"][~objects["mask"]] == 0)
    # Same content as the real detections padded afresh (by default only to the batch maximum).
    collated = pad_detections([table.detections(movie_id) for movie_id in ids])
    width = collated["mask"].shape[1]
    for key in ("boxes", "classes", "scores", "mask"):
        torch.testing.assert_close(objects[key][:, :width], collated[key])
    # The model-side encoder accepts the batch, and its pooled vector is the detection summary.
    classes = len(table.vocabulary)
    encoder = ObjectEncoder(ObjectEncoderConfig(source="oracle", num_classes=classes, person_class=0))
    pooled = encoder({"objects": objects}).pooled.detach()
    assert pooled.shape == (6, 3 * classes + 1)
    people = [sum(obj["label"] == "person" for obj in _truth_objects(twin)[movie_id]["objects"]) for movie_id in ids]
    torch.testing.assert_close(pooled[:, -1], torch.tensor(people, dtype=torch.float32) / 10)
    with pytest.raises(KeyError, match="not in the oracle detection table"):
        table.objects(["9999999"])


def test_table_keeps_the_top_r_by_score():
    posters = [_detections([[0, 0, .1, .1], [.2, .2, .3, .3], [.4, .4, .5, .5]], [1, 2, 3], [0.1, 0.9, 0.5]),
               _detections([], [])]
    table = DetectionTable.from_detections(["0000001", "0000002"], posters, max_regions=2,
                                           vocabulary=("person", "a", "b", "c"), source="yolo-twin")
    objects = table.objects(["0000001", "0000002"])
    assert objects["scores"].tolist() == [pytest.approx([0.9, 0.5]), [0.0, 0.0]]
    assert objects["classes"].tolist() == [[2, 3], [0, 0]]
    assert objects["mask"].tolist() == [[True, True], [False, False]]


def test_table_survives_a_save_and_load(tmp_path, twin):
    table = detections_for_release(DetectorConfig(kind="oracle", max_regions=4), twin)  # crowded posters cut to 4
    path = tmp_path / "table.safetensors"
    cache.save_table(table, path)
    loaded = cache.load_table(path)
    assert loaded.ids == table.ids and loaded.vocabulary == table.vocabulary and loaded.source == table.source
    for name in ("boxes", "classes", "scores", "mask"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(table, name))
    assert loaded.provenance == table.provenance
    assert table.mask.sum(axis=1).max() == 4


def test_twin_detectors_learn_only_from_the_train_part_of_the_split_they_serve(twin):
    thesis = thesis_split(twin.ids, twin.labels(twin.ids), seed=0)
    annotations = load_twin_annotations(twin, twin_classes(), train_posters=10_000, seed=0, split=thesis)
    assert set(annotations.train) == set(thesis.train) and set(annotations.dev) == set(thesis.dev)
    assert not set(annotations.posters) & set(thesis.test), "a detector must never see a scored test poster"
    leaked = set(official_split(twin).train) & set(thesis.test)
    assert leaked, "the tiny twin's official train part overlaps the thesis test part: the case that matters"
    subsample = load_twin_annotations(twin, twin_classes(), train_posters=20, seed=0, split=thesis)
    assert len(subsample.train) == 20 and set(subsample.train) <= set(thesis.train)
    # One cache entry per split: a detector trained for the official split is not reused for the thesis one.
    config = DetectorConfig(kind="yolo", training=TINY_TRAINING["yolo"])
    assert pipeline.detector_key(config, twin, split=thesis) != pipeline.detector_key(config, twin)
    assert pipeline.detector_key(config, twin, split=official_split(twin)) == pipeline.detector_key(config, twin)
    coco = DetectorConfig(kind="yolo", weights="coco")  # pretrained weights saw no twin poster: split-free
    assert pipeline.detector_key(coco, twin, split=thesis) == pipeline.detector_key(coco, twin)


TRAINING_LINES: dict[str, list[str]] = {}  # kind -> the log lines its training wrote (read by a test below)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module", params=["yolo", "frcnn"])
def trained(request, twin):
    """A detector trained briefly on the tiny twin, and its (cached) detection table."""
    config = DetectorConfig(kind=request.param, training=TINY_TRAINING[request.param])
    logger, handler = logging.getLogger("thesis_lib.detection"), _Lines(TRAINING_LINES.setdefault(request.param, []))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        detector = get_detector(config, twin)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return config, detector, detections_for_release(config, twin)


@pytest.mark.slow
def test_training_says_how_far_it_is(trained):
    """Detector training is not silent: a line as soon as it has begun (YOLO: after each epoch), each with
    the time so far and the time left, the last with nothing left."""
    config, _, _ = trained
    progress = [line for line in TRAINING_LINES[config.kind] if line.startswith(f"{config.kind} epoch ")]
    assert progress and all(" so far, eta " in line for line in progress), TRAINING_LINES[config.kind]
    first = "frcnn epoch 1 step 1/" if config.kind == "frcnn" else "yolo epoch 1/"
    assert progress[0].startswith(first) and progress[-1].endswith("eta 0:00:00")


@pytest.mark.slow
def test_training_writes_safetensors_and_a_report(trained, twin):
    config, detector, _ = trained
    folder = cache.detector_dir(config.name, pipeline.detector_key(config, twin))
    assert (folder / "weights.safetensors").is_file()
    assert not list(folder.rglob("*.pt")), "pickled checkpoints must not stay in the cache"
    report = detector.training_report
    assert report["train_posters"] == 90 and report["dev_posters"] == 15
    assert report["split"] == {"name": "official", "split_hash": official_split(twin).split_hash()}
    assert 0.0 <= report["dev_map50"] <= 1.0 and report["parameters"] == detector.num_parameters


@pytest.mark.slow
def test_second_call_reuses_the_trained_detector_and_its_detections(trained, twin):
    config, _, table = trained

    def fail(*args, **kwargs):
        raise AssertionError("cached result was recomputed")

    real = DETECTOR_BACKENDS[config.kind]
    loads_only = SimpleNamespace(load_coco=fail, train_twin=fail, load_twin=real.load_twin)
    assert get_detector(config, twin, backends={config.kind: loads_only}).training_report is not None  # loaded
    builds_nothing = SimpleNamespace(load_coco=fail, train_twin=fail, load_twin=fail)
    again = detections_for_release(config, twin, backends={config.kind: builds_nothing})  # no detector is built
    np.testing.assert_array_equal(again.boxes, table.boxes)
    assert again.provenance["posters"] == len(twin.ids)


@pytest.mark.slow
def test_detections_land_on_planted_objects_more_often_than_chance(trained, twin):
    _, detector, _ = trained
    ids = list(twin.official_split["test"])
    truth = _truth_objects(twin)
    # Top 5 detections per poster at any score: even a briefly trained detector ranks objects first.
    found = detector.detect([load_poster(twin.movies[movie_id].poster) for movie_id in ids], score_threshold=0.0,
                            max_regions=5)
    hits, total, chance = 0, 0, []
    width, height = POSTER_SIZE
    for movie_id, detections in zip(ids, found, strict=False):
        boxes = torch.tensor([obj["box"] for obj in truth[movie_id]["objects"]], dtype=torch.float32) / torch.tensor(
            [width, height, width, height])  # (K, 4)
        centres = (detections.boxes[:, :2] + detections.boxes[:, 2:]) / 2  # (R, 2)
        inside = ((centres[:, None, 0] >= boxes[None, :, 0]) & (centres[:, None, 0] <= boxes[None, :, 2])
                  & (centres[:, None, 1] >= boxes[None, :, 1]) & (centres[:, None, 1] <= boxes[None, :, 3]))  # (R, K)
        hits += int(inside.any(dim=1).sum())
        total += len(centres)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (K,) objects never overlap on a twin poster
        chance.append(float(areas.sum()))  # a random point's chance to fall on an object
    assert total >= len(ids)
    assert hits / total > np.mean(chance) + 0.2, f"{hits}/{total} centres on objects vs chance {np.mean(chance):.2f}"


def test_importing_ultralytics_leaves_pil_image_open_alone(tmp_path):
    from PIL import Image, UnidentifiedImageError

    from thesis_lib.offline import prepare_ultralytics

    prepare_ultralytics()
    garbage = tmp_path / "garbage.jpeg"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(UnidentifiedImageError):  # PIL's own error, not ultralytics' pi-heif install attempt
        Image.open(garbage)


# --- the device: detection where the profile says, results independent of the batch ---------------------

def _tiny_frcnn(config: DetectorConfig):
    """A randomly initialised twin Faster R-CNN (seeded): cheap enough to run over a whole tiny twin."""
    from thesis_lib.detection.frcnn import FrcnnDetector, build_twin_frcnn, twin_label_map

    vocabulary = twin_classes()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FrcnnDetector(build_twin_frcnn(len(vocabulary), config), vocabulary, config,
                             twin_label_map(vocabulary))


def _random_yolo(config: DetectorConfig):
    """YOLOv8n from its yaml with random weights (no file, no download)."""
    from thesis_lib.detection import yolo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = yolo._yolo_class()(yolo.TWIN_ARCHITECTURE)
    return yolo.YoloDetector(model, tuple(model.names[i] for i in range(len(model.names))), config)


TINY_COCO = SimpleNamespace(load_coco=_tiny_frcnn, train_twin=None, load_twin=None)  # "coco": nothing to train


@pytest.fixture
def small_twin(make_twin, tmp_path, monkeypatch):
    monkeypatch.setenv("THESIS_CACHE", str(tmp_path / "cache"))
    return load_release(make_twin(24), verify_posters="none", workers=1)


def test_detections_on_the_cpu_are_those_of_the_loop_before_devices(small_twin, caplog):
    """Through `detections_for_release(device="cpu")`, posters decoded by a loader worker, the table the old
    loop made: consecutive batches of posters, each PIL poster turned into floats on the CPU and through the
    model. The pass says it started (after its first batch) and when it ended."""
    from torchvision.transforms.v2 import functional as TF

    config = DetectorConfig(kind="frcnn", weights="coco", score_threshold=0.0, batch_size=8)
    with caplog.at_level("INFO", logger="thesis_lib.detection.pipeline"):
        table = detections_for_release(config, small_twin, backends={"frcnn": TINY_COCO}, device="cpu",
                                       num_workers=1)
    progress = [r.getMessage() for r in caplog.records if ": detection: " in r.getMessage()]
    assert len(progress) == 2 and "/24 posters (" in progress[0] and "24/24 posters done in" in progress[1]
    detector, ids, expected = _tiny_frcnn(config), list(small_twin.ids), []
    heads = detector.model.roi_heads
    heads.score_thresh, heads.detections_per_img, heads.nms_thresh = 0.0, config.max_regions, config.nms_iou
    for start in range(0, len(ids), config.batch_size):
        tensors = [TF.to_dtype(TF.to_image(load_poster(small_twin.movies[movie_id].poster)), torch.float32, scale=True)
                   for movie_id in ids[start:start + config.batch_size]]
        with torch.no_grad():
            outputs = detector.model(tensors)
        expected += [detector._to_detections(out, t.shape[-1], t.shape[-2]) for t, out in zip(tensors, outputs, strict=True)]
    reference = DetectionTable.from_detections(ids, expected, config.max_regions, detector.vocabulary, config.name)
    assert table.mask.sum() > len(ids)  # something to compare
    for name in ("boxes", "classes", "scores", "mask"):
        np.testing.assert_array_equal(getattr(table, name), getattr(reference, name))
    assert (table.provenance["device"], table.provenance["precision"], table.provenance["loader_workers"]) == (
        "cpu", "fp32", 1)


@pytest.mark.parametrize("build", [_tiny_frcnn, _random_yolo], ids=["frcnn", "yolo"])
def test_a_posters_detections_do_not_depend_on_its_batch(build, small_twin):
    """Posters of other sizes in the same call (a mixed batch letterboxes and pads differently) or another
    batch size leave every poster's detections as they are when it is detected alone."""
    poster = load_poster(small_twin.movies[small_twin.ids[0]].poster)
    other = load_poster(small_twin.movies[small_twin.ids[1]].poster).resize((150, 300))  # padded narrower
    third = load_poster(small_twin.movies[small_twin.ids[2]].poster)
    kind = "frcnn" if build is _tiny_frcnn else "yolo"
    detector = build(DetectorConfig(kind=kind, weights="coco", score_threshold=0.0, batch_size=2))
    together = detector.detect([poster, other, third])
    alone = [detector.detect([image])[0] for image in (poster, other, third)]
    for joint, single in zip(together, alone, strict=True):
        assert len(single.classes) > 0
        torch.testing.assert_close(joint.boxes, single.boxes)
        torch.testing.assert_close(joint.scores, single.scores)
        assert joint.classes.tolist() == single.classes.tolist()


def test_the_device_setting_reaches_the_detector_and_the_record(small_twin, monkeypatch):
    """device="auto" goes through machine.choose_device (here without a GPU: the CPU) to the detector's
    modules, and the table's provenance names the device; the cache key does not depend on it."""
    from thesis_lib import machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked = []
    choose = machine.choose_device
    monkeypatch.setattr(machine, "choose_device", lambda setting, *a: asked.append(setting) or choose(setting, *a))
    config = DetectorConfig(kind="frcnn", weights="coco", score_threshold=0.0, batch_size=8)
    detector = get_detector(config, backends={"frcnn": TINY_COCO}, device="auto")
    assert asked == ["auto"] and detector.device == torch.device("cpu")
    assert {parameter.device for parameter in detector.model.parameters()} == {detector.device}
    table = detections_for_release(config, small_twin, backends={"frcnn": TINY_COCO}, device="auto", num_workers=-1)
    assert table.provenance["device"] == "cpu" and table.provenance["loader_workers"] == machine.loader_workers(-1)
    cached = detections_for_release(config, small_twin, backends={"frcnn": SimpleNamespace()}, device="cpu")
    np.testing.assert_array_equal(cached.boxes, table.boxes)  # the same table: not recomputed for another device
    yolo_detector = _random_yolo(DetectorConfig(kind="yolo", weights="coco")).to(machine.choose_device("auto"))
    yolo_detector.detect([load_poster(small_twin.movies[small_twin.ids[0]].poster)])
    predictor = yolo_detector.model.predictor  # ultralytics set it up on the detector's device, in float32 there
    assert predictor.device == torch.device("cpu") and not predictor.model.fp16 and yolo_detector.precision == "fp32"
