"""Figure helpers shared by the book's chapters (matplotlib + seaborn; English labels).

Each function takes plain data (numbers, arrays, images, DataFrames) and returns a matplotlib Figure; it
computes nothing a reader would need to check elsewhere. Labels are English (DejaVu Sans, bundled with
matplotlib, has every glyph); where Korean text appears in a figure, the book style falls back to an
installed Korean font (`KOREAN_FONTS`: NanumSquare from `make browser`'s fonts-nanum, which has a bold of
weight 700 as DejaVu Sans does, else Noto Sans CJK KR) glyph by glyph, in the PNG, PDF and SVG alike. Captions, including which data and weights a figure shows, are
written by the chapter around the figure.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

BOOK_DPI = 110  # sharp on screen, small files
MAX_LENGTH_COLOR = "#b2182b"
TITLE_WIDTH = 28  # characters per line of a small-multiple title (a poster's genre list)
PALETTE = ("#4878a8", "#e49444", "#6a9f58", "#d1615d", "#8f6cb4", "#85b6b2")
KOREAN_FONTS = ("NanumSquare", "Noto Sans CJK KR", "Noto Sans KR", "Malgun Gothic", "AppleGothic")  # first found


def korean_font() -> str | None:
    """The first installed font of `KOREAN_FONTS` (None: Korean text in a figure would show as boxes)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in KOREAN_FONTS if name in installed), None)


def use_book_style() -> None:
    """One look for every figure and table of the book (call once per chapter). Tables are shown whole:
    pandas would cut a table past 20 columns or 60 rows with "..." (the book's tables are bounded by the
    models and genres; `book/_static/tables.css` lets a wide one scroll sideways instead of overflowing)."""
    import matplotlib as mpl
    import pandas as pd
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    mpl.rcParams.update({"figure.dpi": BOOK_DPI, "savefig.dpi": BOOK_DPI, "figure.autolayout": False,
                         "axes.titleweight": "bold",
                         "pdf.fonttype": 42})  # TrueType in the exported PDFs: text a thesis can search and copy
    logging.getLogger("fontTools.subset").setLevel(logging.ERROR)  # its notes on a Korean font's hinting tables
    fallback = korean_font()
    if fallback is not None:  # a glyph DejaVu Sans lacks (Hangul) comes from the Korean font
        mpl.rcParams["font.family"] = ["sans-serif", fallback]
    for option in ("display.max_columns", "display.max_rows", "display.max_colwidth", "display.width"):
        pd.set_option(option, None)


def genre_shares(
    counts: Mapping[str, int], n_movies: int, reference: Mapping[str, float] | None = None,
    reference_label: str = "MM-IMDb (published counts)",
) -> Figure:
    """Horizontal bars: percent of movies per genre (in the given order), with an optional reference share."""
    import matplotlib.pyplot as plt

    genres = list(counts)
    shares = np.array([counts[g] for g in genres], dtype=float) / max(n_movies, 1) * 100  # (G,)
    figure, axis = plt.subplots(figsize=(7, 6.2), layout="constrained")
    rows = np.arange(len(genres))
    axis.barh(rows, shares, color=PALETTE[0], label="this data set")
    if reference is not None:
        axis.scatter([reference[g] * 100 for g in genres], rows, marker="|", s=160, color="black", zorder=3,
                     label=reference_label)
    axis.set_yticks(rows, genres)
    axis.invert_yaxis()  # most frequent genre on top, as listed
    axis.set_xlabel("movies with the genre (%)")
    axis.legend(loc="lower right")
    return figure


def conditional_cooccurrence(labels: np.ndarray) -> np.ndarray:
    """P(genre j | genre i) from multi-hot labels (N, G): row i = movies with genre i. Rows of absent
    genres are 0."""
    labels = np.asarray(labels, dtype=float)  # (N, G)
    together = labels.T @ labels  # (G, G) movies with both genres
    totals = np.diag(together)[:, None]  # (G, 1) movies with genre i
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, together / totals, 0.0)  # (G, G)


