"""What will stop a grid, found in under a minute before anything is trained: `preflight(profile)`.

One line per item, each "ok", "warning" or "stop":
- release:  the data the profile reads loads (posters checked by their headers only: seconds, not minutes);
- weights:  every pretrained weight the runs load is cached and not a stand-in (`experiments.weights`);
- device:   `device: auto` needs a usable GPU for a full-size profile; the reason there is none is named (no
            CUDA device, a driver too old for the installed torch's CUDA, a GPU this build has no kernels
            for). `device: cpu` with full-size models is a warning (it runs, for days). On a GPU the line is
            the device banner the run records keep (name, memory, bf16/fp16, count);
- disk:     free space where runs and feature caches go against the plan's peak (`experiments.forecast`),
            less what already exists (venv, release, weights);
- memory:   MemAvailable against a stated need (`ram_need_bytes`).
`thesis run --check` prints the lines and exits 2 when one says stop; `thesis run` of a full-size profile
runs the preflight first and stops the same way. The book command can call `preflight` the same way.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thesis_lib.data.mmimdb import Release, load_release
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.forecast import Forecast, forecast_grid
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.weights import profile_weights, weight_problems
from thesis_lib.machine import DeviceBanner, choose_device, device_banner, gpu_problem, loader_workers, proc_bytes
from thesis_lib.paths import cache_dir

STATUSES = ("ok", "warning", "stop")
PLOT_SAMPLE = 3000  # plots tokenised for the preflight's disk estimate (the plan tokenises all of them)
DISK_MARGIN = 1.10  # less than 10% to spare over the projected need is a warning
# Host memory a grid needs: the main process with the release, a model and its optimizer state, plus each
# loader worker's copy of the dataset and its torch runtime (stated, not measured). Where the models train on
# the host (device cpu) their activations live there too: BERT-base at batch 32 x 512 tokens in float32 keeps
# ~34 x 4 bytes per token, layer and hidden unit with a fused attention kernel (Korthikanti et al. 2022),
# ~10 GB, plus ~2 GB of weights, gradients and AdamW state: estimated, not measured. (A 19.7 GB peak once
# seen in the CPU rehearsal was a leak across runs, since fixed, not a need.)
RAM_BASE_BYTES = {("full", "cuda"): 8e9, ("full", "cpu"): 14e9, ("small", "cuda"): 3e9, ("small", "cpu"): 3e9}
RAM_PER_WORKER_BYTES = 0.5e9


@dataclass(frozen=True)
class CheckLine:
    """One item of the preflight."""

    item: str       # "release", "weights", "device", "disk", "memory", ...
    status: str     # "ok" | "warning" | "stop"
    message: str    # one line: what was found, and for a stop what to do

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    def line(self) -> str:
        return f"{self.status.upper():<7} {self.item:<8} {self.message}"


@dataclass
class PreflightContext:
    """What the checks look at; a check adds nothing to it but its lines."""

    profile: Profile
    data_root: Path | None          # the release folder the grid would read (None: none named)
    runs_dir: Path
    release: Release | None = None  # None when it could not be loaded
    forecast: Forecast | None = None
    models: Sequence[str] | None = None
    seeds: Sequence[int] | None = None


Check = Callable[[PreflightContext], list[CheckLine]]

def check_weights(ctx: PreflightContext) -> list[CheckLine]:
    """Every pretrained weight the profile's runs load is cached and genuine (`experiments.weights`): one
    stop line per missing weight or stand-in, naming the runs that need it and the command that fetches it.
    In a rehearsal (`experiments.rehearsal`) stand-ins are what it runs on: one expected warning."""
    if ctx.profile.rehearsal:
        return check_rehearsal_weights(ctx.profile, ctx.models)
    weights = profile_weights(ctx.profile)  # listed once: each entry looks at its files on disk
    problems = weight_problems(ctx.profile, weights)
    if problems:
        return [CheckLine("weights", "stop", problem) for problem in problems]
    count = len(weights)
    return [CheckLine("weights", "ok", f"all {count} pretrained weights the runs load are cached" if count
                      else "no pretrained weights needed (every encoder starts from random weights)")]


def check_rehearsal_weights(profile: Profile, models: Sequence[str] | None = None) -> list[CheckLine]:
    """A rehearsal runs on random stand-ins under the real names: a warning naming them (expected), a stop
    for any that is missing (`thesis run --rehearse` writes them first). Only the weights of `models` (and
    the runs they reuse) when given."""
    weights = profile_weights(profile, models)
    by_status = {status: [w.name for w in weights if w.status == status] for status in ("stand-in", "missing", "cached")}
    lines = []
    if by_status["missing"]:
        lines.append(CheckLine("weights", "stop", f"rehearsal: {len(by_status['missing'])} stand-in(s) missing "
                                                  f"({', '.join(by_status['missing'])}): `thesis run --profile "
                                                  f"{profile.profile} --rehearse` writes them"))
    if by_status["stand-in"]:
        lines.append(CheckLine("weights", "warning", f"rehearsal: stand-ins: {len(by_status['stand-in'])} random "
                                                     f"full-size weights under the real names "
                                                     f"({', '.join(by_status['stand-in'])}) in {cache_dir()}; "
                                                     "expected here, and no number of this grid is a result"))
    if by_status["cached"]:
        lines.append(CheckLine("weights", "warning", f"rehearsal: {', '.join(by_status['cached'])} in {cache_dir()} "
                                                     "are genuine weights, not stand-ins"))
    return lines or [CheckLine("weights", "ok", "rehearsal: no pretrained weight needed")]


@dataclass
class PreflightReport:
    """The preflight's lines, the device banner on a GPU, and the plan it checked the disk against."""

    lines: list[CheckLine]
    banner: DeviceBanner | None = None
    forecast: Forecast | None = field(default=None, repr=False)
    wall_time_s: float = 0.0

    @property
    def stops(self) -> list[CheckLine]:
        return [line for line in self.lines if line.status == "stop"]

    @property
    def ok(self) -> bool:
        """True when nothing stops the run (warnings allowed)."""
        return not self.stops

    def summary(self) -> str:
        verdict = (f"preflight: {len(self.stops)} problem(s) stop the run" if self.stops
                   else "preflight: nothing stops the run")
        return "\n".join([*(line.line() for line in self.lines), f"{verdict} ({self.wall_time_s:.0f} s)"])

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "lines": [vars(line) for line in self.lines],
                "banner": None if self.banner is None else self.banner.to_dict(), "wall_time_s": self.wall_time_s}


