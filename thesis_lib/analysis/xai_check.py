"""`thesis xai check`: the faithfulness of the explanations of every trained run in a runs folder.

Each finished run of one split (RUNS/<split>/<run>/seed<k>/) comes back through
`experiments.loaded_run.load_run` and is scored by `xai.check.evaluate_run` (see there for every key).
Runs with nothing to explain (baselines, late fusion of finished runs' predictions, detections-only
models, detections that cannot be produced here) are listed under "skipped_runs" with the reason; so are
runs that cannot be loaded (an unreadable record or weights file, a missing source run or pretrained
backbone), marked "broken": true, while every other run is still checked.

The summary (what `--json` prints) is one object: its top-level keys are the values of the headline run,
fusion_cross_attention seed 0 (the thesis model), and "per_run" lists the same keys for every run, with
"model" and "seed".

The runs are explained on `machine.choose_device(device)` ("auto": the GPU when there is one; what
`thesis xai check --device` passes); the numbers come back to the CPU for scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib import machine
from thesis_lib.analysis.verdicts import Verdict, verdict_of
from thesis_lib.data.mmimdb import Release, load_release
from thesis_lib.data.twin import load_twin_truth
from thesis_lib.data.twin.generate import TRUTH_FILE
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.loaded_run import THRESHOLD_POLICY, DetectionsCache, load_run, record_plot_choice
from thesis_lib.experiments.records import RecordError, model_config_from_dict, read_record
from thesis_lib.experiments.table import PRIMARY_SPLIT
from thesis_lib.logs import Pace
from thesis_lib.xai.check import (
    COMPARISONS,
    REAL_KEYS,
    TWIN_KEYS,
    ExplainableRun,
    XaiCheckConfig,
    XaiCheckError,
    evaluate_run,
)

logger = logging.getLogger(__name__)

HEADLINE = ("fusion_cross_attention", 0)  # (model, seed) whose values are the summary's top-level keys


class NotExplainable(Exception):
    """A run the check has nothing to explain in (a baseline, late fusion of predictions, detections only)."""


def find_runs(runs: RunsFolder, split: str = PRIMARY_SPLIT) -> list[RunFolder]:
    """Every finished run of `split` in `runs`, sorted by name and seed."""
    if not runs.root.is_dir():
        raise XaiCheckError(f"runs folder {runs.root} does not exist")
    found = list(runs.recorded(split))
    if not found:
        raise XaiCheckError(f"no runs of the {split} split under {runs.root}: expected {split}/<model>/seed<k>/"
                            "record.json")
    return found


def explainable_run(run: RunFolder, release: Release, detections: DetectionsCache,
                    device: str = "auto") -> ExplainableRun:
    """The run back from disk for explanation, on `machine.choose_device(device)`; NotExplainable (with the
    reason) when it has nothing to explain, XaiCheckError when it cannot be loaded."""
    try:
        record = read_record(run)
        if record.get("kind") != "train":
            raise NotExplainable(f"a {record.get('kind')} run has no network of its own")
        config = model_config_from_dict(record.get("model_config"))
        if not [m for m in config.modalities if m != "objects"]:
            raise NotExplainable("reads detections only (no poster or plot encoder)")
        # Detections not cached yet are decoded by cores - 2 workers: this command has no profile to ask.
        return load_run(run, release, detections, device=device, num_workers=machine.AUTO_WORKERS)
    except ImportError as error:  # the detector's library is not installed here (ultralytics on the GPU image)
        raise NotExplainable(f"its detections cannot be produced here: {error}") from None
    # ThesisError: an unreadable record or weights file (RecordError), a missing source run (SourceRunError),
    # weights of another model (CheckpointMismatchError), a pretrained backbone not on this machine, ...
    except ThesisError as error:
        raise XaiCheckError(f"run {run.path}: {' '.join(str(error).split())}") from None


def check_runs(
    data: Path,
    runs: Path,
    config: XaiCheckConfig | None = None,
    split: str = PRIMARY_SPLIT,
    load: Callable[[RunFolder, Release], ExplainableRun] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate every run of `split` under `runs` against the data in `data`; the object `--json` prints.

    `load(run, release)` builds each run (default `explainable_run` on `device`, "auto" | "cpu"; tests pass
    their own). The summary's "device" names where the explanations ran."""
    config = config or XaiCheckConfig()
    found = find_runs(RunsFolder(runs), split)  # a missing or empty runs folder fails before the data is read
    truth = load_twin_truth(data) if (Path(data) / TRUTH_FILE).is_file() else None
    release = load_release(data, plot_choice=_plot_choice(found))
    detections: DetectionsCache = {}
    load = load or (lambda run, release: explainable_run(run, release, detections, device))
    per_run, skipped = [], []
    pace = Pace(len(found))
    for position, folder in enumerate(found, start=1):
        pace.one_more()
        try:
            run = load(folder, release)
        except NotExplainable as reason:
            skipped.append({"model": folder.name, "seed": folder.seed, "reason": str(reason)})
            continue
        except XaiCheckError as error:  # this run is broken (see explainable_run): the others are still checked
            logger.warning("xai check: %s seed %d skipped: %s", folder.name, folder.seed, error)
            skipped.append({"model": folder.name, "seed": folder.seed, "reason": f"cannot be loaded: {error}",
                            "broken": True})
            continue
        logger.info("xai check [%d/%d] %s: explaining up to %d pairs", position, len(found), folder.label,
                    config.max_pairs)
        per_run.append(evaluate_run(run, truth, config))
        logger.info("xai check [%d/%d] %s: done (%s so far, eta %s)", position, len(found), folder.label,
                    pace.so_far(), pace.eta())
    return summarise(per_run, skipped, data, truth is not None, config, str(machine.choose_device(device)))


