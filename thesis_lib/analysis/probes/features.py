"""The frozen features the probes read, from a loaded run: pooled plot vectors and the tokens at the named
word; pooled poster vectors and the grid cells under the named prop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from thesis_lib.analysis.probes.scores import ProbeError
from thesis_lib.data.mmimdb import Movie
from thesis_lib.experiments.loaded_run import LoadedRun
from thesis_lib.xai.words import token_positions_of_span

# ------------------------------------------------------------------------------------------ features


@dataclass(frozen=True)
class TextFeatures:
    pooled: np.ndarray  # (N, D) the text encoder's pooled plot vector
    mention: np.ndarray  # (N, D) mean of the tokens of the named word; NaN rows: truncated away


@dataclass(frozen=True)
class ImageFeatures:
    pooled: np.ndarray  # (N, D) the image encoder's pooled poster vector
    prop_cells: np.ndarray  # (N, D) grid tokens weighted by their overlap with the named prop's box


def per_label_features(features: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """x ⊗ onehot(label), then the one-hot: (N, D) -> (N, K * D + K). Row i carries x_i in the block of its
    label and zeros elsewhere, so a linear probe fits one read-out of x per label."""
    onehot = (labels[:, None] == np.asarray(classes)[None, :]).astype(features.dtype)  # (N, K)
    blocks = features[:, None, :] * onehot[:, :, None]  # (N, K, D)
    return np.concatenate([blocks.reshape(len(features), -1), onehot], axis=1)  # (N, K * D + K)


def box_cell_weights(box: Sequence[float], poster_size: tuple[int, int], grid: int) -> np.ndarray:
    """(grid * grid,) share of the box's area in each cell of a grid x grid feature map, raster order.

    The eval transform squashes the whole poster to a square, so cell (row, col) covers poster pixels
    x in [col * W / grid, (col + 1) * W / grid), y likewise with H."""
    x0, y0, x1, y1 = box
    width, height = poster_size
    edges = np.arange(grid + 1)  # (grid + 1,)
    overlap_x = np.clip(np.minimum(edges[1:] * width / grid, x1) - np.maximum(edges[:-1] * width / grid, x0), 0, None)
    overlap_y = np.clip(np.minimum(edges[1:] * height / grid, y1) - np.maximum(edges[:-1] * height / grid, y0),
                        0, None)
    area = np.outer(overlap_y, overlap_x).ravel()  # (grid * grid,)
    if area.sum() <= 0:
        raise ProbeError(f"box {list(box)} lies outside the {width} x {height} poster")
    return area / area.sum()


def encode_text(run: LoadedRun, movies: Sequence[Movie], truth: Mapping[str, Any], batch_size: int) -> TextFeatures:
    """Pooled plot vectors and the named word's token features of `movies`, as the run reads its plots
    (its tokenizer, text cleaning and truncation; the word's pieces found by `xai.words`)."""
    pooled, mention = [], []
    for chunk, batch, encoded in _encoded_batches(run, "text", movies, batch_size):
        tokens = encoded.tokens.float().cpu().numpy()  # (B, L, D)
        lengths = batch["attention_mask"].sum(dim=1).tolist()  # (B,) real tokens per plot
        pooled.append(encoded.pooled.float().cpu().numpy())  # (B, D)
        for row, movie in enumerate(chunk):
            span = _mention_span(truth, movie)
            positions = token_positions_of_span(movie.plot, span, run.tokenizer, run.text_cleaning, run.max_length)
            if positions and max(positions) >= lengths[row]:
                raise ProbeError(f"movie {movie.id}: the named word's token positions {positions} lie past the "
                                 f"{lengths[row]} tokens the collator made: tokenizer or cleaning differ")
            mention.append(tokens[row, positions].mean(axis=0) if positions else np.full(tokens.shape[-1], np.nan))
    return TextFeatures(np.concatenate(pooled), np.stack(mention))


def encode_image(run: LoadedRun, movies: Sequence[Movie], truth: Mapping[str, Any], batch_size: int) -> ImageFeatures:
    """Pooled poster vectors and the grid tokens under the named prop of `movies`, on the eval transform."""
    encoder = run.model.encoders["image"]
    pooled, prop_cells = [], []
    for chunk, _, encoded in _encoded_batches(run, "image", movies, batch_size):
        cells = encoded.tokens[:, encoder.num_prefix_tokens :].float().cpu().numpy()  # (B, h*w, D)
        grid = math.isqrt(cells.shape[1])
        if grid * grid != cells.shape[1]:
            raise ProbeError(f"{run.model_name}: {cells.shape[1]} image tokens do not form a square grid")
        pooled.append(encoded.pooled.float().cpu().numpy())  # (B, D)
        for row, movie in enumerate(chunk):
            facts = truth["movies"][movie.id]
            with Image.open(movie.poster) as poster:  # the header only: the boxes are in its pixel frame
                poster_size = poster.size  # (W, H)
            weights = box_cell_weights(facts["objects"][facts["named_object"]]["box"], poster_size, grid)
            prop_cells.append(weights @ cells[row])  # (D,)
    return ImageFeatures(np.concatenate(pooled), np.stack(prop_cells))


def _encoded_batches(run: LoadedRun, modality: str, movies: Sequence[Movie],
                     batch_size: int) -> Iterator[tuple[Sequence[Movie], dict, Any]]:
    """(movies, the run's eval batch, its `modality` EncoderOutput) per batch of `movies`, in order, without
    gradients."""
    for start in range(0, len(movies), batch_size):
        chunk = movies[start : start + batch_size]
        batch = run.make_batch([movie.id for movie in chunk])
        with torch.no_grad():
            encoded = run.model.encode(batch)[modality]
        yield chunk, batch, encoded  # outside no_grad: the caller's code runs with its own grad mode


def _mention_span(truth: Mapping[str, Any], movie: Movie) -> tuple[int, int]:
    """The raw-plot characters of the named word, checked against the plot the release gives."""
    mention = truth["movies"][movie.id]["named_object_mention"]
    start, end = mention["char_span"]
    if movie.plot[start:end].lower() != mention["word"].lower():
        raise ProbeError(f"twin_truth.json: movie {movie.id} names {mention['word']!r} at characters {start}-{end}, "
                         f"but its plot has {movie.plot[start:end]!r} there")
    return start, end


