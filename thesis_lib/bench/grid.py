"""The real `thesis run` path on a small full-size grid: the GPU script's check that training works there.

`run_grid_check` generates a small synthetic twin, writes the offline architecture stand-ins
(`models.standins`, tokenizers trained on the twin's plots), and calls `thesis_lib.experiments.grid.run_grid`
— the function behind `thesis run` — with the `full` profile, random initialisation and bf16: BERT-base
and ViT-B/16 fine-tuned alone, then the cross-attention fusion on their cached features, a few dozen
optimizer steps each. The official split is used (the twin ships split.json): the thesis split needs
iterative-stratification, which the GPU machine lacks. What it returns is the grid's summary plus each
run's training throughput as its record states it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.models.standins import use_pretrained_dir, write_standins

GRID_MODELS = ("text_bert", "image_vit", "fusion_cross_attention")
# Packages the project may import, and whether this machine has them (the GPU machine lacks some).
CHECKED_PACKAGES = ("sklearn", "pandas", "scipy", "iterstrat", "yaml", "matplotlib", "ultralytics",
                    "pytorch_grad_cam", "papermill", "jupyter_book")


def available_packages() -> dict[str, bool]:
    """Which of CHECKED_PACKAGES can be imported here."""
    return {name: importlib.util.find_spec(name) is not None for name in CHECKED_PACKAGES}


def grid_overrides(*, size: str, epochs: int, batch_size: int, workers: int, device: str,
                   mixed_precision: str) -> dict[str, Any]:
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
        "model_size": size,
        "device": device,
        "mixed_precision": mixed_precision,
        "epochs": epochs,
        "batch_size": batch_size,
        "num_workers": workers,
        "patience": None,
    }


def run_grid_check(*, workdir: Path | None = None, movies: int = 600, epochs: int = 3, batch_size: int = 32,
                   size: str = "full", device: str = "auto", mixed_precision: str = "bf16",
                   workers: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate a twin, run the grid on it with the `full` profile, and report what happened.
    `extra`: further profile overrides (e.g. a shorter text_max_length for a CPU try-out)."""
    # The experiment grid pulls in pandas and scikit-learn (records, metrics), which the GPU benchmark
    # image lacks: only this check imports it, so every other benchmark case runs there.
    from thesis_lib.experiments.grid import run_grid
    from thesis_lib.experiments.profile import load_profile

    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="thesis-grid-", dir=workdir))
    twin = scratch / "twin"
    generate_twin(twin, TwinConfig(n_movies=movies, seed=0), overwrite=True)
    generated = time.perf_counter()
    if size == "full" and "THESIS_PRETRAINED_DIR" not in os.environ:
        plots = [movie.plot for movie in load_release(twin).movies]
        use_pretrained_dir(write_standins(scratch / "pretrained", plots))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    overrides = grid_overrides(size=size, epochs=epochs, batch_size=batch_size, device=device,
                               mixed_precision=mixed_precision,
                               workers=min(8, max(cpus - 2, 0)) if workers is None else workers)
    overrides |= extra or {}
    profile = load_profile("full", overrides)
    report = run_grid(profile, data_root=str(twin), runs_dir=str(scratch / "runs"))
    runs = [_run_summary(path) for path in sorted((scratch / "runs").rglob("record.json"))]
    return {
        "ok": report.ok,
        "summary": report.summary(),
        "failed": report.failed,
        "runs": runs,
        "overrides": overrides,
        "twin_movies": movies,
        "twin_seconds": generated - started,
        "wall_time_s": time.perf_counter() - started,
        "packages": available_packages(),
    }


def _run_summary(record_path: Path) -> dict[str, Any]:
    record = json.loads(record_path.read_text(encoding="utf-8"))
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
