"""The data-size experiment (`thesis datasize`, `analysis.datasize`) and the chapter section that reads its
results file (`book.datasize`): the object tokens carry what a prop looks like, pooled fusions cannot tell
which object looks how, training sets are nested while dev and test stay fixed, the command writes a file
with its provenance, and a missing, corrupt or foreign file gives one line naming it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from thesis_lib.analysis.datasize import (
    FUSIONS,
    GROUPS,
    DataSizeConfig,
    DataSizeResultError,
    read_results,
)
from thesis_lib.analysis.datasize.data import prepare
from thesis_lib.analysis.datasize.features import HIST_BINS, image_token_dim, object_tokens
from thesis_lib.analysis.datasize.models import build_model
from thesis_lib.book import datasize as chapter
from thesis_lib.cli import main
from thesis_lib.detection.vocab import twin_classes

SMOKE = DataSizeConfig.smoke()


def _poster(path, colour, ring):
    image = Image.new("RGB", (224, 336), (40, 40, 60))
    draw = ImageDraw.Draw(image)
    if ring:
        draw.ellipse([50, 50, 149, 149], outline=(190, 255, 255), width=7)
    draw.rectangle([62, 62, 137, 137], fill=colour)
    image.save(path, quality=90)
    return path


def test_object_tokens_carry_class_box_and_how_the_object_looks(tmp_path):
    objects = [{"label": "car", "box": [50, 50, 150, 150]}]
    red = object_tokens(_poster(tmp_path / "red.jpeg", (205, 35, 35), ring=False), objects, max_objects=3)
    glowing = object_tokens(_poster(tmp_path / "glow.jpeg", (35, 75, 205), ring=True), objects, max_objects=3)
    classes = len(twin_classes())
    assert red.shape == (3, image_token_dim()) and not red[1:].any()  # rows past the last object stay zero
    assert red[0, twin_classes().index("car")] == 1 and red[0, :classes].sum() == 1
    assert np.allclose(red[0, classes:classes + 4], [50 / 224, 50 / 336, 150 / 224, 150 / 336])
    bins = HIST_BINS**3
    inner, rim = red[0, classes + 4:classes + 4 + bins + 3], red[0, classes + 4 + bins + 3:]
    assert inner[-3] > 0.6 > inner[-1]  # the body's mean colour is red
    bright = (HIST_BINS - 1) * (1 + HIST_BINS + HIST_BINS**2)  # the (high, high, high) colour bin
    assert glowing[0, classes + 4 + bins + 3 + bright] > 0.2 > rim[bright]  # the halo lights the rim


def test_pooled_fusions_cannot_tell_which_object_looks_how_and_cross_attention_can():
    torch.manual_seed(0)
    text, image = torch.randn(2, 5, 16), torch.randn(2, 4, 10)  # (B, L, D_t), (B, R, D_i)
    text_mask, image_mask = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)
    swapped = image.clone()
    swapped[:, [0, 1], 5:] = image[:, [1, 0], 5:]  # two objects exchange their looks, nothing else moves
    for name in FUSIONS:
        model = build_model(name, 8, 16, 10, depth=1).eval()
        before, after = model(text, text_mask, image, image_mask), model(text, text_mask, swapped, image_mask)
        assert before.shape == (2, 23)
        assert torch.allclose(before, after, atol=1e-5) == (name != "cross_attention"), name


def test_training_sets_are_nested_and_dev_and_test_are_fixed(tmp_path):
    kept = {}
    for largest in (30, 60):
        kept[largest] = prepare(SMOKE.twin, largest, SMOKE.dev_size, SMOKE.test_size, SMOKE.pool_seed,
                                SMOKE.text_tokens, SMOKE.max_objects, tmp_path)
    small, large = kept[30], kept[60]
    assert large.train_pool.ids[:30] == small.train_pool.ids and len(set(large.train_pool.ids)) == 60
    assert small.dev.ids == large.dev.ids and small.test.ids == large.test.ids
    assert not set(large.train_pool.ids) & (set(large.test.ids) | set(large.dev.ids))
    assert torch.equal(large.train_pool.text[:30], small.train_pool.text)  # the same frozen tokens
    assert large.stages["twin_reused"] and not small.stages["twin_reused"]  # one twin, generated once


def test_the_command_writes_a_file_with_provenance_that_the_chapter_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THESIS_HOME", str(tmp_path))  # the twin cache goes under tmp_path/data/datasize
    out = tmp_path / "results" / "datasize.json"
    assert main(["datasize", "--smoke", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert any((tmp_path / "data" / "datasize").glob("twin-*/features-*.pt"))
    document = json.loads(out.read_text())
    assert {"git", "versions", "machine", "budget", "stages", "twin", "summary", "comparisons", "probes",
            "runs", "first_ahead"} <= set(document)
    assert document["budget"]["minutes"] == SMOKE.budget_minutes and document["versions"]["torch"]
    assert {"twin_generation_s", "text_features_s", "image_features_s"} <= set(document["stages"])
    assert [row["size"] for row in document["stages"]["sizes"]] == list(SMOKE.sizes)
    assert len(document["runs"]) == len(SMOKE.sizes) * len(SMOKE.seeds) * len(FUSIONS)
    assert {len(run["tried"]) for run in document["runs"]} == {2}  # the same grid for every fusion
    assert len(document["comparisons"]) == len(GROUPS) * len(SMOKE.sizes) * 2
    assert {p["features"] for p in document["probes"]} == {"named", "pooled"}
    assert {p["target"] for p in document["probes"]} == {"named prop is red", "named prop glows"}
    # A smoke file is another configuration than the chapter's: one line that names the file.
    results = chapter.load(tmp_path)
    assert results.document is None and "another configuration" in results.status and str(out) in results.status
    # Read as what it is, everything the section shows can be made from it.
    shown = chapter.DataSizeResults(read_results(out, SMOKE), None)
    assert len(chapter.datasize_table(shown)) == len(GROUPS) * len(SMOKE.sizes)
    assert len(chapter.curve_frame(shown)) == len(GROUPS) * len(SMOKE.sizes) * len(FUSIONS)
    assert set(chapter.ceilings(shown)) == set(GROUPS)
    assert len(chapter.probe_table(shown)) == len(document["probes"])
    assert "results/datasize.json" in chapter.verdict_values(shown)["ds_status"]


def test_missing_or_corrupt_results_give_one_line_naming_the_file(tmp_path):
    missing = chapter.load(tmp_path)
    assert missing.document is None and "datasize.json" in missing.status and "\n" not in missing.status
    assert "thesis datasize" in missing.status
    path = tmp_path / "results" / "datasize.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(DataSizeResultError, match=f"{path}: not a readable data-size results file"):
        read_results(path)
    path.write_text(json.dumps({"schema": "other"}))
    assert "not a thesis-datasize/1 results file" in chapter.load(tmp_path).status
    values = chapter.verdict_values(chapter.load(tmp_path))
    assert values["ds_alignment"].startswith("not measured") and chapter.datasize_table(chapter.load(tmp_path)) is None


def _document(verdicts):
    """A small results document: alignment verdicts of cross-attention vs. both pooled fusions per size."""
    sizes = list(verdicts)
    comparisons = [{"group": group, "size": size, "a": "cross_attention", "b": b, "delta": 0.1 if v == "ahead" else 0.0,
                    "ci_low": 0.05 if v == "ahead" else -0.05, "ci_high": 0.2, "verdict": v}
                   for group in GROUPS for size, v in verdicts.items() for b in ("early", "attention")]
    summary = [{"group": group, "size": size, "fusion": f, "f1": 0.5, "ci_low": 0.4, "ci_high": 0.6, "seed_f1": [0.5]}
               for group in GROUPS for size in sizes for f in FUSIONS]
    summary += [{"group": group, "size": None, "fusion": "oracle", "f1": 0.97, "ci_low": None, "ci_high": None,
                 "seed_f1": []} for group in GROUPS]
    probes = [{"size": size, "target": "named prop is red", "features": key, "balanced_accuracy": 0.9, "ci_low": 0.85,
               "ci_high": 0.95, "chance": 0.5} for size in sizes for key in ("named", "pooled")]
    first = next((s for s in sizes if all(verdicts[t] == "ahead" for t in sizes if t >= s)), None)
    train = {"learning_rates": [0.001, 0.01]}
    return {"config": {"sizes": sizes, "train": train}, "summary": summary, "comparisons": comparisons, "probes": probes,
            "first_ahead": dict.fromkeys(GROUPS, first), "git": {"commit": "abc1234def", "dirty": False},
            "machine": {"cpu": "a CPU", "torch_threads": 1}, "wall_time_s": 600.0, "created": "2026-12-06T22:00:00",
            "runs": [], "budget": {"minutes": 35.0, "wall_minutes": 10.0, "within": True}, "twin": {"n_movies": 1000},
            "stages": {"twin_generation_s": 60.0, "text_features_s": 300.0, "image_features_s": 30.0,
                       "features_reused": False, "sizes": [{"size": s, "training_s": 60.0} for s in sizes]}}


def test_the_chapter_says_what_the_intervals_say():
    late = chapter.verdict_values(chapter.DataSizeResults(_document({1000: "undecided", 2000: "ahead",
                                                                     4000: "ahead"}), None))
    assert late["ds_first"].startswith("from 2,000 training movies on")
    assert "is ahead at 2,000 and 4,000 and undecided at 1,000 training" in late["ds_alignment"]
    assert "35 min" in late["ds_budget"] and "within" in late["ds_budget"] and late["ds_largest"] == "4,000"
    assert "8,000" in late["ds_larger"]  # the next doubling and what it would cost
    assert late["ds_rates"] == "0.001 and 0.01"
    assert "overlap at 1,000, 2,000 and 4,000 training" in late["ds_seeds"]
    edge = chapter.verdict_values(chapter.DataSizeResults(_document({1000: "undecided", 2000: "ahead"}), None))
    assert "only at the largest size tried, 2,000" in edge["ds_first"]
    never = chapter.verdict_values(chapter.DataSizeResults(_document({1000: "ahead", 2000: "undecided"}), None))
    assert never["ds_first"].startswith("at no size up to 2,000")  # ahead once, then not: not an advantage
    document = _document({1000: "behind"})
    frame = chapter.curve_frame(chapter.DataSizeResults(copy.deepcopy(document), None))
    assert list(frame["group"].unique()) == ["alignment", "interaction", "all"]
