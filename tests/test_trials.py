"""Learning-rate trials trained at once in worker processes (`experiments.trials`): the same records as
trained in turn, the workers' CPU counted, and workers only where they can help."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from thesis_lib.experiments.grid import run_grid
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.trials import PARENT_CHECK_S, trial_workers_for

MODELS = ["text_roberta", "image_resnet50"]  # one reads plots, one reads posters; two trials each


def _grid(tiny_grid, root, workers: int):
    root.mkdir()
    with tiny_grid(root, models=MODELS, model_overrides={**tiny_grid.resnet, **tiny_grid.roberta}, image_size=32,
                   text_max_length=32, lr_scales=[1.0, 5.0], epochs=2, cpu_threads=1,
                   trial_workers=workers) as tiny:
        report = run_grid(load_profile(tiny.profile), data_root=str(tiny.twin), runs_dir=str(tiny.runs))
        assert report.ok, report.summary()
        records = {name: json.loads((tiny.runs / "thesis" / name / "seed0" / "record.json").read_text())
                   for name in MODELS}
        return report, records


@pytest.mark.slow
def test_trials_in_workers_give_the_records_of_trials_in_turn(tiny_grid, tmp_path, caplog):
    _, in_turn = _grid(tiny_grid, tmp_path / "in_turn", workers=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="thesis_lib"):
        report, at_once = _grid(tiny_grid, tmp_path / "at_once", workers=2)
    epochs = [r for r in caplog.records if r.name == "thesis_lib.train.loop" and "epoch 2/2 done" in r.getMessage()]
    assert len(epochs) == 2 * len(MODELS)  # every trial's last epoch, logged in its worker, handled here
    assert {r.process for r in epochs}.isdisjoint({os.getpid()})  # ... and made in the workers
    for name in MODELS:
        ours, theirs = at_once[name], in_turn[name]
        assert ours["config_hash"] == theirs["config_hash"]  # a speed setting, not part of the config
        assert ours["training"]["trials"] == theirs["training"]["trials"], name
        assert ours["training"]["chosen_trial"] == theirs["training"]["chosen_trial"]
        assert [e["val_metrics"] for e in ours["training"]["history"]] == [
            e["val_metrics"] for e in theirs["training"]["history"]], name
        assert ours["metrics"] == theirs["metrics"], name  # dev-tuned thresholds and test scores alike
        assert ours["budget"]["trial_workers"] == 2 and theirs["budget"]["trial_workers"] == 0
        # the workers trained: their CPU is the run's, not only the main process's few seconds
        assert ours["cpu_time_s"] > 0.5 * theirs["cpu_time_s"], (ours["cpu_time_s"], theirs["cpu_time_s"])
    assert report.cpu_time_s > 0.5 * sum(r["cpu_time_s"] for r in in_turn.values())


def _accelerator(device: str, processes: int = 1) -> SimpleNamespace:
    return SimpleNamespace(device=torch.device(device), num_processes=processes)


def test_trial_workers_only_on_one_cpu_process_and_at_most_one_per_trial(tiny_grid, tmp_path, caplog):
    with tiny_grid(tmp_path, lr_scales=[1.0, 5.0], trial_workers=4) as tiny:
        profile = load_profile(tiny.profile)
    assert trial_workers_for(profile, _accelerator("cpu")) == 2  # two trials: two workers, not four
    assert trial_workers_for(profile, _accelerator("cpu", processes=2)) == 1
    with caplog.at_level(logging.INFO, logger="thesis_lib"):
        assert trial_workers_for(profile, _accelerator("cuda")) == 1
    assert "train in turn on cuda" in caplog.text


def test_trial_workers_below_one_is_refused(tiny_grid, tmp_path):
    with tiny_grid(tmp_path, trial_workers=0) as tiny, pytest.raises(ValueError, match="trial_workers: must be at least 1"):
        load_profile(tiny.profile)


ORPHANED_WORKER = """
import os, signal
from thesis_lib.experiments.trials import TrialWorkers
workers = TrialWorkers.open(1, dict, 0)  # a worker whose "grid" is an empty dict
print(workers._pool.submit(os.getpid).result(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the main process dies without closing its workers
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\\nState:\\tZ" not in status  # a zombie has exited; only its parent's wait is missing


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_a_worker_ends_when_its_main_process_is_killed():
    done = subprocess.run([sys.executable, "-c", ORPHANED_WORKER], capture_output=True, text=True, timeout=120)
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10 * PARENT_CHECK_S
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), f"trial worker {worker} still runs after its main process was killed"
