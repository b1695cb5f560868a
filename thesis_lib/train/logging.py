"""Progress reporting that reads well in a terminal, a papermill log and a static book page.

One plain log line every `log_every` optimizer steps and one per epoch (no carriage returns, so logs do not
fill with partial progress-bar frames). A tqdm bar is added only when stderr is an interactive terminal.
Each module writes through its own logger (`logging.getLogger(__name__)`, all under `thesis_lib.train`)
and configures nothing: the program that runs the training decides where the lines go (the `thesis`
command and the book call `thesis_lib.logs.configure_logging`; a notebook of one's own can too).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

from thesis_lib.logs import format_duration
from thesis_lib.train.optim import current_learning_rates

T = TypeVar("T")


class StepLogger:
    """The line `epoch e/E step s/S loss lr samples/s eta` every `log_every` optimizer steps.

    It measures the window since the last line and formats the line; the training loop writes it through
    its own module logger (so the line names `thesis_lib.train.epoch`, where the steps run)."""

    def __init__(self, *, total_steps: int, epochs: int, log_every: int, first_step: int, enabled: bool):
        self.total_steps = total_steps
        self.epochs = epochs
        self.log_every = log_every
        self.enabled = enabled  # only the main process gets lines
        self._session_start = time.perf_counter()
        self._session_first_step = first_step  # steps done before this session (resume) do not count for the ETA
        self._window_start = self._session_start
        self._window_losses: list[torch.Tensor] = []  # kept on device: no GPU sync until a line is written
        self._window_samples = 0

    def record_batch(self, loss: torch.Tensor, samples: int) -> None:
        """Account one batch: its mean loss (this process) and the samples it had (all processes)."""
        self._window_losses.append(loss)
        self._window_samples += samples

    def optimizer_step(self, *, epoch: int, global_step: int, optimizer: torch.optim.Optimizer) -> str | None:
        """The line to write after optimizer step `global_step`, if it is a multiple of `log_every` (or the
        last step) and this process writes lines; otherwise None.

        The window's losses stay on the device until here: `.item()` syncs with the GPU once per line,
        not once per step."""
        if global_step % self.log_every and global_step != self.total_steps:
            return None
        now = time.perf_counter()
        line = None
        if self.enabled and self._window_losses:
            session_steps = global_step - self._session_first_step
            seconds_per_step = (now - self._session_start) / max(session_steps, 1)
            rates = " ".join(f"lr_{part} {lr:.2e}" for part, lr in sorted(current_learning_rates(optimizer).items()))
            loss = torch.stack(self._window_losses).float().mean().item()  # the one host sync of the window
            samples_per_s = self._window_samples / max(now - self._window_start, 1e-9)
            eta = format_duration(seconds_per_step * (self.total_steps - global_step))
            line = (
                f"epoch {epoch + 1}/{self.epochs} step {global_step}/{self.total_steps} loss {loss:.4f} {rates} "
                f"samples/s {samples_per_s:.1f} eta {eta}"
            )
        self._window_start = now
        self._window_losses.clear()
        self._window_samples = 0
        return line


def progress_bar(iterable: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T] | Iterable[T]:
    """`iterable` wrapped in tqdm when `enabled` and stderr is a terminal; otherwise unchanged."""
    if not (enabled and sys.stderr.isatty()):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)
