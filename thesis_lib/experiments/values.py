"""The values of a profile: typed from text once, immutable inside a `Profile`, and written back as text.

`typed_value` is the one coercion of the project for values that arrive as text (`thesis run KEY=VALUE`,
papermill `-p`, `thesis book -p`), driven by the annotation of the key they set; `check_value` checks an
already parsed value (a profile file's YAML) against it. Mappings inside a profile become `FrozenMap`s and
lists tuples (`freeze`), so a `Profile` is hashable and cannot be changed by accident; `thaw` and
`value_text` give the plain YAML or `KEY=VALUE` form back. `Ablation` is the typed form of one named
variant of the profile's `ablations` list.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from thesis_lib.errors import ThesisError


class ProfileError(ThesisError, ValueError):
    """A profile file (or an override of one of its keys) that cannot be used as it is."""


# Seeds reach numpy's legacy seeding (accelerate's set_seed), which takes 0..2**32-1 and nothing else.
MAX_SEED = 2**32 - 1


def check_seeds(key: str, seeds: Iterable[int]) -> list[int]:
    """`seeds` as a list, or ProfileError naming `key` and the first seed outside 0..MAX_SEED."""
    seeds = list(seeds)
    outside = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if outside:
        raise ProfileError(f"{key}: seed {outside[0]} is outside 0..{MAX_SEED} (2**32 - 1), the seeds numpy accepts")
    return seeds


class FrozenMap(Mapping[str, Any]):
    """A read-only, ordered, hashable mapping: a YAML mapping inside a frozen profile."""

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


def freeze(value: Any) -> Any:
    """A parsed YAML value made immutable: mappings -> FrozenMap (string keys), lists -> tuples."""
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ProfileError(f"mapping keys must be names, got {list(value)!r}")
        return FrozenMap((key, freeze(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The plain YAML-ready form of a frozen value (FrozenMap -> dict, tuple -> list, Ablation -> dict)."""
    if isinstance(value, Ablation):
        return {"name": value.name, "changes": thaw(value.changes)}
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def value_text(value: Any) -> str:
    """A value as `KEY=VALUE` would give it: true/false, null, "text,image" for a list, YAML for the rest."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return ",".join(map(str, value))
    if isinstance(value, Mapping | list | tuple | Ablation):
        return yaml.safe_dump(thaw(value), default_flow_style=True, width=10**6).strip()
    return str(value)


@dataclass(frozen=True)
class Ablation:
    """A named variant of a model: the run `<base>@<tag>`, which is the base with `changes` applied."""

    name: str                    # "<base>@<tag>", the run's folder name, e.g. "fusion_cross_attention@one_way"
    changes: Mapping[str, Any]   # registry overrides and run keys (see thesis_lib.experiments.specs), in order

    def __post_init__(self) -> None:
        base, at, tag = self.name.partition("@")
        if not base or not at or not tag or "@" in tag:
            raise ProfileError(f"ablation {self.name!r} must be named <model>@<tag>")
        if not isinstance(self.changes, Mapping):
            raise ProfileError(f"ablation {self.name!r}: changes must be a mapping, got {self.changes!r}")
        object.__setattr__(self, "changes", freeze(self.changes))

    @property
    def base(self) -> str:
        """The run it varies: its registry model or baseline."""
        return self.name.partition("@")[0]

    @property
    def tag(self) -> str:
        return self.name.partition("@")[2]



def typed_value(key: str, value: Any, hint: Any, source: str = "override") -> Any:
    """`value` as the type `hint` asks for (int, float, str, bool, X | None, list[...], Mapping[...],
    Ablation, Any). Text (from a command line or papermill `-p`) is read as YAML first; a key that takes
    strings keeps the text itself when YAML reads something else ("no", "on", "1.0"), and a list key
    also takes comma-separated items ("0,1,2"). ProfileError names `key` and `source` when it does not fit."""
    if not isinstance(value, str) or hint is str:
        return check_value(key, value, hint, source)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if _list_item(hint) is not None and isinstance(parsed, str | int | float | bool):  # "0,1,2" or "0"
        parsed = [_yaml_or_text(part) for part in value.split(",") if part.strip()]
    try:
        return check_value(key, parsed, hint, source)
    except ProfileError:
        if str in _options(hint):
            return value
        raise


def _yaml_or_text(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _options(hint: Any) -> tuple[Any, ...]:
    """The types an annotation allows: (int,) for int, (str, NoneType) for str | None."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _list_item(hint: Any) -> Any:
    """The item type of a list annotation (list[int] | None -> int), None for other annotations."""
    for option in _options(hint):
        if typing.get_origin(option) is list:
            return typing.get_args(option)[0]
    return None


def check_value(key: str, value: Any, hint: Any, source: str) -> Any:
    """`value` (parsed YAML or a Python value) checked against the annotation `hint`, made immutable where
    it is a mapping; never coerced from text (a profile file's `no` is False, not "no")."""
    if hint is Any:
        return _frozen(key, value, source)
    options = _options(hint)
    if value is None:
        if type(None) in options:
            return None
        raise ProfileError(f"{source}: key {key!r} must not be null")
    (option,) = [option for option in options if option is not type(None)]
    origin = typing.get_origin(option)
    if origin is list:
        items = value if isinstance(value, list | tuple) else [value]  # one value for a list: [value]
        return [check_value(key, item, typing.get_args(option)[0], source) for item in items]
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise ProfileError(f"{source}: key {key!r} must be a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(option)
        return FrozenMap((check_value(key, name, key_hint, source), check_value(f"{key}: {name}", item, value_hint, source))
                         for name, item in value.items())
    if option is Ablation:
        return _ablation(key, value, source)
    return _scalar(key, value, option, source)


def _frozen(key: str, value: Any, source: str) -> Any:
    try:
        return freeze(value)
    except ProfileError as error:
        raise ProfileError(f"{source}: key {key!r}: {error}") from None


def _ablation(key: str, value: Any, source: str) -> Ablation:
    if isinstance(value, Ablation):
        return value
    if not isinstance(value, Mapping) or "name" not in value or set(value) - {"name", "changes"}:
        raise ProfileError(f"{source}: key {key!r}: {value!r} is not {{name: <model>@<tag>, changes: {{...}}}}")
    name = _scalar(key, value["name"], str, source)
    changes = check_value(f"{key}: {name}", value.get("changes") or {}, Mapping[str, Any], source)
    try:
        return Ablation(name, changes)
    except ProfileError as error:
        raise ProfileError(f"{source}: key {key!r}: {error}") from None


def _scalar(key: str, value: Any, kind: type, source: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # YAML reads "1" as an int; a float key accepts it
    if kind is float and isinstance(value, str):
        try:
            return float(value)  # PyYAML reads "1e-3" (no dot) as a string
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    hint = ' (YAML reads unquoted no/yes/off/on as booleans: quote the value, e.g. "no")' \
        if kind is str and isinstance(value, bool) else ""
    raise ProfileError(f"{source}: key {key!r} must be {kind.__name__}, got {value!r} ({type(value).__name__}){hint}")
