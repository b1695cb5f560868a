"""Token scores -> word scores on the RAW plot, and the plot shown as HTML with words shaded by score.

A model reads word pieces of the *cleaned* plot (lower-cased, stop words and punctuation removed), but a
reader sees the raw plot. The way back takes two documented maps, no string matching:

    token --(tokenizer offsets_mapping into the cleaned text)--> cleaned word
          --(data.text.cleaned_spans: where each cleaned word sits)--> Word --(Word.start/end)--> raw plot

A piece belongs to the cleaned word its character range overlaps. That covers WordPiece ("stalker",
"##ish": offsets inside the word) and byte-level BPE ("Ġstalker", "i", "s", "h": offsets trimmed to the
word, or including the leading space when a tokenizer does not trim; the space belongs to no word, so the
overlap still finds the right one). Special tokens ([CLS], <s>, padding) belong to no word.

Pieces are combined by `reduce`: "mean" by default, because it is neutral to how many pieces a word was
split into; "sum" (the attention mass a word received) ranks rare words, which small trained tokenizers
split into many pieces, high by length alone -- on an untrained model it put the twin's cue words in the
top 5 of a plot five times as often as chance. Words the model never saw (cut off by truncation) get NaN,
not 0: "not read" and "read and ignored" are different findings. Stop words removed by cleaning are not
words here at all; they stay in the HTML as unshaded text between words.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thesis_lib.data.text import CLEAN, TextCleaningConfig, Word, clean_words, cleaned_spans

REDUCTIONS = ("sum", "mean", "max")


@dataclass(frozen=True)
class PlotWords:
    """A raw plot, the cleaned words a model read from it, and one score per word."""

    plot: str  # the raw plot, exactly as in the release
    words: tuple[Word, ...]  # cleaned words with their spans into `plot`
    scores: np.ndarray  # (n_words,) float64; NaN = the model did not see the word (truncated)

    def __post_init__(self) -> None:
        if self.scores.shape != (len(self.words),):
            raise ValueError(f"PlotWords: {len(self.words)} words but scores of shape {self.scores.shape}")

    def top(self, k: int) -> list[int]:
        """Indices of the k highest-scored words (seen words only), best first; ties keep plot order."""
        seen = np.flatnonzero(~np.isnan(self.scores))
        order = seen[np.argsort(-self.scores[seen], kind="stable")]
        return order[:k].tolist()


def piece_word_index(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """For each token, the index of the cleaned word its character range overlaps (-1: none).

    `offsets` are the tokenizer's (start, end) per token in the cleaned text ((0, 0) for special tokens),
    `spans` the words' (start, end) in the same text, sorted (as `cleaned_spans` returns them).
    """
    ends = np.array([end for _, end in spans], dtype=np.int64)  # (n_words,)
    starts = np.array([start for start, _ in spans], dtype=np.int64)  # (n_words,)
    index = np.full(len(offsets), -1, dtype=np.int64)  # (n_tokens,)
    for token, (start, end) in enumerate(offsets):
        if end <= start:
            continue  # special token or an empty piece: no characters, no word
        word = int(np.searchsorted(ends, start, side="right"))  # the first word ending after the piece starts
        if word < len(spans) and starts[word] < end:
            index[token] = word
    return index


def merge_piece_scores(
    token_scores: Sequence[float] | np.ndarray,
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    reduce: str = "mean",
) -> np.ndarray:
    """Per-token scores (n_tokens,) -> per-word scores (n_words,); words without any piece get NaN."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce {reduce!r} is not one of {REDUCTIONS}")
    token_scores = np.asarray(token_scores, dtype=np.float64)
    if token_scores.shape != (len(offsets),):
        raise ValueError(f"{len(offsets)} token offsets but token scores of shape {token_scores.shape}")
    owner = piece_word_index(offsets, spans)  # (n_tokens,)
    scores = np.full(len(spans), np.nan)  # (n_words,)
    for word in np.unique(owner[owner >= 0]):
        pieces = token_scores[owner == word]
        scores[word] = {"sum": pieces.sum, "mean": pieces.mean, "max": pieces.max}[reduce]()
    return scores


