"""One grid run by several processes (`torchrun`/`accelerate launch` of `thesis run`, one process per GPU).

Every process trains (DDP: each takes its share of every global batch) and predicts (the predictions are
gathered, in dataset order, on every process). Everything else happens once, on the main process: the
twin, the split files, the decision whether a run is finished, preparing and writing a run folder,
baselines and late fusion, detections and trained tokenizers (feature caches: `cache_encoder_features`);
the other processes wait at a barrier and then read what it wrote.

The profile's `batch_size` is the global batch of one optimizer step, whatever the launch: each process
takes `batch_size / (processes x gradient_accumulation)` movies per forward pass, so one GPU with
accumulation 4 and four GPUs without it train the same recipe under the same config hash (the record keeps
the processes and the accumulation of the run that made it).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import TypeVar

from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list

from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.values import ProfileError
from thesis_lib.machine import AUTO_WORKERS, loader_workers

T = TypeVar("T")

# How long a process waits at a barrier for the main one (torch's default: 10 min with NCCL, 30 with gloo).
# The main process may detect objects in every poster or extract a split's features meanwhile.
BARRIER_TIMEOUT = InitProcessGroupKwargs(timeout=datetime.timedelta(hours=3))


def process_batch_size(profile: Profile, processes: int) -> int:
    """Movies per process per forward pass: the profile's global batch over processes x accumulation."""
    parts = processes * profile.gradient_accumulation
    if profile.batch_size % parts:
        raise ProfileError(
            f"profile key 'batch_size' ({profile.batch_size}) does not split into {processes} processes x "
            f"'gradient_accumulation' ({profile.gradient_accumulation}) equal micro-batches; "
            f"make batch_size a multiple of {parts}"
        )
    return profile.batch_size // parts


def process_loader_workers(profile: Profile, processes: int) -> int:
    """DataLoader workers of each process: a given number as is; -1 shares cores - 2 among the processes."""
    workers = loader_workers(profile.num_workers)
    if profile.num_workers != AUTO_WORKERS or processes == 1:
        return workers
    return max(workers // processes, min(workers, 1))


def on_main_process(accelerator: Accelerator, work: Callable[[], T]) -> T:
    """`work()` on the main process only; every process returns its result (a picklable value).

    An error on the main process ends it there; torchrun then stops the others (they wait in the broadcast)."""
    result = [work() if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(result)
    return result[0]


def quiet_other_processes(accelerator: Accelerator) -> None:
    """Log lines from the main process only: the others compute the same runs and would repeat every line."""
    if not accelerator.is_main_process:
        logging.getLogger("thesis_lib").setLevel(logging.WARNING)
