"""A finished run's trained model, back from its folder (record.json + checkpoints/best/model.safetensors).

A run that trained on cached features of frozen encoders saves a *slim* checkpoint: fusion, head and any
live encoder, without the frozen encoders (`train.checkpoint`: the file names what it leaves out and
fingerprints it). Restoring such a run puts those encoders back from where the run got them, then loads
the run's own weights:
- an encoder from a source run (record["backbones"][m]["weights"] == "run", a fusion with encoders=runs):
  that run's best weights (`pipeline.load_source_encoder`; a source that kept it frozen itself is restored
  the same way, in turn);
- an encoder from the registry (pretrained, or randomly initialised): building the model from the record's
  config, under the run's seed as the grid built it (`pipeline.build_run_model`).
`load_model_weights` then checks the left-out weights against the file's fingerprint: a source run trained
again since, or other pretrained weights, is an error, never a quietly different model. Whole-module files
(fine-tuned runs, runs from before slim checkpoints) overwrite everything and need no source run.

    model = restore_trained_model(RUNS / "fusion_cross_attention" / "seed0")   # eval mode
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from thesis_lib.experiments.pipeline import SourceRunError, load_source_encoder
from thesis_lib.experiments.records import CHECKPOINTS, RecordError, model_config_from_dict, read_record
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.registry import build_from_config
from thesis_lib.train.checkpoint import (
    BEST,
    MODEL_FILE,
    excluded_prefixes,
    load_model_weights,
    read_weights_metadata,
)


def best_weights(folder: Path) -> Path:
    """RUN/checkpoints/best/model.safetensors: the weights a finished run predicted with."""
    return Path(folder) / CHECKPOINTS / BEST / MODEL_FILE


def source_run_folder(folder: Path, backbone: Mapping[str, Any]) -> Path:
    """The folder of the run an encoder came from: a sibling of `folder` (same split, so same parent),
    named by the record's label "<split>/<name>/seed<k>"."""
    label = backbone.get("run")
    parts = label.split("/") if isinstance(label, str) else []
    if len(parts) != 3 or not parts[2].startswith("seed"):
        raise SourceRunError(f"{folder}: the record names its encoder's source run as {label!r}, "
                             f"not as <split>/<name>/seed<k>")
    _, name, seed = parts
    return Path(folder).parent.parent / name / seed


def build_run_architecture(config: ModelConfig, seed: int | None) -> GenreClassifier:
    """The model `config` describes, initialised as the grid initialised it: under `torch.manual_seed(seed)`
    (random encoders then come back identical). The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):  # built on the CPU: only the CPU generator is used
        if seed is not None:
            torch.manual_seed(seed)
        return build_from_config(config)


def restore_trained_model(
    folder: Path, record: Mapping[str, Any] | None = None, *, config: ModelConfig | None = None
) -> GenreClassifier:
    """The trained model of the finished run in `folder`, in eval mode.

    `record` defaults to the folder's record.json; `config` to its `model_config` (pass a variant with the
    same parameters, e.g. attention maps switched on). The frozen encoders a slim checkpoint left out are
    loaded from their source runs (or rebuilt from the registry), then the run's best weights, checked."""
    folder = Path(folder)
    if record is None:
        record = read_record(folder)
        if record is None:
            raise RecordError(f"{folder} holds no finished run (no record.json)")
    weights = best_weights(folder)
    if not weights.is_file():
        raise RecordError(f"{folder} has a record but no best weights at {weights}")
    config = config or model_config_from_dict(record["model_config"])
    model = build_run_architecture(config, record.get("seed"))
    left_out = excluded_prefixes(read_weights_metadata(weights), weights)
    for modality, backbone in (record.get("backbones") or {}).items():
        prefix = f"encoders.{modality}."
        from_run = backbone.get("weights") == "run" and modality in model.encoders
        if from_run and any(p.startswith(prefix) or prefix.startswith(p) for p in left_out):
            source = source_run_folder(folder, backbone)
            _check_source_record(source, backbone, folder)
            load_source_encoder(model, modality, best_weights(source), backbone["run"])
    load_model_weights(model, weights)
    return model.eval()


def _check_source_record(source: Path, backbone: Mapping[str, Any], folder: Path) -> None:
    """The source run is there and is the run that `folder` was trained from (same config hash)."""
    if not source.is_dir():
        raise SourceRunError(f"{folder} was trained on the encoder of {backbone['run']}, whose folder {source} "
                             f"does not exist: its frozen encoder cannot be restored")
    found = read_record(source)
    wanted = backbone.get("run_config_hash")
    if found is not None and wanted is not None and found.get("config_hash") != wanted:
        raise SourceRunError(f"{source} holds another run (config {str(found.get('config_hash'))[:12]}) than the "
                             f"{backbone['run']} that {folder} was trained from (config {wanted[:12]})")
