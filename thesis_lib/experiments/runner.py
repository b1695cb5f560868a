"""One run of the grid, start to finish: train (or combine, or fit a baseline), predict dev and test once,
score both threshold policies, and write the run folder (`records.finish_run`).

The test split is touched once per run, after training, by the chosen checkpoint: training picks its best
epoch on dev, learning-rate trials are compared on dev, and the tuned thresholds come from the dev
predictions only (`metrics.evaluate_threshold_policies` tunes on dev before it sees the test arrays).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.tracking import TensorBoardTracker
from accelerate.utils import is_tensorboard_available

from thesis_lib.errors import ThesisError
from thesis_lib.experiments.baselines import run_baseline
from thesis_lib.experiments.late import run_late_fusion
from thesis_lib.experiments.layout import RunFolder
from thesis_lib.experiments.pipeline import (
    BuiltModel,
    GridContext,
    RunData,
    build_run_data,
    build_run_model,
    evaluation_loader,
    trainable_encoder_prefixes,
)
from thesis_lib.experiments.processes import on_main_process, process_batch_size, process_loader_workers
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.provenance import device_info, git_state, library_versions
from thesis_lib.experiments.records import (
    RECORD_FORMAT,
    finish_run,
    start_run,
)
from thesis_lib.experiments.specs import RunSpec, train_settings
from thesis_lib.machine import effective_precision
from thesis_lib.metrics import evaluate_threshold_policies
from thesis_lib.train import FitResult, TrainConfig, fit, predict
from thesis_lib.train.checkpoint import BEST, LAST, MODEL_FILE, load_model_weights
from thesis_lib.train.results import Predictions

CONFIG_HASH_KEY = "config_hash"  # weights metadata: the config hash of the run that saved them

log = logging.getLogger(__name__)


class RunWeightsError(ThesisError, RuntimeError):
    """A run's best checkpoint is missing or was not written by this run (one line)."""


@dataclass(frozen=True)
class RunOutcome:
    """What the grid reports about a run it executed."""

    spec: RunSpec
    folder: RunFolder
    wall_time_s: float
    cpu_time_s: float
    macro_f1: float | None        # test macro-F1 at 0.5
    macro_f1_tuned: float | None  # test macro-F1, per-genre thresholds tuned on dev


