"""Chapter 4.1's checks on the regime (issue 17): the rule for the fusions' sources, text runs against the
bag-of-words baseline per text genre, convergence of every run, the genres a source fails, and the seeds
results file the page reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_book_chapter4 import base_labels, write_run

from thesis_lib.analysis import comparison
from thesis_lib.analysis.sources import source_choice
from thesis_lib.book import error_analysis as errors
from thesis_lib.book import experiments_chapter as chapter
from thesis_lib.book import seeds as seed_page
from thesis_lib.experiments.profile import load_profile
from thesis_lib.experiments.seeds import SCHEMA, SeedFileError, read_summary, summarise, write_summary
from thesis_lib.genres import GENRES

WESTERN = GENRES.index("Western")
TEXT = {"model_config": {"text": {"backbone": "x"}, "image": None, "objects": None}}
IMAGE = {"model_config": {"text": None, "image": {"backbone": "x"}, "objects": None}}
OBJECTS = {"model_config": {"text": None, "image": None, "objects": {"source": "x"}}}


def noisy(labels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Probabilities that rank the labels well (noise 0) or at random (noise large)."""
    rng = np.random.default_rng(seed)
    return np.clip(0.25 + 0.5 * labels + noise * rng.standard_normal(labels.shape), 0.01, 0.99)


@pytest.fixture
def unimodal(tmp_path):
    labels = base_labels()
    labels[::3, WESTERN] = 1
    runs = tmp_path / "runs"
    write_run(runs, "text_good", noisy(labels, 0.05, 0), labels, stage="unimodal", extra=TEXT)
    write_run(runs, "text_weak", noisy(labels, 0.6, 1), labels, stage="unimodal", extra=TEXT)
    write_run(runs, "image_only", noisy(labels, 0.1, 2), labels, stage="unimodal", extra=IMAGE)
    yolo = noisy(labels, 0.05, 3)
    yolo[:, WESTERN] = 0.3  # never finds the Western object: no ranking at all
    write_run(runs, "objects_yolo", yolo, labels, stage="unimodal", extra=OBJECTS)
    write_run(runs, "objects_frcnn", noisy(labels, 0.1, 4), labels, stage="unimodal", extra=OBJECTS)
    write_run(runs, "objects_oracle", np.where(labels > 0, 0.99, 0.01), labels, stage="unimodal", extra=OBJECTS)
    write_run(runs, "baseline_shallow", noisy(labels, 0.3, 5), labels, stage="baseline")
    return comparison.finished_runs(runs), labels


def test_the_rule_picks_the_best_dev_run_per_modality_and_never_the_oracle(unimodal):
    runs, _ = unimodal
    names = list(runs)
    used = {"text": "text_weak", "image": "image_only", "objects": "objects_frcnn"}
    choices = {c.modality: c for c in source_choice(runs, used, names)}
    assert choices["text"].chosen == "text_good" and not choices["text"].follows_rule
    assert choices["image"].follows_rule and list(choices["image"].scores) == ["image_only"]
    assert "objects_oracle" not in choices["objects"].scores  # the twin's answer is not a source
    assert choices["objects"].scores["objects_frcnn"] > choices["objects"].scores["objects_yolo"]
    assert choices["objects"].follows_rule
    sentence = chapter.source_sentence(list(choices.values()))
    assert "does not follow the rule" in sentence and "text_weak" in sentence and "text_good" in sentence
    table = chapter.source_table(list(choices.values()))
    assert table.loc["text", "follows the rule"] == "NO" and table.loc["objects", "rule picks"] == "objects_frcnn"
    fixed = source_choice(runs, used | {"text": "text_good"}, names)
    assert chapter.source_sentence(fixed).startswith("The fusions of this build read exactly")


def test_text_runs_are_set_beside_the_baseline_on_every_text_genre(unimodal):
    runs, _ = unimodal
    evidence = dict.fromkeys(GENRES, "image") | {"Drama": "text", "Comedy": "text"}
    table, values = chapter.text_genre_check(runs, evidence)
    assert list(table.index) == ["Comedy", "Drama"]
    assert table.loc["Drama", ("ROC-AUC", "text_good")] > table.loc["Drama", ("ROC-AUC", "baseline_shallow")]
    assert values["n_text_pairs"] == 4  # two text runs x two text genres
    assert 1 <= values["n_below_baseline"] <= 2 and "text_weak" in values["below_baseline"]
    assert "text_good" not in values["below_baseline"]
    # Below by the point estimate is not yet behind: each pair below gets its paired bootstrap's verdict.
    assert values["below_baseline"].count(": behind)") + values["below_baseline"].count(": undecided)") == len(
        [part for part in values["below_baseline"].split(" against ")][1:])
    assert values["n_behind_baseline"] >= 1 and values["behind_baseline"].startswith("text_weak on ")
    assert chapter.text_genre_check(runs, None)[0] is None  # MM-IMDb: no evidence kinds


