"""Profiles (notebooks/params/*.yaml) and the grid plan they produce: no training here, only parsing."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from thesis_lib.experiments.profile import (
    PROFILE_KEYS,
    Ablation,
    ProfileError,
    load_profile,
    profile_from_mapping,
    profile_from_parameters,
    profile_path,
)
from thesis_lib.experiments.specs import config_hashes, plan_grid
from thesis_lib.models.registry import list_models


def write_profile(tmp_path, **changes):
    """smoke.yaml with some keys changed (None as a value removes the key), as a new file."""
    content = yaml.safe_load(profile_path("smoke").read_text())
    for key, value in changes.items():
        if value is None:
            content.pop(key)
        else:
            content[key] = value
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


@pytest.mark.parametrize("name", ["smoke", "full"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.profile == name
    assert set(profile.models) <= set(list_models()) | {"baseline_frequency", "baseline_shallow"}
    plan = plan_grid(profile)
    assert {spec.split for spec in plan} == set(profile.splits)


def test_smoke_and_full_have_the_same_keys():
    smoke = yaml.safe_load(profile_path("smoke").read_text())
    full = yaml.safe_load(profile_path("full").read_text())
    assert list(smoke) == list(full) == list(PROFILE_KEYS)


def test_profiles_describe_their_regimes():
    smoke, full = load_profile("smoke"), load_profile("full")
    assert (smoke.device, smoke.model_size, len(smoke.seeds), smoke.splits) == ("cpu", "small", 1, ["thesis"])
    assert (full.device, full.mixed_precision, full.model_size, full.seeds) == ("auto", "bf16", "full", [0, 1, 2])
    assert full.splits == ["thesis", "official"] and full.data_root is None and full.twin_root is None


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = write_profile(tmp_path, epochz=3)
    with pytest.raises(ProfileError, match=r"profile\.yaml.*'epochz'"):
        load_profile(path)


def test_missing_key_is_named_with_the_file(tmp_path):
    path = write_profile(tmp_path, epochs=None)
    with pytest.raises(ProfileError, match=r"profile\.yaml.*missing.*'epochs'"):
        load_profile(path)


BAD_VALUES = [("epochs", "three"), ("seeds", ["a"]), ("device", "tpu"), ("lr_scales", []),
              ("plot_choice", "shortest"), ("mixed_precision", "fp8"), ("num_workers", -2),
              ("gradient_accumulation", 0), ("gradient_accumulation", 3)]  # 3 does not divide batch_size 16


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_values_are_refused(tmp_path, key, value):
    with pytest.raises(ProfileError, match=key):
        load_profile(write_profile(tmp_path, **{key: value}))


def test_overrides_are_typed_like_the_key():
    profile = load_profile("smoke", {"epochs": "2", "seeds": "0,1,2", "lr_head": "3e-3", "patience": "null",
                                     "ablations": "[{name: fusion_early@wide, changes: {fusion_dim: 256}}]",
                                     "model_overrides": "{text_bert: {text_frozen: false}}"})
    assert profile.epochs == 2 and profile.seeds == [0, 1, 2] and profile.lr_head == 0.003
    assert profile.patience is None
    assert profile.ablations == [Ablation("fusion_early@wide", {"fusion_dim": 256})]
    assert profile.model_overrides == {"text_bert": {"text_frozen": False}}
    with pytest.raises(ProfileError, match="'epohcs' is not a key"):
        load_profile("smoke", {"epohcs": "2"})


def test_runs_are_typed_once_and_round_trip():
    profile = load_profile("smoke", {"ablations": "[{name: text_roberta@raw, changes: {text_cleaning: raw, text_max_length: 128}}]"})  # text, as `thesis run ablations=...` gives it
    raw = next(a for a in profile.ablations if a.name == "text_roberta@raw")
    assert (raw.base, raw.tag, dict(raw.changes)) == ("text_roberta", "raw", {"text_cleaning": "raw",
                                                                              "text_max_length": 128})
    resnet = profile.model_overrides["image_resnet50"]["image_timm_kwargs"]
    assert resnet["channels"] == (16, 32, 64, 128)  # frozen: lists become tuples, mappings read-only
    assert hash(raw) == hash(Ablation(raw.name, {"text_cleaning": "raw", "text_max_length": 128}))
    assert profile_from_mapping(yaml.safe_load(yaml.safe_dump(profile.to_dict())), source="dump") == profile


def test_a_missing_profile_names_the_ones_found_and_a_path_works(tmp_path):
    with pytest.raises(ProfileError, match=r"no_such\.yaml not found \(profiles found: full, smoke"):
        load_profile("no_such")
    assert load_profile(write_profile(tmp_path)) == load_profile("smoke")


def test_plan_runs_sources_before_the_fusions_that_reuse_them():
    profile = load_profile("smoke")
    plan = plan_grid(profile)
    order = [spec.name for spec in plan]
    for index, spec in enumerate(plan):
        for _, source in spec.sources:
            assert order.index(source) < index, f"{spec.name} runs before its source {source}"
    late = next(spec for spec in plan if spec.name == "fusion_late")
    assert late.kind == "late" and dict(late.sources)["text"] == profile.fusion_text_source
    assert next(spec for spec in plan if spec.name == "fusion_late@joint").kind == "train"
    assert {spec.stage for spec in plan[:2]} == {"baseline"}


def test_requested_fusion_brings_its_sources():
    profile = load_profile("smoke")
    names = [spec.name for spec in plan_grid(profile, models=["fusion_cross_attention@minilm"])]
    assert names == ["text_bert", profile.fusion_image_source, profile.fusion_objects_source,
                     "fusion_cross_attention@minilm"]


def test_variant_settings_and_overrides_are_parsed():
    profile = load_profile("smoke")
    profile = dataclasses.replace(profile, ablations=[Ablation("fusion_cross_attention@x", {
        "fusion_bidirectional": False, "backbones": "finetune", "image_timm_kwargs": {"a": [1, 2]}})])
    (spec,) = [s for s in plan_grid(profile, models=["fusion_cross_attention@x"]) if s.name.endswith("@x")]
    assert spec.backbones == "finetune"
    assert dict(spec.overrides)["fusion_bidirectional"] is False
    assert dict(spec.overrides)["image_timm_kwargs"] == (("a", (1, 2)),)


@pytest.mark.parametrize("entry", [{"name": "no_such_model@x", "changes": {"a": 1}},
                                   {"name": "fusion_early@x", "changes": ["fusion_dim=8"]},
                                   {"name": "fusion_early@"}, "fusion_early@x fusion_dim=8",
                                   {"name": "fusion_early@x", "change": {"fusion_dim": 8}}])
def test_bad_variant_definitions_are_refused(entry):
    with pytest.raises(ProfileError, match="ablations"):
        plan_grid(load_profile("smoke", {"ablations": [entry]}))


@pytest.mark.parametrize("overrides", [{"not_a_model": {"x": 1}}, {"fusion_early": {"backbones": "frozen"}},
                                       {"fusion_early@x": {"fusion_dim": 8}}, {"fusion_early": "fusion_dim=8"}])
def test_bad_model_overrides_are_refused(overrides):
    with pytest.raises(ProfileError, match="model_overrides"):
        plan_grid(load_profile("smoke", {"model_overrides": overrides}))


def test_a_changed_setting_changes_exactly_the_affected_hashes():
    profile = load_profile("smoke")
    before = {key: value[0] for key, value in config_hashes(plan_grid(profile), profile).items()}
    changed = dataclasses.replace(profile, model_overrides={**profile.model_overrides,
                                                            "fusion_early": {"fusion_dropout": 0.3}})
    after = {key: value[0] for key, value in config_hashes(plan_grid(changed), changed).items()}
    # model_overrides reach every run of that registry model, its variants included
    assert {key[2] for key in before if before[key] != after[key]} == {
        name for name in (key[2] for key in before) if name.partition("@")[0] == "fusion_early"}
    # a source's change reaches every run that reuses it
    text_source = profile.fusion_text_source
    source = dataclasses.replace(profile, model_overrides={
        **profile.model_overrides, text_source: {**profile.model_overrides[text_source], "text_max_length": 48}})
    reused = {key: value[0] for key, value in config_hashes(plan_grid(source), source).items()}
    moved = {key[2] for key in before if before[key] != reused[key]}
    assert profile.fusion_text_source in moved and "fusion_cross_attention" in moved and "fusion_late" in moved
    assert "image_vit" not in moved and "baseline_shallow" not in moved


def test_the_schedule_reaches_every_trained_run_and_only_a_plateau_schedule_enters_the_hashes():
    import torch

    from thesis_lib.experiments.runner import profile_train_config

    smoke = load_profile("smoke")
    config = profile_train_config(smoke, torch.device("cpu"), seed=0, processes=1)
    assert (config.lr_schedule, config.plateau_factor, config.epochs) == (
        smoke.lr_schedule, smoke.plateau_factor, smoke.epochs)
    def hashes(profile):
        return {key: value[0] for key, value in config_hashes(plan_grid(profile), profile).items()}

    linear, plateau = (dataclasses.replace(smoke, lr_schedule=schedule) for schedule in ("linear", "plateau"))
    for before, after in ((linear, plateau), (plateau, dataclasses.replace(plateau, plateau_factor=0.25))):
        old, new = hashes(before), hashes(after)
        moved = {key[2] for key in old if old[key] != new[key]}
        assert "fusion_cross_attention" in moved and "text_roberta" in moved and "baseline_shallow" not in moved
    # The linear schedule adds no key: runs of a linear profile keep the hashes they had before the setting existed.
    assert hashes(linear) == hashes(dataclasses.replace(linear, plateau_factor=0.25))
    for key, bad in (("lr_schedule", "cosine"), ("plateau_factor", 1.5)):
        with pytest.raises(ProfileError, match=key):
            load_profile("smoke", {key: bad})


def test_string_keys_keep_words_yaml_would_turn_into_booleans(tmp_path):
    assert load_profile("smoke", {"mixed_precision": "no"}).mixed_precision == "no"
    assert load_profile("smoke", {"data_root": "null"}).data_root is None  # an optional path may be cleared
    assert load_profile("smoke", {"data_root": "on"}).data_root == "on"  # a folder called "on" stays one
    with pytest.raises(ProfileError, match="mixed_precision.*quote the value"):
        load_profile(write_profile(tmp_path, mixed_precision=False))  # what `mixed_precision: no` reads as


def test_a_chapter_and_thesis_run_read_the_same_typed_profile():
    """A chapter's parameters (see notebooks/*.ipynb) resolve through the loader `thesis run` uses."""
    assert profile_from_parameters({"profile": "smoke", "data_root": None}) == load_profile("smoke")
    # papermill -f notebooks/params/full.yaml injects the whole file (a custom file need not be in params/)
    full = yaml.safe_load(profile_path("full").read_text()) | {"profile": "my_full"}
    assert profile_from_parameters({"data_root": None} | full) == dataclasses.replace(load_profile("full"),
                                                                                      profile="my_full")
    # papermill -p gives text or papermill-typed values; -y gives YAML values: typed as KEY=VALUE is
    given = {"profile": "full", "data_root": "/data/mmimdb", "seeds": "0,1", "epochs": 2, "mixed_precision": "no",
             "ablations": [{"name": "fusion_early@x", "changes": {"fusion_dim": 8}}]}
    assert profile_from_parameters(given) == load_profile("full", {
        "data_root": "/data/mmimdb", "seeds": "0,1", "epochs": "2", "mixed_precision": "no",
        "ablations": "[{name: fusion_early@x, changes: {fusion_dim: 8}}]"})
    with pytest.raises(ProfileError, match="epochs"):
        profile_from_parameters({"profile": "smoke", "epochs": "three"})
