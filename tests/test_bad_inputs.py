"""Inputs others hand you, and parameters a user mistypes (issue 15, items 8-10): each is a named skip or one
line `thesis: error: ...` (exit 2) before any data is read, never a traceback, never a silent default, and
never a file that a loader opens or unpickles because a run folder from elsewhere said so."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from thesis_lib.cli import main
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.records import write_json

DEEP = "[" * 100_000 + "]" * 100_000  # parses only with a stack 100,000 frames deep


def tiny_release(root: Path, plots: dict[str, str] | None = None) -> Path:
    """Four movies (train 2, dev 1, test 1) with tiny posters; `plots` replaces a movie's JSON text."""
    (root / "dataset").mkdir(parents=True)
    parts = {"0000001": "train", "0000002": "train", "0000003": "dev", "0000004": "test"}
    poster = io.BytesIO()
    Image.new("RGB", (16, 24), (200, 40, 40)).save(poster, "JPEG")
    for movie_id in parts:
        text = (plots or {}).get(movie_id, json.dumps({"plot": [f"Plot of {movie_id}."], "genres": ["Drama"]}))
        (root / "dataset" / f"{movie_id}.json").write_text(text)
        (root / "dataset" / f"{movie_id}.jpeg").write_bytes(poster.getvalue())
    (root / "split.json").write_text(json.dumps({p: [m for m, q in parts.items() if q == p] for p in ("train", "dev", "test")}))
    return root


def one_error_line(capsys, *words: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.startswith("thesis: error: ") and captured.err.count("\n") == 1, captured.err
    assert all(word in captured.err for word in words), captured.err
    return captured.err


# ----------------------------------------------------------------------------- item 8: one line, or a skip


def test_a_plot_json_nested_100000_deep_skips_that_movie_and_the_check_goes_on(tmp_path, capsys):
    root = tiny_release(tmp_path / "release", {"0000002": DEEP})
    assert main(["data", "check", str(root), "--json"]) == 0  # still usable: one movie fewer
    report = json.loads(capsys.readouterr().out)
    assert report["movies"] == 3
    assert [(s["id"], s["reason"]) for s in report["skipped"]] == [("0000002", "invalid JSON")]


def test_split_json_and_record_json_nested_too_deep_are_one_line_naming_the_file(tmp_path, capsys):
    root = tiny_release(tmp_path / "release")
    (root / "split.json").write_text(DEEP)
    assert main(["data", "check", str(root)]) == 2
    one_error_line(capsys, "split.json")
    runs = RunsFolder(tmp_path / "runs")
    run = runs.run("thesis", "text_bert", 0)
    run.path.mkdir(parents=True)
    run.record.write_text(DEEP)
    assert main(["results", "table", "--runs", str(runs.root)]) == 2
    one_error_line(capsys, str(run.record))


def test_a_record_without_metrics_is_one_line_naming_it(tmp_path, capsys):
    import numpy as np

    from thesis_lib.experiments.records import finish_run
    from thesis_lib.train.results import Predictions

    runs = RunsFolder(tmp_path / "runs")
    run = runs.run("thesis", "text_bert", 0)
    predictions = Predictions(np.array(["0000001", "0000002"]), np.full((2, 23), 0.5, np.float32),
                              np.eye(2, 23, dtype=np.float32))
    finish_run(run, {"name": "text_bert", "seed": 0, "kind": "train", "split": {"name": "thesis", "hash": "a"},
                     "data": {"fingerprint": "b"}}, predictions, predictions)  # a finished run, all but metrics
    assert main(["results", "table", "--runs", str(runs.root)]) == 2
    one_error_line(capsys, str(run.record), "'metrics/fixed_0.5/summary' is missing")
    assert main(["results", "compare", "text_bert", "text_bert", "--runs", str(runs.root)]) == 2
    one_error_line(capsys, str(run.record))


def test_runs_pointing_at_a_file_is_one_line_before_any_data_is_read(tmp_path, capsys):
    a_file = tmp_path / "runs.txt"
    a_file.write_text("not a folder")
    assert main(["run", "--runs", str(a_file), "--data", str(tiny_release(tmp_path / "release")),
                 "--models", "baseline_frequency", "splits=official"]) == 2
    one_error_line(capsys, str(a_file), "not a folder")


# ------------------------------------------------- item 9: parameters checked before any data loads


@pytest.mark.parametrize(("arguments", "words"), [
    (["--models", ","], ["--models", "names no"]),
    (["--models", ""], ["--models", "names no"]),
    (["--seeds", ","], ["--seeds", "names no seed"]),
    (["--seeds", "4294967296"], ["--seeds", "4294967296", "0..4294967295"]),
    (["--seeds", "-1"], ["--seeds", "-1"]),
    (["seeds=0,4294967296"], ["seeds", "4294967296"]),
    (["split_seed=-1"], ["split_seed", "-1"]),
    (["lr_head=nan"], ["lr_head", "finite"]),
    (["lr_backbone=inf"], ["lr_backbone", "finite"]),
    (["lr_scales=1,nan"], ["lr_scales", "finite"]),
    # ViT-Tiny/16 (the smoke grid leaves image_vit to the full profile: added back here)
    (["image_size=100", "models=image_vit", "--models", "image_vit"], ["image_size 100", "multiple of 16", "image_vit"]),
    (["image_size=16", "--models", "image_resnet50"], ["image_size 16", "at least 32", "image_resnet50"]),
])
def test_a_bad_parameter_is_one_line_before_any_data_is_read(arguments, words, tmp_path, capsys):
    # --data names no release: a message about the release would mean the parameter went through unchecked.
    assert main(["run", "--data", str(tmp_path / "no-release"), *arguments]) == 2
    err = one_error_line(capsys, *words)
    assert "no-release" not in err


def test_data_commands_check_their_seed_too(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "twin"), "--movies", "10", "--seed", "-1"]) == 2
    one_error_line(capsys, "--seed", "-1")
    assert not (tmp_path / "twin").exists()
    assert main(["data", "split", str(tmp_path / "no-release"), "--out", str(tmp_path / "s.json"),
                 "--seed", str(2**32)]) == 2
    one_error_line(capsys, "--seed", str(2**32))


