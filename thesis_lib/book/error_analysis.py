"""The error analysis and the cost table of the experiments chapter (notebooks/04_experiments.ipynb).

Where `analysis.comparison` compares scores, this module looks at one run's *decisions* on the test split
(its first seed, at its dev-tuned thresholds): the genres it fails on, the genres it adds where they
usually co-occur, what only the fusion finds, how calibrated its probabilities are, whether a plot that
names its own genre sways it (synthetic twin only), and what each run of the grid cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from thesis_lib.analysis.comparison import FinishedRun, convergence
from thesis_lib.analysis.sources import NOT_CANDIDATES, read_modality
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.table import TUNED_POLICY
from thesis_lib.genres import GENRES

# ------------------------------------------------------------------------------------------ decisions


def weakest_genres(run: FinishedRun, evidence: Mapping[str, str] | None, count: int = 5) -> pd.DataFrame:
    """The `count` genres with the lowest tuned test F1 (first seed), with support and evidence kind."""
    genres = run.records[0]["metrics"][TUNED_POLICY]["per_genre"]
    rows = {g: {"F1": genres[g]["f1"], "precision": genres[g]["precision"], "recall": genres[g]["recall"],
                "test positives": int(genres[g]["support"])}
            for g in GENRES if genres[g]["support"] > 0}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("genre").sort_values("F1").head(count).round(3)
    if evidence is not None:
        table.insert(0, "evidence", [evidence[g] for g in table.index])
    return table


SOURCE_GAP = 0.3  # a single-modality run this far below the best run of its modality on a genre fails it


def source_failures(runs: Mapping[str, FinishedRun], f1: pd.DataFrame,
                    evidence: Mapping[str, str] | None, gap: float = SOURCE_GAP) -> pd.DataFrame:
    """Genres a single-modality run fails while another run of the same modality does not: its tuned test F1
    (mean over seeds, `f1` from `comparison.per_genre_f1`) at least `gap` below the best run reading that
    modality. On the twin only the genres whose evidence the modality can see (its own kind or "both") are
    considered; e.g. a detector that never finds the planted cactus fails Western where the other does not."""
    modalities = {name: read_modality(runs[name]) for name in f1.index
                  if name in runs and runs[name].stage == "unimodal" and name not in NOT_CANDIDATES}
    rows = []
    for modality in dict.fromkeys(m for m in modalities.values() if m is not None):
        readers = [name for name, m in modalities.items() if m == modality]
        seen = "image" if modality == "objects" else modality  # detections are read off the poster
        for genre in f1.columns:
            if evidence is not None and evidence[genre] not in (seen, "both"):
                continue
            scores = f1.loc[readers, genre].dropna()
            if len(scores) < 2:
                continue
            best = scores.idxmax()
            rows += [{"genre": genre, "evidence": None if evidence is None else evidence[genre], "run": name,
                      "F1": scores[name], "best of its modality": best, "its F1": scores[best]}
                     for name in scores.index if scores[best] - scores[name] >= gap]
    table = pd.DataFrame(rows, columns=["genre", "evidence", "run", "F1", "best of its modality", "its F1"])
    if evidence is None:
        table = table.drop(columns="evidence")
    return table.sort_values("F1").set_index("genre").round(3)


def cooccurrence_confusions(run: FinishedRun, count: int = 8) -> tuple[pd.DataFrame, float]:
    """The genre pairs the model confuses most: for a true genre a and another genre b the movie lacks,
    how often the model adds b, next to how often b co-occurs with a in the test labels.

    Returns the `count` pairs with most such false positives and the Spearman correlation, over all
    pairs with at least one movie, between the false-positive rate and the label co-occurrence."""
    from scipy.stats import spearmanr

    labels = run.test_predictions().labels.astype(bool)  # (N, 23)
    decided = run.decisions()  # (N, 23)
    false_positive = decided & ~labels  # (N, 23)
    rows = []
    for a, true_genre in enumerate(GENRES):
        with_a = labels[:, a]
        for b, added in enumerate(GENRES):
            if a == b or with_a.sum() == 0:
                continue
            without_b = with_a & ~labels[:, b]
            if without_b.sum() == 0:
                continue
            rows.append({"true genre": true_genre, "added genre": added,
                         "false positives": int(false_positive[without_b, b].sum()),
                         "rate": false_positive[without_b, b].mean(),
                         "co-occurrence P(added | true)": labels[with_a, b].mean()})
    table = pd.DataFrame(rows)
    rate, cooccurrence = table["rate"], table["co-occurrence P(added | true)"]
    defined = len(table) > 2 and np.ptp(rate) > 0 and np.ptp(cooccurrence) > 0  # a constant column has no rank order
    correlation = spearmanr(rate, cooccurrence).statistic if defined else np.nan
    top = table.sort_values(["false positives", "rate"], ascending=False).head(count)
    return top.set_index(["true genre", "added genre"]), float(correlation)


STRONG_PULL, WEAK_PULL = 0.3, 0.1  # rank correlations the prose calls "drawn to" and "weakly drawn to"


def correlation_verdict(correlation: float) -> str:
    """How the rank correlation between false positives and label co-occurrence reads (the bands are stated
    in the prose): drawn to / weakly drawn to / not drawn to co-occurring genres, or undecided."""
    if np.isnan(correlation):
        return "undecided (too few test movies to rank the genre pairs)"
    if correlation >= STRONG_PULL:
        return "drawn to the genres that usually come with the true one"
    if correlation >= WEAK_PULL:
        return "weakly drawn to the genres that usually come with the true one"
    return "not drawn to the genres that usually come with the true one"


def fusion_only_hits(fusion: FinishedRun, singles: Sequence[FinishedRun],
                     evidence: Mapping[str, str] | None) -> pd.DataFrame:
    """Per genre with any: test positives the fusion finds (at its tuned thresholds) while every
    single-modality run misses them, and their share of the genre's positives (first seeds)."""
    labels = fusion.test_predictions().labels.astype(bool)  # (N, 23)
    found = fusion.decisions() & labels  # (N, 23)
    for single in singles:
        if list(single.test_predictions().ids) != list(fusion.test_predictions().ids):
            raise ThesisError(f"{single.name} and {fusion.name} were tested on different movies")
    missed_by_all = np.logical_and.reduce([~single.decisions() for single in singles])  # (N, 23)
    only = found & missed_by_all  # (N, 23)
    table = pd.DataFrame({"fusion-only hits": only.sum(axis=0), "test positives": labels.sum(axis=0)},
                         index=pd.Index(GENRES, name="genre"))
    table["share"] = table["fusion-only hits"] / table["test positives"].where(table["test positives"] > 0)
    if evidence is not None:
        table.insert(0, "evidence", [evidence[g] for g in GENRES])
    return table[table["fusion-only hits"] > 0].sort_values(["fusion-only hits", "share"], ascending=False)


