"""`thesis capacity [--out results/capacity.json] [--smoke]`: the capacity experiment (when does
cross-attention fusion help?), trained on one CPU core, written as one JSON file with its provenance; the
book's capacity section reads that file. `--smoke`: tiny sizes that check the path in seconds (its file
is not the chapter's: another configuration). Progress goes to stderr, one line per model and seed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = "results/capacity.json"  # analysis.capacity.RESULTS_FILE, spelled here to keep torch off `--help`


def add_commands(commands: argparse._SubParsersAction) -> None:
    capacity = commands.add_parser(
        "capacity", help="controlled token tasks through every fusion class: when does cross-attention help?")
    capacity.add_argument("--out", default=DEFAULT_OUT, metavar="FILE",
                          help=f"the results file to write (default: {DEFAULT_OUT}, which the book reads)")
    capacity.add_argument("--smoke", action="store_true",
                          help="tiny sizes, one seed: checks the command in seconds (not the chapter's numbers)")
    capacity.set_defaults(handler=capacity_command)


def capacity_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.analysis.capacity import CapacityConfig, run_capacity, write_results

    config = CapacityConfig.smoke() if ns.smoke else CapacityConfig()
    document = run_capacity(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    write_results(Path(ns.out), document)
    print(f"wrote {ns.out}: {len(document['runs'])} runs in {document['wall_time_s']:.0f} s "
          f"(config {document['config_hash']}, commit {(document['git']['commit'] or 'unknown')[:7]}"
          f"{', uncommitted changes' if document['git']['dirty'] else ''})")
    return 0