def test_the_image_size_check_reads_what_the_backbones_accept():
    from thesis_lib.models.architectures import image_input_problem

    assert image_input_problem("vit_base_patch16_224", 224) is None
    assert image_input_problem("vit_base_patch16_224", 384) is None  # pos-embed interpolation
    assert "multiple of 16" in image_input_problem("vit_base_patch16_224", 200)
    assert "multiple of 32" in image_input_problem("vit_base_patch32_224", 240)
    assert image_input_problem("resnet18", 100) is None  # a CNN takes any size from one cell up
    for profile in ("smoke", "full"):  # both shipped profiles plan as before
        from thesis_lib.experiments.specs import plan_grid

        assert plan_grid(load_profile(profile))


def test_download_errors_follow_the_one_convention(tmp_path, capsys):
    assert main(["data", "download", str(tmp_path / "dest"), "--url", "not-a-url/mmimdb.tar.gz", "--no-extract"]) == 2
    one_error_line(capsys, "not-a-url")


# -------------------------------------------------------------- item 10: what others hand you


def _run_with_image(runs: Path, **image: object):
    """A finished-looking image_resnet50 run whose record.json sets these image config fields, as a run
    folder from elsewhere could."""
    from thesis_lib.models.registry import default_config

    config = dataclasses.asdict(default_config("image_resnet50"))
    config["image"] |= image
    run = RunsFolder(runs).run("thesis", "image_resnet50", 0)
    run.best_weights.parent.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(run.best_weights))
    write_json(run.record, {"name": "image_resnet50", "model": "image_resnet50", "kind": "train", "seed": 0,
                            "model_config": json.loads(json.dumps(config))})
    return run


