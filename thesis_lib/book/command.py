"""The arguments of `thesis book`, shared by the `thesis` CLI and `python -m thesis_lib.book`.

Imports nothing heavy, so `thesis --help` stays instant. Wiring into the `thesis` parser:

    from thesis_lib.book.command import add_book_arguments, run_book
    book = commands.add_parser("book", help="run every chapter with papermill and build the HTML book")
    add_book_arguments(book)
    book.set_defaults(handler=run_book)
"""

from __future__ import annotations

import argparse


def add_book_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smoke",
                        help="parameter profile: a name in notebooks/params/ (smoke | full) or a .yaml file "
                             "(default: smoke)")
    parser.add_argument("-p", "--parameter", dest="params", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="override one parameter, typed as papermill's -p types it (repeatable)")
    parser.add_argument("--only", nargs="+", default=None, metavar="CHAPTER",
                        help="run and build only these chapters (notebook names, e.g. 03_data)")


def run_book(ns: argparse.Namespace) -> int:
    from thesis_lib.book.build import main_book

    return main_book(ns.profile, [tuple(pair) for pair in ns.params], ns.only)
