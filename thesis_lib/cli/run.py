"""`thesis run`: the (model x seed) grid of a profile; finished runs are skipped.

Exit status 0 when every run finished (now or earlier), 1 when some failed (after running all others);
a profile problem is a `ThesisError` (exit 2). Progress goes to stderr as log lines, the summary to stdout.
"""

from __future__ import annotations

import argparse

from thesis_lib.cli.arguments import key_value, name_list, seed_list

EXIT_RUNS_FAILED = 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the (model x seed) grid of a profile; finished runs are skipped")
    run.add_argument("--profile", default="smoke", help="smoke | full, or a .yaml profile file (default: smoke)")
    run.add_argument("--data", default=None, help="release folder (default: the profile's data_root, or its twin)")
    run.add_argument("--runs", default=None, help="runs folder (default: the profile's runs_dir)")
    run.add_argument("--models", default=None, help="comma-separated model names (default: the profile's list)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's seeds)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a profile value")
    run.set_defaults(handler=run_command)


def run_command(ns: argparse.Namespace) -> int:
    overrides = dict(key_value(item) for item in ns.overrides)
    seeds = seed_list(ns.seeds)  # bad input is reported before torch is even imported
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.experiments.grid import run_grid
    from thesis_lib.experiments.profile import load_profile

    report = run_grid(load_profile(ns.profile, overrides), data_root=ns.data, runs_dir=ns.runs,
                      models=name_list(ns.models), seeds=seeds)
    print(report.summary(), flush=True)
    return 0 if report.ok else EXIT_RUNS_FAILED