def execute_run(spec: RunSpec, ctx: GridContext) -> RunOutcome:
    """Run `spec` into its folder (see `records`); raises on failure, leaving no record behind.

    Under several processes every process trains a "train" run; the main process alone prepares and
    writes the folder and computes baselines and late fusion, while the others wait (`processes`)."""
    folder = ctx.folder(spec)
    accelerator = ctx.accelerator
    started, cpu_started = time.perf_counter(), time.process_time()
    resumable = on_main_process(accelerator, functools.partial(start_run, folder, ctx.config_hash(spec)))
    if spec.kind != "train" and not accelerator.is_main_process:
        accelerator.wait_for_everyone()  # the main process combines or fits it and writes the folder
        return RunOutcome(spec, folder, time.perf_counter() - started, time.process_time() - cpu_started, None, None)
    if spec.kind == "train":
        dev, test, details = _train(spec, ctx, folder, resumable)
    elif spec.kind == "late":
        dev, test, details = run_late_fusion(spec, ctx)
    else:
        dev, test, details = run_baseline(spec, ctx)
    _check_ids(spec, ctx, dev, "dev")
    _check_ids(spec, ctx, test, "test")
    reports = evaluate_threshold_policies(dev.labels, dev.probs, test.labels, test.probs)
    # CPU seconds of this process and of the trial workers that trained its trials (`trials`)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started + details.pop("trial_workers_cpu_time_s", 0.0)
    record = base_record(spec, ctx) | details | {
        "metrics": {policy: report.to_dict() for policy, report in reports.items()},
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if accelerator.is_main_process:
        finish_run(folder, record, dev, test)
    accelerator.wait_for_everyone()  # no process starts the next run before this one is on disk
    summary = {policy: report.summary()["macro_f1"] for policy, report in reports.items()}
    return RunOutcome(spec, folder, wall, cpu, summary["fixed_0.5"], summary["tuned_per_genre"])


def base_record(spec: RunSpec, ctx: GridContext) -> dict[str, Any]:
    """The record fields every kind of run shares: identity, config, data, split, provenance."""
    config_hash, payload = ctx.hashes[spec.key]
    split = ctx.splits[spec.split]
    return {
        "format": RECORD_FORMAT,
        "name": spec.name,
        "model": spec.model,
        "variant": spec.name.partition("@")[2] or None,
        "kind": spec.kind,
        "stage": spec.stage,
        "seed": spec.seed,
        "profile": ctx.profile.profile,
        "rehearsal": ctx.profile.rehearsal,  # true: random stand-in weights on CPU, numbers that are not results
        "config_hash": config_hash,
        "config": payload,
        "split": {"name": split.name, "hash": split.split_hash(), "sizes": split.sizes, "seed": split.seed},
        "data": {"fingerprint": ctx.release.fingerprint, "root": str(ctx.release.root),
                 "movies": len(ctx.release.movies)},
        "device": device_info(ctx.accelerator.device, processes=ctx.accelerator.num_processes,
                              mixed_precision=ctx.profile.mixed_precision)
        | {"gradient_accumulation": ctx.profile.gradient_accumulation},
        "versions": library_versions(),
        "git": git_state(),
    }


def _check_ids(spec: RunSpec, ctx: GridContext, predictions: Predictions, part: str) -> None:
    expected = list(ctx.splits[spec.split].part(part))
    if list(predictions.ids) != expected:
        raise RuntimeError(f"{spec.label}: {part} predictions are not in the order of the split's {part} ids")


# --------------------------------------------------------------------------------------------- training


def make_train_config(spec: RunSpec, ctx: GridContext, built: BuiltModel, data: RunData, scale: float) -> TrainConfig:
    """The profile's training settings for this run (every model gets the same epochs and trials).

    `group_by_length` applies only where it can help: a model that reads plots from a dataset that knows
    their lengths (not the fixed-width feature caches)."""
    prefixes = trainable_encoder_prefixes(built)
    if data.trainable is not built.model:  # FrozenEncodersClassifier keeps the model under `model.`
        prefixes = tuple(f"model.{prefix}" for prefix in prefixes)
    lengths_known = hasattr(data.train, "item_lengths") and "text" in built.config.modalities
    return profile_train_config(ctx.profile, ctx.accelerator.device, seed=spec.seed,
                                processes=ctx.accelerator.num_processes, scale=scale, prefixes=prefixes,
                                lengths_known=lengths_known)


def profile_train_config(profile: Profile, device: torch.device, *, seed: int, processes: int, scale: float = 1.0,
                         prefixes: tuple[str, ...] = ("encoders.",), lengths_known: bool = False) -> TrainConfig:
    """`profile`'s TrainConfig for one run on `device` (the speed benchmark times training with exactly this).

    `mixed_precision` is what the profile's setting becomes there (`machine.effective_precision`: "no" on the
    CPU, where the grid's Accelerator does not autocast and `fit` would refuse the mismatch).
    `batch_size` is per process: the profile's global batch over processes x `gradient_accumulation`
    (`processes.process_batch_size`), so every launch takes optimizer steps of the same global batch.
    `lengths_known`: the training set knows its plot lengths (`group_by_length` can group them)."""
    return TrainConfig(
        epochs=profile.epochs,
        max_steps_per_epoch=profile.max_steps_per_epoch,
        batch_size=process_batch_size(profile, processes),
        grad_accum_steps=profile.gradient_accumulation,
        lr_head=profile.lr_head * scale,
        lr_backbone=profile.lr_backbone * scale,
        weight_decay=profile.weight_decay,
        warmup_ratio=profile.warmup_ratio,
        lr_schedule=profile.lr_schedule,
        plateau_factor=profile.plateau_factor,
        pos_weight=profile.pos_weight,
        monitor=profile.monitor,
        patience=profile.patience,
        min_delta=profile.min_delta,
        mixed_precision=effective_precision(device, profile.mixed_precision),
        fused_adamw=profile.fused_adamw,
        channels_last=profile.channels_last,
        group_by_length=profile.group_by_length and lengths_known,
        seed=seed,
        num_workers=process_loader_workers(profile, processes),
        backbone_prefixes=prefixes,
        tuning_trials=len(profile.lr_scales),
    )


@functools.cache
def _tensorboard_installed() -> bool:
    """Event files need tensorboardX (the `extras`) or tensorboard; without either, one warning per process."""
    if is_tensorboard_available():
        return True
    log.warning("tensorboard: on in the profile, but neither tensorboardX nor tensorboard is installed: no event "
                "files (pip install tensorboardX)")
    return False


@contextlib.contextmanager
def _tensorboard(ctx: GridContext, folder: RunFolder, trial: int | None,
                 config: TrainConfig) -> Iterator[TensorBoardTracker | None]:
    """With the profile's `tensorboard` on, accelerate's TensorBoard tracker for one training (one trial):
    event files in the run folder's tensorboard/ (trial<k>/ when the run tries several learning rates), the
    train config as hyper-parameters; `fit` logs every epoch to it. None otherwise, and on other processes."""
    if not (ctx.profile.tensorboard and ctx.accelerator.is_main_process and _tensorboard_installed()):
        yield None
        return
    tracker = TensorBoardTracker("" if trial is None else f"trial{trial}", folder.tensorboard)
    tracker.start()
    tracker.store_init_configuration({key: value if isinstance(value, bool | int | float | str) or value is None
                                      else str(value) for key, value in config.to_dict().items()})
    try:
        yield tracker
    finally:
        tracker.finish()


def fit_trial(spec: RunSpec, ctx: GridContext, folder: RunFolder, resume: bool, index: int,
              built: BuiltModel | None = None, data: RunData | None = None) -> tuple[FitResult, TrainConfig]:
    """Train trial `index` of the profile's `lr_scales` (its checkpoints under checkpoints/trial<k> when there
    are several); `built` and `data`: the run's model and data when already built (else built here, from the
    run's seed: every trial starts from the same weights). Also what a trial worker runs (`trials`)."""
    scales = ctx.profile.lr_scales
    if built is None or data is None:
        with ctx.accelerator.main_process_first():  # detections and trained tokenizers: made once, then read
            built = build_run_model(spec, ctx)
        data = build_run_data(spec, ctx, built)
    config = make_train_config(spec, ctx, built, data, scales[index])
    checkpoints = folder.checkpoints if len(scales) == 1 else folder.checkpoints / f"trial{index}"
    with _tensorboard(ctx, folder, trial=index if len(scales) > 1 else None, config=config) as tracker:
        result = fit(data.trainable, data.train, data.dev, config, checkpoint_dir=checkpoints,
                     collate_fn=data.collate, resume=resume, accelerator=ctx.accelerator,
                     checkpoint_metadata={CONFIG_HASH_KEY: ctx.config_hash(spec)}, tracker=tracker)
    return result, config


def _train(spec: RunSpec, ctx: GridContext, folder: RunFolder, resume: bool) -> tuple[Predictions, Predictions, dict]:
    """Train one model per learning-rate trial (at once in the grid's trial workers, if it has them; else in
    turn), keep the best on dev, predict dev and test with it."""
    scales = ctx.profile.lr_scales
    with ctx.accelerator.main_process_first():  # detections and trained tokenizers: made once, then read
        built = build_run_model(spec, ctx)
    data = build_run_data(spec, ctx, built)  # the feature caches exist from here on, for any worker
    if ctx.trial_workers is not None:
        in_workers = ctx.trial_workers.fit(spec.key, spec.label, range(len(scales)), resume)
        fitted = [(result, config) for result, config, _ in in_workers]
        worker_cpu_s = sum(cpu for _, _, cpu in in_workers)
    else:  # the first trial trains the model built above, the others their own
        fitted = [fit_trial(spec, ctx, folder, resume, index, *((built, data) if index == 0 else ()))
                  for index in range(len(scales))]
        worker_cpu_s = 0.0
    trials: list[dict[str, Any]] = []
    best: tuple[float, int, FitResult] | None = None
    for index, (scale, (result, config)) in enumerate(zip(scales, fitted, strict=True)):
        score = _trial_score(result, config)
        trials.append({"lr_scale": scale, "lr_head": config.lr_head, "lr_backbone": config.lr_backbone,
                       "best_epoch": result.best_epoch, "best_metric": result.best_metric,
                       "epochs_run": result.epochs_run})
        if best is None or score > best[0]:  # ties keep the earlier (smaller-scale) trial
            best = (score, index, result)
    _, chosen, result = best
    config = fitted[chosen][1]
    if ctx.accelerator.is_main_process:
        _keep_best_only(folder.checkpoints, Path(result.checkpoint_dir), trials=len(scales))
    ctx.accelerator.wait_for_everyone()
    restore_own_best(data.trainable, folder, ctx.config_hash(spec))
    batch_size = result.config["batch_size"]  # per process, as in training (fits the memory training fitted)
    # The dev predictions of the restored best weights, as fit's evaluation of that epoch made them (the
    # same loader and batch size); predicted again only when an earlier session of a resumed run made them.
    dev = result.best_val_predictions
    if dev is None:
        dev = _predict(data.trainable, data.dev, data.collate, batch_size, ctx)
    test = _predict(data.trainable, data.test, data.collate, batch_size, ctx)  # the one time test is touched
    total, trainable = built.model.parameter_counts()
    details = {
        "model_class": f"{type(built.model).__module__}.{type(built.model).__qualname__}",
        "fusion_class": f"{type(built.model.fusion).__module__}.{type(built.model.fusion).__qualname__}",
        "model_config": _plain(built.config),
        "train_config": result.config,
        "parameters": {"total": total, "trainable": trainable},
        "backbones": built.backbones,
        "text_cleaning": built.text_cleaning if built.config.text is not None else None,
        "cached_features": list(data.cached_modalities),
        "training": {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "best_dev_metric": result.best_metric,
            "monitor": result.monitor,
            "stopped_early": result.stopped_early,
            "history": [epoch.to_dict() for epoch in result.history],
            "trials": trials,
            "chosen_trial": chosen,
            "fit_wall_time_s": result.wall_time_s,
        },
        "budget": {**_plain(result.budget), "lr_scales": list(scales), "settings": train_settings(ctx.profile),
                   "processes": ctx.accelerator.num_processes, "gradient_accumulation": config.grad_accum_steps,
                   "process_batch_size": config.batch_size,
                   "trial_workers": 0 if ctx.trial_workers is None else ctx.trial_workers.workers},
        "trial_workers_cpu_time_s": worker_cpu_s,
        "samples_per_s": result.train_samples_per_s,
    }
    return dev, test, details


def _keep_best_only(checkpoints: Path, chosen: Path, trials: int) -> None:
    """Leave checkpoints/best/model.safetensors (the chosen trial's best weights, where fusions look for
    them) and drop what only an unfinished run needs: `last` (weights + optimizer state) and the other
    trials. A full-profile BERT run would otherwise keep ~1.3 GB of resume state per seed."""
    if trials > 1:
        target = checkpoints / BEST / MODEL_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chosen / BEST / MODEL_FILE, target)
        for index in range(trials):
            shutil.rmtree(checkpoints / f"trial{index}", ignore_errors=True)
    shutil.rmtree(checkpoints / LAST, ignore_errors=True)


