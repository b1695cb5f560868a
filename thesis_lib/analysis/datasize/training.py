"""Training one fusion on one training size: AdamW, BCE-with-logits over 23 genres, the best dev epoch kept.

The same recipe at every size and for every fusion: a size gets
`epochs_for(size)` epochs, at least `min_epochs` and enough for `min_sample_visits` training samples, so
the smallest sets are not cut short in optimiser steps. Dev loss is measured at `dev_checks` evenly spaced
epochs (and the last); the state with the lowest dev loss gives the dev and test probabilities, and the
decision thresholds are tuned per genre on dev (`metrics.tune_thresholds`). Every fusion gets the same
tuning budget (`TrainConfig.learning_rates`, dev loss picks one): one learning rate, 1e-3, since a
cross-attention run costs ~20 times a pooled one on one core and a grid of three for every fusion would
triple the experiment's time. (A first run gave the pooled fusions {1e-3, 3e-3, 1e-2} against 1e-3 for
cross-attention; an unequal budget is not a fair comparison, whichever way it leans.)
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from thesis_lib.analysis.datasize.features import MovieFeatures
from thesis_lib.analysis.datasize.models import DataSizeModel
from thesis_lib.metrics.thresholds import tune_thresholds

LEARNING_RATES = (1e-3,)


@dataclass(frozen=True)
class TrainConfig:
    learning_rates: tuple[float, ...] = LEARNING_RATES  # the tuning grid, the same for every fusion
    batch_size: int = 64
    weight_decay: float = 0.01
    min_epochs: int = 8
    min_sample_visits: int = 32_000  # small sets train longer: at least this many samples seen
    dev_checks: int = 8  # dev loss measured this many times per run (evenly spaced epochs)

    def epochs_for(self, size: int) -> int:
        return max(self.min_epochs, math.ceil(self.min_sample_visits / size))


@dataclass(frozen=True)
class Trained:
    learning_rate: float
    epochs: int
    best_epoch: int  # 1-based
    dev_loss: float
    test_probs: np.ndarray  # (N_test, 23) of the best dev state
    thresholds: np.ndarray  # (23,) tuned per genre on dev
    wall_s: float


def train_model(model: DataSizeModel, train: MovieFeatures, dev: MovieFeatures, test: MovieFeatures,
                learning_rate: float, config: TrainConfig, seed: int) -> Trained:
    """Train `model` (already initialised from `seed`) and score its best dev state on `test`."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    epochs = config.epochs_for(len(train))
    checks = set(np.linspace(1, epochs, min(config.dev_checks, epochs)).round().astype(int).tolist())
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(config.batch_size):
            logits = model(train.text[batch].float(), train.text_mask[batch], train.image[batch],
                           train.image_mask[batch])  # (B, 23)
            loss = loss_fn(logits, train.labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if epoch in checks:
            dev_loss = float(loss_fn(torch.logit(torch.from_numpy(probabilities(model, dev)).clamp(1e-6, 1 - 1e-6)),
                                     dev.labels))
            if dev_loss < best_loss:
                best_loss, best_epoch, best_state = dev_loss, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    thresholds = tune_thresholds(dev.labels.numpy(), probabilities(model, dev), mode="per_genre")
    return Trained(learning_rate, epochs, best_epoch, best_loss, probabilities(model, test), thresholds,
                   time.perf_counter() - started)


@torch.no_grad()
def probabilities(model: DataSizeModel, data: MovieFeatures, batch_size: int = 250) -> np.ndarray:
    """(N, 23) sigmoid probabilities of `model` on `data`."""
    model.eval()
    logits = torch.cat([model(data.text[i:i + batch_size].float(), data.text_mask[i:i + batch_size],
                              data.image[i:i + batch_size], data.image_mask[i:i + batch_size])
                        for i in range(0, len(data), batch_size)])  # (N, 23)
    return torch.sigmoid(logits).numpy()
