"""Stand-ins for the full profile's text and image backbones, saved under the real names where the loaders read.

Two kinds, both marked as stand-ins (`thesis_lib.models.pretrained.mark_standin`), so neither `thesis weights
list`, the preflight nor a run record can take one for the pretrained model:

- architecture only (`write_standins`, the speed benchmark's): config.json and a tokenizer per text backbone,
  no weights (the models are built with `text_pretrained=false`). Speed depends on the architecture and on
  the plot lengths in tokens, not on the weights or on which word pieces a vocabulary holds.
- full size with random weights (`write_text_weights`, `write_image_weights`; the rehearsal's,
  `thesis_lib.experiments.rehearsal`): the published architectures (`thesis_lib.models.architectures`, timm)
  saved in the very formats of the real files, so `pretrained=True` loads them through the code the GPU
  run takes: a `save_pretrained` folder with a tokenizer for Hugging Face, a timm state dict (with its
  ImageNet classifier, as timm publishes it) in the pretrained folder.

Tokenizers: bert-base-uncased's stand-in gets the real vocabulary (the packaged MiniLM's WordPiece tokenizer
is bert-base-uncased's, `data.tokenizers.minilm_dir`); roberta-base's a byte-level BPE trained on the given
plots (its vocabulary is smaller than the published 50,265; every id it gives is valid for the model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel

from thesis_lib.data.tokenizers import (
    MODEL_MAX_LENGTH,
    load_pretrained_tokenizer,
    minilm_dir,
    train_bpe_tokenizer,
    train_wordpiece_tokenizer,
)
from thesis_lib.models.architectures import text_architectures
from thesis_lib.models.pretrained import mark_standin, save_standin_state_dict

PRETRAINED_DIR_VARIABLE = "THESIS_PRETRAINED_DIR"  # read by thesis_lib.models.pretrained


def write_standins(folder: Path, plots: Sequence[str]) -> Path:
    """Write config.json + a tokenizer trained on `plots` for each text stand-in under `folder` (no weights:
    the benchmark's architecture stand-ins); returns `folder`."""
    for name, (config, kind) in text_architectures().items():
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(target)
        train = train_wordpiece_tokenizer if kind == "wordpiece" else train_bpe_tokenizer
        tokenizer = train(plots, config.vocab_size)
        tokenizer.model_max_length = MODEL_MAX_LENGTH
        tokenizer.save_pretrained(target)
        mark_standin(target, f"benchmark stand-in: the {name} architecture, no weights, a {kind} tokenizer "
                             "trained on synthetic plots")
    return folder


def use_pretrained_dir(folder: Path) -> None:
    """Make the model builders read backbones from `folder` (sets THESIS_PRETRAINED_DIR for this process
    and the data-loader workers it starts)."""
    os.environ[PRETRAINED_DIR_VARIABLE] = str(folder)


def write_text_weights(folder: Path, name: str, plots: Sequence[str], what: str) -> Path:
    """`folder/name`: the published architecture of Hugging Face backbone `name` with random weights and a
    tokenizer of its kind (see the module docstring), as `save_pretrained` writes it; marked with `what`."""
    config, kind = text_architectures()[name]
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_config(config)  # random initialisation, full size (BertModel / RobertaModel)
    model.save_pretrained(target)  # config.json + model.safetensors
    if kind == "wordpiece":
        tokenizer = load_pretrained_tokenizer(minilm_dir())  # uncased WordPiece, bert-base-uncased's 30,522 pieces
    else:
        tokenizer = train_bpe_tokenizer(plots, config.vocab_size)
    tokenizer.model_max_length = MODEL_MAX_LENGTH
    tokenizer.save_pretrained(target)
    mark_standin(target, what)
    return target


def write_image_weights(folder: Path, name: str, what: str) -> Path:
    """`folder/timm/<name>.safetensors`: timm model `name` with random weights and its ImageNet classifier (the
    published file's keys; the loader drops the classifier as it does for the real file); marked with `what`."""
    import timm  # seconds to import; only image stand-ins need it

    path = folder / "timm" / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.device("cpu"):
        model = timm.create_model(name, pretrained=False)
    save_standin_state_dict(model.state_dict(), path, what)
    return path
