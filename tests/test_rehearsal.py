"""The CPU rehearsal of the full profile (`thesis run --profile full --rehearse`, experiments/rehearsal.py): the
profile it runs, where its stand-ins go and how they are flagged (preflight, records, book), never the whole
rehearsal itself (that is `make book PROFILE=full REHEARSE=1`, about 90 minutes)."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from thesis_lib.book import build as build_module
from thesis_lib.book.build import BookBuild, MissingRunsError, check_runs_finished
from thesis_lib.book.faithfulness import REHEARSAL_PAIRS_PER_RUN, pairs_per_run
from thesis_lib.book.provenance import REHEARSAL_BANNER, TWIN_BANNER, book_config
from thesis_lib.cli import main
from thesis_lib.data.mmimdb import load_release
from thesis_lib.detection import evaluate_detector, frcnn, yolo
from thesis_lib.detection.config import default_detector_config
from thesis_lib.experiments import preflight as preflight_module
from thesis_lib.experiments.preflight import preflight
from thesis_lib.experiments.profile import PROFILE_HINTS, PROFILE_KEYS, load_profile
from thesis_lib.experiments.rehearsal import (
    REHEARSAL_CACHE_VARIABLE,
    REHEARSAL_CHANGES,
    RehearsalError,
    enter_rehearsal,
    rehearsal_environment,
    rehearsal_parameters,
    rehearsal_profile,
    write_rehearsal_standins,
)
from thesis_lib.experiments.specs import plan_grid
from thesis_lib.experiments.values import typed_value
from thesis_lib.experiments.weights import profile_weights
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.pretrained import mark_standin, save_standin_state_dict, standin_reason
from thesis_lib.models.registry import build_from_config, default_config
from thesis_lib.paths import cache_dir, project_root

Usage = namedtuple("Usage", "total used free")
SIX = {"bert-base-uncased", "roberta-base", "resnet50", "vit_base_patch16_224",
       frcnn.coco_weights_path().name, "yolov8n.pt"}


@pytest.fixture
def rehearsal_root(tmp_path, monkeypatch):
    """A rehearsal cache root of the test's own; whatever `enter_rehearsal` sets is undone afterwards."""
    root = tmp_path / "rehearsal-cache"
    monkeypatch.setenv(REHEARSAL_CACHE_VARIABLE, str(root))
    for key in rehearsal_environment():  # recorded by monkeypatch, so the test's environment is restored
        monkeypatch.setenv(key, os.environ.get(key, ""))
    return root


@pytest.fixture
def roomy(monkeypatch):
    """Plenty of memory and disk, so only the item under test can stop the run."""
    monkeypatch.setattr(preflight_module, "memory_available_bytes", lambda: 512e9)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10e12, 0, 10e12))


def fake_standins(profile) -> None:
    """Tiny marked files at every place the profile's loaders read a weight (for the status checks only)."""
    for weight in profile_weights(profile):
        if weight.source == "huggingface":
            folder = Path(os.environ["THESIS_PRETRAINED_DIR"]) / weight.name
            folder.mkdir(parents=True)
            (folder / "config.json").write_text("{}")
            mark_standin(folder, "test stand-in")
        elif weight.source == "timm":
            path = Path(os.environ["THESIS_PRETRAINED_DIR"]) / "timm" / f"{weight.name}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_standin_state_dict({"x": torch.zeros(1)}, path, "test stand-in")
        else:
            weight.path.parent.mkdir(parents=True, exist_ok=True)
            weight.path.write_bytes(b"not a weight")
            mark_standin(weight.path, "test stand-in")


# ------------------------------------------------------------------------------------------- the profile


def test_the_rehearsal_changes_the_full_profile_in_the_stated_keys_only():
    full = load_profile("full")
    rehearsal = rehearsal_profile(full)
    assert rehearsal.to_dict() == full.to_dict() | REHEARSAL_CHANGES
    changed = {key for key in PROFILE_KEYS if getattr(full, key) != getattr(rehearsal, key)}
    assert changed <= set(REHEARSAL_CHANGES)
    # The full profile keeps its real values; the rehearsal keeps its sizes, models, seeds and splits.
    assert (full.rehearsal, full.max_steps_per_epoch, rehearsal.rehearsal) == (False, None, True)
    assert (rehearsal.model_size, rehearsal.image_size, rehearsal.text_max_length) == ("full", 224, 512)
    assert [spec.label for spec in plan_grid(rehearsal)] == [spec.label for spec in plan_grid(full)]
    assert len(plan_grid(rehearsal)) == 114
    assert rehearsal.twin_config().poster_size != full.twin_config().poster_size  # at MM-IMDb's size
    assert rehearsal.batch_size < full.batch_size and rehearsal.gradient_accumulation == full.gradient_accumulation
    # 04_xai explains a few pairs per run in a rehearsal (full-size encoders on the CPU), 200 otherwise.
    assert pairs_per_run(rehearsal.rehearsal) == REHEARSAL_PAIRS_PER_RUN < pairs_per_run(full.rehearsal) == 200


