"""Faithfulness scores on hand-made cases whose answers are known: the pointing game (with the frame
mapping from the square model input to a 224 x 336 poster), deletion AUC, cue recall, the twin's
evidence boxes and the bootstrap intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from thesis_lib.data.text import clean_words
from thesis_lib.genres import GENRES
from thesis_lib.xai.faithfulness import (
    blurred_copy,
    cam_peak,
    center_point_hit,
    cue_recall_at_k,
    deletion_auc,
    deletion_curve,
    mean_with_ci,
    pointing_hit,
    random_cue_recall_at_k,
    random_point_hit_rate,
    random_saliency,
    twin_evidence_boxes,
)
from thesis_lib.xai.gradcam import point_to_poster_frame, to_poster_frame
from thesis_lib.xai.words import PlotWords

POSTER = (224, 336)  # (width, height): the twin's portrait posters
INPUT = 224  # the square model input they are squashed to


def peaked_map(row: int, col: int, size: int = INPUT) -> np.ndarray:
    cam = np.zeros((size, size), dtype=np.float32)
    cam[row, col] = 1.0
    return cam


# ---------------------------------------------------------------------------------------- pointing game


def test_pointing_maps_the_square_input_back_to_the_portrait_poster():
    box = [40, 300, 100, 330]  # low on the poster: y in [300, 330) of 336
    # Row 205 of the 224-row input is poster row 205.5 * 1.5 = 308.25: inside the box.
    assert pointing_hit(peaked_map(205, 60), [box], POSTER)
    # Row 310 does not exist in the input; the unmapped reading (row 150 "is" y 150) must not count:
    # poster y = 150.5 * 1.5 = 225.75 is outside a box at y [140, 170) that contains 150.
    assert not pointing_hit(peaked_map(150, 60), [[40, 140, 100, 170]], POSTER)
    assert pointing_hit(peaked_map(100, 60), [[40, 140, 100, 170]], POSTER)  # 100.5 * 1.5 = 150.75
    # x is not stretched (224 -> 224), the right edge is exclusive.
    assert not pointing_hit(peaked_map(205, 100), [box], POSTER)
    assert pointing_hit(peaked_map(205, 99), [box], POSTER)


def test_pointing_uses_any_of_several_boxes_and_a_tolerance():
    boxes = [[0, 0, 10, 10], [150, 150, 200, 200]]
    x, y = point_to_poster_frame(130, 170, (INPUT, INPUT), POSTER)
    assert (x, y) == pytest.approx((170.5, 195.75))
    assert pointing_hit(peaked_map(130, 170), boxes, POSTER)
    assert not pointing_hit(peaked_map(140, 170), boxes, POSTER)  # y = 210.75
    assert pointing_hit(peaked_map(140, 170), boxes, POSTER, tolerance=15)  # Zhang et al.'s 15 px margin


def test_the_poster_frame_map_peaks_where_the_mapped_point_is():
    cam = peaked_map(205, 60).astype(np.float64)
    cam = np.maximum(cam, 0.5 * np.roll(cam, 1, axis=0))  # a small blob, still peaked at (205, 60)
    poster_map = to_poster_frame(cam, POSTER)
    assert poster_map.shape == (336, 224)  # (H, W) of the JPEG
    assert 0.0 <= poster_map.min() and poster_map.max() <= 1.0
    row, col = np.unravel_index(poster_map.argmax(), poster_map.shape)
    x, y = point_to_poster_frame(205, 60, (INPUT, INPUT), POSTER)
    assert abs(col + 0.5 - x) <= 1.0 and abs(row + 0.5 - y) <= 1.5


def test_flat_maps_point_at_random_and_score_chance():
    box = [0, 0, 112, 168]  # a quarter of the poster
    flat = np.zeros((INPUT, INPUT), dtype=np.float32)
    rng = np.random.default_rng(0)
    hits = [pointing_hit(flat, [box], POSTER, rng=rng) for _ in range(800)]
    assert np.mean(hits) == pytest.approx(0.25, abs=0.05)
    assert cam_peak(flat) == (0, 0)  # without an rng the first maximum is taken (documented)


def test_random_and_centre_baselines():
    assert random_point_hit_rate([[0, 0, 112, 168]], POSTER) == pytest.approx(0.25)
    # Overlapping boxes count their union once.
    assert random_point_hit_rate([[0, 0, 112, 168], [0, 0, 112, 168]], POSTER) == pytest.approx(0.25)
    assert center_point_hit([[100, 150, 130, 190]], POSTER)  # centre (112, 168)
    assert not center_point_hit([[0, 0, 112, 168]], POSTER)  # exclusive right/bottom edge


# --------------------------------------------------------------------------------------------- deletion


def square_image() -> torch.Tensor:
    image = torch.zeros(3, 20, 20)
    image[:, :10, :10] = 1.0  # a bright quarter
    return image


def mean_brightness(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))  # (N,) a "model" whose score is exactly the image's mean


def test_deletion_auc_of_a_known_linear_score():
    image = square_image()
    baseline = torch.zeros_like(image)  # deleted pixels become 0: the score falls by exactly what is deleted
    faithful = image[0].numpy()  # the map that marks exactly the evidence
    fractions, scores = deletion_curve(mean_brightness, image, faithful, steps=10, baseline=baseline)
    # score(f) = max(0.25 - f, 0) at f = 0, 0.1, ...: 0.25, 0.15, 0.05, 0, ...
    np.testing.assert_allclose(scores[:4], [0.25, 0.15, 0.05, 0.0], atol=1e-6)
    assert deletion_auc(fractions, scores) == pytest.approx(0.1 * (0.2 + 0.1 + 0.025), abs=1e-6)
    # The opposite map deletes the evidence last: the score stays 0.25 until f = 0.8, then falls.
    _, backwards = deletion_curve(mean_brightness, image, 1 - faithful, steps=10, baseline=baseline)
    assert deletion_auc(fractions, backwards) > 0.19
    # A random map lies in between, near the expected 0.25 * (1 - f) -> AUC 0.125.
    rng = np.random.default_rng(0)
    random_aucs = [
        deletion_auc(*deletion_curve(mean_brightness, image, random_saliency((20, 20), rng, cell=2),
                                     baseline=baseline))
        for _ in range(20)
    ]
    assert 0.0325 < np.mean(random_aucs) < deletion_auc(fractions, backwards)
    assert np.mean(random_aucs) == pytest.approx(0.125, abs=0.02)


def test_deletion_replaces_with_a_blurred_copy_by_default():
    constant = torch.full((3, 32, 32), 0.7)
    assert torch.allclose(blurred_copy(constant, sigma=4.0), constant, atol=1e-5)  # blurring a flat image is a no-op
    fractions, scores = deletion_curve(mean_brightness, constant, np.random.default_rng(0).random((32, 32)))
    np.testing.assert_allclose(scores, 0.7, atol=1e-5)
    assert deletion_auc(fractions, scores) == pytest.approx(0.7, abs=1e-5)
    image = square_image()

    def contrast(images: torch.Tensor) -> torch.Tensor:  # the bright quarter against the opposite one
        return images[:, :, :10, :10].mean(dim=(1, 2, 3)) - images[:, :, 10:, 10:].mean(dim=(1, 2, 3))  # (N,)

    _, scores = deletion_curve(contrast, image, image[0].numpy(), blur_sigma=3.0)
    assert 0.0 < scores[-1] < scores[0] == pytest.approx(1.0)  # fully replaced by the blurred copy: less contrast
    assert scores[-1] == pytest.approx(float(contrast(blurred_copy(image, 3.0)[None])[0]), abs=1e-5)


def test_deletion_refuses_a_map_of_another_size():
    with pytest.raises(ValueError, match="does not match"):
        deletion_curve(mean_brightness, square_image(), np.zeros((10, 10)))


# ------------------------------------------------------------------------------------------- cue recall


PLOT = "A grieving widow, haunted by paranoia, meets a stalker near the old castle."


def plot_words(scores_by_word: dict[str, float]) -> PlotWords:
    words = clean_words(PLOT)
    scores = np.array([scores_by_word.get(w.text, 0.0) for w in words])
    return PlotWords(plot=PLOT, words=tuple(words), scores=scores)


def span(word: str) -> list[int]:
    start = PLOT.index(word)
    return [start, start + len(word)]


def test_cue_recall_at_k_on_a_hand_made_plot():
    assert [w.text for w in clean_words(PLOT)] == [
        "grieving", "widow", "haunted", "paranoia", "meets", "stalker", "near", "old", "castle"
    ]
    scores = {"paranoia": 0.9, "castle": 0.8, "widow": 0.7, "old": 0.6, "meets": 0.5, "stalker": 0.4}
    cues = [span("paranoia"), span("stalker")]
    assert cue_recall_at_k(plot_words(scores), cues, k=5) == 0.5  # stalker is sixth
    assert cue_recall_at_k(plot_words(scores), cues, k=6) == 1.0
    assert cue_recall_at_k(plot_words(scores), [span("paranoia")], k=1) == 1.0
    # 9 seen words, a random top-5 holds each with probability 5/9.
    assert random_cue_recall_at_k(plot_words(scores), cues, k=5) == pytest.approx(5 / 9)


def test_truncated_words_are_never_recalled():
    words = plot_words({"paranoia": 0.9})
    scores = words.scores.copy()
    scores[3:] = np.nan  # the model read only "grieving widow haunted"
    truncated = PlotWords(PLOT, words.words, scores)
    assert cue_recall_at_k(truncated, [span("paranoia")], k=5) == 0.0
    assert random_cue_recall_at_k(truncated, [span("paranoia")], k=5) == 0.0
    assert random_cue_recall_at_k(truncated, [span("widow")], k=5) == 1.0  # 3 seen words, all in a top-5
    with pytest.raises(ValueError, match="at least one cue word"):
        cue_recall_at_k(truncated, [], k=5)


# ---------------------------------------------------------------------------------- twin evidence boxes


def tiny_truth() -> dict:
    objects = [
        {"label": "ghost", "box": [10, 40, 60, 90], "role": "evidence", "color": "white", "glow": False},
        {"label": "car", "box": [100, 40, 150, 90], "role": "prop", "color": "red", "glow": False},
        {"label": "knife", "box": [10, 200, 60, 230], "role": "distractor", "color": "silver", "glow": False},
    ]
    return {
        "genre_evidence": {"Horror": "image", "Crime": "alignment", "Drama": "text", "Thriller": "interaction",
                           "Film-Noir": "image"},
        "rules": {"Horror": {"objects": ["ghost"]}, "Thriller": {"objects": ["knife"]},
                  "Film-Noir": {"objects": []}, "Crime": {"objects": []}, "Drama": {"objects": []}},
        "movies": {"0000001": {"objects": objects, "named_object": 1,
                               "clean_genres": ["Drama", "Crime", "Horror", "Film-Noir"]}},
    }


def test_twin_evidence_boxes_follow_the_rules():
    truth = tiny_truth()
    assert twin_evidence_boxes(truth, "0000001", "Horror") == [[10, 40, 60, 90]]
    assert twin_evidence_boxes(truth, "0000001", "Crime") == [[100, 40, 150, 90]]  # the named prop
    assert twin_evidence_boxes(truth, "0000001", "Drama") == []  # text evidence
    assert twin_evidence_boxes(truth, "0000001", "Film-Noir") == []  # a palette, no object
    assert twin_evidence_boxes(truth, "0000001", "Thriller") == []  # not a clean genre (label noise)


# ----------------------------------------------------------------------------------------- intervals


def test_differences_are_paired_over_the_same_pairs_or_resampled_per_sample():
    from thesis_lib.xai.faithfulness import difference_with_ci

    rng = np.random.default_rng(0)
    base = rng.random(200)
    paired = difference_with_ci(base + 0.01, base)  # the same pairs, always a little better
    assert (paired.mean, paired.low, paired.high) == pytest.approx((0.01, 0.01, 0.01))
    unpaired = difference_with_ci(base + 0.01, base, paired=False)  # two samples: their spread counts
    assert unpaired.low < 0 < unpaired.high
    dropped = difference_with_ci([1.0, np.nan, 0.0], [0.0, 0.0, np.nan])  # a pair with a NaN side is dropped
    assert (dropped.mean, dropped.n) == (1.0, 1)
    with pytest.raises(ValueError, match="one reference per value"):
        difference_with_ci([1.0, 0.0], [0.0])


def test_mean_with_ci_brackets_the_mean_and_collapses_for_constant_values():
    values = np.random.default_rng(1).random(200) < 0.3
    estimate = mean_with_ci(values, seed=0)
    assert estimate.n == 200 and estimate.mean == pytest.approx(values.mean())
    assert estimate.low < estimate.mean < estimate.high
    assert estimate.high - estimate.low == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 200), abs=0.03)
    constant = mean_with_ci(np.ones(50))
    assert (constant.low, constant.mean, constant.high) == (1.0, 1.0, 1.0)
    assert np.isnan(mean_with_ci([]).mean)


# ------------------------------------------------------------------------------------ the whole check


@pytest.fixture(scope="module")
def tiny_twin_run(make_twin):
    """A 60-movie twin and an untrained text + ViT cross-attention model with its batches (mechanics only)."""
    from thesis_lib.data.batch import MultimodalCollator
    from thesis_lib.data.dataset import MMIMDbDataset
    from thesis_lib.data.images import ImageTransformConfig, build_image_transform
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.text import CLEAN, clean_text
    from thesis_lib.data.tokenizers import train_wordpiece_tokenizer
    from thesis_lib.data.twin import load_twin_truth
    from thesis_lib.models import build_model

    root = make_twin(60)
    release = load_release(root, verify_posters="none", workers=1)
    test = {movie_id: release.movies[movie_id] for movie_id in release.official_split["test"]}
    tokenizer = train_wordpiece_tokenizer(
        [clean_text(release.movies[m].plot) for m in release.official_split["train"]], vocab_size=500
    )
    parts = dict(modalities="text,image", text_backbone="random-bert-small", text_pretrained=False,
                 text_vocab_size=len(tokenizer), text_max_length=128, image_input_size=64)
    torch.manual_seed(0)
    model = build_model("fusion_cross_attention", **parts).eval()
    rollout = build_model("fusion_cross_attention", text_need_attentions=True, **parts).eval()
    rollout.load_state_dict(model.state_dict())
    stats = model.encoders["image"].normalization()
    transform = build_image_transform(ImageTransformConfig(size=64, mean=stats.mean, std=stats.std), train=False)
    dataset = MMIMDbDataset(list(test.values()), image_transform=transform, text_cleaning=CLEAN, tokenizer=tokenizer)
    row_of = {movie.id: row for row, movie in enumerate(dataset.movies)}
    collator = MultimodalCollator(tokenizer, max_length=128)

    def make_batch(ids):
        return collator([dataset[row_of[movie_id]] for movie_id in ids])

    # Thresholds of 0: every labelled genre counts as predicted, so an untrained model has pairs too.
    run = HandBuiltRun("fusion_cross_attention", 0, model, test, make_batch, np.zeros(23), tokenizer, CLEAN, 128,
                       rollout_model=rollout)
    return root, load_twin_truth(root), run


@dataclass
class HandBuiltRun:
    """A model built in the test, seen through the check's `ExplainableRun` protocol (no run folder)."""

    model_name: str
    seed: int
    model: Any
    movies: dict
    make_batch: Callable
    thresholds: np.ndarray
    tokenizer: Any
    text_cleaning: Any
    max_length: int | None
    rollout_model: Any = None
    probabilities: dict | None = None