def fusion_only_top(hits: pd.DataFrame, count: int = 3) -> str:
    """The genres with the most fusion-only hits, as data for the prose: "War (4 of 13 positives, image), ..."
    ("none" when every positive the fusion finds is found by a single-modality run too)."""
    parts = []
    for genre, row in hits.head(count).iterrows():
        kind = f", {row['evidence']}" if "evidence" in row else ""
        parts.append(f"{genre} ({int(row['fusion-only hits'])} of {int(row['test positives'])} positives{kind})")
    return ", ".join(parts) or "none"


# ---------------------------------------------------------------------------------------- calibration


def reliability(run: FinishedRun, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Reliability of the first seed's test probabilities over every (movie, genre) pair: per
    equal-width bin the mean probability, the observed share of true labels and the count; and the
    expected calibration error (count-weighted mean |observed - predicted|)."""
    test = run.test_predictions()
    probs, labels = test.probs.ravel(), test.labels.ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)  # (N*23,) bin of each pair
    rows = []
    for index in range(bins):
        members = which == index
        if members.any():
            rows.append({"bin": index, "predicted": probs[members].mean(), "observed": labels[members].mean(),
                         "pairs": int(members.sum())})
    table = pd.DataFrame(rows)
    error = float((table["pairs"] * (table["observed"] - table["predicted"]).abs()).sum() / table["pairs"].sum())
    return table, error


def calibration_side(table: pd.DataFrame) -> str:
    """"over-confident" when most pairs sit in bins whose mean probability exceeds the observed share of true
    labels (below the diagonal), else "under-confident"."""
    above = table.loc[table["predicted"] > table["observed"], "pairs"].sum()
    below = table.loc[table["predicted"] < table["observed"], "pairs"].sum()
    return "over-confident" if above > below else "under-confident"


# ------------------------------------------------------------------------------ genre mentions (twin)


def genre_mention_effect(truth: Mapping[str, Any], runs: Mapping[str, FinishedRun],
                         names: Sequence[str]) -> pd.DataFrame:
    """Plots that name their own genre (the twin's `genre_mentions`): per model, the recall on those
    (movie, named genre) pairs against the recall on the same genres in test movies whose plot does not
    name them. Empty when no test plot names a genre."""
    first = runs[names[0]].test_predictions()
    ids = [str(i) for i in first.ids]
    named = np.zeros((len(ids), len(GENRES)), dtype=bool)  # (N, 23)
    for row, movie_id in enumerate(ids):
        for mention in truth["movies"][movie_id].get("genre_mentions", []):
            named[row, GENRES.index(mention["genre"])] = True
    labels = first.labels.astype(bool)
    mentioned = named & labels  # (N, 23) positives whose plot names them
    genres = mentioned.any(axis=0)  # (23,) genres named somewhere
    unnamed = labels & ~named & genres  # (N, 23) positives of those genres, not named
    rows = {}
    for name in names:
        decided = runs[name].decisions()
        rows[name] = {"recall, plot names the genre": decided[mentioned].mean() if mentioned.any() else np.nan,
                      "recall, same genres unnamed": decided[unnamed].mean() if unnamed.any() else np.nan,
                      "named pairs": int(mentioned.sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")


def mention_values(truth: Mapping[str, Any] | None, runs: Mapping[str, FinishedRun],
                   names: Sequence[str]) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The genre-mention table (twin; None on MM-IMDb or when no test plot names its genre) and, for the
    prose, how many named pairs there are and how far one pair moves a recall."""
    if truth is None:
        return None, {"named_pairs": 0, "one_pair_step": float("nan"),
                      "mention_scope": "MM-IMDb records no genre mentions, so this applies to the synthetic twin only."}
    table = genre_mention_effect(truth, runs, list(dict.fromkeys(names)))
    pairs = int(table["named pairs"].iloc[0])
    scope = "" if pairs else "No test plot of this twin names its own genre."
    return (table.round(3) if pairs else None), {"named_pairs": pairs, "one_pair_step": 1 / pairs if pairs else float("nan"),
                                                 "mention_scope": scope}


# ------------------------------------------------------------------------------------------------ cost


def cost_table(runs: Mapping[str, FinishedRun]) -> pd.DataFrame:
    """Per run (first seed), slowest first: wall time, training samples/s, epochs run, parameters (total
    and trainable, in millions)."""
    rows = {}
    for name, run in runs.items():
        record = run.records[0]
        speed = record.get("samples_per_s")
        rows[name] = {"wall time (s)": round(float(record["wall_time_s"]), 1),
                      "samples/s": "–" if speed is None else f"{speed:,.0f}",
                      "epochs": (record.get("training") or {}).get("epochs_run", 0),
                      "kept epoch": "–" if (kept := convergence(run)) is None else kept.best_epoch,
                      "params (M)": f"{record['parameters']['total'] / 1e6:.2f}",
                      "trainable (M)": f"{record['parameters']['trainable'] / 1e6:.2f}"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("run").sort_values("wall time (s)", ascending=False)


def devices(runs: Mapping[str, FinishedRun]) -> str:
    """The devices the runs computed on, e.g. "cpu" or "cuda (NVIDIA H100)"."""
    found = []
    for run in runs.values():
        device = run.records[0]["device"]
        found.append(device["type"] if device["type"] == "cpu" else f"{device['type']} ({device['name']})")
    return ", ".join(dict.fromkeys(found))
