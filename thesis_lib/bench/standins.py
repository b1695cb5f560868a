"""Architecture stand-ins for `bert-base-uncased` and `roberta-base` on a machine without their files.

The full-size models are built with `text_pretrained=false`, which still reads the backbone's config.json
(its architecture) and its tokenizer from the pretrained folder (`thesis_lib.models.pretrained`). Offline,
without the Hugging Face cache, this module writes both into a folder: the published architectures
(BERT-base uncased: 12 layers, 768 wide, 30,522 word pieces, 512 positions; RoBERTa-base: the same body
with 50,265 byte-level BPE tokens and 514 positions) and tokenizers of the same kind trained on the given
plots. Speed depends on the architecture and on the plot lengths in tokens, not on the weights or on
which word pieces a vocabulary holds, so the numbers measured with stand-ins hold for the real models.
No weights are written, and each folder is marked as a stand-in (`thesis_lib.models.pretrained.mark_standin`),
so neither `thesis weights list` nor a run record can take one for the pretrained model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from transformers import BertConfig, PretrainedConfig, RobertaConfig

from thesis_lib.data.tokenizers import MODEL_MAX_LENGTH, train_bpe_tokenizer, train_wordpiece_tokenizer
from thesis_lib.models.pretrained import mark_standin

PRETRAINED_DIR_VARIABLE = "THESIS_PRETRAINED_DIR"  # read by thesis_lib.models.pretrained


def standin_configs() -> dict[str, tuple[PretrainedConfig, str]]:
    """Backbone name -> (its published architecture, tokenizer kind)."""
    bert = BertConfig(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
    )
    roberta = RobertaConfig(
        vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
        eos_token_id=2,
    )
    return {"bert-base-uncased": (bert, "wordpiece"), "roberta-base": (roberta, "bpe")}


def write_standins(folder: Path, plots: Sequence[str]) -> Path:
    """Write config.json + a tokenizer trained on `plots` for each stand-in under `folder`; returns `folder`."""
    for name, (config, kind) in standin_configs().items():
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
