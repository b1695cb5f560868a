"""Profiles: the papermill parameter files every chapter is run with, plus `-p name value` overrides.

A profile is `notebooks/params/<name>.yaml`, a flat mapping of parameter names to values; the same file
works from the papermill CLI (`papermill notebooks/03_data.ipynb out.ipynb -f notebooks/params/smoke.yaml`).
Overrides are typed the way papermill's own `-p` types them, so `thesis book -p n 3` and
`papermill ... -p n 3` hand the notebook the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from thesis_lib.errors import ThesisError

PARAMS_DIR = Path("notebooks") / "params"  # relative to the book's root


class ProfileError(ThesisError, ValueError):
    """A profile that does not exist or is not a flat mapping of parameter names to plain values."""


def profile_path(root: Path, profile: str) -> Path:
    """The parameter file of `profile`: a name ("smoke") lives in notebooks/params/ under the book's `root`;
    anything that looks like a path ("my/tiny.yaml") is taken as that file."""
    if profile.endswith((".yaml", ".yml")) or "/" in profile:
        return Path(profile)
    return Path(root) / PARAMS_DIR / f"{profile}.yaml"


def available_profiles(root: Path) -> list[str]:
    """The profile names that have a parameter file, sorted."""
    return sorted(path.stem for path in (Path(root) / PARAMS_DIR).glob("*.yaml"))


def load_profile(root: Path, profile: str) -> dict[str, Any]:
    """The parameters of `profile` as a dict; ProfileError names the file and what is wrong with it."""
    import yaml  # PyYAML is a core dependency, but only the book needs it

    path = profile_path(root, profile)
    if not path.is_file():
        known = ", ".join(available_profiles(root)) or "none"
        raise ProfileError(f"{path}: no such profile file (profiles found: {known})")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ProfileError(f"{path}: not a readable YAML file: {error}") from None
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(key, str) for key in content):
        raise ProfileError(f"{path}: a profile must be a mapping of parameter names to values")
    nested = sorted(key for key, value in content.items() if isinstance(value, dict))
    if nested:
        # papermill injects each top-level key as one variable; a nested mapping is almost always a typo.
        raise ProfileError(f"{path}: parameters must be plain values, not mappings: {', '.join(nested)}")
    return content


def parse_parameter_value(text: str) -> Any:
    """A `-p` value typed as papermill's CLI types it: True/False/None, int, float, else the string."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parameters_with_overrides(base: Mapping[str, Any], overrides: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`base` with each (name, text) override applied in order (typed by `parse_parameter_value`)."""
    parameters = dict(base)
    for name, text in overrides:
        if not name.isidentifier():
            raise ProfileError(f"parameter name {name!r} is not a Python identifier")
        parameters[name] = parse_parameter_value(text)
    return parameters
