"""Experiment profiles: the typed form of `notebooks/params/<name>.yaml`, and the one loader of them.

A profile file is the single source of settings for `thesis run --profile NAME`, for `thesis book` and for
every chapter notebook, and it stays a papermill parameter file (`papermill ... -f notebooks/params/full.yaml`).
`Profile` declares every key without a default: a file that misses a key, names an unknown one or gives a
value of the wrong type is refused with a message naming the key and the file, so a typo never silently
falls back to some default. Values are plain YAML; runs are YAML too:

    ablations:                      # named variants "<model>@<tag>" and what they change
      - {name: fusion_cross_attention@one_way, changes: {fusion_bidirectional: false}}
    model_overrides:                # registry model -> changes for every run of it (its variants included)
      text_bert: {text_frozen: true}

(the change keys: registry overrides, see `ModelConfig.with_overrides`, and the run keys of
`thesis_lib.experiments.specs`).

Three ways in, one result:
- `load_profile(name_or_path, overrides)`: a file, plus overrides (`thesis run ... KEY=VALUE`);
- `profile_from_mapping(content, source=...)`: an already parsed mapping (the benchmark's grid check);
- `profile_from_parameters(globals())`: a chapter notebook's parameters (see there), which papermill fills
  from `-p NAME VALUE`, `-y YAML` or `-f FILE`.

Values that arrive as text (`KEY=VALUE`, papermill `-p`) go through one coercion, `values.typed_value`,
driven by the field's type: the text is read as YAML and checked against the type; a key that takes strings keeps the
text itself when YAML would read something else (`mixed_precision=no` stays "no", a folder called `on`
stays "on"); a list key also takes comma-separated items (`seeds=0,1,2`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.experiments.values import Ablation, ProfileError, check_seeds, check_value, thaw, typed_value
from thesis_lib.paths import project_root

PROFILE_DIR = Path("notebooks") / "params"  # relative to the project root
PROFILE_NAMES = ("smoke", "full")
DEFAULT_PROFILE = "smoke"
SPLIT_CHOICES = ("thesis", "official")
BACKBONE_MODES = ("finetune", "frozen")
# A rehearsal's twin (`experiments.rehearsal`): posters at MM-IMDb's size (about 300 px wide, 2:3; the default
# twin's are 224 wide) and more plots past 512 tokens, so the resize and the 512-token cut both run.
REHEARSAL_TWIN_CHANGES: dict[str, Any] = {"poster_size": (300, 444), "long_plot_rate": 0.05}


@dataclass(frozen=True)
class Profile:
    """Everything `thesis run` needs besides the data: one field per profile key (no defaults here)."""

    profile: str                     # the profile's name, recorded in every run record ("smoke" | "full" | ...)
    rehearsal: bool                  # a CPU rehearsal on random stand-in weights (`thesis run --rehearse`): not results
    data_root: str | None            # release folder; null: the synthetic twin at `twin_root` (generated if missing)
    twin_root: str | None            # where the twin lives, relative to the project root; null: no twin (full)
    twin_movies: int                 # movies of a generated twin
    twin_seed: int                   # seed of a generated twin
    runs_dir: str                    # where runs are stored, relative to the project root unless absolute
    splits: list[str]                # "thesis" (70/15/15 stratified) and/or "official"; the first is primary
    split_seed: int                  # seed of the thesis split
    seeds: list[int]                 # training seeds: every model runs once per seed
    models: list[str]                # registry models and baselines of the grid
    ablations: list[Ablation]        # named variants {name: <model>@<tag>, changes: {...}} (run after the models)
    model_overrides: Mapping[str, Mapping[str, Any]]  # registry model -> changes for every run of that model
    model_size: str                  # registry form: "small" (offline, CPU) | "full" (pretrained, GPU)
    device: str                      # "cpu" | "auto" (accelerate's choice: the GPU when there is one)
    mixed_precision: str             # "no" | "bf16" | "fp16" (a GPU without bf16 runs a bf16 profile in fp16)
    fused_adamw: bool                # one fused AdamW kernel per step (GPU speed; same maths)
    channels_last: bool              # NHWC weights and posters for convolutional encoders (GPU tensor cores)
    group_by_length: bool            # training batches of plots of similar token length (less padding)
    cpu_threads: int                 # torch intra-op threads; 0 leaves torch's default (one per core)
    trial_workers: int               # learning-rate trials trained at once, each in a worker process (CPU only; 1: in turn)
    tensorboard: bool                # TensorBoard event files per trained run (its folder's tensorboard/; viewing only)
    image_size: int                  # poster side in pixels fed to every image encoder
    image_augment: bool              # random resized crops, flips and colour jitter on training posters
    text_max_length: int             # plot tokens kept (special tokens included)
    text_cleaning: str               # "clean" (lower-case, no punctuation, no stop words) | "raw"
    plot_choice: str                 # which entry of a movie's plot list is read: "longest" | "first" | "concat"
    epochs: int                      # epochs per training run, the same for every model
    max_steps_per_epoch: int | None  # optimizer steps per epoch at most (a rehearsal's cap); null: the whole train part
    batch_size: int                  # global batch per optimizer step, whatever the processes and accumulation
    gradient_accumulation: int       # micro-batches per optimizer step (per-process batch: batch / (procs x this))
    lr_head: float                   # learning rate of layers trained from scratch (and random encoders)
    lr_backbone: float               # learning rate of encoders that start from trained weights
    lr_scales: list[float]           # learning-rate trials: each scales both rates; dev picks one
    weight_decay: float              # AdamW's decoupled weight decay (biases and norms excluded)
    warmup_ratio: float              # share of the optimizer steps (epochs x steps per epoch) with a linear warm-up
    lr_schedule: str                 # after the warm-up: "linear" decay to 0 at `epochs` | "plateau" (held, cut on plateaus)
    plateau_factor: float            # "plateau": the rates are multiplied by this after an epoch that does not improve
    patience: int | None             # early stopping on the dev monitor; null: never stop early
    min_delta: float                 # an epoch improves on the best only by more than this (the plateau rule)
    pos_weight: str                  # "none" | "inverse_frequency" (MMBT's BCE weighting) | "sqrt_inverse_frequency" (its square root)
    monitor: str                     # dev score that picks the best epoch and trial: "macro_f1" | "map_macro" | "loss"
    num_workers: int                 # DataLoader worker processes; -1: one per core less two (cores - 2)
    unimodal_backbones: str          # single-modality runs: "finetune" | "frozen" (cached features, head only)
    fusion_backbones: str            # fusion runs: "frozen" (cached encoder features) | "finetune"
    fusion_encoders: str             # "runs": fusions start from the single-modality runs' encoders; "registry"
    fusion_text_source: str          # the run whose text encoder (and dev/test predictions) fusions reuse
    fusion_image_source: str         # the run whose image encoder (and predictions) fusions reuse
    fusion_objects_source: str       # the run whose detections fusions read (objects_yolo | objects_frcnn | objects_oracle)
    shallow_c: float                 # inverse regularisation strength of the shallow baseline's logistic regressions
    bootstrap_resamples: int         # resamples of the test movies for the results table's intervals

    def __post_init__(self) -> None:
        choices = {
            "model_size": ("small", "full"),
            "device": ("cpu", "auto"),
            "mixed_precision": ("no", "bf16", "fp16"),
            "plot_choice": ("longest", "first", "concat"),
            "text_cleaning": ("clean", "raw"),
            "pos_weight": ("none", "inverse_frequency", "sqrt_inverse_frequency"),
            "monitor": ("macro_f1", "map_macro", "loss"),
            "lr_schedule": ("linear", "plateau"),
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
        if not self.lr_scales or not all(math.isfinite(scale) and scale > 0 for scale in self.lr_scales):
            raise ValueError(f"lr_scales: {self.lr_scales!r} must be positive finite numbers (one per trial)")
        for key in ("lr_head", "lr_backbone", "weight_decay"):  # NaN or inf would train to NaN, not fail
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"{key}: must be a finite number >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio: must lie in [0, 1), got {self.warmup_ratio}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"plateau_factor: must lie in (0, 1), got {self.plateau_factor}")
        if not (math.isfinite(self.shallow_c) and self.shallow_c > 0):
            raise ValueError(f"shallow_c: must be a positive finite number, got {self.shallow_c}")
        for key in ("seeds", "split_seed", "twin_seed"):
            value = getattr(self, key)
            check_seeds(key, value if isinstance(value, list | tuple) else [value])
        for key in ("epochs", "batch_size", "gradient_accumulation", "image_size", "text_max_length", "bootstrap_resamples", "twin_movies"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1, got {getattr(self, key)}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch: must be at least 1 or null, got {self.max_steps_per_epoch}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads: must be >= 0, got {self.cpu_threads}")
        if self.trial_workers < 1:
            raise ValueError(f"trial_workers: must be at least 1, got {self.trial_workers}")
        if self.num_workers < -1:
            raise ValueError(f"num_workers: must be >= 0, or -1 for one per core less two, got {self.num_workers}")
        if self.batch_size % self.gradient_accumulation:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of gradient_accumulation "
                             f"{self.gradient_accumulation} (the global batch is split into equal micro-batches)")
        variants = [name for name in self.models if "@" in name]
        if variants:
            raise ValueError(f"models: {variants} are variants; name them with their changes under ablations")
        names = [*self.models, *(ablation.name for ablation in self.ablations)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"models/ablations: run(s) {twice} defined twice")
        variants = [name for name in self.model_overrides if "@" in name]
        if variants:
            raise ValueError(f"model_overrides: {variants} must be registry models (a variant is an ablation)")

    @property
    def primary_split(self) -> str:
        """The split of the main results table (runs of other splits are stored under RUNS/<split>/)."""
        return self.splits[0]

    def runs_path(self) -> Path:
        return _project_path(self.runs_dir)

    def twin_path(self) -> Path | None:
        return None if self.twin_root is None else _project_path(self.twin_root)

    def twin_config(self) -> TwinConfig:
        """How the twin at `twin_root` is generated when it is missing (`twin_movies`, `twin_seed`; a
        rehearsal's with `REHEARSAL_TWIN_CHANGES`)."""
        changes = REHEARSAL_TWIN_CHANGES if self.rehearsal else {}
        return TwinConfig(n_movies=self.twin_movies, seed=self.twin_seed, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values, in file order: `yaml.safe_dump(profile.to_dict())` is a profile file."""
        return {key: thaw(getattr(self, key)) for key in PROFILE_KEYS}


PROFILE_KEYS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Profile))
PROFILE_HINTS: dict[str, Any] = typing.get_type_hints(Profile)  # key -> its annotation (int, list[str], ...)
# A chapter's parameters cell declares every profile key (papermill's interface: `--help-notebook` lists them,
# `-f FILE` names none it does not know); `profile` names the profile, every other key left at None means
# "the profile's value", so a chapter's defaults never repeat (or hide) a profile's.
CHAPTER_PARAMETERS: tuple[str, ...] = PROFILE_KEYS


# ------------------------------------------------------------------------------------------ loading


def profile_path(name_or_path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """`smoke`/`full` (any bare name) -> notebooks/params/<name>.yaml under `root` (default: the project);
    anything with a folder or a .yaml/.yml ending is that file."""
    text = str(name_or_path)
    if text in PROFILE_NAMES or (os.sep not in text and "/" not in text and not text.endswith((".yaml", ".yml"))):
        return (project_root() if root is None else Path(root)) / PROFILE_DIR / f"{text}.yaml"
    return Path(text).expanduser()


def available_profiles(root: Path | None = None) -> list[str]:
    """The profile names that have a file in notebooks/params/, sorted."""
    return sorted(path.stem for path in ((project_root() if root is None else Path(root)) / PROFILE_DIR).glob("*.yaml"))


def load_profile(
    name_or_path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, *, root: Path | None = None
) -> Profile:
    """Read and check a profile file; `overrides` replace keys (text values are coerced by `typed_value`)."""
    path = profile_path(name_or_path, root)
    if not path.is_file():
        known = ", ".join(available_profiles(root)) or "none"
        raise ProfileError(f"profile {path} not found (profiles found: {known}; or give a path to a .yaml file)")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ProfileError(f"profile {path} is not readable YAML: {error}") from None
    if not isinstance(content, dict):
        raise ProfileError(f"profile {path} must be a mapping of keys to values, got {type(content).__name__}")
    return profile_from_mapping(content, source=str(path), overrides=overrides)


def profile_from_mapping(
    content: Mapping[str, Any], *, source: str, overrides: Mapping[str, Any] | None = None
) -> Profile:
    """A `Profile` from a parsed mapping that lists every key; `source` names it in error messages."""
    unknown = sorted(set(content) - set(PROFILE_KEYS), key=str)
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"known keys: {', '.join(PROFILE_KEYS)}")
    missing = [key for key in PROFILE_KEYS if key not in content]
    if missing:
        raise ProfileError(f"{source}: missing key(s) {', '.join(map(repr, missing))} (every profile lists every key)")
    values = {key: check_value(key, content[key], PROFILE_HINTS[key], source) for key in PROFILE_KEYS}
    for key, value in (overrides or {}).items():
        if key not in PROFILE_KEYS:
            raise ProfileError(f"override {key!r} is not a key of {source}; known keys: {', '.join(PROFILE_KEYS)}")
        values[key] = typed_value(key, value, PROFILE_HINTS[key], f"{source} (override)")
    try:
        return Profile(**values)
    except ValueError as error:
        raise ProfileError(f"{source}: {error}") from None


def profile_from_parameters(parameters: Mapping[str, Any]) -> Profile:
    """The profile a chapter notebook runs with, from its parameters (pass `globals()`).

    `parameters["profile"]` names the profile (a name in notebooks/params/ or a .yaml path); every other
    profile key in `parameters` that is not None overrides the file's value: papermill puts them there
    from `-p NAME VALUE` (typed by the key's declared type, as `thesis run KEY=VALUE` is: `-p splits
    official` is the list ["official"]), `-y YAML` or `-f FILE`. None is the chapter's default ("the
    profile's"); to set a key that allows null to null, give the text: `-p patience null`. When every key
    that cannot be null has a value (papermill `-f notebooks/params/full.yaml`, or any whole profile file,
    injects them all), they are the profile and no file is read.
    """
    given = {key: parameters[key] for key in PROFILE_KEYS if key in parameters}
    if all(given.get(key) is not None for key in PROFILE_KEYS if not _nullable(key)):
        source = "the chapter's parameters"
        return profile_from_mapping({key: typed_value(key, given.get(key), PROFILE_HINTS[key], source)
                                     for key in PROFILE_KEYS}, source=source)
    name = str(given.pop("profile", None) or DEFAULT_PROFILE)
    return load_profile(name, {key: value for key, value in given.items() if value is not None})


def chapter_parameters_cell(profile_meaning: str) -> str:
    """The parameters cell of every chapter (`notebooks/*.ipynb`): `profile` with `profile_meaning` as its
    comment, then every other profile key at None ("the profile's") with its meaning from `Profile`.

    Annotations are written `"Optional[int]"`: papermill's inspector (`--help-notebook`, its unknown-parameter
    check) reads `Optional[...]` but not `int | None`, and quoted they need no import in the cell. Comments
    hold no `=`, which its inspector cannot parse."""
    lines = [f'profile: str = "{DEFAULT_PROFILE}"  # {profile_meaning}']
    meanings = profile_key_meanings()
    for key in PROFILE_KEYS[1:]:
        lines.append(f'{key}: "{_annotation_text(PROFILE_HINTS[key], optional=True)}" = None  '
                     f"# {meanings[key]} (None: the profile's)")
    return "\n".join(lines)


def profile_key_meanings() -> dict[str, str]:
    """Key -> the comment of its field in `Profile` (the one place a key's meaning is written)."""
    import inspect
    import re

    field_line = re.compile(r"^\s+(\w+): [^#]+#\s*(.+?)\s*$")
    found = (field_line.match(line) for line in inspect.getsource(Profile).splitlines())
    return {match[1]: match[2] for match in found if match and match[1] in PROFILE_HINTS}


def _nullable(key: str) -> bool:
    hint = PROFILE_HINTS[key]
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _annotation_text(hint: Any, optional: bool = False) -> str:
    """`str | None` -> "Optional[str]", `list[Ablation]` -> "list[Ablation]" (the form papermill reads)."""
    if isinstance(hint, types.UnionType):
        (inner,) = [option for option in typing.get_args(hint) if option is not type(None)]
        return f"Optional[{_annotation_text(inner)}]"
    origin = typing.get_origin(hint)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        text = f"{name}[{', '.join(_annotation_text(arg) for arg in typing.get_args(hint))}]"
    else:
        text = "Any" if hint is Any else hint.__name__
    return f"Optional[{text}]" if optional else text


def _project_path(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_root() / candidate