def test_the_book_gets_the_same_changes_as_parameters_and_overrides_win():
    typed = {name: typed_value(name, text, PROFILE_HINTS[name], "-p") for name, text in rehearsal_parameters()}
    assert typed == REHEARSAL_CHANGES
    part = rehearsal_profile(load_profile("full"), {"seeds": "0", "splits": "thesis"})
    assert (part.seeds, part.splits, part.rehearsal, part.epochs) == ([0], ["thesis"], True, 1)
    with pytest.raises(RehearsalError, match="full-size profile"):
        rehearsal_profile(load_profile("smoke"))


def test_the_rehearsal_reads_every_cache_and_weight_inside_its_own_root(rehearsal_root):
    real = cache_dir()
    enter_rehearsal()
    assert cache_dir() == rehearsal_root and rehearsal_root != real
    assert frcnn.coco_weights_path().is_relative_to(rehearsal_root)
    assert yolo.coco_weights_path(default_detector_config("yolo", "full")).is_relative_to(rehearsal_root)
    assert Path(os.environ["THESIS_PRETRAINED_DIR"]).is_relative_to(rehearsal_root)
    with pytest.raises(RehearsalError, match="rehearsal's cache root"):  # never into the real cache
        os.environ["THESIS_CACHE"] = str(real)
        write_rehearsal_standins(rehearsal_profile(load_profile("full")), rehearsal_root)


# ------------------------------------------------------------------------------------------- preflight


