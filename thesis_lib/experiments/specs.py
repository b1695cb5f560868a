"""Run specifications: what one (model or variant, seed, split) run is, and the grid's plan of them.

A run is named by its folder: the registry model (`fusion_early`), a named variant (`fusion_cross_attention@
no_objects`) or a baseline (`baseline_shallow`). A variant is a profile `Ablation`:

    ablations:
      - {name: fusion_cross_attention@one_way, changes: {fusion_bidirectional: false}}

where a change is either a registry override (`fusion_bidirectional: false`, `modalities: [text, image]`,
`fusion_depth: 1`, `image_timm_kwargs: {channels: [16, 32]}`; see `ModelConfig.with_overrides`) or one of
the run keys below:

    backbones: finetune|frozen        train the encoders, or train on their cached features (head/fusion only)
    encoders: runs|registry           fusions: start from the single-modality runs' encoders, or the recipe's
    text_cleaning: clean|raw          the plot as cleaned words or untouched
    late: runs|joint                  fusion_late: combine the unimodal runs' predictions, or train LateFusion
    text_source / image_source / objects_source: RUN    which runs a fusion reuses (same seed and split)

Profile `model_overrides` (registry model -> registry overrides) apply to every run of that model, its
variants included, before the variant's own changes. Every run gets a config hash over everything that
decides its result (including, for a fusion, the hashes of the runs it reuses), so a changed setting reruns
exactly the runs it affects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thesis_lib.data.dataset import MODALITIES
from thesis_lib.experiments.profile import BACKBONE_MODES, Profile, ProfileError
from thesis_lib.experiments.values import check_seeds
from thesis_lib.models.architectures import image_input_problem
from thesis_lib.models.configs import UNIMODAL_KINDS, ModelConfig
from thesis_lib.models.registry import default_config, list_models, model_summary
from thesis_lib.storage import stable_hash

# The reference rows of the results table (experiments.baselines): no network, fitted in seconds.
BASELINE_SUMMARIES = {
    "baseline_frequency": "Every movie gets each genre's training frequency as its probability: what any model "
                          "must beat",
    "baseline_shallow": "A logistic regression per genre on a poster colour histogram and the plot's bag of words "
                        "(colours and words, no shapes)",
}
BASELINES = tuple(BASELINE_SUMMARIES)
RUN_KEYS = ("backbones", "encoders", "text_cleaning", "late", "text_source", "image_source", "objects_source")
SOURCE_KEYS = {f"{modality}_source": modality for modality in MODALITIES}
# The order in which the grid runs the stages: a fusion needs the single-modality runs it reuses.
STAGES = ("baseline", "unimodal", "late", "fusion")


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid (before it is built): everything that decides what it computes."""

    name: str                                   # folder name: model, model@tag or baseline
    model: str                                  # registry name or baseline name
    kind: str                                   # "train" | "late" | "baseline"
    stage: str                                  # one of STAGES
    seed: int
    split: str                                  # "thesis" | "official"
    overrides: tuple[tuple[str, Any], ...]      # registry overrides, in the order given
    backbones: str                              # "finetune" | "frozen"
    encoders: str                               # "runs" | "registry"
    text_cleaning: str                          # "clean" | "raw"
    sources: tuple[tuple[str, str], ...]        # modality -> run name it reuses (fusions, late fusion)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.split, self.seed, self.name)

    @property
    def label(self) -> str:
        """How logs and failure reports name the run."""
        return f"{self.split}/{self.name}/seed{self.seed}"

    def source(self, modality: str) -> str:
        return dict(self.sources)[modality]


@dataclass(frozen=True)
class RunDefinition:
    """A run name from the profile, before seeds and splits: the model and its keys."""

    name: str
    model: str
    overrides: tuple[tuple[str, Any], ...]  # registry overrides, in the order given
    run_keys: dict[str, Any]  # the RUN_KEYS among the changes


def known_models() -> list[str]:
    return [*list_models(), *BASELINES]


