"""The experiments chapter's page (notebooks/04_experiments.ipynb): running the grid, and turning the
comparison (`analysis.comparison`: ranking, per-genre scores, paired tests, ablations) into tables and
the values the page's prose glues in.

The claims themselves are written in the notebook's Markdown; this module only hands it numbers, names
and verdict words (`analysis.verdicts`: ahead / behind / undecided, decided by an interval), so a reader
of the notebook sees what the chapter claims and the tests check the verdicts, not the wording.
`experiments_figures` draws the figures and `error_analysis` looks at the decisions of single runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib.analysis import comparison
from thesis_lib.analysis.comparison import (
    LEVEL,
    PROPOSED,
    FinishedRun,
    Standing,
    bayes_reference,
    best_variant,
    by_verdict,
    compare,
    evidence_kind_f1,
    evidence_of_genres,
    headline,
    kind_standing,
    ranked,
    row_of,
)
from thesis_lib.analysis.sources import RULE, SourceChoice, read_modality, source_choice
from thesis_lib.analysis.verdicts import Verdict, listing, verdict_of
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.grid import GridReport, run_grid
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.specs import definitions, make_spec
from thesis_lib.experiments.values import value_text
from thesis_lib.logs import configure_logging, echoed

logger = logging.getLogger(__name__)
GRID_LOGGER = "thesis_lib.experiments.grid"  # its per-run lines are shown live as well
RULE_TEXT = RULE  # the rule the fusions' sources follow, as the page states it (analysis.sources)
GRID_LOG = "book-grid.log"  # RUNS/<this>: what the grid printed while the chapter ran it
STAGE_NAMES = {"baseline": "baseline", "unimodal": "single modality", "late": "late fusion", "fusion": "fusion"}
METRIC_NAMES = {
    "macro_f1": "macro-F1", "micro_f1": "micro-F1", "weighted_f1": "weighted-F1", "samples_f1": "samples-F1",
    "subset_accuracy": "subset acc.", "hamming_accuracy": "Hamming acc.", "macro_precision": "macro-P",
    "macro_recall": "macro-R", "roc_auc_macro": "ROC-AUC macro", "roc_auc_micro": "ROC-AUC micro",
    "map_macro": "mAP macro",
}
POLICY_NAMES = {"metrics": "@0.5", "metrics_tuned": "tuned"}  # results_table key -> column suffix
# Scores of the probabilities themselves: no threshold, so one column each, without a policy suffix.
THRESHOLD_FREE = ("roc_auc_macro", "roc_auc_micro", "map_macro")
# The visible comparison table: (results_table key, metric): the plan's accuracy, precision, recall, F1,
# ROC-AUC and mAP (thresholded ones with dev-tuned thresholds; macro-F1 also at 0.5); the rest is in the
# full table.
MAIN_COLUMNS = (("metrics", "macro_f1"), ("metrics_tuned", "macro_f1"), ("metrics_tuned", "micro_f1"),
                ("metrics_tuned", "macro_precision"), ("metrics_tuned", "macro_recall"),
                ("metrics_tuned", "hamming_accuracy"), ("metrics", "roc_auc_macro"), ("metrics", "map_macro"))


class GridFailedError(ThesisError, RuntimeError):
    """Some runs of the grid failed: the chapter would compare an incomplete grid."""


# ------------------------------------------------------------------------------------------ the grid


def run_grid_logged(profile: Profile) -> GridReport:
    """`run_grid(profile)` with its progress, its training log lines and its summary written to
    RUNS/book-grid.log, so the page shows the summary, not thousands of lines. Raises GridFailedError naming
    the failed runs.

    The book renders the profile it is given: a finished run of another config in its runs folder (the
    profile was edited, or `thesis run KEY=VALUE` wrote there) is retrained in place, each named in the log
    (`run_grid(replace=True)`); `thesis run` itself refuses that unless told `--replace`."""
    runs_root = profile.runs_path()
    runs_root.mkdir(parents=True, exist_ok=True)
    log_path = runs_root / GRID_LOG
    configure_logging()
    logger.info("grid: one line per run follows; everything it prints is in %s", log_path)
    with log_path.open("w", encoding="utf-8") as log, echoed(GRID_LOGGER, sys.stderr):
        # The library's lines go to whatever stderr is when they are emitted (see thesis_lib.logs), so
        # redirecting stderr sends them, with warnings and anything printed, into the log file; the grid's
        # own per-run lines also go on to the chapter's stderr, which the book build shows live.
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            report = run_grid(profile, replace=True)
        log.write(report.summary() + "\n")
    if not report.ok:
        failed = "; ".join(f"{label}: {error}" for label, error in report.failed)
        raise GridFailedError(f"{len(report.failed)} run(s) failed ({failed}); see {log_path} and error.txt "
                              "in each run folder")
    return report


# The learning-rate schedule after the warm-up, in the words of the grid section (chapter 3.2 gives the maths).
SCHEDULE_WORDS = {
    "linear": "the learning rate decays linearly to 0 at the last epoch of the budget",
    "plateau": "the learning rate is held and multiplied by {factor:g} after every epoch without improvement, "
               "so the epoch budget is a cap",
}


def grid_facts(profile: Profile, report: GridReport) -> dict[str, Any]:
    """What the page says about the grid and this build's pass over it, ready for `glue_values`."""
    return {
        "profile_name": profile.profile, "seed_list": ", ".join(map(str, profile.seeds)),
        "n_defined": len(profile.models) + len(profile.ablations), "n_models_defined": len(profile.models),
        "n_ablations": len(profile.ablations), "n_ran": len(report.executed), "n_skipped": len(report.skipped),
        "grid_seconds": report.wall_time_s, "grid_log": GRID_LOG, "split_name": profile.primary_split,
        "epochs": profile.epochs, "batch_size": profile.batch_size, "n_trials": len(profile.lr_scales),
        "monitor": profile.monitor, "patience": str(profile.patience),
        "warmup_epochs": profile.warmup_ratio * profile.epochs,
        "schedule": SCHEDULE_WORDS[profile.lr_schedule].format(factor=profile.plateau_factor),
        "text_source": profile.fusion_text_source, "image_source": profile.fusion_image_source,
        "objects_source": profile.fusion_objects_source,
    }


