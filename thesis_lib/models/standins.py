"""Architecture stand-ins for `bert-base-uncased` and `roberta-base` on a machine without their files.

The full-size models are built with `text_pretrained=false`, which still reads the backbone's config.json
(its architecture) and its tokenizer from the pretrained folder (`thesis_lib.models.pretrained`). Offline,
without the Hugging Face cache, this module writes both into a folder: the published architectures
(`thesis_lib.models.architectures`) and tokenizers of the same kind trained on the given plots. Speed
depends on the architecture and on the plot lengths in tokens, not on the weights or on which word pieces
a vocabulary holds, so the numbers measured with stand-ins hold for the real models.
No weights are written, and each folder is marked as a stand-in (`thesis_lib.models.pretrained.mark_standin`),
so neither `thesis weights list` nor a run record can take one for the pretrained model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from thesis_lib.data.tokenizers import MODEL_MAX_LENGTH, train_bpe_tokenizer, train_wordpiece_tokenizer
from thesis_lib.models.architectures import text_architectures
from thesis_lib.models.pretrained import mark_standin

PRETRAINED_DIR_VARIABLE = "THESIS_PRETRAINED_DIR"  # read by thesis_lib.models.pretrained


def write_standins(folder: Path, plots: Sequence[str]) -> Path:
    """Write config.json + a tokenizer trained on `plots` for each stand-in under `folder`; returns `folder`."""
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