def _plot_choice(found: list[RunFolder]) -> str:
    """The plot choice the runs were trained with (they share one: it is part of every config hash)."""
    records = [_readable_record(folder) for folder in found]
    choices = {record_plot_choice(record) for record in records if record is not None and record.get("kind") == "train"}
    if len(choices) > 1:
        raise XaiCheckError(f"the runs read different plots of each movie ({sorted(choices)}): check them one "
                            "plot choice at a time")
    return choices.pop() if choices else "longest"


def _readable_record(folder: RunFolder) -> dict[str, Any] | None:
    """The run's record, or None when it cannot be read (the run is then reported as broken, not the check)."""
    try:
        return read_record(folder)
    except RecordError:
        return None


def summarise(per_run: list[dict[str, Any]], skipped: list[dict[str, Any]], data: Path, twin: bool,
              config: XaiCheckConfig, device: str = "cpu") -> dict[str, Any]:
    """The summary object: the headline run's values at the top level, then every run and every skip;
    `device` names where the explanations ran."""
    keys = TWIN_KEYS if twin else REAL_KEYS
    headline = next((r for r in per_run if (r["model"], r["seed"]) == HEADLINE), None)
    summary: dict[str, Any] = {
        "data": str(data),
        "twin": twin,
        "headline_run": None if headline is None else f"{HEADLINE[0]}/seed{HEADLINE[1]}",
        "threshold_policy": THRESHOLD_POLICY,
        "max_pairs": config.max_pairs,
        "pointing_tolerance_px": config.pointing_tolerance_px,
        "gradcam_stage_setting": config.gradcam_stage,
        "seed": config.seed,
        "device": device,
    }
    for key in keys:
        summary[key] = None if headline is None else headline[key]
        summary[f"{key}_ci"] = None if headline is None else headline[f"{key}_ci"]
    summary["n_pairs"] = None if headline is None else headline["n_pairs"]
    summary["gradcam_stage"] = None if headline is None else headline["gradcam_stage"]
    summary["comparisons"] = None if headline is None else _printable(headline)["comparisons"]
    summary["per_run"] = [_printable(run) for run in per_run]
    summary["skipped_runs"] = skipped
    return summary