# ----------------------------------------------------------------------------------- finished runs


def profile_runs(runs: Mapping[str, FinishedRun], profile: Profile) -> dict[str, FinishedRun]:
    """Only the runs the profile defines (a runs folder may also hold runs of models dropped since)."""
    names = definitions(profile)
    return {name: run for name, run in runs.items() if name in names}


def fusion_sources(profile: Profile, proposed: str = PROPOSED) -> list[str]:
    """The single-modality runs whose encoders (and detections) the proposed model reads, as the grid plans
    it: the profile's text and image sources and, when the model reads detections, its objects source."""
    spec = make_spec(definitions(profile)[proposed], profile, profile.seeds[0], profile.primary_split)
    return list(dict.fromkeys(name for _, name in spec.sources))


def fusion_inputs(profile: Profile, proposed: str = PROPOSED) -> str:
    """What the proposed fusion starts from, in words: "the encoders of the single-modality runs text_roberta
    and image_resnet50 and the detections of objects_yolo" (no detections when it reads none)."""
    spec = make_spec(definitions(profile)[proposed], profile, profile.seeds[0], profile.primary_split)
    sources = dict(spec.sources)
    encoders = [sources[modality] for modality in ("text", "image") if modality in sources]
    text = f"the encoders of the single-modality run{'s' if len(encoders) > 1 else ''} {listing(encoders)}"
    return text + (f" and the detections of {sources['objects']}" if "objects" in sources else "")


