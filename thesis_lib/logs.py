"""One place that makes the library's log lines visible: `configure_logging`.

Library modules only create loggers (`logging.getLogger(__name__)`, all under `thesis_lib`) and never
configure them; the program that runs them decides. Two programs do: the `thesis` command (its `main`)
and the book, inside each chapter's kernel (`thesis_lib.book.execute`). Each line reads

    14:03:59 thesis_lib.experiments.grid: [3/13] thesis/text_bert/seed0: running (train)

on stderr, so stdout keeps only what a command prints as its result (a table, one JSON object).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

LIBRARY_LOGGER = "thesis_lib"
LINE_FORMAT = "%(asctime)s %(name)s: %(message)s"
TIME_FORMAT = "%H:%M:%S"


class _LibraryLinesHandler(logging.StreamHandler):
    """Writes to `stream`, or, when that is None, to whatever `sys.stderr` is when a line is emitted.

    Looking stderr up per line (as logging's own last-resort handler does) keeps lines going where the
    program currently points stderr: a notebook kernel's cell output, pytest's capture, or a
    `contextlib.redirect_stderr` into a log file; a stream bound once would go stale.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self.fixed_stream = stream

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return self.fixed_stream if self.fixed_stream is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ assigns a stream; the property above decides instead


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Send the `thesis_lib` loggers' lines at `level` and above to `stream` (None: the current stderr).

    Idempotent: a second call adjusts the level and stream of the one handler it added, never adds
    another. The root logger and other libraries' loggers are left alone (lines still propagate to the
    root, so pytest's `caplog` and a program's own root handlers see them too).
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, _LibraryLinesHandler)), None)
    if handler is None:
        handler = _LibraryLinesHandler(stream)
        handler.setFormatter(logging.Formatter(LINE_FORMAT, datefmt=TIME_FORMAT))
        logger.addHandler(handler)
    handler.fixed_stream = stream
    logger.setLevel(level)
    return logger


def format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class ProgressLog:
    """Plain progress lines for a long loop without optimizer steps (feature extraction, detection):
    `<what>: done/total <unit> (rate/s, eta H:MM:SS)`. The first line comes after the first chunk, so a
    person sees within seconds that the work started and what it will take; then one line every `every_s`
    seconds, and one at the end. `update` takes a Python count: it never reads a tensor."""

    def __init__(self, log: logging.Logger, what: str, total: int, unit: str, every_s: float = 15.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.log, self.what, self.total, self.unit, self.every_s, self.clock = log, what, total, unit, every_s, clock
        self._start = clock()
        self._last: float | None = None

    def update(self, done: int) -> None:
        now = self.clock()
        finished = done >= self.total
        if self._last is not None and now - self._last < self.every_s and not finished:
            return
        self._last = now
        elapsed = now - self._start
        rate = done / max(elapsed, 1e-9)
        if finished:
            self.log.info("%s: %d/%d %s done in %s (%.1f %s/s)", self.what, done, self.total, self.unit,
                          format_duration(elapsed), rate, self.unit)
        else:
            eta = format_duration((self.total - done) / rate) if done else "?"
            self.log.info("%s: %d/%d %s (%.1f %s/s, eta %s)", self.what, done, self.total, self.unit, rate,
                          self.unit, eta)


class Pace:
    """Items of uneven cost (runs of a grid, runs of a check): how many are done, the time so far and, at the
    pace so far, the time left. The eta is rough where items differ in cost; it is worded so."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def one_more(self) -> None:
        self.done += 1

    def so_far(self) -> str:
        return format_duration(time.perf_counter() - self.started)

    def eta(self) -> str:
        elapsed = time.perf_counter() - self.started
        return format_duration(elapsed / max(self.done, 1) * (self.total - self.done))


@contextlib.contextmanager
def echoed(logger_name: str, stream: TextIO) -> Iterator[None]:
    """Inside the block, the lines of one library logger also go to `stream` (bound now), wherever stderr
    is redirected meanwhile: the book sends the grid's whole log to a file and still shows its per-run
    lines live."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LINE_FORMAT, datefmt=TIME_FORMAT))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
