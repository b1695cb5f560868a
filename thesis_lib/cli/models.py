"""`thesis models list [--json] | describe NAME [--size small|full]`: the models a profile can run.

`list` prints every registry model and the two baselines, each marked with its kind (model | baseline) and a
line on what it reads. `describe` prints a model's parameters (per part) and the batch it expects, in its
small form (the smoke profile's) or its full form (the thesis's: BERT-base / ViT-B/16 ...; built with random
weights, so nothing is downloaded, but the backbone's config must be available offline, else exit 1).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from thesis_lib.cli.errors import report_error

EXIT_UNAVAILABLE = 1  # a full-form backbone whose config is not available offline
SIZES = ("small", "full")  # models.configs.SIZES, spelled here to keep torch off `--help`'s import path


def add_commands(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="the model registry and the baselines")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every model a profile can name, the baselines marked")
    listing.add_argument("--json", action="store_true", help="print a JSON list of {name, kind, summary}")
    listing.set_defaults(handler=list_command)
    describe = actions.add_parser("describe", help="parameters and expected input of a model")
    describe.add_argument("name")
    describe.add_argument("--size", choices=SIZES, default="small",
                          help="small: the smoke profile's form (default); full: the thesis's pretrained backbones "
                               "(random weights here, same parameter counts)")
    describe.set_defaults(handler=describe_command)


def list_command(ns: argparse.Namespace) -> int:
    from thesis_lib.experiments.specs import model_catalogue  # imported here: keeps torch off `--help`'s path

    entries = model_catalogue()
    print(json.dumps([asdict(entry) for entry in entries], indent=1) if ns.json
          else "\n".join(entry.line() for entry in entries))
    return 0


def describe_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch off `--help`'s path.
    from thesis_lib.experiments.specs import BASELINE_SUMMARIES
    from thesis_lib.models.registry import describe_model

    if ns.name in BASELINE_SUMMARIES:  # no network, the same in both sizes
        print(f"{ns.name} (baseline, no network): {BASELINE_SUMMARIES[ns.name]}")
        return 0
    try:
        print(describe_model(ns.name, size=ns.size))  # an unknown name raises UnknownModelError: exit 2
    except OSError as error:  # not the user's input, nor a bug: the machine lacks a backbone's files
        report_error(error)
        return EXIT_UNAVAILABLE
    return 0