def plot_word_scores(
    plot: str,
    token_scores: Sequence[float] | np.ndarray,
    tokenizer: Any,
    cleaning: TextCleaningConfig = CLEAN,
    max_length: int | None = None,
    input_ids: Sequence[int] | None = None,
    reduce: str = "mean",
) -> PlotWords:
    """Scores of the word pieces a model read -> scores of the raw plot's words.

    Args:
        plot: the raw plot (Movie.plot).
        token_scores: one score per token position of the model's input row; positions past the
            tokenised plot (padding) are ignored.
        tokenizer: the fast tokenizer that made the model's input (offsets need a fast tokenizer).
        cleaning: the cleaning the model's dataset applied (CLEAN or RAW).
        max_length: the truncation length the collator used (None: the tokenizer's own limit).
        input_ids: the row's real token ids; when given they must equal the re-tokenisation here, so a
            mismatched tokenizer or cleaning fails loudly instead of shading the wrong words.
        reduce: how pieces of one word combine ("sum", "mean", "max").
    """
    words = clean_words(plot, cleaning)
    cleaned = " ".join(word.text for word in words)
    encoded = tokenizer(
        cleaned,
        truncation=True,
        max_length=max_length or tokenizer.model_max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    ids = list(encoded["input_ids"])
    if input_ids is not None and list(input_ids) != ids:
        raise ValueError(
            "the plot re-tokenised for explanation differs from the model's input ids: "
            "is this the tokenizer and text cleaning the model was trained with?"
        )
    token_scores = np.asarray(token_scores, dtype=np.float64)
    if token_scores.shape[0] < len(ids):
        raise ValueError(f"{token_scores.shape[0]} token scores for a plot of {len(ids)} tokens")
    offsets = [
        (0, 0) if special else (int(start), int(end))
        for (start, end), special in zip(encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True)
    ]
    scores = merge_piece_scores(token_scores[: len(ids)], offsets, cleaned_spans(words), reduce)
    return PlotWords(plot=plot, words=tuple(words), scores=scores)


def token_positions_of_span(
    plot: str,
    span: tuple[int, int],
    tokenizer: Any,
    cleaning: TextCleaningConfig = CLEAN,
    max_length: int | None = None,
) -> list[int]:
    """Token positions (in the model's input row) of the word(s) at raw-plot characters `span`, e.g. the
    twin's named prop, to ask the cross-attention where that word looks on the poster."""
    words = clean_words(plot, cleaning)
    cleaned = " ".join(word.text for word in words)
    encoded = tokenizer(cleaned, truncation=True, max_length=max_length or tokenizer.model_max_length,
                        return_offsets_mapping=True, return_special_tokens_mask=True)
    offsets = [(0, 0) if special else (int(a), int(b))
               for (a, b), special in zip(encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True)]
    start, end = span
    chosen = {i for i, word in enumerate(words) if word.start < end and start < word.end}
    return [token for token, word in enumerate(piece_word_index(offsets, cleaned_spans(words))) if word in chosen]


# ------------------------------------------------------------------------------------------------ HTML


@dataclass(frozen=True)
class ShadedPlot:
    """A plot rendered as HTML with each word's background as strong as its score (Jupyter shows it)."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def shade_plot(
    plot_words: PlotWords,
    caption: str,
    color: tuple[int, int, int] = (214, 39, 40),
    highlight: Sequence[tuple[int, int]] = (),
) -> ShadedPlot:
    """The raw plot with every scored word shaded by score / max score.

    Args:
        plot_words: from `plot_word_scores`.
        caption: a line under the text naming the data and weights (and the score) it shows.
        color: RGB of the shading.
        highlight: raw-plot character spans to underline (e.g. the twin's planted cue words).
    Unseen (truncated) words are grey; text that is not a word (stop words, punctuation) is left plain.
    Each shaded word carries its score as a tooltip.
    """
    scores = plot_words.scores
    finite = scores[~np.isnan(scores)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    red, green, blue = color
    parts, position = [], 0
    for word, score in zip(plot_words.words, scores, strict=True):
        parts.append(html.escape(plot_words.plot[position : word.start]))
        text = html.escape(plot_words.plot[word.start : word.end])
        underline = any(start < word.end and word.start < end for start, end in highlight)
        style = "text-decoration: underline;" if underline else ""
        if np.isnan(score):
            parts.append(f'<span style="color: #999;{style}" title="not seen (truncated)">{text}</span>')
        else:
            alpha = max(0.0, float(score)) / top
            parts.append(
                f'<span style="background-color: rgba({red}, {green}, {blue}, {alpha:.3f});{style}" '
                f'title="{float(score):.4g}">{text}</span>'
            )
        position = word.end
    parts.append(html.escape(plot_words.plot[position:]))
    body = "".join(parts)
    return ShadedPlot(
        '<div class="thesis-shaded-plot" style="line-height: 1.7; font-family: sans-serif;">'
        f"<p>{body}</p>"
        f'<p style="font-size: 0.85em; color: #555;">{html.escape(caption)}</p></div>'
    )