def cooccurrence_heatmap(labels: np.ndarray, genres: Sequence[str]) -> Figure:
    """Heat map of P(column genre | row genre), diagonal masked (it is 1 by definition)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    matrix = conditional_cooccurrence(labels)  # (G, G)
    figure, axis = plt.subplots(figsize=(8, 7), layout="constrained")
    sns.heatmap(matrix * 100, mask=np.eye(len(genres), dtype=bool), cmap="rocket_r", vmin=0, square=True,
                xticklabels=genres, yticklabels=genres, cbar_kws={"label": "P(column genre | row genre) (%)"},
                ax=axis)
    axis.set_xlabel("co-occurring genre")
    axis.set_ylabel("genre")
    return figure


def labels_per_movie(labels: np.ndarray) -> Figure:
    """Bar chart: how many movies have 1, 2, 3, ... genres."""
    import matplotlib.pyplot as plt

    per_movie = np.asarray(labels).sum(axis=1).astype(int)  # (N,)
    values, counts = np.unique(per_movie, return_counts=True)
    figure, axis = plt.subplots(figsize=(6, 3.2), layout="constrained")
    axis.bar(values, counts / len(per_movie) * 100, color=PALETTE[0])
    axis.set_xticks(values)
    axis.set_xlabel("genres per movie")
    axis.set_ylabel("movies (%)")
    return figure


def token_lengths(lengths: Mapping[str, Sequence[int]], limit: int = 512, model_limit: int | None = None) -> Figure:
    """Overlaid histograms of plot lengths in tokens (one per text variant) with the encoder's limit."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.4), layout="constrained")
    longest = max(max(values) for values in lengths.values())
    bins = np.linspace(0, max(longest, limit) * 1.05, 60)
    for color, (name, values) in zip(PALETTE, lengths.items(), strict=False):
        axis.hist(values, bins=bins, alpha=0.55, color=color, label=name)
    axis.axvline(limit, color=MAX_LENGTH_COLOR, linestyle="--", label=f"{limit}-token limit")
    if model_limit is not None and model_limit != limit:
        axis.axvline(model_limit, color="black", linestyle=":", label=f"truncation of this profile ({model_limit})")
    axis.set_xlabel("tokens per plot (special tokens included)")
    axis.set_ylabel("movies")
    axis.legend()
    return figure


def image_grid(images: Sequence[Any], titles: Sequence[str], columns: int = 4, width: float = 9.0) -> Figure:
    """Images (PIL, or arrays H x W x 3 in [0, 1]) in a grid, each with a small title."""
    import matplotlib.pyplot as plt

    rows = -(-len(images) // columns)
    first = np.asarray(images[0])
    aspect = first.shape[0] / first.shape[1]  # height / width
    figure, axes = plt.subplots(rows, columns, figsize=(width, width / columns * aspect * rows + 0.5 * rows),
                                layout="constrained", squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        axis.imshow(np.clip(np.asarray(image), 0, 255 if np.asarray(image).dtype == np.uint8 else 1))
        axis.set_title(textwrap.fill(title, TITLE_WIDTH), fontsize=8, fontweight="normal")
    return figure


def stratification_deviation(reports: Mapping[str, pd.DataFrame]) -> Figure:
    """Per genre, the largest deviation (percentage points) of a part's share from the whole, per split."""
    import matplotlib.pyplot as plt

    names = list(reports)
    genres = list(next(iter(reports.values())).index)
    figure, axis = plt.subplots(figsize=(7, 6.2), layout="constrained")
    rows = np.arange(len(genres))
    height = 0.8 / len(names)
    for i, (color, name) in enumerate(zip(PALETTE, names, strict=False)):
        axis.barh(rows + i * height, reports[name]["max_abs_dev_pp"], height=height, color=color, label=name)
    axis.set_yticks(rows + height * (len(names) - 1) / 2, genres)
    axis.invert_yaxis()
    axis.set_xlabel("largest |share in a part - share overall| (percentage points)")
    axis.legend(loc="lower right")
    return figure


def parameter_counts(frame: pd.DataFrame, parts: Sequence[str]) -> Figure:
    """Stacked horizontal bars of parameters (millions) per model part; one row per model (frame index)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 0.42 * len(frame) + 1.2), layout="constrained")
    left = np.zeros(len(frame))
    rows = np.arange(len(frame))
    for color, part in zip(PALETTE, parts, strict=False):
        values = frame[part].fillna(0).to_numpy(dtype=float) / 1e6  # (M,)
        axis.barh(rows, values, left=left, color=color, label=part)
        left += values
    axis.set_yticks(rows, frame.index)
    axis.invert_yaxis()
    axis.set_xlabel("parameters (millions)")
    axis.legend(loc="lower right", ncols=len(parts))
    return figure


def cross_attention_diagram(shapes: Mapping[str, tuple[int, ...]], heads: int, head_dim: int) -> Figure:
    """The text-queries-image half of one cross-attention block, each arrow labelled with its tensor shape.

    `shapes` holds the traced shapes of: "text", "image", "query", "key", "value", "weights", "update".
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    figure, axis = plt.subplots(figsize=(8, 4.8), layout="constrained")
    axis.set_xlim(0, 10)
    axis.set_ylim(0, 6.4)
    axis.axis("off")
    text_color, image_color, mix_color = "#dbe7f3", "#f6e3cf", "#e8e8e8"

    def box(x: float, y: float, width: float, text: str, color: str) -> None:
        axis.add_patch(FancyBboxPatch((x - width / 2, y - 0.36), width, 0.72, boxstyle="round,pad=0.04",
                                      facecolor=color, edgecolor="black", linewidth=0.8))
        axis.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(start: tuple[float, float], end: tuple[float, float], name: str | None) -> None:
        axis.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "#333333", "linewidth": 1.1})
        if name is not None:
            label = "(" + ", ".join(str(n) for n in shapes[name]) + ")"
            axis.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, label, fontsize=8.5, ha="center",
                      va="center", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})

    box(2.0, 5.6, 3.0, "plot tokens (B, N_text, D)", text_color)
    box(7.5, 5.6, 3.6, "patches + regions (B, N_image, D)", image_color)
    box(2.0, 3.8, 2.0, "Q = W_q x_text", text_color)
    box(6.3, 3.8, 2.0, "K = W_k x_image", image_color)
    box(8.8, 3.8, 2.0, "V = W_v x_image", image_color)
    box(3.6, 2.1, 3.6, f"A = softmax(Q K^T / sqrt({head_dim}))", mix_color)
    box(6.9, 0.6, 3.8, "A V, heads joined -> text update", text_color)
    arrow((2.0, 5.24), (2.0, 4.16), "text")
    arrow((7.0, 5.24), (6.3, 4.16), "image")
    arrow((8.0, 5.24), (8.8, 4.16), None)
    arrow((2.0, 3.44), (2.9, 2.46), "query")
    arrow((6.3, 3.44), (4.6, 2.46), "key")
    arrow((8.8, 3.44), (8.2, 0.96), "value")
    arrow((3.6, 1.74), (5.2, 0.96), "weights")
    axis.text(0.1, 0.6, f"output {tuple(shapes['update'])}\n{heads} heads x {head_dim} dims\n"
              "B batch, H heads,\nN tokens per stream", fontsize=8.5, va="center")
    return figure


