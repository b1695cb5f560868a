"""`thesis weights list | fetch [--profile full]`: the pretrained weights a profile's runs load.

`list` prints each weight's source, status (cached | missing | stand-in), size and path, and exits 1 when
one is not cached (so `thesis weights list` on an offline node says whether the copied cache is complete).
`fetch` downloads the missing ones where the loaders read them; it needs THESIS_ONLINE=1 (else one line
and exit 2) and exits 1 when a weight could not be fetched or verified.
"""

from __future__ import annotations

import argparse
import json

EXIT_NOT_READY = 1  # list: a weight is missing or a stand-in; fetch: a weight failed


def add_commands(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser("weights", help="pretrained weights: what is cached, fetching them ahead of time")
    actions = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="each pretrained weight the profile loads: cached | missing | stand-in")
    listing.add_argument("--profile", default="full", help="smoke | full, or a .yaml profile file (default: full)")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=list_command)
    fetch = actions.add_parser("fetch", help="download and verify the missing ones (needs THESIS_ONLINE=1)")
    fetch.add_argument("--profile", default="full", help="smoke | full, or a .yaml profile file (default: full)")
    fetch.set_defaults(handler=fetch_command)


def list_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch and the model stack off `--help`'s import path.
    from thesis_lib.experiments.profile import load_profile
    from thesis_lib.experiments.weights import weights_report

    report = weights_report(load_profile(ns.profile))
    print(json.dumps(report.to_dict(), indent=1) if ns.json else "\n".join(report.lines()))
    return 0 if report.ok else EXIT_NOT_READY


def fetch_command(ns: argparse.Namespace) -> int:
    # Imported here: keeps torch and the model stack off `--help`'s import path.
    from thesis_lib.experiments.profile import load_profile
    from thesis_lib.experiments.weights import fetch_weights

    report = fetch_weights(load_profile(ns.profile))  # offline: a ThesisError, one line, exit 2
    print("\n".join(report.lines()))
    return 0 if report.ok else EXIT_NOT_READY