@dataclass(frozen=True)
class ModelEntry:
    """A name a profile's `models` may list (`thesis models list`)."""

    name: str
    kind: str  # "model" (a registry recipe: a network the grid trains) | "baseline" (a reference row, no network)
    summary: str  # one line: what it reads and how

    def line(self) -> str:
        return f"{self.name:<24} {self.kind:<9} {self.summary}"


def model_catalogue() -> list[ModelEntry]:
    """Every model the grid can run: the registry's (sorted), then the baselines, each marked as such."""
    return ([ModelEntry(name, "model", model_summary(name)) for name in list_models()]
            + [ModelEntry(name, "baseline", summary) for name, summary in BASELINE_SUMMARIES.items()])


def _check_model(model: str, where: str) -> None:
    if model not in list_models() and model not in BASELINES:
        raise ProfileError(f"{where}: {model!r} is not a registered model or baseline ({', '.join(known_models())})")


def config_value(value: Any) -> Any:
    """A profile value as model configs hold it: mappings -> tuples of (name, value) pairs, lists -> tuples
    (e.g. image_timm_kwargs {channels: [16, 32]} -> (("channels", (16, 32)),))."""
    if isinstance(value, Mapping):
        return tuple((key, config_value(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(config_value(item) for item in value)
    return value


# ------------------------------------------------------------------------------------------ planning


def definitions(profile: Profile) -> dict[str, RunDefinition]:
    """Every run the profile names (models, then ablation variants), by name."""
    found: dict[str, RunDefinition] = {}
    for model in profile.models:
        _check_model(model, "profile key 'models'")
        found[model] = RunDefinition(name=model, model=model, overrides=(), run_keys={})
    for ablation in profile.ablations:
        _check_model(ablation.base, f"profile key 'ablations': {ablation.name!r}")
        overrides = tuple((key, config_value(value)) for key, value in ablation.changes.items() if key not in RUN_KEYS)
        run_keys = {key: value for key, value in ablation.changes.items() if key in RUN_KEYS}
        found[ablation.name] = RunDefinition(ablation.name, ablation.base, overrides, run_keys)
    return found


def model_overrides(profile: Profile) -> dict[str, tuple[tuple[str, Any], ...]]:
    """Profile `model_overrides` by registry model, as (key, value) pairs in the order given."""
    result: dict[str, tuple[tuple[str, Any], ...]] = {}
    for model, changes in profile.model_overrides.items():
        if model not in list_models():
            raise ProfileError(f"profile key 'model_overrides': {model!r} is not a registered model "
                               f"({', '.join(list_models())})")
        run_keys = sorted(set(changes) & set(RUN_KEYS))
        if run_keys:
            raise ProfileError(f"profile key 'model_overrides': {model}: {run_keys} are run keys; "
                               f"set them on a variant under 'ablations'")
        result[model] = tuple((key, config_value(value)) for key, value in changes.items())
    return result


def is_fusion(model: str) -> bool:
    return model not in BASELINES and default_config(model).fusion.kind not in UNIMODAL_KINDS


def make_spec(definition: RunDefinition, profile: Profile, seed: int, split: str) -> RunSpec:
    """The spec of one definition for one seed and split, with the profile's defaults filled in."""
    keys = definition.run_keys
    model = definition.model
    where = f"run {definition.name!r}"
    overrides = model_overrides(profile).get(model, ()) + definition.overrides
    if model in BASELINES:
        if overrides or set(keys) - {"text_cleaning"}:
            raise ProfileError(f"{where}: baselines take no model settings (only text_cleaning)")
        cleaning = keys.get("text_cleaning", profile.text_cleaning)
        _check_choice(where, "text_cleaning", cleaning, ("clean", "raw"))
        return RunSpec(definition.name, model, "baseline", "baseline", seed, split, (), "frozen", "registry",
                       cleaning, ())
    fusion = is_fusion(model)
    late = keys.get("late", "runs")
    _check_choice(where, "late", late, ("runs", "joint"))
    kind = "late" if model == "fusion_late" and late == "runs" else "train"
    backbones = keys.get("backbones", profile.fusion_backbones if fusion else profile.unimodal_backbones)
    encoders = keys.get("encoders", profile.fusion_encoders if fusion else "registry")
    cleaning = keys.get("text_cleaning", profile.text_cleaning)
    _check_choice(where, "backbones", backbones, BACKBONE_MODES)
    _check_choice(where, "encoders", encoders, ("runs", "registry"))
    _check_choice(where, "text_cleaning", cleaning, ("clean", "raw"))
    if not fusion and encoders == "runs":
        raise ProfileError(f"{where}: encoders=runs is for fusions (a single-modality run trains its own encoder)")
    if (kind == "late" or encoders == "runs") and "text_cleaning" in keys:
        raise ProfileError(f"{where}: a fusion reads its text source's plots; set text_cleaning on that run "
                           f"and point text_source at it")
    sources: tuple[tuple[str, str], ...] = ()
    if kind == "late" or (fusion and encoders == "runs"):
        defaults = {"text": profile.fusion_text_source, "image": profile.fusion_image_source,
                    "objects": profile.fusion_objects_source}
        modalities = resolve_model_config(model, overrides, profile, backbones).modalities
        sources = tuple((m, keys.get(f"{m}_source", defaults[m])) for m in modalities)
    stage = "late" if kind == "late" else ("fusion" if fusion else "unimodal")
    return RunSpec(definition.name, model, kind, stage, seed, split, overrides, backbones, encoders, cleaning, sources)


def _check_choice(where: str, key: str, value: Any, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ProfileError(f"{where}: {key}={value!r} is not one of {list(allowed)}")


def plan_grid(
    profile: Profile, models: Iterable[str] | None = None, seeds: Iterable[int] | None = None
) -> list[RunSpec]:
    """The runs of the grid, in the order they run: per split and seed, baselines, single-modality runs,
    late fusion, then trained fusions. Runs that a requested fusion reuses are added when missing."""
    available = definitions(profile)
    requested = list(models) if models is not None else list(available)
    if not requested:  # an empty selection (`--models ","`) is a mistake, never "the whole profile"
        raise ProfileError("--models names no run: give model names, or leave it out for the profile's runs")
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise ProfileError(f"--models: {', '.join(map(repr, unknown))} not in the profile's models or ablations "
                           f"({', '.join(available)})")
    seed_list = check_seeds("--seeds", seeds) if seeds is not None else list(profile.seeds)
    if not seed_list:
        raise ProfileError("--seeds names no seed: give seeds, or leave it out for the profile's seeds")
    plan: list[RunSpec] = []
    for split in profile.splits:
        for seed in seed_list:
            chosen: dict[str, RunSpec] = {}
            pending = list(requested)
            while pending:
                name = pending.pop(0)
                if name in chosen:
                    continue
                if name not in available:
                    raise ProfileError(f"a fusion reuses run {name!r}, which the profile does not define")
                spec = make_spec(available[name], profile, seed, split)
                chosen[name] = spec
                pending += [source for _, source in spec.sources if source not in chosen]
            order = {name: index for index, name in enumerate(available)}
            plan += sorted(chosen.values(), key=lambda s: (STAGES.index(s.stage), order[s.name]))
    for spec in plan:
        for modality, source in spec.sources:
            source_spec = next(s for s in plan if s.key == (spec.split, spec.seed, source))
            if source_spec.stage != "unimodal" or modality not in _modalities(source_spec, profile):
                raise ProfileError(f"run {spec.name!r}: {modality}_source {source!r} is not a single-modality "
                                   f"{modality} run")
    _check_image_size(plan, profile)
    return plan


def _check_image_size(plan: Sequence[RunSpec], profile: Profile) -> None:
    """ProfileError when `image_size` does not suit an image encoder the plan builds (`image_input_problem`);
    a fusion that reuses a run's image encoder is checked through that run."""
    checked: set[tuple[Any, ...]] = set()
    for spec in plan:
        if spec.kind != "train" or "image" in dict(spec.sources):
            continue
        image = resolve_model_config(spec.model, spec.overrides, profile, spec.backbones).image
        if image is None or (key := (image.backbone, image.depth, image.timm_kwargs)) in checked:
            continue
        checked.add(key)
        try:
            problem = image_input_problem(image.backbone, image.input_size, depth=image.depth,
                                          timm_kwargs=image.timm_kwargs)
        except Exception:  # noqa: BLE001 - a backbone timm cannot build: that run fails with timm's own message
            continue
        if problem is not None:
            raise ProfileError(f"image_size {profile.image_size}: {problem} (run {spec.name!r})")


def _modalities(spec: RunSpec, profile: Profile) -> tuple[str, ...]:
    return resolve_model_config(spec.model, spec.overrides, profile, spec.backbones).modalities


# ------------------------------------------------------------------------------------- configuration


def resolve_model_config(
    model: str, overrides: Sequence[tuple[str, Any]], profile: Profile, backbones: str
) -> ModelConfig:
    """The registry recipe in the profile's size, with the profile's input sizes, the backbone mode and
    the run's overrides applied (data-dependent settings, e.g. a trained tokenizer's vocabulary, come later)."""
    config = default_config(model, profile.model_size)
    frozen = backbones == "frozen"
    base: dict[str, Any] = {}
    if config.text is not None:
        base |= {"text_max_length": profile.text_max_length, "text_frozen": frozen}
    if config.image is not None:
        base |= {"image_input_size": profile.image_size, "image_frozen": frozen}
    config = config.with_overrides(**base)
    for key, value in overrides:  # one at a time: `modalities` may drop a part a later key would set
        try:
            config = config.with_overrides(**{key: value})
        except (ValueError, TypeError) as error:
            raise ProfileError(f"model {model!r}: override {key}={value!r}: {error}") from None
    return config


def train_settings(profile: Profile) -> dict[str, Any]:
    """The profile keys that decide how every trained run is trained (part of every config hash)."""
    keys = ("epochs", "batch_size", "lr_head", "lr_backbone", "lr_scales", "weight_decay", "warmup_ratio",
            "patience", "min_delta", "pos_weight", "monitor", "mixed_precision", "image_size", "image_augment", "text_max_length",
            "plot_choice", "model_size")
    settings = {key: getattr(profile, key) for key in keys}
    if profile.max_steps_per_epoch is not None:  # only when set: the hashes of uncapped runs stay as they were
        settings["max_steps_per_epoch"] = profile.max_steps_per_epoch
    if profile.lr_schedule != "linear":  # likewise: runs with the linear schedule keep their hashes
        settings |= {"lr_schedule": profile.lr_schedule, "plateau_factor": profile.plateau_factor}
    return settings


def config_payload(spec: RunSpec, profile: Profile, source_hashes: dict[str, str]) -> dict[str, Any]:
    """Everything that decides the run's result (its hash is the run's config hash)."""
    payload: dict[str, Any] = {
        "kind": spec.kind,
        "model": spec.model,
        "split": spec.split,
        "split_seed": profile.split_seed if spec.split == "thesis" else None,
        "seed": spec.seed,
        "text_cleaning": spec.text_cleaning,
    }
    if spec.model == "baseline_shallow":
        payload["shallow_c"] = profile.shallow_c
    if spec.kind in ("train", "late"):
        config = resolve_model_config(spec.model, spec.overrides, profile, spec.backbones)
        payload |= {
            "overrides": [[key, value] for key, value in spec.overrides],
            "backbones": spec.backbones,
            "encoders": spec.encoders,
            "model_config": dataclasses.asdict(config),
            "sources": {modality: source_hashes[source] for modality, source in spec.sources},
        }
    if spec.kind == "train":
        payload["train"] = train_settings(profile)
    return payload


def config_hashes(plan: Sequence[RunSpec], profile: Profile) -> dict[tuple[str, int, str], tuple[str, dict[str, Any]]]:
    """(hash, payload) of every run of the plan; a fusion's payload holds its sources' hashes."""
    by_key = {spec.key: spec for spec in plan}
    result: dict[tuple[str, int, str], tuple[str, dict[str, Any]]] = {}

    def compute(spec: RunSpec) -> str:
        if spec.key not in result:
            sources = {name: compute(by_key[(spec.split, spec.seed, name)]) for _, name in spec.sources}
            payload = config_payload(spec, profile, sources)
            result[spec.key] = (stable_hash(payload), payload)
        return result[spec.key][0]

    for spec in plan:
        compute(spec)
    return result
