"""Every probe of `analysis.probes` on the encoders the fusions read (`alignment_probes`), and what they
show, as verdicts for the prose (`probe_values`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from thesis_lib.analysis.probes.features import (
    ImageFeatures,
    TextFeatures,
    encode_image,
    encode_text,
    per_label_features,
)
from thesis_lib.analysis.probes.scores import (
    EARLY_INPUT,
    FUSION,
    GENRE_CONTROL,
    IMAGE_POOLED,
    MAJORITY,
    NAMED_PROP,
    PER_LABEL,
    PROP_CELLS,
    TEXT_MENTION,
    TEXT_POOLED,
    AlignmentProbes,
    ProbeConfig,
    ProbeError,
    ProbeScore,
    count_reference,
    run_probe,
    score_text,
    verdict,
)
from thesis_lib.analysis.probes.targets import (
    alignment_rules,
    control_genre,
    describe_count,
    describe_rule,
    genre_targets,
    named_prop_has,
    named_prop_labels,
    props_with,
    some_prop_has,
)
from thesis_lib.analysis.verdicts import Verdict, listing
from thesis_lib.data.mmimdb import Release
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.loaded_run import load_run
from thesis_lib.experiments.records import RecordError, read_record
from thesis_lib.experiments.restore import source_run

# ------------------------------------------------------------------------------------------ the probes


def alignment_probes(
    runs_dir: str | Path,
    release: Release,
    truth: Mapping[str, Any] | None,
    *,
    seed: int = 0,
    split: str = "thesis",
    fusion: str = FUSION,
    text_run: str | None = None,
    image_run: str | None = None,
    config: ProbeConfig | None = None,
) -> AlignmentProbes:
    """Every probe of the module docstring on the encoders the fusions read.

    Args:
        runs_dir: the grid's runs folder (`experiments.layout`); read only.
        release: the release the runs were trained on (its fingerprint is checked against theirs).
        truth: its twin_truth.json (`data.twin.load_twin_truth`); None (real MM-IMDb) is an error.
        seed: the training seed of the runs to probe.
        split: the split the runs were trained on; the probes fit on its train part, score on its test part.
        fusion: the fusion run whose record names its text and image source runs.
        text_run, image_run: run names that override the fusion record's sources (then `fusion` is not read
            for that modality).
    """
    config = config or ProbeConfig()
    if truth is None:
        raise ProbeError(f"the alignment probes read the twin's ground truth (twin_truth.json), and {release.root} "
                         "has none: they need the synthetic twin")
    runs = RunsFolder(Path(runs_dir))
    folders = {modality: _source_run(runs, modality, name, fusion, seed, split)
               for modality, name in (("text", text_run), ("image", image_run))}
    loaded = {}
    for modality, folder in folders.items():
        try:
            loaded[modality] = load_run(folder, release)  # its weights, tokenizer, cleaning and eval transform
        except RecordError as error:
            raise ProbeError(f"{folder.path}: cannot probe its {modality} encoder: {error}") from None
        if modality not in loaded[modality].model.encoders:
            raise ProbeError(f"{folder.path}: the run has no {modality} encoder")
    data_split = loaded["text"].split  # found by its record's hash, never re-drawn
    if loaded["image"].split.split_hash() != data_split.split_hash():
        raise ProbeError(f"{folders['text'].path} and {folders['image'].path} were trained on different splits")
    train, test = release.movies_in(data_split.train), release.movies_in(data_split.test)
    text = {part: encode_text(loaded["text"], movies, truth, config.batch_size)
            for part, movies in (("train", train), ("test", test))}
    image = {part: encode_image(loaded["image"], movies, truth, config.batch_size)
             for part, movies in (("train", train), ("test", test))}
    names = {modality: f"{folder.name}/seed{folder.seed}" for modality, folder in folders.items()}
    ids = {"train": [movie.id for movie in train], "test": [movie.id for movie in test]}
    scores = _all_probes(truth, ids, text, image, names, config)
    truncated = sum(int(np.isnan(text[part].mention).any(axis=1).sum()) for part in text)
    return AlignmentProbes(tuple(scores), tuple(alignment_rules(truth)), names["text"], names["image"],
                           data_split.name, len(train), len(test), truncated)


def _all_probes(truth: Mapping[str, Any], ids: Mapping[str, list[str]], text: Mapping[str, TextFeatures],
                image: Mapping[str, ImageFeatures], names: Mapping[str, str], config: ProbeConfig) -> list[ProbeScore]:
    """The rows of the table, in the module docstring's order."""
    both = f"{names['image']} + {names['text']}"

    def probe(target: str, features: str, run: str, x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
              reference: str = MAJORITY, reference_predictions: np.ndarray | None = None) -> ProbeScore:
        return run_probe(target, features, run, x["train"], y["train"], x["test"], y["test"], reference=reference,
                         reference_predictions=reference_predictions, config=config)

    labels = {part: named_prop_labels(truth, ids[part]) for part in ids}
    classes = sorted(set(labels["train"]) | set(labels["test"]))
    rows = [probe(NAMED_PROP, TEXT_POOLED, names["text"], {p: text[p].pooled for p in ids}, labels),
            probe(NAMED_PROP, TEXT_MENTION, names["text"], {p: text[p].mention for p in ids}, labels)]
    for genre, attribute, value in alignment_rules(truth):
        target = f"{describe_rule(attribute, value)} ({genre})"
        y = {part: named_prop_has(truth, ids[part], attribute, value) for part in ids}
        counts = {part: props_with(truth, ids[part], attribute, value) for part in ids}
        unbound = describe_count(attribute, value)
        reference = count_reference(counts["train"], y["train"], counts["test"], config)
        for features, run, x in (
            (IMAGE_POOLED, names["image"], {p: image[p].pooled for p in ids}),
            (EARLY_INPUT, both, {p: np.concatenate([image[p].pooled, text[p].pooled], axis=1) for p in ids}),
            (PER_LABEL, names["image"], {p: per_label_features(image[p].pooled, labels[p], classes) for p in ids}),
            (PROP_CELLS, names["image"], {p: image[p].prop_cells for p in ids}),
        ):
            rows.append(probe(target, features, run, x, y, unbound, reference))
    image_genre, text_genre = control_genre(truth, ids["train"], "image"), control_genre(truth, ids["train"], "text")
    rows.append(probe(f"{image_genre}{GENRE_CONTROL}", IMAGE_POOLED, names["image"],
                      {p: image[p].pooled for p in ids}, {p: genre_targets(truth, ids[p], image_genre) for p in ids}))
    rows.append(probe(f"{text_genre}{GENRE_CONTROL}", TEXT_POOLED, names["text"],
                      {p: text[p].pooled for p in ids}, {p: genre_targets(truth, ids[p], text_genre) for p in ids}))
    for _, attribute, value in alignment_rules(truth):
        rows.append(probe(describe_rule(attribute, value, "some prop"), IMAGE_POOLED, names["image"],
                          {p: image[p].pooled for p in ids},
                          {p: some_prop_has(truth, ids[p], attribute, value) for p in ids}))
    return rows