@pytest.mark.parametrize("image", [
    {"timm_kwargs": [["checkpoint_path", "FILE"]]},  # timm would torch.load it
    {"timm_kwargs": [["pretrained_cfg_overlay", {"file": "FILE"}]], "pretrained": True},
    {"timm_kwargs": [["channels", "FILE"]]},
    {"backbone": "local-dir:FOLDER"},  # timm would read FOLDER/config.json
    {"backbone": "../../FOLDER"},
])
def test_a_record_cannot_make_a_builder_open_a_file(image, tmp_path):
    from thesis_lib.experiments.restore import restore_trained_model

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "weights.pth").write_bytes(b"not for this run")
    text = json.dumps(image).replace("FILE", str(elsewhere / "weights.pth")).replace("FOLDER", str(elsewhere))
    run = _run_with_image(tmp_path / "runs", **json.loads(text))
    with pytest.raises(ThesisError, match="timm_kwargs .* not allowed|values must be numbers|is not a model name"):
        restore_trained_model(run)


@pytest.fixture
def coco_cache(tmp_path, monkeypatch):
    """An empty cache of this test's own, offline, and ultralytics' YOLO class replaced by a recorder."""
    from thesis_lib.detection import yolo

    monkeypatch.setenv("THESIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("THESIS_ONLINE", raising=False)
    loaded: list[str] = []

    def fake_yolo(path: str) -> SimpleNamespace:
        loaded.append(path)  # where ultralytics would torch.load (unpickle) the file
        return SimpleNamespace(names={0: "person"})

    monkeypatch.setattr(yolo, "_yolo_class", lambda: fake_yolo)
    return yolo, loaded


def test_the_coco_checkpoint_is_unpickled_only_when_its_sha256_is_ultralytics(coco_cache, monkeypatch):
    from thesis_lib.detection.config import default_detector_config
    from thesis_lib.detection.pipeline import detector_standin
    from thesis_lib.models.pretrained import mark_standin

    yolo, loaded = coco_cache
    config = default_detector_config("yolo", "full")
    path = yolo.coco_weights_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a pickle that runs code when loaded")
    with pytest.raises(ThesisError, match=r"sha256 .* is not that of ultralytics' yolov8n.pt"):
        yolo.load_coco(config)
    assert loaded == []  # refused before anything unpickled it
    assert yolo.coco_weights_state(config).status == "missing"  # `weights list` / the preflight say so too
    # The same file with a known digest is loaded: the check is the digest, nothing else; a digest the user
    # checked is trusted through the variable the error names.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ThesisError, match=f"THESIS_TRUSTED_SHA256={digest}"):
        yolo.load_coco(config)
    monkeypatch.setenv("THESIS_TRUSTED_SHA256", f"0123, {digest.upper()}")
    assert yolo.coco_weights_state(config).status == "cached"
    monkeypatch.delenv("THESIS_TRUSTED_SHA256")
    known = yolo.KNOWN_COCO_SHA256
    monkeypatch.setattr(yolo, "KNOWN_COCO_SHA256", {config.coco_model: {hashlib.sha256(path.read_bytes()).hexdigest()}})
    assert yolo.load_coco(config).vocabulary == ("person",) and loaded == [str(path)]
    monkeypatch.setattr(yolo, "KNOWN_COCO_SHA256", known)
    mark_standin(path, "test stand-in")  # a marked stand-in (a rehearsal's random YOLO) is exempt, and stays one
    yolo.load_coco(config)
    assert loaded == [str(path)] * 2 and yolo.coco_weights_state(config).status == "stand-in"
    assert detector_standin("yolo", "full") == "test stand-in"  # what a run record then says


def _image_vit_run(root: Path, runs: Path):
    """A finished (untrained) image_vit run of the official split as the grid writes it: (folder, record)."""
    import numpy as np

    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.splits import official_split
    from thesis_lib.experiments.records import write_predictions
    from thesis_lib.genres import GENRES
    from thesis_lib.models import build_model
    from thesis_lib.train.results import Predictions

    release = load_release(root, verify_posters="none", workers=1)
    split = official_split(release)
    torch.manual_seed(0)
    model = build_model("image_vit", image_input_size=32)
    folder = RunsFolder(runs).run("official", "image_vit", 0)
    folder.best_weights.parent.mkdir(parents=True)
    save_file(model.state_dict(), str(folder.best_weights))
    probs = np.full((len(split.test), 23), 0.5, dtype=np.float32)
    write_predictions(folder.predictions("test"),
                      Predictions(np.asarray(split.test, dtype=str), probs, release.labels(split.test)))
    record = {
        "name": "image_vit", "model": "image_vit", "kind": "train", "seed": 0,
        "model_config": json.loads(json.dumps(dataclasses.asdict(model.config))),
        "split": {"name": "official", "hash": split.split_hash()},
        "data": {"fingerprint": release.fingerprint, "root": str(root)},
        "config": {"train": {"model_size": "small"}},
        "metrics": {"tuned_per_genre": {"per_genre": {genre: {"threshold": 0.0} for genre in GENRES}}},
    }
    write_json(folder.record, record)
    return folder, record


def test_broken_runs_are_skipped_by_xai_check_and_the_others_still_checked(make_twin, tmp_path, monkeypatch, capsys):
    """A corrupt safetensors header and a pretrained backbone missing on this machine: each its run's one-line
    note under skipped_runs (exit 1), while the good run is still explained."""
    import huggingface_hub.constants as hub_constants

    from thesis_lib.analysis.xai_check import check_runs
    from thesis_lib.xai.check import XaiCheckConfig

    monkeypatch.setenv("THESIS_PRETRAINED_DIR", str(tmp_path / "pretrained"))  # nothing there
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # nor in the hub cache
    monkeypatch.delenv("THESIS_ONLINE", raising=False)
    root = make_twin(60)
    runs = tmp_path / "runs"
    good, record = _image_vit_run(root, runs)
    corrupt = RunsFolder(runs).run("official", "image_resnet50", 0)
    corrupt.best_weights.parent.mkdir(parents=True)
    corrupt.best_weights.write_bytes((2**40).to_bytes(8, "little") + b"{}")  # a header "1 TB long"
    write_json(corrupt.record, dict(record, name="image_resnet50", model="image_resnet50"))
    missing = RunsFolder(runs).run("official", "image_vit@pretrained", 0)
    missing.best_weights.parent.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(missing.best_weights))
    pretrained = json.loads(json.dumps(record["model_config"]))
    pretrained["image"] |= {"backbone": "vit_base_patch16_224", "pretrained": True, "depth": None, "input_size": 224}
    write_json(missing.record, dict(record, name="image_vit@pretrained", model_config=pretrained))

    config = XaiCheckConfig(max_pairs=1, max_deletion_pairs=1, max_plots=1, deletion_steps=2, n_resamples=5)
    summary = check_runs(root, runs, config, split="official", device="cpu")
    assert [run["model"] for run in summary["per_run"]] == ["image_vit"]
    reasons = {skip["model"]: skip["reason"] for skip in summary["skipped_runs"] if skip.get("broken")}
    assert set(reasons) == {"image_resnet50", "image_vit@pretrained"}
    assert "not a readable safetensors file" in reasons["image_resnet50"]
    assert "no pretrained weights for 'vit_base_patch16_224'" in reasons["image_vit@pretrained"]
    assert all("\n" not in reason for reason in reasons.values())

    good.record.unlink()  # the command: the two broken runs only (quick), one line each, exit 1
    assert main(["xai", "check", "--data", str(root), "--runs", str(runs), "--split", "official",
                 "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert out.count("cannot be loaded") == 2 and "Traceback" not in out
