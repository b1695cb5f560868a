"""`thesis xai check --data ROOT --runs RUNS_DIR [--json] [--tolerance PX] [--split thesis] [--device auto|cpu]`:
faithfulness of explanations. Exit status 1 when a run could not be loaded (it is listed, the others checked)."""

from __future__ import annotations

import argparse
import json

from thesis_lib.errors import ThesisError

EXIT_BROKEN_RUNS = 1  # some run could not be loaded (listed under skipped_runs): the others were still checked


def add_commands(commands: argparse._SubParsersAction) -> None:
    xai = commands.add_parser("xai", help="explanations and their faithfulness")
    actions = xai.add_subparsers(dest="xai_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="score Grad-CAM and attention of trained runs against the twin's ground truth"
    )
    check.add_argument("--data", required=True, help="the release the runs were trained on (a twin has ground truth)")
    check.add_argument("--runs", required=True, help="runs folder written by `thesis run`")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--split", default="thesis", help="the split whose runs are checked (default: thesis)")
    check.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                       help="pointing game: count a maximum within PX poster pixels of the box (0: strictly "
                            "inside, the default; Zhang et al. use 15, as the book does)")
    check.add_argument("--device", choices=("auto", "cpu"), default="auto",
                       help="where the models are explained: auto = the GPU when there is one (default), cpu")
    check.set_defaults(handler=check_command)


def check_command(ns: argparse.Namespace) -> int:
    if ns.tolerance < 0:
        raise ThesisError(f"--tolerance must be >= 0 pixels, got {ns.tolerance}")
    # Imported here: keeps torch and grad-cam off `--help`'s import path.
    from pathlib import Path

    from thesis_lib.analysis.xai_check import check_runs, format_table
    from thesis_lib.xai.check import XaiCheckConfig

    summary = check_runs(Path(ns.data), Path(ns.runs), XaiCheckConfig(pointing_tolerance_px=ns.tolerance),
                         split=ns.split, device=ns.device)
    print(json.dumps(summary, indent=2) if ns.json else format_table(summary))
    return EXIT_BROKEN_RUNS if any(skip.get("broken") for skip in summary["skipped_runs"]) else 0