def test_evaluate_run_scores_every_key_on_a_tiny_twin(tiny_twin_run):
    from thesis_lib.xai.check import TWIN_KEYS, XaiCheckConfig, evaluate_run, select_pairs

    _, truth, run = tiny_twin_run
    config = XaiCheckConfig(max_pairs=12, max_plots=8, batch_size=8, n_resamples=200)
    pairs = select_pairs(run, truth, config)
    assert 0 < len(pairs) <= 12
    for pair in pairs:  # labelled genres with a planted poster object
        assert GENRES[pair.genre] in run.movies[pair.movie_id].genres and pair.boxes
        assert truth["genre_evidence"][GENRES[pair.genre]] in ("image", "both", "interaction", "alignment")
    assert select_pairs(run, truth, config) == pairs  # a fixed sample
    result = evaluate_run(run, truth, config)
    assert result["n_pairs"] == len(pairs)
    for key in TWIN_KEYS:
        assert result[key] is not None, key
        low, high = result[f"{key}_ci"]
        assert low <= result[key] <= high
    for key in ("gradcam_pointing_game", "random_pointing_game", "center_pointing_game",
                "randomized_model_pointing_game", "attention_cue_recall_at_5", "random_cue_recall_at_5"):
        assert 0.0 <= result[key] <= 1.0
    assert 0.0 < result["random_pointing_game"] < 0.2  # one object covers a few % of the poster
    assert -1.0 <= result["randomized_model_rank_correlation"] <= 1.0
    # The strict game: chance is the boxes' share of the area, energy's reference too.
    assert config.pointing_tolerance_px == 0.0
    assert result["box_area_share"] == pytest.approx(result["random_pointing_game"])
    assert result["gradcam_stage"] == "patches"  # a ViT's grid
    # Every comparison is the paired difference over the same pairs: pointing game minus chance, pair by pair.
    from thesis_lib.xai.check import COMPARISONS
    from thesis_lib.xai.faithfulness import difference_with_ci

    assert set(result["comparisons"]) == {c.label for c in COMPARISONS}
    values = result["pair_values"]
    assert list(values["gradcam_pointing_game"]) == [pair.key for pair in pairs]  # keyed "<movie id>/<genre>"
    assert list(values["deletion_auc"]) == [pair.key for pair in pairs[: config.max_deletion_pairs]]
    expected = difference_with_ci(list(values["gradcam_pointing_game"].values()),
                                  list(values["random_pointing_game"].values()), 200, 0)
    found = result["comparisons"]["gradcam_pointing_game vs random_pointing_game"]
    assert (found["difference"], found["ci"], found["n"]) == (expected.mean, [expected.low, expected.high], len(pairs))
    deletion = result["comparisons"]["deletion_auc vs random_deletion_auc"]  # lower is better: random - map
    assert deletion["difference"] == pytest.approx(result["random_deletion_auc"] - result["deletion_auc"])


