"""One training step of every architecture the full profile trains, at full size, on batches in real formats.

The full profile (notebooks/params/full.yaml) is planned by the grid's own planner, and every run it
trains (one per architecture, see `trained_architectures`) is built and fed by the grid's own pipeline
(`experiments.pipeline`): BERT-base and RoBERTa-base over 512-token plots, ResNet-50 and ViT-B/16 at 224
px, the object encoders on the detections of YOLOv8n and Faster R-CNN R50-FPN, and the fusions and their
ablation variants on the cached outputs of the frozen full-size encoders. Each gets one forward and one
backward pass on a batch of two movies under the trainer's loss: logits (2, 23), a finite loss, a finite
gradient on every trainable parameter and none on a frozen one.

Offline there are no pretrained weights: the backbones are built with random weights (`pretrained: false`
for every model, the architecture unchanged), reading their published architecture and a tokenizer trained
on the plots from marked stand-in folders (`models.standins.write_standins`); the detectors are YOLOv8n from
its yaml and torchvision's R50-FPN, random. Random detectors score every box near zero, so they detect at
threshold 0 here, or the object encoders would only ever see posters without a detection.

The data is a four-movie release in MM-IMDb's format written from a twin: posters re-saved at MM-IMDb's
size (182 x 268 JPEG, one grayscale), one plot list with an entry longer than 512 tokens (the longest entry
is the plot), read by `load_release` and split by its split.json (2 train, 1 dev, 1 test movies).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from PIL import Image
from torchvision.transforms import v2

from thesis_lib.data.batch import MAX_TEXT_LENGTH
from thesis_lib.data.images import IMAGENET_STATS, NormalizationStats, load_poster
from thesis_lib.data.mmimdb import Release, load_release
from thesis_lib.data.splits import official_split
from thesis_lib.detection import coco_classes, default_detector_config, detections_for_release, frcnn, yolo
from thesis_lib.experiments.caches import feature_caches_of
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.pipeline import (
    BuiltModel,
    GridContext,
    RunData,
    build_run_data,
    build_run_model,
    prepare_config,
)
from thesis_lib.experiments.profile import Profile, load_profile
from thesis_lib.experiments.runner import make_train_config
from thesis_lib.experiments.specs import BASELINES, config_hashes, plan_grid, resolve_model_config
from thesis_lib.genres import NUM_GENRES
from thesis_lib.machine import choose_device, effective_precision
from thesis_lib.models import registry
from thesis_lib.models.registry import build_from_config, default_config
from thesis_lib.models.standins import write_standins
from thesis_lib.train.features import FrozenEncodersClassifier
from thesis_lib.train.loaders import SeededLoader, item_lengths
from thesis_lib.train.loss import make_loss, training_label_matrix

pytestmark = pytest.mark.slow  # full-size backbones: seconds per test

SPLIT = "official"  # the release's own split.json, as small as the test wants it
POSTER_SIZE = (182, 268)  # (width, height): an MM-IMDb poster
TWIN_MOVIES = 100  # the tiny grid's twin (conftest.TinyGrids): generated once per test session
# Parameters of the published architectures (no classifier; BERT without its unused NSP pooler), so that a
# smaller model built by mistake fails here rather than passing quickly.
FULL_SIZE_PARAMETERS = {
    "bert-base-uncased": 108_891_648,
    "roberta-base": 124_055_040,
    "resnet50": 23_508_032,
    "vit_base_patch16_224": 85_798_656,
}
# YOLOv8n (COCO-80); R50-FPN as torchvision builds it without weights: 41,755,286 + 53,120 BatchNorm weights and
# biases, which its COCO weights hold as buffers (FrozenBatchNorm2d) instead
DETECTOR_PARAMETERS = {"yolo": 3_157_200, "frcnn": 41_808_406}
VIT_STATS = NormalizationStats(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # timm's ViT-B/16 (augreg)
IMAGE_STATS = {"resnet50": IMAGENET_STATS, "vit_base_patch16_224": VIT_STATS}


def random_weights_profile() -> Profile:
    """The full profile with `pretrained: false` for every backbone (architecture as published, random
    weights) and loader workers off."""
    profile = load_profile("full")
    overrides = {}
    for model in profile.models:
        if model in BASELINES:
            continue
        config = default_config(model, profile.model_size)
        changes = {f"{part}_pretrained": False for part in ("text", "image") if getattr(config, part) is not None}
        if changes:
            overrides[model] = {**profile.model_overrides.get(model, {}), **changes}
    return dataclasses.replace(profile, model_overrides=overrides, num_workers=0)


PROFILE = random_weights_profile()
SEED = PROFILE.seeds[0]


def trained_architectures(profile: Profile) -> list[str]:
    """The runs of the profile that train a model, one per architecture (the modules, whichever of them are
    frozen): `text_bert@raw` differs from text_bert in its plots only, `fusion_cross_attention@finetune`
    from fusion_cross_attention in which parts train. Each part of the latter gets its step here (BERT-base
    and ViT-B trained in text_bert and image_vit, the cross-attention on their outputs); stepping it whole,
    through both backbones at once, would cost about 30 s on 2 cores."""
    seen, names = set(), []
    for spec in plan_grid(profile, seeds=[SEED]):
        if spec.split != SPLIT or spec.kind != "train":
            continue
        key = repr(resolve_model_config(spec.model, spec.overrides, profile, "finetune"))
        if key not in seen:
            seen.add(key)
            names.append(spec.name)
    return names


ARCHITECTURES = trained_architectures(PROFILE)


# ------------------------------------------------------------------------------------------ fixtures


def write_release(source: Release, root: Path) -> Path:
    """Four movies of the twin `source` as an MM-IMDb release: posters at MM-IMDb's size (the second
    grayscale); the first movie's plot list gets an entry made of many plots (the longest, so the chosen
    plot: over 512 tokens)."""
    ids = list(source.ids[:4])
    donors = " ".join(source.movies[movie_id].plot for movie_id in source.ids[4:40])
    (root / "dataset").mkdir(parents=True)
    for index, movie_id in enumerate(ids):
        record = json.loads((source.root / "dataset" / f"{movie_id}.json").read_text(encoding="utf-8"))
        if index == 0:
            record["plot"] = [*record["plot"], donors]
        (root / "dataset" / f"{movie_id}.json").write_text(json.dumps(record), encoding="utf-8")
        poster = load_poster(source.movies[movie_id].poster).resize(POSTER_SIZE, Image.Resampling.BICUBIC)
        (poster.convert("L") if index == 1 else poster).save(root / "dataset" / f"{movie_id}.jpeg", quality=90)
    split = {"train": ids[:2], "dev": ids[2:3], "test": ids[3:]}
    (root / "split.json").write_text(json.dumps(split), encoding="utf-8")
    return root


def random_yolo(config):
    """YOLOv8n from its yaml (COCO's 80 outputs), random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = yolo._yolo_class()(yolo.TWIN_ARCHITECTURE)
    return yolo.YoloDetector(model, coco_classes(), config)


def random_frcnn(config):
    """Faster R-CNN R50-FPN as the full profile loads it (COCO's 91 outputs read as 80 classes), random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return frcnn.coco_detector(config, None)


RANDOM_COCO = {"yolo": SimpleNamespace(load_coco=random_yolo), "frcnn": SimpleNamespace(load_coco=random_frcnn)}


def random_coco_detections(source, release, model_size, split, *, device, num_workers):
    """`detection.source_detections` with the random COCO detectors, detecting at threshold 0, two posters
    per inference batch."""
    config = dataclasses.replace(default_detector_config(source, model_size), score_threshold=0.0, batch_size=2)
    return detections_for_release(config, release, split=split, backends=RANDOM_COCO, device=device,
                                  num_workers=num_workers)


@pytest.fixture(scope="module")
def ctx(make_twin, tmp_path_factory):
    """The grid context `open_grid` would make for the profile, on the four-movie release; stand-in
    architecture folders and a cache of its own for the module."""
    root = tmp_path_factory.mktemp("full-size")
    twin = load_release(make_twin(TWIN_MOVIES), verify_posters="none", workers=1)
    release = load_release(write_release(twin, root / "release"), plot_choice=PROFILE.plot_choice)
    plots = [movie.plot for movie in twin.movies.values()]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THESIS_CACHE", str(root / "cache"))
        patch.setenv("THESIS_PRETRAINED_DIR", str(write_standins(root / "pretrained", plots)))
        device = choose_device(PROFILE.device)
        accelerator = Accelerator(cpu=device.type == "cpu",
                                  mixed_precision=effective_precision(device, PROFILE.mixed_precision))
        plan = plan_grid(PROFILE, seeds=[SEED])
        yield GridContext(PROFILE, release, {SPLIT: official_split(release)}, RunsFolder(root / "runs"), accelerator,
                          {spec.key: spec for spec in plan}, config_hashes(plan, PROFILE),
                          objects_factory=random_coco_detections)


@pytest.fixture(scope="module")
def shared():
    """What the fusions share. As in the grid, the feature caches of their frozen encoders: one set per
    `caches.feature_caches_of`, made by `pipeline.build_run_data` for the first fusion that reads it. Here
    also the frozen full-size encoders themselves: their weights never change, so one BERT-base and one
    ViT-B serve every fusion instead of a fresh build (seconds each) per fusion."""
    return SimpleNamespace(encoders={}, data={})


@pytest.fixture
def reuse_frozen_encoders(shared, monkeypatch):
    """`registry.build_from_config` builds each frozen text or image encoder once (by its exact config)."""
    build = registry.build_encoder

    def build_or_reuse(modality, config, *, reads_tokens=True):
        if modality == "objects" or not config.frozen:
            return build(modality, config, reads_tokens=reads_tokens)
        if (modality, config) not in shared.encoders:
            shared.encoders[modality, config] = build(modality, config, reads_tokens=reads_tokens)
        return shared.encoders[modality, config]

    monkeypatch.setattr(registry, "build_encoder", build_or_reuse)


def built_model(spec, ctx) -> BuiltModel:
    """`pipeline.build_run_model`; for a fusion reusing its source runs' encoders (encoders=runs), the same
    build without copying those runs' trained weights in (there are no runs here: the weights are random)."""
    if spec.encoders != "runs":
        return build_run_model(spec, ctx)
    config, tokenizer, cleaning = prepare_config(spec, ctx)
    torch.manual_seed(spec.seed)
    return BuiltModel(build_from_config(config), config, tokenizer, {}, cleaning)


def run_data(spec, ctx, built, shared) -> RunData:
    """`pipeline.build_run_data`; a fusion on feature caches another fusion made reads those (its frozen
    encoders are the same objects, see `shared`)."""
    needs = feature_caches_of(spec, ctx.profile, ctx.plan, ctx.hashes)
    if not needs:
        return build_run_data(spec, ctx, built)
    if needs not in shared.data:
        shared.data[needs] = build_run_data(spec, ctx, built)
    data = shared.data[needs]
    return dataclasses.replace(data, trainable=FrozenEncodersClassifier(built.model, data.cached_modalities))


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("source", ["yolo", "frcnn"])
def test_random_coco_detectors_find_regions_on_posters_of_real_size(source, ctx):
    table = ctx.detections(source, SPLIT)
    assert table.ids == ctx.release.ids and table.vocabulary == coco_classes()
    assert table.provenance["parameters"] == DETECTOR_PARAMETERS[source]
    assert {load_poster(ctx.release.movies[movie_id].poster).size for movie_id in table.ids} == {POSTER_SIZE}
    assert table.mask.any(axis=1).all()  # threshold 0: regions on every poster
    boxes = torch.from_numpy(table.boxes)  # (N, R, 4) normalised xyxy
    assert boxes.min() >= 0 and boxes.max() <= 1
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    assert table.classes.min() >= 0 and table.classes.max() < len(coco_classes())
    scores = torch.from_numpy(table.scores)  # (N, R)
    assert (scores[:, :-1] >= scores[:, 1:]).all()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_one_training_step_at_full_size(name, ctx, shared, reuse_frozen_encoders):
    spec = ctx.plan[(SPLIT, SEED, name)]
    built = built_model(spec, ctx)
    data = run_data(spec, ctx, built, shared)
    config = make_train_config(spec, ctx, built, data, 1.0)
    model, encoders = data.trainable, built.model.encoders

    # Full size: the published backbones, frozen exactly where the profile's backbone mode says.
    heavy = [m for m in built.config.modalities if m != "objects"]
    for modality in heavy:
        backbone = getattr(built.config, modality).backbone
        assert sum(p.numel() for p in encoders[modality].backbone.parameters()) == FULL_SIZE_PARAMETERS[backbone]
        assert encoders[modality].frozen == (spec.backbones == "frozen")
    assert data.cached_modalities == (tuple(heavy) if spec.backbones == "frozen" else ())

    # One batch of two movies in the real formats, as the trainer's loader makes it.
    lengths = item_lengths(data.train) if config.group_by_length else None
    loader = SeededLoader(data.train, batch_size=config.batch_size, shuffle=True, seed=spec.seed, num_workers=0,
                          collate_fn=data.collate, lengths=lengths).loader
    batch = next(iter(loader))
    assert len(batch["ids"]) == 2 and batch["labels"].shape == (2, NUM_GENRES)
    check_inputs(batch, built, data)

    # One forward and backward pass, as `train.epoch.train_one_epoch` takes it.
    device = ctx.accelerator.device
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    loss_fn = make_loss(config, training_label_matrix(data.train)).to(device)
    batch = send_to_device(batch, device)
    with ctx.accelerator.autocast():
        logits = model(batch).logits.float()  # (B, C)
        loss = loss_fn(logits, batch["labels"].float())
    ctx.accelerator.backward(loss)
    assert logits.shape == (2, NUM_GENRES) and torch.isfinite(logits).all() and torch.isfinite(loss)

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert not [n for n, p in trainable.items() if p.grad is None], "trainable parameters without a gradient"
    assert not [n for n, p in trainable.items() if not torch.isfinite(p.grad).all()], "non-finite gradients"
    assert not [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]


def check_inputs(batch, built, data) -> None:
    """Plots of 512 tokens (one padded), posters at 224 px normalised for their backbone, detections padded to
    the detector's max_regions; or the cached outputs of the frozen encoders at their full widths."""
    config = built.config
    if config.objects is not None:
        objects = batch["objects"]
        assert objects["boxes"].shape == (2, default_detector_config(config.objects.source, "full").max_regions, 4)
        assert objects["mask"].any(dim=1).all()
    if data.cached_modalities:
        features = batch["features"]
        assert sorted(features) == sorted(data.cached_modalities)
        for modality, part in features.items():
            assert part["pooled"].shape == (2, built.model.encoders[modality].pooled_dim)
        if built.model.fusion.reads_tokens:
            assert features["text"]["tokens"].shape == (2, MAX_TEXT_LENGTH, 768)
            real = sorted(features["text"]["mask"].sum(dim=1).tolist())
            assert real[0] < real[1] == MAX_TEXT_LENGTH  # as the plots were tokenised (below)
            if "image" in features:  # ViT-B/16 at 224 px: the class token and 14 x 14 patches
                assert features["image"]["tokens"].shape == (2, 1 + 14 * 14, 768) and features["image"]["mask"].all()
        return
    if config.text is not None:
        assert batch["input_ids"].shape == (2, MAX_TEXT_LENGTH)
        real = sorted(batch["attention_mask"].sum(dim=1).tolist())
        assert real[0] < real[1] == MAX_TEXT_LENGTH  # one plot truncated to 512, the other padded
    if config.image is not None:
        assert batch["image"].shape == (2, 3, PROFILE.image_size, PROFILE.image_size)
        normalize = next(step for step in data.train.image_transform.transforms if isinstance(step, v2.Normalize))
        expected = IMAGE_STATS[config.image.backbone]
        assert (tuple(normalize.mean), tuple(normalize.std)) == (expected.mean, expected.std)