def test_the_preflight_warns_of_stand_ins_in_a_rehearsal_and_stops_on_them_outside(rehearsal_root, tmp_path, roomy,
                                                                                   capsys):
    enter_rehearsal()
    full = load_profile("full", {"device": "cpu"})
    fake_standins(full)
    code = main(["run", "--profile", "full", "--rehearse", "--check", "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    (weights,) = [line for line in out.splitlines() if line.split()[1:2] == ["weights"]]
    assert code == 0, out
    assert weights.startswith("WARNING weights  rehearsal: stand-ins: 6 random full-size weights under the real names")
    assert not (tmp_path / "runs").exists()
    # The same stand-ins stop a run that is not a rehearsal, even one pointed at the rehearsal's cache.
    report = preflight(full, data_root=tmp_path / "none", runs_dir=tmp_path / "runs")
    (stop,) = [line for line in report.lines if line.item == "weights"]
    assert stop.status == "stop" and "6 pretrained weight(s) stand-ins, not the pretrained weights" in stop.message


def test_missing_stand_ins_stop_a_rehearsal_naming_the_command_that_writes_them(rehearsal_root, tmp_path, roomy):
    enter_rehearsal()
    report = preflight(rehearsal_profile(load_profile("full")), data_root=tmp_path / "none", runs_dir=tmp_path)
    (weights,) = [line for line in report.lines if line.item == "weights"]
    assert weights.status == "stop" and "thesis run --profile full --rehearse" in weights.message


# ------------------------------------------------------------------------------------------------ book


def test_a_rehearsal_build_carries_the_rehearsal_banner_on_every_page(tmp_path, make_twin):
    root = project_root()
    build = BookBuild(root=root, profile="full", overrides=tuple(rehearsal_parameters()))
    typed = {name: typed_value(name, text, PROFILE_HINTS[name], "-p") for name, text in build.overrides}
    profile = load_profile("full", typed)
    provenance = build_module._provenance(root, build, profile, "notebooks/params/full.yaml", typed, None, [])
    config = book_config({"title": "t"}, provenance, root)
    assert provenance.rehearsal and provenance.to_json()["rehearsal"] is True
    assert config["html"]["announcement"] == REHEARSAL_BANNER != TWIN_BANNER
    assert "random stand-in" in config["parse"]["myst_substitutions"]["build_provenance"]
    # Its runs missing, the build stops before any chapter, naming the command that makes them.
    on_twin = load_profile("full", typed | {"data_root": str(make_twin(100)), "runs_dir": str(tmp_path / "runs")})
    with pytest.raises(MissingRunsError, match="--rehearse"):
        check_runs_finished(build, on_twin)


def test_thesis_book_rehearse_hands_the_rehearsal_to_the_chapters(rehearsal_root, monkeypatch):
    seen = {}

    def capture(build):
        seen["build"], seen["cache"] = build, cache_dir()
        raise build_module.BookBuildError("stop here")

    monkeypatch.setattr(build_module, "build_book", capture)
    assert main(["book", "--profile", "full", "--rehearse", "-p", "seeds", "0"]) == 1
    assert dict(seen["build"].overrides)["rehearsal"] == "true" and seen["build"].overrides[-1] == ("seeds", "0")
    assert seen["cache"] == rehearsal_root  # the chapters' kernels inherit this environment
    assert main(["book", "--profile", "smoke", "--rehearse"]) == 2


# ---------------------------------------------------------------------------------------- full size (slow)


@pytest.mark.slow
def test_the_stand_ins_are_written_full_size_where_the_loaders_read_them_and_marked(rehearsal_root, make_twin):
    enter_rehearsal()
    profile = rehearsal_profile(load_profile("full"))
    report = write_rehearsal_standins(profile, make_twin(100))
    assert {name for name, _ in report.written} == SIX
    weights = {weight.name: weight for weight in profile_weights(profile)}
    assert {name: weight.status for name, weight in weights.items()} == dict.fromkeys(SIX, "stand-in")
    assert all(weight.path.is_relative_to(rehearsal_root) for weight in weights.values())
    assert all("rehearsal stand-in" in standin_reason(weight.path) for weight in weights.values())
    # The registry's full recipes load them (pretrained=True) through the GPU run's own code.
    for name in ("text_bert", "text_roberta", "image_resnet50", "image_vit"):
        config: ModelConfig = default_config(name, "full")
        model = build_from_config(config)
        if config.text is not None:
            saved = load_file(weights[config.text.backbone].path / "model.safetensors")
            torch.testing.assert_close(model.encoders["text"].backbone.embeddings.word_embeddings.weight,
                                       saved["embeddings.word_embeddings.weight"])
            assert model.encoders["text"].max_length == 512
        else:
            saved = load_file(weights[config.image.backbone].path)
            loaded = model.encoders["image"].backbone.state_dict()
            assert all(torch.equal(loaded[key], saved[key]) for key in loaded)
        assert sum(p.numel() for p in model.parameters()) > 20e6  # full size, not a tiny stand-in
    # Both COCO detectors load and, random as they are, report boxes on a poster.
    poster = Image.open(next((make_twin(100) / "dataset").glob("*.jpeg"))).convert("RGB")
    release = load_release(make_twin(100))
    for kind, module in (("yolo", yolo), ("frcnn", frcnn)):
        detector = module.load_coco(default_detector_config(kind, "full"))
        (found,) = detector.detect([poster])
        assert len(detector.vocabulary) == 80 and len(found.scores) > 0, kind
        # Scored on the twin's true boxes (chapter 03_methods does): over the kinds COCO names, not a
        # ValueError for the twin's lamps, as the first rehearsal found.
        assert evaluate_detector(detector, release, list(release.official_split["test"])[:10]).num_true_boxes > 0
    assert report.lines() and write_rehearsal_standins(profile, make_twin(100)).written == []  # once only


@pytest.mark.slow
def test_a_rehearsal_run_records_rehearsal_and_its_stand_in(rehearsal_root, tmp_path, make_twin, roomy, capsys):
    runs = tmp_path / "runs"
    code = main(["run", "--profile", "full", "--rehearse", "--data", str(make_twin(100)), "--runs", str(runs),
                 "--models", "baseline_frequency,image_resnet50", "seeds=0", "splits=official"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "WARNING weights  rehearsal: stand-ins: 1 random full-size weights" in captured.err
    record = json.loads((runs / "official" / "image_resnet50" / "seed0" / "record.json").read_text())
    assert record["rehearsal"] is True and record["profile"] == "full"
    assert record["backbones"]["image"]["weights"] == "stand-in"
    assert record["budget"]["optimizer_steps"] == 1 and record["train_config"]["max_steps_per_epoch"] == 1
    baseline = json.loads((runs / "official" / "baseline_frequency" / "seed0" / "record.json").read_text())
    assert baseline["rehearsal"] is True
