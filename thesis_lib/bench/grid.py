"""The real `thesis run` path on a short grid: the GPU script's check that training works there end to end.

`run_grid_check` generates a small synthetic twin, writes the offline architecture stand-ins for the full
size (`models.standins`, tokenizers trained on the twin's plots), and calls
`thesis_lib.experiments.grid.run_grid` — the function behind `thesis run` — with the `full` profile, random
initialisation and its precision: BERT-base and ViT-B/16 fine-tuned alone, then the cross-attention
fusion on their cached features, a few optimizer steps each. The grid is grown one model at a time (each
call skips the runs that finished), and `on_progress` gets the outcome after each, so a check cut off
keeps the runs that finished. The official split is used (the twin ships split.json): the thesis split
needs iterative-stratification, which the GPU machine lacks. What it returns is the grid's summary plus
each run's training throughput as its record states it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.experiments.grid import run_grid
from thesis_lib.experiments.profile import load_profile
from thesis_lib.models.standins import PRETRAINED_DIR_VARIABLE, use_pretrained_dir, write_standins

GRID_MODELS = ("text_bert", "image_vit", "fusion_cross_attention")
# Packages the project may import, and whether this machine has them (the GPU machine lacks some).
CHECKED_PACKAGES = ("sklearn", "pandas", "scipy", "iterstrat", "yaml", "matplotlib", "ultralytics",
                    "pytorch_grad_cam", "papermill", "jupyter_book")


def available_packages() -> dict[str, bool]:
    """Which of CHECKED_PACKAGES can be imported here."""
    return {name: importlib.util.find_spec(name) is not None for name in CHECKED_PACKAGES}


@dataclass(frozen=True)
class GridCheck:
    """How big the check's grid is; `profile_overrides` change the full profile further (the dry run's sizes)."""

    movies: int = 320  # twin movies (official split: about 60% train)
    epochs: int = 2
    bootstrap_resamples: int = 50  # the results table's intervals: few suffice to show the path works
    profile_overrides: tuple[tuple[str, Any], ...] = ()


GRID_CHECKS: dict[str, GridCheck] = {
    "gpu": GridCheck(),
    # On a CPU the full profile computes in float32 (as the rehearsal sets it): the grid's Accelerator has no
    # autocast there, and fit refuses a TrainConfig that asks for bf16 with it.
    "cpu": GridCheck(movies=120, epochs=1, profile_overrides=(
        ("model_size", "small"), ("device", "cpu"), ("mixed_precision", "no"), ("text_max_length", 64),
        ("image_size", 64), ("batch_size", 8))),
    "dry": GridCheck(movies=40, epochs=1, bootstrap_resamples=10, profile_overrides=(
        ("model_size", "small"), ("device", "cpu"), ("mixed_precision", "no"), ("text_max_length", 16),
        ("image_size", 32), ("batch_size", 4), ("num_workers", 0),
        ("model_overrides", {"text_bert": {"text_pretrained": False, "text_backbone": "random-bert-small"},
                             "image_vit": {"image_pretrained": False, "image_depth": 1},
                             "fusion_cross_attention": {"modalities": ["text", "image"], "text_pretrained": False,
                                                        "image_pretrained": False, "fusion_dim": 32,
                                                        "fusion_heads": 2, "fusion_depth": 1}})))
}


def grid_overrides(check: GridCheck) -> dict[str, Any]:
    """Profile overrides for the check: three models, one seed, the official split, random weights."""
    random = {"text_pretrained": False, "image_pretrained": False}
    return {
        "splits": ["official"],
        "seeds": [0],
        "models": list(GRID_MODELS),
        "ablations": [],
        "model_overrides": {
            "text_bert": {"text_pretrained": False},
            "image_vit": {"image_pretrained": False},
            "fusion_cross_attention": {"modalities": ["text", "image"], **random},
        },
        "epochs": check.epochs,
        "patience": None,
        "bootstrap_resamples": check.bootstrap_resamples,
        **dict(check.profile_overrides),
    }


def run_grid_check(check: GridCheck, *, workdir: Path | None = None,
                   on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Generate a twin, run the grid on it with the `full` profile one model at a time, report what happened.
    `on_progress` gets the outcome so far after the twin is made and after each model."""
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="thesis-grid-", dir=workdir))
    overrides = grid_overrides(check)
    profile = load_profile("full", overrides)
    outcome: dict[str, Any] = {"ok": False, "finished": False, "summary": None, "failed": [], "runs": [],
                               "overrides": overrides, "twin_movies": check.movies, "packages": available_packages()}
    twin = scratch / "twin"
    generate_twin(twin, TwinConfig(n_movies=check.movies, seed=0), overwrite=True)
    outcome["twin_seconds"] = time.perf_counter() - started
    standins = profile.model_size == "full" and PRETRAINED_DIR_VARIABLE not in os.environ
    if standins:  # the published architectures with tokenizers trained on the twin's plots, no weights
        plots = [movie.plot for movie in load_release(twin).movies.values()]
        use_pretrained_dir(write_standins(scratch / "pretrained", plots))
    outcome["standins"] = standins
    _report(outcome, started, on_progress)
    for count in range(1, len(GRID_MODELS) + 1):
        report = run_grid(profile, data_root=str(twin), runs_dir=str(scratch / "runs"), models=GRID_MODELS[:count])
        outcome |= {"summary": report.summary(), "failed": report.failed,
                    "runs": [_run_summary(path) for path in sorted((scratch / "runs").rglob("record.json"))]}
        _report(outcome, started, on_progress)
        if report.failed:  # a later model would only fail again on the same runs
            break
    outcome |= {"ok": not outcome["failed"] and len(outcome["runs"]) == len(GRID_MODELS), "finished": True}
    _report(outcome, started, on_progress)
    return outcome


def _report(outcome: dict[str, Any], started: float, on_progress: Callable[[dict[str, Any]], None] | None) -> None:
    outcome["wall_time_s"] = time.perf_counter() - started
    if on_progress is not None:
        on_progress(outcome)


def _run_summary(record_path: Path) -> dict[str, Any]:
    record: Mapping[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
    training = record.get("training", {})
    return {
        "name": record.get("name"),
        "device": record.get("device"),
        "wall_time_s": record.get("wall_time_s"),
        "fit_wall_time_s": training.get("fit_wall_time_s"),
        "epochs_run": training.get("epochs_run"),
        "optimizer_steps": record.get("budget", {}).get("optimizer_steps"),
        "train_samples_per_s": record.get("samples_per_s"),
        "cached_features": record.get("cached_features"),
        "mixed_precision": record.get("train_config", {}).get("mixed_precision"),
    }
