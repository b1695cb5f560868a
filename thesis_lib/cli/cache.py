"""`thesis cache clean [--all] [--dry-run]`: remove feature caches no unfinished run of the grid reads.

The grid deletes a feature cache after its last reader; what stays behind is stale (other weights, other
data, an older format) or belongs to runs a stopped grid has not reached yet. `clean` keeps the latter and
removes the rest, printing each file and the bytes freed; `--all` removes every feature cache.
"""

from __future__ import annotations

import argparse

from thesis_lib.cli.arguments import add_profile_option, add_runs_option


def add_commands(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser("cache", help="the feature caches of frozen-encoder runs")
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    clean = actions.add_parser("clean", help="remove feature caches no unfinished run of the grid reads")
    add_profile_option(clean)
    clean.add_argument("--data", default=None, help="release folder (default: the profile's data_root, or its twin)")
    add_runs_option(clean)
    clean.add_argument("--all", action="store_true", help="remove every feature cache, needed or not")
    clean.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    clean.set_defaults(handler=clean_command)


def clean_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.experiments.grid import clean_caches
    from thesis_lib.experiments.profile import load_profile

    profile = None if ns.all else load_profile(ns.profile, {})
    result = clean_caches(profile, data_root=ns.data, runs_dir=ns.runs, dry_run=ns.dry_run)
    print("\n".join(result.lines()), flush=True)
    return 0
