"""Command-line strings that several commands read the same way, turned into values (or a ThesisError)."""

from __future__ import annotations

from thesis_lib.errors import ThesisError


def seed_list(text: str | None) -> list[int] | None:
    """"0,1,2" -> [0, 1, 2]; None stays None (the default)."""
    if not text:
        return None
    try:
        return [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        raise ThesisError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None


def name_list(text: str | None) -> list[str] | None:
    """"a,b" -> ["a", "b"]; None stays None (the default)."""
    return [name for name in text.split(",") if name] if text else None


def key_value(item: str) -> tuple[str, str]:
    """"KEY=VALUE" -> ("KEY", "VALUE"); the value stays text (the profile parses it)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ThesisError(f"expected a profile override KEY=VALUE, got {item!r}")
    return key, value
