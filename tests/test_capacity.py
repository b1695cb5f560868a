"""The capacity experiment (`thesis capacity`, `analysis.capacity`) and the chapter section that reads its
results file (`book.capacity`): the tasks are what they claim, the models are matched, the command writes
a file with its provenance, and a missing, corrupt or foreign file gives one line naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from thesis_lib.analysis.capacity import (
    MODELS,
    CapacityConfig,
    CapacityResultError,
    make_split,
    pooled_ceiling,
    read_results,
)
from thesis_lib.analysis.capacity.models import build_model, matched_width, parameter_count
from thesis_lib.book import capacity as chapter
from thesis_lib.cli import main

CONFIG = CapacityConfig()


def _facts(data, config):
    """Per sample: named object word, named colour word, and the image's {class: colour} read from tokens."""
    vocabulary = config.task.vocabulary
    words = data.text[:, :, :vocabulary].argmax(-1).numpy()  # (N, L)
    image = data.image.numpy()  # (N, cells, K + C + 1)
    k, c = config.task.classes, config.task.colours
    return words, image[:, :, :k], image[:, :, k:k + c]


def test_alignment_label_is_the_named_objects_colour_and_pooled_bags_cannot_tell():
    config = CONFIG.task
    data = make_split("alignment", config, "test", 0)
    words, classes, colours = _facts(data, CONFIG)
    objects = classes.sum(-1) > 0  # (N, cells)
    for i in range(200):
        named = [w for w in words[i] if w < config.classes]
        colour = [w - config.classes for w in words[i] if config.classes <= w < config.classes + config.colours]
        assert len(named) == 1 and len(colour) == 1
        cell = np.flatnonzero(classes[i, :, named[0]])
        assert len(cell) == 1, "the named object is in the image, once"
        assert data.labels[i] == colours[i, cell[0], colour[0]]
        assert objects[i].sum() == config.objects
    # A quadratic logistic model on the pooled bags (every text-bag x image-bag product) is held to the ceiling.
    train = make_split("alignment", config, "train", 0)

    def pooled(split):
        text, image = split.text.mean(1).numpy(), split.image.mean(1).numpy()  # (N, 2V), (N, K + C + 1)
        return np.concatenate([text, image, (text[:, :, None] * image[:, None, :]).reshape(len(text), -1)], 1)

    probe = LogisticRegression(C=10.0, max_iter=2000).fit(pooled(train), train.labels.numpy())
    accuracy = probe.score(pooled(data), data.labels.numpy())
    assert accuracy <= pooled_ceiling("alignment", config) + 0.04
    assert 0.45 <= data.positive_rate <= 0.55


@pytest.mark.parametrize("task", ["additive", "interaction"])
def test_additive_and_interaction_labels_follow_their_cues(task):
    config = CONFIG.task
    data = make_split(task, config, "dev", 3)
    words, classes, _ = _facts(data, CONFIG)
    text_cue = (words == config.cue_word).any(1)
    image_cue = classes[:, :, 0].sum(1) > 0
    expected = text_cue | image_cue if task == "additive" else text_cue & image_cue
    assert (data.labels.numpy() == expected).all()
    assert 0.4 <= data.positive_rate <= 0.6


def test_test_set_is_fixed_across_seeds_and_training_sets_are_not():
    config = CONFIG.task
    assert (make_split("alignment", config, "test", 0).image == make_split("alignment", config, "test", 5).image).all()
    assert not (make_split("alignment", config, "train", 0).image == make_split("alignment", config, "train", 1).image).all()


def test_every_model_is_matched_to_the_target_parameter_count():
    task, sizing = CONFIG.task, CONFIG.sizing
    for name in MODELS:
        width, count = matched_width(name, sizing, task.text_dim, task.image_dim)
        assert abs(count - sizing.target_params) <= sizing.tolerance * sizing.target_params
        model = build_model(name, width, task.text_dim, task.image_dim)
        assert parameter_count(model) == count
        data = make_split("alignment", task, "dev", 0)
        assert model(data.text[:3], data.image[:3]).shape == (3,)


def test_the_command_writes_a_file_with_provenance_that_the_chapter_reads(tmp_path, capsys):
    out = tmp_path / "results" / "capacity.json"
    assert main(["capacity", "--smoke", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert {"git", "versions", "machine", "wall_time_s", "config", "config_hash", "runs", "summary"} <= set(document)
    assert set(document["git"]) == {"commit", "dirty"}
    assert document["machine"]["load_average_before"] is not None and document["versions"]["torch"]
    assert all(run["tried"] and run["tried"][0]["wall_s"] > 0 for run in document["runs"])
    assert len(document["summary"]) == 3 * len(MODELS)
    # A smoke file is another configuration than the chapter's: one line that names the file.
    results = chapter.load(tmp_path)
    assert results.document is None and "another configuration" in results.status and str(out) in results.status
    assert chapter.capacity_table(results) is None
    # Read as what it is, everything the section shows can be made from it.
    shown = chapter.CapacityResults(read_results(out, CapacityConfig.smoke()), None)
    table = chapter.capacity_table(shown)
    assert len(table) == 3 * (len(MODELS) + 1) and table["parameters"].max() > 0
    values = chapter.verdict_values(shown)
    assert "results/capacity.json" in values["capacity_status"]
    assert {"pooled_tasks", "alignment_tokens", "alignment_pooled", "control_sentence"} <= set(values)
    assert len(chapter.accuracy_frame(shown)) == 3 * len(MODELS)


def test_missing_or_corrupt_results_give_one_line_naming_the_file(tmp_path):
    missing = chapter.load(tmp_path)
    assert missing.document is None and "capacity.json" in missing.status and "\n" not in missing.status
    assert "thesis capacity" in missing.status
    path = tmp_path / "results" / "capacity.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(CapacityResultError, match="not a readable capacity results file"):
        read_results(path)
    path.write_text(json.dumps({"schema": "other"}))
    assert "not a thesis-capacity/1 results file" in chapter.load(tmp_path).status
    values = chapter.verdict_values(chapter.load(tmp_path))
    assert values["alignment_tokens"].startswith("not measured")
    assert values["n_seeds"] == 3 and 0.5 < values["pooled_ceiling"] < 1  # what the lead quotes, file or not
