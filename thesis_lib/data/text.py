"""Plot cleaning as a word-level operation, so every cleaned word still knows where it came from.

The thesis plan cleans plots by lower-casing, removing special characters and removing stop words
(`CLEAN`); the ablation feeds the plot untouched (`RAW`). Cleaning is done word by word and each kept
`Word` carries its character span in the *raw* plot: explanations computed on model tokens of the
cleaned text can then be drawn on the plot a reader actually sees (tokenizer offsets -> `cleaned_spans`
-> `Word.start/end`).

What a word is:
- with `remove_special_characters`: a run of letters and digits (any script: "café", "Amélie", "1984"
  are words; numbers are kept because years and counts can be genre evidence, e.g. "1944" for War),
  where an apostrophe between two such runs joins them and is dropped ("don't" -> "dont", "O'Brien" ->
  "obrien"). Everything else (punctuation, symbols, emoji, underscores) separates words and is removed;
  a hyphenated "well-known" becomes two words.
- without it: a run of non-whitespace characters, kept as it is.
`clean_text` joins the kept words with single spaces, so even `RAW` collapses runs of whitespace
(newlines, double spaces); every tokenizer used here ignores whitespace runs anyway.

Stop words are scikit-learn's ENGLISH_STOP_WORDS (318 words, maintained with scikit-learn), matched
case-insensitively after special-character removal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

# A letter/digit run (combining accents U+0300-U+036F included, so a decomposed "é" stays one word),
# optionally joined to further runs by a straight or curly apostrophe.
_ALNUM = r"(?:[^\W_]|[\u0300-\u036f])+"
_ALNUM_WORD = re.compile(rf"{_ALNUM}(?:['\u2019]{_ALNUM})*")
_NON_SPACE_RUN = re.compile(r"\S+")
_APOSTROPHES = re.compile(r"['\u2019]")
_NON_ALNUM = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class TextCleaningConfig:
    """Which cleaning steps to apply to a plot (see the module docstring for what a word is)."""

    lowercase: bool = True                  # "Zombies" and "zombies" are one word for a bag-of-words view
    remove_special_characters: bool = True  # drop punctuation/symbols; letters (any script) and digits stay
    remove_stopwords: bool = True           # drop scikit-learn's ENGLISH_STOP_WORDS


# The thesis plan's pipeline: lower-case, special-character removal, stop-word removal.
CLEAN = TextCleaningConfig()
# No cleaning at all (the ablation): words are whitespace-separated chunks, kept verbatim.
RAW = TextCleaningConfig(lowercase=False, remove_special_characters=False, remove_stopwords=False)


@dataclass(frozen=True)
class Word:
    """One kept word: its cleaned text and the span raw[start:end] it was cleaned from."""

    text: str
    start: int
    end: int


@cache
def english_stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (imported lazily: scikit-learn is slow to import)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def clean_words(text: str, config: TextCleaningConfig = CLEAN) -> list[Word]:
    """The words of `text` that survive cleaning, each with its character span in `text`."""
    pattern = _ALNUM_WORD if config.remove_special_characters else _NON_SPACE_RUN
    stop_words = english_stop_words() if config.remove_stopwords else frozenset()
    words = []
    for match in pattern.finditer(text):
        word = match.group()
        if config.remove_special_characters:
            # NFC so a decomposed accent becomes one character, like the composed form.
            word = unicodedata.normalize("NFC", _APOSTROPHES.sub("", word))
        if stop_words and _stop_word_key(word) in stop_words:
            continue
        if config.lowercase:
            word = word.lower()
        words.append(Word(word, match.start(), match.end()))
    return words


def clean_text(text: str, config: TextCleaningConfig = CLEAN) -> str:
    """The cleaned plot: the kept words of `clean_words` joined by single spaces."""
    return " ".join(word.text for word in clean_words(text, config))


def cleaned_spans(words: list[Word]) -> list[tuple[int, int]]:
    """Where each word sits in the cleaned text (`" ".join`), to pair with tokenizer offset mappings:
    a token at cleaned[a:b] inside cleaned_spans(words)[i] comes from raw[words[i].start:words[i].end]."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word.text)))
        position += len(word.text) + 1  # the joining space
    return spans


def _stop_word_key(word: str) -> str:
    """How a word is looked up in the stop-word list: lower-cased, letters and digits only."""
    return _NON_ALNUM.sub("", word).lower()
