"""A finished run back from its folder, ready to be fed movies: `load_run(run, release) -> LoadedRun`.

The weights come back through `restore.restore_trained_model` (a slim checkpoint's frozen encoders from
their source runs or the registry, then the run's best weights, checked against their fingerprint). The
tokenizer, text cleaning, eval image transform, dataset and collator are built by the same functions the
grid trained the run with (`pipeline`), so a batch made here is exactly a batch the run has seen.

    run = load_run(RunsFolder(RUNS).run("thesis", "fusion_cross_attention", 0), release, device="auto")
    batch = run.make_batch(["0000042", "0000043"])      # the batch contract of `data.batch`, on run.device
    logits = run.model(batch).logits                    # (2, 23)
    run.thresholds                                      # (23,) tuned on the dev split

The model lives on `run.device` (`machine.choose_device` of the `device` setting: the GPU when there is
one for "auto") and `make_batch` puts its batches there, so explanations computed from them run there
too; whoever reads their results (figures, scores) brings them back to the CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from accelerate.utils import send_to_device

from thesis_lib import machine
from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.data.splits import Split
from thesis_lib.data.text import TextCleaningConfig
from thesis_lib.detection import DetectionTable, source_detections
from thesis_lib.experiments.layout import RunFolder
from thesis_lib.experiments.pipeline import (
    TEXT_CLEANINGS,
    BuiltModel,
    image_transforms,
    multimodal_collator,
    raw_dataset,
    run_tokenizer,
)
from thesis_lib.experiments.records import (
    RecordError,
    model_config_from_dict,
    read_predictions,
    read_record,
    run_split,
    tuned_thresholds,
)
from thesis_lib.experiments.restore import restore_trained_model
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.registry import build_from_config
from thesis_lib.models.text import RANDOM_TEXT_BACKBONES
from thesis_lib.train.results import Predictions

THRESHOLD_POLICY = "tuned_per_genre"  # the thresholds a loaded run decides with: tuned per genre on dev


class NoNetworkError(RecordError):
    """The run has no trained network of its own (a baseline, or a late fusion of other runs' predictions)."""


# (object source, split hash) -> its detections, shared by the runs loaded in one session
DetectionsCache = MutableMapping[tuple[str, str], DetectionTable]


@dataclass
class LoadedRun:
    """A finished run with its trained model (eval mode) and everything that turns movies into its batches."""

    folder: RunFolder
    record: dict[str, Any]
    model: GenreClassifier  # best weights, eval mode
    split: Split  # the split it was trained, tuned and tested on
    movies: Mapping[str, Movie]  # its test part, by id
    thresholds: np.ndarray  # (23,) the decision thresholds tuned on its dev part
    tokenizer: Any  # its fast tokenizer (None when it reads no plot)
    text_cleaning: TextCleaningConfig  # the cleaning its dataset applied to plots
    max_length: int | None  # the collator's truncation length (None when it reads no plot)
    image_transform: Callable | None  # the eval transform of its posters (None when it reads no poster)
    device: torch.device  # where the model is and where `make_batch` puts its batches
    _release: Release = field(repr=False)
    _built: BuiltModel = field(repr=False)
    _collate: MultimodalCollator = field(repr=False)

    @property
    def model_name(self) -> str:
        return self.record["name"]

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def config(self) -> ModelConfig:
        return self._built.config

    def make_batch(self, ids: Sequence[str]) -> dict[str, Any]:
        """The run's eval batch of release movies `ids` (any part of the release, in this order), on `device`."""
        modalities = [m for m in self.config.modalities if m != "objects"]
        dataset = raw_dataset(self._release.movies_in(ids), modalities, self._built, self.image_transform)
        return send_to_device(self._collate([dataset[row] for row in range(len(dataset))]), self.device)

    def predictions(self, part: str) -> Predictions:
        """What the run predicted for its dev or test part when it finished."""
        return read_predictions(self.folder.predictions(part))

    @cached_property
    def probabilities(self) -> dict[str, np.ndarray]:
        """id -> (23,) the run's saved test probabilities."""
        test = self.predictions("test")
        return {str(movie_id): probs for movie_id, probs in zip(test.ids, test.probs, strict=True)}

    @cached_property
    def rollout_model(self) -> GenreClassifier | None:
        """The same weights with the text encoder's attention maps switched on (for attention rollout);
        None when the run reads no plot."""
        if self.config.text is None:
            return None
        config = dataclasses.replace(self.config, text=dataclasses.replace(self.config.text, need_attentions=True))
        model = build_from_config(config)
        model.load_state_dict(self.model.state_dict(), strict=True)
        return model.to(self.device).eval()


def record_plot_choice(record: dict[str, Any]) -> str:
    """Which plot of each movie's list the run read (records before the profile key existed: "longest")."""
    return record.get("config", {}).get("train", {}).get("plot_choice", "longest")


def load_run(run: RunFolder, release: Release, detections: DetectionsCache | None = None, *, device: str = "cpu",
             num_workers: int = 0) -> LoadedRun:
    """The finished run in `run`, on `release` (the data it was trained on: checked by fingerprint).

    `detections` shares object detections between runs loaded together. `device` ("cpu" | "auto", a profile's
    setting) decides where the model goes (`machine.choose_device`) and where detections not yet cached are
    computed, with `num_workers` poster-decoding workers. RecordError (or its subclass `NoNetworkError`,
    `restore.SourceRunError`) names what is missing or does not fit."""
    record = read_record(run)
    if record is None:
        raise RecordError(f"{run.path} holds no finished run (no record.json)")
    if record.get("kind") != "train":
        raise NoNetworkError(f"{run.label}: a {record.get('kind')} run has no network of its own")
    if record["data"]["fingerprint"] != release.fingerprint:
        raise RecordError(f"{run.label} was trained on other data (fingerprint {record['data']['fingerprint'][:12]}, "
                          f"{record['data']['root']}) than {release.root} ({release.fingerprint[:12]})")
    plot_choice = record_plot_choice(record)
    if plot_choice != release.plot_choice:
        raise RecordError(f"{run.label} read the {plot_choice!r} plot of each movie, but {release.root} was loaded "
                          f"with plot_choice={release.plot_choice!r}: load it with plot_choice={plot_choice!r}")
    config = model_config_from_dict(record.get("model_config"))
    on = machine.choose_device(device)
    model = restore_trained_model(run, record, config=config).to(on)  # eval mode
    split = run_split(record, run, release)
    cleaning = record.get("text_cleaning") or "clean"
    tokenizer = _tokenizer(config, cleaning, split, release, run) if config.text is not None else None
    built = BuiltModel(model, config, tokenizer, record.get("backbones") or {}, cleaning)
    objects = None
    if config.objects is not None:
        cache: DetectionsCache = {} if detections is None else detections
        key = (config.objects.source, split.split_hash())  # a twin-trained detector learnt from this split
        if key not in cache:
            model_size = record["config"]["train"]["model_size"]
            cache[key] = source_detections(config.objects.source, release, model_size, split, device=device,
                                           num_workers=num_workers)
        objects = cache[key]
    return LoadedRun(
        folder=run,
        record=record,
        model=model,
        split=split,
        movies={movie.id: movie for movie in release.movies_in(split.test)},
        thresholds=tuned_thresholds(record, THRESHOLD_POLICY),
        tokenizer=tokenizer,
        text_cleaning=TEXT_CLEANINGS[cleaning],
        max_length=config.text.max_length if config.text is not None else None,
        image_transform=image_transforms(model)[False] if config.image is not None else None,
        device=on,
        _release=release,
        _built=built,
        _collate=multimodal_collator(built, objects),
    )


def _tokenizer(config: ModelConfig, cleaning: str, split: Split, release: Release, run: RunFolder) -> Any:
    """The tokenizer the run read its plots with (`pipeline.run_tokenizer`), checked against the model."""
    tokenizer = run_tokenizer(config.text, cleaning, release.movies_in(split.train))
    trained_here = config.text.backbone in RANDOM_TEXT_BACKBONES  # its vocabulary size is the model's
    if trained_here and len(tokenizer) != config.text.vocab_size:
        raise RecordError(f"{run.label}: the re-made tokenizer has {len(tokenizer)} entries, the model "
                          f"{config.text.vocab_size}: not the tokenizer it was trained with")
    return tokenizer
