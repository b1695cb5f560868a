"""The `thesis` command line: one entry point for data, models, runs and the book.

Each subcommand is a thin adapter: it parses plain strings and calls one library function, which holds
the logic (so the same thing is callable from a notebook). Heavy modules are imported only by the
subcommand that needs them, so `thesis --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from thesis_lib.book.command import add_book_arguments, run_book
from thesis_lib.errors import ThesisError


def _data_check(ns: argparse.Namespace) -> int:
    from thesis_lib.data.check import main_check

    return main_check(ns.root, as_json=ns.json, plot_choice=ns.plot)


def _data_synth(ns: argparse.Namespace) -> int:
    import time

    from thesis_lib.data.twin import TwinConfig, generate_twin

    started = time.perf_counter()
    summary = generate_twin(Path(ns.out), TwinConfig(n_movies=ns.movies, seed=ns.seed), overwrite=ns.force)
    print(f"{summary}  ({time.perf_counter() - started:.1f} s)")
    return 0


def _data_download(ns: argparse.Namespace) -> int:
    from thesis_lib.data.download import main_download

    return main_download(ns.dest, url=ns.url, sha256=ns.sha256, no_extract=ns.no_extract)


def _data_split(ns: argparse.Namespace) -> int:
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.splits import load_or_create_thesis_split

    release = load_release(ns.root)  # full poster check: a split must not hold movies a check rejects
    split = load_or_create_thesis_split(release, Path(ns.out), seed=ns.seed)
    counts = ", ".join(f"{part} {len(getattr(split, part))}" for part in ("train", "dev", "test"))
    print(f"thesis split (seed {ns.seed}): {counts}; hash {split.split_hash()[:12]} -> {ns.out}")
    return 0


def _models_list(ns: argparse.Namespace) -> int:
    from thesis_lib.models.registry import main_models_list

    return main_models_list()


def _models_describe(ns: argparse.Namespace) -> int:
    from thesis_lib.models.registry import main_models_describe

    return main_models_describe(ns.name)


def _run(ns: argparse.Namespace) -> int:
    from thesis_lib.experiments.grid import main_run

    overrides = dict(_key_value(item) for item in ns.overrides)
    models = [name for name in ns.models.split(",") if name] if ns.models else None
    return main_run(ns.profile, ns.data, ns.runs, models, _seed_list(ns.seeds), overrides)


def _seed_list(text: str | None) -> list[int] | None:
    """"0,1,2" -> [0, 1, 2]; None stays None (the default)."""
    if not text:
        return None
    try:
        return [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise ThesisError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ThesisError(f"expected a profile override KEY=VALUE, got {item!r}")
    return key, value


def _results_table(ns: argparse.Namespace) -> int:
    from thesis_lib.experiments.table import main_results_table

    return main_results_table(ns.runs_dir, as_json=ns.json, seeds=_seed_list(ns.seeds))


def _xai_check(ns: argparse.Namespace) -> int:
    from thesis_lib.xai.check import XaiCheckConfig, main_xai_check

    if ns.tolerance < 0:
        raise ThesisError(f"--tolerance must be >= 0 pixels, got {ns.tolerance}")
    return main_xai_check(ns.data, ns.runs, as_json=ns.json, config=XaiCheckConfig(pointing_tolerance_px=ns.tolerance))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thesis", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="the MM-IMDb release and the synthetic twin")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = data_commands.add_parser("check", help="validate a release folder and report what is unusable")
    check.add_argument("root", help="release folder (holds split.json and dataset/, or mmimdb/ with them)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    check.add_argument("--plot", default="longest", choices=("longest", "first", "concat"),
                       help="which entry of the plot list to use (default: longest, as in the literature)")
    check.set_defaults(handler=_data_check)

    synth = data_commands.add_parser("synth", help="generate the synthetic MM-IMDb twin (release format)")
    synth.add_argument("out", help="output folder (must be empty or missing unless --force)")
    synth.add_argument("--movies", type=int, default=2000, help="number of movies (default 2000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed -> byte-identical output")
    synth.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    synth.set_defaults(handler=_data_synth)

    download = data_commands.add_parser("download", help="download and extract the public MM-IMDb release")
    download.add_argument("dest", help="folder to download into")
    download.add_argument("--url", default=None, help="mirror URL (default: archive.org, or $THESIS_MMIMDB_URL)")
    download.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    download.add_argument("--no-extract", action="store_true", help="download only")
    download.set_defaults(handler=_data_download)

    split = data_commands.add_parser("split", help="write the thesis 70/15/15 stratified split file")
    split.add_argument("root", help="release folder")
    split.add_argument("--out", required=True, help="split file to write (reused if it already matches)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(handler=_data_split)

    models = commands.add_parser("models", help="the model registry")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    model_commands.add_parser("list", help="print the registered model names").set_defaults(handler=_models_list)
    describe = model_commands.add_parser("describe", help="parameters and expected input of a model")
    describe.add_argument("name")
    describe.set_defaults(handler=_models_describe)

    run = commands.add_parser("run", help="run the (model x seed) grid of a profile; finished runs are skipped")
    run.add_argument("--profile", default="smoke", help="smoke | full, or a .yaml profile file (default: smoke)")
    run.add_argument("--data", default=None, help="release folder (default: the profile's data_root, or its twin)")
    run.add_argument("--runs", default=None, help="runs folder (default: the profile's runs_dir)")
    run.add_argument("--models", default=None, help="comma-separated model names (default: the profile's list)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's seeds)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a profile value")
    run.set_defaults(handler=_run)

    results = commands.add_parser("results", help="results of finished runs")
    results_commands = results.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    table = results_commands.add_parser("table", help="the comparison table (mean, std, 95% CI per model)")
    table.add_argument("runs_dir", help="runs folder written by `thesis run`")
    table.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    table.add_argument("--seeds", default=None, help="comma-separated seeds to include (default: every finished seed)")
    table.set_defaults(handler=_results_table)

    xai = commands.add_parser("xai", help="explanations and their faithfulness")
    xai_commands = xai.add_subparsers(dest="xai_command", required=True, metavar="ACTION")
    xai_check = xai_commands.add_parser(
        "check", help="score Grad-CAM and attention of trained runs against the twin's ground truth"
    )
    xai_check.add_argument("--data", required=True, help="the release the runs were trained on (a twin has ground truth)")
    xai_check.add_argument("--runs", required=True, help="runs folder written by `thesis run`")
    xai_check.add_argument("--json", action="store_true", help="print one JSON object")
    xai_check.add_argument("--tolerance", type=float, default=0.0, metavar="PX",
                           help="pointing game: count a maximum within PX poster pixels of the box (0: strictly "
                                "inside, the default; Zhang et al. use 15, as the book does)")
    xai_check.set_defaults(handler=_xai_check)

    book = commands.add_parser("book", help="run every chapter with papermill and build the HTML book")
    add_book_arguments(book)
    book.set_defaults(handler=run_book)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.handler(ns)
    except ThesisError as error:  # bad input: one line naming the problem and the file, no traceback
        print(f"thesis: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
