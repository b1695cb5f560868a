"""Experiment profiles: the typed form of `notebooks/params/<name>.yaml`.

A profile file is the single source of defaults for `thesis run --profile NAME` and for papermill
(`papermill ... -f notebooks/params/smoke.yaml`), so its keys are flat and its values simple (strings,
numbers, booleans, null, lists of those). `Profile` declares every key without a default: a file that
misses a key, names an unknown one or gives a value of the wrong type is refused with a message naming
the key and the file, so a typo never silently falls back to some default.

Run lists are plain strings, papermill-friendly:
- `models`: registry names (`thesis models list`) and the baselines `baseline_frequency`,
  `baseline_shallow`;
- `ablations`: named variants `"<model>@<tag> key=value ..."`, e.g.
  `"fusion_cross_attention@one_way fusion_bidirectional=false"` (see `thesis_lib.experiments.specs`);
- `model_overrides`: `"<model> key=value ..."` applied to every run of that registry model.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thesis_lib.errors import ThesisError
from thesis_lib.paths import project_root

PROFILE_DIR = Path("notebooks") / "params"  # relative to the project root
PROFILE_NAMES = ("smoke", "full")
SPLIT_CHOICES = ("thesis", "official")
BACKBONE_MODES = ("finetune", "frozen")


class ProfileError(ThesisError, ValueError):
    """A profile file (or an override of one of its keys) that cannot be used as it is."""


@dataclass(frozen=True)
class Profile:
    """Everything `thesis run` needs besides the data: one field per profile key (no defaults here)."""

    profile: str                     # the profile's name, recorded in every run record ("smoke" | "full" | ...)
    data_root: str | None            # release folder; null: the synthetic twin at `twin_root` (generated if missing)
    twin_root: str | None            # where the twin lives, relative to the project root; null: no twin (full)
    twin_movies: int                 # movies of a generated twin
    twin_seed: int                   # seed of a generated twin
    runs_dir: str                    # where runs are stored, relative to the project root unless absolute
    splits: list[str]                # "thesis" (70/15/15 stratified) and/or "official"; the first is primary
    split_seed: int                  # seed of the thesis split
    seeds: list[int]                 # training seeds: every model runs once per seed
    models: list[str]                # registry models and baselines of the grid
    ablations: list[str]             # named variants "<model>@<tag> key=value ..." (run after the models)
    model_overrides: list[str]       # "<model> key=value ..." applied to every run of that registry model
    model_size: str                  # registry form: "small" (offline, CPU) | "full" (pretrained, GPU)
    device: str                      # "cpu" | "auto" (accelerate's choice: the GPU when there is one)
    mixed_precision: str             # "no" | "bf16"
    fused_adamw: bool                # one fused AdamW kernel per step (GPU speed; same maths)
    channels_last: bool              # NHWC weights and posters for convolutional encoders (GPU tensor cores)
    group_by_length: bool            # training batches of plots of similar token length (less padding)
    cpu_threads: int                 # torch intra-op threads; 0 leaves torch's default (one per core)
    image_size: int                  # poster side in pixels fed to every image encoder
    image_augment: bool              # random resized crops, flips and colour jitter on training posters
    text_max_length: int             # plot tokens kept (special tokens included)
    text_cleaning: str               # "clean" (lower-case, no punctuation, no stop words) | "raw"
    epochs: int                      # epochs per training run, the same for every model
    batch_size: int
    lr_head: float                   # learning rate of layers trained from scratch (and random encoders)
    lr_backbone: float               # learning rate of encoders that start from trained weights
    lr_scales: list[float]           # learning-rate trials: each scales both rates; dev picks one
    weight_decay: float
    warmup_ratio: float
    patience: int | None             # early stopping on the dev monitor; null: never stop early
    pos_weight: str                  # "none" | "inverse_frequency" (MMBT's BCE weighting)
    monitor: str                     # dev score that picks the best epoch and trial: "macro_f1" | "map_macro" | "loss"
    num_workers: int                 # DataLoader worker processes
    unimodal_backbones: str          # single-modality runs: "finetune" | "frozen" (cached features, head only)
    fusion_backbones: str            # fusion runs: "frozen" (cached encoder features) | "finetune"
    fusion_encoders: str             # "runs": fusions start from the single-modality runs' encoders; "registry"
    fusion_text_source: str          # the run whose text encoder (and dev/test predictions) fusions reuse
    fusion_image_source: str         # ... image encoder
    fusion_objects_source: str       # ... object detections (objects_yolo | objects_frcnn | objects_oracle)
    shallow_c: float                 # inverse regularisation strength of the shallow baseline's logistic regressions
    bootstrap_resamples: int         # resamples of the test movies for the results table's intervals

    def __post_init__(self) -> None:
        choices = {
            "model_size": ("small", "full"),
            "device": ("cpu", "auto"),
            "mixed_precision": ("no", "bf16"),
            "text_cleaning": ("clean", "raw"),
            "pos_weight": ("none", "inverse_frequency"),
            "monitor": ("macro_f1", "map_macro", "loss"),
            "unimodal_backbones": BACKBONE_MODES,
            "fusion_backbones": BACKBONE_MODES,
            "fusion_encoders": ("runs", "registry"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: {getattr(self, key)!r} is not one of {list(allowed)}")
        if not self.splits or any(split not in SPLIT_CHOICES for split in self.splits):
            raise ValueError(f"splits: {self.splits!r} must list one or both of {list(SPLIT_CHOICES)}")
        if len(set(self.splits)) != len(self.splits) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("splits and seeds must not repeat an entry")
        if not self.seeds or not self.models:
            raise ValueError("seeds and models must not be empty")
        if not self.lr_scales or min(self.lr_scales) <= 0:
            raise ValueError(f"lr_scales: {self.lr_scales!r} must be positive numbers (one per trial)")
        for key in ("epochs", "batch_size", "image_size", "text_max_length", "bootstrap_resamples", "twin_movies"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")
        if self.cpu_threads < 0 or self.num_workers < 0:
            raise ValueError("cpu_threads and num_workers must be >= 0")

    @property
    def primary_split(self) -> str:
        """The split of the main results table (runs of other splits are stored under RUNS/<split>/)."""
        return self.splits[0]

    def runs_path(self) -> Path:
        return _project_path(self.runs_dir)

    def twin_path(self) -> Path | None:
        return None if self.twin_root is None else _project_path(self.twin_root)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILE_KEYS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Profile))
PROFILE_HINTS: dict[str, Any] = typing.get_type_hints(Profile)  # key -> its annotation (int, list[str], ...)


def profile_path(name_or_path: str | os.PathLike[str]) -> Path:
    """`smoke`/`full` -> notebooks/params/<name>.yaml in the project; anything else is a path."""
    text = str(name_or_path)
    if text in PROFILE_NAMES or (os.sep not in text and not text.endswith((".yaml", ".yml"))):
        return project_root() / PROFILE_DIR / f"{text}.yaml"
    return Path(text).expanduser()


def load_profile(name_or_path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Profile:
    """Read and check a profile file; `overrides` replace keys (strings are parsed like CLI values)."""
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"profile {path} not found (known profiles: {', '.join(PROFILE_NAMES)}, or give a path)")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ProfileError(f"profile {path} is not readable YAML: {error}") from None
    if not isinstance(content, dict):
        raise ProfileError(f"profile {path} must be a mapping of keys to values, got {type(content).__name__}")
    return profile_from_mapping(content, source=str(path), overrides=overrides)


def profile_from_mapping(
    content: dict[str, Any], *, source: str, overrides: dict[str, Any] | None = None
) -> Profile:
    """A `Profile` from a parsed mapping; `source` names the file in error messages."""
    unknown = sorted(set(content) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"known keys: {', '.join(PROFILE_KEYS)}")
    missing = [key for key in PROFILE_KEYS if key not in content]
    if missing:
        raise ProfileError(f"{source}: missing key(s) {', '.join(map(repr, missing))} (every profile lists every key)")
    values = dict(content)
    for key, value in (overrides or {}).items():
        if key not in PROFILE_KEYS:
            raise ProfileError(f"override {key!r} is not a key of {source}; known keys: {', '.join(PROFILE_KEYS)}")
        values[key] = _parse_override_for(value, PROFILE_HINTS[key]) if isinstance(value, str) else value
    typed = {key: _check_type(key, values[key], PROFILE_HINTS[key], source) for key in PROFILE_KEYS}
    try:
        return Profile(**typed)
    except ValueError as error:
        raise ProfileError(f"{source}: {error}") from None


def parse_override(text: str) -> Any:
    """A command-line value, read as YAML: "3", "1e-3", "true", "null", "[a, b]". A plain string stays a
    string; list keys split it later (see `_as_list`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _options(hint: Any) -> tuple[Any, ...]:
    """The types an annotation allows: (int,) for int, (str, NoneType) for str | None."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _parse_override_for(text: str, hint: Any) -> Any:
    """A command-line override of a key annotated `hint`: a string key keeps the text as it is (YAML would
    read `mixed_precision=no` as False), "null" included only where the key may be null; others go through YAML."""
    options = _options(hint)
    if str in options:
        return None if type(None) in options and text.strip() in ("null", "~") else text
    return parse_override(text)


def _check_type(key: str, value: Any, hint: Any, source: str) -> Any:
    """`value` checked against the annotation `hint` (int, float, str, bool, list[...], X | None)."""
    options = _options(hint)
    if value is None:
        if type(None) in options:
            return None
        raise ProfileError(f"{source}: key {key!r} must not be null")
    for option in options:
        if option is type(None):
            continue
        if typing.get_origin(option) is list:
            (item_type,) = typing.get_args(option)
            items = _as_list(value)
            return [_scalar(key, item, item_type, source) for item in items]
        return _scalar(key, value, option, source)
    raise AssertionError(f"unsupported annotation {hint!r} for profile key {key}")


def _as_list(value: Any) -> list[Any]:
    """A list key given one value (papermill -p, a CLI override): "0,1" -> [0, 1]; a run definition
    ("model key=value ...", which may hold commas) stays one item; give several as YAML "[..., ...]"."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and not any(char.isspace() for char in value.strip()):
        return [parse_override(part) for part in value.split(",") if part.strip()]
    return [value]


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


def _project_path(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_root() / candidate