def test_the_check_reports_the_cross_attention_run_on_top_and_every_run_below(tiny_twin_run, tmp_path, capsys,
                                                                               caplog):
    import json

    from thesis_lib.analysis.xai_check import check_runs
    from thesis_lib.cli import main
    from thesis_lib.experiments.layout import RunsFolder
    from thesis_lib.xai.check import XaiCheckConfig

    root, _, run = tiny_twin_run
    for seed in (0, 1):
        folder = RunsFolder(tmp_path).run("thesis", "fusion_cross_attention", seed)
        folder.path.mkdir(parents=True)
        folder.record.write_text("{}")
    config = XaiCheckConfig(max_pairs=4, max_plots=4, batch_size=4, n_resamples=50)
    with caplog.at_level("INFO", logger="thesis_lib.analysis.xai_check"):
        summary = check_runs(root, tmp_path, config, load=lambda folder, data: run)
    progress = [r.getMessage() for r in caplog.records if r.name == "thesis_lib.analysis.xai_check"]
    assert progress[0] == "xai check [1/2] thesis/fusion_cross_attention/seed0: explaining up to 4 pairs"
    assert progress[-1].startswith("xai check [2/2] thesis/fusion_cross_attention/seed1: done (") and "eta 0:00:00" in progress[-1]
    assert summary["twin"] and summary["headline_run"] == "fusion_cross_attention/seed0"
    assert [(r["model"], r["seed"]) for r in summary["per_run"]] == [("fusion_cross_attention", 0)] * 2
    assert summary["gradcam_pointing_game"] == summary["per_run"][0]["gradcam_pointing_game"]
    assert summary["comparisons"] == summary["per_run"][0]["comparisons"] and "pair_values" not in summary["per_run"][0]
    assert {found["verdict"] for found in summary["comparisons"].values()} <= {"ahead", "behind", "undecided"}
    json.dumps(summary)  # plain JSON
    assert main(["xai", "check", "--data", str(root), "--runs", str(tmp_path / "missing"), "--json"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_without_ground_truth_only_deletion_and_the_randomised_model_are_reported(tiny_twin_run):
    from thesis_lib.xai.check import REAL_KEYS, XaiCheckConfig, evaluate_run

    _, _, run = tiny_twin_run
    result = evaluate_run(run, None, XaiCheckConfig(max_pairs=4, batch_size=4, n_resamples=50))
    assert result["n_pairs"] == 4  # any labelled genre is a candidate on real data
    assert {k for k in result if not k.endswith(("_ci", "_n"))} == {"model", "seed", "n_pairs", "comparisons",
                                                                     "gradcam_stage", "pair_values", *REAL_KEYS}
    assert list(result["comparisons"]) == ["deletion_auc vs random_deletion_auc"]  # the only one with a reference
    assert result["deletion_auc"] is not None


def test_energy_in_boxes_is_the_share_of_the_map_inside_the_box():
    from thesis_lib.xai.faithfulness import energy_in_boxes

    cam = np.zeros((INPUT, INPUT), dtype=np.float32)
    cam[100:150, 50:100] = 1.0  # model frame rows 100..150 -> poster rows 150..225
    assert energy_in_boxes(cam, [[50, 150, 100, 225]], POSTER) == pytest.approx(1.0, abs=0.02)
    assert energy_in_boxes(cam, [[50, 150, 75, 225]], POSTER) == pytest.approx(0.5, abs=0.02)
    uniform = np.ones((INPUT, INPUT), dtype=np.float32)
    box = [[0, 0, 112, 168]]
    assert energy_in_boxes(uniform, box, POSTER) == pytest.approx(random_point_hit_rate(box, POSTER))
    assert np.isnan(energy_in_boxes(np.zeros((INPUT, INPUT)), box, POSTER))


def test_model_configs_come_back_from_a_json_record():
    import dataclasses
    import json

    from thesis_lib.experiments.records import model_config_from_dict
    from thesis_lib.models.registry import default_config

    config = default_config("fusion_cross_attention").with_overrides(image_timm_kwargs=(("channels", (8, 16)),))
    assert model_config_from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


def _image_vit_run_folder(root, runs):
    """A finished image_vit run of the official split as the experiment grid writes it (record, best weights,
    test predictions, thresholds of 0.25): (release, split, model, folder, record, test probabilities)."""
    import dataclasses

    from safetensors.torch import save_file

    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.splits import official_split
    from thesis_lib.experiments.layout import RunsFolder
    from thesis_lib.experiments.records import write_json, write_predictions
    from thesis_lib.models import build_model
    from thesis_lib.train.results import Predictions

    release = load_release(root, verify_posters="none", workers=1)
    split = official_split(release)
    torch.manual_seed(0)
    model = build_model("image_vit", image_input_size=64).eval()
    folder = RunsFolder(runs).run("official", "image_vit", 0)
    folder.best_weights.parent.mkdir(parents=True)
    save_file(model.state_dict(), str(folder.best_weights))
    probs = np.random.default_rng(0).random((len(split.test), 23)).astype(np.float32)
    write_predictions(folder.predictions("test"),
                      Predictions(np.asarray(split.test, dtype=str), probs, release.labels(split.test)))
    thresholds = {genre: {"threshold": 0.25} for genre in GENRES}
    record = {
        "name": "image_vit", "model": "image_vit", "kind": "train", "seed": 0, "text_cleaning": None,
        "model_config": dataclasses.asdict(model.config),
        "split": {"name": "official", "hash": split.split_hash()},
        "data": {"fingerprint": release.fingerprint, "root": str(root)},
        "config": {"train": {"model_size": "small"}},
        "metrics": {"tuned_per_genre": {"per_genre": thresholds}},
    }
    write_json(folder.record, record)
    return release, split, model, folder, record, probs


def test_a_grid_run_folder_is_loaded_with_its_weights_batches_and_predictions(tiny_twin_run, tmp_path):
    """A run folder as the experiment grid writes it (record, best weights, test predictions)."""
    from thesis_lib.analysis.xai_check import NotExplainable, check_runs, explainable_run
    from thesis_lib.experiments.layout import RunsFolder
    from thesis_lib.experiments.loaded_run import NoNetworkError, load_run
    from thesis_lib.experiments.records import write_json
    from thesis_lib.xai.check import XaiCheckConfig

    root, _, _ = tiny_twin_run
    release, split, model, folder, record, probs = _image_vit_run_folder(root, tmp_path)
    run = load_run(folder, release)
    assert (run.model_name, run.seed) == ("image_vit", 0) and set(run.movies) == set(split.test)
    np.testing.assert_allclose(run.thresholds, 0.25)
    np.testing.assert_allclose(run.probabilities[split.test[2]], probs[2])
    batch = run.make_batch(list(split.test[:3]))
    with torch.no_grad():
        torch.testing.assert_close(run.model(batch).logits, model(batch).logits)  # the saved weights
    baseline = RunsFolder(tmp_path).run("official", "baseline_frequency", 0)
    baseline.path.mkdir(parents=True)
    write_json(baseline.record, dict(record, name="baseline_frequency", kind="baseline"))
    with pytest.raises(NoNetworkError):
        load_run(baseline, release)
    with pytest.raises(NotExplainable, match="no network of its own"):
        explainable_run(baseline, release, {})
    summary = check_runs(root, tmp_path, XaiCheckConfig(max_pairs=3, max_deletion_pairs=1, n_resamples=20,
                                                        pointing_tolerance_px=15), split="official")
    assert summary["pointing_tolerance_px"] == 15  # the JSON says which pointing game it scored
    assert [(r["model"], r["n_pairs"] > 0) for r in summary["per_run"]] == [("image_vit", True)]
    assert summary["skipped_runs"][0]["model"] == "baseline_frequency"
    assert summary["headline_run"] is None and summary["gradcam_pointing_game"] is None


def test_the_command_refuses_a_negative_pointing_tolerance(tmp_path, capsys):
    from thesis_lib.cli import main

    assert main(["xai", "check", "--data", str(tmp_path), "--runs", str(tmp_path), "--tolerance", "-1"]) == 2
    assert "--tolerance must be >= 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the device


def _same_result(got, want):
    """Two evaluate_run results equal key by key (NaN equal to NaN); a summary's run leaves out the per-pair
    values and adds each comparison's verdict, so those are compared only when both have them."""
    if "pair_values" not in got:
        want = {key: value for key, value in want.items() if key != "pair_values"}
        got = got | {"comparisons": {label: {k: v for k, v in found.items() if k != "verdict"}
                                     for label, found in got["comparisons"].items()}}
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key], dtype=object), np.asarray(want[key], dtype=object), key)