def source_choices(runs: Mapping[str, FinishedRun], profile: Profile) -> list[SourceChoice]:
    """The fusion-source rule (`analysis.sources`) applied to this build's runs, for the profile's sources."""
    used = {"text": profile.fusion_text_source, "image": profile.fusion_image_source,
            "objects": profile.fusion_objects_source}
    return source_choice(runs, used, profile.models)


def source_table(choices: Sequence[SourceChoice]) -> pd.DataFrame:
    """One row per modality: every candidate with its dev macro-mAP, the rule's pick and the profile's."""
    rows = {choice.modality: {
        "candidates (dev macro-mAP)": ", ".join(f"{name} {score:.3f}" for name, score in choice.scores.items()),
        "rule picks": choice.chosen, "fusions read": choice.used,
        "follows the rule": "yes" if choice.follows_rule else "NO"} for choice in choices}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("modality")


def source_sentence(choices: Sequence[SourceChoice]) -> str:
    """Whether the fusions read what the rule picks; a disagreement is named with both runs."""
    broken = [choice for choice in choices if not choice.follows_rule]
    if not broken:
        return "The fusions of this build read exactly the runs the rule picks."
    wrong = "; ".join(f"for {c.modality} they read {c.used} where the rule picks {c.chosen}" for c in broken)
    return (f"**The profile does not follow the rule:** {wrong}. Set the profile's fusion sources to the "
            f"rule's picks and rerun the fusions before reading their rows as the rule's comparison.")


def text_genre_check(runs: Mapping[str, FinishedRun], evidence: Mapping[str, str] | None,
                     baseline: str = "baseline_shallow",
                     n_resamples: int = 1000) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Every single-modality text run beside the shallow baseline on each genre whose evidence is in the plot
    (twin only): test ROC-AUC and AP per genre, and for the page how many (run, genre) pairs fall below the
    baseline on either by the point estimate, and how many of those are behind it by the paired bootstrap's
    interval (the rest the test movies cannot tell apart). None on MM-IMDb (no evidence kinds) or without the
    baseline."""
    genres = [genre for genre, kind in (evidence or {}).items() if kind == "text"]
    texts = [name for name, run in runs.items() if run.stage == "unimodal" and read_modality(run) == "text"]
    if not genres or baseline not in runs or not texts:
        return None, {"n_text_pairs": 0, "n_below_baseline": 0, "below_baseline": "none",
                      "n_behind_baseline": 0, "behind_baseline": "none"}
    scores = comparison.per_genre_ranking(runs, [baseline, *texts], genres)
    table = scores.pivot(index="genre", columns="run", values=["ROC-AUC", "AP"])  # (genres, metric x run)
    below: dict[tuple[str, str, str], Verdict] = {}
    for name in texts:
        for genre in genres:
            for metric in ("ROC-AUC", "AP"):
                if table.loc[genre, (metric, name)] < table.loc[genre, (metric, baseline)]:
                    pair = comparison.genre_ranking_difference(runs[name], runs[baseline], genre, metric,
                                                               n_resamples)
                    below[(name, genre, metric)] = verdict_of(pair.ci_low, pair.ci_high)

    def described(key: tuple[str, str, str]) -> str:
        name, genre, metric = key
        return (f"{name} on {genre} ({metric} {table.loc[genre, (metric, name)]:.3f} against "
                f"{table.loc[genre, (metric, baseline)]:.3f}: {below[key]})")

    behind = [key for key, verdict in below.items() if verdict is Verdict.BEHIND]
    ordered = table.reindex(columns=[(m, n) for m in ("ROC-AUC", "AP") for n in (baseline, *texts)])
    return ordered.round(3), {"n_text_pairs": len(texts) * len(genres),
                              "n_below_baseline": len({key[:2] for key in below}),
                              "below_baseline": listing([described(key) for key in below]),
                              "n_behind_baseline": len({key[:2] for key in behind}),
                              "behind_baseline": listing([described(key) for key in behind])}


def convergence_values(runs: Mapping[str, FinishedRun], profile: Profile) -> dict[str, Any]:
    """How many trained runs plateaued (kept an epoch before their last) and which did not, for the page."""
    found = {name: kept for name, run in runs.items() if (kept := comparison.convergence(run)) is not None}
    rising = [name for name, kept in found.items() if not kept.plateaued]
    return {"n_trained": len(found), "n_plateaued": len(found) - len(rising),
            "n_stopped_early": sum(kept.stopped_early for kept in found.values()),
            "still_rising": listing(rising) if rising else "none", "min_delta": profile.min_delta}


def weights_caption(runs: Mapping[str, FinishedRun]) -> str:
    """The caption sentence naming the weights behind the chapter's figures, e.g. "Weights: each model's
    own run of this build (best dev checkpoint, seed 0); encoders start from minilm (pretrained) or
    random init (resnet18, ...); detections from yolo (trained on the twin), oracle (true boxes)."."""
    pretrained, random, standins, detectors = [], [], [], []
    for run in runs.values():
        for modality, origin in run.records[0].get("backbones", {}).items():
            if modality == "objects" and origin.get("weights") == "detector":
                source = origin.get("name", "?")
                trained = origin.get("detector", {}).get("detector", {}).get("weights")
                origin_words = ("trained on the twin" if trained == "twin" else
                                "a random COCO stand-in" if origin.get("standin") else "COCO-pretrained")
                detectors.append("oracle (the twin's true boxes)" if source == "oracle" else
                                 f"{source} ({origin_words})")
            elif origin.get("weights") == "pretrained":
                pretrained.append(origin["name"])
            elif origin.get("weights") == "stand-in":  # a test or benchmark build: never called pretrained
                standins.append(origin["name"])
            elif origin.get("weights") == "random":
                random.append(origin["name"])
    seeds = sorted({seed for run in runs.values() for seed in run.seeds})
    text = (f"Weights: each model's own run of this build (best dev checkpoint, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))})")
    origins = [f"{', '.join(dict.fromkeys(pretrained))} (pretrained)"] if pretrained else []
    origins += [f"random init ({', '.join(dict.fromkeys(random))})"] if random else []
    origins += [f"stand-ins saved under real names ({', '.join(dict.fromkeys(standins))})"] if standins else []
    if origins:
        text += f"; encoders start from {' or '.join(origins)}"
    if detectors:
        text += f"; detections from {', '.join(dict.fromkeys(detectors))}"
    return text + "."


