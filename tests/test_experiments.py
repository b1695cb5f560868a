"""The experiment grid end to end on a tiny synthetic twin (1 epoch, tiny backbones): records, skipping,
reruns of changed runs only, crash isolation, test/dev discipline and the results table on real runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from thesis_lib.cli import main
from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.splits import load_split
from thesis_lib.experiments import load_profile, run_grid
from thesis_lib.experiments.grid import grid_status, open_grid
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.loaded_run import load_run
from thesis_lib.experiments.records import RecordError, read_predictions, tuned_thresholds
from thesis_lib.experiments.restore import restore_trained_model
from thesis_lib.experiments.table import TABLE_METRICS, results_table
from thesis_lib.genres import GENRES
from thesis_lib.metrics import evaluate, tune_thresholds

MODELS = ["baseline_frequency", "baseline_shallow", "text_roberta", "image_resnet50", "objects_oracle",
          "fusion_early", "fusion_late", "fusion_cross_attention"]
RUNS = MODELS + ["text_bert@frozen"]
FUSION_OVERRIDES = {name: {"fusion_dim": 16, "fusion_heads": 2} for name in ("fusion_early", "fusion_cross_attention")}
pytestmark = pytest.mark.slow  # every test reads the runs of the real grid


@pytest.fixture(scope="module")
def environment(tmp_path_factory, tiny_grid):
    """A tiny twin, a feature cache of its own, and the test profile written as a file."""
    with tiny_grid(tmp_path_factory.mktemp("grid"), models=MODELS,
                   ablations=[{"name": "text_bert@frozen", "changes": {"backbones": "frozen"}}],
                   model_overrides={**tiny_grid.resnet, **tiny_grid.roberta, **FUSION_OVERRIDES}, image_size=32,
                   text_max_length=32, fusion_objects_source="objects_oracle") as grid:
        yield {"twin": grid.twin, "profile": grid.profile, "runs": grid.runs}


@pytest.fixture(scope="module")
def first_grid(environment):
    profile = load_profile(environment["profile"])
    report = run_grid(profile, data_root=str(environment["twin"]), runs_dir=str(environment["runs"]))
    assert report.ok, report.summary()
    return report


def run_folder(runs, name, split="thesis"):
    """The seed-0 run `name` of `split` under the runs root `runs`."""
    return RunsFolder(runs).run(split, name, 0)


def record_of(runs, name):
    return json.loads(run_folder(runs, name).record.read_text())


def mtimes(runs):
    return {name: run_folder(runs, name).record.stat().st_mtime_ns for name in RUNS}


def test_every_run_writes_a_complete_record(environment, first_grid):
    runs = environment["runs"]
    assert sorted(outcome.spec.name for outcome in first_grid.executed) == sorted(RUNS)
    for name in RUNS:
        folder = run_folder(runs, name)
        record = record_of(runs, name)
        for key in ("config", "config_hash", "seed", "model_class", "parameters", "backbones", "metrics", "budget",
                    "wall_time_s", "samples_per_s", "device", "versions", "git", "data", "split", "training"):
            assert key in record, f"{name}: record lacks {key}"
        assert set(record["metrics"]) == {"fixed_0.5", "tuned_global", "tuned_per_genre"}
        assert list(record["metrics"]["fixed_0.5"]["per_genre"]) == list(GENRES)
        assert {"torch", "transformers", "timm"} <= set(record["versions"])
        assert set(record["git"]) == {"commit", "dirty"}
        assert record["split"]["name"] == "thesis" and len(record["split"]["hash"]) == 64
        assert folder.predictions("test").is_file() and folder.predictions("dev").is_file()
        assert not list(folder.path.glob(".*tmp*")), "a temporary file was left behind"
        if record["kind"] == "train":
            assert {"total", "trainable"} <= set(record["parameters"]) and record["parameters"]["trainable"] > 0
            assert record["training"]["epochs_run"] == 1 and record["training"]["best_epoch"] == 0
            assert len(record["training"]["history"]) == 1
            assert record["budget"]["tuning_trials"] == 1 and record["budget"]["max_epochs"] == 1
            assert folder.best_weights.is_file()


def test_backbone_provenance_names_pretrained_random_and_source_runs(environment, first_grid):
    runs = environment["runs"]
    text_bert = record_of(runs, "text_bert@frozen")["backbones"]["text"]
    assert (text_bert["weights"], text_bert["name"], text_bert["frozen"]) == ("pretrained", "minilm", True)
    assert record_of(runs, "text_bert@frozen")["cached_features"] == ["text"]
    assert record_of(runs, "text_roberta")["backbones"]["text"]["weights"] == "random"
    fusion = record_of(runs, "fusion_cross_attention")["backbones"]
    assert fusion["text"]["weights"] == "run" and fusion["text"]["run"] == "thesis/text_roberta/seed0"
    assert fusion["image"]["run"] == "thesis/image_resnet50/seed0" and fusion["image"]["frozen"] is True
    assert fusion["text"]["run_config_hash"] == record_of(runs, "text_roberta")["config_hash"]
    late = record_of(runs, "fusion_late")
    assert set(late["late_weights"]) == {"text", "image", "objects"}
    weights = np.array([list(late["late_weights"][m].values()) for m in ("text", "image", "objects")])  # (3, 23)
    assert np.allclose(weights.sum(axis=0), 1.0)


def test_test_predictions_follow_the_split(environment, first_grid):
    runs = environment["runs"]
    (split_file,) = RunsFolder(runs).splits.glob("thesis-*.json")
    split = load_split(split_file)
    for name in RUNS:
        assert list(read_predictions(run_folder(runs, name).predictions("test")).ids) == list(split.test)
        assert list(read_predictions(run_folder(runs, name).predictions("dev")).ids) == list(split.dev)
        assert record_of(runs, name)["split"]["hash"] == split.split_hash()


def test_thresholds_are_tuned_on_dev_only(environment, first_grid):
    folder = run_folder(environment["runs"], "fusion_early")
    record = json.loads(folder.record.read_text())
    dev = read_predictions(folder.predictions("dev"))
    test = read_predictions(folder.predictions("test"))
    assert np.array_equal(tuned_thresholds(record), tune_thresholds(dev.labels, dev.probs, mode="per_genre"))
    global_thresholds = tune_thresholds(dev.labels, dev.probs, mode="global")
    assert np.array_equal(tuned_thresholds(record, "tuned_global"), global_thresholds)
    # the recorded test scores are those thresholds applied to the saved test predictions
    recomputed = evaluate(test.labels, test.probs, tuned_thresholds(record)).summary()
    assert recomputed["macro_f1"] == pytest.approx(record["metrics"]["tuned_per_genre"]["summary"]["macro_f1"])


def test_checkpoints_hold_the_trained_weights_and_reload(environment, first_grid):
    runs = environment["runs"]
    checkpoints = run_folder(runs, "fusion_cross_attention").checkpoints
    assert not (checkpoints / "last").exists()  # resume state is dropped once the run has finished
    # a frozen-encoder fusion keeps only its own layers; restoring brings the encoders back from the source runs
    held = set(load_file(str(run_folder(runs, "fusion_cross_attention").best_weights)))
    assert held and not any(key.startswith(("encoders.text.", "encoders.image.")) for key in held)
    assert held < set(restore_trained_model(run_folder(runs, "fusion_cross_attention")).state_dict())
    # back from disk as one run (`load_run`): the dev batches the grid made give the probabilities it saved
    # (the fusion trained and predicted on float16 feature caches of its frozen encoders: that rounding)
    run = load_run(run_folder(runs, "fusion_cross_attention"), load_release(environment["twin"]))
    saved = read_predictions(run_folder(runs, "fusion_cross_attention").predictions("dev"))
    with torch.no_grad():
        again = torch.sigmoid(run.model(run.make_batch(saved.ids)).logits).numpy()  # (N, 23)
    np.testing.assert_allclose(again, saved.probs, rtol=0, atol=2e-3)
    # read with another plot of each movie than the run was trained on, the run refuses, naming the choice
    with pytest.raises(RecordError, match="plot_choice='longest'"):
        load_run(run_folder(runs, "fusion_cross_attention"), load_release(environment["twin"], plot_choice="first"))


def test_rerun_skips_finished_runs(environment, first_grid):
    runs = environment["runs"]
    before = mtimes(runs)
    report = run_grid(load_profile(environment["profile"]), data_root=str(environment["twin"]), runs_dir=str(runs))
    assert report.executed == [] and report.failed == []
    assert sorted(label.split("/")[1] for label in report.skipped) == sorted(RUNS)
    assert mtimes(runs) == before


def test_grid_status_names_what_run_grid_would_run(environment, first_grid, tiny_grid):
    profile = load_profile(environment["profile"])
    done = grid_status(profile, data_root=str(environment["twin"]), runs_dir=str(environment["runs"]))
    assert done.complete and sorted(label.split("/")[1] for label in done.finished) == sorted(RUNS)
    early = {**FUSION_OVERRIDES["fusion_early"], "fusion_dropout": 0.4}
    changed = load_profile(environment["profile"], {"model_overrides": {
        **tiny_grid.resnet, **tiny_grid.roberta, **FUSION_OVERRIDES, "fusion_early": early}})
    status = grid_status(changed, data_root=str(environment["twin"]), runs_dir=str(environment["runs"]))
    assert [label.split("/")[1] for label in status.missing] == ["fusion_early"]
    elsewhere = grid_status(profile, data_root=str(environment["twin"]), runs_dir=str(environment["runs"] / "none"))
    assert elsewhere.finished == [] and len(elsewhere.missing) == len(RUNS)


def test_a_changed_value_reruns_only_that_model(environment, first_grid, tiny_grid):
    runs = environment["runs"]
    before = mtimes(runs)
    early = {**FUSION_OVERRIDES["fusion_early"], "fusion_dropout": 0.3}
    overrides = {"model_overrides": {**tiny_grid.resnet, **tiny_grid.roberta, **FUSION_OVERRIDES,
                                     "fusion_early": early}}
    report = run_grid(load_profile(environment["profile"], overrides), data_root=str(environment["twin"]),
                      runs_dir=str(runs), replace=True)  # asked: without it, refused (test_run_folders.py)
    assert [outcome.spec.name for outcome in report.executed] == ["fusion_early"]
    after = mtimes(runs)
    assert [name for name in RUNS if after[name] != before[name]] == ["fusion_early"]
    assert record_of(runs, "fusion_early")["model_config"]["fusion"]["dropout"] == 0.3


def test_results_table_matches_the_records(environment, first_grid):
    runs = environment["runs"]
    rows = {row["model"]: row for row in results_table(runs, n_resamples=200)}
    assert set(rows) >= {"baseline_frequency", "text_roberta", "fusion_late", "objects_oracle"}
    row = rows["fusion_late"]
    assert set(row) == {"model", "seeds", "metrics", "metrics_tuned", "per_genre_f1"}
    assert row["seeds"] == [0]
    record = record_of(runs, "fusion_late")
    test = read_predictions(run_folder(runs, "fusion_late").predictions("test"))
    recomputed = evaluate(test.labels, test.probs, 0.5).summary()
    for metric in TABLE_METRICS:
        entry = row["metrics"][metric]
        assert set(entry) == {"mean", "std", "ci_low", "ci_high"} and entry["std"] is None  # one seed
        assert entry["mean"] == pytest.approx(record["metrics"]["fixed_0.5"]["summary"][metric])
        assert entry["mean"] == pytest.approx(recomputed[metric])
        assert entry["ci_low"] <= entry["ci_high"]
    assert row["per_genre_f1"]["Drama"] == pytest.approx(record["metrics"]["fixed_0.5"]["per_genre"]["Drama"]["f1"])


def test_a_crashing_run_is_reported_and_the_others_stay(environment, first_grid, tiny_grid, capsys):
    runs = environment["runs"]
    before = mtimes(runs)
    broken = {"image_resnet50": {"image_timm_kwargs": {"no_such_argument": 1}}}  # valid config, fails in timm
    status = main(["run", "--profile", str(environment["profile"]), "--data", str(environment["twin"]), "--runs",
                   str(runs), "--replace",
                   "model_overrides=" + json.dumps({**broken, **tiny_grid.roberta, **FUSION_OVERRIDES})])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED  thesis/image_resnet50/seed0" in out and "no_such_argument" in out
    assert run_folder(runs, "image_resnet50").error.is_file()
    assert not run_folder(runs, "image_resnet50").record.exists()  # no stale record that looks finished
    # fusions that reuse the broken run fail too, with a message naming it; unrelated runs are untouched
    assert "FAILED  thesis/fusion_cross_attention/seed0" in out
    after = {name: run_folder(runs, name).record for name in RUNS}
    for name in ("baseline_frequency", "baseline_shallow", "text_roberta", "objects_oracle", "text_bert@frozen"):
        assert after[name].stat().st_mtime_ns == before[name]


def test_learning_rate_trials_keep_the_dev_best(environment, first_grid, tmp_path):
    profile = load_profile(environment["profile"], {"lr_scales": "1,20"})
    report = run_grid(profile, data_root=str(environment["twin"]), runs_dir=str(tmp_path), models=["objects_oracle"])
    assert report.ok, report.summary()
    record = json.loads(run_folder(tmp_path, "objects_oracle").record.read_text())
    trials = record["training"]["trials"]
    assert [t["lr_scale"] for t in trials] == [1.0, 20.0] and record["budget"]["tuning_trials"] == 2
    scores = [t["best_metric"] for t in trials]
    assert record["training"]["chosen_trial"] == int(np.argmax(scores))
    assert record["train_config"]["lr_head"] == trials[record["training"]["chosen_trial"]]["lr_head"]
    checkpoints = run_folder(tmp_path, "objects_oracle").checkpoints
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best"]


def test_detectors_are_asked_for_the_split_their_runs_are_scored_on(environment, first_grid):
    """A detector trained on the twin must learn from the train part of the run's own split, never from
    posters of its test part (the official train part overlaps the thesis split's test part)."""
    asked = []
    table = object()  # stands in for the DetectionTable a real factory returns

    def recording_factory(source, release, size, split, *, device, num_workers):
        asked.append((source, split, device, num_workers))
        return table

    profile = load_profile(environment["profile"], {"device": "auto", "num_workers": "-1"})  # not the defaults
    ctx = dataclasses.replace(open_grid(profile, data_root=str(environment["twin"]), runs_dir=str(environment["runs"])),
                              objects_factory=recording_factory)
    assert ctx.detections("yolo", "thesis") is table
    assert ctx.detections("yolo", "thesis") is table  # built once per (source, split)
    assert len(asked) == 1 and asked[0][1] is ctx.splits["thesis"]
    assert asked[0][2:] == ("auto", -1)  # detection runs where the profile says, fed as it says


def test_speed_switches_of_the_profile_reach_the_training_runs(environment, first_grid, tmp_path):
    profile = load_profile(environment["profile"], {"fused_adamw": "true", "channels_last": "true",
                                                    "group_by_length": "true"})
    report = run_grid(profile, data_root=str(environment["twin"]), runs_dir=str(tmp_path),
                      models=["text_roberta", "image_resnet50"])
    assert report.ok, report.summary()
    text = json.loads(run_folder(tmp_path, "text_roberta").record.read_text())["train_config"]
    image = json.loads(run_folder(tmp_path, "image_resnet50").record.read_text())["train_config"]
    assert text["fused_adamw"] and text["channels_last"] and text["group_by_length"]
    assert image["channels_last"] and not image["group_by_length"]  # posters only: no plot lengths to group by


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every event file under `folder`, read with tensorboardX's protobuf (a TFRecord:
    length, its crc, the event, its crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, position = path.read_bytes(), 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            event = event_pb2.Event.FromString(data[position + 12:position + 12 + length])
            position += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_gets_every_epoch_of_a_run_as_its_record_has_it(environment, first_grid, tmp_path):
    profile = load_profile(environment["profile"], {"tensorboard": "true", "epochs": 2, "patience": "null"})
    report = run_grid(profile, data_root=str(environment["twin"]), runs_dir=str(tmp_path), models=["text_roberta"])
    assert report.ok, report.summary()
    folder = run_folder(tmp_path, "text_roberta")
    history = json.loads(folder.record.read_text())["training"]["history"]
    scalars = tensorboard_scalars(folder.tensorboard)
    assert [step for step, _ in scalars["dev/macro_f1"]] == [epoch["optimizer_steps"] for epoch in history]
    for tag, key in (("dev/macro_f1", None), ("loss/train", "train_loss"), ("loss/dev", "val_loss")):
        expected = [epoch["val_metrics"]["macro_f1"] if key is None else epoch[key] for epoch in history]
        assert [value for _, value in scalars[tag]] == pytest.approx(expected, rel=1e-6)
    assert {"lr/head", "speed/train_samples_per_s"} <= set(scalars)
    assert not run_folder(environment["runs"], "text_roberta").tensorboard.exists()  # off in the test profile


def test_a_runs_split_is_found_by_its_hash_for_every_split(environment, first_grid, tmp_path):
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.splits import official_split, save_split, thesis_split
    from thesis_lib.experiments.records import RecordError, run_split

    release = load_release(environment["twin"], verify_posters="none")
    split = thesis_split(release.ids, release.labels(release.ids), seed=5)
    save_split(split, RunsFolder(tmp_path).splits / "thesis-seed5.json")
    record = {"split": {"name": "thesis", "hash": split.split_hash()}}
    for folder in (run_folder(tmp_path, "text_roberta"), run_folder(tmp_path, "text_roberta", split="official")):
        assert run_split(record, folder, release) == split  # the split file is found from any split's run
    official = {"split": {"name": "official", "hash": official_split(release).split_hash()}}
    assert run_split(official, run_folder(tmp_path, "x", split="official"), release).name == "official"
    with pytest.raises(RecordError, match="hash 000000000000"):
        run_split({"split": {"name": "thesis", "hash": "0" * 64}}, run_folder(tmp_path, "m"), release)
