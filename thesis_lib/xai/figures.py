"""Figures for the XAI chapter: Grad-CAM overlays, grids, Grad-CAM next to cross-attention, modality weights.

Every figure names where it came from in a bottom line: the data (synthetic twin or MM-IMDb) and the
weights (run name, pretrained name, or "random"), given as a `Provenance` argument, never guessed.
Maps are drawn over the poster JPEG as the reader knows it (portrait), mapped back from the square model
input with `gradcam.to_poster_frame`. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from thesis_lib.genres import GENRES
from thesis_lib.xai.gradcam import GRADCAM_STAGE, gradcam_maps, to_poster_frame

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OVERLAY_ALPHA = 0.5  # heat map opacity over the poster
COLORMAP = "jet"  # the Grad-CAM convention, so readers recognise the figure type
BOX_COLOR = "white"  # ground-truth boxes (the twin's planted objects) over the heat map


@dataclass(frozen=True)
class Provenance:
    """What a figure shows: the data and the weights that produced it (printed under every figure)."""

    data: str  # e.g. "synthetic twin (2,000 movies, seed 0), test split" or "MM-IMDb test split"
    weights: str  # e.g. "run fusion_cross_attention/seed0", "pretrained vit_base_patch16_224", "random init"

    def __post_init__(self) -> None:
        if not self.data.strip() or not self.weights.strip():
            raise ValueError("a figure's Provenance needs both the data and the weights named")

    def line(self) -> str:
        return f"Data: {self.data}  |  Weights: {self.weights}"


@dataclass(frozen=True)
class GenreMap:
    """One map to draw over a poster, with what the model said about the genre."""

    genre: int  # index into GENRES
    cam: np.ndarray  # (S, S) in [0, 1], model-input frame
    probability: float  # the model's probability for the genre
    is_true: bool  # the genre is among the movie's labels
    boxes: tuple[tuple[float, ...], ...] = ()  # ground-truth boxes of the genre's evidence (poster pixels), if known

    @property
    def title(self) -> str:
        mark = "true label" if self.is_true else "not a label"
        return f"{GENRES[self.genre]}  p={self.probability:.2f}\n({mark})"


def explain_predicted_genres(
    model: Any,
    batch: dict[str, Any],
    row: int,
    thresholds: float | np.ndarray = 0.5,
    method: str = "gradcam",
    genres: Sequence[int] | None = None,
    stage: str | None = GRADCAM_STAGE,
) -> list[GenreMap]:
    """Grad-CAM maps of one movie of `batch` for every genre the model predicts (probability >= its
    threshold), or for `genres`; each with its probability and whether it is a true label. `stage`: the
    CNN stage the maps read (`gradcam.GRADCAM_STAGE`)."""
    import torch


    with torch.no_grad():
        probs = torch.sigmoid(model(batch).logits[row]).float().cpu().numpy()  # (23,)
    if genres is None:
        genres = np.flatnonzero(probs >= np.broadcast_to(thresholds, probs.shape)).tolist()
    if not genres:
        return []
    cams = gradcam_maps(model, batch, [(row, g) for g in genres], method=method, stage=stage)  # (G, S, S)
    labels = batch["labels"][row].cpu().numpy() if "labels" in batch else np.zeros(len(GENRES))
    return [GenreMap(g, cam, float(probs[g]), bool(labels[g] > 0)) for g, cam in zip(genres, cams, strict=True)]


def _pyplot() -> Any:
    import matplotlib.pyplot as plt  # lazy: importing matplotlib costs a second and is not needed elsewhere

    return plt


def _overlay(ax: Any, poster: Image.Image, cam: np.ndarray, title: str, boxes: Sequence[Sequence[float]] = ()) -> None:
    heat = to_poster_frame(cam, poster.size)  # (H, W) over the JPEG
    ax.imshow(poster)
    ax.imshow(heat, cmap=COLORMAP, alpha=OVERLAY_ALPHA, vmin=0.0, vmax=1.0)
    _outline(ax, boxes)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _outline(ax: Any, boxes: Sequence[Sequence[float]]) -> None:
    """Ground-truth boxes [x0, y0, x1, y1] (poster pixels, x1/y1 exclusive) as outlines."""
    from matplotlib.patches import Rectangle

    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=BOX_COLOR,
                               linewidth=1.2))


def _finish(fig: Figure, provenance: Provenance, title: str | None) -> Figure:
    if title:
        fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.005, provenance.line(), ha="center", va="bottom", fontsize=8, color="#444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def overlay_grid_figure(
    posters: Sequence[Image.Image],
    maps: Sequence[Sequence[GenreMap]],
    provenance: Provenance,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid: one row per movie (poster first), one column per explained genre of that movie; each map's
    ground-truth boxes (`GenreMap.boxes`) are outlined."""
    if len(posters) != len(maps):
        raise ValueError(f"{len(posters)} posters but {len(maps)} rows of maps")
    plt = _pyplot()
    columns = 1 + max((len(row) for row in maps), default=0)
    fig, axes = plt.subplots(len(posters), columns, figsize=(2.0 * columns, 3.2 * len(posters)), squeeze=False)
    for row, (poster, row_maps) in enumerate(zip(posters, maps, strict=True)):
        axes[row, 0].imshow(poster)
        axes[row, 0].set_title(row_labels[row] if row_labels else "poster", fontsize=9)
        axes[row, 0].axis("off")
        for column in range(1, columns):
            if column <= len(row_maps):
                shown = row_maps[column - 1]
                _overlay(axes[row, column], poster, shown.cam, shown.title, shown.boxes)
            else:
                axes[row, column].axis("off")
    return _finish(fig, provenance, title)