# ----------------------------------------------------------------------------------- comparison


def estimate_text(entry: Mapping[str, float | None], digits: int = 3) -> str:
    """"0.808 [0.785–0.825]" (one seed) or "0.808 ± 0.012 [0.785–0.825]" (mean ± std over seeds)."""
    if entry.get("mean") is None:
        return "n/a"
    text = f"{entry['mean']:.{digits}f}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.{digits}f}"
    if entry.get("ci_low") is not None:
        text += f" [{entry['ci_low']:.{digits}f}–{entry['ci_high']:.{digits}f}]"
    return text


def column_name(key: str, metric: str) -> str:
    """"macro-F1 @0.5", "macro-F1 tuned"; a threshold-free score by its name alone ("mAP macro")."""
    return METRIC_NAMES[metric] if metric in THRESHOLD_FREE else f"{METRIC_NAMES[metric]} {POLICY_NAMES[key]}"


def comparison_table(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, FinishedRun],
                     columns: Sequence[tuple[str, str]] = MAIN_COLUMNS, *, details: bool = False) -> pd.DataFrame:
    """One row per run name (results_table order) and the chosen metrics as "mean [95% CI]" text (the CI
    is a bootstrap over test movies; ± std appears with several seeds); `details` adds stage and seeds."""
    table = {}
    for row in rows:
        entry = {}
        if details:
            stage = STAGE_NAMES.get(runs[row["model"]].stage, runs[row["model"]].stage)
            entry = {"stage": stage + (" (ablation)" if "@" in row["model"] else ""),
                     "seeds": ",".join(map(str, row["seeds"]))}
        entry |= {column_name(key, metric): estimate_text(row[key][metric]) for key, metric in columns}
        table[row["model"]] = entry
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("model")