def preflight(
    profile: Profile,
    data_root: str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    *,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> PreflightReport:
    """Check release, weights, device, disk and memory for `profile`'s grid; see the module docstring."""
    started = time.perf_counter()
    ctx = PreflightContext(profile, _data_root(profile, data_root),
                           Path(runs_dir).expanduser() if runs_dir else profile.runs_path(), models=models, seeds=seeds)
    lines = check_release(ctx)
    lines += check_weights(ctx)
    device_lines, banner = check_device(profile)
    lines += device_lines
    lines += check_disk(ctx)
    lines += check_memory(profile)
    return PreflightReport(lines, banner, ctx.forecast, time.perf_counter() - started)


def _data_root(profile: Profile, data_root: str | os.PathLike[str] | None) -> Path | None:
    """The release the grid reads: --data, the profile's data_root, else its twin (which may not exist yet)."""
    root = data_root or profile.data_root
    if root is not None:
        return Path(root).expanduser()
    return profile.twin_path()


def check_release(ctx: PreflightContext) -> list[CheckLine]:
    """The release loads (poster headers only), and the plan is made over it for the disk check."""
    profile, root = ctx.profile, ctx.data_root
    if root is None:
        return [CheckLine("release", "stop", f"profile {profile.profile!r} names no data: pass --data ROOT "
                                             f"(the MM-IMDb release folder)")]
    if profile.data_root is None and root == profile.twin_path() and not (root / TRUTH_FILE).is_file():
        return [CheckLine("release", "ok", f"the synthetic twin will be generated in {root} "
                                           f"({profile.twin_movies:,} movies)")]
    try:
        ctx.release = load_release(root, plot_choice=profile.plot_choice, verify_posters="header")
    except (ThesisError, OSError, ValueError) as error:
        return [CheckLine("release", "stop", f"{root} is not usable: {str(error).splitlines()[0]}")]
    release = ctx.release
    if not release.movies:
        return [CheckLine("release", "stop", f"{release.root}: no usable movie ({len(release.skipped)} skipped; "
                                             f"`thesis data check {release.root}` lists why)")]
    skipped = f"; {len(release.skipped):,} skipped (`thesis data check` lists them)" if release.skipped else ""
    status = "warning" if release.skipped else "ok"
    return [CheckLine("release", status, f"{len(release.movies):,} movies in {release.root} (poster headers "
                                         f"checked){skipped}")]


def check_device(profile: Profile) -> tuple[list[CheckLine], DeviceBanner | None]:
    """A usable GPU for `device: auto` (stop for full-size models without one), a warning for full-size
    models on `device: cpu`; on a GPU the banner."""
    full = profile.model_size == "full"
    if profile.device == "cpu":
        if full:
            return [CheckLine("device", "warning", "device: cpu with full-size models: every run, extraction, "
                                                   "detection and explanation computes on the CPU (days)")], None
        return [CheckLine("device", "ok", "device: cpu (the profile's choice)")], None
    problem = gpu_problem()
    if problem is not None:
        status = "stop" if full else "warning"
        advice = ("; or set device=cpu to run on the CPU anyway (days at full size)" if full
                  else "; the runs use the CPU")
        return [CheckLine("device", status, f"no usable GPU: {problem}{advice}")], None
    banner = device_banner(choose_device(profile.device), profile.mixed_precision)
    note = "" if banner.effective_precision == profile.mixed_precision else " (no bf16 kernels: fp16 with loss scaling)"
    return [CheckLine("device", "ok", banner.line().removeprefix("device: ") + note)], banner


def check_disk(ctx: PreflightContext) -> list[CheckLine]:
    """Free space for the plan's peak where runs and feature caches are written."""
    if ctx.release is None:
        return [CheckLine("disk", "warning", "not checked: the plan needs the release")]
    try:
        ctx.forecast = forecast_grid(ctx.profile, ctx.release, models=ctx.models, seeds=ctx.seeds,
                                     runs_dir=ctx.runs_dir, plot_sample=PLOT_SAMPLE)
    except ThesisError as error:
        return [CheckLine("disk", "stop", f"no plan: {error}")]
    forecast = ctx.forecast
    totals = forecast.totals
    missing = [item for item in forecast.fixed if not item.exists]
    runs_need = totals["peak_checkpoint_bytes"]
    cache_need = totals["peak_cache_bytes"] + sum(item.bytes for item in missing)  # weights land in the cache
    folders = {"runs": (ctx.runs_dir, runs_need), "cache": (cache_dir(), cache_need)}
    devices: dict[int, tuple[list[str], float, float, Path]] = {}
    for name, (folder, need) in folders.items():
        existing = _existing_ancestor(folder)
        device = os.stat(existing).st_dev
        names, total, _, _ = devices.get(device, ([], 0.0, 0.0, existing))
        devices[device] = ([*names, f"{name} {folder}"], total + need, shutil.disk_usage(existing).free, existing)
    lines = []
    for names, need, free, _ in devices.values():
        where = " and ".join(names)
        text = (f"{free / 1e9:.1f} GB free for {where}; the plan's peak needs {need / 1e9:.1f} GB more "
                f"(peak {totals['peak_disk_bytes'] / 1e9:.1f} GB during {totals['peak_disk_run']}, "
                f"{forecast.existing_bytes / 1e9:.1f} GB of it already here)")
        status = "stop" if free < need else "warning" if free < DISK_MARGIN * need else "ok"
        lines.append(CheckLine("disk", status, text))
    return lines


def _existing_ancestor(folder: Path) -> Path:
    """`folder` or its nearest existing parent (disk_usage needs a path that exists)."""
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def ram_need_bytes(profile: Profile) -> float:
    """Host memory for the profile's grid: a base by model size and where the models train (measured for a
    full-size grid on the CPU, stated otherwise), plus each loader worker."""
    return _ram_base_bytes(profile) + RAM_PER_WORKER_BYTES * loader_workers(profile.num_workers)


def _ram_base_bytes(profile: Profile) -> float:
    return RAM_BASE_BYTES[profile.model_size, choose_device(profile.device).type]


def check_memory(profile: Profile) -> list[CheckLine]:
    """MemAvailable (/proc/meminfo) against `ram_need_bytes`."""
    available = memory_available_bytes()
    need = ram_need_bytes(profile)
    if available is None:
        return [CheckLine("memory", "warning", f"not checked (no /proc/meminfo); the grid needs about "
                                               f"{need / 1e9:.1f} GB")]
    status = "stop" if available < need else "ok"
    where = "on the host" if choose_device(profile.device).type == "cpu" else "beside the GPU"
    return [CheckLine("memory", status, f"{available / 1e9:.1f} GB available, about {need / 1e9:.1f} GB needed "
                                        f"({_ram_base_bytes(profile) / 1e9:.0f} GB training {where} + "
                                        f"{RAM_PER_WORKER_BYTES / 1e9:.1f} GB x {loader_workers(profile.num_workers)} "
                                        f"loader workers)")]


def memory_available_bytes() -> int | None:
    return proc_bytes("/proc/meminfo", "MemAvailable")
