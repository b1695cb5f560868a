"""`thesis book [--profile P] [-y YAML ...] [-p NAME VALUE ...] [--only CHAPTER ...] [--runs DIR] [--render-only |
--train-missing]`: run the chapters, build the HTML book.

Parameters as papermill takes them: `--profile FILE` is papermill's `-f FILE`, `-y 'splits: [thesis, official]'`
its `-y`, `-p NAME VALUE` its `-p` (every value typed by the parameter's declared type; `-y` before `-p`). A
chapter unchanged since its last run (code, parameters, data, runs, library, lock) is reused, not re-run.

A full-size profile (or a build given --runs) renders from finished runs only: a missing run stops the
build before any chapter runs, naming it and the `thesis run` command that makes it, instead of training
it for hours inside a notebook.

`--rehearse` renders the rehearsal of a full-size profile (`thesis run --profile full --rehearse` makes its
runs; see thesis_lib/experiments/rehearsal.py): the chapters get the rehearsal's changes as parameters, read
its cache root, and every page carries a banner saying the numbers come from random stand-in weights.

Also what `python -m thesis_lib.book` and `make book` run. Exit status 0, 1 when a chapter or the Jupyter
Book step failed (the message names the chapter and cell, or the log), 2 for bad input (profile,
parameter or chapter name).

`thesis book pdf [--out FILE] [--browser PATH]` (what `make pdf` runs after `make book`): the book built last,
printed to one PDF by headless Chromium (`thesis_lib.book.pdf`). Exit status 0; 1 when the one-page build or
Chromium failed (the message says why); 2 when there is no built book or no Chromium.
"""

from __future__ import annotations

import argparse
import time

from thesis_lib.cli.errors import report_error

EXIT_BUILD_FAILED = 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    book = commands.add_parser("book", help="run every chapter with papermill and build the HTML book")
    add_book_arguments(book)
    book.set_defaults(handler=book_command)
    # Optional: plain `thesis book [options]` builds the book; `thesis book pdf` prints the one built last.
    actions = book.add_subparsers(dest="book_command", required=False, metavar="[pdf]", title="action")
    pdf = actions.add_parser("pdf", help="print the book built last to one PDF with headless Chromium "
                                         "(after `thesis book`; what `make pdf` runs)")
    pdf.add_argument("--out", default=None, metavar="FILE",
                     help="the PDF to write (default: _build/pdf/book.pdf in the project)")
    pdf.add_argument("--browser", default=None, metavar="PATH",
                     help="the Chromium to print with (default: chromium, chromium-browser or google-chrome on PATH)")
    pdf.set_defaults(handler=pdf_command)


def add_book_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smoke",
                        help="parameter profile: a name in notebooks/params/ (smoke | full) or a .yaml file "
                             "(default: smoke)")
    parser.add_argument("-y", "--yaml", dest="yaml_params", action="append", default=[], metavar="YAML",
                        help="parameters as a YAML mapping, as papermill's -y (repeatable; -p values win)")
    parser.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="override one parameter, typed by its declared type: -p splits official, -p seeds 0,1 (repeatable)")
    parser.add_argument("--only", nargs="+", default=None, metavar="CHAPTER",
                        help="run and build only these chapters (notebook names, e.g. 03_data)")
    parser.add_argument("--runs", default=None, metavar="DIR",
                        help="the runs folder to render (the profile's runs_dir; implies --render-only)")
    parser.add_argument("--rehearse", action="store_true",
                        help="render the rehearsal's runs (`thesis run --profile full --rehearse` makes them) with a "
                             "banner on every page: numbers from random stand-in weights, not results")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--render-only", dest="render_only", action="store_true", default=None,
                      help="render from finished runs; stop naming the missing ones and the `thesis run` that makes "
                           "them (default for a full-size profile and with --runs)")
    mode.add_argument("--train-missing", dest="render_only", action="store_false",
                      help="train missing runs inside the experiments chapter (default for the smoke profile)")


def book_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps papermill and the book's helpers off `--help`'s import path.
    from thesis_lib.book.build import BookBuild, BookBuildError, build_book, yaml_parameters
    from thesis_lib.book.execute import ChapterFailedError
    from thesis_lib.paths import project_root

    from_yaml = tuple(pair for text in ns.yaml_params for pair in yaml_parameters(text))  # bad YAML: exit 2
    overrides = from_yaml + tuple(tuple(pair) for pair in ns.params) + ((("runs_dir", ns.runs),) if ns.runs else ())
    if ns.rehearse:
        from thesis_lib.experiments.profile import load_profile
        from thesis_lib.experiments.rehearsal import enter_rehearsal, rehearsal_parameters, rehearsal_profile

        rehearsal_profile(load_profile(ns.profile))  # a full-size profile only (exit 2 otherwise)
        overrides = tuple(rehearsal_parameters()) + overrides  # a -p given on the command line still wins
        enter_rehearsal()  # the chapters' kernels inherit the rehearsal's cache root
    build = BookBuild(root=project_root(), profile=ns.profile, overrides=overrides,
                      only=tuple(ns.only) if ns.only else None, render_only=ns.render_only)
    started = time.perf_counter()
    try:
        result = build_book(build)  # bad input raises another ThesisError: one line, exit 2
    except (ChapterFailedError, BookBuildError) as error:  # a failed result, not bad input
        report_error(error)
        return EXIT_BUILD_FAILED
    print(f"book: built in {time.perf_counter() - started:.0f} s -> {result.html_index}")
    return 0


def pdf_command(ns: argparse.Namespace) -> int:
    from thesis_lib.book.jupyter_book import BookBuildError
    from thesis_lib.book.pdf import PrintFailedError, book_pdf
    from thesis_lib.paths import project_root

    started = time.perf_counter()
    try:
        result = book_pdf(project_root(), ns.out, ns.browser)  # no book, no Chromium: one line, exit 2
    except (BookBuildError, PrintFailedError) as error:  # a failed result, not bad input
        report_error(error)
        return EXIT_BUILD_FAILED
    print(f"pdf: {result.pages} pages, {result.images} images, {result.bytes / 1e6:.1f} MB in "
          f"{time.perf_counter() - started:.0f} s -> {result.path}")
    return 0