def threshold_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Why the scores at 0.5 mislead (for the prose): every trained model weights a genre's positives up by
    its rarity (`pos_weight`), which lifts its probabilities, so at 0.5 it calls too many genres. The
    trained model with the lowest Hamming accuracy at 0.5, that accuracy with tuned thresholds, and the
    frequency baseline's at 0.5 (its probabilities are the genre shares, no weighting)."""
    trained = [row for row in rows if "@" not in row["model"] and not row["model"].startswith("baseline_")]
    baseline = next((row for row in rows if row["model"] == "baseline_frequency"), None)
    if not trained or baseline is None:
        return {"hamming_worst": "n/a", "hamming_worst_fixed": float("nan"), "hamming_worst_tuned": float("nan"),
                "hamming_frequency": float("nan")}
    worst = min(trained, key=lambda row: row["metrics"]["hamming_accuracy"]["mean"])
    return {"hamming_worst": worst["model"],
            "hamming_worst_fixed": worst["metrics"]["hamming_accuracy"]["mean"],
            "hamming_worst_tuned": worst["metrics_tuned"]["hamming_accuracy"]["mean"],
            "hamming_frequency": baseline["metrics"]["hamming_accuracy"]["mean"]}


def full_metrics_table(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, FinishedRun]) -> pd.DataFrame:
    """Every metric of the results table: the thresholded ones at both thresholds, the threshold-free ones
    once (for the collapsed full table)."""
    columns = [(key, metric) for key in POLICY_NAMES for metric in METRIC_NAMES if metric not in THRESHOLD_FREE]
    columns += [("metrics", metric) for metric in THRESHOLD_FREE]
    return comparison_table(rows, runs, columns, details=True)


def curve_models(rows: Sequence[Mapping[str, Any]], count: int = 4) -> list[str]:
    """The runs whose precision-recall curves are drawn: the `count` best models, the best run overall
    when it is an ablation variant, and the shallow baseline (the reference a curve should clear)."""
    names = [row["model"] for row in ranked(rows)[:count]]
    best_run = ranked(rows, variants=True)[0]["model"]
    names += [best_run] if best_run not in names else []
    present = {row["model"] for row in rows}
    return names + [name for name in ("baseline_shallow",) if name in present and name not in names]


def standing_values(position: Standing) -> dict[str, Any]:
    """Where the proposed model stands, for the comparison's prose (the page glues its name once, as
    `proposed`)."""
    return {"proposed_rank": position.rank, "n_models": position.n_models,
            "proposed_tuned": position.score, "best_other": position.best_other,
            "best_other_score": position.best_other_score, "proposed_gap": position.gap,
            "best_run": position.best_run, "best_run_score": position.best_run_score}


# ---------------------------------------------------------------------------------- per genre


def genre_label(genre: str, evidence: Mapping[str, str] | None) -> str:
    """"Horror (image)" on the twin, "Horror" on MM-IMDb."""
    return genre if evidence is None else f"{genre} ({evidence[genre]})"


# ---------------------------------------------------------------------------------- significance


def readable_significance(table: pd.DataFrame) -> pd.DataFrame:
    """`significance_table` for the page: "Δ macro-F1 [95% CI]", p and the verdict as text."""
    shown = table[["compared with", "genres"]].copy()
    shown["Δ macro-F1 [95% CI]"] = _differences(table)
    shown["p"] = [f"{p:.3f}" for p in table["p_value"]]
    shown["verdict"] = [str(verdict) for verdict in table["verdict"]]
    return shown.set_index(["compared with", "genres"])


def _differences(table: pd.DataFrame) -> list[str]:
    """"+0.012 [-0.004, +0.030]" per row of a table with delta, ci_low and ci_high."""
    return [f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"
            for delta, low, high in zip(table["delta"], table["ci_low"], table["ci_high"], strict=True)]


