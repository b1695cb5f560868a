"""The schedule experiment of chapter 4.1: two seeds files of the same runs (the profile's schedule and the
experiment's) compared per run, with a paired t-interval over seeds and its verdict; the seeds command's
KEY=VALUE changes are recorded in the file and never written over the profile's own file."""

from __future__ import annotations

import dataclasses

import pytest
from test_book_chapter4 import base_labels, write_run
from test_sources_and_seeds import noisy

from thesis_lib.analysis.verdicts import Verdict
from thesis_lib.book import schedule
from thesis_lib.cli import main
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.seeds import read_summary, summarise, write_summary

SEEDS = [0, 1, 2]


def seeds_file(tmp_path, label: str, noise: dict[str, list[float]], kept: int, train_loss: float,
               overrides: dict | None = None):
    """A seeds file of runs whose test probabilities carry `noise` per seed; trained runs keep epoch `kept` of 5."""
    labels, runs_dir = base_labels(), tmp_path / label
    for name, noises in noise.items():
        for seed, level in enumerate(noises):
            training = None if name == "fusion_late" else {
                "best_epoch": kept - 1, "epochs_run": 5,
                "history": [{"epoch": e, "train_loss": train_loss + 0.1 * (4 - e), "val_loss": 0.5}
                            for e in range(5)]}
            write_run(runs_dir, name, noisy(labels, level, seed), labels, seed=seed, extra={
                "config_hash": f"{label}-{name}", "data": {"fingerprint": "f" * 64, "movies": 40}, "wall_time_s": 10.0,
                **({"training": training} if training else {})})
    content = summarise(runs_dir, list(noise), SEEDS, "thesis", "smoke", 60.0, overrides=overrides)
    path = tmp_path / f"{label}.json"
    write_summary(path, content)
    return read_summary(path)


def test_the_experiment_is_compared_run_by_run_with_an_interval_over_seeds(tmp_path):
    profile = dataclasses.replace(load_profile("smoke"), lr_schedule="linear")  # the experiment: plateau
    base = seeds_file(tmp_path, "linear", {"image_resnet50": [0.3, 0.3, 0.3], "fusion_early": [0.05, 0.06, 0.05],
                                           "fusion_late": [0.1, 0.1, 0.1]}, kept=5, train_loss=0.3)
    other = seeds_file(tmp_path, "plateau", {"image_resnet50": [0.2, 0.21, 0.2], "fusion_early": [0.3, 0.31, 0.3],
                                             "fusion_late": [0.1, 0.1, 0.1]}, kept=3, train_loss=0.0,
                       overrides={"lr_schedule": "plateau", "epochs": 20})
    assert other.content["overrides"] == {"lr_schedule": "plateau", "epochs": 20}
    assert other.content["run_time_s"] == pytest.approx(90.0)  # 3 runs x 3 seeds x 10 s in their records
    assert other.content["runs"]["fusion_early"]["per_seed"]["1"]["train_loss"] == pytest.approx(0.2)  # epoch 3 of 5
    early = schedule.paired(base, other, "fusion_early")
    assert early.differences.shape == (3,) and early.verdict is Verdict.BEHIND and early.high < 0
    assert schedule.paired(base, other, "image_resnet50").verdict is Verdict.AHEAD
    assert schedule.paired(base, other, "fusion_late").verdict is Verdict.UNDECIDED  # identical scores
    assert schedule.plateaued(base, ["image_resnet50", "fusion_early"]) == (0, 6)
    assert schedule.plateaued(other, ["image_resnet50", "fusion_early"]) == (6, 6)

    table, values = schedule.schedule_section(base, other, profile)
    assert list(table.index) == ["image_resnet50", "fusion_early", "fusion_late"]
    assert table.loc["fusion_early", ("difference", "verdict")] == "behind"
    assert table.loc["fusion_early", ("plateau", "epochs kept/run")] == "3/5, 3/5, 3/5"
    assert table.loc["fusion_late", ("linear (this build)", "epochs kept/run")] == "—"
    assert "0 keep an epoch before their last under the profile's schedule and 6 under" in values["schedule_status"]
    assert "lr_schedule = plateau, epochs = 20" in values["schedule_status"]
    assert "ahead for image_resnet50" in values["schedule_verdicts"]
    assert "behind for fusion_early" in values["schedule_verdicts"]
    assert "image_resnet50 0.300 → 0.200" in values["schedule_fit"] and "fusion_late, which trains nothing on those" in values[
        "schedule_fit"]


def test_files_of_other_seeds_or_data_are_not_compared_and_the_page_names_the_command(tmp_path):
    profile = load_profile("smoke")
    assert profile.lr_schedule == "plateau" and schedule.experiment_schedule(profile) == "linear"
    base = seeds_file(tmp_path, "linear", {"fusion_early": [0.1, 0.1, 0.1]}, kept=4, train_loss=0.2)
    assert schedule.schedule_table(base, None, ("a", "b")) is None
    values = schedule.schedule_values(base, None, profile)
    assert values["schedule_status"].startswith("There is no results/seeds-smoke-linear.json")
    assert ("thesis results seeds --profile smoke --out results/seeds-smoke-linear.json lr_schedule=linear epochs=10 "
            "warmup_ratio=0.1") in values["schedule_status"]
    full = load_profile("full")  # linear: its experiment is the plateau schedule
    assert schedule.experiment_file(full).as_posix() == "results/seeds-full-plateau.json"
    other = seeds_file(tmp_path, "plateau", {"fusion_early": [0.1, 0.1, 0.1]}, kept=4, train_loss=0.2)
    other.content["data"] = {"fingerprint": "0" * 64, "movies": 40}  # another twin
    assert schedule.comparable(base, other) == []
    assert "do not hold the same seeds, data and split" in schedule.schedule_values(base, other, profile)[
        "schedule_status"]


def test_the_seeds_command_refuses_changes_without_its_own_file(capsys):
    assert main(["results", "seeds", "--seeds", "0,1", "lr_schedule=plateau"]) == 2  # before anything is trained
    error = capsys.readouterr().err
    assert "give --out FILE" in error and "results/seeds-smoke.json" in error and len(error.splitlines()) == 1
