"""`thesis results table [--runs DIR] [--profile P] [--format text|csv|latex|markdown|json] [--seeds 0,1]
[--split thesis]`: the comparison table of finished runs (csv: every digit of mean, std and interval; latex: a
booktabs tabular; `--json` is `--format json`); `thesis results compare MODEL_A MODEL_B [--runs DIR] ...`: their paired difference;
`thesis results seeds [--profile P] [--seeds 0,1,2] [--out FILE] [KEY=VALUE ...]`: the profile's models (no
ablations) trained on several seeds by the grid (finished runs skipped), summarised in results/seeds-<profile>.json
for the book; KEY=VALUE changes a profile value (recorded in the file) for a controlled experiment, e.g.
`--out results/seeds-smoke-plateau.json lr_schedule=plateau epochs=20 warmup_ratio=0.05`.

The runs folder is --runs DIR, else the profile's runs_dir (where `thesis run --profile P` wrote them). The
positional form of earlier versions (`thesis results table DIR`, `thesis results compare DIR A B`) still works,
with a warning on stderr.

Exit status 1 when the folder holds no finished run (the message says so on stdout, as the table would be).
"""

from __future__ import annotations

import argparse
import json

from thesis_lib.cli.arguments import (
    add_profile_option,
    add_runs_option,
    key_value,
    legacy_runs_argument,
    name_list,
    runs_folder,
    seed_list,
)
from thesis_lib.errors import ThesisError

EXIT_NO_RUNS = 1
TABLE_FORMATS = ("text", "csv", "latex", "markdown", "json")
PRIMARY_SPLIT = "thesis"  # experiments.table.PRIMARY_SPLIT, spelled here to keep `--help` free of the metrics stack
RUNS_HELP = "runs folder written by `thesis run` (default: the profile's runs_dir)"


def add_commands(commands: argparse._SubParsersAction) -> None:
    results = commands.add_parser("results", help="results of finished runs")
    actions = results.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    # "%%": argparse formats help strings with %, so a bare "95% CI" would break `--help`.
    table = actions.add_parser("table", help="the comparison table (mean, std, 95%% CI per model)")
    table.add_argument("legacy_runs", nargs="?", default=None, help=argparse.SUPPRESS)  # deprecated: --runs DIR
    add_runs_option(table, RUNS_HELP)
    add_profile_option(table)
    table.add_argument("--format", choices=TABLE_FORMATS, default="text",
                       help="text (default), csv (every digit), latex (booktabs tabular), markdown, json (one object "
                            "per model)")
    table.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    table.add_argument("--seeds", default=None, help="comma-separated seeds to include (default: every finished seed)")
    table.add_argument("--split", default=PRIMARY_SPLIT,
                       help=f"the split whose runs make the table (default: {PRIMARY_SPLIT})")
    table.set_defaults(handler=table_command)

    seeds = actions.add_parser("seeds", help="train the profile's models (no ablations) on several seeds and write "
                                             "results/seeds-<profile>.json, which the book reads")
    add_profile_option(seeds)
    add_runs_option(seeds, RUNS_HELP)
    seeds.add_argument("--data", default=None, help="release folder (default: the profile's data_root, or its twin)")
    seeds.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2; finished ones are skipped)")
    seeds.add_argument("--out", default=None, help="the results file (default: results/seeds-<profile>.json)")
    seeds.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override a profile value (recorded in the file; give --out to keep the default file)")
    seeds.set_defaults(handler=seeds_command)

    compare = actions.add_parser("compare", help="model A minus model B: paired bootstrap of macro-F1 and its verdict")
    # Deprecated first positional (`compare DIR A B`): argparse gives it a value only when three are given.
    compare.add_argument("legacy_runs", nargs="?", default=None, help=argparse.SUPPRESS)
    compare.add_argument("model_a", metavar="MODEL_A", help="a model or variant name (its runs of --split)")
    compare.add_argument("model_b", metavar="MODEL_B", help="the model it is compared with")
    add_runs_option(compare, RUNS_HELP)
    add_profile_option(compare)
    compare.add_argument("--genres", default=None, help="comma-separated genres to score on (default: all 23)")
    compare.add_argument("--seeds", default=None, help="comma-separated seeds (default: the seeds both finished)")
    compare.add_argument("--split", default=PRIMARY_SPLIT, help=f"the split of the runs (default: {PRIMARY_SPLIT})")
    compare.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(handler=compare_command)