def difference_values(result: Mapping[str, Any], suffix: str) -> dict[str, Any]:
    """A paired difference for the prose: "<what>_delta", "_low", "_high", "_p" and "_verdict" (the verdict
    word of `analysis.verdicts`), keyed with `suffix` (e.g. "all" -> "delta_all")."""
    return {f"delta_{suffix}": result["delta"], f"low_{suffix}": result["ci_low"],
            f"high_{suffix}": result["ci_high"], f"p_{suffix}": result["p_value"],
            f"verdict_{suffix}": str(result["verdict"])}


NOT_MEASURED = {"delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"),
                "verdict": "not measured (MM-IMDb has no alignment genres)"}


def significance_values(tests: pd.DataFrame, others: Mapping[str, str],
                        sets: Mapping[str, Sequence[str] | None]) -> dict[str, Any]:
    """The proposed model against the best other model, on all genres and (twin) the alignment genres."""
    rival = others["best other model"]
    mine = tests[tests["compared with"] == rival]
    values = {"rival": rival, **difference_values(mine.iloc[0], "all")}
    alignment = [label for label in sets if label != "all genres"]
    result = mine[mine["genres"] == alignment[0]].iloc[0] if alignment else NOT_MEASURED
    return values | difference_values(result, "alignment") | {
        "alignment_set": alignment[0] if alignment else "alignment genres (none on MM-IMDb)"}


