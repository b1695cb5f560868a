"""The whole capacity experiment as one call, and its results file (one small JSON with full provenance).

`run_capacity(CapacityConfig())` trains every model of `models.MODELS` on every task of `tasks.TASKS`
for every seed, each at every learning rate of the grid (the best dev accuracy picks one per seed), and
returns the results document; `write_results` stores it atomically, `read_results` reads it back and
says in one line what is wrong with a file that is missing, unreadable, of another schema, or made by
another configuration (its `config_hash` differs from the current code's).

Intervals: the test set of a task is fixed across seeds, so every model is scored on the same samples.
Accuracy is averaged over the seeds, and its 95% interval is the percentile bootstrap over test samples
of that seed-averaged accuracy (`metrics.bootstrap_indices`, the same resampled samples for every seed
and model, as `experiments.table` does for the grid). A difference between two models (or a model and
the majority-class guess) is bootstrapped the same way, paired; its verdict comes from its interval
(`analysis.verdicts`). The seeds' own spread is kept beside it (per-seed accuracies).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thesis_lib.analysis import results_file
from thesis_lib.analysis.capacity.models import (
    LABELS,
    MODELS,
    POOLED_MODELS,
    ModelSizing,
    build_model,
    matched_width,
)
from thesis_lib.analysis.capacity.tasks import TASKS, TaskConfig, make_split
from thesis_lib.analysis.capacity.training import TrainConfig, Trained, train_model
from thesis_lib.analysis.verdicts import verdict_of
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.provenance import library_versions
from thesis_lib.machine import cpu_name, load_average
from thesis_lib.metrics.bootstrap import bootstrap_indices, resample_counts
from thesis_lib.storage import stable_hash
from thesis_lib.versions import git_state

SCHEMA = "thesis-capacity/1"
RESULTS_FILE = Path("results") / "capacity.json"  # relative to the project root
COMMAND = "thesis capacity --out results/capacity.json"
CONTROL = "selfattn_d2"  # the token-level model that is not cross-attention
POOLED_REFERENCE = "early"  # the pooled model every other model is compared with
CONFIDENCE = 0.95


class CapacityResultError(ThesisError, ValueError):
    """A capacity results file that cannot be used: missing, unreadable, or from another configuration."""


@dataclass(frozen=True)
class CapacityConfig:
    task: TaskConfig = field(default_factory=lambda: TaskConfig(
        classes=5, colours=5, grid_cells=16, text_length=5, absent_colour_rate=1 / 3))
    sizing: ModelSizing = field(default_factory=lambda: ModelSizing(target_params=30_000))
    train: TrainConfig = field(default_factory=TrainConfig)
    tasks: tuple[str, ...] = TASKS
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    n_resamples: int = 2000
    bootstrap_seed: int = 0
    torch_threads: int = 1  # one CPU core: the run time is part of the result

    @classmethod
    def smoke(cls) -> CapacityConfig:
        """Tiny sizes that check the whole path in seconds (tests, `--smoke`); not the chapter's numbers."""
        base = cls()
        return dataclasses.replace(
            base, task=dataclasses.replace(base.task, train_size=64, dev_size=32, test_size=64),
            sizing=ModelSizing(target_params=5_000, tolerance=0.3), seeds=(0,), n_resamples=50,
            train=TrainConfig(learning_rates=(5e-3,), epochs=1, batch_size=32))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as the file holds them

    def config_hash(self) -> str:
        """What a results file must match to be read as this configuration's (schema included)."""
        return stable_hash({"schema": SCHEMA, "config": self.to_dict()}, length=16)


def pooled_ceiling(task: str, config: TaskConfig) -> float:
    """The best accuracy possible from the text and the image's *bags* of features (what pooling keeps):
    1 for additive and interaction; for alignment 0.5 + absent_colour_rate / 2 (the negatives whose colour
    is absent from the image are found; the rest are a coin flip by construction)."""
    return 0.5 + config.absent_colour_rate / 2 if task == "alignment" else 1.0