def restore_own_best(module: Any, folder: RunFolder, config_hash: str) -> None:
    """Load the run's best checkpoint into `module`, refusing weights this run did not write: missing, or
    saved under another config hash (another run wrote into the folder). Checked on the metadata of the very
    file loaded, so the run predicts with exactly what it checked; a refusal fails the run before any record."""
    path = folder.best_weights
    if not path.is_file():
        raise RunWeightsError(f"{folder.label}: no best checkpoint at {path} (no epoch improved, or it was "
                              f"deleted while the run trained); no record written, a rerun trains it again")
    found = load_model_weights(module, path).get(CONFIG_HASH_KEY)
    if found != config_hash:
        whose = ("no config hash (saved by an older version or another program)" if found is None
                 else f"config {found[:12]} (another run wrote into this folder)")
        raise RunWeightsError(f"{folder.label}: the best checkpoint {path} holds weights of {whose}, not of "
                              f"config {config_hash[:12]}; no record written, a rerun trains it again")


def _trial_score(result: FitResult, config: TrainConfig) -> float:
    if result.best_metric is None:
        return -np.inf
    return result.best_metric if config.monitor_higher_is_better else -result.best_metric


def _predict(module: Any, dataset: Any, collate: Any, batch_size: int, ctx: GridContext) -> Predictions:
    workers = process_loader_workers(ctx.profile, ctx.accelerator.num_processes)
    loader = evaluation_loader(dataset, collate, batch_size, ctx.accelerator, workers)
    ids, probs, labels = predict(module, loader, ctx.accelerator)
    return Predictions(ids=np.asarray(ids, dtype=str), probs=probs, labels=labels)


def _plain(value: Any) -> dict[str, Any]:
    return dataclasses.asdict(value)
