"""The experiment grid: every (run, seed, split) of a profile, in sequence, resumable and crash-isolated.

`run_grid` loads the data once (generating the synthetic twin when the profile asks for it and it is
missing), makes or reads the splits, plans the runs (`specs.plan_grid`: baselines, single-modality runs,
late fusion, trained fusions) and executes each one that is not finished yet. A run is finished when its
record exists with the same config hash, data fingerprint and split hash; anything else reruns. A failing
run writes its traceback to `error.txt` in its folder and the grid goes on; runs that need it then fail
too (with a message naming it). When not even error.txt can be written (a full disk), the grid stops
there with one line instead of failing every remaining run. The returned `GridReport` lists every failure
(`thesis run` then exits non-zero).

A run folder belongs to one process at a time: the main process holds its `locks.RunLock` while it runs
(another `thesis run` on the same folder waits, then fails that run with one line naming the holder), and
decides again under the lock whether the run is finished (another process may have finished it meanwhile).
A finished run is never replaced by a run of another config, data or split unless asked (`replace=True`,
`thesis run --replace`): the grid refuses before it trains anything, naming the runs. After each run, the feature caches that no later unfinished run of the grid reads are
deleted (`caches.CacheLedger`: which run reads which cache comes from the plan). Progress, one line per
run, goes to this module's logger. With the profile's `trial_workers` above 1 (CPU only), worker processes
opened once per grid train each run's learning-rate trials at once (`trials`); the records are the same.

Launched by `torchrun`/`accelerate launch` (one process per GPU), every process runs the same loop: they
train together and the main process does the rest (see `processes`); a failing run then stops the launch
instead of the grid going on, since the processes could no longer be kept in step.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from thesis_lib.data.mmimdb import Release, load_release
from thesis_lib.data.splits import Split, load_or_create_thesis_split, load_split, official_split
from thesis_lib.data.twin import generate_twin
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.caches import CacheCleaning, CacheLedger, clean_feature_caches
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.locks import CacheReadMark, RunLock, RunLockedError, live_cache_reads
from thesis_lib.experiments.pipeline import GridContext
from thesis_lib.experiments.processes import (
    BARRIER_TIMEOUT,
    on_main_process,
    process_batch_size,
    quiet_other_processes,
)
from thesis_lib.experiments.profile import Profile, ProfileError
from thesis_lib.experiments.records import RecordError, is_finished, read_record, write_error
from thesis_lib.experiments.runner import RunOutcome, execute_run
from thesis_lib.experiments.specs import RunSpec, config_hashes, plan_grid
from thesis_lib.experiments.trials import TrialWorkers, trial_workers_for
from thesis_lib.logs import Pace
from thesis_lib.machine import choose_device, device_banner, effective_precision
from thesis_lib.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass
class GridReport:
    """What one `run_grid` call did."""

    runs_dir: Path
    process: int = 0  # this process's index under torchrun / accelerate launch (0: the main one)
    processes: int = 1
    executed: list[RunOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # labels of runs that were already finished
    caches_freed: list[tuple[Path, int]] = field(default_factory=list)  # feature caches deleted: (file, bytes)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, one-line error)
    stopped: str | None = None  # why the grid stopped before its last run (nothing could be written)
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def summary(self) -> str:
        if self.process:
            return f"process {self.process} of {self.processes}: trained its share of every run (process 0 reports)"
        processes = f" on {self.processes} processes" if self.processes > 1 else ""
        lines = [f"grid: {len(self.executed)} ran, {len(self.skipped)} already finished, {len(self.failed)} failed "
                 f"in {self.wall_time_s:.1f} s wall ({self.cpu_time_s:.1f} s CPU){processes} -> {self.runs_dir}"]
        for outcome in self.executed:
            lines.append(f"  ran     {outcome.spec.label:<52} {outcome.wall_time_s:7.1f} s  macro-F1 "
                         f"{_score(outcome.macro_f1)} (tuned {_score(outcome.macro_f1_tuned)})")
        lines += [f"  FAILED  {label}: {error}" for label, error in self.failed]
        if self.stopped:
            lines.append(f"  STOPPED {self.stopped}")
        if self.caches_freed:
            freed = sum(size for _, size in self.caches_freed)
            lines.append(f"  feature caches no later run reads: {len(self.caches_freed)} deleted ({freed / 1e9:.2f} GB)")
        return "\n".join(lines)


def _score(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def resolve_data_root(profile: Profile, data_root: str | None, generate: bool = True) -> Path:
    """--data, else the profile's data_root, else the profile's twin (generated when missing, unless
    `generate` is False: a command that only reads runs made on it, `thesis xai check`, never makes one)."""
    root = data_root or profile.data_root
    if root is not None:
        return Path(root).expanduser()
    if profile.twin_root is None:
        raise ProfileError(f"profile {profile.profile!r} names no data: pass --data ROOT (or set data_root)")
    twin = profile.twin_path()

    if generate and not (twin / TRUTH_FILE).is_file():
        log.info("generating the synthetic twin (%d movies, seed %d) in %s", profile.twin_movies, profile.twin_seed,
                 twin)
        log.info("%s", generate_twin(twin, profile.twin_config(), overwrite=True))
    return twin


def thesis_split_file(profile: Profile, release: Release) -> str:
    """The name of the thesis split's file under RUNS/splits/ (one per split seed and release)."""
    return f"thesis-seed{profile.split_seed}-{release.fingerprint[:12]}.json"