def _source_run(runs: RunsFolder, modality: str, name: str | None, fusion: str, seed: int, split: str) -> RunFolder:
    """The run whose `modality` encoder is probed: `name`, or the fusion record's source of that encoder."""
    if name is not None:
        return _finished(runs.run(split, name, seed))
    folder = _finished(runs.run(split, fusion, seed))
    backbone = (read_record(folder).get("backbones") or {}).get(modality)
    if not backbone or backbone.get("weights") != "run":
        raise ProbeError(f"{folder.path}: the {fusion} run did not take its {modality} encoder from a run of the "
                         f"grid (backbones: {backbone}); name the run to probe with {modality}_run=")
    try:
        return _finished(source_run(folder, backbone))
    except ThesisError as error:
        raise ProbeError(str(error)) from None


def _finished(run: RunFolder) -> RunFolder:
    try:
        record = read_record(run)
    except RecordError as error:
        raise ProbeError(str(error)) from None
    if record is None:
        raise ProbeError(f"no finished run {run.name} (seed {run.seed}, {run.split} split) under {run.runs.root}: "
                         f"{run.record} does not exist")
    return run




def probe_values(probes: AlignmentProbes | None) -> dict[str, Any]:
    """What the probes show, for the prose: each a verdict of a paired interval (`analysis.verdicts`), never
    a point estimate. On a release without twin truth every value says so.

    controls_verdict   "ahead" when every genre control beats the majority class, else "behind": then a
                       failed probe below may be the probe's fault rather than the features'
    mention_text, pooled_text, chance   the named prop read from the tokens at the named word / the pooled
                       plot vector, "0.99 [0.97–1.00]", and the chance level
    mention_verdict    the token read-out against the majority class
    bound_pooled       the looks ("named prop is red", ...) some pooled read-out (the poster vector, early
                       fusion's input, or the poster vector told which prop is named) reads beyond the
                       binding-free count reference; bound_cells those the grid cells under the named prop
                       read beyond it; unbound_cells those they do not ("none" when the list is empty)
    """
    if probes is None:
        return {"probe_scope": "The probes read the synthetic twin's ground truth (which prop each plot names and "
                               "how every prop looks); this release has none, so there is nothing to probe here.",
                "controls_verdict": "n/a", "mention_text": "n/a", "pooled_text": "n/a", "chance": float("nan"),
                "mention_verdict": "n/a", "truncated_mentions": 0, "bound_pooled": "n/a", "bound_cells": "n/a",
                "unbound_cells": "n/a"}
    controls = [score for score in probes.scores if score.target.endswith(GENRE_CONTROL)]
    pooled_text, mention = probes.score(NAMED_PROP, TEXT_POOLED), probes.score(NAMED_PROP, TEXT_MENTION)
    bound_pooled, bound_cells, unbound_cells = [], [], []
    for genre, attribute, value in probes.rules:
        rule = describe_rule(attribute, value)
        rows = {features: probes.score(f"{rule} ({genre})", features)
                for features in (IMAGE_POOLED, EARLY_INPUT, PER_LABEL, PROP_CELLS)}
        if any(verdict(rows[features]) == Verdict.AHEAD for features in (IMAGE_POOLED, EARLY_INPUT, PER_LABEL)):
            bound_pooled.append(rule)
        (bound_cells if verdict(rows[PROP_CELLS]) == Verdict.AHEAD else unbound_cells).append(rule)
    return {"probe_scope": "", "chance": pooled_text.chance, "truncated_mentions": probes.truncated_mentions,
            "controls_verdict": str(Verdict.AHEAD if all(verdict(s) == Verdict.AHEAD for s in controls)
                                    else Verdict.BEHIND),
            "mention_text": score_text(mention), "pooled_text": score_text(pooled_text),
            "mention_verdict": str(verdict(mention)), "bound_pooled": listing(bound_pooled),
            "bound_cells": listing(bound_cells), "unbound_cells": listing(unbound_cells)}


