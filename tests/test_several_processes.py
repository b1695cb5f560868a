"""`thesis run` under torchrun: two processes (gloo on CPU) train the grid as one process with the same
global batch does (2 x 7 and 1 x 14 movies per step, or 1 x 7 twice with gradient accumulation), under the
same config hashes, and write every run folder once.

The slow test launches the CLI module itself (`torchrun --nproc_per_node 2 -m thesis_lib.cli run ...`) and
runs the same profile in one process. The runs are chosen to compute the same thing in both set-ups:
a baseline (main process only), a ViT trained from scratch (no dropout, LayerNorm only)
and a linear probe on the cached features of the frozen MiniLM (the feature cache is written by the main
process), both with `head_dropout: 0` (dropout draws differ between the two set-ups; BatchNorm's batch
statistics would too). What is left is floating-point summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from thesis_lib.cli import main
from thesis_lib.experiments.grid import open_grid
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.processes import process_batch_size, process_loader_workers
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.records import read_predictions
from thesis_lib.experiments.specs import config_hashes, plan_grid
from thesis_lib.experiments.values import ProfileError

MODELS = ["baseline_frequency", "text_bert", "image_vit"]
TRAINED = ["text_bert", "image_vit"]
OVERRIDES = {
    "text_bert": {"text_frozen": True, "head_dropout": 0.0},
    "image_vit": {"image_timm_kwargs": {"embed_dim": 32, "num_heads": 2}, "image_depth": 1, "head_dropout": 0.0},
}


# ------------------------------------------------------------------------------------- the arithmetic


def test_accumulation_splits_the_global_batch_and_keeps_the_config_hash(tmp_path, tiny_grid):
    with tiny_grid(tmp_path, models=MODELS, model_overrides=OVERRIDES) as grid:
        plain = load_profile(grid.profile, {"batch_size": "16"})
        accumulated = load_profile(grid.profile, {"batch_size": "16", "gradient_accumulation": "2"})
        ctx = open_grid(accumulated, data_root=str(grid.twin), runs_dir=str(grid.runs))
    assert ctx.accelerator.gradient_accumulation_steps == 2  # what `fit` checks its TrainConfig against
    assert process_batch_size(plain, processes=1) == 16
    assert process_batch_size(accumulated, processes=1) == 8
    assert process_batch_size(accumulated, processes=2) == 4  # 2 processes x 2 micro-batches x 4 = 16
    hashes = {name: config_hashes(plan_grid(profile), profile) for name, profile in
              (("plain", plain), ("accumulated", accumulated))}
    assert {key: value[0] for key, value in hashes["plain"].items()} == \
           {key: value[0] for key, value in hashes["accumulated"].items()}
    with pytest.raises(ProfileError, match="'batch_size' \\(16\\).*3 processes.*'gradient_accumulation' \\(2\\)"):
        process_batch_size(accumulated, processes=3)
    assert process_loader_workers(plain, processes=4) == plain.num_workers  # a number is per process, as given


def test_cores_minus_two_workers_are_shared_among_the_processes(tmp_path, tiny_grid, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)))
    with tiny_grid(tmp_path, models=MODELS, num_workers=-1) as grid:
        profile = load_profile(grid.profile)
    assert [process_loader_workers(profile, n) for n in (1, 2, 8)] == [14, 7, 1]


# ------------------------------------------------------------------------------------ two processes


@pytest.mark.slow
def test_two_processes_run_the_grid_as_one_with_the_same_global_batch(tmp_path, tiny_grid, capsys):
    # 14 = 2 x 7 divides the twin's 70 training movies: no incomplete last batch, which accelerate would fill
    # with repeats on the second process (the README's "Several GPUs" says so).
    changes = {"models": MODELS, "model_overrides": OVERRIDES, "epochs": 2, "batch_size": 14, "num_workers": 0,
               "image_size": 32, "text_max_length": 32}
    with tiny_grid(tmp_path, **changes) as grid:
        arguments = ["run", "--profile", str(grid.profile), "--data", str(grid.twin)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        launched = subprocess.run([*launcher, "-m", "thesis_lib.cli", *arguments, "--runs", str(tmp_path / "two")],
                                  env=env, capture_output=True, text=True, timeout=240)
        assert launched.returncode == 0, launched.stderr[-4000:]
        assert main([*arguments, "--runs", str(tmp_path / "one")]) == 0
        # The same global batch in one process as two micro-batches of 7 (accumulation).
        assert main([*arguments, "--runs", str(tmp_path / "accumulated"), "--models", "image_vit",
                     "gradient_accumulation=2"]) == 0
    capsys.readouterr()

    # One report from the main process, one line from the other; each run's log lines once.
    assert launched.stdout.count("grid: 3 ran, 0 already finished, 0 failed") == 1, launched.stdout
    assert "on 2 processes" in launched.stdout and launched.stdout.count("process 1 of 2") == 1
    assert launched.stderr.count("thesis/image_vit/seed0: done") == 1, launched.stderr[-4000:]

    two, one = RunsFolder(tmp_path / "two"), RunsFolder(tmp_path / "one")
    assert [run.name for run in two.recorded()] == [run.name for run in one.recorded()] == sorted(MODELS)
    assert sorted(path.name for path in two.splits.iterdir()) == sorted(path.name for path in one.splits.iterdir())
    for name in MODELS:
        record_two = json.loads(two.run("thesis", name, 0).record.read_text())
        record_one = json.loads(one.run("thesis", name, 0).record.read_text())
        assert record_two["config_hash"] == record_one["config_hash"], name  # the same global batch: the same run
        assert (record_two["device"]["processes"], record_one["device"]["processes"]) == (2, 1)
        for part in ("dev", "test"):
            predictions_two = read_predictions(two.run("thesis", name, 0).predictions(part))
            predictions_one = read_predictions(one.run("thesis", name, 0).predictions(part))
            assert predictions_two.ids.tolist() == predictions_one.ids.tolist()  # dataset order, every movie once
            # Summation order only (measured: 6e-8); another batch order or learning rate moves them by ~1e-2.
            np.testing.assert_allclose(predictions_two.probs, predictions_one.probs, rtol=0, atol=1e-5,
                                       err_msg=f"{name} {part}")
    for name in TRAINED:
        budget_two = json.loads(two.run("thesis", name, 0).record.read_text())["budget"]
        budget_one = json.loads(one.run("thesis", name, 0).record.read_text())["budget"]
        assert (budget_two["processes"], budget_two["process_batch_size"]) == (2, 7)
        assert (budget_one["processes"], budget_one["process_batch_size"]) == (1, 14)
        assert budget_two["global_batch_size"] == budget_one["global_batch_size"] == 14
        assert budget_two["optimizer_steps"] == budget_one["optimizer_steps"]
        assert budget_two["gradient_accumulation"] == 1

    accumulated = json.loads(RunsFolder(tmp_path / "accumulated").run("thesis", "image_vit", 0).record.read_text())
    single = json.loads(one.run("thesis", "image_vit", 0).record.read_text())
    assert accumulated["config_hash"] == single["config_hash"]
    assert (accumulated["budget"]["process_batch_size"], accumulated["budget"]["gradient_accumulation"]) == (7, 2)
    assert accumulated["budget"]["optimizer_steps"] == single["budget"]["optimizer_steps"] == 2 * 5
    assert accumulated["device"]["gradient_accumulation"] == 2
    for part in ("dev", "test"):
        np.testing.assert_allclose(
            read_predictions(RunsFolder(tmp_path / "accumulated").run("thesis", "image_vit", 0).predictions(part)).probs,
            read_predictions(one.run("thesis", "image_vit", 0).predictions(part)).probs, rtol=0, atol=1e-5)
