"""Command-line strings that several commands read the same way, turned into values (or a ThesisError).

An option given with nothing in it (`--models ","`, `--seeds ""`) is an error, never the default: the default
(the whole profile) is what leaving the option out means.

One convention for the profile and the runs folder: every command that reads or writes runs takes
`--profile NAME|FILE` and `--runs DIR`, the runs folder defaulting to the profile's runs_dir (`thesis run`,
`cache clean`, `results`, `xai check`, `book`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thesis_lib.errors import ThesisError

DEFAULT_PROFILE = "smoke"


def add_profile_option(parser: argparse.ArgumentParser, default: str = DEFAULT_PROFILE) -> None:
    parser.add_argument("--profile", default=default,
                        help=f"smoke | full, or a .yaml profile file (default: {default})")


def add_runs_option(parser: argparse.ArgumentParser, help: str = "runs folder (default: the profile's runs_dir)") -> None:
    parser.add_argument("--runs", default=None, metavar="DIR", help=help)


def runs_folder(ns: argparse.Namespace) -> Path:
    """--runs DIR, else the runs_dir of --profile (what `thesis run --profile` with no --runs wrote into)."""
    if ns.runs:
        return Path(ns.runs).expanduser()
    # Imported here: the profile loader is not needed for `--help`.
    from thesis_lib.experiments.profile import load_profile

    return load_profile(ns.profile).runs_path()


def legacy_runs_argument(ns: argparse.Namespace, positional: str | None, command: str) -> None:
    """The deprecated positional runs folder (`thesis results table DIR`): taken as --runs DIR with a warning
    on stderr; given together with --runs it is an error."""
    if positional is None:
        return
    if ns.runs:
        raise ThesisError(f"the runs folder is given twice ({positional!r} and --runs {ns.runs!r}): give --runs DIR only")
    print(f"thesis: warning: `thesis {command} DIR` is deprecated; use `thesis {command} --runs DIR`",
          file=sys.stderr)
    ns.runs = positional


def seed_list(text: str | None, option: str = "--seeds") -> list[int] | None:
    """"0,1,2" -> [0, 1, 2]; None stays None (the default). Each seed must lie in 0..2**32-1."""
    if text is None:
        return None
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise ThesisError(f"{option} expects comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds:
        raise ThesisError(f"{option} {text!r} names no seed: give seeds such as 0,1,2, or leave {option} out")
    # Imported here: `--help` never gets this far, and the profile's values are checked by the same rule.
    from thesis_lib.experiments.values import check_seeds

    return check_seeds(option, seeds)


def one_seed(seed: int, option: str = "--seed") -> int:
    """An int option's seed, checked as `seed_list` checks each of its seeds."""
    return seed_list(str(seed), option)[0]  # type: ignore[index]  # one int in, one seed out


def name_list(text: str | None, option: str) -> list[str] | None:
    """"a,b" -> ["a", "b"]; None stays None (the default)."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ThesisError(f"{option} {text!r} names nothing: give comma-separated names, or leave {option} out")
    return names


def key_value(item: str) -> tuple[str, str]:
    """"KEY=VALUE" -> ("KEY", "VALUE"); the value stays text (the profile parses it)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ThesisError(f"expected a profile override KEY=VALUE, got {item!r}")
    return key, value
