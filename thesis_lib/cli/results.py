"""`thesis results table RUNS_DIR [--json] [--seeds 0,1] [--split thesis]`: the comparison table of finished runs.

Exit status 1 when the folder holds no finished run (the message says so on stdout, as the table would be).
"""

from __future__ import annotations

import argparse
import json

from thesis_lib.cli.arguments import name_list, seed_list

EXIT_NO_RUNS = 1
PRIMARY_SPLIT = "thesis"  # experiments.table.PRIMARY_SPLIT, spelled here to keep `--help` free of the metrics stack


def add_commands(commands: argparse._SubParsersAction) -> None:
    results = commands.add_parser("results", help="results of finished runs")
    actions = results.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    # "%%": argparse formats help strings with %, so a bare "95% CI" would break `--help`.
    table = actions.add_parser("table", help="the comparison table (mean, std, 95%% CI per model)")
    table.add_argument("runs_dir", help="runs folder written by `thesis run`")
    table.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    table.add_argument("--seeds", default=None, help="comma-separated seeds to include (default: every finished seed)")
    table.add_argument("--split", default=PRIMARY_SPLIT,
                       help=f"the split whose runs make the table (default: {PRIMARY_SPLIT})")
    table.set_defaults(handler=table_command)

    compare = actions.add_parser("compare", help="model A minus model B: paired bootstrap of macro-F1 and its verdict")
    compare.add_argument("runs_dir", help="runs folder written by `thesis run`")
    compare.add_argument("model_a")
    compare.add_argument("model_b")
    compare.add_argument("--genres", default=None, help="comma-separated genres to score on (default: all 23)")
    compare.add_argument("--seeds", default=None, help="comma-separated seeds (default: the seeds both finished)")
    compare.add_argument("--split", default=PRIMARY_SPLIT, help=f"the split of the runs (default: {PRIMARY_SPLIT})")
    compare.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(handler=compare_command)


def table_command(ns: argparse.Namespace) -> int:
    seeds = seed_list(ns.seeds)
    # Imported here: keeps the metrics stack off `--help`'s import path.
    from thesis_lib.experiments.table import format_table, results_table

    rows = results_table(ns.runs_dir, seeds=seeds, split=ns.split)  # a missing folder raises RecordError: exit 2
    if not rows:
        print(f"no finished runs of the {ns.split} split under {ns.runs_dir}")
        return EXIT_NO_RUNS
    print(json.dumps(rows, indent=1) if ns.json else format_table(rows))
    return 0


def compare_command(ns: argparse.Namespace) -> int:
    seeds = seed_list(ns.seeds)
    genres = name_list(ns.genres, "--genres")
    # Imported here: keeps the metrics stack off `--help`'s import path.
    from thesis_lib.analysis.comparison import compare

    result = compare(ns.runs_dir, ns.model_a, ns.model_b, genres=genres, n_resamples=ns.resamples, seeds=seeds,
                     split=ns.split)
    if ns.json:
        print(json.dumps({key: (str(value) if key == "verdict" else value) for key, value in result.items()},
                         indent=1))
        return 0
    print(f"{ns.model_a} minus {ns.model_b}: {result['delta']:+.3f} macro-F1 (tuned thresholds; 95% CI "
          f"[{result['ci_low']:+.3f}, {result['ci_high']:+.3f}], p = {result['p_value']:.3f}, seeds "
          f"{', '.join(map(str, result['seeds']))}): {result['verdict']}")
    return 0