def side_by_side_figure(
    poster: Image.Image,
    panels: Sequence[tuple[str, np.ndarray]],
    provenance: Provenance,
    boxes: Sequence[Sequence[float]] = (),
    title: str | None = None,
) -> Figure:
    """The same poster explained several ways, e.g. [("image_vit Grad-CAM: Horror", cam),
    ("cross-attention, plot -> patches", attention map)]. Maps may be on any grid (a 14 x 14 attention
    map or a 224 x 224 CAM); each is rescaled to [0, 1] and resized to the poster. `boxes` (poster
    pixels) are outlined, e.g. the twin's planted objects."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(2.4 * (len(panels) + 1), 3.8), squeeze=False)
    axes[0, 0].imshow(poster)
    _outline(axes[0, 0], boxes)
    axes[0, 0].set_title("poster", fontsize=9)
    axes[0, 0].axis("off")
    for ax, (label, heat) in zip(axes[0, 1:], panels, strict=True):
        heat = np.asarray(heat, dtype=np.float32)
        span = float(heat.max() - heat.min())
        _overlay(ax, poster, (heat - heat.min()) / span if span > 0 else np.zeros_like(heat), label, boxes)
    return _finish(fig, provenance, title)


def modality_weights_figure(
    weights_per_genre: np.ndarray, modalities: Sequence[str], provenance: Provenance, title: str | None = None
) -> Figure:
    """Stacked bars: for each genre, the mean modality weights of its movies (from
    `attention.modality_weights_per_genre`, shape (23, M)); genres without movies are left empty."""
    weights_per_genre = np.asarray(weights_per_genre, dtype=np.float64)
    if weights_per_genre.shape != (len(GENRES), len(modalities)):
        raise ValueError(f"expected weights (23, {len(modalities)}), got {weights_per_genre.shape}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bottom = np.zeros(len(GENRES))
    values = np.nan_to_num(weights_per_genre)
    for column, modality in enumerate(modalities):
        ax.bar(GENRES, values[:, column], bottom=bottom, label=modality)
        bottom += values[:, column]
    ax.set_ylabel("mean modality weight")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=70, labelsize=8)
    ax.legend(fontsize=8, ncols=len(modalities), loc="upper right")
    return _finish(fig, provenance, title)


