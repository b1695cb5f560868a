"""Slim checkpoints of frozen-backbone runs, and restoring finished runs from their folders.

A tiny grid on a 100-movie twin, as the smoke profile runs it: the frozen MiniLM probe `text_bert` (trained
on cached features: a slim file without MiniLM), a fine-tuned tiny ResNet `image_resnet50` (a whole-model
file), and `fusion_early` reading both runs' encoders frozen (a slim file without either encoder; its text
encoder comes from a source that itself left it out, so restoring it goes through that source's restore).
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from thesis_lib.data.mmimdb import load_release
from thesis_lib.experiments import load_profile, run_grid
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.loaded_run import load_run
from thesis_lib.experiments.restore import SourceRunError, restore_trained_model
from thesis_lib.train.checkpoint import (
    EXCLUDED_FINGERPRINT,
    EXCLUDED_PREFIXES,
    CheckpointMismatchError,
    load_model_weights,
)

ENCODERS = ("encoders.text.", "encoders.image.")
pytestmark = pytest.mark.slow  # every test reads the runs of the real grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_grid):
    """The three runs, finished, and the grid context that reopens them."""
    with tiny_grid(tmp_path_factory.mktemp("slim"), models=["text_bert", "image_resnet50", "fusion_early"],
                   model_overrides={**tiny_grid.resnet, "text_bert": {"text_frozen": True},
                                    "fusion_early": {"fusion_dim": 16, "modalities": ["text", "image"]}},
                   fusion_text_source="text_bert", fusion_image_source="image_resnet50", image_size=32,
                   text_max_length=32) as tiny:
        profile = load_profile(tiny.profile)
        report = run_grid(profile, data_root=str(tiny.twin), runs_dir=str(tiny.runs))
        assert report.ok, report.summary()
        release = load_release(tiny.twin, verify_posters="none", workers=1)
        yield {"runs": tiny.runs, "twin": tiny.twin, "release": release}


def run_folder(runs, name):
    """The grid's seed-0 run `name` of the thesis split under the runs root `runs`."""
    return RunsFolder(runs).run("thesis", name, 0)


def metadata_of(path):
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def full_file_size(model, tmp_path) -> int:
    """Bytes of the same model saved whole (what every frozen run wrote before slim checkpoints)."""
    path = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path.stat().st_size


def copy_runs(runs, target, names):
    """Some of the grid's run folders (and its splits) under a new runs root."""
    for name in names:
        shutil.copytree(run_folder(runs, name).path, run_folder(target, name).path)
    shutil.copytree(RunsFolder(runs).splits, RunsFolder(target).splits)
    return target


# ------------------------------------------------------------------------------------------- the files


def test_frozen_runs_keep_only_their_own_weights(grid, tmp_path):
    runs = grid["runs"]
    sizes = {}
    for name, left_out in (("text_bert", ["encoders.text."]), ("fusion_early", list(ENCODERS))):
        weights = run_folder(runs, name).best_weights
        held = set(load_file(str(weights)))
        model = restore_trained_model(run_folder(runs, name))
        own = {key for key in model.state_dict() if not key.startswith(tuple(left_out))}
        assert held == own, f"{name}: the file holds other keys than the model's non-encoder ones"
        assert not any(key.startswith(ENCODERS) for key in held)
        assert json.loads(metadata_of(weights)[EXCLUDED_PREFIXES]) == left_out
        sizes[name] = (weights.stat().st_size, full_file_size(model, tmp_path))
        assert sizes[name][0] * 50 < sizes[name][1], f"{name}: slim {sizes[name][0]} B vs whole {sizes[name][1]} B"
    # A fine-tuned run trains its encoder: its file is whole and names nothing left out.
    image = run_folder(runs, "image_resnet50").best_weights
    assert EXCLUDED_PREFIXES not in metadata_of(image)
    assert any(key.startswith("encoders.image.") for key in load_file(str(image)))
    for name, (slim, whole) in sizes.items():
        print(f"{name}: best/model.safetensors {slim / 1e3:.1f} kB slim vs {whole / 1e6:.2f} MB whole")


# ------------------------------------------------------------------------------------------- restoring


def test_loaded_runs_predict_what_they_saved(grid):
    """The one way back from disk (`load_run`), batches made as the grid made them: a fine-tuned run predicts
    its saved dev probabilities exactly; a frozen-encoder run (trained and evaluated on float16 feature
    caches) to within that rounding."""
    for name, tolerance in (("image_resnet50", 1e-6), ("text_bert", 2e-3), ("fusion_early", 2e-3)):
        run = load_run(run_folder(grid["runs"], name), grid["release"])
        saved = run.predictions("dev")
        assert list(saved.ids) == list(run.split.dev)
        with torch.no_grad():
            probs = np.concatenate([torch.sigmoid(run.model(run.make_batch(saved.ids[start:start + 16])).logits)
                                    for start in range(0, len(saved.ids), 16)])  # (N, 23)
        np.testing.assert_allclose(probs, saved.probs, rtol=0, atol=tolerance, err_msg=name)


