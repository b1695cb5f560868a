"""Everything one run is built from: the release and splits (shared by the grid), and per run the model,
its tokenizer, its datasets and loaders, and the cached features of frozen encoders.

Two training paths, chosen by the run's backbone mode:
- finetune: `MMIMDbDataset` batches (posters, tokenised plots, detections) through the whole model;
- frozen: every frozen encoder runs once over the split (`cache_encoder_features`, one cache file per
  modality, keyed by the encoder's weights, its input settings and the data; which caches a run reads,
  pooled vectors only or tokens too, is `caches.feature_caches_of`), and the fusion + head train on the
  cached outputs (`FrozenEncodersClassifier`). The object encoder is never cached: it turns cached
  *detections* into region tokens with layers that are trained with the fusion (the detector is the frozen
  backbone of that modality).

A fusion with `encoders=runs` starts from the encoders its single-modality source runs trained (their
best checkpoint), so every fusion of a grid sees the very same encoders.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from thesis_lib.data.batch import CachedFeaturesCollator, MultimodalCollator
from thesis_lib.data.dataset import MMIMDbDataset
from thesis_lib.data.images import ImageTransformConfig, build_image_transform
from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.data.splits import Split
from thesis_lib.data.text import CLEAN, RAW, TextCleaningConfig, clean_text
from thesis_lib.data.tokenizers import cached_trained_tokenizer
from thesis_lib.detection import DetectionTable, detector_standin, source_detections
from thesis_lib.experiments.caches import CacheLedger, FeatureCacheNeed, feature_caches_of
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.restore import load_source_encoder
from thesis_lib.experiments.specs import RunSpec, resolve_model_config
from thesis_lib.genres import to_multi_hot
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import ModelConfig, TextEncoderConfig
from thesis_lib.models.outputs import EncoderOutput
from thesis_lib.models.pretrained import backbone_standin
from thesis_lib.models.registry import build_from_config
from thesis_lib.models.text import RANDOM_TEXT_BACKBONES
from thesis_lib.models.text import load_tokenizer as load_backbone_tokenizer
from thesis_lib.train import FitResult, TrainConfig
from thesis_lib.train.features import (
    CachedFeatureDataset,
    FeatureCacheConfig,
    FrozenEncodersClassifier,
    cache_encoder_features,
)
from thesis_lib.train.loaders import SeededLoader

TEXT_CLEANINGS: dict[str, TextCleaningConfig] = {"clean": CLEAN, "raw": RAW}
TRAINED_TOKENIZER_VOCAB = 8000  # vocabulary of tokenizers trained on the training plots (random text encoders)


class TrialPool(Protocol):
    """Trains several learning-rate trials of a run at once (`experiments.trials.TrialWorkers`)."""

    workers: int  # processes
    cpu_time_s: float  # CPU seconds its processes spent on trials so far

    def fit(self, key: tuple[str, int, str], label: str, indices: Sequence[int],
            resume: bool) -> list[tuple[FitResult, TrainConfig, float]]: ...  # per trial: result, config, CPU s


class ObjectsFactory(Protocol):
    """(source, release, model size, split; the profile's device and num_workers) -> the detections of that
    source (default `detection.source_detections`)."""

    def __call__(self, source: str, release: Release, model_size: str, split: Split, *, device: str,
                 num_workers: int) -> DetectionTable: ...


@dataclass
class GridContext:
    """What every run of one grid shares: profile, data, splits, device, the plan and its hashes.

    `objects_factory` builds the detections of an object source (default `detection.source_detections`)."""

    profile: Profile
    release: Release
    splits: dict[str, Split]
    runs: RunsFolder
    accelerator: Accelerator
    plan: dict[tuple[str, int, str], RunSpec]
    hashes: dict[tuple[str, int, str], tuple[str, dict[str, Any]]]
    objects: dict[tuple[str, str], DetectionTable] = field(default_factory=dict)  # (source, split): on first use
    objects_factory: ObjectsFactory = source_detections
    caches: CacheLedger | None = None  # the grid's feature-cache bookkeeping (run_grid sets it)
    trial_workers: TrialPool | None = None  # trains a run's trials at once (run_grid sets it; None: in turn)

    def folder(self, spec: RunSpec) -> RunFolder:
        return self.runs.run(spec.split, spec.name, spec.seed)

    def config_hash(self, spec: RunSpec) -> str:
        return self.hashes[spec.key][0]

    def source_spec(self, spec: RunSpec, modality: str) -> RunSpec:
        return self.plan[(spec.split, spec.seed, spec.source(modality))]

    def movies(self, split: str, part: str) -> list[Movie]:
        return self.release.movies_in(self.splits[split].part(part))

    def detections(self, source: str, split: str) -> DetectionTable:
        """Detections of `source` for the runs of `split` (a twin-trained detector learns from its train part),
        computed on the profile's device with its loader workers."""
        if (source, split) not in self.objects:
            self.objects[source, split] = self.objects_factory(
                source, self.release, self.profile.model_size, self.splits[split], device=self.profile.device,
                num_workers=self.profile.num_workers)
        return self.objects[source, split]


# ------------------------------------------------------------------------------------------- the model


@dataclass
class BuiltModel:
    """A run's model, with how it was put together."""

    model: GenreClassifier
    config: ModelConfig
    tokenizer: Any                          # None when the model reads no text
    backbones: dict[str, dict[str, Any]]    # modality -> where its weights came from (for the record)
    text_cleaning: str


def prepare_config(spec: RunSpec, ctx: GridContext) -> tuple[ModelConfig, Any, str]:
    """The run's final ModelConfig, its tokenizer and text cleaning (a fusion's come from its source runs)."""
    config = resolve_model_config(spec.model, spec.overrides, ctx.profile, spec.backbones)
    cleaning = spec.text_cleaning
    tokenizer = None
    if spec.encoders == "runs":
        frozen = spec.backbones == "frozen"
        changes: dict[str, Any] = {}
        for modality in config.modalities:
            source_config, source_tokenizer, source_cleaning = prepare_config(ctx.source_spec(spec, modality), ctx)
            part = getattr(source_config, modality)
            if modality == "objects":  # the detector is the source; the region layers stay the fusion's own
                changes[modality] = dataclasses.replace(
                    config.objects, source=part.source, num_classes=part.num_classes, person_class=part.person_class)
            else:
                changes[modality] = dataclasses.replace(part, frozen=frozen)
            if modality == "text":
                tokenizer, cleaning = source_tokenizer, source_cleaning
        config = dataclasses.replace(config, **changes)
    elif config.text is not None:
        tokenizer = run_tokenizer(config.text, spec.text_cleaning, ctx.movies(spec.split, "train"))
        if config.text.backbone in RANDOM_TEXT_BACKBONES:
            text = dataclasses.replace(config.text, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
            config = dataclasses.replace(config, text=text)
    return config, tokenizer, cleaning


def run_tokenizer(text: TextEncoderConfig, cleaning: str, train_movies: Sequence[Movie]) -> Any:
    """The tokenizer a run reads its plots with: the backbone's own, or, for a random text backbone, one
    trained on the cleaned training plots (cached by content, so a restored run gets the very same one)."""
    if text.backbone not in RANDOM_TEXT_BACKBONES:
        return load_backbone_tokenizer(text)
    kind = "bpe" if "roberta" in text.backbone else "wordpiece"
    texts = [clean_text(movie.plot, TEXT_CLEANINGS[cleaning]) for movie in train_movies]
    tokenizer = cached_trained_tokenizer(kind, texts, TRAINED_TOKENIZER_VOCAB)
    tokenizer.model_max_length = text.max_length
    return tokenizer


def build_run_model(spec: RunSpec, ctx: GridContext) -> BuiltModel:
    """A freshly built model for the run; a fusion's encoders loaded from its source runs."""
    config, tokenizer, cleaning = prepare_config(spec, ctx)
    torch.manual_seed(spec.seed)  # the same seed gives the same initial weights (and the same feature caches)
    model = build_from_config(config)
    backbones = {m: _fresh_backbone(getattr(config, m), m, spec, ctx) for m in config.modalities}
    if spec.encoders == "runs":
        for modality in config.modalities:
            source = ctx.source_spec(spec, modality)
            if modality != "objects":
                load_source_encoder(model, modality, ctx.folder(source))
            backbones[modality] = {
                **backbones[modality],
                "weights": "run" if modality != "objects" else backbones[modality]["weights"],
                "run": source.label,
                "run_config_hash": ctx.config_hash(source),
            }
    for modality in config.modalities:
        backbones[modality]["frozen"] = bool(getattr(model.encoders[modality], "frozen", False))
    return BuiltModel(model, config, tokenizer, backbones, cleaning)


def _fresh_backbone(part: Any, modality: str, spec: RunSpec, ctx: GridContext) -> dict[str, Any]:
    if modality == "objects":
        table = ctx.detections(part.source, spec.split)
        origin = {"weights": "detector", "name": part.source, "detector": table.describe()}
        if (standin := detector_standin(part.source, ctx.profile.model_size)) is not None:  # a rehearsal's
            origin["standin"] = standin
        return origin
    pretrained = part.pretrained and not (modality == "text" and part.backbone in RANDOM_TEXT_BACKBONES)
    origin = {"weights": "pretrained" if pretrained else "random", "name": part.backbone}
    if (standin := backbone_standin(modality, part.backbone)) is not None:  # never recorded as the real weight
        origin |= {"weights": "stand-in" if pretrained else "random", "standin": standin}
    return origin


def trainable_encoder_prefixes(built: BuiltModel) -> tuple[str, ...]:
    """Parameter prefixes that get the backbone learning rate: encoders that start from trained weights
    (pretrained, a stand-in saved in their place, or a source run's); randomly initialised encoders learn
    at the head's rate."""
    return tuple(
        f"encoders.{m}." for m, origin in built.backbones.items()
        if origin["weights"] in ("pretrained", "stand-in", "run")
    )


# ------------------------------------------------------------------------------------------- the data


@dataclass
class RunData:
    """Datasets of the three parts, the collate function, and the module `fit` trains."""

    train: Dataset
    dev: Dataset
    test: Dataset
    collate: Callable[[list[Any]], dict[str, Any]]
    trainable: nn.Module                 # the model, or the model wrapped to read cached features
    cached_modalities: tuple[str, ...]   # modalities read from feature caches


def build_run_data(spec: RunSpec, ctx: GridContext, built: BuiltModel) -> RunData:
    """Datasets for the run: cached features when every heavy encoder is frozen, else raw inputs."""
    model = built.model
    heavy = [m for m in model.modalities if m != "objects"]
    objects = ctx.detections(built.config.objects.source, spec.split) if built.config.objects else None
    frozen = bool(heavy) and all(model.encoders[m].frozen for m in heavy)
    if frozen:
        needs = feature_caches_of(spec, ctx.profile, ctx.plan, ctx.hashes)
        if sorted({need.modality for need in needs}) != sorted(heavy):
            raise RuntimeError(f"{spec.label}: the plan expects feature caches of {[n.modality for n in needs]}, "
                               f"the model has frozen {heavy}")  # a bug: caches.feature_caches_of disagrees
        parts = {part: _cached_dataset(ctx, built, [n for n in needs if n.part == part]) for part in ("train", "dev", "test")}
        collate = CachedFeaturesCollator(objects)
        trainable = FrozenEncodersClassifier(model, tuple(heavy))
        return RunData(parts["train"], parts["dev"], parts["test"], collate, trainable, tuple(heavy))
    transforms = image_transforms(model, ctx.profile.image_augment) if "image" in model.modalities else None
    datasets = {
        part: raw_dataset(ctx.movies(spec.split, part), heavy, built,
                          None if transforms is None else transforms[part == "train"])
        for part in ("train", "dev", "test")
    }
    collate = multimodal_collator(built, objects)
    return RunData(datasets["train"], datasets["dev"], datasets["test"], collate, model, ())


def multimodal_collator(built: BuiltModel, objects: DetectionTable | None = None) -> MultimodalCollator:
    """The run's raw-input collator: posters, plots tokenised (and truncated) as the run's text encoder
    expects, and `objects`' detections when the model reads them."""
    if built.config.text is None:
        return MultimodalCollator(objects=objects)
    return MultimodalCollator(built.tokenizer, built.config.text.max_length, objects=objects)


def image_transforms(model: GenreClassifier, augment: bool = False) -> dict[bool, Callable]:
    """Transforms by `train`: the backbone's normalisation; augmentation on training posters if asked."""
    encoder = model.encoders["image"]
    stats = encoder.normalization()
    config = ImageTransformConfig(size=encoder.config.input_size, mean=stats.mean, std=stats.std)
    return {train: build_image_transform(config, train=train and augment) for train in (True, False)}


def raw_dataset(movies: Sequence[Movie], modalities: Sequence[str], built: BuiltModel,
                image_transform: Callable | None) -> Dataset:
    """The run's dataset of `movies`: posters through `image_transform`, plots cleaned as the run cleans
    them; labels only for a model that reads nothing but detections."""
    if not modalities:
        return LabelsDataset(list(movies))  # detections only: they come with the collator
    return MMIMDbDataset(
        movies,
        image_transform=image_transform,
        text_cleaning=TEXT_CLEANINGS[built.text_cleaning],
        tokenizer=built.tokenizer,
        modalities=tuple(modalities),
    )


class LabelsDataset(Dataset):
    """Items {"id", "labels"} only: for models that read nothing but detections."""

    def __init__(self, movies: list[Movie]):
        self.ids = [movie.id for movie in movies]
        self.labels = torch.from_numpy(np.stack([to_multi_hot(m.genres) for m in movies]))  # (N, 23)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": self.ids[index], "labels": self.labels[index]}


class CachedModalitiesDataset(Dataset):
    """Several single-modality feature caches of the same movies, read as one dataset."""

    def __init__(self, paths: Mapping[str, Path]):
        self.parts = {modality: CachedFeatureDataset(path) for modality, path in paths.items()}
        first = next(iter(self.parts.values()))
        for part in self.parts.values():
            if part.ids != first.ids:
                raise ValueError(f"feature cache {part.path} does not list the movies of {first.path} in order")
        self.ids = first.ids
        self.labels = first.labels  # (N, 23)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        features = {m: {k: t[index] for k, t in part.features[m].items()} for m, part in self.parts.items()}
        return {"id": self.ids[index], "labels": self.labels[index], "features": features}


class SingleEncoder(nn.Module):
    """One encoder seen through the `encode` API, so its outputs can be cached on their own."""

    def __init__(self, modality: str, encoder: nn.Module):
        super().__init__()
        self.encoders = nn.ModuleDict({modality: encoder})

    def encode(self, batch: Mapping[str, Any]) -> dict[str, EncoderOutput]:
        return {m: encoder(batch) for m, encoder in self.encoders.items()}

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """The encoder's input check (`Encoder.check_input`), run by the extraction on its first batch."""
        for encoder in self.encoders.values():
            encoder.check_input(batch)


def _cached_dataset(ctx: GridContext, built: BuiltModel, needs: Sequence[FeatureCacheNeed]) -> Dataset:
    """The frozen encoders' outputs over one split part (one `need` per modality), from (or into) the
    feature caches; the grid's ledger records which file served which need."""
    profile = ctx.profile
    paths = {}
    for need in needs:
        split = ctx.splits[need.split]
        transform = image_transforms(built.model)[False] if need.modality == "image" else None
        dataset = raw_dataset(ctx.movies(need.split, need.part), [need.modality], built, transform)
        collate = multimodal_collator(built) if need.modality == "text" else MultimodalCollator()
        encoder = built.model.encoders[need.modality]
        # The weights themselves are hashed by cache_encoder_features: a fusion reusing a run's frozen
        # encoder shares that run's cache.
        identity = {
            "modality": need.modality,
            "encoder": dataclasses.asdict(getattr(built.config, need.modality)),
            "inputs": _input_identity(built, need.modality),
        }
        config = feature_cache_config(profile, tokens=need.tokens)
        paths[need.modality] = cache_encoder_features(
            SingleEncoder(need.modality, encoder),
            dataset,
            backbone_id=json.dumps(identity, sort_keys=True, default=str),
            data_fingerprint=ctx.release.fingerprint,
            part=f"{split.name}-{split.split_hash()[:12]}-{need.part}-{need.modality}",
            collate_fn=collate,
            config=config,
            accelerator=ctx.accelerator,
            label=need.label,
        )
        if ctx.caches is not None:
            ctx.caches.record(need, paths[need.modality])
    return CachedModalitiesDataset(paths)


def feature_cache_config(profile: Profile, *, tokens: bool) -> FeatureCacheConfig:
    """How the grid computes a feature cache under `profile` (the speed benchmark times this very setting)."""
    return FeatureCacheConfig(tokens=tokens, mixed_precision=profile.mixed_precision, num_workers=profile.num_workers)


def _input_identity(built: BuiltModel, modality: str) -> dict[str, Any]:
    """What else decides an encoder's outputs: the image transform or the text pipeline."""
    if modality == "image":
        stats = built.model.encoders["image"].normalization()
        return {"size": built.config.image.input_size, "mean": stats.mean, "std": stats.std, "transform": "eval"}
    tokenizer = built.tokenizer
    return {"cleaning": built.text_cleaning, "max_length": built.config.text.max_length,
            "tokenizer": getattr(tokenizer, "name_or_path", ""), "vocab": len(tokenizer)}


def evaluation_loader(dataset: Dataset, collate: Callable, batch_size: int, accelerator: Accelerator,
                      workers: int = 0) -> DataLoader:
    """A prepared, unshuffled loader (dataset order) for predictions: read once, so its workers end with it."""
    source = SeededLoader(dataset, batch_size=batch_size, shuffle=False, seed=0, num_workers=workers,
                          collate_fn=collate, persistent=False)
    return accelerator.prepare(source.loader)