def test_a_detector_that_misses_a_genre_the_other_finds_is_named(unimodal):
    runs, _ = unimodal
    f1 = comparison.per_genre_f1(runs, list(runs))
    evidence = dict.fromkeys(GENRES, "text") | {"Western": "image"}
    failures = errors.source_failures(runs, f1, evidence)
    assert ("Western", "objects_yolo") in set(zip(failures.index, failures["run"], strict=True))
    assert failures.loc["Western", "best of its modality"] == "objects_frcnn"
    assert "objects_oracle" not in set(failures["run"])


def test_a_run_has_plateaued_when_the_epoch_it_kept_is_not_its_last(tmp_path):
    labels = base_labels()
    probs = np.where(labels > 0, 0.9, 0.1)
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 0.5, "val_metrics": {"map_macro": v}}
               for e, v in enumerate([0.5, 0.6, 0.61, 0.6])]
    write_run(tmp_path, "flat", probs, labels, stage="unimodal", extra={"training": {
        "best_epoch": 1, "epochs_run": 4, "stopped_early": True, "monitor": "map_macro", "history": history}})
    write_run(tmp_path, "rising", probs, labels, stage="unimodal", extra={"training": {
        "best_epoch": 3, "epochs_run": 4, "stopped_early": False, "monitor": "map_macro", "history": history}})
    runs = comparison.finished_runs(tmp_path)
    assert comparison.convergence(runs["flat"]).plateaued and not comparison.convergence(runs["rising"]).plateaued
    values = chapter.convergence_values(runs, load_profile("smoke"))
    assert (values["n_trained"], values["n_plateaued"], values["n_stopped_early"]) == (2, 1, 1)
    assert values["still_rising"] == "rising"
    history_table = comparison.training_history(runs, ["flat"])
    assert history_table["val_score"].tolist() == [0.5, 0.6, 0.61, 0.6]
    assert history_table["best"].tolist() == [False, True, False, False]


def seeded_runs(runs, labels, scores):
    """name -> per-seed probability noise; records with the fields `summarise` reads."""
    for name, noises in scores.items():
        for seed, noise in enumerate(noises):
            write_run(runs, name, noisy(labels, noise, seed), labels, seed=seed, extra={
                "config_hash": f"{name}-hash", "data": {"fingerprint": "f" * 64, "movies": 40},
                "training": {"best_epoch": 2, "epochs_run": 5}})


def test_the_seeds_file_holds_every_seed_and_the_page_reads_only_current_runs(tmp_path):
    labels = base_labels()
    runs_dir = tmp_path / "runs"
    seeded_runs(runs_dir, labels, {"fusion_cross_attention": [0.05, 0.05, 0.05],
                                   "fusion_early": [0.4, 0.4, 0.01]})
    content = summarise(runs_dir, ["fusion_cross_attention", "fusion_early"], [0, 1, 2], "thesis", "smoke", 12.0)
    assert content["schema"] == SCHEMA and content["seeds"] == [0, 1, 2] and "commit" in content["git"]
    per_seed = content["runs"]["fusion_early"]["per_seed"]
    assert set(per_seed) == {"0", "1", "2"} and per_seed["1"]["best_epoch"] == 3
    path = tmp_path / "results" / "seeds-smoke.json"
    write_summary(path, content)
    summary = read_summary(path)
    runs = comparison.finished_runs(runs_dir, [0])
    table = seed_page.seed_table(summary, runs)
    assert list(table.index) == ["fusion_cross_attention", "fusion_early"]
    assert table.loc["fusion_early", ("macro-F1 (tuned)", "seed 1")] == round(
        summary.values("fusion_early", seed_page.HEADLINE)[1], 3)
    sentence = seed_page.ahead_sentence(summary, ["fusion_cross_attention", "fusion_early"],
                                         "fusion_cross_attention")
    assert "fusion_early on 2 of 3 seeds" in sentence  # behind on seed 2, where early fusion is nearly perfect
    # A run trained with other settings since is left out, and named.
    content["runs"]["fusion_early"]["per_seed"]["0"]["config_hash"] = "older"
    write_summary(path, content)
    stale = read_summary(path)
    assert list(seed_page.seed_table(stale, runs).index) == ["fusion_cross_attention"]


def test_missing_runs_and_bad_seed_files_are_one_line(tmp_path):
    labels = base_labels()
    seeded_runs(tmp_path / "runs", labels, {"fusion_early": [0.1, 0.1]})
    with pytest.raises(Exception, match="no finished run for fusion_early/seed2"):
        summarise(tmp_path / "runs", ["fusion_early"], [0, 1, 2], "thesis", "smoke", 1.0)
    assert read_summary(tmp_path / "none.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SeedFileError, match="bad.json: not a readable seeds results file"):
        read_summary(bad)
    bad.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(SeedFileError, match="not a seeds results file"):
        read_summary(bad)