def test_a_restored_fusion_holds_its_source_runs_encoders(grid):
    runs = grid["runs"]
    fusion = restore_trained_model(run_folder(runs, "fusion_early"))
    image_source = load_file(str(run_folder(runs, "image_resnet50").best_weights))
    for key, tensor in fusion.encoders["image"].state_dict().items():
        assert torch.equal(tensor, image_source[f"encoders.image.{key}"]), key
    text_source = restore_trained_model(run_folder(runs, "text_bert"))  # MiniLM, rebuilt from the registry
    for key, tensor in fusion.encoders["text"].state_dict().items():
        assert torch.equal(tensor, text_source.encoders["text"].state_dict()[key]), key
    assert not fusion.training


def test_a_loaded_slim_fusion_predicts_its_saved_test_probabilities(grid):
    run = load_run(run_folder(grid["runs"], "fusion_early"), grid["release"])
    ids = sorted(run.movies)[:8]
    with torch.no_grad():
        probs = torch.sigmoid(run.model(run.make_batch(ids)).logits).numpy()  # (8, 23) from posters and plots
    saved = np.stack([run.probabilities[movie_id] for movie_id in ids])  # predicted from float16 features
    np.testing.assert_allclose(probs, saved, rtol=0, atol=2e-3)
    assert run.rollout_model is not None
    for key, tensor in run.model.state_dict().items():
        assert torch.equal(tensor, run.rollout_model.state_dict()[key]), key


# ------------------------------------------------------------------------------------------- failures


def test_a_missing_source_run_is_named(grid, tmp_path):
    runs = copy_runs(grid["runs"], tmp_path / "runs", ["fusion_early", "text_bert"])  # no image_resnet50
    missing = run_folder(runs, "image_resnet50")
    with pytest.raises(SourceRunError, match=re.escape(str(missing.path))):
        restore_trained_model(run_folder(runs, "fusion_early"))
    with pytest.raises(SourceRunError, match=re.escape(str(missing.path))):
        load_run(run_folder(runs, "fusion_early"), grid["release"])
    # A source folder without its weights names the file it looked for.
    shutil.copytree(run_folder(grid["runs"], "image_resnet50").path, missing.path)
    missing.best_weights.unlink()
    with pytest.raises(SourceRunError, match=re.escape(str(missing.best_weights))):
        restore_trained_model(run_folder(runs, "fusion_early"))


def test_a_source_run_trained_again_since_is_refused(grid, tmp_path):
    runs = copy_runs(grid["runs"], tmp_path / "runs", ["fusion_early", "text_bert", "image_resnet50"])
    source = run_folder(runs, "image_resnet50").best_weights
    tensors = load_file(str(source))
    tensors["encoders.image.backbone.conv1.weight"] += 0.01  # same shapes, other weights
    save_file(tensors, str(source))
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        restore_trained_model(run_folder(runs, "fusion_early"))


def test_a_corrupted_slim_file_fails_naming_the_file_and_the_keys(grid, tmp_path):
    weights = run_folder(grid["runs"], "fusion_early").best_weights
    model = restore_trained_model(run_folder(grid["runs"], "fusion_early"))
    tensors, metadata = load_file(str(weights)), metadata_of(weights)
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    head = next(key for key in tensors if key.startswith("head."))
    encoder_key = next(key for key in model.state_dict() if key.startswith("encoders.text."))
    cases = {
        "lacks 1 keys it does not exclude": ({k: v for k, v in tensors.items() if k != head}, metadata),
        "holds 1 tensors under its own excluded prefixes": (
            tensors | {encoder_key: model.state_dict()[encoder_key]}, metadata),
        "1 keys the model lacks": (tensors | {"fusion.extra": torch.zeros(2)}, metadata),
        "name nothing in the model": (tensors, metadata | {EXCLUDED_PREFIXES: json.dumps([*ENCODERS, "encoders.x."])}),
        "not a JSON list of prefixes": (tensors, metadata | {EXCLUDED_PREFIXES: "encoders."}),
        f"records no {EXCLUDED_FINGERPRINT}": (
            tensors, {k: v for k, v in metadata.items() if k != EXCLUDED_FINGERPRINT}),
    }
    for index, (message, (content, meta)) in enumerate(cases.items()):
        path = tmp_path / f"case{index}" / "model.safetensors"
        path.parent.mkdir()
        save_file(content, str(path), metadata=meta)
        with pytest.raises(CheckpointMismatchError, match=re.escape(str(path))) as error:
            load_model_weights(model, path)
        assert message in str(error.value), str(error.value)
    for key, tensor in model.state_dict().items():  # a refused file changes nothing
        assert torch.equal(tensor, before[key]), key


def test_whole_model_files_of_older_runs_still_load_without_their_sources(grid, tmp_path):
    runs = copy_runs(grid["runs"], tmp_path / "runs", ["fusion_early"])  # no source runs at all
    restored = restore_trained_model(run_folder(grid["runs"], "fusion_early"))
    whole = {key: tensor.contiguous() for key, tensor in restored.state_dict().items()}
    save_file(whole, str(run_folder(runs, "fusion_early").best_weights))  # as runs saved before slim files
    again = restore_trained_model(run_folder(runs, "fusion_early"))
    for key, tensor in restored.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[key]), key
