"""A finished run's trained model, back from its folder (record.json + checkpoints/best/model.safetensors).

A run that trained on cached features of frozen encoders saves a *slim* checkpoint: fusion, head and any
live encoder, without the frozen encoders (`train.checkpoint`: the file names what it leaves out and
fingerprints it). Restoring such a run puts those encoders back from where the run got them, then loads
the run's own weights:
- an encoder from a source run (record["backbones"][m]["weights"] == "run", a fusion with encoders=runs):
  that run's best weights (`load_source_encoder`; a source that kept it frozen itself is restored the same
  way, in turn);
- an encoder from the registry (pretrained, or randomly initialised): building the model from the record's
  config, under the run's seed as the grid built it (`pipeline.build_run_model`).
`load_model_weights` then checks the left-out weights against the file's fingerprint: a source run trained
again since, or other pretrained weights, is an error, never a quietly different model. Whole-module files
(fine-tuned runs, runs from before slim checkpoints) overwrite everything and need no source run.

    model = restore_trained_model(RunsFolder(RUNS).run("thesis", "fusion_cross_attention", 0))   # eval mode
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder
from thesis_lib.experiments.records import RecordError, model_config_from_dict, read_record
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.registry import build_from_config
from thesis_lib.train.checkpoint import excluded_prefixes, load_model_weights, read_weights_metadata


class SourceRunError(ThesisError, RuntimeError):
    """A fusion needs a single-modality run that has not finished (or whose files are missing)."""


def load_source_encoder(model: GenreClassifier, modality: str, source: RunFolder) -> None:
    """Copy `encoders.<modality>.*` from a source run's best checkpoint into `model` (every key must match).

    A source run that kept this encoder frozen (trained on its cached features) saved a slim file without
    it: the encoder is then the one that run built itself, and comes back by restoring that run
    (`restore_trained_model`, which checks it against the file's fingerprint)."""
    weights = source.best_weights
    if not weights.is_file():
        raise SourceRunError(f"{source.label} has no trained weights at {weights}: run it first")
    prefix = f"encoders.{modality}."
    if _leaves_out(weights, prefix):
        state = restore_trained_model(source).encoders[modality].state_dict()
    else:
        with _readable(weights), safe_open(str(weights), framework="pt") as handle:  # only this encoder's tensors
            state = {key[len(prefix):]: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}
    try:
        model.encoders[modality].load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SourceRunError(f"{weights} does not fit the {modality} encoder of this run: {error}") from None


def _leaves_out(weights: Any, prefix: str) -> bool:
    """Whether the slim checkpoint `weights` left out (part of) the parameters under `prefix`."""
    with _readable(weights):
        left_out = excluded_prefixes(read_weights_metadata(weights), weights)
    return any(p.startswith(prefix) or prefix.startswith(p) for p in left_out)


@contextmanager
def _readable(weights: Path) -> Iterator[None]:
    """A weights file that is not safetensors (a corrupt header, cut short, another format) is a RecordError
    naming it, so one broken run is one line wherever runs are read back (`xai check` then skips it)."""
    try:
        yield
    except SafetensorError as error:
        raise RecordError(f"{weights}: not a readable safetensors file ({error})") from None


def build_run_architecture(config: ModelConfig, seed: int | None) -> GenreClassifier:
    """The model `config` describes, initialised as the grid initialised it: under `torch.manual_seed(seed)`
    (random encoders then come back identical). The global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):  # built on the CPU: only the CPU generator is used
        if seed is not None:
            torch.manual_seed(seed)
        return build_from_config(config)


def restore_trained_model(
    run: RunFolder, record: Mapping[str, Any] | None = None, *, config: ModelConfig | None = None
) -> GenreClassifier:
    """The trained model of the finished run in `run`, in eval mode.

    `record` defaults to the folder's record.json; `config` to its `model_config` (pass a variant with the
    same parameters, e.g. attention maps switched on). The frozen encoders a slim checkpoint left out are
    loaded from their source runs (or rebuilt from the registry), then the run's best weights, checked."""
    if record is None:
        record = read_record(run)
        if record is None:
            raise RecordError(f"{run.path} holds no finished run (no record.json)")
    weights = run.best_weights
    if not weights.is_file():
        raise RecordError(f"{run.path} has a record but no best weights at {weights}")
    with _readable(weights):
        read_weights_metadata(weights)  # a broken file fails here, before any model is built
    config = config or model_config_from_dict(record.get("model_config"))
    model = build_run_architecture(config, record.get("seed"))
    for modality, backbone in (record.get("backbones") or {}).items():
        from_run = backbone.get("weights") == "run" and modality in model.encoders
        if from_run and _leaves_out(weights, f"encoders.{modality}."):
            load_source_encoder(model, modality, source_run(run, backbone))
    with _readable(weights):
        load_model_weights(model, weights)
    return model.eval()


def source_run(run: RunFolder, backbone: Mapping[str, Any]) -> RunFolder:
    """The run an encoder of `run` came from (its record's `backbones[m]["run"]` label, in the same runs
    folder), checked to be there and to be the very run `run` was trained from (same config hash)."""
    try:
        source = run.runs.labelled(backbone.get("run"))
    except ValueError as error:
        raise SourceRunError(f"{run.path}: the record names its encoder's source run wrongly: {error}") from None
    if not source.path.is_dir():
        raise SourceRunError(f"{run.path} was trained on the encoder of {backbone['run']}, whose folder "
                             f"{source.path} does not exist: its frozen encoder cannot be restored")
    found = read_record(source)
    wanted = backbone.get("run_config_hash")
    if found is not None and wanted is not None and found.get("config_hash") != wanted:
        raise SourceRunError(f"{source.path} holds another run (config {str(found.get('config_hash'))[:12]}) than "
                             f"the {backbone['run']} that {run.path} was trained from (config {wanted[:12]})")
    return source
