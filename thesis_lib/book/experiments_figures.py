"""Figures of the experiments chapter, drawn from what `experiments_chapter` read (English labels only).

Each function takes plain data (DataFrames, arrays) and returns a matplotlib Figure; captions, with the
data and weights the figure shows, are written by the chapter around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from thesis_lib.plots import PALETTE

METRIC_LABELS = {"map_macro": "macro-mAP", "macro_f1": "macro-F1 (threshold 0.5)", "loss": "loss"}

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def per_genre_heatmap(f1: pd.DataFrame, genre_labels: Sequence[str], evidence_kinds: bool = True) -> Figure:
    """Genres (rows, labelled `genre_labels`, which carry the twin's evidence kinds when `evidence_kinds`)
    x models (columns): test F1 x 100, annotated; NaN cells (no test positives) blank. Genres run down the
    page, so 23 of them stay readable in a narrow column."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = f1.T * 100  # (23, models)
    figure, axis = plt.subplots(figsize=(2.6 + 0.5 * table.shape[1], 1.6 + 0.3 * table.shape[0]),
                                layout="constrained")
    sns.heatmap(table, annot=True, fmt=".0f", annot_kws={"fontsize": 7.5}, cmap="viridis", vmin=0, vmax=100,
                xticklabels=list(f1.index), yticklabels=list(genre_labels), cbar_kws={"label": "test F1 (x100)"},
                ax=axis)
    axis.set_ylabel("genre (evidence kind on the synthetic twin)" if evidence_kinds else "genre")
    axis.set_xlabel("")
    axis.tick_params(axis="x", labelsize=8, rotation=90)
    axis.tick_params(axis="y", labelsize=8)
    return figure


def pr_curves_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> Figure:
    """Micro-averaged precision-recall curves {model: (recall, precision, average precision)}."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.2, 4.4), layout="constrained")
    for index, (name, (recall, precision, ap)) in enumerate(curves.items()):
        style = "--" if name.startswith("baseline") else "-"
        axis.plot(recall, precision, style, color=PALETTE[index % len(PALETTE)], linewidth=1.4,
                  label=f"{name} (AP {ap:.2f})")
    axis.set_xlabel("recall (all movie-genre pairs)")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.legend(fontsize=7.5, loc="lower left")
    return figure


def training_curves_figure(history: pd.DataFrame) -> Figure:
    """Two panels per epoch: training loss and the dev score each run monitored (`monitor`), one line per
    model (legend below); a ring marks the epoch each run kept."""
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(history["model"]))
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: a grid has more models than PALETTE
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    for index, name in enumerate(names):
        part = history[history["model"] == name]
        style = {"color": colors[(2 * index) % 20 + (index // 10)], "marker": "o", "markersize": 3,
                 "linestyle": "--" if name.startswith("fusion") else "-"}
        loss_axis.plot(part["epoch"], part["train_loss"], label=name, **style)
        score_axis.plot(part["epoch"], part["val_score"], **style)
        kept = part[part["best"]]
        score_axis.scatter(kept["epoch"], kept["val_score"], s=60, facecolors="none", edgecolors=style["color"])
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss (weighted BCE)")
    score_axis.set_xlabel("epoch")
    monitors = sorted(set(history["monitor"]))
    score_axis.set_ylabel(f"dev {', '.join(METRIC_LABELS.get(m, m) for m in monitors)} (the monitored score)")
    for axis in (loss_axis, score_axis):
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.legend(loc="outside lower center", ncols=4, fontsize=7.5, frameon=False)
    return figure


def reliability_figure(tables: Mapping[str, tuple[pd.DataFrame, float]]) -> Figure:
    """Reliability diagram {model: (bins table, expected calibration error)}: observed share of true
    labels against the mean predicted probability per bin; the diagonal is perfect calibration."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.0, 4.4), layout="constrained")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for index, (name, (table, error)) in enumerate(tables.items()):
        axis.plot(table["predicted"], table["observed"], marker="o", markersize=4, color=PALETTE[index % len(PALETTE)],
                  label=f"{name} (ECE {error:.3f})")
    axis.set_xlabel("mean predicted probability (bin)")
    axis.set_ylabel("share of true labels (bin)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7.5, loc="upper left")
    return figure