def test_explaining_a_run_loaded_on_the_cpu_gives_what_a_hand_built_cpu_model_gives(tiny_twin_run, tmp_path):
    """`check_runs(device="cpu")` (load_run, make_batch on the device, the check) scores the run exactly as the
    same weights scored without any device code: a model and batches built in the test."""
    from thesis_lib.analysis.xai_check import check_runs
    from thesis_lib.data.batch import MultimodalCollator
    from thesis_lib.data.dataset import MMIMDbDataset
    from thesis_lib.data.images import ImageTransformConfig, build_image_transform
    from thesis_lib.data.text import CLEAN
    from thesis_lib.xai.check import XaiCheckConfig, evaluate_run

    root, truth, _ = tiny_twin_run
    release, split, model, _, _, probs = _image_vit_run_folder(root, tmp_path)
    config = XaiCheckConfig(max_pairs=6, max_deletion_pairs=3, n_resamples=50, pointing_tolerance_px=15)
    summary = check_runs(root, tmp_path, config, split="official", device="cpu")
    assert summary["device"] == "cpu"
    stats = model.encoders["image"].normalization()
    transform = build_image_transform(ImageTransformConfig(size=64, mean=stats.mean, std=stats.std), train=False)
    test = {movie_id: release.movies[movie_id] for movie_id in split.test}
    dataset = MMIMDbDataset(list(test.values()), image_transform=transform, text_cleaning=CLEAN, modalities=("image",))
    row_of = {movie.id: row for row, movie in enumerate(dataset.movies)}
    by_hand = HandBuiltRun("image_vit", 0, model, test, lambda ids: MultimodalCollator()([dataset[row_of[i]] for i in ids]),
                           np.full(23, 0.25), None, None, None,
                           probabilities={movie_id: probs[row] for row, movie_id in enumerate(split.test)})
    (checked,) = summary["per_run"]
    assert checked["n_pairs"] > 0
    _same_result(checked, evaluate_run(by_hand, truth, config))


