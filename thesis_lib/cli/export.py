"""`thesis export OUT [--root DIR]`: the built book's figures (PDF, SVG, 300-dpi PNG) and tables (CSV, booktabs
LaTeX), named by chapter and by the number the book gives them, with a manifest of what produced each.

Run after `make book` (what `make export` does); see thesis_lib/book/export.py. Exit status 0, 2 when there
is no built book, a file is missing or OUT holds something that is not an earlier export (nothing is
overwritten then).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="the book's figures and tables as files for a LaTeX thesis")
    export.add_argument("out", metavar="OUT", help="output folder (created; an earlier export there is replaced)")
    export.add_argument("--root", default=".", metavar="DIR",
                        help="the book's root, where `make book` ran (default: the current folder)")
    export.set_defaults(handler=export_command)


def export_command(ns: argparse.Namespace) -> int:
    from thesis_lib.book.export import export_book  # here: keeps the book stack off `--help`'s import path

    export = export_book(Path(ns.root), Path(ns.out))
    print(f"exported {export.figures} figures and {export.tables} tables to {export.folder} "
          f"(manifest.json lists what produced each)")
    return 0