def make_splits(profile: Profile, release: Release, runs: RunsFolder) -> dict[str, Split]:
    """The profile's splits; the thesis split is made once per release and stored under RUNS/splits/."""
    splits = {}
    for name in profile.splits:
        if name == "official":
            splits[name] = official_split(release)
        else:
            path = runs.splits / thesis_split_file(profile, release)
            splits[name] = load_or_create_thesis_split(release, path, seed=profile.split_seed)
    return splits


@dataclass(frozen=True)
class GridStatus:
    """Which runs of a profile's grid are finished in a runs folder (nothing is trained to find out)."""

    runs_dir: Path
    finished: list[str]  # run labels
    missing: list[str]   # run labels: no record, or one from another config, data or split

    @property
    def complete(self) -> bool:
        return not self.missing


def grid_status(
    profile: Profile,
    *,
    data_root: str | None = None,
    runs_dir: str | None = None,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> GridStatus:
    """The finished and missing runs of the profile's grid, by the test `run_grid` skips with (config hash,
    data fingerprint, split hash). Reads the release without decoding posters; creates no split file."""
    runs = RunsFolder(Path(runs_dir).expanduser() if runs_dir else profile.runs_path())
    plan = plan_grid(profile, models, seeds)
    hashes = config_hashes(plan, profile)
    release = load_release(resolve_data_root(profile, data_root), plot_choice=profile.plot_choice,
                           verify_posters="none")
    split_hashes = {}
    for name in profile.splits:
        if name == "official":
            split_hashes[name] = official_split(release).split_hash()
        else:
            path = runs.splits / thesis_split_file(profile, release)
            split_hashes[name] = load_split(path).split_hash() if path.is_file() else None  # None: never made
    finished, missing = [], []
    for spec in plan:
        done = split_hashes[spec.split] is not None and is_finished(
            runs.run(spec.split, spec.name, spec.seed), config_hash=hashes[spec.key][0],
            data_fingerprint=release.fingerprint, split_hash=split_hashes[spec.split])
        (finished if done else missing).append(spec.label)
    return GridStatus(runs.root, finished, missing)


def open_grid(
    profile: Profile,
    *,
    data_root: str | None = None,
    runs_dir: str | None = None,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> GridContext:
    """Data, splits, device and plan of a grid, without running anything."""
    runs = RunsFolder(Path(runs_dir).expanduser() if runs_dir else profile.runs_path())
    plan = plan_grid(profile, models, seeds)  # profile errors surface before any data is read
    # One decision for the whole grid (thesis_lib.machine): the GPU when `device: auto` finds a usable one,
    # bf16 -> fp16 on a GPU without bf16, and no autocast at all on the CPU.
    device = choose_device(profile.device)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=effective_precision(device, profile.mixed_precision),
                              kwargs_handlers=[BARRIER_TIMEOUT])
    if accelerator.is_main_process:
        log.info("%s", device_banner(accelerator.device, profile.mixed_precision).line())
    # Several processes: the profile's batch is the global one (refused here when it does not split).
    accelerator.gradient_accumulation_steps = profile.gradient_accumulation
    process_batch_size(profile, accelerator.num_processes)
    with accelerator.main_process_first():  # the main process makes the twin and split files, the others read them
        release = load_release(resolve_data_root(profile, data_root), plot_choice=profile.plot_choice)
        splits = make_splits(profile, release, runs)
    log.info("data: %d movies from %s (fingerprint %s); %d skipped", len(release.movies), release.root,
             release.fingerprint[:12], len(release.skipped_ids))
    return GridContext(profile, release, splits, runs, accelerator, {s.key: s for s in plan},
                       config_hashes(plan, profile))


class FinishedRunsError(ThesisError):
    """The runs folder holds finished runs of another config, data or split where this grid would run."""


def run_grid(
    profile: Profile,
    *,
    data_root: str | None = None,
    runs_dir: str | None = None,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    replace: bool = False,
) -> GridReport:
    """Run (or skip, when finished) every run of the profile's grid; see the module docstring. `replace`:
    retrain in place the finished runs of another config, data or split (refused otherwise)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile.cpu_threads:
        torch.set_num_threads(profile.cpu_threads)
    ctx = open_grid(profile, data_root=data_root, runs_dir=runs_dir, models=models, seeds=seeds)
    try:
        return _run_plan(ctx, profile, replace, started, cpu_started,
                         functools.partial(open_grid, profile, data_root=data_root, runs_dir=runs_dir,
                                           models=models, seeds=seeds))
    finally:
        if ctx.trial_workers is not None:
            ctx.trial_workers.close()


def _run_plan(ctx: GridContext, profile: Profile, replace: bool, started: float, cpu_started: float,
              reopen: Callable[[], GridContext]) -> GridReport:
    """`run_grid` once the grid is open: `reopen` opens it again in a trial worker."""
    accelerator = ctx.accelerator
    quiet_other_processes(accelerator)
    report = GridReport(ctx.runs.root, process=accelerator.process_index, processes=accelerator.num_processes)
    plan = list(ctx.plan.values())
    # The main process reads the run folders; every process gets its answer, so all run the same runs.
    finished = on_main_process(accelerator, lambda: {spec.key for spec in plan if _finished(spec, ctx)})
    others = [] if replace else on_main_process(
        accelerator, lambda: [line for spec in plan if spec.key not in finished and (line := _other_run(spec, ctx))])
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise FinishedRunsError(f"{others[0]}{more}: a finished run is not replaced by another config, data or "
                                f"split; pass --replace to retrain in place, or --runs ANOTHER_FOLDER to keep it")
    ctx.caches = CacheLedger.of_plan(plan, profile, [s.key for s in plan if s.key not in finished], ctx.hashes)
    to_train = [spec for spec in plan if spec.key not in finished and spec.kind == "train"]
    if to_train and (workers := trial_workers_for(profile, accelerator)) > 1:
        ctx.trial_workers = TrialWorkers.open(workers, reopen, profile.cpu_threads)
    pace = Pace(total=sum(spec.key not in finished for spec in plan))  # the runs to train
    for index, spec in enumerate(plan, start=1):
        folder = ctx.folder(spec)
        if spec.key in finished:
            report.skipped.append(spec.label)
            log.info("[%d/%d] %s: finished earlier, skipped", index, len(plan), spec.label)
            continue
        claim = _Claim(spec, ctx)
        status, problem = on_main_process(accelerator, functools.partial(claim.take, replace))
        if status == _FINISHED:
            report.skipped.append(spec.label)
            log.info("[%d/%d] %s: finished meanwhile by another process, skipped", index, len(plan), spec.label)
            report.caches_freed += _release_caches(spec, ctx)
            continue
        log.info("[%d/%d] %s: running (%s)", index, len(plan), spec.label, spec.kind)
        outcome, unwritable = None, None
        try:
            if status == _UNWRITABLE:
                unwritable = f"OSError: {problem}"
                raise OSError(problem)
            if status != _CLAIMED:
                raise RunLockedError(problem)
            outcome = execute_run(spec, ctx)
        except Exception as error:  # noqa: BLE001 - one run's failure must not stop the grid
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            where = ""
            if accelerator.is_main_process and claim.held:  # never into a folder another process holds
                unwritable = _write_error(folder, traceback.format_exc())
                where = f" (traceback in {folder.error})" if unwritable is None else f" (no error.txt: {unwritable})"
            if accelerator.num_processes > 1:
                raise  # the processes cannot be kept in step after a failure: the launch stops (rerun resumes)
            report.failed.append((spec.label, message))
            log.warning("[%d/%d] %s: FAILED: %s%s", index, len(plan), spec.label, message, where)
        finally:
            claim.release()
            # The grid's one Accelerator keeps every model, optimizer, scheduler and loader it prepared until
            # told otherwise: without this, each run's model and optimizer state stayed in memory to the end
            # (the full-size CPU rehearsal grew to 20.8 GB and was killed by the kernel after 27 runs).
            accelerator.free_memory()
        report.caches_freed += _release_caches(spec, ctx)  # finished or failed, it reads its caches no more
        pace.one_more()
        if outcome is None:
            if unwritable is not None:  # not even error.txt: every further run would fail the same way
                report.stopped = (f"nothing can be written in {ctx.runs.root} ({unwritable}); "
                                  f"{len(plan) - index} later run(s) not attempted: free space and rerun "
                                  f"(finished runs are kept)")
                log.error("grid stopped: %s", report.stopped)
                break
            continue
        report.executed.append(outcome)
        log.info("[%d/%d] %s: done in %.1f s, test macro-F1 %s (tuned %s); %s", index, len(plan), spec.label,
                 outcome.wall_time_s, _score(outcome.macro_f1), _score(outcome.macro_f1_tuned),
                 f"{pace.done} of {pace.total} runs to train done in {pace.so_far()}, eta {pace.eta()} at this pace")
    report.wall_time_s = time.perf_counter() - started
    workers_cpu = 0.0 if ctx.trial_workers is None else ctx.trial_workers.cpu_time_s
    report.cpu_time_s = time.process_time() - cpu_started + workers_cpu  # the trial workers' CPU included
    return report



def _finished(spec: RunSpec, ctx: GridContext) -> bool:
    return is_finished(ctx.folder(spec), config_hash=ctx.config_hash(spec), data_fingerprint=ctx.release.fingerprint,
                       split_hash=ctx.splits[spec.split].split_hash())


def _other_run(spec: RunSpec, ctx: GridContext) -> str | None:
    """One line when `spec`'s folder holds a finished run of another config, data or split (None otherwise:
    no record, an unreadable one, or this run's own record without its predictions)."""
    try:
        record = read_record(ctx.folder(spec))
    except RecordError:
        return None
    if record is None:
        return None
    theirs = (record.get("config_hash"), (record.get("data") or {}).get("fingerprint"),
              (record.get("split") or {}).get("hash"))
    ours = (ctx.config_hash(spec), ctx.release.fingerprint, ctx.splits[spec.split].split_hash())
    if theirs == ours:
        return None
    what = "config" if theirs[0] != ours[0] else "data" if theirs[1] != ours[1] else "split"
    return (f"{ctx.folder(spec).path} holds a finished run of another {what} ({str(theirs[0])[:12]}, made "
            f"{record.get('created', 'earlier')}; this run: {ours[0][:12]})")


_CLAIMED, _FINISHED, _REFUSED, _UNWRITABLE = "claimed", "finished", "refused", "unwritable"


class _Claim:
    """A run folder taken by the main process for one run: its lock, and the mark on the feature caches it
    reads (so no cache cleaning deletes them meanwhile)."""

    def __init__(self, spec: RunSpec, ctx: GridContext):
        self.spec, self.ctx = spec, ctx
        self.lock = RunLock(ctx.folder(spec).lock, spec.label)
        self.mark: CacheReadMark | None = None

    @property
    def held(self) -> bool:
        return self.lock.held

    def take(self, replace: bool) -> tuple[str, str | None]:
        """(_CLAIMED, None); (_FINISHED, None) when another process finished it meanwhile; (_REFUSED, one
        line) when another holds it or replaced it meanwhile; (_UNWRITABLE, one line) when not even the lock
        file can be written (a full disk)."""
        try:
            self.lock.acquire()
            # Decided again under the lock: another process may have finished or replaced the run meanwhile.
            if _finished(self.spec, self.ctx):
                self.release()
                return _FINISHED, None
            if other := _other_run(self.spec, self.ctx):
                if not replace:
                    self.release()
                    return _REFUSED, f"{other}; pass --replace to retrain in place"
                log.warning("%s: retrained in place (replace)", other)
            needs = [need.label for need in self.ctx.caches.needs.get(self.spec.key, ())]
            if needs:
                self.mark = CacheReadMark(cache_dir(), self.spec.label, needs).__enter__()
        except RunLockedError as error:
            return _REFUSED, str(error)
        except OSError as error:
            self.release()
            return _UNWRITABLE, str(error).splitlines()[0]
        return _CLAIMED, None

    def release(self) -> None:
        if self.mark is not None:
            self.mark.__exit__(None, None, None)
            self.mark = None
        self.lock.release()


def _write_error(folder: RunFolder, text: str) -> str | None:
    """Write error.txt; None, or why it could not be written (one line: the disk is full, the folder gone)."""
    try:
        write_error(folder, text)
    except OSError as error:
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def _release_caches(spec: RunSpec, ctx: GridContext) -> list[tuple[Path, int]]:
    """After a run (finished or failed): delete the feature caches no later run of the grid reads, nor a run
    of another grid reads now (`locks.live_cache_reads`). Every process waits first, so none is still
    reading; the main process deletes."""
    ctx.accelerator.wait_for_everyone()
    busy = live_cache_reads(cache_dir()).needs if ctx.accelerator.is_main_process else frozenset()
    freed = ctx.caches.release_after(spec.key, delete=ctx.accelerator.is_main_process, busy=busy)
    for path, size in freed:
        log.info("deleted feature cache %s (%.1f MB): no later run of the grid reads it", path.name, size / 1e6)
    return freed


def clean_caches(
    profile: Profile | None,
    *,
    data_root: str | None = None,
    runs_dir: str | None = None,
    dry_run: bool = False,
) -> CacheCleaning:
    """Remove the feature caches no unfinished run of `profile`'s grid reads (`caches.clean_feature_caches`);
    `profile=None` removes them all."""
    if profile is None:
        return clean_feature_caches(None, dry_run=dry_run)
    ctx = open_grid(profile, data_root=data_root, runs_dir=runs_dir)
    plan = list(ctx.plan.values())
    pending = [spec.key for spec in plan if not _finished(spec, ctx)]
    ledger = CacheLedger.of_plan(plan, profile, pending, ctx.hashes)
    needed = {need.label for need in ledger.still_needed()}
    return clean_feature_caches(needed, data_fingerprint=ctx.release.fingerprint, dry_run=dry_run)