def test_the_device_setting_reaches_the_model_its_batches_and_the_command(tiny_twin_run, tmp_path, monkeypatch,
                                                                          capsys):
    """device="auto" goes through machine.choose_device (here without a GPU: the CPU) to the loaded model, its
    batches and its rollout copy, in load_run, the chapter's load_runs and `thesis xai check --device`."""
    import json

    import yaml

    from thesis_lib import machine
    from thesis_lib.book import faithfulness
    from thesis_lib.book.xai_chapter import load_runs
    from thesis_lib.cli import main
    from thesis_lib.experiments.loaded_run import load_run
    from thesis_lib.experiments.profile import profile_path

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked = []
    choose = machine.choose_device
    monkeypatch.setattr(machine, "choose_device", lambda setting, *a: asked.append(setting) or choose(setting, *a))
    root, _, _ = tiny_twin_run
    release, split, _, folder, _, _ = _image_vit_run_folder(root, tmp_path)
    run = load_run(folder, release, device="auto")
    assert asked == ["auto"] and run.device == torch.device("cpu")
    assert {parameter.device for parameter in run.model.parameters()} == {run.device}
    assert run.make_batch(list(split.test[:2]))["image"].device == run.device
    (chapter_run,) = load_runs(tmp_path, release, ["image_vit"], 0, split="official", device="auto").values()
    assert asked == ["auto", "auto"] and chapter_run.device == run.device
    asked.clear()
    # The data and the runs folder from the profile (no --data, no --runs), the book's pointing tolerance.
    profile = yaml.safe_load(profile_path("smoke").read_text(encoding="utf-8"))
    profile |= {"data_root": str(root), "runs_dir": str(tmp_path)}
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    assert main(["xai", "check", "--profile", str(tmp_path / "profile.yaml"), "--split", "official", "--json",
                 "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "cpu" in asked and summary["device"] == "cpu" and summary["per_run"][0]["model"] == "image_vit"
    assert summary["data"] == str(root)
    assert summary["pointing_tolerance_px"] == faithfulness.POINTING_TOLERANCE_PX == 0  # the published table's


def test_gradcam_refuses_posters_off_the_models_device(toy_model_for_device):
    from thesis_lib.xai.gradcam import gradcam_maps

    model, batch = toy_model_for_device
    elsewhere = dict(batch, image=torch.empty(batch["image"].shape, device="meta"))  # another device than the CPU
    with pytest.raises(ValueError, match="posters are on meta but the model on cpu"):
        gradcam_maps(model, elsewhere, [(0, 0)])


@pytest.fixture
def toy_model_for_device():
    from thesis_lib.models import build_model

    torch.manual_seed(0)
    model = build_model("image_vit", image_input_size=32).eval()
    return model, {"image": torch.rand(1, 3, 32, 32)}


def test_the_blurred_copy_is_torchvisions_gaussian_blur():
    from torchvision.transforms.v2 import functional as TF

    image = torch.randn(3, 40, 28, generator=torch.Generator().manual_seed(0))  # (3, H, W) not square
    for sigma in (2.0, 4.0):
        kernel = 2 * int(np.ceil(3 * sigma)) + 1
        expected = TF.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
        torch.testing.assert_close(blurred_copy(image, sigma), expected, atol=1e-5, rtol=0)
    wide = TF.gaussian_blur(image, kernel_size=[27, 27], sigma=[16.0, 16.0])  # the kernel capped by the side
    torch.testing.assert_close(blurred_copy(image, 16.0), wide, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ one run against another


def _hand_made(pointing=None, deletion=None, random_deletion=None, **cue):
    values = {"gradcam_pointing_game": pointing, "deletion_auc": deletion, "random_deletion_auc": random_deletion,
              **cue}
    return {"pair_values": {key: found for key, found in values.items() if found is not None}}


def test_two_runs_are_compared_on_the_pairs_both_explained_with_deletion_oriented_lower_is_better():
    from thesis_lib.xai.between_runs import compare_runs

    a = _hand_made(pointing={"1/Horror": 1.0, "2/Horror": 1.0, "3/War": 0.0, "9/War": 1.0},
                   deletion={"1/Horror": 0.2, "2/Horror": 0.3, "3/War": float("nan")},
                   random_deletion={"1/Horror": 0.5, "2/Horror": 0.5, "3/War": 0.4},
                   attention_cue_recall_at_5={"1": 1.0, "2": 0.5}, rollout_cue_recall_at_5={"1": 0.0, "2": 0.0})
    b = _hand_made(pointing={"3/War": 0.0, "2/Horror": 0.0, "1/Horror": 0.0, "7/War": 1.0},
                   deletion={"1/Horror": 0.6, "2/Horror": 0.7, "3/War": 0.1},
                   random_deletion={"1/Horror": 0.6, "2/Horror": 0.9, "3/War": 0.4},
                   rollout_cue_recall_at_5={"2": 0.5, "1": 0.0, "5": 1.0})
    found = {c.measure: c for c in compare_runs(a, b, n_resamples=200)}
    pointing = found["pointing game (Grad-CAM)"]  # 9/War and 7/War were explained by one run only
    assert (pointing.difference.n, pointing.mean_a, pointing.mean_b) == (3, pytest.approx(2 / 3), 0.0)
    assert pointing.difference.mean == pytest.approx(2 / 3)
    deletion = found["deletion AUC"]  # a's map drops the probability sooner: positive, a is more faithful
    assert deletion.difference.n == 2  # 3/War is NaN for a
    assert (deletion.mean_a, deletion.mean_b) == (pytest.approx(0.25), pytest.approx(0.65))
    assert deletion.difference.mean == pytest.approx(0.4) and deletion.difference.low > 0
    relative = found["deletion AUC minus random order"]  # a: -0.3, -0.2; b: 0.0, -0.2
    assert (relative.mean_a, relative.mean_b) == (pytest.approx(-0.25), pytest.approx(-0.1))
    assert relative.difference.mean == pytest.approx(0.15)
    cue = found["cue recall@5"]  # each run's own text-side explanation, on the plots both read
    assert (cue.source_a, cue.source_b, cue.difference.n) == ("cross-attention", "rollout", 2)
    assert cue.difference.mean == pytest.approx(0.5)
    assert (pointing.source_a, deletion.source_b) == ("Grad-CAM", "Grad-CAM")
    # A text-only run has no Grad-CAM: only cue recall is compared; no shared pair decides nothing.
    text_only = _hand_made(rollout_cue_recall_at_5={"1": 1.0})
    assert [c.measure for c in compare_runs(a, text_only, 50)] == ["cue recall@5"]
    apart = compare_runs(a, _hand_made(pointing={"8/War": 1.0}), 50)[0]
    assert apart.difference.n == 0 and np.isnan(apart.mean_a) and np.isnan(apart.difference.low)


def test_the_comparison_table_gives_verdicts_and_the_answer_no_stronger_than_its_intervals():
    from thesis_lib.book.faithfulness import fusion_comparison, fusion_comparison_sentence

    pairs = [f"{i}/Horror" for i in range(60)]
    proposed = _hand_made(pointing=dict.fromkeys(pairs, 1.0), deletion=dict.fromkeys(pairs, 0.2),
                          random_deletion=dict.fromkeys(pairs, 0.5))
    worse = _hand_made(pointing=dict.fromkeys(pairs, 0.0), deletion=dict.fromkeys(pairs, 0.6),
                       random_deletion=dict.fromkeys(pairs, 0.6))
    same = _hand_made(pointing=dict.fromkeys(pairs, 1.0))  # the same hits: a difference of exactly 0
    sharper = _hand_made(deletion=dict.fromkeys(pairs, 0.1), random_deletion=dict.fromkeys(pairs, 0.5))
    results = {"fusion_cross_attention": proposed, "fusion_early": worse, "fusion_attention": same,
               "fusion_late@joint": sharper}
    others = ["fusion_early", "fusion_attention", "fusion_late@joint", "fusion_x"]  # fusion_x was not trained
    table = fusion_comparison(results, "fusion_cross_attention", others, n_resamples=200)
    assert table.index.get_level_values("other run").unique().tolist() == others[:3]
    early = table.loc["fusion_early"]
    assert early.loc["pointing game (Grad-CAM)", "difference [95% CI]"] == "+1.00 [+1.00, +1.00]"
    assert early.loc["deletion AUC", "proposed"] == "0.20" and early.loc["deletion AUC", "other"] == "0.60"
    assert early.loc["deletion AUC", "difference [95% CI]"] == "+0.40 [+0.40, +0.40]"  # lower is better
    assert early.loc["deletion AUC minus random order", "other"] == "0.00"
    assert set(early["verdict"]) == {"ahead"} and set(early["pairs"]) == {60}
    assert table.loc[("fusion_attention", "pointing game (Grad-CAM)"), "verdict"] == "undecided"
    assert table.loc["fusion_late@joint", "verdict"].tolist() == ["behind", "behind"]  # no Grad-CAM pointing
    sentence = fusion_comparison_sentence(table, "fusion_cross_attention")
    assert "mixed: ahead in 3, behind in 2 and undecided in 1 of 6 comparisons" in sentence
    assert "Undecided: pointing game (Grad-CAM) against fusion_attention." in sentence
    assert ("Ahead: pointing game (Grad-CAM) against fusion_early; deletion AUC against fusion_early; deletion AUC "
            "minus random order against fusion_early. Behind: deletion AUC against fusion_late@joint; ") in sentence
    both = fusion_comparison(results | {"fusion_x": worse}, "fusion_cross_attention", others, n_resamples=200)
    assert "pointing game (Grad-CAM) against fusion_early and fusion_x;" in fusion_comparison_sentence(
        both, "fusion_cross_attention")
    no_late = fusion_comparison(results, "fusion_cross_attention", others[:2], 200)
    assert "in part, and nowhere behind: ahead in 3" in fusion_comparison_sentence(no_late, "fusion_cross_attention")
    no_early = fusion_comparison(results, "fusion_cross_attention", others[1:], 200)
    assert "no, nowhere ahead: ahead in 0, behind in 2" in fusion_comparison_sentence(no_early, "fusion_cross_attention")
    only_early = fusion_comparison(results, "fusion_cross_attention", ["fusion_early"], 200)
    assert "yes, on every measure" in fusion_comparison_sentence(only_early, "fusion_cross_attention")
    assert "not compared" in fusion_comparison_sentence(fusion_comparison(results, "fusion_cross_attention", [],
                                                                          200), "fusion_cross_attention")


def test_the_chapter_compares_two_tiny_runs_on_the_pairs_both_explained(tiny_twin_run):
    """Two runs of the same weights, one predicting fewer genres: its pairs are a subset of the other's, the
    cue-recall plots are the same, and identical explanations differ by exactly 0 (undecided)."""
    from dataclasses import replace

    from thesis_lib.book.faithfulness import faithfulness, fusion_comparison

    _, truth, run = tiny_twin_run
    fewer = replace(run, model_name="fusion_early", thresholds=np.where(np.arange(23) % 2 == 0, 0.0, 1.1))
    results = faithfulness({"fusion_cross_attention": run, "fusion_early": fewer}, truth, 6, 50)
    pairs = {key: set(found["pair_values"]["gradcam_pointing_game"]) for key, found in results.items()}
    shared = pairs["fusion_cross_attention"] & pairs["fusion_early"]
    assert shared  # both samples walk the same seeded order of the labelled candidates
    table = fusion_comparison(results, "fusion_cross_attention", ["fusion_early"], 50).loc["fusion_early"]
    assert table.loc["pointing game (Grad-CAM)", "pairs"] == len(shared)
    cue = table.loc["cue recall@5"]
    assert (cue["explanations"], cue["difference [95% CI]"], cue["verdict"]) == (
        "cross-attention / cross-attention", "+0.00 [+0.00, +0.00]", "undecided")
    assert cue["pairs"] == results["fusion_early"]["attention_cue_recall_at_5_n"]