def _printable(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's result as the summary prints it: without the per-pair values, each comparison with its verdict."""
    comparisons = {label: {**found, "verdict": str(verdict_of(*found["ci"]))}
                   for label, found in run.get("comparisons", {}).items()}
    return {key: value for key, value in run.items() if key != "pair_values"} | {"comparisons": comparisons}


SHORT_NAMES: Mapping[str, str] = {
    "gradcam_pointing_game": "gradcam", "hirescam_pointing_game": "hirescam", "random_pointing_game": "random",
    "center_pointing_game": "centre", "randomized_model_pointing_game": "rand.model", "gradcam_energy_in_box": "energy",
    "box_area_share": "box.area",
    "deletion_auc": "del.auc", "random_deletion_auc": "rand.del", "randomized_model_rank_correlation": "rand.rho",
    "gradcam_flat_map_share": "flat.maps",
    "attention_cue_recall_at_5": "attn.cue5", "rollout_cue_recall_at_5": "roll.cue5",
    "random_cue_recall_at_5": "rand.cue5",
}


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as a plain-text table, one line per run (what `thesis xai check` prints without --json)."""
    keys = TWIN_KEYS if summary["twin"] else REAL_KEYS
    pointing = (f"pointing game (within {summary['pointing_tolerance_px']:g} px of the box) columns gradcam..energy, "
                if summary["twin"] else "")
    lines = [f"XAI check of {summary['data']} ({'synthetic twin' if summary['twin'] else 'real data'}); "
             f"{pointing}deletion AUC del.auc/rand.del, cue recall@5 *.cue5",
             f"{'run':<40} {'pairs':>5} " + " ".join(f"{SHORT_NAMES[k]:>10}" for k in keys)]
    for run in summary["per_run"]:
        cells = " ".join(f"{'-' if run[k] is None else format(run[k], '.3f'):>10}" for k in keys)
        lines.append(f"{run['model'] + '/seed' + str(run['seed']):<40} {run['n_pairs']:>5} {cells}")
    lines += [f"skipped {s['model']}/seed{s['seed']}: {s['reason']}" for s in summary["skipped_runs"]]
    if summary["headline_run"] is None:
        lines.append(f"(no {HEADLINE[0]} seed {HEADLINE[1]} run: the JSON's top-level values are null)")
    return "\n".join(lines)


def verdicts(result: Mapping[str, Any]) -> pd.DataFrame:
    """What one run's explanations may claim: per comparison it has (`xai.check.COMPARISONS`: the pointing
    game against chance, the centre and the randomised model; energy in the box against the box's share of
    the area; deletion against random order; cue recall against chance and cross-attention against rollout)
    the paired difference (positive: the explanation does better), its 95% bootstrap interval, the pairs
    and the verdict the interval gives (`analysis.verdicts`: ahead, behind, undecided). No thresholds of our
    own: a reference is beaten when the whole interval says so.

    On MM-IMDb (no boxes, no cue words) only deletion has a reference; the randomised model's rank
    correlation is a description, not a comparison."""
    rows = {}
    for comparison in COMPARISONS:
        found = result.get("comparisons", {}).get(comparison.label)
        if found is None:
            continue
        low, high = found["ci"]
        rows[comparison.name] = {"difference": found["difference"], "ci_low": low, "ci_high": high,
                                 "pairs": found["n"], "verdict": str(verdict_of(low, high))}
    columns = ["difference", "ci_low", "ci_high", "pairs", "verdict"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("comparison")


def verdict_of_comparison(result: Mapping[str, Any], name: str) -> Verdict | None:
    """The verdict of one comparison by its name (`xai.check.COMPARISONS`), None when the run lacks it."""
    table = verdicts(result)
    return Verdict(table.loc[name, "verdict"]) if name in table.index else None
