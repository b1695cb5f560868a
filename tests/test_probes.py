"""Linear probes on the frozen encoders (thesis_lib.analysis.probes): the fitting and scoring on
hand-built features whose answer is known, the targets against the twin's truth, the sentence against
hand-made scores, and the whole probe on a tiny grid (a 100-movie twin, 1 epoch, tiny backbones)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from thesis_lib.analysis.probes import (
    EARLY_INPUT,
    IMAGE_POOLED,
    MAJORITY,
    NAMED_PROP,
    PER_LABEL,
    PROP_CELLS,
    TABLE_COLUMNS,
    TEXT_MENTION,
    TEXT_POOLED,
    AlignmentProbes,
    ProbeConfig,
    ProbeError,
    ProbeScore,
    alignment_probes,
    alignment_rules,
    balanced_accuracy_resampled,
    box_cell_weights,
    count_reference,
    genre_targets,
    named_prop_has,
    named_prop_labels,
    per_label_features,
    probe_values,
    props_with,
    run_probe,
    some_prop_has,
    verdict,
)
from thesis_lib.analysis.verdicts import Verdict
from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.splits import load_split
from thesis_lib.data.twin import load_twin_truth
from thesis_lib.errors import ThesisError
from thesis_lib.experiments import load_profile, run_grid
from thesis_lib.experiments.layout import RunsFolder

FAST = ProbeConfig(n_resamples=200)


# ------------------------------------------------------------------------------ fitting and scoring


def test_balanced_accuracy_resampled_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    counts = rng.integers(0, 3, size=(4, 60)).astype(float)  # (R, N) draws per movie
    counts[0, y_true == 2] = 0  # a resample without class 2: averaged over the classes it holds
    ours = balanced_accuracy_resampled(y_true, y_pred, counts)
    with pytest.warns(UserWarning):  # scikit-learn warns about the class that resample lacks, then drops it
        first = balanced_accuracy_score(y_true, y_pred, sample_weight=counts[0])
    expected = [first, *(balanced_accuracy_score(y_true, y_pred, sample_weight=row) for row in counts[1:])]
    assert ours == pytest.approx(expected)


def test_a_separable_target_is_read_and_a_random_one_is_not():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    separable = np.column_stack([y * 3.0 + rng.normal(0, 0.5, 400), rng.normal(size=(400, 4))])  # (400, 5)
    noise = rng.normal(size=(400, 5))
    read = run_probe("t", "separable", "run", separable[:300], y[:300], separable[300:], y[300:], config=FAST)
    guessed = run_probe("t", "noise", "run", noise[:300], y[:300], noise[300:], y[300:], config=FAST)
    assert read.balanced_accuracy > 0.97 and verdict(read) == Verdict.AHEAD and read.ci_low <= read.balanced_accuracy
    assert abs(guessed.balanced_accuracy - 0.5) < 0.12 and verdict(guessed) != Verdict.AHEAD
    assert read.chance == guessed.chance == 0.5 and read.reference == MAJORITY
    assert (read.n_train, read.n_test, read.classes) == (300, 100, 2)


def test_the_per_label_control_reads_a_binding_that_pooled_features_cannot():
    """Each movie shows three props, each red or not (one feature per prop), and names one of them; the
    target is "the named prop is red". The features alone know which props are red, not which is named:
    they do as well as counting the red props, and only the per-label read-out beats that count."""
    rng = np.random.default_rng(2)
    red = rng.integers(0, 2, size=(600, 3))  # (N, props)
    named = rng.integers(0, 3, 600)
    y = red[np.arange(600), named]
    features = red + rng.normal(0, 0.1, size=red.shape)  # (N, 3)
    labels = np.array(["car", "hat", "lamp"])[named]
    count = count_reference(red[:450].sum(axis=1), y[:450], red[450:].sum(axis=1), FAST)  # (150,)
    pooled = run_probe("named red", "pooled", "run", features[:450], y[:450], features[450:], y[450:],
                       reference="number of red props", reference_predictions=count, config=FAST)
    crossed = per_label_features(features, labels, ["car", "hat", "lamp"])  # (N, 3 * 3 + 3)
    told = run_probe("named red", "per label", "run", crossed[:450], y[:450], crossed[450:], y[450:],
                     reference="number of red props", reference_predictions=count, config=FAST)
    assert crossed.shape == (600, 12) and np.array_equal(crossed[0, 9:], labels[0] == np.array(["car", "hat", "lamp"]))
    assert 0.6 < pooled.reference_score < 0.9  # the count tells something, not everything
    assert pooled.balanced_accuracy < 0.9 and verdict(pooled) != Verdict.AHEAD
    assert told.balanced_accuracy > 0.95 and verdict(told) == Verdict.AHEAD


def test_a_target_with_a_single_train_example_of_a_class_gives_no_score():
    x, y = np.random.default_rng(3).normal(size=(40, 2)), np.zeros(40, dtype=int)
    y[0] = 1
    score = run_probe("rare", "x", "run", x[:30], y[:30], x[30:], y[30:], config=FAST)
    assert np.isnan(score.balanced_accuracy) and score.classes == 2


def test_movies_without_features_are_left_out():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 100)
    x = np.column_stack([y + rng.normal(0, 0.1, 100), rng.normal(size=100)])  # (100, 2)
    x[:10] = np.nan  # e.g. a named word cut off by truncation
    score = run_probe("t", "x", "run", x[:70], y[:70], x[70:], y[70:], config=FAST)
    assert (score.n_train, score.n_test) == (60, 30)


def test_box_cell_weights_share_the_box_area_among_grid_cells():
    poster = (200, 300)  # (W, H); a 2 x 2 grid has cells of 100 x 150 pixels
    assert box_cell_weights([10, 10, 90, 140], poster, 2) == pytest.approx([1, 0, 0, 0])
    assert box_cell_weights([150, 100, 190, 200], poster, 2) == pytest.approx([0, 0.5, 0, 0.5])  # right column
    assert box_cell_weights([50, 0, 150, 150], poster, 2) == pytest.approx([0.5, 0.5, 0, 0])
    with pytest.raises(ProbeError, match="outside"):
        box_cell_weights([250, 0, 260, 10], poster, 2)


# ------------------------------------------------------------------------------------------ the sentence


def score(target, features, value, gain_low, *, reference=MAJORITY, classes=2, chance=0.5):
    return ProbeScore(target, features, "run", 100, 50, classes, value, value - 0.05, value + 0.05, chance,
                      reference, value - gain_low - 0.05, gain_low + 0.05, gain_low, gain_low + 0.1, 1.0)


def hand_made(cells_gain: float, pooled_gain: float = -0.05) -> AlignmentProbes:
    rows = [score(NAMED_PROP, TEXT_POOLED, 0.45, 0.2, classes=5, chance=0.2),
            score(NAMED_PROP, TEXT_MENTION, 1.0, 0.75, classes=5, chance=0.2)]
    for target, unbound in (("named prop is red (Crime)", "number of red props"),
                            ("named prop glows (Mystery)", "number of glowing props")):
        rows += [score(target, IMAGE_POOLED, 0.76, pooled_gain, reference=unbound),
                 score(target, EARLY_INPUT, 0.75, pooled_gain, reference=unbound),
                 score(target, PER_LABEL, 0.77, pooled_gain, reference=unbound),
                 score(target, PROP_CELLS, 0.86, cells_gain, reference=unbound)]
    rows += [score("Horror (genre control)", IMAGE_POOLED, 1.0, 0.45),
             score("Drama (genre control)", TEXT_POOLED, 0.67, 0.1),
             score("some prop is red", IMAGE_POOLED, 0.9, 0.35), score("some prop glows", IMAGE_POOLED, 0.8, 0.25)]
    rules = (("Crime", "color", "red"), ("Mystery", "glow", True))
    return AlignmentProbes(tuple(rows), rules, "text/seed0", "image/seed0", "thesis", 100, 50, 0)


def test_the_verdicts_follow_the_intervals():
    lost = probe_values(hand_made(cells_gain=-0.02))
    assert (lost["bound_pooled"], lost["bound_cells"]) == ("none", "none")
    assert lost["unbound_cells"] == "named prop is red and named prop glows"
    assert lost["controls_verdict"] == "ahead" and lost["mention_verdict"] == "ahead"
    assert lost["mention_text"] == "1.00 [0.95–1.05]"
    kept = probe_values(hand_made(cells_gain=0.03))
    assert kept["bound_cells"] == "named prop is red and named prop glows" and kept["unbound_cells"] == "none"
    half = hand_made(cells_gain=0.03)
    half = dataclasses.replace(half, scores=tuple(
        dataclasses.replace(s, gain_ci_low=-0.01) if s.target.startswith("named prop glows") else s
        for s in half.scores))
    assert (probe_values(half)["bound_cells"], probe_values(half)["unbound_cells"]) == (
        "named prop is red", "named prop glows")
    assert probe_values(hand_made(cells_gain=0.03, pooled_gain=0.02))["bound_pooled"] == (
        "named prop is red and named prop glows")
    broken = hand_made(cells_gain=0.03)
    broken = dataclasses.replace(broken, scores=tuple(
        dataclasses.replace(s, gain_ci_low=-0.1) if s.target.startswith("Horror") else s for s in broken.scores))
    assert probe_values(broken)["controls_verdict"] == "behind"
    assert "synthetic twin" in probe_values(None)["probe_scope"]


# ------------------------------------------------------------------------------------ on a tiny grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_grid):
    """A 100-movie twin and the runs the cross-attention fusion reads, trained for one epoch."""
    with tiny_grid(tmp_path_factory.mktemp("probes"),
                   models=["text_roberta", "image_resnet50", "objects_oracle", "fusion_cross_attention"],
                   model_overrides={**tiny_grid.resnet, **tiny_grid.roberta,
                                    "fusion_cross_attention": {"fusion_dim": 16, "fusion_heads": 2}},
                   image_size=64, fusion_objects_source="objects_oracle") as tiny:
        report = run_grid(load_profile(tiny.profile), data_root=str(tiny.twin), runs_dir=str(tiny.runs))
        assert report.ok, report.summary()
        release = load_release(tiny.twin, verify_posters="none")
        truth = load_twin_truth(tiny.twin)
        yield {"runs": tiny.runs, "release": release, "truth": truth,
               "probes": alignment_probes(tiny.runs, release, truth, config=FAST)}


@pytest.mark.slow
def test_the_table_has_one_row_per_probe(grid):
    probes = grid["probes"]
    (split_file,) = RunsFolder(grid["runs"]).splits.glob("thesis-*.json")
    split = load_split(split_file)
    table = probes.table()
    rules = alignment_rules(grid["truth"])
    assert [(genre, attribute) for genre, attribute, _ in rules] == [("Crime", "color"), ("Mystery", "glow")]
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 2 + 4 * len(rules) + 2 + len(rules)
    assert (probes.text_run, probes.image_run) == ("text_roberta/seed0", "image_resnet50/seed0")
    assert (probes.n_train, probes.n_test) == (len(split.train), len(split.test))
    pooled = table[table["features"] != TEXT_MENTION]
    assert (pooled["n_train"] == len(split.train)).all() and (pooled["n_test"] == len(split.test)).all()
    mention = probes.score(NAMED_PROP, TEXT_MENTION)
    assert mention.n_train + mention.n_test + probes.truncated_mentions == len(split.train) + len(split.test)
    scored = table.dropna(subset=["balanced_accuracy"])
    assert len(scored) >= len(table) - 2  # only a control genre absent from this tiny train part may lack a score
    assert ((scored["ci_low"] <= scored["balanced_accuracy"]) & (scored["balanced_accuracy"] <= scored["ci_high"])).all()
    assert probes.score("named prop is red (Crime)", IMAGE_POOLED).reference == "number of red props"
    assert probes.readable().index.names == ["target", "features"]
    assert probe_values(probes)["mention_text"].startswith(f"{mention.balanced_accuracy:.2f} [{mention.ci_low:.2f}")
    assert set(probes.readable()["verdict"]) <= {"ahead", "behind", "undecided"}


@pytest.mark.slow
def test_the_targets_are_the_truth(grid):
    truth, release = grid["truth"], grid["release"]
    ids = sorted(truth["movies"])
    labels = named_prop_labels(truth, ids)
    for movie_id, label in list(zip(ids, labels, strict=True))[:5]:
        facts = truth["movies"][movie_id]
        start, end = facts["named_object_mention"]["char_span"]
        assert label == facts["objects"][facts["named_object"]]["label"]
        assert release.movies_in([movie_id])[0].plot[start:end].lower() == label  # the plot names this prop
    red, glows = named_prop_has(truth, ids, "color", "red"), named_prop_has(truth, ids, "glow", True)
    assert np.array_equal(red, genre_targets(truth, ids, "Crime"))  # the generating rule of the alignment genres
    assert np.array_equal(glows, genre_targets(truth, ids, "Mystery"))
    assert (some_prop_has(truth, ids, "color", "red") >= red).all() and red.sum() > 0
    assert (props_with(truth, ids, "glow", True) >= glows).all() and props_with(truth, ids, "color", "red").max() <= 3


@pytest.mark.slow
def test_a_release_without_truth_and_a_missing_run_are_named(grid):
    with pytest.raises(ThesisError, match="synthetic twin"):
        alignment_probes(grid["runs"], grid["release"], None)
    with pytest.raises(ProbeError, match="text_bert"):
        alignment_probes(grid["runs"], grid["release"], grid["truth"], text_run="text_bert", config=FAST)
    with pytest.raises(ProbeError, match="seed 7"):
        alignment_probes(grid["runs"], grid["release"], grid["truth"], seed=7, config=FAST)