def run_capacity(config: CapacityConfig, log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Train and score everything; the results document (see the module docstring)."""
    torch.set_num_threads(config.torch_threads)
    started, load_before = time.perf_counter(), load_average()
    code = git_state()  # read before training: the code that ran, not the checkout as it is at the end
    task_config = config.task
    widths = {name: matched_width(name, config.sizing, task_config.text_dim, task_config.image_dim)
              for name in config.models}
    runs: list[dict[str, Any]] = []
    correct: dict[tuple[str, str], list[np.ndarray]] = {}
    tasks_info: dict[str, Any] = {}
    for task in config.tasks:
        test = make_split(task, task_config, "test", 0)
        tasks_info[task] = {"test_size": len(test), "test_positive_rate": test.positive_rate,
                            "majority_accuracy": max(test.positive_rate, 1 - test.positive_rate),
                            "pooled_ceiling": pooled_ceiling(task, task_config)}
        majority = (test.labels.numpy() == float(test.positive_rate >= 0.5))  # (N,) the constant guess
        correct[(task, "majority")] = [majority]
        for seed in config.seeds:
            train, dev = (make_split(task, task_config, split, seed) for split in ("train", "dev"))
            for name in config.models:
                tried = [_train(name, widths[name][0], train, dev, test, lr, config, seed)
                         for lr in config.train.learning_rates]
                chosen = max(tried, key=lambda run: run.dev_accuracy)  # the first of equals: max keeps it
                correct.setdefault((task, name), []).append(chosen.test_correct)
                runs.append({"task": task, "model": name, "seed": seed, "chosen_learning_rate": chosen.learning_rate,
                             "test_accuracy": float(chosen.test_correct.mean()),
                             "tried": [{"learning_rate": run.learning_rate, "dev_accuracy": run.dev_accuracy,
                                        "best_epoch": run.best_epoch, "test_accuracy": float(run.test_correct.mean()),
                                        "wall_s": round(run.wall_s, 3)} for run in tried]})
                log(f"{task:<12} {name:<16} seed {seed}: test accuracy {runs[-1]['test_accuracy']:.3f} "
                    f"(lr {chosen.learning_rate:g}, {sum(run.wall_s for run in tried):.1f} s)")
    summary, comparisons = _summaries(config, correct)
    return {
        "schema": SCHEMA,
        "command": COMMAND,
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": code,
        "versions": library_versions(),
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "wall_time_s": round(time.perf_counter() - started, 1),
        "models": {name: {"label": LABELS[name], "width": widths[name][0], "parameters": widths[name][1],
                          "pooled": name in POOLED_MODELS} for name in config.models},
        "tasks": tasks_info,
        "summary": summary,
        "comparisons": comparisons,
        "runs": runs,
    }


def _train(name: str, width: int, train: Any, dev: Any, test: Any, learning_rate: float, config: CapacityConfig,
           seed: int) -> Trained:
    torch.manual_seed(seed)  # the same initialisation for every learning rate of a seed
    model = build_model(name, width, config.task.text_dim, config.task.image_dim)
    return train_model(model, train, dev, test, learning_rate, config.train, seed)


def _summaries(config: CapacityConfig, correct: dict[tuple[str, str], list[np.ndarray]]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per task and model: mean accuracy over seeds, its bootstrap interval, the seeds' values; and the
    paired differences the chapter reads (each model vs. the majority guess and vs. the pooled reference,
    each cross-attention vs. the self-attention control)."""
    summary, comparisons = [], []
    for task in config.tasks:
        n_test = len(correct[(task, "majority")][0])
        counts = resample_counts(bootstrap_indices(n_test, config.n_resamples, config.bootstrap_seed), n_test)  # (R, N)
        resampled = {name: np.mean([counts @ seed_correct / n_test for seed_correct in seeds], axis=0)  # (R,)
                     for (t, name), seeds in correct.items() if t == task}
        point = {name: float(np.mean([seed_correct.mean() for seed_correct in seeds]))
                 for (t, name), seeds in correct.items() if t == task}
        for name in config.models:
            low, high = _interval(resampled[name])
            summary.append({"task": task, "model": name, "accuracy": point[name], "ci_low": low, "ci_high": high,
                            "seed_accuracies": [float(c.mean()) for c in correct[(task, name)]]})
        pairs = [(name, "majority") for name in config.models]
        pairs += [(name, POOLED_REFERENCE) for name in config.models if name != POOLED_REFERENCE]
        pairs += [(name, CONTROL) for name in config.models if name.startswith("xattn_") and CONTROL in config.models]
        for a, b in pairs:
            if b not in point:
                continue
            low, high = _interval(resampled[a] - resampled[b])
            comparisons.append({"task": task, "a": a, "b": b, "delta": point[a] - point[b], "ci_low": low,
                                "ci_high": high, "verdict": str(verdict_of(low, high))})
    return summary, comparisons


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def read_results(path: Path, config: CapacityConfig | None = None) -> dict[str, Any]:
    """The results document at `path`; CapacityResultError (one line naming the file) when it is missing,
    unreadable, of another schema, or made by another configuration than `config` (default: the current)."""
    return results_file.read_results(path, what="capacity", schema=SCHEMA, config_hash=(config or CapacityConfig()).config_hash(),
                                     command=COMMAND, error=CapacityResultError)
