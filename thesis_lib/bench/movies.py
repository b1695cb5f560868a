"""Synthetic movies for the data-loader benchmarks: JPEG posters of MM-IMDb's size and plots of realistic length.

Decoding and augmenting a poster costs the same whatever it shows, and tokenising a plot depends on its
length, not its meaning, so the content is noise: each poster is a smooth random colour field with pixel
noise (JPEG then has work to do, as with a photograph), each plot a run of pseudo-words with a
Zipf-like frequency. Plot lengths follow a log-normal law (`PlotLengths`); the defaults are an assumption
to be replaced by the real release's statistics, and the JSON records the token lengths actually produced.
Posters are few and shared: `posters` distinct files serve all movies (the page cache holds a real release's
~1 GB of posters too, so file reads are not what is measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from thesis_lib.data.mmimdb import Movie
from thesis_lib.genres import GENRES

_SYLLABLES = ("ka", "lo", "mi", "ren", "tas", "vi", "dor", "el", "un", "sha", "pri", "gon", "ta", "ve", "mor",
              "qui", "zen", "ar", "bel", "cro", "fin", "hal", "jo", "nu", "os", "ply", "ru", "sol", "tri", "wex")


@dataclass(frozen=True)
class PlotLengths:
    """Words per (cleaned) plot: log-normal with this median and spread, clipped to [minimum, maximum]."""

    median_words: float = 110.0  # assumption for MM-IMDb's longest plot entries after stop-word removal
    sigma: float = 0.6  # log-space spread: about 2% of plots run past 400 words (past 512 BERT tokens)
    minimum: int = 8
    maximum: int = 800


@dataclass(frozen=True)
class SyntheticMoviesConfig:
    """How many synthetic movies, and what their posters and plots look like."""

    movies: int = 2048  # movies (ids are unique; posters are shared, see `posters`)
    posters: int = 256  # distinct poster files
    poster_size: tuple[int, int] = (300, 444)  # (width, height) px: MM-IMDb posters are about 300 px wide, 2:3
    jpeg_quality: int = 90
    lexicon: int = 20_000  # distinct pseudo-words
    plot_lengths: PlotLengths = PlotLengths()
    seed: int = 0


def write_synthetic_movies(folder: Path, config: SyntheticMoviesConfig) -> list[Movie]:
    """Write `config.posters` JPEGs under `folder` and return `config.movies` movies that use them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    posters = [_write_poster(folder / f"poster{i:04d}.jpeg", config, rng) for i in range(config.posters)]
    words = _lexicon(config.lexicon, rng)
    frequency = 1.0 / np.arange(1, len(words) + 1)  # Zipf: the k-th commonest word is k times rarer
    frequency /= frequency.sum()
    lengths = plot_word_counts(config.movies, config.plot_lengths, rng)
    drawn = rng.choice(len(words), size=int(lengths.sum()), p=frequency)  # every plot's words, in one draw
    ends = np.cumsum(lengths)
    movies = []
    for index, end in enumerate(ends):
        plot = " ".join(words[i] for i in drawn[end - lengths[index]:end])
        genres = tuple(sorted(rng.choice(len(GENRES), size=int(rng.integers(1, 4)), replace=False)))
        movies.append(Movie(
            id=f"{9_000_000 + index:07d}",
            plot=plot,
            genres=tuple(GENRES[g] for g in genres),
            poster=posters[index % len(posters)],
        ))
    return movies


def plot_word_counts(count: int, lengths: PlotLengths, rng: np.random.Generator) -> np.ndarray:
    """`count` plot lengths in words drawn from `lengths`' log-normal law."""
    drawn = rng.lognormal(mean=math.log(lengths.median_words), sigma=lengths.sigma, size=count)
    return np.clip(np.rint(drawn), lengths.minimum, lengths.maximum).astype(int)


TOKENS_PER_WORD = 1.3  # assumption: WordPiece pieces per English word, plus [CLS] and [SEP] below


def plot_token_lengths(count: int, max_length: int, seed: int = 0, lengths: PlotLengths = PlotLengths()) -> list[int]:
    """Tokens per plot (special tokens included) for `count` plots drawn from `lengths`, truncated to
    `max_length` as the collator truncates: the padding a synthetic text batch carries."""
    words = plot_word_counts(count, lengths, np.random.default_rng(seed))
    tokens = np.rint(words * TOKENS_PER_WORD).astype(int) + 2
    return [int(value) for value in np.clip(tokens, 3, max_length)]


def _lexicon(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        parts = rng.choice(len(_SYLLABLES), size=int(rng.integers(1, 5)))
        words.add("".join(_SYLLABLES[p] for p in parts))
    return sorted(words)


def _write_poster(path: Path, config: SyntheticMoviesConfig, rng: np.random.Generator) -> Path:
    width, height = config.poster_size
    coarse = Image.fromarray(rng.integers(0, 256, (9, 6, 3), dtype=np.uint8))  # (rows, cols, RGB) colour field
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)  # (H, W, 3)
    noise = rng.normal(0.0, 14.0, smooth.shape)  # film-grain-like detail, so the JPEG is photo-sized
    pixels = np.clip(smooth + noise, 0, 255).astype(np.uint8)  # (H, W, 3)
    Image.fromarray(pixels).save(path, format="JPEG", quality=config.jpeg_quality)
    return path
