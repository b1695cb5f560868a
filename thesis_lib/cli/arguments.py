"""Command-line strings that several commands read the same way, turned into values (or a ThesisError).

An option given with nothing in it (`--models ","`, `--seeds ""`) is an error, never the default: the default
(the whole profile) is what leaving the option out means."""

from __future__ import annotations

from thesis_lib.errors import ThesisError


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
