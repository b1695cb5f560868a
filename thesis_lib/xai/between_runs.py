"""Are one run's explanations more faithful than another's? `compare_runs(a, b)` on `evaluate_run` results.

`xai.check.evaluate_run` scores each run on its own sample: the true-positive (poster, genre) pairs that run
predicts, so two runs' samples differ, and a difference of their means would mix "explains better" with
"was asked about other posters". Here two runs are compared on the pairs both explained, matched by
`Pair.key` ("<movie id>/<genre>"), and the difference is paired over them: each pair's value for run a
minus its value for run b, resampled together (`xai.faithfulness.difference_with_ci`).

Why the intersection, not a shared sample drawn from the labels (every true genre with poster evidence,
predicted or not): `select_pairs` walks one seeded order of the labelled candidates that is the same for
every run of a test split (it depends on the labels and the twin's truth only), so two runs that predict
most of those genres share most of their pairs: in a cold smoke build (2026-12-06, 200 pairs per run)
fusion_cross_attention shared 172-185 of its 200 pointing-game pairs and 41-45 of its 50 deletion pairs
with each other fusion. The intersection costs nothing beyond the per-run check, and it compares the
explanations of decisions both models got right, which is what a user of either model is shown.
Explaining a genre a model does not predict asks its map why it said "no", a different question. The price: the comparison is conditioned on pairs both models get right (easier pairs, more so
for the weaker model), so every row reports its pair count, and the per-run table keeps each run's own
sample. Plots for cue recall are drawn from the labels alone (`check.cue_movies`): every text-reading run of
a split reads the same plots, so their intersection is the whole sample.

Deletion runs on the first `max_deletion_pairs` pairs of each sample only, so its intersection is smaller
than the pointing game's. Its raw AUC depends on how confident the model is about the genre (a confident
model starts its curve higher), so the comparison also reports each pair's deletion AUC minus the same
pair's random-order AUC, which takes the model's own starting probability out. Neither takes out how
much the model leans on the poster at all: a fusion that decides a genre mostly from the plot loses little
when any part of the poster is blurred, whatever its map says.

Orientation: every difference is "a more faithful than b" when positive (the pointing game and cue recall:
a - b; deletion, lower is better: b - a). The verdict is read from the interval by `analysis.verdicts`
(the book's `faithfulness` module); this layer returns the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from thesis_lib.xai.faithfulness import Estimate, difference_with_ci


@dataclass(frozen=True)
class Measure:
    """One faithfulness score compared between runs."""

    name: str  # how the table and the prose name it
    keys: tuple[str, ...]  # a run's score: the first of these it has (cue recall: cross-attention, else rollout)
    reference: str | None = None  # subtracted pair by pair first (deletion minus random order)
    lower_is_better: bool = False


POINTING = "pointing game (Grad-CAM)"
MEASURES = (
    Measure(POINTING, ("gradcam_pointing_game",)),
    Measure("deletion AUC", ("deletion_auc",), lower_is_better=True),
    Measure("deletion AUC minus random order", ("deletion_auc",), reference="random_deletion_auc",
            lower_is_better=True),
    Measure("cue recall@5", ("attention_cue_recall_at_5", "rollout_cue_recall_at_5")),
)

SOURCES = {"gradcam_pointing_game": "Grad-CAM", "deletion_auc": "Grad-CAM",
           "attention_cue_recall_at_5": "cross-attention", "rollout_cue_recall_at_5": "rollout"}


@dataclass(frozen=True)
class RunComparison:
    """Run a against run b on one measure, over the pairs both have it for."""

    measure: str
    source_a: str  # which explanation of run a was scored ("Grad-CAM", "cross-attention", "rollout")
    source_b: str
    mean_a: float  # each run's mean over the shared pairs (NaN when none)
    mean_b: float
    difference: Estimate  # positive: a is more faithful (see the module docstring); n = shared pairs


def measure_values(result: Mapping[str, Any], measure: Measure) -> tuple[str, dict[str, float]] | None:
    """(the score's key, {pair key: value}) of one run for `measure`, the reference already subtracted and
    NaN dropped; None when the run has no such score (Grad-CAM of a text-only model)."""
    values = result.get("pair_values", {})
    key = next((key for key in measure.keys if values.get(key)), None)
    if key is None or (measure.reference is not None and measure.reference not in values):
        return None
    found = values[key]
    if measure.reference is not None:
        reference = values.get(measure.reference, {})
        found = {pair: value - reference[pair] for pair, value in found.items() if pair in reference}
    return key, {pair: value for pair, value in found.items() if not np.isnan(value)}


def compare_runs(a: Mapping[str, Any], b: Mapping[str, Any], n_resamples: int = 1000,
                 seed: int = 0) -> list[RunComparison]:
    """Every `MEASURES` entry both runs have: their means over the pairs both explained (in a's sample
    order) and the paired difference with its percentile bootstrap interval, positive when a is more
    faithful. A measure with no shared pair still appears, with n = 0 and NaN (it decides nothing)."""
    compared = []
    for measure in MEASURES:
        found_a, found_b = measure_values(a, measure), measure_values(b, measure)
        if found_a is None or found_b is None:
            continue
        (key_a, values_a), (key_b, values_b) = found_a, found_b
        shared = [pair for pair in values_a if pair in values_b]
        score_a = np.asarray([values_a[pair] for pair in shared], dtype=np.float64)  # (n,)
        score_b = np.asarray([values_b[pair] for pair in shared], dtype=np.float64)  # (n,)
        better, worse = (score_b, score_a) if measure.lower_is_better else (score_a, score_b)
        difference = difference_with_ci(better, worse, n_resamples, seed)
        means = (float(score_a.mean()), float(score_b.mean())) if shared else (float("nan"), float("nan"))
        compared.append(RunComparison(measure.name, SOURCES[key_a], SOURCES[key_b], *means, difference))
    return compared
