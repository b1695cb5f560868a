"""The experiment grid: every (run, seed, split) of a profile, in sequence, resumable and crash-isolated.

`run_grid` loads the data once (generating the synthetic twin when the profile asks for it and it is
missing), makes or reads the splits, plans the runs (`specs.plan_grid`: baselines, single-modality runs,
late fusion, trained fusions) and executes each one that is not finished yet. A run is finished when its
record exists with the same config hash, data fingerprint and split hash; anything else reruns. A failing
run writes its traceback to `error.txt` in its folder and the grid goes on; runs that need it then fail
too (with a message naming it). The returned `GridReport` lists every failure (`thesis run` then exits
non-zero). Progress, one line per run, goes to this module's logger.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from thesis_lib.data.mmimdb import Release, load_release
from thesis_lib.data.splits import Split, load_or_create_thesis_split, official_split
from thesis_lib.data.twin import TwinConfig, generate_twin
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.pipeline import GridContext
from thesis_lib.experiments.profile import Profile, ProfileError
from thesis_lib.experiments.records import is_finished, write_error
from thesis_lib.experiments.runner import RunOutcome, execute_run
from thesis_lib.experiments.specs import config_hashes, plan_grid
from thesis_lib.machine import choose_device, device_banner, effective_precision

log = logging.getLogger(__name__)


@dataclass
class GridReport:
    """What one `run_grid` call did."""

    runs_dir: Path
    executed: list[RunOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # labels of runs that were already finished
    failed: list[tuple[str, str]] = field(default_factory=list)  # (label, one-line error)
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"grid: {len(self.executed)} ran, {len(self.skipped)} already finished, {len(self.failed)} failed "
                 f"in {self.wall_time_s:.1f} s wall ({self.cpu_time_s:.1f} s CPU) -> {self.runs_dir}"]
        for outcome in self.executed:
            lines.append(f"  ran     {outcome.spec.label:<52} {outcome.wall_time_s:7.1f} s  macro-F1 "
                         f"{_score(outcome.macro_f1)} (tuned {_score(outcome.macro_f1_tuned)})")
        lines += [f"  FAILED  {label}: {error}" for label, error in self.failed]
        return "\n".join(lines)


def _score(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def resolve_data_root(profile: Profile, data_root: str | None) -> Path:
    """--data, else the profile's data_root, else the profile's twin (generated when missing)."""
    root = data_root or profile.data_root
    if root is not None:
        return Path(root).expanduser()
    if profile.twin_root is None:
        raise ProfileError(f"profile {profile.profile!r} names no data: pass --data ROOT (or set data_root)")
    twin = profile.twin_path()

    if not (twin / TRUTH_FILE).is_file():
        log.info("generating the synthetic twin (%d movies, seed %d) in %s", profile.twin_movies, profile.twin_seed,
                 twin)
        log.info("%s", generate_twin(twin, TwinConfig(n_movies=profile.twin_movies, seed=profile.twin_seed),
                                     overwrite=True))
    return twin


def make_splits(profile: Profile, release: Release, runs: RunsFolder) -> dict[str, Split]:
    """The profile's splits; the thesis split is made once per release and stored under RUNS/splits/."""
    splits = {}
    for name in profile.splits:
        if name == "official":
            splits[name] = official_split(release)
        else:
            path = runs.splits / f"thesis-seed{profile.split_seed}-{release.fingerprint[:12]}.json"
            splits[name] = load_or_create_thesis_split(release, path, seed=profile.split_seed)
    return splits


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
    release = load_release(resolve_data_root(profile, data_root), plot_choice=profile.plot_choice)
    log.info("data: %d movies from %s (fingerprint %s); %d skipped", len(release.movies), release.root,
             release.fingerprint[:12], len(release.skipped_ids))
    splits = make_splits(profile, release, runs)
    # One decision for the whole grid (thesis_lib.machine): the GPU when `device: auto` finds a usable one,
    # bf16 -> fp16 on a GPU without bf16, and no autocast at all on the CPU.
    device = choose_device(profile.device)
    accelerator = Accelerator(cpu=device.type == "cpu",
                              mixed_precision=effective_precision(device, profile.mixed_precision))
    if accelerator.is_main_process:
        log.info("%s", device_banner(accelerator.device, profile.mixed_precision).line())
    return GridContext(profile, release, splits, runs, accelerator, {s.key: s for s in plan},
                       config_hashes(plan, profile))


def run_grid(
    profile: Profile,
    *,
    data_root: str | None = None,
    runs_dir: str | None = None,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> GridReport:
    """Run (or skip, when finished) every run of the profile's grid; see the module docstring."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile.cpu_threads:
        torch.set_num_threads(profile.cpu_threads)
    ctx = open_grid(profile, data_root=data_root, runs_dir=runs_dir, models=models, seeds=seeds)
    report = GridReport(ctx.runs.root)
    release, splits = ctx.release, ctx.splits
    plan = list(ctx.plan.values())
    for index, spec in enumerate(plan, start=1):
        folder = ctx.folder(spec)
        split_hash = splits[spec.split].split_hash()
        if is_finished(folder, config_hash=ctx.config_hash(spec), data_fingerprint=release.fingerprint,
                       split_hash=split_hash):
            report.skipped.append(spec.label)
            log.info("[%d/%d] %s: finished earlier, skipped", index, len(plan), spec.label)
            continue
        log.info("[%d/%d] %s: running (%s)", index, len(plan), spec.label, spec.kind)
        try:
            outcome = execute_run(spec, ctx)
        except Exception as error:  # noqa: BLE001 - one run's failure must not stop the grid
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            write_error(folder, traceback.format_exc())
            report.failed.append((spec.label, message))
            log.warning("[%d/%d] %s: FAILED: %s (traceback in %s)", index, len(plan), spec.label, message,
                        folder.error)
            continue
        report.executed.append(outcome)
        log.info("[%d/%d] %s: done in %.1f s, test macro-F1 %s (tuned %s)", index, len(plan), spec.label,
                 outcome.wall_time_s, _score(outcome.macro_f1), _score(outcome.macro_f1_tuned))
    report.wall_time_s = time.perf_counter() - started
    report.cpu_time_s = time.process_time() - cpu_started
    return report

