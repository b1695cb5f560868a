"""The training objective: binary cross-entropy on logits, optionally weighted towards rare genres.

MM-IMDb is very unbalanced (Drama in ~54% of movies, Film-Noir in ~1%). MMBT weights the positive term of
each genre by its inverse frequency in the training split, `pos_weight = n_train / n_positive`, which
raises recall on rare genres (and with it macro-F1). The weights come from the training labels only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from thesis_lib.train.config import TrainConfig


def training_label_matrix(dataset: Dataset) -> torch.Tensor:
    """The (N, C) multi-hot label matrix of a dataset.

    Uses `dataset.labels` when the dataset exposes it (fast: no image or text is loaded); otherwise reads
    `dataset[i]["labels"]` for every item.
    """
    labels = getattr(dataset, "labels", None)
    if labels is None:
        rows = []
        for index in range(len(dataset)):
            item = dataset[index]
            if not isinstance(item, dict) or "labels" not in item:
                raise TypeError(
                    f"{type(dataset).__name__}[{index}] has no 'labels' entry: expose a `labels` (N, C) "
                    "attribute or return dict items with 'labels' to compute pos_weight"
                )
            rows.append(torch.as_tensor(item["labels"], dtype=torch.float32))
        return torch.stack(rows)  # (N, C)
    return torch.as_tensor(labels, dtype=torch.float32)  # (N, C)


def inverse_frequency_pos_weight(labels: torch.Tensor) -> torch.Tensor:
    """MMBT's BCE pos_weight `n / n_positive` per class from an (N, C) label matrix -> (C,)."""
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C) label matrix, got shape {tuple(labels.shape)}")
    positives = labels.sum(dim=0)  # (C,)
    # A class with no positive in training has no positive term to weight: any finite weight is harmless,
    # and clamping keeps it finite instead of inf (which would turn a later positive into an inf loss).
    return labels.shape[0] / positives.clamp(min=1.0)  # (C,)


def make_loss(config: TrainConfig, train_labels: torch.Tensor | None = None) -> nn.BCEWithLogitsLoss:
    """BCE-with-logits, mean over movies and genres. `pos_weight` "inverse_frequency" weights each genre's
    positive term by n / n_positive (MMBT's), "sqrt_inverse_frequency" by its square root: genres are learned
    in the order of these weights, and with the full ratio the most frequent genre (Drama on the twin, 54% of
    the movies, weight 1.8 against up to 26 for the rarest) is learned last, or not at all in a short budget
    (notebooks/params/smoke.yaml). Both need the training label matrix `train_labels` (N, C)."""
    if config.pos_weight == "none":
        return nn.BCEWithLogitsLoss()
    if train_labels is None:
        raise ValueError(f"pos_weight={config.pos_weight!r} needs the training label matrix")
    weight = inverse_frequency_pos_weight(train_labels)  # (C,)
    return nn.BCEWithLogitsLoss(pos_weight=weight.sqrt() if config.pos_weight == "sqrt_inverse_frequency" else weight)
