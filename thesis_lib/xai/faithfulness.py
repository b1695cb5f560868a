"""Is an explanation faithful? Scores against the twin's planted ground truth, and deletion curves.

- Pointing game (Zhang et al. 2018): does the map's maximum fall inside the box of the object that
  carries the genre? The maximum is found in the model-input frame and mapped to the poster JPEG's
  pixel frame, where the twin records its boxes ([x0, y0, x1, y1], x1/y1 exclusive). Ties (a flat map)
  are broken uniformly at random, so a map that says nothing scores chance, not "top-left corner".
  Baselines: a uniformly random point (its hit rate is exactly the boxes' share of the poster's area)
  and the poster's centre. `energy_in_boxes` is the softer variant: the share of the map's mass inside.
- Deletion (Petsiuk et al. 2018, RISE): replace the most highlighted 0, 10, ..., 100% of the poster by a
  blurred copy of itself and follow the genre's probability; the area under that curve is lower when the
  map found what the model uses. A blurred copy rather than black keeps the image statistics close to
  the training posters (black squares are themselves evidence for a CNN). Baseline: a random map on the
  CAM's grid (random 16 px cells, so the deleted regions are blobs like a CAM's, not salt noise).
- Cue recall@k: the share of the plot's planted cue words among the k highest-scored words.
- `mean_with_ci`: a mean with its percentile bootstrap interval over the evaluated pairs;
  `difference_with_ci`: a difference of two means with its interval (paired: the same pairs scored two
  ways, e.g. a map against chance; unpaired: two runs' samples), what every verdict is read from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from thesis_lib.metrics.bootstrap import bootstrap_indices
from thesis_lib.xai.gradcam import point_to_poster_frame, to_poster_frame
from thesis_lib.xai.words import PlotWords

Box = Sequence[float]  # [x0, y0, x1, y1] in poster pixels, x1/y1 exclusive
POSTER_EVIDENCE_KINDS = ("image", "both", "interaction", "alignment")  # evidence kinds that involve the poster


# ------------------------------------------------------------------------------------------ pointing game


def cam_peak(cam: np.ndarray, rng: np.random.Generator | None = None) -> tuple[int, int]:
    """(row, col) of the map's maximum; among equal maxima one is drawn uniformly (`rng`, else the first)."""
    cam = np.asarray(cam)
    peaks = np.flatnonzero(cam == cam.max())
    choice = peaks[0] if rng is None or len(peaks) == 1 else rng.choice(peaks)
    row, col = np.unravel_index(int(choice), cam.shape)
    return int(row), int(col)


def point_in_boxes(x: float, y: float, boxes: Sequence[Box], tolerance: float = 0.0) -> bool:
    """Is (x, y) inside any box (grown by `tolerance` pixels on each side)?"""
    return any(
        x0 - tolerance <= x < x1 + tolerance and y0 - tolerance <= y < y1 + tolerance for x0, y0, x1, y1 in boxes
    )


def pointing_hit(
    cam: np.ndarray,
    boxes: Sequence[Box],
    poster_size: tuple[int, int],
    rng: np.random.Generator | None = None,
    tolerance: float = 0.0,
) -> bool:
    """Does the maximum of `cam` (model-input frame, S_h x S_w) fall in a box of the poster (W, H)?"""
    row, col = cam_peak(cam, rng)
    x, y = point_to_poster_frame(row, col, np.asarray(cam).shape, poster_size)
    return point_in_boxes(x, y, boxes, tolerance)


def random_point_hit_rate(boxes: Sequence[Box], poster_size: tuple[int, int]) -> float:
    """Chance: the probability that a uniformly random point of the poster falls in the boxes (their union)."""
    return float(_box_mask(boxes, poster_size).mean())


def _box_mask(boxes: Sequence[Box], poster_size: tuple[int, int]) -> np.ndarray:
    width, height = poster_size
    covered = np.zeros((height, width), dtype=bool)  # (H, W)
    for x0, y0, x1, y1 in boxes:
        covered[max(0, int(y0)) : min(height, int(y1)), max(0, int(x0)) : min(width, int(x1))] = True
    return covered


def energy_in_boxes(cam: np.ndarray, boxes: Sequence[Box], poster_size: tuple[int, int]) -> float:
    """Share of the map's mass that falls in the boxes, in the poster frame (the "energy-based pointing game"
    of Wang et al. 2020, Score-CAM). Unlike the maximum it does not hinge on one pixel, which matters for
    coarse maps (a CNN's 4 x 4 grid puts its maxima on cell centres). A uniform map scores the boxes' share
    of the area. NaN for an all-zero map."""
    heat = to_poster_frame(cam, poster_size)  # (H, W)
    total = float(heat.sum())
    return float(heat[_box_mask(boxes, poster_size)].sum() / total) if total > 0 else float("nan")