def seeds_command(ns: argparse.Namespace) -> int:
    seeds = seed_list(ns.seeds) or [0, 1, 2]
    if len(seeds) < 2:
        raise ThesisError("--seeds: seed variation needs at least two seeds")
    # Imported here: keeps torch off `--help`'s import path.
    import time
    from pathlib import Path

    from thesis_lib.cli.run import EXIT_RUNS_FAILED
    from thesis_lib.experiments.grid import run_grid
    from thesis_lib.experiments.profile import load_profile
    from thesis_lib.experiments.seeds import seeds_file, summarise, write_summary
    from thesis_lib.paths import project_root

    overrides = dict(key_value(item) for item in ns.overrides)
    if overrides and not ns.out:
        raise ThesisError("KEY=VALUE changes the profile: give --out FILE, so that the profile's own seeds file "
                          f"({seeds_file(ns.profile)}) keeps the profile's runs")
    profile = load_profile(ns.profile, overrides)
    started = time.perf_counter()
    report = run_grid(profile, data_root=ns.data, runs_dir=ns.runs, models=profile.models, seeds=seeds)
    print(report.summary(), flush=True)
    if not report.ok:
        return EXIT_RUNS_FAILED
    out = Path(ns.out) if ns.out else project_root() / seeds_file(profile.profile)
    content = summarise(runs_folder(ns), profile.models, seeds, profile.primary_split, profile.profile,
                        time.perf_counter() - started, overrides={key: getattr(profile, key) for key in overrides})
    write_summary(out, content)
    print(f"seeds {', '.join(map(str, seeds))} of {len(profile.models)} runs -> {out}")
    return 0


def table_command(ns: argparse.Namespace) -> int:
    legacy_runs_argument(ns, ns.legacy_runs, "results table")
    seeds = seed_list(ns.seeds)
    # Imported here: keeps the metrics stack off `--help`'s import path.
    from thesis_lib.experiments.table import format_table, results_table, table_frame
    from thesis_lib.tables import latex_tabular, markdown_table

    runs = runs_folder(ns)
    rows = results_table(runs, seeds=seeds, split=ns.split)  # a missing folder raises RecordError: exit 2
    if not rows:
        print(f"no finished runs of the {ns.split} split under {runs}")
        return EXIT_NO_RUNS
    if ns.format == "json":
        print(json.dumps(rows, indent=1))
    elif ns.format == "csv":
        print(table_frame(rows).to_csv(), end="")
    elif ns.format == "latex":
        print(latex_tabular(table_frame(rows, formatted=True)), end="")
    elif ns.format == "markdown":
        print(markdown_table(table_frame(rows, formatted=True)))
    else:
        print(format_table(rows))
    return 0


def compare_command(ns: argparse.Namespace) -> int:
    legacy_runs_argument(ns, ns.legacy_runs, "results compare")
    seeds = seed_list(ns.seeds)
    genres = name_list(ns.genres, "--genres")
    # Imported here: keeps the metrics stack off `--help`'s import path.
    from thesis_lib.analysis.comparison import compare

    result = compare(runs_folder(ns), ns.model_a, ns.model_b, genres=genres, n_resamples=ns.resamples, seeds=seeds,
                     split=ns.split)
    if ns.json:
        print(json.dumps({key: (str(value) if key == "verdict" else value) for key, value in result.items()},
                         indent=1))
        return 0
    print(f"{ns.model_a} minus {ns.model_b}: {result['delta']:+.3f} macro-F1 (tuned thresholds; 95% CI "
          f"[{result['ci_low']:+.3f}, {result['ci_high']:+.3f}], p = {result['p_value']:.3f}, seeds "
          f"{', '.join(map(str, result['seeds']))}): {result['verdict']}")
    return 0
