"""Checkpoint files: atomic writes, whole and slim safetensors weights, a weights_only state, RNG round trips."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from thesis_lib.storage import atomic_write
from thesis_lib.train import TrainConfig, make_accelerator
from thesis_lib.train.checkpoint import (
    EXCLUDED_PREFIXES,
    LAST,
    MANIFEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    CheckpointMismatchError,
    CheckpointUnusableError,
    ProcessState,
    RunProgress,
    capture_rng_state,
    last_checkpoint,
    load_last,
    load_model_weights,
    restore_rng_state,
    save_last,
    save_model_weights,
)
from thesis_lib.train.optim import build_optimizer, build_scheduler

CONFIG = TrainConfig(lr_head=1e-2)


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3))


def trained_parts(seed: int = 0):
    """A model, optimizer and scheduler after three steps (so AdamW moments and the schedule are non-trivial)."""
    model = tiny_model(seed)
    optimizer = build_optimizer(model, CONFIG)
    scheduler = build_scheduler(optimizer, CONFIG, total_steps=10)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return model, optimizer, scheduler


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_round_trips_python_numpy_and_torch():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randn()  # leave a cached gaussian in numpy's state
    state = capture_rng_state()
    expected = draws()
    restore_rng_state(state)
    assert draws() == expected


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "file.txt"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def failing(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary file left behind


def test_model_weights_round_trip_and_a_wrong_model_is_named(tmp_path):
    model = tiny_model(0)
    save_model_weights(model, tmp_path / MODEL_FILE, {"epoch": "3"})
    other = tiny_model(1)
    assert load_model_weights(other, tmp_path / MODEL_FILE) == {"epoch": "3"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, other.state_dict()[name])
    with pytest.raises(RuntimeError, match=MODEL_FILE):
        load_model_weights(nn.Linear(4, 3), tmp_path / MODEL_FILE)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_model_weights(model, tmp_path / "missing" / MODEL_FILE)


def test_last_checkpoint_loads_with_weights_only_and_restores_everything(tmp_path):
    accelerator = make_accelerator(CONFIG)
    model, optimizer, scheduler = trained_parts()
    history = [{"epoch": 0, "val_metrics": {"macro_f1": 0.4}}]
    progress = RunProgress(epoch=2, batches_done=5, global_step=3, best_metric=0.4, best_epoch=1, history=history)
    process = ProcessState(rng=capture_rng_state(), epoch_loss_sum=1.5, epoch_samples=40)
    save_last(tmp_path, accelerator, model, optimizer, scheduler, progress, process, CONFIG.to_dict())

    state = torch.load(last_checkpoint(tmp_path).state, weights_only=True)  # no pickled code: plain data only
    assert state["progress"]["batches_done"] == 5 and state["world_size"] == 1 and state["config"]["lr_head"] == 1e-2

    fresh_model = tiny_model(7)
    fresh_optimizer = build_optimizer(fresh_model, CONFIG)
    fresh_scheduler = build_scheduler(fresh_optimizer, CONFIG, total_steps=10)
    loaded, restored, config = load_last(tmp_path, accelerator, fresh_model, fresh_optimizer, fresh_scheduler)
    assert loaded == progress and config == CONFIG.to_dict()
    assert (restored.epoch_loss_sum, restored.epoch_samples) == (1.5, 40)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, fresh_model.state_dict()[name])
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert [g["lr"] for g in fresh_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    for before, after in zip(optimizer.state.values(), fresh_optimizer.state.values(), strict=False):
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(before[moment], after[moment])


def test_weights_and_state_of_an_older_version_from_different_steps_are_unusable(tmp_path):
    accelerator = make_accelerator(CONFIG)
    model, optimizer, scheduler = trained_parts()
    process = ProcessState(rng=capture_rng_state())
    save_last(tmp_path, accelerator, model, optimizer, scheduler, RunProgress(global_step=3), process, CONFIG.to_dict())
    # Versions before the manifest kept DIR/last/model.safetensors + state.pt, written one after the other: as if
    # such a run died after writing the weights of step 4 but before their state.
    unit = last_checkpoint(tmp_path)
    (tmp_path / LAST / MANIFEST_FILE).unlink()
    unit.state.rename(tmp_path / LAST / STATE_FILE)
    save_model_weights(model, tmp_path / LAST / MODEL_FILE, {"global_step": "4"})
    with pytest.raises(CheckpointUnusableError, match="weights are from step 4 but state.pt from step 3"):
        last_checkpoint(tmp_path)
    with pytest.raises(CheckpointUnusableError, match="step 4"):
        load_last(tmp_path, accelerator, model, optimizer, scheduler)


class FirstLayerFrozen(nn.Module):
    """A wrapper that trains all but the first layer of `model`, whose weights come from elsewhere."""

    def __init__(self, model: nn.Module, excludes: tuple[str, ...] = ("0.",)):
        super().__init__()
        self.model = model
        self.checkpoint_excludes = excludes

    @property
    def checkpoint_module(self) -> nn.Module:
        return self.model


def test_slim_weights_leave_out_the_excluded_prefixes_and_load_only_onto_the_same_backbone(tmp_path):
    model = tiny_model(0)
    save_model_weights(FirstLayerFrozen(model), tmp_path / MODEL_FILE, {"epoch": "1"})
    assert set(load_file(str(tmp_path / MODEL_FILE))) == {"1.weight", "1.bias", "2.weight", "2.bias"}
    metadata = load_model_weights(model, tmp_path / MODEL_FILE)
    assert metadata["epoch"] == "1" and json.loads(metadata[EXCLUDED_PREFIXES]) == ["0."]

    other = tiny_model(1)  # another first layer: the file's layers 1-2 were trained on top of model's
    before = {name: tensor.clone() for name, tensor in other.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_model_weights(FirstLayerFrozen(other), tmp_path / MODEL_FILE)
    assert all(torch.equal(before[name], tensor) for name, tensor in other.state_dict().items())  # unchanged
    other[0].load_state_dict(model[0].state_dict())  # the caller puts the backbone in place first
    load_model_weights(other, tmp_path / MODEL_FILE)  # into the bare module as well as through the wrapper
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, other.state_dict()[name])
    with pytest.raises(ValueError, match="name nothing"):
        save_model_weights(FirstLayerFrozen(model, ("0.", "encoders.")), tmp_path / "typo" / MODEL_FILE)
    # A whole-module file still loads strictly, and a slim file never loads into a model of other layers.
    with pytest.raises(CheckpointMismatchError, match=MODEL_FILE):
        load_model_weights(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3)), tmp_path / MODEL_FILE)