def center_point_hit(boxes: Sequence[Box], poster_size: tuple[int, int]) -> bool:
    """The centre baseline: is the poster's centre inside the boxes?"""
    width, height = poster_size
    return point_in_boxes(width / 2, height / 2, boxes)


# -------------------------------------------------------------------------------------------- deletion


def blurred_copy(image: Tensor, sigma: float = 16.0) -> Tensor:
    """A Gaussian-blurred copy of a (3, S_h, S_w) poster tensor (normalised or not: blurring commutes with it).

    torchvision's `gaussian_blur` (the same kernel, reflect padding), computed as two matrix products: the
    2-D kernel is the outer product of a 1-D one, and a 1-D blur with reflect padding is a fixed (S, S)
    matrix, so the result is the same up to rounding at a fraction of a convolution's cost on a CPU
    (deletion blurs every pair's poster)."""
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    kernel = min(kernel, 2 * (min(image.shape[-2:]) // 2) - 1)  # reflect padding needs kernel < 2 * side
    rows = _blur_matrix(image.shape[-2], kernel, sigma, image)  # (S_h, S_h)
    columns = _blur_matrix(image.shape[-1], kernel, sigma, image)  # (S_w, S_w)
    return rows @ image @ columns.T  # (3, S_h, S_w)


def _blur_matrix(size: int, kernel: int, sigma: float, like: Tensor) -> Tensor:
    """(size, size): row i holds the Gaussian weights of output pixel i over the input, reflect-padded."""
    return _blur_matrix_cpu(size, kernel, sigma).to(dtype=like.dtype, device=like.device)


@functools.lru_cache(maxsize=8)
def _blur_matrix_cpu(size: int, kernel: int, sigma: float) -> Tensor:
    half = kernel // 2
    taps = torch.linspace(-half, half, kernel, dtype=torch.float64)  # (k,)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()  # (k,) torchvision's 1-D kernel
    positions = (torch.arange(size)[:, None] + torch.arange(kernel)[None, :] - half).abs()  # (S, k) reflect at 0
    positions = torch.where(positions > size - 1, 2 * (size - 1) - positions, positions)  # reflect at S - 1
    return torch.zeros(size, size, dtype=torch.float64).scatter_add_(1, positions, weights.expand(size, -1))


def random_saliency(size: tuple[int, int], rng: np.random.Generator, cell: int = 16) -> np.ndarray:
    """A random map (H, W) constant on `cell` x `cell` blocks (a CAM-like resolution)."""
    height, width = size
    coarse = rng.random((int(np.ceil(height / cell)), int(np.ceil(width / cell))))
    return np.kron(coarse, np.ones((cell, cell)))[:height, :width]


def deletion_curve(
    predict: Callable[[Tensor], Tensor],
    image: Tensor,
    saliency: np.ndarray,
    steps: int = 10,
    baseline: Tensor | None = None,
    blur_sigma: float = 16.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The score as the most salient pixels are replaced, in `steps` equal parts: (fractions, scores).

    Args:
        predict: images (N, 3, S, S) -> one score per image (N,), e.g. the genre's probability with the
            rest of the movie held fixed.
        image: the poster tensor (3, S, S) as the model reads it.
        saliency: (S, S) map in the same frame; higher = deleted first. Ties are broken at random
            (`rng`), so a flat map deletes in random order rather than top to bottom.
        baseline: what deleted pixels become (default: `blurred_copy(image, blur_sigma)`).
    Returns fractions (steps + 1,) from 0 to 1 and the scores there.
    """
    height, width = image.shape[-2:]
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != (height, width):
        raise ValueError(f"saliency {saliency.shape} does not match the image's {height} x {width} pixels")
    baseline = blurred_copy(image, blur_sigma) if baseline is None else baseline
    jitter = (rng or np.random.default_rng(0)).random(saliency.size) * 1e-9  # only breaks exact ties
    order = np.argsort(-(saliency.ravel() + jitter), kind="stable")  # most salient first
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)  # rank of each pixel in the deletion order
    counts = np.round(fractions * order.size).astype(np.int64)  # pixels deleted at each step
    deleted = torch.from_numpy(rank[None, :] < counts[:, None]).reshape(-1, 1, height, width)  # (steps+1, 1, S, S)
    deleted = deleted.to(image.device)
    variants = torch.where(deleted, baseline.unsqueeze(0), image.unsqueeze(0))  # (steps+1, 3, S, S)
    with torch.no_grad():
        scores = predict(variants).detach().float().cpu().numpy()  # (steps+1,)
    return fractions, scores


def deletion_auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under the deletion curve (trapezoid rule); lower = the map found what the score depends on."""
    return float(np.trapezoid(scores, fractions))


# ------------------------------------------------------------------------------------------ cue words


def _found(plot_words: PlotWords, chosen: Sequence[int], span: Sequence[int]) -> bool:
    start, end = span
    return any(plot_words.words[i].start < end and start < plot_words.words[i].end for i in chosen)


def cue_recall_at_k(plot_words: PlotWords, cue_spans: Sequence[Sequence[int]], k: int = 5) -> float:
    """Share of the cue words (raw-plot character spans) that are among the k highest-scored words."""
    if not cue_spans:
        raise ValueError("cue recall needs at least one cue word")
    top = plot_words.top(k)
    return sum(_found(plot_words, top, span) for span in cue_spans) / len(cue_spans)


def random_cue_recall_at_k(plot_words: PlotWords, cue_spans: Sequence[Sequence[int]], k: int = 5) -> float:
    """Expected cue recall@k of a uniformly random ranking of the seen words (exact, no sampling).

    A random top-k holds each of the n seen words with probability min(k, n) / n; unseen (truncated)
    cue words are never found.
    """
    if not cue_spans:
        raise ValueError("cue recall needs at least one cue word")
    seen = np.flatnonzero(~np.isnan(plot_words.scores)).tolist()
    if not seen:
        return 0.0
    share = min(k, len(seen)) / len(seen)
    return sum(_found(plot_words, seen, span) for span in cue_spans) * share / len(cue_spans)


# ------------------------------------------------------------------------------------- twin ground truth


def twin_evidence_boxes(truth: Mapping[str, Any], movie_id: str, genre: str) -> list[list[int]]:
    """Boxes of the poster objects that carry `genre` on a twin movie (empty: nothing to point at).

    image/both/interaction genres: the planted evidence object(s) of the rule's kind; alignment genres
    (Crime, Mystery): the prop the plot names. Empty for text genres, palette genres (Film-Noir), and
    labels the movie's clean genres lack (label noise plants no evidence).
    """
    movie = truth["movies"][movie_id]
    kind = truth["genre_evidence"][genre]
    if kind not in POSTER_EVIDENCE_KINDS or genre not in movie["clean_genres"]:
        return []
    if kind == "alignment":
        return [list(movie["objects"][movie["named_object"]]["box"])]
    kinds = set(truth["rules"][genre]["objects"])
    return [list(obj["box"]) for obj in movie["objects"] if obj["label"] in kinds and obj["role"] == "evidence"]


# ----------------------------------------------------------------------------------- confidence intervals


@dataclass(frozen=True)
class Estimate:
    """A mean over evaluated pairs with its percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int  # pairs (or movies) it averages

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def mean_with_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Mean of per-pair values and its percentile bootstrap interval (pairs resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    means = values[bootstrap_indices(values.size, n_resamples, seed)].mean(axis=1)  # (n_resamples,)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(values.mean()), float(low), float(high), int(values.size))


def difference_with_ci(
    values: Sequence[float] | np.ndarray,
    references: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    paired: bool = True,
    level: float = 0.95,
) -> Estimate:
    """mean(values) - mean(references) with its percentile bootstrap interval.

    paired: values[i] and references[i] score the same pair (a map and its chance level, a map and the
    randomised model's map); pairs where either is NaN are dropped and the pairs are resampled together.
    Unpaired (two runs' own samples): each sample is resampled on its own (NaN dropped) and the resampled
    means are subtracted.
    """
    values, references = np.asarray(values, dtype=np.float64), np.asarray(references, dtype=np.float64)
    if paired:
        if values.shape != references.shape:
            raise ValueError(f"a paired difference needs one reference per value: {values.shape} vs {references.shape}")
        keep = ~(np.isnan(values) | np.isnan(references))
        return mean_with_ci(values[keep] - references[keep], n_resamples, seed, level)
    values, references = values[~np.isnan(values)], references[~np.isnan(references)]
    if values.size == 0 or references.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    means = (values[bootstrap_indices(values.size, n_resamples, seed)].mean(axis=1)
             - references[bootstrap_indices(references.size, n_resamples, seed + 1)].mean(axis=1))  # (n_resamples,)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(values.mean() - references.mean()), float(low), float(high),
                    int(min(values.size, references.size)))
