"""`thesis run`: the (model x seed) grid of a profile; finished runs are skipped.

Exit status 0 when every run finished (now or earlier), 1 when some failed (after running all others);
a profile problem is a `ThesisError` (exit 2). Progress goes to stderr as log lines, the summary to stdout.
A finished run of another config, data or split in the runs folder is not replaced (exit 2, naming it)
unless `--replace` is given; another `thesis run` working on a run folder is waited for (THESIS_LOCK_WAIT
seconds, default 60), then that run fails with one line naming the process.

`--check` prints the preflight (release, weights, device, disk, memory; one line each) and exits 2 when
something stops the run, 0 otherwise, without training. `--plan [--json]` prints the plan (every run, FLOPs,
GPU time, CPU-side work, peak disk) without training. A full-size profile (model_size: full) runs the
preflight before training and stops with exit 2 when it finds a problem.

`--rehearse` (a full-size profile): the rehearsal of `thesis_lib.experiments.rehearsal`: the profile with
REHEARSAL_CHANGES, in the rehearsal's own cache root, its twin and random stand-ins written on first use
(not with --check), then the preflight (stand-ins are an expected warning there) and the grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from thesis_lib.cli.arguments import add_profile_option, add_runs_option, key_value, name_list, seed_list
from thesis_lib.cli.errors import EXIT_USER_ERROR
from thesis_lib.errors import ThesisError

if TYPE_CHECKING:
    from thesis_lib.experiments.profile import Profile

EXIT_RUNS_FAILED = 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the (model x seed) grid of a profile; finished runs are skipped")
    add_profile_option(run)
    run.add_argument("--data", default=None, help="release folder (default: the profile's data_root, or its twin)")
    add_runs_option(run)
    run.add_argument("--models", default=None, help="comma-separated model names (default: the profile's list)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's seeds)")
    what = run.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="only the preflight: what would stop the run (exit 2 if anything does)")
    what.add_argument("--plan", action="store_true",
                      help="only the plan: every run, FLOPs, GPU time, CPU-side work, peak disk (no training)")
    run.add_argument("--rehearse", action="store_true",
                     help="rehearse a full-size profile on CPU: every run at full size on random stand-in weights, "
                          "a step per run, a small twin, into runs-rehearsal/ (see thesis_lib/experiments/rehearsal.py)")
    run.add_argument("--replace", action="store_true",
                     help="retrain in place the finished runs of another config, data or split (default: refuse, "
                          "naming them)")
    run.add_argument("--json", action="store_true", help="with --plan: the plan as JSON")
    run.add_argument("--gpu", default=None, metavar="NAME",
                     help="with --plan: plan for this GPU (e.g. 'A100-SXM4-80GB'; default: this machine's, else an H100)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a profile value")
    run.set_defaults(handler=run_command)


def run_command(ns: argparse.Namespace) -> int:
    overrides = dict(key_value(item) for item in ns.overrides)
    seeds = seed_list(ns.seeds)  # bad input is reported before any data is read
    if ns.gpu and not ns.plan:
        raise ThesisError("--gpu goes with --plan (a run uses the GPU it finds)")
    if ns.json and not ns.plan:
        raise ThesisError("--json goes with --plan (the preflight prints lines)")
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.experiments.grid import run_grid
    from thesis_lib.experiments.layout import RunsFolder
    from thesis_lib.experiments.preflight import preflight
    from thesis_lib.experiments.profile import load_profile
    from thesis_lib.experiments.specs import plan_grid

    profile = load_profile(ns.profile, overrides)
    models = name_list(ns.models, "--models")
    plan_grid(profile, models, seeds)  # every parameter is checked before any data is read, whatever the mode
    if ns.runs:
        RunsFolder(Path(ns.runs).expanduser())  # a file there is one line now, in --check and --plan too
    if ns.rehearse:
        profile = rehearse(profile, ns)
    if ns.plan:
        return plan_command(profile, ns, models, seeds)
    if ns.check or profile.model_size == "full":
        report = preflight(profile, data_root=ns.data, runs_dir=ns.runs, models=models, seeds=seeds)
        print(report.summary(), file=sys.stdout if ns.check else sys.stderr, flush=True)
        if not report.ok:
            return EXIT_USER_ERROR
        if ns.check:
            return 0
    report = run_grid(profile, data_root=ns.data, runs_dir=ns.runs, models=models, seeds=seeds, replace=ns.replace)
    print(report.summary(), flush=True)
    return 0 if report.ok else EXIT_RUNS_FAILED


def rehearse(profile: Profile, ns: argparse.Namespace) -> Profile:
    """The rehearsal of `profile`, this process in its cache root, its twin and stand-ins ready (unless only
    checking or planning: then the preflight or plan says what is missing)."""
    from thesis_lib.experiments.grid import resolve_data_root
    from thesis_lib.experiments.rehearsal import enter_rehearsal, rehearsal_profile, write_rehearsal_standins

    # KEY=VALUE still wins over the rehearsal's own changes (e.g. seeds=0 splits=thesis: a part of it).
    rehearsal = rehearsal_profile(profile, dict(key_value(item) for item in ns.overrides))
    environment = enter_rehearsal()
    print(f"rehearsal: cache root {environment['THESIS_CACHE']}, runs {ns.runs or rehearsal.runs_path()}",
          file=sys.stderr, flush=True)
    if ns.check or ns.plan:
        return rehearsal
    root = resolve_data_root(rehearsal, ns.data)  # the rehearsal's twin is generated on first use
    report = write_rehearsal_standins(rehearsal, root, name_list(ns.models, "--models"))
    for line in report.lines():
        print(line, file=sys.stderr, flush=True)
    return rehearsal


def plan_command(profile: Profile, ns: argparse.Namespace, models: list[str] | None, seeds: list[int] | None) -> int:
    """`thesis run --plan`: the forecast over the release the grid would read (it must exist)."""
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.experiments.forecast import forecast_grid
    from thesis_lib.experiments.grid import resolve_data_root

    release = load_release(resolve_data_root(profile, ns.data), plot_choice=profile.plot_choice,
                           verify_posters="none")
    forecast = forecast_grid(profile, release, models=models, seeds=seeds,
                             runs_dir=Path(ns.runs).expanduser() if ns.runs else None, gpu=ns.gpu)
    print(json.dumps(forecast.to_dict(), indent=1) if ns.json else forecast.summary(), flush=True)
    return 0
