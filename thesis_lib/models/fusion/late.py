"""Late fusion: each modality predicts the genres on its own; the predictions are averaged with weights.

Two forms:
- The thesis's main late fusion combines *separately trained* single-modality models: their validation
  probabilities fit one weight per genre and modality (`fit_late_fusion_weights`, a grid search over the
  weight simplex maximising validation average precision), and `combine_late` applies them to test
  probabilities. No network is trained for it.
- `LateFusion` trains the per-modality heads jointly with learnable per-genre weights (an ablation).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.heads import GenreHead
from thesis_lib.models.outputs import EncoderOutput, FusionOutput


class LateFusion(Fusion):
    """A genre head per modality; logits combined with per-genre weights (softmax over modalities).

    The weights start equal (zero logits) and are learned with the heads. Logits are averaged, not
    probabilities, so the BCE loss sees one ordinary logit per genre. `fused` is already the (B, 23) logits
    (`num_labels` other than 23: the controlled experiments of `analysis.capacity` predict one label).
    """

    produces_logits = True

    def __init__(self, pooled_dims: Mapping[str, int], dropout: float, num_labels: int = NUM_GENRES):
        super().__init__(tuple(pooled_dims), out_dim=num_labels)
        self.heads = nn.ModuleDict({m: GenreHead(width, dropout, num_labels) for m, width in pooled_dims.items()})
        self.weight_logits = nn.Parameter(torch.zeros(len(pooled_dims), num_labels))  # (M, 23)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        inputs = self._inputs(encoded)
        logits = {m: self.heads[m](out.pooled) for m, out in zip(self.modalities, inputs, strict=True)}  # M x (B, 23)
        weights = self.weight_logits.softmax(dim=0)  # (M, 23) each genre's weights sum to 1
        stacked = torch.stack([logits[m] for m in self.modalities])  # (M, B, 23)
        fused = (weights.unsqueeze(1) * stacked).sum(dim=0)  # (B, 23)
        return FusionOutput(
            fused=fused, modalities=self.modalities, genre_modality_weights=weights, modality_logits=logits
        )


WEIGHT_STEP = 0.1  # the grid of per-genre modality weights fitted on dev (multiples of it on the simplex)


def fit_late_fusion_weights(
    val_probs_by_modality: Mapping[str, ArrayLike], val_labels: ArrayLike, step: float = WEIGHT_STEP
) -> dict[str, np.ndarray]:
    """Per genre, the convex weights of the modalities that maximise validation average precision.

    `val_probs_by_modality[m]` is (N, 23) probabilities of the single-modality model m on the validation
    set, `val_labels` the (N, 23) multi-hot truth. The search is exhaustive over the simplex grid with the
    given step (66 candidates for three modalities at 0.1). Ties keep the most even mix; a genre without
    both a positive and a negative example (AP undefined) gets exactly 1/M each.
    Returns {modality: (23,) weights}, summing to 1 per genre.
    """
    # Imported here: scikit-learn is only needed to fit late-fusion weights, not to build or train a model.
    from sklearn.metrics import average_precision_score

    modalities, probs = _stack_probs(val_probs_by_modality)  # (M, N, 23)
    labels = np.asarray(val_labels)
    if labels.shape != probs.shape[1:]:
        raise ValueError(f"val_labels has shape {labels.shape}; the probabilities are {probs.shape[1:]}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("val_labels must be multi-hot (0/1)")
    grid = _simplex_grid(len(modalities), step)  # (G, M), most even mix first
    weights = np.full((len(modalities), labels.shape[1]), 1 / len(modalities))  # (M, 23) the even mix
    for genre in range(labels.shape[1]):
        truth = labels[:, genre]  # (N,)
        if truth.min() == truth.max():
            continue  # AP is undefined without positives (or negatives): keep the even mix
        candidates = grid @ probs[:, :, genre]  # (G, M) @ (M, N) -> (G, N) combined probabilities
        scores = [average_precision_score(truth, combined) for combined in candidates]
        weights[:, genre] = grid[int(np.argmax(scores))]  # argmax keeps the first (most even) of equals
    return {m: weights[i] for i, m in enumerate(modalities)}


def combine_late(probs_by_modality: Mapping[str, ArrayLike], weights: Mapping[str, ArrayLike]) -> np.ndarray:
    """Weighted sum of the modalities' (N, 23) probabilities with per-genre weights -> (N, 23)."""
    if set(probs_by_modality) != set(weights):
        raise ValueError(
            f"late-fusion weights are for {sorted(weights)} but probabilities are for {sorted(probs_by_modality)}"
        )
    modalities, probs = _stack_probs(probs_by_modality)  # (M, N, 23)
    stacked_weights = np.stack([np.asarray(weights[m], dtype=float) for m in modalities])  # (M, 23)
    if stacked_weights.shape != (len(modalities), probs.shape[2]):
        raise ValueError(f"late-fusion weights must be one per genre ({probs.shape[2]}) for each modality")
    return (stacked_weights[:, None, :] * probs).sum(axis=0)  # (N, 23)


def _stack_probs(probs_by_modality: Mapping[str, ArrayLike]) -> tuple[list[str], np.ndarray]:
    if not probs_by_modality:
        raise ValueError("late fusion needs the probabilities of at least one modality")
    modalities = list(probs_by_modality)
    arrays = [np.asarray(probs_by_modality[m], dtype=float) for m in modalities]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 2:
        raise ValueError(f"each modality needs (N, 23) probabilities; got shapes {[a.shape for a in arrays]}")
    for m, a in zip(modalities, arrays, strict=True):
        if a.min() < 0 or a.max() > 1:
            raise ValueError(f"late fusion of {m!r}: values outside [0, 1] (logits? apply a sigmoid first)")
    return modalities, np.stack(arrays)  # (M, N, 23)


def _simplex_grid(num_modalities: int, step: float) -> np.ndarray:
    """All weight vectors with entries in multiples of `step` summing to 1, the most even first: (G, M)."""
    parts = round(1 / step)
    if not 0 < step <= 1 or abs(parts * step - 1) > 1e-9:
        raise ValueError(f"late-fusion grid step {step} must divide 1 (e.g. 0.1, 0.05, 0.25)")
    grid = np.array(
        [c for c in itertools.product(range(parts + 1), repeat=num_modalities) if sum(c) == parts], dtype=float
    ) / parts  # (G, M)
    spread = np.abs(grid - 1 / num_modalities).sum(axis=1)  # distance from the even mix
    return grid[np.argsort(spread, kind="stable")]