def variant_values(runs_dir: str | Path, rows: Sequence[Mapping[str, Any]], rival: str, n_resamples: int,
                   proposed: str = PROPOSED, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The proposed model's best ablation variant against the best other model (paired), for the prose."""
    variant = best_variant(rows, proposed)
    if variant is None:
        return {"best_variant": "none (the profile defines no variant of the proposed model)",
                "best_variant_score": float("nan"), **difference_values(NOT_MEASURED, "variant")}
    result = compare(runs_dir, variant, rival, n_resamples=n_resamples, seeds=seeds)
    return {"best_variant": variant, "best_variant_score": headline(row_of(rows, variant)),
            **difference_values(result, "variant")}


# -------------------------------------------------------------------------------------- ablations


@dataclass(frozen=True)
class Ablation:
    """A named variant of the profile and the run it changes."""

    name: str  # e.g. "fusion_cross_attention@no_objects"
    base: str  # e.g. "fusion_cross_attention"
    change: str  # the variant's settings, e.g. "modalities=text,image"

    @property
    def description(self) -> str:
        """The settings in words, e.g. "reads text + image only"."""
        return "; ".join(describe_setting(*setting.split("=", 1)) for setting in self.change.split())


def describe_setting(key: str, value: str) -> str:
    """One variant setting (a registry override or run key) in words; unknown ones as key=value."""
    words = {
        "modalities": lambda v: f"reads {' + '.join(v.split(','))} only",
        "fusion_bidirectional": lambda v: "one-way attention (plot to poster)" if v == "false" else "two-way attention",
        "fusion_depth": lambda v: f"{v} cross-attention block{'s' if v != '1' else ''}",
        "backbones": lambda v: "encoders fine-tuned, not frozen" if v == "finetune" else "encoders frozen",
        "text_cleaning": lambda v: "raw plots (no cleaning)" if v == "raw" else "cleaned plots",
        "text_max_length": lambda v: f"plots cut at {v} tokens",
        "late": lambda v: "late fusion trained jointly" if v == "joint" else "late fusion of finished runs",
        "text_source": lambda v: f"text encoder of {v}",
        "image_source": lambda v: f"image encoder of {v}",
        "objects_source": lambda v: f"detections of {v}",
    }
    return words[key](value) if key in words else f"{key}={value}"


def ablations_of(profile: Profile, runs: Mapping[str, FinishedRun] | None = None) -> list[Ablation]:
    """The profile's ablation variants, in profile order (with `runs`: those whose run and base run
    both finished)."""
    found = []
    for name, definition in definitions(profile).items():
        if "@" not in name or (runs is not None and not (name in runs and definition.model in runs)):
            continue
        settings = [f"{key}={value_text(value)}" for key, value in definition.overrides] + [
            f"{key}={value_text(value)}" for key, value in definition.run_keys.items()]
        found.append(Ablation(name, definition.model, " ".join(settings)))
    return found


def ablation_table(runs_dir: str | Path, ablations: Sequence[Ablation], rows: Sequence[Mapping[str, Any]],
                   n_resamples: int, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """`analysis.comparison.ablation_table` of the profile's variants, with what each changes in words."""
    table = comparison.ablation_table(runs_dir, [(a.name, a.base) for a in ablations], rows, n_resamples, seeds)
    table.insert(1, "change", [ablation.description for ablation in ablations])
    return table


def readable_ablations(table: pd.DataFrame) -> pd.DataFrame:
    """`ablation_table` for the page: the change, both scores, Δ [95% CI], p and the verdict as text."""
    shown = table[["variant", "change"]].copy()
    shown["base → variant"] = [f"{base:.3f} → {variant:.3f}"
                               for base, variant in zip(table["base macro-F1"], table["variant macro-F1"], strict=True)]
    shown["Δ [95% CI]"] = _differences(table)
    shown["p"] = [f"{p:.3f}" for p in table["p_value"]]
    shown["verdict"] = [str(verdict) for verdict in table["verdict"]]
    return shown.set_index("variant")


def ablation_values(table: pd.DataFrame) -> dict[str, Any]:
    """The variants grouped by verdict (variant minus the run it changes), for the prose."""
    groups = by_verdict(table)
    return {"n_variants": len(table), "variants_ahead": listing(groups[Verdict.AHEAD]),
            "variants_behind": listing(groups[Verdict.BEHIND]), "n_undecided": len(groups[Verdict.UNDECIDED])}


# -------------------------------------------------------------------------------- evidence kinds


def evidence_values(runs: Mapping[str, FinishedRun], rows: Sequence[Mapping[str, Any]],
                    truth: Mapping[str, Any] | None, f1: pd.DataFrame) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Mean F1 per evidence kind (twin; None on MM-IMDb) and, for the prose, the kinds on which the proposed
    model leads, is level (within LEVEL) or trails, and the twin's Bayes reference against the best run."""
    if truth is None:
        return None, {"kinds_leading": "n/a", "kinds_level": "n/a", "kinds_trailing": "n/a", "level": LEVEL,
                      "bayes_f1": float("nan"), "best_run_gap_to_bayes": float("nan"),
                      "twin_bayes_f1": float("nan"), "evidence_scope": NOT_ON_MMIMDB}
    table = evidence_kind_f1(f1, evidence_of_genres(truth))
    places = kind_standing(table)
    best = ranked(rows, variants=True)[0]
    bayes = bayes_reference(truth, runs[best["model"]])
    kinds = {place: places.index[places["standing"] == place].tolist() for place in ("leads", "level", "trails")}
    return table.round(3), {
        "kinds_leading": listing(kinds["leads"]), "kinds_level": listing(kinds["level"]),
        "kinds_trailing": listing([f"{kind} ({places.loc[kind, 'leader']} {places.loc[kind, 'leader F1']:.3f} "
                                   f"against {places.loc[kind, 'proposed']:.3f})" for kind in kinds["trails"]]),
        "level": LEVEL, "bayes_f1": bayes, "best_run_gap_to_bayes": bayes - headline(best),
        "twin_bayes_f1": truth["bayes_macro_f1"], "evidence_scope": "",
    }


NOT_ON_MMIMDB = "MM-IMDb has no planted evidence, so this part applies to the synthetic twin only."


# ------------------------------------------------------------------ sentences of the twin's analyses
# Claims about what the twin planted (evidence kinds, alignment genres, the generating rule, the probes,
# genre names in plots) have nothing to say on a release without ground truth: each is glued as a whole
# sentence (`prose.glue_sentences`) that is empty there, so the page never reads "n/a" or "nan" as a claim.


def genre_label_note(evidence: Mapping[str, str] | None) -> str:
    """The per-genre heat map's caption clause on the genre labels: the twin's evidence kinds, or nothing."""
    return "Genre labels carry the twin's evidence kind." if evidence is not None else ""


def evidence_sentences(values: Mapping[str, Any]) -> dict[str, str]:
    """`kinds_claim` (where the proposed model leads, is level or trails per evidence kind) and `bayes_claim`
    (the twin's generating rule against the best run), from `evidence_values`; empty on MM-IMDb."""
    if values["evidence_scope"]:
        return {"kinds_claim": "", "bayes_claim": ""}
    kinds = (f"These are point estimates over a few genres each, a description rather than a test: the proposed "
             f"model has the highest mean F1 on {values['kinds_leading']}, is within {values['level']:.2f} of the "
             f"best on {values['kinds_level']}, and trails by more on {values['kinds_trailing']}.")
    bayes = (f"The twin's generating rule, applied to the same test movies, reaches macro-F1 "
             f"{values['bayes_f1']:.3f} (it errs only where label noise changed a label); the best run is "
             f"{values['best_run_gap_to_bayes']:.3f} below it (the twin records {values['twin_bayes_f1']:.3f} for "
             "the rule on its own official test split).")
    return {"kinds_claim": kinds, "bayes_claim": bayes}


def alignment_sentence(values: Mapping[str, Any]) -> str:
    """The paired test on the twin's alignment genres (from `significance_values`); empty where there are
    none (MM-IMDb)."""
    if str(values["verdict_alignment"]).startswith("not measured"):
        return ""
    return (f"On the {values['alignment_set']}, the kind the twin built for token-to-patch attention, it is "
            f"{values['delta_alignment']:+.3f} ([{values['low_alignment']:+.3f}, {values['high_alignment']:+.3f}]): "
            f"**{values['verdict_alignment']}**. Where the differences come from is broken down by evidence kind above.")


def probe_sentence(values: Mapping[str, Any]) -> str:
    """What the linear probes show, from `analysis.probes.probe_values` (each part a verdict of a paired
    interval); on a release without the twin's truth, the probes' own scope sentence."""
    if values["probe_scope"]:
        return values["probe_scope"]
    return (
        f"Against the majority class, the genre controls (which the encoders were trained for) are "
        f"**{values['controls_verdict']}** (when they are not ahead, a failed probe below may be the probe's fault, "
        f"not the features'). Which prop the plot names is read from the tokens at the named word at "
        f"{values['mention_text']} (**{values['mention_verdict']}** against the majority class) and from the pooled "
        f"plot vector at {values['pooled_text']} (chance {values['chance']:.2f}); {values['truncated_mentions']} "
        f"plots lose the named word to truncation and are left out of the token probe. Looks that a pooled read-out "
        f"(what early, attention and late fusion read) carries beyond the count reference: {values['bound_pooled']}. "
        f"Looks that the grid cells under the named prop (what cross-attention could attend to) carry beyond it: "
        f"{values['bound_cells']}; not beyond it: {values['unbound_cells']}. A look listed under the grid cells is "
        "in cross-attention's input, so missing its genre would be a failure to learn where to attend; a look "
        "listed nowhere is lost by the frozen image encoder for every fusion.")


def mention_sentence(values: Mapping[str, Any]) -> str:
    """How many test pairs are named in their plot and how far one moves a recall (from
    `error_analysis.mention_values`); its scope sentence alone where there are none (MM-IMDb)."""
    if not values["named_pairs"]:
        return values["mention_scope"]
    return (f"{values['named_pairs']} test movie-genre pairs are named in their plot. A model that leaned on the "
            "word would recall named pairs clearly more often than the same genres unnamed; the table gives both "
            f"recalls per model. With so few named pairs, one pair moves a recall by {values['one_pair_step']:.2f}.")
