"""`thesis datasize [--out results/datasize.json] [--smoke]`: the data-size curve on the twin (does
cross-attention overtake early and attention fusion on the alignment genres as training movies grow?),
trained on one CPU core, written as one JSON file with its provenance; the book's capacity chapter reads
that file. The twin and its fixed tokens are made once under data/datasize/ (never committed) and reused.
`--smoke`: tiny sizes that check the path in seconds (its file is not the chapter's: another
configuration). Progress goes to stderr, one line per fusion, size and seed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = "results/datasize.json"  # analysis.datasize.RESULTS_FILE, spelled here to keep torch off `--help`


def add_commands(commands: argparse._SubParsersAction) -> None:
    datasize = commands.add_parser(
        "datasize", help="a data-size curve on the twin: cross-attention vs. early and attention fusion")
    datasize.add_argument("--out", default=DEFAULT_OUT, metavar="FILE",
                          help=f"the results file to write (default: {DEFAULT_OUT}, which the book reads)")
    datasize.add_argument("--smoke", action="store_true",
                          help="tiny sizes, one seed: checks the command in seconds (not the chapter's numbers)")
    datasize.set_defaults(handler=datasize_command)


def datasize_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.analysis.datasize import DataSizeConfig, run_datasize, write_results

    config = DataSizeConfig.smoke() if ns.smoke else DataSizeConfig()
    print(f"budget: {config.budget_minutes:g} min wall on one core (sizes {', '.join(map(str, config.sizes))}; "
          f"seeds {', '.join(map(str, config.seeds))})", file=sys.stderr, flush=True)
    document = run_datasize(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    write_results(Path(ns.out), document)
    budget = document["budget"]
    print(f"wrote {ns.out}: {len(document['runs'])} runs in {budget['wall_minutes']:g} min "
          f"({'within' if budget['within'] else 'OVER'} the {budget['minutes']:g} min budget; "
          f"config {document['config_hash']}, commit {(document['git']['commit'] or 'unknown')[:7]}"
          f"{', uncommitted changes' if document['git']['dirty'] else ''})")
    return 0
