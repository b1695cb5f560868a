"""The runs folder on disk: the one module that knows where a run's files are.

    RUNS/
        splits/<name>-seed<k>-<data12>.json    the thesis split files the grid drew (reused on later runs)
        <split>/<run>/seed<k>/                 one run: a (split, run name, seed), e.g. thesis/fusion_early/seed0
            record.json                        its `RunRecord` (written last: its presence marks the run finished)
            predictions_dev.npz                ids, probabilities, labels of the dev part (thresholds, late fusion)
            predictions_test.npz               the same for the test part (results table, bootstrap intervals)
            checkpoints/best/model.safetensors the weights it predicted with (checkpoints/last/ while it trains)
            pending.json                       the config hash of a run in progress (lets an interrupted run resume)
            error.txt                          the traceback of its latest failed attempt
            run.lock                           held by the process running it (`locks.RunLock`: pid, host)
            tensorboard/                       TensorBoard event files of its training (profile key tensorboard)

Every split has its own folder, the primary one included, so a run's label "<split>/<run>/seed<k>" (what
a fusion's record names as the source of its encoders) is also its path under RUNS. Nothing outside this
module joins these names into paths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from thesis_lib.errors import ThesisError
from thesis_lib.train.checkpoint import BEST, MODEL_FILE

SPLITS_FOLDER = "splits"
RECORD_FILE = "record.json"
PREDICTIONS_FILES = {"dev": "predictions_dev.npz", "test": "predictions_test.npz"}
CHECKPOINTS = "checkpoints"
PENDING_FILE = "pending.json"
ERROR_FILE = "error.txt"
LOCK_FILE = "run.lock"
TENSORBOARD_FOLDER = "tensorboard"
SEED_PREFIX = "seed"


@dataclass(frozen=True)
class RunFolder:
    """RUNS/<split>/<name>/seed<k>/ of one run, and the files in it."""

    path: Path

    @property
    def seed(self) -> int:
        return int(self.path.name.removeprefix(SEED_PREFIX))

    @property
    def name(self) -> str:
        return self.path.parent.name

    @property
    def split(self) -> str:
        return self.path.parent.parent.name

    @property
    def label(self) -> str:
        """"<split>/<name>/seed<k>", how records and logs name the run."""
        return f"{self.split}/{self.name}/{self.path.name}"

    @property
    def runs(self) -> RunsFolder:
        """The runs folder this run belongs to."""
        return RunsFolder(self.path.parents[2])

    @property
    def record(self) -> Path:
        return self.path / RECORD_FILE

    def predictions(self, part: str) -> Path:
        """predictions_dev.npz or predictions_test.npz."""
        return self.path / PREDICTIONS_FILES[part]

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def best_weights(self) -> Path:
        """checkpoints/best/model.safetensors: the weights a finished run predicted with."""
        return self.checkpoints / BEST / MODEL_FILE

    @property
    def pending(self) -> Path:
        return self.path / PENDING_FILE

    @property
    def error(self) -> Path:
        return self.path / ERROR_FILE

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files of its training (profile key `tensorboard`): `tensorboard --logdir RUNS`."""
        return self.path / TENSORBOARD_FOLDER

    @property
    def lock(self) -> Path:
        """The marker of the process that runs it now (`locks.RunLock`)."""
        return self.path / LOCK_FILE

    def is_recorded(self) -> bool:
        """A record.json is there (whether it is this config's is `records.is_finished`'s question)."""
        return self.record.is_file()


@dataclass(frozen=True)
class RunsFolder:
    """A runs folder written by `thesis run` (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.root.exists() and not self.root.is_dir():  # `--runs` naming a file: one line, not a traceback
            raise ThesisError(f"{self.root} is not a folder: give a runs folder (made when missing), not a file")

    def run(self, split: str, name: str, seed: int) -> RunFolder:
        return RunFolder(self.root / split / name / f"{SEED_PREFIX}{int(seed)}")

    def labelled(self, label: str) -> RunFolder:
        """The run a record names as "<split>/<name>/seed<k>"; ValueError for anything else."""
        parts = label.split("/") if isinstance(label, str) else []
        if len(parts) != 3 or not parts[2].startswith(SEED_PREFIX) or not parts[2][len(SEED_PREFIX):].isdigit():
            raise ValueError(f"{label!r} is not a run label <split>/<name>/seed<k>")
        return self.run(parts[0], parts[1], int(parts[2][len(SEED_PREFIX):]))

    @property
    def splits(self) -> Path:
        """RUNS/splits/: the thesis split files."""
        return self.root / SPLITS_FOLDER

    def recorded(self, split: str | None = None, seeds: Sequence[int] | None = None) -> Iterator[RunFolder]:
        """Every run folder that holds a record.json, sorted by (split, name, seed); only `split`'s runs and
        `seeds` when given."""
        wanted = None if seeds is None else {int(seed) for seed in seeds}
        pattern = f"{split or '*'}/*/{SEED_PREFIX}*/{RECORD_FILE}"
        found = [RunFolder(path.parent) for path in self.root.glob(pattern)]
        found = [run for run in found if run.split != SPLITS_FOLDER and run.path.name[len(SEED_PREFIX):].isdigit()]
        for run in sorted(found, key=lambda run: (run.split, run.name, run.seed)):
            if wanted is None or run.seed in wanted:
                yield run
