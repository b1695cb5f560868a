"""`thesis models list | describe NAME`: the model registry."""

from __future__ import annotations

import argparse

from thesis_lib.cli.errors import report_error

EXIT_UNAVAILABLE = 1  # a full-form backbone whose config is not available offline


def add_commands(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the model registry")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="print the registered model names").set_defaults(handler=list_command)
    describe = actions.add_parser("describe", help="parameters and expected input of a model")
    describe.add_argument("name")
    describe.set_defaults(handler=describe_command)


def list_command(ns: argparse.Namespace) -> int:
    from thesis_lib.models.registry import list_models  # imported here: keeps torch off `--help`'s import path

    for name in list_models():
        print(name)
    return 0


def describe_command(ns: argparse.Namespace) -> int:
    from thesis_lib.models.registry import describe_model  # imported here: keeps torch off `--help`'s path

    try:
        print(describe_model(ns.name))  # an unknown name raises UnknownModelError: a ThesisError, exit 2
    except OSError as error:  # not the user's input, nor a bug: the machine lacks a backbone's files
        report_error(error)
        return EXIT_UNAVAILABLE
    return 0
