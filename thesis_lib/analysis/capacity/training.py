"""Training one capacity model: AdamW, BCE-with-logits, fixed epochs, the best dev epoch kept.

Every model gets the same budget: the same epochs and batch size, and each learning rate of the grid
tried once per seed; the run whose best dev accuracy is highest gives the test accuracy (ties: the first
learning rate). Small enough for one CPU core: seconds per run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from thesis_lib.analysis.capacity.models import CapacityModel
from thesis_lib.analysis.capacity.tasks import TokenData


@dataclass(frozen=True)
class TrainConfig:
    learning_rates: tuple[float, ...] = (2e-3, 5e-3)  # the tuning grid, the same for every model
    epochs: int = 20
    batch_size: int = 64
    weight_decay: float = 0.01


@dataclass(frozen=True)
class Trained:
    """One training run: the dev accuracy of its best epoch and the test predictions of that epoch."""

    learning_rate: float
    best_epoch: int  # 1-based
    dev_accuracy: float
    test_correct: np.ndarray  # (N_test,) bool, the best epoch's prediction was right
    wall_s: float


def train_model(model: CapacityModel, train: TokenData, dev: TokenData, test: TokenData, learning_rate: float,
                config: TrainConfig, seed: int) -> Trained:
    """Train `model` (already initialised from `seed`) and score its best dev epoch on `test`."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best_accuracy, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch in torch.randperm(len(train), generator=generator).split(config.batch_size):
            loss = loss_fn(model(train.text[batch], train.image[batch]), train.labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        accuracy = float(correct(model, dev).mean())
        if accuracy > best_accuracy:
            best_accuracy, best_epoch, best_state = accuracy, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return Trained(learning_rate, best_epoch, best_accuracy, correct(model, test), time.perf_counter() - started)


@torch.no_grad()
def correct(model: CapacityModel, data: TokenData, batch_size: int = 500) -> np.ndarray:
    """(N,) bool: the model's 0.5-threshold prediction (logit > 0) matches the label."""
    model.eval()
    logits = torch.cat([model(data.text[i:i + batch_size], data.image[i:i + batch_size])
                        for i in range(0, len(data), batch_size)])  # (N,)
    return ((logits > 0).float() == data.labels).numpy()
