"""The thesis's late fusion: the finished single-modality runs' probabilities, combined per genre.

No network is trained. The source runs (the same seed and split; by default the profile's
`fusion_*_source` runs, i.e. the very encoders the other fusions reuse) give dev and test probabilities;
`fit_late_fusion_weights` picks, per genre, the convex weights of the modalities that maximise dev average
precision, and `combine_late` applies them to dev and test. The jointly trained `LateFusion` module is the
ablation variant `fusion_late@joint` (a trained run like any other).
"""

from __future__ import annotations

from typing import Any

from thesis_lib.experiments.pipeline import GridContext
from thesis_lib.experiments.records import (
    is_finished,
    read_predictions,
    read_record,
)
from thesis_lib.experiments.restore import SourceRunError
from thesis_lib.experiments.specs import RunSpec
from thesis_lib.genres import GENRES
from thesis_lib.models.fusion.late import combine_late, fit_late_fusion_weights
from thesis_lib.train.results import Predictions


def source_predictions(spec: RunSpec, ctx: GridContext) -> dict[str, tuple[Predictions, Predictions, dict[str, Any]]]:
    """modality -> (dev, test predictions, record) of each finished source run."""
    found = {}
    split = ctx.splits[spec.split]
    for modality, _ in spec.sources:
        source = ctx.source_spec(spec, modality)
        folder = ctx.folder(source)
        if not is_finished(folder, config_hash=ctx.config_hash(source), data_fingerprint=ctx.release.fingerprint,
                           split_hash=split.split_hash()):
            raise SourceRunError(f"{spec.label} combines {source.label}, which has not finished (see {folder.path})")
        found[modality] = (read_predictions(folder.predictions("dev")), read_predictions(folder.predictions("test")),
                           read_record(folder))
    return found


def run_late_fusion(spec: RunSpec, ctx: GridContext) -> tuple[Predictions, Predictions, dict[str, Any]]:
    """Per-genre weights fitted on dev, applied to dev and test; details for the run record."""
    sources = source_predictions(spec, ctx)
    dev_parts = {m: dev for m, (dev, _, _) in sources.items()}
    test_parts = {m: test for m, (_, test, _) in sources.items()}
    first_dev, first_test = next(iter(dev_parts.values())), next(iter(test_parts.values()))
    for modality in sources:
        same_dev = list(dev_parts[modality].ids) == list(first_dev.ids)
        if not same_dev or list(test_parts[modality].ids) != list(first_test.ids):
            raise SourceRunError(f"{spec.label}: the source runs' predictions are not for the same movies")
    dev_probs = {m: p.probs for m, p in dev_parts.items()}  # m -> (N_dev, 23)
    weights = fit_late_fusion_weights(dev_probs, first_dev.labels)  # m -> (23,), fitted on dev only
    dev = Predictions(first_dev.ids, combine_late(dev_probs, weights).astype("float32"), first_dev.labels)
    test_probs = combine_late({m: p.probs for m, p in test_parts.items()}, weights)  # (N_test, 23)
    test = Predictions(first_test.ids, test_probs.astype("float32"), first_test.labels)
    source_records = {m: record for m, (_, _, record) in sources.items()}
    details = {
        "model_class": "thesis_lib.models.fusion.late.combine_late",
        "parameters": {
            "total": sum(r["parameters"]["total"] for r in source_records.values()),
            "trainable": 0,  # the source runs trained their own; here only the weights below are fitted
            "fitted_weights": len(sources) * len(GENRES),
        },
        "backbones": {
            m: {"weights": "run", "run": ctx.source_spec(spec, m).label, "run_config_hash": r["config_hash"],
                "name": r["name"]}
            for m, r in source_records.items()
        },
        "late_weights": {m: dict(zip(GENRES, map(float, w), strict=True)) for m, w in weights.items()},
        "training": None,
        "budget": {"tuning_trials": 1, "max_epochs": 0, "epochs_run": 0,
                   "fitted_on": "dev average precision, simplex grid step 0.1"},
        "samples_per_s": None,
    }
    return dev, test, details
