"""The library behind the chapter-4 notebooks (thesis_lib.analysis.comparison and the book's
experiments_chapter, error_analysis, xai_chapter): what they read from run folders and the verdicts and
values they hand the prose (the prose itself is in the notebooks). Run folders are written with the
records API from hand-made predictions, so every expected number is known; the notebooks themselves are
exercised end to end by tests/browser/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from thesis_lib.analysis import comparison, probes
from thesis_lib.analysis.published import PUBLISHED
from thesis_lib.analysis.verdicts import Verdict, verdict_of
from thesis_lib.analysis.xai_check import verdict_of_comparison, verdicts
from thesis_lib.book import error_analysis as errors
from thesis_lib.book import experiments_chapter as chapter
from thesis_lib.book import faithfulness, official_split, xai_chapter
from thesis_lib.book.provenance import DataDescription
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.profile import Ablation, load_profile, profile_from_parameters
from thesis_lib.experiments.records import finish_run
from thesis_lib.experiments.table import results_table
from thesis_lib.genres import GENRES, NUM_GENRES
from thesis_lib.metrics import evaluate_threshold_policies
from thesis_lib.train.results import Predictions
from thesis_lib.xai.check import COMPARISONS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"
DRAMA, COMEDY = GENRES.index("Drama"), GENRES.index("Comedy")


def write_run(runs: Path, name: str, probs: np.ndarray, labels: np.ndarray, *, stage: str = "fusion",
              seed: int = 0, extra: dict | None = None, split: str = "thesis") -> Path:
    """A finished run folder whose dev and test predictions are `probs` (tuned thresholds come out of the
    dev split as the runner computes them)."""
    ids = np.array([f"{i:07d}" for i in range(len(labels))])
    predictions = Predictions(ids, probs.astype(np.float32), labels.astype(np.float32))
    reports = evaluate_threshold_policies(labels, probs, labels, probs)
    record = {"name": name, "seed": seed, "stage": stage, "split": {"name": split, "hash": split[0] * 64},
              "data": {"fingerprint": "f" * 64}, "metrics": {p: r.to_dict() for p, r in reports.items()},
              **(extra or {})}
    folder = RunsFolder(runs).run(split, name, seed)
    folder.path.mkdir(parents=True)
    finish_run(folder, record, predictions, predictions)
    return folder


def base_labels(n: int = 40) -> np.ndarray:
    labels = np.zeros((n, NUM_GENRES), dtype=np.float32)  # (n, 23)
    labels[: n // 2, DRAMA] = 1
    labels[n // 4 : 3 * n // 4, COMEDY] = 1
    return labels


@pytest.fixture
def grid(tmp_path):
    """A fusion that finds Drama everywhere and wrongly adds Drama to Comedy movies; a text run and an
    image run that miss the first five Drama movies."""
    labels = base_labels()
    fusion = np.where(labels > 0, 0.9, 0.1)  # (40, 23) right everywhere ...
    fusion[20:30, DRAMA] = 0.95  # ... except Drama added to the Comedy-only movies 20..29 (no threshold helps)
    single = np.where(labels > 0, 0.9, 0.1)
    single[:5, DRAMA] = 0.1  # both single-modality runs miss Drama on movies 0..4
    runs = tmp_path / "runs"
    write_run(runs, "fusion_cross_attention", fusion, labels)
    write_run(runs, "text_x", single, labels, stage="unimodal")
    write_run(runs, "image_x", single.copy(), labels, stage="unimodal")
    return runs, labels


# ------------------------------------------------------------------------------------------ parameters


def test_the_chapter_profile_takes_papermill_values():
    parameters = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))  # what papermill -f smoke.yaml injects
    parameters |= {"models": "text_roberta,fusion_cross_attention",  # `-p models a,b`
                   "ablations": "[{name: fusion_cross_attention@one_way, changes: {fusion_bidirectional: false}}]",
                   "seeds": 0, "lr_scales": 1.0, "unrelated": "ignored"}
    profile = profile_from_parameters(parameters)
    assert profile.models == ["text_roberta", "fusion_cross_attention"]
    assert profile.ablations == [Ablation("fusion_cross_attention@one_way", {"fusion_bidirectional": False})]
    assert (profile.seeds, profile.lr_scales) == ([0], [1.0])
    parameters["epochs"] = "three"
    with pytest.raises(ThesisError, match="epochs"):
        profile_from_parameters(parameters)


RAW_ABLATION = "[{name: text_roberta@raw, changes: {text_cleaning: raw, text_max_length: 128}}]"


def test_ablations_are_described_in_words():
    profile = load_profile("full")  # the smoke profile leaves @no_objects and @one_way to the full profile
    found = {ablation.name: ablation for ablation in chapter.ablations_of(profile)}
    assert found and all("@" in name for name in found)
    no_objects = found["fusion_cross_attention@no_objects"]
    assert (no_objects.base, no_objects.description) == ("fusion_cross_attention", "reads text + image only")
    assert found["fusion_cross_attention@one_way"].description == (
        "one-way attention (plot to poster)")
    with_raw = load_profile("smoke", {"ablations": RAW_ABLATION})  # two changes, as `-p ablations ...` gives them
    (raw,) = chapter.ablations_of(with_raw)
    assert raw.description == "plots cut at 128 tokens; raw plots (no cleaning)"
    assert chapter.describe_setting("fusion_depth", "1") == "1 cross-attention block"
    assert chapter.describe_setting("late", "joint") == "late fusion trained jointly"
    assert chapter.describe_setting("new_key", "3") == "new_key=3"
    assert chapter.ablations_of(profile, runs={}) == []  # only variants whose runs finished


# ------------------------------------------------------------------------------------------ the table


def test_comparison_table_shows_the_numbers_of_the_records(grid):
    runs_dir, _ = grid
    runs = comparison.finished_runs(runs_dir)
    rows = results_table(runs_dir, n_resamples=20)
    table = chapter.comparison_table(rows, runs)
    for name, run in runs.items():
        cell = table.loc[name, "macro-F1 tuned"]
        recorded = run.records[0]["metrics"]["tuned_per_genre"]["summary"]["macro_f1"]
        assert float(cell.split()[0]) == pytest.approx(recorded, abs=5e-4) and "–" in cell  # "0.950 [lo–hi]"
    assert list(chapter.full_metrics_table(rows, runs).columns[:2]) == ["stage", "seeds"]


def test_standing_names_the_leader_and_the_sign_of_the_gap():
    def row(name, score):
        return {"model": name, "metrics_tuned": {"macro_f1": {"mean": score}}}

    rows = [row("fusion_cross_attention", 0.80), row("fusion_early", 0.81), row("fusion_cross_attention@x", 0.9),
            row("text_x", 0.5)]
    assert [r["model"] for r in comparison.ranked(rows)] == ["fusion_early", "fusion_cross_attention", "text_x"]
    position = comparison.standing(rows)
    assert (position.rank, position.n_models, position.best_other) == (2, 3, "fusion_early")
    assert position.gap == pytest.approx(-0.01) and not position.leads
    assert (position.best_run, position.best_run_score) == ("fusion_cross_attention@x", 0.9)
    values = chapter.standing_values(position)
    assert (values["proposed_rank"], values["best_other"], values["proposed_gap"]) == (2, "fusion_early", position.gap)


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (0.01, 0.05, Verdict.AHEAD), (-0.05, -0.01, Verdict.BEHIND), (-0.02, 0.03, Verdict.UNDECIDED),
    (float("nan"), float("nan"), Verdict.UNDECIDED),
])
def test_a_difference_is_ahead_or_behind_only_when_its_interval_excludes_zero(low, high, verdict):
    assert verdict_of(low, high) == verdict
    result = {"compared with": "fusion_early", "delta": (low + high) / 2, "ci_low": low, "ci_high": high,
              "p_value": 0.2, "verdict": verdict_of(low, high)}
    assert chapter.difference_values(result, "all")["verdict_all"] == str(verdict)


def test_paired_tests_on_records_carry_their_verdicts(grid):
    runs_dir, _ = grid
    runs = comparison.finished_runs(runs_dir)
    rows = results_table(runs_dir, n_resamples=50)
    others = comparison.competitors(rows, runs)
    tests = comparison.significance_table(runs_dir, comparison.PROPOSED, list(others.values()),
                                          {"all genres": None}, 200)
    for _, test in tests.iterrows():
        assert test["verdict"] == verdict_of(test["ci_low"], test["ci_high"])
    values = chapter.significance_values(tests, others, {"all genres": None})
    assert values["verdict_all"] in {"ahead", "behind", "undecided"} and values["rival"] == others["best other model"]
    assert values["verdict_alignment"].startswith("not measured")  # no alignment genres without the twin
    assert "verdict" in chapter.readable_significance(tests).columns


def test_thesis_results_compare_gives_the_same_verdict(grid, capsys):
    import json

    from thesis_lib.cli import main

    runs_dir, _ = grid
    assert main(["results", "compare", "fusion_cross_attention", "text_x", "--runs", str(runs_dir),
                 "--resamples", "200", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    expected = comparison.compare(runs_dir, "fusion_cross_attention", "text_x", n_resamples=200)
    assert shown["verdict"] == str(expected["verdict"]) and shown["delta"] == pytest.approx(expected["delta"])
    assert main(["results", "compare", "fusion_cross_attention", "text_x", "--runs", str(runs_dir),
                 "--resamples", "200"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(str(expected["verdict"]))


def test_ablations_are_grouped_by_their_verdict():
    table = pd.DataFrame({"variant": ["a@1", "a@2", "a@3"], "ci_low": [-0.1, 0.01, -0.02],
                          "ci_high": [-0.01, 0.05, 0.02]})
    table["verdict"] = [verdict_of(low, high) for low, high in zip(table["ci_low"], table["ci_high"], strict=True)]
    values = chapter.ablation_values(table)
    assert (values["variants_behind"], values["variants_ahead"], values["n_undecided"]) == ("a@1", "a@2", 1)
    assert comparison.by_verdict(table)[Verdict.UNDECIDED] == ["a@3"]


def test_evidence_kinds_lead_level_and_trail():
    kind_f1 = pd.DataFrame({"image": [0.9, 0.8], "text": [0.90, 0.91], "alignment": [0.3, 0.5]},
                           index=["fusion_cross_attention", "fusion_early"])
    places = comparison.kind_standing(kind_f1)
    assert places["standing"].to_dict() == {"image": "leads", "text": "level", "alignment": "trails"}
    assert (places.loc["alignment", "leader"], places.loc["alignment", "leader F1"]) == ("fusion_early", 0.5)


# ---------------------------------------------------------------------------------------- error analysis


def test_fusion_only_hits_count_positives_every_single_run_misses(grid):
    runs_dir, _ = grid
    runs = comparison.finished_runs(runs_dir)
    hits = errors.fusion_only_hits(runs["fusion_cross_attention"], [runs["text_x"], runs["image_x"]], None)
    assert list(hits.index) == ["Drama"]
    assert (hits.loc["Drama", "fusion-only hits"], hits.loc["Drama", "test positives"]) == (5, 20)
    assert errors.fusion_only_top(hits) == "Drama (5 of 20 positives)"
    assert errors.fusion_only_top(hits.iloc[:0]) == "none"


def test_confusions_count_added_genres_next_to_their_cooccurrence(grid):
    runs_dir, labels = grid
    confusions, _ = errors.cooccurrence_confusions(comparison.finished_runs(runs_dir)["fusion_cross_attention"])
    top = confusions.iloc[0]
    assert confusions.index[0] == ("Comedy", "Drama")  # Drama added to the ten Comedy-only movies
    assert top["false positives"] == 10 and top["rate"] == pytest.approx(1.0)
    with_comedy = labels[:, COMEDY] > 0
    assert top["co-occurrence P(added | true)"] == pytest.approx(labels[with_comedy, DRAMA].mean())


def test_reliability_measures_the_gap_to_the_diagonal(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, (4000, NUM_GENRES))  # (N, 23)
    calibrated = (rng.uniform(0, 1, probs.shape) < probs).astype(np.float32)  # true with probability p
    overconfident = (rng.uniform(0, 1, probs.shape) < probs / 2).astype(np.float32)
    for name, labels in (("calibrated", calibrated), ("overconfident", overconfident)):
        labels[0], labels[1] = 1, 0  # every genre has both classes (threshold tuning needs them)
        write_run(tmp_path, name, probs, labels)
    runs = comparison.finished_runs(tmp_path)
    table, good = errors.reliability(runs["calibrated"])
    _, bad = errors.reliability(runs["overconfident"])
    assert good < 0.02 < 0.2 < bad and table["pairs"].sum() == probs.size
    assert errors.calibration_side(errors.reliability(runs["overconfident"])[0]) == "over-confident"


def test_weights_caption_and_costs_come_from_the_records(tmp_path):
    labels = base_labels()
    probs = np.where(labels > 0, 0.9, 0.1)
    common = {"wall_time_s": 12.5, "parameters": {"total": 2_500_000, "trainable": 500_000},
              "device": {"type": "cpu", "name": "x86_64"}}
    write_run(tmp_path, "text_x", probs, labels, stage="unimodal", extra=common | {
        "backbones": {"text": {"weights": "pretrained", "name": "minilm"}}, "samples_per_s": 250.0,
        "training": {"epochs_run": 3}})
    write_run(tmp_path, "objects_x", probs, labels, stage="unimodal", extra=common | {
        "backbones": {"objects": {"weights": "detector", "name": "yolo",
                                  "detector": {"detector": {"weights": "twin"}}}}, "samples_per_s": None})
    write_run(tmp_path, "image_x", probs, labels, stage="unimodal", extra=common | {
        "backbones": {"image": {"weights": "stand-in", "name": "resnet50", "standin": "test stand-in"}},
        "samples_per_s": 100.0})
    write_run(tmp_path, "objects_coco", probs, labels, stage="unimodal", extra=common | {
        "backbones": {"objects": {"weights": "detector", "name": "frcnn", "standin": "rehearsal stand-in",
                                  "detector": {"detector": {"weights": "coco"}}}}, "samples_per_s": None})
    runs = comparison.finished_runs(tmp_path)
    caption = chapter.weights_caption(runs)
    assert "frcnn (a random COCO stand-in)" in caption and "COCO-pretrained" not in caption
    assert caption.startswith("Weights: each model's own run of this build (best dev checkpoint, seed 0)")
    assert "minilm (pretrained)" in caption and "yolo (trained on the twin)" in caption
    assert "stand-ins saved under real names (resnet50)" in caption and "resnet50 (pretrained)" not in caption
    costs = errors.cost_table(runs)
    assert costs.loc["text_x", "samples/s"] == "250" and costs.loc["objects_x", "samples/s"] == "–"
    assert (costs.loc["text_x", "params (M)"], costs.loc["text_x", "epochs"]) == ("2.50", 3)
    assert errors.devices(runs) == "cpu"


def test_require_runs_names_what_is_missing(grid):
    runs = comparison.finished_runs(grid[0])
    with pytest.raises(ThesisError, match="fusion_attention"):
        comparison.require_runs(runs, ["fusion_cross_attention", "fusion_attention"])


# ---------------------------------------------------------------------------------------------- the XAI


def comparison_entry(name, difference, low, high, n=120):
    comparison = next(c for c in COMPARISONS if c.name == name)
    return comparison.label, {"name": name, "difference": difference, "ci": [low, high], "n": n}


POINTING_VS_CHANCE = "pointing game against chance (a random point)"
POINTING_VS_RANDOMISED = "pointing game against the randomised model's map"
DELETION_VS_RANDOM = "deletion AUC against random order"
CUE_VS_ROLLOUT = "cross-attention cue recall@5 against rollout"


def faithfulness_result(comparisons=None, **changes):
    result = {"n_pairs": 120, "gradcam_pointing_game": 0.30, "random_pointing_game": 0.10,
              "center_pointing_game": 0.15, "randomized_model_pointing_game": 0.12,
              "attention_cue_recall_at_5": 0.40, "random_cue_recall_at_5": 0.10, "deletion_auc": 0.5,
              "random_deletion_auc": 0.7}
    result |= {f"{key}_ci": [value - 0.05, value + 0.05] for key, value in result.items() if key != "n_pairs"}
    entries = comparisons if comparisons is not None else [
        (POINTING_VS_CHANCE, 0.20, 0.12, 0.28), (POINTING_VS_RANDOMISED, 0.05, -0.03, 0.12),
        (DELETION_VS_RANDOM, 0.2, 0.1, 0.3), (CUE_VS_ROLLOUT, -0.1, -0.2, -0.02)]
    result["comparisons"] = dict(comparison_entry(*entry) for entry in entries)
    result["gradcam_stage"] = "layer3"
    return result | changes


def test_verdicts_come_from_the_intervals_of_the_paired_differences():
    table = verdicts(faithfulness_result())
    assert table.loc[POINTING_VS_CHANCE, "verdict"] == "ahead"
    assert table.loc[POINTING_VS_RANDOMISED, "verdict"] == "undecided"  # the interval includes 0
    assert table.loc[CUE_VS_ROLLOUT, "verdict"] == "behind"
    assert table.index.tolist() == [POINTING_VS_CHANCE, POINTING_VS_RANDOMISED, DELETION_VS_RANDOM, CUE_VS_ROLLOUT]
    assert verdict_of_comparison(faithfulness_result(), DELETION_VS_RANDOM) == Verdict.AHEAD
    assert verdict_of_comparison(faithfulness_result(comparisons=[]), DELETION_VS_RANDOM) is None
    glued = faithfulness.faithfulness_glue(faithfulness_result())
    assert glued["verdicts_ahead"] == f"{POINTING_VS_CHANCE} and {DELETION_VS_RANDOM}"
    assert (glued["verdicts_behind"], glued["verdicts_undecided"]) == (CUE_VS_ROLLOUT, POINTING_VS_RANDOMISED)
    # The sentence states each verdict the table gives, and nothing from a threshold of its own.
    claim = faithfulness.faithfulness_sentences("fusion_cross_attention", faithfulness_result(), True)
    assert claim["faithfulness_scope"] == ""
    assert f"{POINTING_VS_RANDOMISED}: +0.05 [-0.03, +0.12], **undecided**" in claim["faithfulness_claim"]
    assert "criteria" not in claim["faithfulness_claim"]


def test_the_best_variant_is_described_like_the_proposed_model():
    behind = faithfulness_result(comparisons=[(POINTING_VS_CHANCE, -0.1, -0.2, -0.01)])
    results = {"fusion_cross_attention@minilm": behind}
    sentence = faithfulness.variant_sentences("fusion_cross_attention@minilm", results, True)
    assert "fusion_cross_attention@minilm" in sentence and "**behind**" in sentence
    assert "no variant" in faithfulness.variant_sentences(None, results, True)


def test_the_two_models_maps_differ_only_when_the_interval_says_so():
    def with_hits(hits):
        return faithfulness_result(pair_values={"gradcam_pointing_game": {f"{i}/Drama": hit for i, hit in enumerate(hits)}})

    same = {"fusion_cross_attention": with_hits([1.0, 0.0] * 100), "image_resnet50": with_hits([0.0, 1.0] * 100)}
    sentence = faithfulness.maps_difference_sentence(same, "fusion_cross_attention", "image_resnet50", 200)
    assert "**undecided**" in sentence and "not evidence" in sentence
    apart = {"fusion_cross_attention": with_hits([1.0] * 150 + [0.0] * 50), "image_resnet50": with_hits([0.0, 1.0] * 100)}
    sentence = faithfulness.maps_difference_sentence(apart, "fusion_cross_attention", "image_resnet50", 200)
    assert "**ahead**" in sentence and "more often" in sentence
    none = {"fusion_cross_attention": real_result(), "image_resnet50": real_result()}
    assert "cannot be compared" in faithfulness.maps_difference_sentence(none, "fusion_cross_attention",
                                                                          "image_resnet50", 200)


def test_faithfulness_numbers_are_written_with_their_intervals():
    results = {"fusion_cross_attention": faithfulness_result(),
               "text_x": {"n_pairs": 0, "gradcam_pointing_game": None, "rollout_cue_recall_at_5": 0.5,
                          "rollout_cue_recall_at_5_ci": [0.4, 0.6]}}
    table = faithfulness.faithfulness_table(results)
    assert table.loc["fusion_cross_attention", "pointing: Grad-CAM"] == "0.30 [0.25, 0.35]"
    assert table.loc["text_x", "pointing: Grad-CAM"] == "" and table.loc["text_x", "pairs"] == 0
    assert faithfulness.faithfulness_glue(results["fusion_cross_attention"])["cue_text"] == "0.40 [0.35, 0.45]"
    assert faithfulness.faithfulness_glue(faithfulness_result(deletion_auc=None))["deletion_text"] == "n/a"
    verdict_rows = faithfulness.verdict_table(results)  # text_x has no comparison: no rows
    assert verdict_rows.index.get_level_values("run").unique().tolist() == ["fusion_cross_attention"]
    assert verdict_rows.loc[("fusion_cross_attention", CUE_VS_ROLLOUT), "difference [95% CI]"] == "-0.10 [-0.20, -0.02]"


@pytest.mark.parametrize(("seeds", "first"), [([3, 1], 3), (2, 2), ("4,5", 4), ("[6]", 6)])
def test_first_seed_reads_every_way_papermill_passes_seeds(seeds, first):
    assert xai_chapter.first_seed(seeds) == first


def test_modality_weights_compare_text_and_image_genres():
    weights = pd.DataFrame({"text": np.linspace(0.2, 0.6, NUM_GENRES), "image": np.linspace(0.8, 0.4, NUM_GENRES)},
                           index=GENRES)
    truth = {"genre_evidence": {genre: ("text" if index >= 12 else "image") for index, genre in enumerate(GENRES)}}
    values = xai_chapter.modality_values(weights, truth)
    assert values["weight_peaks"] == f"text for {GENRES[-1]} (0.60) and image for {GENRES[0]} (0.80)"
    assert values["plot_weight"] == "more" and values["text_weight_text_genres"] > values["text_weight_image_genres"]
    swapped = {"genre_evidence": {g: {"text": "image", "image": "text"}[k] for g, k in truth["genre_evidence"].items()}}
    assert xai_chapter.modality_values(weights, swapped)["plot_weight"] == "not more"


def test_a_variant_that_beats_every_model_is_named_and_drawn():
    def row(name, score):
        return {"model": name, "metrics_tuned": {"macro_f1": {"mean": score}}}

    rows = [row("baseline_shallow", 0.5), row("fusion_cross_attention", 0.80), row("fusion_early", 0.81),
            row("fusion_cross_attention@minilm", 0.88), row("text_x", 0.6)]
    assert comparison.standing(rows).best_run == "fusion_cross_attention@minilm"
    assert comparison.best_variant(rows) == "fusion_cross_attention@minilm"
    assert chapter.curve_models(rows, 2) == ["fusion_early", "fusion_cross_attention",
                                             "fusion_cross_attention@minilm", "baseline_shallow"]
    assert comparison.standing(rows[:3]).best_run == "fusion_early"
    assert comparison.best_variant(rows[:3]) is None


# ----------------------------------------------------------------------------------- the official split

SPLIT_MODELS = "text_roberta,image_resnet50,fusion_cross_attention"


@pytest.fixture
def two_splits(tmp_path):
    """Both splits of one grid: on the thesis split the fusion finds Drama where both single-modality runs
    miss half of it; on the official split it is the fusion that misses."""
    labels = base_labels(80)
    right = np.where(labels > 0, 0.9, 0.1)  # (80, 23)
    misses = right.copy()
    misses[:20, DRAMA] = 0.1  # Drama missed on 20 of its 40 movies
    runs = tmp_path / "runs"
    for split, fusion, single in (("thesis", right, misses), ("official", misses, right)):
        write_run(runs, "fusion_cross_attention", fusion, labels, split=split)
        write_run(runs, "text_roberta", single, labels, stage="unimodal", split=split)
        write_run(runs, "image_resnet50", single.copy(), labels, stage="unimodal", split=split)
    profile = load_profile("smoke", {"splits": "thesis,official", "models": SPLIT_MODELS, "ablations": "[]",
                                     "bootstrap_resamples": "50"})
    return runs, profile


def test_the_official_split_claims_sit_next_to_the_thesis_splits(two_splits):
    runs_dir, profile = two_splits
    found = [official_split.split_results(runs_dir, profile, split) for split in ("thesis", "official")]
    assert [len(results.rows) for results in found] == [3, 3] and found[1].n_test == 80
    claims = [official_split.headline_claims(runs_dir, results, 200, profile.seeds) for results in found]
    for claim, results in zip(claims, found, strict=True):
        expected = comparison.compare(runs_dir, comparison.PROPOSED, claim["best_other"], n_resamples=200,
                                      split=results.split)
        assert claim["verdict"] == str(expected["verdict"]) == str(verdict_of(claim["ci_low"], claim["ci_high"]))
    assert [claim["verdict"] for claim in claims] == ["ahead", "behind"]
    assert [claim["rank"] for claim in claims] == [1, 3]
    table = official_split.claims_table(claims)
    assert list(table.columns) == ["thesis split (70/15/15, stratified), 80 test movies",
                                   "official split (the release's own), 80 test movies"]
    assert table.loc["verdict"].tolist() == ["ahead", "behind"]
    sentence = official_split.official_sentence(claims, profile)
    assert "**behind**" in sentence and "**ahead**" in sentence and "disagree" in sentence
    # the official table reads the official records, not the thesis ones
    official_rows = {row["model"]: row for row in found[1].rows}
    recorded = found[1].runs["fusion_cross_attention"].records[0]["metrics"]["tuned_per_genre"]["summary"]
    assert official_rows["fusion_cross_attention"]["metrics_tuned"]["macro_f1"]["mean"] == pytest.approx(
        recorded["macro_f1"])


def test_a_profile_without_the_official_split_says_so(two_splits):
    runs_dir, profile = two_splits
    thesis_only = load_profile("smoke", {"models": SPLIT_MODELS, "ablations": "[]", "bootstrap_resamples": "50"})
    assert official_split.split_results(runs_dir, thesis_only, "official") is None
    primary = official_split.split_results(runs_dir, thesis_only, "thesis")
    claims = [official_split.headline_claims(runs_dir, primary, 50)]
    assert "thesis split only" in official_split.official_sentence(claims, thesis_only)
    assert official_split.reference_table(None, data_description("mmimdb")) is None


def data_description(kind: str) -> DataDescription:
    return DataDescription(kind=kind, root=Path("release"), n_movies=80, fingerprint="f" * 64,
                           twin_seed=0 if kind == "twin" else None)


def test_published_figures_sit_beside_the_official_rows_on_the_real_release_only(two_splits):
    runs_dir, profile = two_splits
    official = official_split.split_results(runs_dir, profile, "official")
    assert official_split.reference_table(official, data_description("twin")) is None
    assert "synthetic twin" in official_split.reference_note(official, data_description("twin"))
    table = official_split.reference_table(official, data_description("mmimdb"))
    published = {paper.label: paper for paper in PUBLISHED}
    assert set(published) <= set(table.index) and len(published) == 3
    assert table.loc["GMU (Arevalo et al. 2017), published", "micro-F1 @0.5"] == "0.630"
    assert table.loc["GMU (Arevalo et al. 2017), published", "weighted-F1 @0.5"] == "–"  # not reported
    assert table.loc["MMBT (Kiela et al. 2019), published", "macro-F1 @0.5"] == "≈ 0.616"
    assert table.loc["Braz et al. 2021, published", "samples-F1 @0.5"] == "0.673"
    recorded = official.runs["fusion_cross_attention"].records[0]["metrics"]["fixed_0.5"]["summary"]
    for column, average in (("micro-F1 @0.5", "micro_f1"), ("samples-F1 @0.5", "samples_f1")):
        shown = table.loc["fusion_cross_attention (this build)", column]
        assert float(shown.split()[0]) == pytest.approx(recorded[average], abs=5e-4)
    bibliography = (Path(__file__).resolve().parents[1] / "book" / "references.bib").read_text(encoding="utf-8")
    assert all(f"{{{paper.cite_key}," in bibliography for paper in PUBLISHED)


# ------------------------------------------------------------------------- a release without ground truth


def real_result(**changes):
    """What `evaluate_run` gives on MM-IMDb: deletion and the randomisation check only."""
    result = {"n_pairs": 60, "deletion_auc": 0.4, "random_deletion_auc": 0.6, "randomized_model_rank_correlation": 0.2,
              "gradcam_flat_map_share": 0.0}
    result |= {f"{key}_ci": [value - 0.05, value + 0.05] for key, value in result.items() if key != "n_pairs"}
    return result | changes


def test_on_real_data_only_deletion_has_a_verdict_and_the_randomisation_is_described():
    result = real_result(comparisons=dict([comparison_entry(DELETION_VS_RANDOM, 0.2, 0.1, 0.3)]))
    table = verdicts(result)
    assert table.index.tolist() == [DELETION_VS_RANDOM] and table["verdict"].tolist() == ["ahead"]
    sentences = faithfulness.faithfulness_sentences("fusion_cross_attention", result, ground_truth=False)
    assert "deletion against random order" in sentences["faithfulness_scope"]
    assert "a description" in sentences["faithfulness_claim"] and "**ahead**" in sentences["faithfulness_claim"]

def test_twin_only_sentences_say_nothing_without_ground_truth(grid):
    runs_dir, _ = grid
    runs = comparison.finished_runs(runs_dir)
    rows = results_table(runs_dir, n_resamples=20)
    f1 = comparison.per_genre_f1(runs, list(runs))
    _, values = chapter.evidence_values(runs, rows, None, f1)
    assert chapter.evidence_sentences(values) == {"kinds_claim": "", "bayes_claim": ""}
    tests = comparison.significance_table(runs_dir, comparison.PROPOSED, ["text_x"], {"all genres": None}, 50)
    assert chapter.alignment_sentence(chapter.significance_values(
        tests, {"best other model": "text_x"}, {"all genres": None})) == ""
    aligned = chapter.difference_values({"delta": 0.1, "ci_low": 0.05, "ci_high": 0.15, "p_value": 0.01,
                                         "verdict": verdict_of(0.05, 0.15)}, "alignment")
    assert "**ahead**" in chapter.alignment_sentence(aligned | {"alignment_set": "alignment genres (Horror)"})
    assert chapter.genre_label_note(None) == ""
    no_probes = probes.probe_values(None)
    assert chapter.probe_sentence(no_probes) == no_probes["probe_scope"] != ""
    mention = errors.mention_values(None, runs, ["text_x"])[1]
    assert chapter.mention_sentence(mention) == mention["mention_scope"]
    weights = pd.DataFrame({"text": np.linspace(0.2, 0.6, NUM_GENRES)}, index=GENRES)
    assert xai_chapter.plot_weight_sentence(xai_chapter.modality_values(weights, None), None) == ""
    for sentence in (xai_chapter.showcase_sentence(None, "0000001", DRAMA), xai_chapter.cue_sentence(None),
                     xai_chapter.prop_sentence(None, "0000001", "")):
        assert "MM-IMDb" in sentence and "twin" not in sentence


def test_the_fusion_inputs_are_the_runs_the_grid_plans():
    smoke = load_profile("smoke")
    assert chapter.fusion_inputs(smoke) == ("the encoders of the single-modality runs text_roberta and "
                                            "image_resnet50 and the detections of objects_frcnn")
    assert chapter.fusion_sources(smoke) == ["text_roberta", "image_resnet50", "objects_frcnn"]
    two = load_profile("smoke", {"model_overrides": '{"fusion_cross_attention": {"modalities": ["text", "image"]}}'})
    assert chapter.fusion_inputs(two).endswith("text_roberta and image_resnet50")
    assert chapter.fusion_sources(two) == ["text_roberta", "image_resnet50"]


def test_poster_maps_are_drawn_only_for_genres_with_poster_evidence():
    from types import SimpleNamespace

    probs = np.zeros(NUM_GENRES)
    horror, drama, crime = GENRES.index("Horror"), GENRES.index("Drama"), GENRES.index("Crime")
    probs[[drama, horror, crime]] = [0.9, 0.8, 0.7]  # all three predicted, Drama most probable
    run = SimpleNamespace(probabilities={"0000001": probs}, thresholds=np.full(NUM_GENRES, 0.5))
    evidence = {genre: "text" for genre in GENRES} | {"Horror": "image", "Crime": "alignment"}
    truth = {"genre_evidence": evidence}
    assert xai_chapter.poster_genres(run, truth, "0000001", 3) == [horror, crime]  # Drama's evidence is the plot
    assert xai_chapter.poster_genres(run, None, "0000001", 3) == [drama, horror, crime]  # MM-IMDb: every one
    assert "every predicted genre" in xai_chapter.grid_sentence(None)
    assert "white boxes" in xai_chapter.grid_sentence(truth)
