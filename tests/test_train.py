"""The training loop on a tiny two-modality model and synthetic data with a planted, learnable signal.

The toy model follows the model zoo's protocol (`encoders.*` backbones, `encode` -> EncoderOutput per
modality, `classify` -> logits) and has dropout and BatchNorm, so RNG restoration and eval-mode handling
are exercised. Runs are a few dozen optimizer steps on CPU.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset, Subset

from thesis_lib.data.batch import CachedFeaturesCollator
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput, masked_mean
from thesis_lib.train import (
    StepEvent,
    TrainConfig,
    checkpoint,
    evaluate,
    fit,
    make_accelerator,
    predict,
    train_one_epoch,
)
from thesis_lib.train.checkpoint import BEST, MANIFEST_FILE, MODEL_FILE, STATE_FILE, RunProgress, last_checkpoint
from thesis_lib.train.features import (
    CachedFeatureDataset,
    FeatureCacheConfig,
    FrozenEncodersClassifier,
    MappedRows,
    cache_encoder_features,
)
from thesis_lib.train.loaders import SeededLoader
from thesis_lib.train.loss import inverse_frequency_pos_weight, make_loss
from thesis_lib.train.optim import build_optimizer, build_scheduler, parameter_groups, reduce_on_plateau
from thesis_lib.train.validation import validation_metrics

NUM_CLASSES, VOCAB, IMAGE_SIZE = 23, 40, 8


# ------------------------------------------------------------------------------------------ toy data


class ToyMovies(Dataset):
    """Plots as token ids and 8x8 'posters' with genres planted in them: genre k < 15 when the plot has cue
    token k + 1, genres 15-20 from the sign of a poster colour channel, 21-22 from combinations."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(4, 13, (n,), generator=g)
        self.plots = [torch.randint(1, VOCAB, (int(length),), generator=g) for length in lengths]
        colour = torch.randint(0, 2, (n, 3), generator=g).float() * 2 - 1  # (n, 3) one sign per channel
        noise = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)  # (n, 3, 8, 8)
        self.images = colour[:, :, None, None] + 0.5 * noise  # (n, 3, 8, 8)
        has_cue = torch.stack([torch.isin(torch.arange(1, 16), p) for p in self.plots]).float()  # (n, 15)
        positive = (colour > 0).float()  # (n, 3)
        both_colours = positive[:, :1] * positive[:, 1:2]  # (n, 1)
        cue_and_colour = has_cue[:, :1] * positive[:, 2:3]  # (n, 1)
        self.labels = torch.cat([has_cue, positive, 1 - positive, both_colours, cue_and_colour], dim=1)  # (n, 23)
        self.ids = [f"{1000000 + seed * 1000 + i:07d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"id": self.ids[i], "plot": self.plots[i], "image": self.images[i], "labels": self.labels[i]}


def collate_movies(items: list[dict]) -> dict:
    """The batch contract: ids, image, input_ids/attention_mask padded to the batch's longest plot, labels."""
    longest = max(len(item["plot"]) for item in items)
    input_ids = torch.zeros(len(items), longest, dtype=torch.int64)  # (B, L)
    attention_mask = torch.zeros(len(items), longest, dtype=torch.int64)  # (B, L)
    for row, item in enumerate(items):
        input_ids[row, : len(item["plot"])] = item["plot"]
        attention_mask[row, : len(item["plot"])] = 1
    return {
        "ids": [item["id"] for item in items],
        "image": torch.stack([item["image"] for item in items]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.stack([item["labels"] for item in items]),
    }


@dataclass
class ToyOutput:
    logits: torch.Tensor  # (B, C)


class ToyTextEncoder(Encoder):
    def __init__(self, dim: int):
        super().__init__(token_dim=dim, pooled_dim=dim)
        self.embed = nn.Embedding(VOCAB, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: dict) -> EncoderOutput:
        tokens = self.norm(self.embed(batch["input_ids"]))  # (B, L, D)
        mask = batch["attention_mask"].bool()  # (B, L)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))


class ToyImageEncoder(Encoder):
    def __init__(self, dim: int):
        super().__init__(token_dim=dim, pooled_dim=dim)
        self.conv = nn.Sequential(
            nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), nn.ReLU(), nn.Dropout(0.1)
        )

    def forward(self, batch: dict) -> EncoderOutput:
        grid = self.conv(batch["image"])  # (B, D, 4, 4)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, 16, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)  # (B, 16)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=tokens.mean(dim=1))


class ToyClassifier(nn.Module):
    """encoders -> fusion over token means -> head, with the GenreClassifier protocol."""

    def __init__(self, dim: int = 16, dropout: float = 0.1):
        super().__init__()
        self.encoders = nn.ModuleDict({"text": ToyTextEncoder(dim), "image": ToyImageEncoder(dim)})
        self.fusion = nn.Sequential(nn.Linear(3 * dim, 32), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(32, NUM_CLASSES)
        self.encode_calls = 0

    def encode(self, batch: dict) -> dict[str, EncoderOutput]:
        self.encode_calls += 1
        return {name: encoder(batch) for name, encoder in self.encoders.items()}

    def classify(self, encoded: dict[str, EncoderOutput]) -> ToyOutput:
        text, image = encoded["text"], encoded["image"]
        # Uses the text tokens through their mask, so cached (padded) tokens must give the same answer.
        fused = torch.cat([masked_mean(text.tokens, text.mask), text.pooled, image.pooled], dim=-1)  # (B, 3D)
        return ToyOutput(self.head(self.fusion(fused)))  # (B, C)

    def forward(self, batch: dict) -> ToyOutput:
        return self.classify(self.encode(batch))


def toy_model(seed: int = 0) -> ToyClassifier:
    torch.manual_seed(seed)
    return ToyClassifier()


def frozen_encoders(model: nn.Module) -> nn.Module:
    """`model` with every encoder frozen (`Encoder.set_frozen`), as the grid builds frozen-encoder runs."""
    for encoder in model.encoders.values():
        encoder.set_frozen(True)
    return model


def on_cached_features(model: nn.Module) -> FrozenEncodersClassifier:
    """The module the grid trains on cached features of every (frozen) encoder of `model`."""
    return FrozenEncodersClassifier(frozen_encoders(model), tuple(model.encoders))


TRAIN, VAL = ToyMovies(64, seed=1), ToyMovies(24, seed=2)
BASE = TrainConfig(
    epochs=4, batch_size=8, lr_head=3e-2, lr_backbone=1e-2, warmup_ratio=0.1, weight_decay=0.01,
    log_every=4, checkpoint_every_steps=3, patience=None, seed=7,
)  # fmt: skip


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


def fit_toy(model: nn.Module, config: TrainConfig, directory, **options):
    """fit on the toy movies."""
    return fit(model, TRAIN, VAL, config, checkpoint_dir=directory, collate_fn=collate_movies, **options)


def val_logits(model: nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(collate_movies([VAL[i] for i in range(len(VAL))])).logits


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted 4-epoch run: (model, initial state, FitResult, checkpoint dir)."""
    model = toy_model()
    initial = state_tensors(model)
    directory = tmp_path_factory.mktemp("reference")
    result = fit_toy(model, replace(BASE, restore_best=False), directory)
    return model, initial, result, directory


# ------------------------------------------------------------------------------------------ the tests


def test_fit_learns_fine_tunes_backbones_and_records_history(reference_run):
    model, initial, result, directory = reference_run
    losses = [record.train_loss for record in result.history]
    assert result.epochs_run == 4 and len(losses) == 4 and not result.stopped_early
    assert losses[-1] < 0.75 * losses[0], f"training loss did not fall: {losses}"
    assert result.history[-1].val_loss < result.history[0].val_loss
    # Fine-tune mode: the backbones are trained too, not only the head.
    assert not torch.equal(model.encoders["text"].embed.weight, initial["encoders.text.embed.weight"])
    assert not torch.equal(model.head.weight, initial["head.weight"])
    assert result.budget.optimizer_steps == 4 * 8 and result.budget.samples_seen == 4 * 64
    assert result.budget.global_batch_size == 8 and result.budget.max_epochs == 4 and result.budget.tuning_trials == 1
    assert result.best_metric == max(r.val_metrics["macro_f1"] for r in result.history)
    assert result.history[result.best_epoch].val_metrics["macro_f1"] == result.best_metric
    assert (directory / BEST / MODEL_FILE).is_file() and last_checkpoint(directory).weights.is_file()
    assert torch.load(last_checkpoint(directory).state, weights_only=True)["progress"]["finished"] is True
    assert set(result.to_dict()) >= {"best_epoch", "history", "budget", "wall_time_s", "train_samples_per_s", "config"}


def test_two_runs_with_the_same_seed_give_identical_weights_and_logits(reference_run, tmp_path):
    model, _, _, _ = reference_run
    again = toy_model()
    fit_toy(again, replace(BASE, restore_best=False), tmp_path)
    assert_same_state(state_tensors(model), state_tensors(again))
    assert torch.equal(val_logits(model), val_logits(again))


class SimulatedCrash(RuntimeError):
    pass


def crash_then_resume(config: TrainConfig, crash_at_step: int, directory) -> tuple[ToyClassifier, object, dict]:
    """Run until `crash_at_step` raises, then resume with a differently initialised model (so everything
    must come from the checkpoint); returns (model, FitResult, the progress saved at the crash)."""

    def crash(event):
        if event.global_step == crash_at_step:
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        fit_toy(toy_model(), config, directory, on_step_end=crash)
    saved = torch.load(last_checkpoint(directory).state, weights_only=True)["progress"]
    model = toy_model(seed=123)
    result = fit_toy(model, config, directory, resume=True)
    return model, result, saved


def test_a_run_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_run(reference_run, tmp_path):
    model, _, result, _ = reference_run
    # Step 13 is in epoch 2 (8 steps per epoch), one step after the checkpoint of step 12: step 13 is redone.
    resumed_model, resumed, saved = crash_then_resume(replace(BASE, restore_best=False), 13, tmp_path)
    assert (saved["epoch"], saved["batches_done"], saved["global_step"]) == (1, 4, 12)
    assert_same_state(state_tensors(model), state_tensors(resumed_model))
    assert torch.equal(val_logits(model), val_logits(resumed_model))
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in result.history]
    assert [r.val_metrics for r in resumed.history] == [r.val_metrics for r in result.history]
    assert resumed.budget == result.budget and resumed.best_epoch == result.best_epoch

    # Resuming a finished run trains nothing and reports the same result.
    again = fit_toy(toy_model(seed=5), replace(BASE, restore_best=False), tmp_path, resume=True)
    assert again.history == resumed.history


def test_resume_inside_an_epoch_with_gradient_accumulation(tmp_path):
    config = replace(BASE, epochs=2, grad_accum_steps=2, checkpoint_every_steps=3, restore_best=False)
    model = toy_model()
    result = fit_toy(model, config, tmp_path / "reference")
    assert result.budget.optimizer_steps == 2 * 4 and result.budget.global_batch_size == 16
    resumed_model, resumed, saved = crash_then_resume(config, 7, tmp_path / "resumed")
    assert (saved["epoch"], saved["batches_done"], saved["global_step"]) == (1, 4, 6)  # 4 batches = 2 steps
    assert_same_state(state_tensors(model), state_tensors(resumed_model))
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in result.history]
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_an_existing_run_is_never_overwritten_and_a_changed_config_is_not_resumed(reference_run):
    _, _, _, directory = reference_run
    with pytest.raises(FileExistsError, match="resume=True"):
        fit_toy(toy_model(), BASE, directory)
    with pytest.raises(ValueError, match="lr_head"):
        fit_toy(toy_model(), replace(BASE, lr_head=0.5), directory, resume=True)


def test_predict_returns_every_movie_once_in_dataset_order(reference_run):
    model, _, _, _ = reference_run
    accelerator = make_accelerator(BASE)
    source = SeededLoader(VAL, batch_size=5, shuffle=False, seed=0, num_workers=0, collate_fn=collate_movies)
    loader = accelerator.prepare(source.loader)
    ids, probs, labels = predict(model, loader, accelerator)
    assert ids.tolist() == VAL.ids
    assert probs.shape == (len(VAL), NUM_CLASSES) and ((probs >= 0) & (probs <= 1)).all()
    assert (labels == VAL.labels.numpy()).all()
    torch.testing.assert_close(torch.from_numpy(probs), torch.sigmoid(val_logits(model)))


# ------------------------------------------------------------------ train_one_epoch and evaluate alone


def prepared_by_hand(model: nn.Module, config: TrainConfig) -> dict:
    """What `fit` sets up before its first epoch, built from the public pieces as a notebook would."""
    accelerator = make_accelerator(config)
    set_seed(config.seed)  # fit seeds here too: the dropout stream starts from the config's seed
    loss_fn = make_loss(config)
    optimizer = build_optimizer(model, config)
    loaders = {"seed": config.seed, "num_workers": 0, "collate_fn": collate_movies, "batch_size": config.batch_size}
    train_source = SeededLoader(TRAIN, shuffle=True, **loaders)
    val_source = SeededLoader(VAL, shuffle=False, **loaders)
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_source.loader, val_source.loader
    )
    scheduler = build_scheduler(optimizer, config, total_steps=len(train_loader) * config.epochs)
    train_source.set_epoch(0)
    train_loader.set_epoch(0)
    return {"model": model, "loss_fn": loss_fn, "optimizer": optimizer, "scheduler": scheduler,
            "loader": train_loader, "accelerator": accelerator, "val_loader": val_loader}


def test_train_one_epoch_alone_is_fits_first_epoch_and_evaluate_its_validation(tmp_path, caplog):
    config = replace(BASE, epochs=2, restore_best=False)  # checkpoints every 3 steps: the loss is banked in pieces
    fitted = toy_model()
    after_first_epoch = {}

    def keep_first_epoch(event):
        if event.global_step == 8:  # the last optimizer step of epoch 0 (8 batches of 8)
            after_first_epoch.update(state_tensors(fitted))

    result = fit_toy(fitted, config, tmp_path, on_step_end=keep_first_epoch)

    parts = prepared_by_hand(toy_model(), config)
    val_loader = parts.pop("val_loader")
    caplog.clear()  # fit's own lines above reach caplog too when an earlier test configured the loggers
    with caplog.at_level(logging.INFO, logger="thesis_lib.train"):
        trained = train_one_epoch(**parts, epoch=0, config=config)
    model, accelerator = parts["model"], parts["accelerator"]
    assert_same_state(state_tensors(model), after_first_epoch)  # bit for bit, dropout included
    assert trained.loss == result.history[0].train_loss and trained.samples == len(TRAIN)
    step_lines = [r.getMessage() for r in caplog.records if " step " in r.getMessage()]
    assert [line.split(" loss ")[0] for line in step_lines] == ["epoch 1/2 step 4/8", "epoch 1/2 step 8/8"]

    evaluated = evaluate(model, val_loader, accelerator, parts["loss_fn"], config.threshold)
    assert evaluated.loss == result.history[0].val_loss
    assert evaluated.metrics == result.history[0].val_metrics
    assert evaluated.predictions.ids.tolist() == VAL.ids


def test_train_one_epoch_refuses_the_progress_of_another_epoch():
    parts = prepared_by_hand(toy_model(), BASE)
    del parts["val_loader"]
    with pytest.raises(ValueError, match="epoch 2"):
        train_one_epoch(**parts, epoch=1, config=BASE, progress=RunProgress(epoch=2))


def test_evaluate_alone_scores_predict_s_outputs_with_the_training_objective(reference_run):
    model, _, _, _ = reference_run
    accelerator = make_accelerator(BASE)
    source = SeededLoader(VAL, batch_size=5, shuffle=False, seed=0, num_workers=0, collate_fn=collate_movies)
    loader = accelerator.prepare(source.loader)
    plain = evaluate(model, loader, accelerator)  # no loss_fn: unweighted BCE, threshold 0.5
    predicted = predict(model, loader, accelerator)
    assert plain.predictions.ids.tolist() == predicted.ids.tolist() == VAL.ids
    assert np.array_equal(plain.predictions.probs, predicted.probs)
    assert plain.metrics == validation_metrics(VAL.labels.numpy(), predicted.probs, 0.5)
    logits = val_logits(model)  # (24, C) one batch; evaluate ran batches of 5: equal up to float rounding
    assert plain.loss == pytest.approx(F.binary_cross_entropy_with_logits(logits, VAL.labels).item(), rel=1e-6)
    weighting = make_loss(replace(BASE, pos_weight="inverse_frequency"), TRAIN.labels)
    weighted = evaluate(model, loader, accelerator, weighting)
    expected = F.binary_cross_entropy_with_logits(logits, VAL.labels, pos_weight=weighting.pos_weight).item()
    assert weighted.loss == pytest.approx(expected, rel=1e-6) and weighted.loss != pytest.approx(plain.loss)
    assert weighted.metrics == plain.metrics  # the weighting changes the loss, not the scores


def test_a_step_cap_ends_every_epoch_after_that_many_optimizer_steps(tmp_path):
    # 64 training movies in batches of 8 are 8 steps an epoch; the cap (a rehearsal's) takes 3 of them, and the
    # schedule is as long as the steps taken: it has decayed to 0 when the last capped step is done.
    config = replace(BASE, epochs=2, max_steps_per_epoch=3, checkpoint_every_steps=0)
    result = fit_toy(toy_model(), config, tmp_path)
    assert result.budget.optimizer_steps == 2 * 3 and result.budget.samples_seen == 2 * 3 * 8
    assert [record.optimizer_steps for record in result.history] == [3, 6]
    assert set(result.history[-1].learning_rates.values()) == {0.0}
    assert result.config["max_steps_per_epoch"] == 3
    with pytest.raises(ValueError, match="max_steps_per_epoch"):
        replace(BASE, max_steps_per_epoch=0)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    # lr 0 and frozen backbones (BatchNorm statistics fixed): the model never changes, so no epoch improves
    # on the first and patience 2 ends the run after epoch 3.
    config = replace(BASE, epochs=10, lr_head=0.0, patience=2, checkpoint_every_steps=0)
    result = fit_toy(frozen_encoders(toy_model()), config, tmp_path)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 0
    assert result.budget.max_epochs == 10 and result.budget.epochs_run == 3


def test_restore_best_loads_the_best_epochs_weights(tmp_path):
    # min_delta 10: only the first epoch can count as an improvement, so `best` is epoch 0 and `last` is not.
    model = toy_model()
    result = fit_toy(model, replace(BASE, epochs=2, monitor="loss", min_delta=10.0), tmp_path)
    assert result.best_epoch == 0 and result.best_metric == result.history[0].val_loss
    assert_same_state(load_file(str(tmp_path / BEST / MODEL_FILE)), state_tensors(model))
    assert not torch.equal(load_file(str(last_checkpoint(tmp_path).weights))["head.weight"], model.head.weight)
    # The best epoch's validation predictions come back with it (the grid does not predict dev again): they
    # are the restored weights' predictions, not the last epoch's.
    kept = result.best_val_predictions
    assert kept is not None and kept.ids.tolist() == VAL.ids and "best_val_predictions" not in result.to_dict()
    torch.testing.assert_close(torch.from_numpy(kept.probs), torch.sigmoid(val_logits(model)))
    # A finished run resumed in a new session made them in the old one: none, so the caller predicts.
    assert fit_toy(toy_model(seed=5), replace(BASE, epochs=2, monitor="loss", min_delta=10.0), tmp_path,
                   resume=True).best_val_predictions is None


def test_frozen_backbones_keep_weights_and_batchnorm_statistics(tmp_path):
    model = toy_model()
    initial = state_tensors(model)
    fit_toy(frozen_encoders(model), replace(BASE, epochs=1), tmp_path)
    after = state_tensors(model)
    backbone = [name for name in initial if name.startswith("encoders.")]  # incl. BatchNorm running statistics
    assert_same_state({k: initial[k] for k in backbone}, {k: after[k] for k in backbone})
    assert not torch.equal(initial["head.weight"], after["head.weight"])


def test_parameter_groups_split_backbone_from_head_and_spare_biases_and_norms():
    model = toy_model()
    groups = {g["name"]: g for g in parameter_groups(model, BASE)}
    assert set(groups) == {"backbone/decay", "backbone/no_decay", "head/decay", "head/no_decay"}
    names = {id(p): n for n, p in model.named_parameters()}
    group_of = {names[id(p)]: name for name, g in groups.items() for p in g["params"]}
    assert group_of["encoders.text.embed.weight"] == "backbone/decay"
    assert group_of["encoders.text.norm.weight"] == "backbone/no_decay"
    assert group_of["encoders.image.conv.1.weight"] == "backbone/no_decay"  # BatchNorm scale
    assert group_of["head.weight"] == "head/decay" and group_of["head.bias"] == "head/no_decay"
    assert len(group_of) == len(names)  # every parameter in exactly one group
    assert groups["backbone/decay"]["lr"] == BASE.lr_backbone and groups["head/decay"]["lr"] == BASE.lr_head
    assert groups["head/no_decay"]["weight_decay"] == 0.0 and groups["head/decay"]["weight_decay"] == BASE.weight_decay
    model.encoders.requires_grad_(False)
    assert {g["name"] for g in parameter_groups(model, BASE)} == {"head/decay", "head/no_decay"}


def test_schedule_warms_up_linearly_then_decays_to_zero():
    optimizer = build_optimizer(toy_model(), BASE)
    scheduler = build_scheduler(optimizer, replace(BASE, warmup_ratio=0.25), total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[-1]["lr"])
        optimizer.step()
        scheduler.step()
    rates.append(optimizer.param_groups[-1]["lr"])
    peak = BASE.lr_head
    assert rates[0] == 0.0 and rates[5] == pytest.approx(peak) and rates[20] == 0.0
    assert rates[1:6] == pytest.approx([peak * s / 5 for s in range(1, 6)])
    assert rates[5:] == pytest.approx([peak * (20 - s) / 15 for s in range(5, 21)])


def test_plateau_schedule_warms_up_then_holds_and_halves_after_an_epoch_without_improvement():
    optimizer = build_optimizer(toy_model(), BASE)
    config = replace(BASE, warmup_ratio=0.25, lr_schedule="plateau", plateau_factor=0.5)
    scheduler = build_scheduler(optimizer, config, total_steps=20)
    rates = []
    for _ in range(10):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    bases = [BASE.lr_backbone if g["name"].startswith("backbone") else BASE.lr_head for g in optimizer.param_groups]
    assert rates[0] == [0.0] * len(bases) and rates[1] == pytest.approx([b / 5 for b in bases])
    assert rates[5] == rates[9] == pytest.approx(bases)  # no decay with the steps: held after the warm-up
    reduce_on_plateau(scheduler, 0.5)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([b / 2 for b in bases])
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == pytest.approx([b / 2 for b in bases])  # every group cut once, not per group
    with pytest.raises(TypeError, match="plateau schedule"):
        reduce_on_plateau(build_scheduler(optimizer, BASE, total_steps=20), 0.5)


def test_a_plateau_run_cuts_its_rate_after_each_epoch_without_improvement_and_resumes_at_the_cut(tmp_path):
    # A head rate far too high for the toy task: dev F1 stalls, so some epochs do not improve.
    config = replace(BASE, epochs=6, lr_head=3.0, lr_schedule="plateau", plateau_factor=0.5, restore_best=False)
    model = toy_model()
    result = fit_toy(model, config, tmp_path / "reference")
    history = result.history
    head_rates = [record.learning_rates["head"] for record in history]
    assert history[0].learning_rates["head"] == pytest.approx(3.0)  # warm-up (5 steps) over within epoch 1
    best = -1.0
    for before, after, record in zip(head_rates[:-1], head_rates[1:], history[:-1], strict=True):
        improved = record.val_metrics["macro_f1"] > best
        best = max(best, record.val_metrics["macro_f1"])
        assert after == pytest.approx(before if improved else before / 2), head_rates
    assert min(head_rates) < 3.0, f"no epoch without improvement, nothing tested: {head_rates}"
    # Killed after the first cut and resumed: the same weights as the run that was not interrupted.
    first_cut = next(i for i, rate in enumerate(head_rates) if rate < 3.0)  # the epoch that ran at the cut rate
    crash_step = first_cut * 8 + 2
    resumed_model, resumed, _ = crash_then_resume(config, crash_step, tmp_path / "resumed")
    assert_same_state(state_tensors(model), state_tensors(resumed_model))
    assert [r.learning_rates for r in resumed.history] == [r.learning_rates for r in history]


def test_inverse_frequency_pos_weight_is_n_over_positives():
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    # Three of four movies have class 0, one has class 1, none has class 2 (clamped to 1 positive).
    assert inverse_frequency_pos_weight(labels).tolist() == pytest.approx([4 / 3, 4.0, 4.0])
    loss = make_loss(replace(BASE, pos_weight="inverse_frequency"), TRAIN.labels)
    assert torch.allclose(loss.pos_weight, len(TRAIN) / TRAIN.labels.sum(0).clamp(min=1))
    with pytest.raises(ValueError, match="training label matrix"):
        make_loss(replace(BASE, pos_weight="inverse_frequency"))
    rooted = make_loss(replace(BASE, pos_weight="sqrt_inverse_frequency"), TRAIN.labels)
    assert torch.allclose(rooted.pos_weight, loss.pos_weight.sqrt())  # the frequent genres starved less


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="monitor"):
        TrainConfig(monitor="accuracy")
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="plateau_factor"):
        TrainConfig(plateau_factor=1.0)


def test_log_lines_every_n_steps_are_plain_and_complete(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="thesis_lib.train"):
        fit_toy(toy_model(), replace(BASE, epochs=1, log_every=4, pos_weight="inverse_frequency"), tmp_path)
    step_records = [r for r in caplog.records if " step " in r.getMessage()]
    step_lines = [r.getMessage() for r in step_records]
    assert len(step_lines) == 2  # steps 4 and 8 of 8
    assert {r.name for r in step_records} == {"thesis_lib.train.epoch"}  # the module that runs the steps
    for key in ("epoch 1/1", "loss", "lr_head", "lr_backbone", "samples/s", "eta"):
        assert key in step_lines[0]
    assert step_lines[1].startswith("epoch 1/1 step 8/8")
    assert not any("\r" in r.getMessage() for r in caplog.records)
    assert any("done: train_loss" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------- frozen-backbone mode


def test_feature_cache_is_built_once_and_reproduces_the_frozen_models_logits(tmp_path):
    model = toy_model()
    config = FeatureCacheConfig(tokens_dtype="float32", batch_size=5)
    key = {"backbone_id": "toy", "data_fingerprint": "toy-v1", "collate_fn": collate_movies, "config": config}
    key["cache_root"] = tmp_path
    path = cache_encoder_features(model, VAL, part="val", **key)
    calls = model.encode_calls
    assert calls == 5 and path.is_file()  # 24 movies in batches of 5
    assert cache_encoder_features(model, VAL, part="val", **key) == path and model.encode_calls == calls  # reused
    # Other data or other backbone weights -> another file.
    assert cache_encoder_features(model, VAL, part="val", **{**key, "data_fingerprint": "toy-v2"}) != path
    with torch.no_grad():
        model.encoders["text"].embed.weight.add_(1.0)
    assert cache_encoder_features(model, VAL, part="val", **key) != path
    with torch.no_grad():
        model.encoders["text"].embed.weight.sub_(1.0)

    cached = CachedFeatureDataset(path)
    assert cached.ids == VAL.ids and torch.equal(cached.labels, VAL.labels)
    # Stored ragged: each plot's own tokens, no padding to the split's longest (12).
    assert cached.features["text"]["tokens"].lengths.tolist() == [len(plot) for plot in VAL.plots]
    model.eval()
    wrapper = on_cached_features(model)
    full = val_logits(model)  # (24, C) the full model in eval mode
    for start in (0, 8, 16):
        with torch.no_grad():
            from_cache = wrapper(CachedFeaturesCollator()([cached[i] for i in range(start, start + 8)])).logits
        torch.testing.assert_close(from_cache, full[start : start + 8], rtol=1e-6, atol=1e-6)

    float16_key = {**key, "config": FeatureCacheConfig(batch_size=5)}  # the default: float16 tokens
    half = CachedFeatureDataset(cache_encoder_features(model, VAL, part="val", **float16_key))
    assert half.features["text"]["tokens"].dtype == torch.float16
    with torch.no_grad():
        from_half = wrapper(CachedFeaturesCollator()([half[i] for i in range(len(half))])).logits
    # float16 tokens round each feature by ~5e-4 relative: logits move by about that much, not more.
    assert 0 < (from_half - full).abs().max() < 5e-3


def test_training_on_cached_features_equals_training_the_frozen_full_model(tmp_path):
    config = replace(BASE, epochs=2, checkpoint_every_steps=0)
    frozen_full = toy_model()
    on_cache = toy_model()
    cache = {"backbone_id": "toy", "data_fingerprint": "toy-v1", "collate_fn": collate_movies}
    cache |= {"config": FeatureCacheConfig(tokens_dtype="float32"), "cache_root": tmp_path / "cache"}
    train_features = CachedFeatureDataset(cache_encoder_features(on_cache, TRAIN, part="train", **cache))
    val_features = CachedFeatureDataset(cache_encoder_features(on_cache, VAL, part="val", **cache))

    fit_toy(frozen_encoders(frozen_full), config, tmp_path / "full")
    wrapper = on_cached_features(on_cache)
    options = {"checkpoint_dir": tmp_path / "cached", "collate_fn": CachedFeaturesCollator()}
    result = fit(wrapper, train_features, val_features, config, **options)

    assert result.history[-1].train_loss < result.history[0].train_loss
    torch.testing.assert_close(val_logits(on_cache), val_logits(frozen_full), rtol=1e-5, atol=1e-5)
    # The checkpoint holds the model's own keys without the frozen backbones: it loads into a fresh model
    # once that model holds the backbones it was trained on, and refuses one with other backbones.
    from thesis_lib.train.checkpoint import CheckpointMismatchError, load_model_weights

    fresh = toy_model(seed=3)
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_model_weights(fresh, tmp_path / "cached" / BEST / MODEL_FILE)
    fresh.encoders.load_state_dict(on_cache.encoders.state_dict())
    load_model_weights(fresh, tmp_path / "cached" / BEST / MODEL_FILE)
    assert_same_state(state_tensors(fresh), state_tensors(on_cache))


def toy_cache_options(root, tokens_dtype: str = "float32") -> dict:
    """cache_encoder_features keywords for the toy movies under `root` (batches of 5: other than the tests')."""
    config = FeatureCacheConfig(tokens_dtype=tokens_dtype, batch_size=5)
    return {"backbone_id": "toy", "data_fingerprint": "toy-v1", "collate_fn": collate_movies, "config": config,
            "cache_root": root}


def test_ragged_cache_batches_equal_the_encoders_own_padded_batches(tmp_path):
    model = toy_model().eval()
    cached = CachedFeatureDataset(cache_encoder_features(model, VAL, part="val", **toy_cache_options(tmp_path)))
    # What the padded layout held: each batch as `model.encode` sees it, padded to the batch's longest plot.
    for start, size in ((0, 8), (8, 7), (15, 9)):
        rows = range(start, start + size)
        with torch.no_grad():
            direct = model.encode(collate_movies([VAL[i] for i in rows]))
        batch = CachedFeaturesCollator()([cached[i] for i in rows])
        assert batch["ids"] == VAL.ids[start : start + size]
        assert torch.equal(batch["labels"], VAL.labels[start : start + size])
        for modality, output in direct.items():
            got = batch["features"][modality]
            assert got["tokens"].shape == output.tokens.shape and got["tokens"].dtype == torch.float32
            assert torch.equal(got["mask"], output.mask)
            torch.testing.assert_close(got["tokens"][got["mask"]], output.tokens[output.mask], rtol=1e-6, atol=1e-6)
            assert not got["tokens"][~got["mask"]].any()  # padding is zeros (the padded layout kept whatever)
            torch.testing.assert_close(got["pooled"], output.pooled, rtol=1e-6, atol=1e-6)
    # Only real tokens are stored, and they are read from the file per item, not loaded whole.
    tokens = cached.features["text"]["tokens"]
    assert isinstance(tokens.values, MappedRows) and len(tokens.values) == sum(len(p) for p in VAL.plots)
    assert len(cached.features["image"]["tokens"].values) == len(VAL) * 16  # every patch is real
    copy = pickle.loads(pickle.dumps(cached))  # what a DataLoader worker gets: it opens the file itself
    for index in (0, 23):
        for modality in ("text", "image"):
            for part in ("tokens", "mask", "pooled"):
                assert torch.equal(copy[index]["features"][modality][part], cached[index]["features"][modality][part])


def test_a_feature_cache_of_an_older_format_is_rebuilt_next_to_it_not_read(tmp_path, monkeypatch):
    from thesis_lib.train import features

    model = toy_model()
    options = toy_cache_options(tmp_path)
    key = {name: options[name] for name in ("backbone_id", "data_fingerprint", "config", "cache_root")}
    current = features.feature_cache_path(model, part="val", **key)
    monkeypatch.setattr(features, "FEATURE_CACHE_FORMAT", 1)
    stale = features.feature_cache_path(model, part="val", **key)
    monkeypatch.undo()
    assert stale != current  # the format is part of the key
    # A format-1 file (tokens padded to the split's longest plot), as an older checkout left it.
    stale.parent.mkdir(parents=True)
    padded = {"labels": VAL.labels, "text.tokens": torch.zeros(len(VAL), 12, 16),
              "text.mask": torch.zeros(len(VAL), 12, dtype=torch.bool), "text.pooled": torch.zeros(len(VAL), 16)}
    save_file(padded, str(stale), metadata={"format": "1", "ids": json.dumps(VAL.ids), "modalities": '["text"]'})
    assert cache_encoder_features(model, VAL, part="val", **options) == current
    assert len(CachedFeatureDataset(current)) == len(VAL) and stale.is_file()
    with pytest.raises(ValueError, match=f"{re.escape(str(stale))} is not a format-{features.FEATURE_CACHE_FORMAT} feature cache"):
        CachedFeatureDataset(stale)


def test_a_frozen_backbone_run_saves_slim_checkpoints_and_resumes_like_an_uninterrupted_run(tmp_path):
    from thesis_lib.train.checkpoint import CheckpointMismatchError

    cache = toy_cache_options(tmp_path)
    train = CachedFeatureDataset(cache_encoder_features(toy_model(), TRAIN, part="train", **cache))
    val = CachedFeatureDataset(cache_encoder_features(toy_model(), VAL, part="val", **cache))
    config = replace(BASE, epochs=2, checkpoint_every_steps=3, restore_best=False)
    reference = on_cached_features(toy_model())
    options = {"collate_fn": CachedFeaturesCollator()}
    result = fit(reference, train, val, config, checkpoint_dir=tmp_path / "reference", **options)
    own = {key for key in reference.model.state_dict() if not key.startswith("encoders.")}
    for which, path in (("best", tmp_path / "reference" / BEST / MODEL_FILE),
                        ("last", last_checkpoint(tmp_path / "reference").weights)):
        assert set(load_file(str(path))) == own  # fusion + head only: the frozen encoders are not saved
        print(f"toy {which}: {path.stat().st_size} B slim, encoders left out")

    def crash(event):
        if event.global_step == 7:  # one step after the checkpoint of step 6 (8 steps per epoch)
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        fit(on_cached_features(toy_model()), train, val, config, checkpoint_dir=tmp_path / "resumed",
            on_step_end=crash, **options)
    resume = {**options, "checkpoint_dir": tmp_path / "resumed", "resume": True}
    # Other backbones than the ones it trained on: refused before anything is loaded.
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        fit(on_cached_features(toy_model(seed=123)), train, val, config, **resume)
    # The same backbones, everything else initialised differently: the rest must come from the checkpoint.
    resumed_model = toy_model(seed=123)
    resumed_model.encoders.load_state_dict(toy_model().encoders.state_dict())
    resumed = fit(on_cached_features(resumed_model), train, val, config, **resume)
    assert_same_state(state_tensors(resumed_model), state_tensors(reference.model))
    assert torch.equal(val_logits(resumed_model), val_logits(reference.model))
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in result.history]
    assert result.history[-1].train_loss < result.history[0].train_loss


# ------------------------------------------------------------- checkpoints under a kill or a full disk
# BASE saves every 3 optimizer steps: the second save (step 6) is the one cut off, so the last complete one is
# step 3. A rerun must resume there (resuming correctly from a complete checkpoint is tested above); it is
# stopped after its first step, which is all these tests need to see.

CUT_SAVE = 2
KILLED_CHILD = """
import os, sys
sys.path.insert(0, sys.argv[2])
import test_train
from thesis_lib.train import checkpoint

real, saves = checkpoint.atomic_write, []

def killed_before_the_state(path, write):
    if path.name == checkpoint.STATE_FILE:
        saves.append(path)
        if len(saves) == int(sys.argv[3]):
            os._exit(17)  # this save's weights are written, its state is not
    real(path, write)

checkpoint.atomic_write = killed_before_the_state
test_train.fit_toy(test_train.toy_model(), test_train.BASE, sys.argv[1])
"""


def first_step_of_a_rerun(directory, caplog) -> StepEvent:
    """Rerun a cut-off run and stop it after its first optimizer step; returns that step's event."""
    steps = []

    def stop(event):
        steps.append(event)
        raise SimulatedCrash

    with caplog.at_level(logging.INFO, logger="thesis_lib.train"), pytest.raises(SimulatedCrash):
        fit_toy(toy_model(seed=123), BASE, directory, resume=True, on_step_end=stop)
    return steps[0]


@pytest.mark.slow  # trains in a subprocess
def test_a_run_killed_between_the_two_checkpoint_files_resumes_from_the_last_complete_one(tmp_path, caplog):
    child = [sys.executable, "-c", KILLED_CHILD, str(tmp_path), str(Path(__file__).parent), str(CUT_SAVE)]
    killed = subprocess.run(child, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True,
                            text=True, timeout=180)
    assert killed.returncode == 17, killed.stderr[-3000:]
    assert first_step_of_a_rerun(tmp_path, caplog).global_step == 4
    assert "resuming" in caplog.text and "at epoch 1, step 3 (batch 3 of the epoch)" in caplog.text


@pytest.mark.parametrize("failing", [STATE_FILE, MANIFEST_FILE])
def test_a_full_disk_while_checkpointing_keeps_the_last_complete_checkpoint(tmp_path, monkeypatch, caplog, failing):
    real, writes = checkpoint.atomic_write, []

    def disk_full(path, write):
        if path.name == failing:
            writes.append(path)
            if len(writes) == CUT_SAVE:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        fit_toy(toy_model(), BASE, tmp_path)
    monkeypatch.undo()
    unit = last_checkpoint(tmp_path)
    assert sorted(path.name for path in (tmp_path / "last").iterdir()) == sorted([MANIFEST_FILE, unit.folder.name])
    assert torch.load(unit.state, weights_only=True)["progress"]["global_step"] == 3  # nothing of the cut save left
    assert first_step_of_a_rerun(tmp_path, caplog).global_step == 4
    assert "at epoch 1, step 3 (batch 3 of the epoch)" in caplog.text


def test_a_really_full_disk_keeps_the_last_complete_checkpoint_too(tmp_path, caplog):
    """In addition to the injected ENOSPC, where this machine lets a test mount a tmpfs: 112 KiB hold one
    save (15 KB of weights, 56 KB of state) but not a second one beside it, whose state.pt hits ENOSPC."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=112k", "tmpfs", str(small)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a tmpfs is not allowed here (the injected full disk above still runs)")
    try:
        with pytest.raises(OSError, match=r"\[Errno 28\] No space left on device"):  # not torch's "unexpected pos"
            fit_toy(toy_model(), BASE, small)
        assert torch.load(last_checkpoint(small).state, weights_only=True)["progress"]["global_step"] == 3
        assert first_step_of_a_rerun(small, caplog).global_step == 4
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=True)


def test_a_checkpoint_an_older_version_left_half_written_restarts_the_run_with_a_notice(tmp_path, caplog):
    last = tmp_path / "last"  # versions before the manifest: last/model.safetensors and last/state.pt
    last.mkdir()
    save_file(toy_model(seed=5).state_dict(), str(last / MODEL_FILE), metadata={"global_step": "18"})
    torch.save({"format": 1, "progress": {"global_step": 9}}, last / STATE_FILE)
    assert first_step_of_a_rerun(tmp_path, caplog).global_step == 1  # the run starts again
    (notice,) = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert "weights are from step 18 but state.pt from step 9" in notice and "starting this run again" in notice
    assert "\n" not in notice and not (last / MODEL_FILE).exists()


def test_a_run_killed_before_its_best_weights_were_published_publishes_them_on_resume(tmp_path, monkeypatch):
    config = replace(BASE, epochs=1)  # its only epoch improves: its epoch-end save is the best

    def killed_before_publishing(last, directory):
        raise SimulatedCrash

    monkeypatch.setattr(checkpoint, "_publish_best", killed_before_publishing)
    with pytest.raises(SimulatedCrash):
        fit_toy(toy_model(), config, tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / BEST / MODEL_FILE).exists()
    result = fit_toy(toy_model(seed=123), config, tmp_path, resume=True)  # finished: trains nothing
    assert result.best_epoch == 0
    assert_same_state(load_file(str(tmp_path / BEST / MODEL_FILE)), load_file(str(last_checkpoint(tmp_path).weights)))


# ------------------------------------------------------------------------------ the real model zoo


def collate_for_registry(items: list[dict]) -> dict:
    """The toy movies in the zoo's input format: word-piece ids above BERT's special tokens, 32 px posters."""
    batch = collate_movies(items)
    batch["input_ids"] = torch.where(batch["attention_mask"].bool(), batch["input_ids"] + 1000, 0)  # (B, L), pad id 0
    batch["image"] = torch.nn.functional.interpolate(batch["image"], size=32)  # (B, 3, 32, 32)
    return batch


@pytest.mark.slow
def test_registry_model_fine_tunes_and_trains_on_its_cached_features(tmp_path):
    from thesis_lib.models import build_model

    torch.manual_seed(0)
    model = build_model("fusion_early", modalities="text,image", image_input_size=32)  # MiniLM + ViT-Tiny
    frozen = copy.deepcopy(model)
    config = replace(BASE, epochs=2, lr_head=1e-2, lr_backbone=1e-4, checkpoint_every_steps=0)
    text_weight = model.encoders["text"].backbone.embeddings.word_embeddings.weight.detach().clone()
    first_half = Subset(TRAIN, range(32))  # fine-tuning MiniLM on CPU: keep it to 2 x 4 steps
    result = fit(model, first_half, VAL, config, checkpoint_dir=tmp_path / "fine_tune", collate_fn=collate_for_registry)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert not torch.equal(model.encoders["text"].backbone.embeddings.word_embeddings.weight, text_weight)

    cache = {"backbone_id": "fusion_early-small", "data_fingerprint": "toy-v1", "collate_fn": collate_for_registry}
    cache |= {"config": FeatureCacheConfig(tokens_dtype="float32"), "cache_root": tmp_path / "cache"}
    train_features = CachedFeatureDataset(cache_encoder_features(frozen, TRAIN, part="train", **cache))
    val_features = CachedFeatureDataset(cache_encoder_features(frozen, VAL, part="val", **cache))
    wrapper = on_cached_features(frozen)
    options = {"checkpoint_dir": tmp_path / "cached", "collate_fn": CachedFeaturesCollator()}
    result = fit(wrapper, train_features, val_features, config, **options)
    assert result.history[-1].train_loss < result.history[0].train_loss
    frozen.eval()
    with torch.no_grad():
        from_cache = wrapper(CachedFeaturesCollator()([val_features[i] for i in range(len(VAL))])).logits
        full = frozen(collate_for_registry([VAL[i] for i in range(len(VAL))])).logits
    torch.testing.assert_close(from_cache, full, rtol=1e-5, atol=1e-5)
