"""`thesis xai check [--runs DIR] [--data ROOT] [--profile P] [--json] [--tolerance PX] [--split thesis]
[--device auto|cpu]`: faithfulness of explanations. Exit status 1 when a run could not be loaded (it is listed,
the others checked).

The runs folder is --runs DIR, else the profile's runs_dir; the data is --data ROOT, else the profile's
data_root, else its twin (never generated here: the runs were made on it). The pointing game's tolerance
defaults to the book's (xai.check.POINTING_TOLERANCE_PX), so the default output is the published table."""

from __future__ import annotations

import argparse
import json

from thesis_lib.cli.arguments import add_profile_option, add_runs_option, runs_folder
from thesis_lib.errors import ThesisError

EXIT_BROKEN_RUNS = 1  # some run could not be loaded (listed under skipped_runs): the others were still checked


def add_commands(commands: argparse._SubParsersAction) -> None:
    xai = commands.add_parser("xai", help="explanations and their faithfulness")
    actions = xai.add_subparsers(dest="xai_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="score Grad-CAM and attention of trained runs against the twin's ground truth"
    )
    add_runs_option(check, "runs folder written by `thesis run` (default: the profile's runs_dir)")
    check.add_argument("--data", default=None, metavar="ROOT",
                       help="the release the runs were trained on, a twin has ground truth (default: the profile's "
                            "data_root, else its twin)")
    add_profile_option(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--split", default="thesis", help="the split whose runs are checked (default: thesis)")
    # The default (None) is xai.check.POINTING_TOLERANCE_PX, read in the handler: importing it here would put
    # torch on `--help`'s import path.
    check.add_argument("--tolerance", type=float, default=None, metavar="PX",
                       help="pointing game: count a maximum within PX poster pixels of the box (default: the "
                            "book's, 0: strictly inside, as the maps read a grid fine enough for the objects; "
                            "Zhang et al. allow 15); the output names it")
    check.add_argument("--device", choices=("auto", "cpu"), default="auto",
                       help="where the models are explained: auto = the GPU when there is one (default), cpu")
    check.set_defaults(handler=check_command)


def check_command(ns: argparse.Namespace) -> int:
    if ns.tolerance is not None and ns.tolerance < 0:
        raise ThesisError(f"--tolerance must be >= 0 pixels, got {ns.tolerance}")
    # Imported here: keeps torch and grad-cam off `--help`'s import path.
    from thesis_lib.analysis.xai_check import check_runs, format_table
    from thesis_lib.experiments.grid import resolve_data_root
    from thesis_lib.experiments.profile import load_profile
    from thesis_lib.xai.check import POINTING_TOLERANCE_PX, XaiCheckConfig

    runs = runs_folder(ns)
    data = resolve_data_root(load_profile(ns.profile), ns.data, generate=False)
    tolerance = POINTING_TOLERANCE_PX if ns.tolerance is None else ns.tolerance
    summary = check_runs(data, runs, XaiCheckConfig(pointing_tolerance_px=tolerance), split=ns.split,
                         device=ns.device)
    print(json.dumps(summary, indent=2) if ns.json else format_table(summary))
    return EXIT_BROKEN_RUNS if any(skip.get("broken") for skip in summary["skipped_runs"]) else 0