def detections_on_posters(
    images: Sequence[Any], boxes: Sequence[np.ndarray], labels: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]] | None = None, titles: Sequence[str] | None = None, columns: int = 4,
) -> Figure:
    """Posters (PIL) with their boxes drawn: `boxes[i]` is (K, 4) normalised xyxy (fractions of the
    poster's width and height, the object encoder's format), labelled with `labels[i]` (and scores)."""
    from matplotlib.patches import Rectangle

    figure = image_grid(images, titles or [""] * len(images), columns=columns)
    for index, axis in enumerate(figure.axes[: len(images)]):
        width, height = images[index].size
        pixels = np.asarray(boxes[index], dtype=float).reshape(-1, 4) * [width, height, width, height]  # (K, 4)
        for k, (x0, y0, x1, y1) in enumerate(pixels):
            color = PALETTE[k % len(PALETTE)]
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.4))
            text = labels[index][k] + (f" {float(scores[index][k]):.2f}" if scores is not None else "")
            axis.text(x0, y0 - 2, text, fontsize=6.5, color="white", va="bottom",
                      bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0})
    return figure


def throughput_bars(frame: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of samples/s per variant (frame index), each annotated with its speed-up over plain
    (column "x plain"; blank where the benchmark measured no plain twin)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 0.45 * len(frame) + 1.3), layout="constrained")
    if frame.empty:  # nothing measured: say so on the figure rather than draw empty axes
        axis.text(0.5, 0.5, "not measured: no benchmark result", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        axis.set_title(textwrap.shorten(title, 90), loc="left", fontsize=9)
        return figure
    rows = np.arange(len(frame))
    rates = frame["samples/s"].to_numpy(dtype=float)  # (V,)
    axis.barh(rows, rates, color=PALETTE[0])
    for row, rate, speedup in zip(rows, rates, frame["x plain"], strict=True):
        if speedup is not None and not np.isnan(speedup):
            axis.annotate(f" x{speedup:.2f}", (rate, row), va="center", fontsize=8)
    axis.set_yticks(rows, frame.index)
    axis.invert_yaxis()
    axis.set_xlabel("training samples per second")
    axis.set_title(textwrap.shorten(title, 90), loc="left", fontsize=9)
    axis.margins(x=0.15)
    return figure


def _nothing_to_draw(frame: pd.DataFrame, message: str | None) -> str | None:
    """What a results figure says instead of its panels: the caller's `message`, "no results" for an empty
    `frame`, or None (draw)."""
    return message if message is not None else ("no results" if frame.empty else None)


def _panels_or_message(n_panels: int, size: tuple[float, float], message: str | None):
    """A row of `n_panels` panels sharing the y axis, or (when `message` is given) one blank panel that says
    it: (figure, the panels' axes, or None when the figure holds the message)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, max(n_panels, 1), figsize=size, sharey=True, layout="constrained", squeeze=False)
    if message is None:
        return figure, axes
    axes[0, 0].text(0.5, 0.5, textwrap.fill(message or "no results", 60), ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[0, 0].set_axis_off()
    return figure, None


def capacity_accuracies(frame: pd.DataFrame, references: pd.DataFrame, message: str | None = None) -> Figure:
    """One panel per task: each model's test accuracy (a dot) with its 95% interval (a bar), the majority
    guess (dashed), the best accuracy pooled vectors allow (dotted) and each seed's accuracy (small grey
    crosses). `frame`: columns task, model, accuracy, ci_low, ci_high, pooled (bool; pooled models red,
    token-level blue), seeds (a list of per-seed accuracies), in display order;
    `references`: index task, columns majority, pooled_ceiling. `message` instead of panels: nothing to draw."""

    tasks = list(references.index)
    figure, axes = _panels_or_message(len(tasks), (9, 3.6), _nothing_to_draw(frame, message))
    if axes is None:
        return figure
    models = list(dict.fromkeys(frame["model"]))
    rows = np.arange(len(models))
    for axis, task in zip(axes[0], tasks, strict=True):
        part = frame[frame["task"] == task].set_index("model").loc[models]
        colours = [PALETTE[3] if pooled else PALETTE[0] for pooled in part["pooled"]]
        errors = np.vstack([part["accuracy"] - part["ci_low"], part["ci_high"] - part["accuracy"]])  # (2, M)
        axis.errorbar(part["accuracy"], rows, xerr=errors, fmt="none", ecolor="#555555", capsize=2)
        axis.scatter(part["accuracy"], rows, c=colours, zorder=3, s=22)
        for row, seeds in zip(rows, part["seeds"], strict=True):
            axis.scatter(seeds, np.full(len(seeds), row + 0.25), marker="x", color="#777777", s=10, linewidths=0.8)
        axis.axvline(references.loc[task, "majority"], color="#555555", linestyle="--", linewidth=1)
        if references.loc[task, "pooled_ceiling"] < 1:
            axis.axvline(references.loc[task, "pooled_ceiling"], color=PALETTE[3], linestyle=":", linewidth=1.2)
        axis.set_title(task, loc="left", fontsize=9)
        axis.set_xlim(0.4, 1.02)
        axis.set_xlabel("test accuracy")
    axes[0, 0].set_yticks(rows, models)
    axes[0, 0].invert_yaxis()
    return figure


def datasize_curves(frame: pd.DataFrame, ceilings: Mapping[str, float], message: str | None = None) -> Figure:
    """One panel per genre group: test macro-F1 against the number of training movies (log scale), one
    line per fusion with its 95% interval as a band, and the noise-free rule's F1 (dotted). `frame`:
    columns group, size, fusion (display label), f1, ci_low, ci_high, in display order; `ceilings`:
    group -> the rule's F1. `message` instead of panels: nothing to draw."""

    groups = list(dict.fromkeys(frame["group"])) if not frame.empty else []
    figure, axes = _panels_or_message(len(groups), (9, 3.4), _nothing_to_draw(frame, message))
    if axes is None:
        return figure
    for axis, group in zip(axes[0], groups, strict=True):
        part = frame[frame["group"] == group]
        for colour, (fusion, line) in zip(PALETTE, part.groupby("fusion", sort=False), strict=False):
            axis.plot(line["size"], line["f1"], marker="o", markersize=3, color=colour, label=fusion)
            axis.fill_between(line["size"], line["ci_low"], line["ci_high"], color=colour, alpha=0.18, linewidth=0)
        if group in ceilings:
            axis.axhline(ceilings[group], color="#555555", linestyle=":", linewidth=1.2)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(set(part["size"])), [f"{s:,}" for s in sorted(set(part["size"]))])
        axis.set_title(group, loc="left", fontsize=9)
        axis.set_xlabel("training movies")
    axes[0, 0].set_ylabel("test macro-F1")
    axes[0, 0].set_ylim(0, 1.02)
    axes[0, -1].legend(fontsize=7, loc="lower right")
    return figure
