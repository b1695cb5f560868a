"""`thesis data check | synth | download | split`: the MM-IMDb release and the synthetic twin.

Exit codes of `thesis data check`:
    0  the release is usable: at least one usable movie in each of train, dev and test (skipped movies are
       reported but do not fail the check);
    1  the folder is a release, but some official split has no usable movie left;
    2  the folder is not a release at all (no split.json, no dataset/, an unreadable split.json): one line
       on stderr naming what is missing, no traceback (the CLI's rule for every `ThesisError`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from thesis_lib.cli.arguments import one_seed
from thesis_lib.errors import ThesisError

EXIT_USABLE, EXIT_UNUSABLE, EXIT_NOT_A_RELEASE = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="the MM-IMDb release and the synthetic twin")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="validate a release folder and report what is unusable")
    check.add_argument("root", help="release folder (holds split.json and dataset/, or mmimdb/ with them)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    check.add_argument("--plot", default="longest", choices=("longest", "first", "concat"),
                       help="which entry of the plot list to use (default: longest, as in the literature)")
    check.set_defaults(handler=check_command)

    synth = actions.add_parser("synth", help="generate the synthetic MM-IMDb twin (release format)")
    synth.add_argument("out", help="output folder (must be empty or missing unless --force)")
    synth.add_argument("--movies", type=int, default=2000, help="number of movies (default 2000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed -> byte-identical output")
    synth.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    synth.set_defaults(handler=synth_command)

    download = actions.add_parser("download", help="download and extract the public MM-IMDb release")
    download.add_argument("dest", help="folder to download into")
    download.add_argument("--url", default=None, help="mirror URL (default: archive.org, or $THESIS_MMIMDB_URL)")
    download.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    download.add_argument("--keep-archive", action="store_true",
                          help="keep the archive after extracting it (default: delete it, freeing 8.1 GB)")
    download.add_argument("--no-extract", action="store_true", help="download only")
    download.set_defaults(handler=download_command)

    split = actions.add_parser("split", help="write the thesis 70/15/15 stratified split file")
    split.add_argument("root", help="release folder")
    split.add_argument("--out", required=True, help="split file to write (reused if it already matches)")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(handler=split_command)


def check_command(ns: argparse.Namespace) -> int:
    from thesis_lib.data.check import check_release  # imported here: keeps torch off `--help`'s import path

    report = check_release(ns.root, plot_choice=ns.plot)  # NotAReleaseError: a ThesisError, exit 2
    print(json.dumps(report.to_dict(), indent=2) if ns.json else report.format_text())
    return EXIT_USABLE if report.usable else EXIT_UNUSABLE


def synth_command(ns: argparse.Namespace) -> int:
    from thesis_lib.data.twin import TwinConfig, generate_twin  # imported here: keeps `--help` light

    one_seed(ns.seed)  # 0..2**32-1, as every seed
    started = time.perf_counter()
    summary = generate_twin(Path(ns.out), TwinConfig(n_movies=ns.movies, seed=ns.seed), overwrite=ns.force)
    print(f"{summary}  ({time.perf_counter() - started:.1f} s)")
    return 0


def download_command(ns: argparse.Namespace) -> int:
    from thesis_lib.data.download import URL_ENV, download_release, resolve_url  # here: keeps `--help` light

    url = resolve_url(ns.url)
    if urlsplit(url).scheme.lower() not in ("http", "https"):  # urllib would raise ValueError: a traceback
        raise ThesisError(f"{'--url' if ns.url else '$' + URL_ENV} {url!r} is not an http:// or https:// URL")
    print(download_release(Path(ns.dest), url, sha256=ns.sha256, extract=not ns.no_extract,
                           keep_archive=ns.keep_archive))
    return 0


def split_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch off `--help`'s import path.
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.splits import load_or_create_thesis_split

    one_seed(ns.seed)  # 0..2**32-1, checked before the release is read
    release = load_release(ns.root)  # full poster check: a split must not hold movies a check rejects
    split = load_or_create_thesis_split(release, Path(ns.out), seed=ns.seed)
    counts = ", ".join(f"{part} {len(getattr(split, part))}" for part in ("train", "dev", "test"))
    print(f"thesis split (seed {ns.seed}): {counts}; hash {split.split_hash()[:12]} -> {ns.out}")
    return 0
