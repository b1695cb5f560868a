"""Learning-rate trials trained at once: one worker process per trial (`TrialWorkers`), for the CPU.

A run tries every learning rate of the profile's `lr_scales` and keeps the best on dev (`runner`). The trials
are independent: each builds its model from the run's seed and `fit` seeds itself, so a trial's weights and
scores do not depend on which trial ran before it, or where. On a CPU with `cpu_threads: 1` one core trains
one trial, and the others idle; `trial_workers: N` lets N worker processes train N trials at once (the smoke
profile: 2, one per core of a 2-core machine). The records are the same as in turn, timings aside (tested).

The grid opens the workers once (`TrialWorkers.open`): each is a spawned process that opens the same grid
(`grid.open_grid` with the same arguments: data, splits, plan and hashes) and then trains any trial of any run
it is sent (`fit`): the run's key and the trial's index travel, the `FitResult` and its `TrainConfig` come back
(the best epoch's dev predictions included). A worker's `thesis_lib` log lines travel to the main process, which
handles them as its own (the console, the book's grid log), so a run's epochs are logged wherever they trained. Spawned, not forked: a notebook kernel has threads of its own, and
a fork of a threaded process can deadlock. The main process builds each run's model and data first
(`runner._train`), so the detections, trained tokenizers and feature caches a worker reads exist before it
starts. The main process holds the run folder's lock meanwhile; each trial writes only its own checkpoints
(`checkpoints/trial<k>`).

Workers are for the CPU only: under several processes (`accelerate launch`) or on a GPU the trials train in
turn (`trial_workers_for` says how many workers a grid gets, and why not more, in one log line).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from logging.handlers import QueueHandler, QueueListener

import torch
from accelerate import Accelerator

from thesis_lib.errors import ThesisError
from thesis_lib.experiments.pipeline import GridContext
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.runner import fit_trial
from thesis_lib.logs import LIBRARY_LOGGER
from thesis_lib.train import FitResult, TrainConfig

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # how often a worker checks that its main process is still there
RunKey = tuple[str, int, str]  # (split, seed, name): a run of the plan

_worker_grid: GridContext | None = None  # in a worker process: the grid it opened


class TrialWorkerError(ThesisError, RuntimeError):
    """A trial worker died (killed for memory, or crashed) before it returned its trial."""


def trial_workers_for(profile: Profile, accelerator: Accelerator) -> int:
    """How many trials a grid trains at once: the profile's `trial_workers`, at most one per trial, and 1
    under several processes or on a GPU (one line says so when the profile asked for more)."""
    workers = min(profile.trial_workers, len(profile.lr_scales))
    if workers > 1 and (accelerator.num_processes > 1 or accelerator.device.type != "cpu"):
        where = f"{accelerator.num_processes} processes" if accelerator.num_processes > 1 else str(accelerator.device)
        log.info("trial_workers: %d asked, the trials train in turn on %s (workers are for the CPU)",
                 profile.trial_workers, where)
        return 1
    return workers


def _exit_with(parent: int) -> None:
    """End this worker once its main process is gone (killed, or its kernel shut down): a pool's workers
    outlive a main process that dies without closing them, and would train on for nobody."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


class _HandledInMain(logging.Handler):
    """In the main process: a worker's log record, handled by the logger it was made for there, so it reaches
    whatever the main process's `thesis_lib` lines reach (the console, the book's grid log, pytest's caplog)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _open_worker(open_grid: Callable[[], GridContext], threads: int, level: int, lines: queue.Queue) -> None:
    """A worker's start: a watch on its main process, its `thesis_lib` lines sent to the main process (`lines`),
    the profile's torch threads, then the grid."""
    global _worker_grid
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True, name="main-process-watch").start()
    library = logging.getLogger(LIBRARY_LOGGER)
    library.handlers[:] = [QueueHandler(lines)]
    library.setLevel(level)
    library.propagate = False  # the main process's handlers see each line once
    if threads:
        torch.set_num_threads(threads)
    _worker_grid = open_grid()


def _fit_in_worker(key: RunKey, index: int, resume: bool) -> tuple[FitResult, TrainConfig, float]:
    """One trial in a worker: its result, its config and the CPU seconds this worker spent on it."""
    started = time.process_time()
    ctx = _worker_grid
    if ctx is None:  # only a pool opened by TrialWorkers.open calls this
        raise TrialWorkerError("a trial worker was sent a trial before it opened its grid")
    spec = ctx.plan[key]
    result, config = fit_trial(spec, ctx, ctx.folder(spec), resume, index)
    ctx.accelerator.free_memory()  # the next trial this worker trains starts from an empty Accelerator
    return result, config, time.process_time() - started


class TrialWorkers:
    """Worker processes that each opened the grid and train whichever trial they are sent."""

    def __init__(self, pool: ProcessPoolExecutor, workers: int, lines: QueueListener) -> None:
        self._pool, self.workers, self._lines = pool, workers, lines
        self.cpu_time_s = 0.0  # CPU seconds the workers spent on trials so far

    @classmethod
    def open(cls, workers: int, open_grid: Callable[[], GridContext], threads: int) -> TrialWorkers:
        """`workers` spawned processes; each calls `open_grid()` (a picklable callable: a partial of
        `grid.open_grid` with the grid's own arguments) and sets `threads` torch threads (0: torch's default)."""
        spawn = multiprocessing.get_context("spawn")
        lines = QueueListener(spawn.Queue(), _HandledInMain())  # the workers' log lines, handled here
        lines.start()
        level = logging.getLogger(LIBRARY_LOGGER).getEffectiveLevel()
        pool = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_open_worker,
                                   initargs=(open_grid, threads, level, lines.queue))
        log.info("trial workers: %d processes train the learning-rate trials at once", workers)
        return cls(pool, workers, lines)

    def fit(self, key: RunKey, label: str, indices: Sequence[int],
            resume: bool) -> list[tuple[FitResult, TrainConfig, float]]:
        """Train the trials `indices` of run `key` at once: per trial (in the order of `indices`) its result,
        its config and the CPU seconds its worker spent (the run's record adds them to its own)."""
        futures = [self._pool.submit(functools.partial(_fit_in_worker, key, index, resume)) for index in indices]
        try:
            fitted = [future.result() for future in futures]
        except BrokenProcessPool as error:
            raise TrialWorkerError(f"{label}: a trial worker stopped before it returned its trial (killed for "
                                   f"memory, or it could not start: see its error above); rerun to resume, or "
                                   f"set trial_workers: 1") from error
        self.cpu_time_s += sum(cpu for _, _, cpu in fitted)
        return fitted

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._lines.stop()  # after the workers: their last lines are handled first
