"""The `thesis` command line: one entry point for data, models, runs and the book.

The only layer that prints and decides exit codes. Each command group has one module here (`data`,
`models`, `weights`, `run`, `cache`, `results`, `xai`, `capacity`, `datasize`, `book`, `export`) that adds its subcommands to the parser and holds their
handlers; a handler parses plain strings, calls one library function (the same one a notebook would
call), prints what it returns and turns it into an exit status. Heavy modules are imported inside the
handlers, so `thesis --help` never imports torch.

Errors, one convention for every command:
- a `ThesisError` (bad input: a missing folder, a wrong parameter) prints one line `thesis: error: ...` on
  stderr and exits 2, as argparse does for a usage error;
- a result that is a failure (an unusable release, failed runs, a failed chapter) is printed and exits 1,
  decided by the handler from the value it got back;
- anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from thesis_lib.cli import book, cache, capacity, data, datasize, export, models, results, run, weights, xai
from thesis_lib.cli.errors import EXIT_USER_ERROR, report_error
from thesis_lib.errors import ThesisError
from thesis_lib.logs import configure_logging

COMMAND_GROUPS = (data, models, weights, run, cache, results, xai, capacity, datasize, book, export)  # in the order `thesis --help` lists them


class VersionAction(argparse.Action):
    """`--version`: the installed package's version and the checkout's commit, read when asked (argparse's own
    version action takes a string made with the parser, which would run git for every command)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from thesis_lib.versions import version_line

        print(version_line())  # stdout, as argparse's version action prints
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thesis", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=VersionAction,
                        help="print the package version (and the git commit in a checkout) and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    configure_logging()  # progress lines of the library on stderr; stdout keeps only the command's result
    try:
        return ns.handler(ns)
    except ThesisError as error:  # bad input: one line naming the problem and the file, no traceback
        report_error(error)
        return EXIT_USER_ERROR
