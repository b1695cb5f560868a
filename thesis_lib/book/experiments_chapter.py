"""What the experiments chapter (notebooks/04_experiments.ipynb) reads from a finished grid.

The chapter runs the grid through `thesis_lib.experiments.run_grid` (finished runs are skipped, so a
re-render costs seconds) and then only *reads*: the run records (RUNS/<split>/<run>/seed<k>/record.json), the
test predictions next to them, and, on the synthetic twin, its ground truth. Each function here turns
those into one table or one set of numbers for the page; `experiments_figures` draws them and
`error_analysis` looks at the decisions of single runs.

Conventions used throughout:
- the headline score is macro-F1 with per-genre thresholds tuned on the dev split (each run's own,
  stored in its record), next to the fixed 0.5 threshold;
- a model's predictions for analyses that need one set of decisions (error analysis, calibration) are
  those of its first seed, and the page says so;
- genres without a positive test movie have no F1 (NaN), never 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from thesis_lib.data.twin import oracle_predict
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.grid import GridReport, run_grid
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.profile import PROFILE_KEYS, Profile, profile_from_mapping
from thesis_lib.experiments.records import (
    iter_records,
    read_predictions,
    tuned_thresholds,
)
from thesis_lib.experiments.specs import definitions
from thesis_lib.experiments.table import PRIMARY_SPLIT, TUNED_POLICY, paired_difference
from thesis_lib.genres import GENRES
from thesis_lib.logs import configure_logging
from thesis_lib.train.results import Predictions

PROPOSED = "fusion_cross_attention"  # the thesis's model
HEADLINE = ("metrics_tuned", "macro_f1")  # (results_table key, metric) every ranking in the chapter uses
EVIDENCE_KINDS = ("image", "text", "both", "interaction", "alignment")  # the twin's kinds, in reading order
GRID_LOG = "book-grid.log"  # RUNS/<this>: what the grid printed while the chapter ran it
STAGE_NAMES = {"baseline": "baseline", "unimodal": "single modality", "late": "late fusion", "fusion": "fusion"}
METRIC_NAMES = {
    "macro_f1": "macro-F1", "micro_f1": "micro-F1", "weighted_f1": "weighted-F1", "samples_f1": "samples-F1",
    "subset_accuracy": "subset acc.", "hamming_accuracy": "Hamming acc.", "macro_precision": "macro-P",
    "macro_recall": "macro-R", "roc_auc_macro": "ROC-AUC macro", "roc_auc_micro": "ROC-AUC micro",
    "map_macro": "mAP",
}
POLICY_NAMES = {"metrics": "@0.5", "metrics_tuned": "tuned"}  # results_table key -> column suffix
# The visible comparison table: (results_table key, metric); every other metric is in the full table.
MAIN_COLUMNS = (("metrics", "macro_f1"), ("metrics_tuned", "macro_f1"), ("metrics_tuned", "micro_f1"),
                ("metrics", "map_macro"))


class GridFailedError(ThesisError, RuntimeError):
    """Some runs of the grid failed: the chapter would compare an incomplete grid."""


# ------------------------------------------------------------------------------------------ the grid


def profile_from_parameters(parameters: Mapping[str, Any]) -> Profile:
    """The experiment profile from a chapter's parameters (e.g. the notebook's `globals()`): every
    profile key is taken from `parameters` and checked as `thesis run` checks a profile file."""
    missing = [key for key in PROFILE_KEYS if key not in parameters]
    if missing:
        raise ThesisError(f"the chapter's parameters lack the profile key(s) {', '.join(missing)}")
    return profile_from_mapping({key: _listed(parameters[key]) for key in PROFILE_KEYS},
                                source="the chapter's parameters")


def _listed(value: Any) -> Any:
    """A list given as YAML text (papermill `-p ablations '["a x=1", "b y=2"]'`) -> the list; anything else
    unchanged (a plain string is split into a list by the profile where the key is a list)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        import yaml

        return yaml.safe_load(value)
    return value


def run_grid_logged(profile: Profile) -> GridReport:
    """`run_grid(profile)` with its progress, its training log lines and its summary written to
    RUNS/book-grid.log, so the page shows the summary, not thousands of lines. Raises GridFailedError naming
    the failed runs."""
    runs_root = profile.runs_path()
    runs_root.mkdir(parents=True, exist_ok=True)
    log_path = runs_root / GRID_LOG
    with log_path.open("w", encoding="utf-8") as log:
        # The library's lines go to whatever stderr is when they are emitted (see thesis_lib.logs), so
        # redirecting stderr sends them, with warnings and anything printed, into the log file.
        configure_logging()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            report = run_grid(profile)
        log.write(report.summary() + "\n")
    if not report.ok:
        failed = "; ".join(f"{label}: {error}" for label, error in report.failed)
        raise GridFailedError(f"{len(report.failed)} run(s) failed ({failed}); see {log_path} and error.txt "
                              "in each run folder")
    return report


def grid_facts(profile: Profile, report: GridReport) -> dict[str, Any]:
    """What the page says about the grid and this build's pass over it, ready for `glue_values`."""
    return {
        "profile_name": profile.profile, "seed_list": ", ".join(map(str, profile.seeds)),
        "n_defined": len(profile.models) + len(profile.ablations), "n_models_defined": len(profile.models),
        "n_ablations": len(profile.ablations), "n_ran": len(report.executed), "n_skipped": len(report.skipped),
        "grid_seconds": report.wall_time_s, "grid_log": GRID_LOG, "split_name": profile.primary_split,
        "epochs": profile.epochs, "batch_size": profile.batch_size, "n_trials": len(profile.lr_scales),
        "monitor": profile.monitor, "patience": str(profile.patience),
        "text_source": profile.fusion_text_source, "image_source": profile.fusion_image_source,
        "objects_source": profile.fusion_objects_source,
    }


# ----------------------------------------------------------------------------------- finished runs


@dataclass(frozen=True)
class FinishedRun:
    """One run name of the grid (a model, variant or baseline) with its records, one per seed."""

    name: str
    records: tuple[dict[str, Any], ...]  # sorted by seed
    folders: tuple[RunFolder, ...]

    @property
    def stage(self) -> str:
        return self.records[0].get("stage", "fusion")

    @property
    def seeds(self) -> list[int]:
        return [int(record["seed"]) for record in self.records]

    def test_predictions(self, index: int = 0) -> Predictions:
        return read_predictions(self.folders[index].predictions("test"))

    def thresholds(self, index: int = 0) -> np.ndarray:
        """(23,) the dev-tuned per-genre thresholds of seed `index`."""
        return tuned_thresholds(self.records[index], TUNED_POLICY)

    def decisions(self, index: int = 0) -> np.ndarray:
        """(N, 23) bool test decisions of seed `index` at its tuned thresholds."""
        return self.test_predictions(index).probs >= self.thresholds(index)


def finished_runs(runs_dir: str | Path, seeds: Sequence[int] | None = None,
                  split: str = PRIMARY_SPLIT) -> dict[str, FinishedRun]:
    """Every run name with finished runs of `split` in `runs_dir`, by name; only the runs of `seeds`
    when given."""
    grouped: dict[str, list[tuple[RunFolder, dict[str, Any]]]] = {}
    for folder, record in iter_records(RunsFolder(Path(runs_dir)), split, seeds):
        grouped.setdefault(record["name"], []).append((folder, record))
    runs = {}
    for name, entries in grouped.items():
        entries.sort(key=lambda entry: entry[1]["seed"])
        runs[name] = FinishedRun(name, tuple(r for _, r in entries), tuple(f for f, _ in entries))
    return runs


def profile_runs(runs: Mapping[str, FinishedRun], profile: Profile) -> dict[str, FinishedRun]:
    """Only the runs the profile defines (a runs folder may also hold runs of models dropped since)."""
    names = definitions(profile)
    return {name: run for name, run in runs.items() if name in names}


def require_runs(runs: Mapping[str, FinishedRun], names: Sequence[str]) -> None:
    """The chapter needs these runs; name the ones missing rather than fail later with a KeyError."""
    missing = [name for name in names if name not in runs]
    if missing:
        raise ThesisError(f"the chapter needs the run(s) {', '.join(missing)}, which the grid did not produce; "
                          f"add them to the profile's models (found: {', '.join(sorted(runs))})")


def weights_caption(runs: Mapping[str, FinishedRun]) -> str:
    """The caption sentence naming the weights behind the chapter's figures, e.g. "Weights: each model's
    own run of this build (best dev checkpoint, seed 0); encoders start from minilm (pretrained) or
    random init (resnet18, ...); detections from yolo (trained on the twin), oracle (true boxes)."."""
    pretrained, random, detectors = [], [], []
    for run in runs.values():
        for modality, origin in run.records[0].get("backbones", {}).items():
            if modality == "objects" and origin.get("weights") == "detector":
                source = origin.get("name", "?")
                trained = origin.get("detector", {}).get("detector", {}).get("weights")
                detectors.append("oracle (the twin's true boxes)" if source == "oracle" else
                                 f"{source} ({'trained on the twin' if trained == 'twin' else 'COCO-pretrained'})")
            elif origin.get("weights") == "pretrained":
                pretrained.append(origin["name"])
            elif origin.get("weights") == "random":
                random.append(origin["name"])
    seeds = sorted({seed for run in runs.values() for seed in run.seeds})
    text = (f"Weights: each model's own run of this build (best dev checkpoint, seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))})")
    origins = [f"{', '.join(dict.fromkeys(pretrained))} (pretrained)"] if pretrained else []
    origins += [f"random init ({', '.join(dict.fromkeys(random))})"] if random else []
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
    """"macro-F1 @0.5", "macro-F1 tuned"."""
    return f"{METRIC_NAMES[metric]} {POLICY_NAMES[key]}"


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


def full_metrics_table(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, FinishedRun]) -> pd.DataFrame:
    """Every metric of the results table at both thresholds (for the collapsed full table)."""
    columns = [(key, metric) for key in POLICY_NAMES for metric in METRIC_NAMES]
    return comparison_table(rows, runs, columns, details=True)


def headline(row: Mapping[str, Any]) -> float | None:
    """A results_table row's headline score (macro-F1, tuned thresholds; mean over seeds)."""
    key, metric = HEADLINE
    return row[key][metric]["mean"]


def ranked(rows: Sequence[Mapping[str, Any]], *, exclude: Sequence[str] = (), variants: bool = False,
           stages: Sequence[str] | None = None,
           runs: Mapping[str, FinishedRun] | None = None) -> list[Mapping[str, Any]]:
    """Rows by headline score, best first; without ablation variants (names with "@") unless `variants`,
    without the names in `exclude`, and only the given `stages` (needs `runs`)."""
    kept = [row for row in rows if row["model"] not in exclude and (variants or "@" not in row["model"])
            and headline(row) is not None]
    if stages is not None:
        kept = [row for row in kept if runs[row["model"]].stage in stages]
    return sorted(kept, key=lambda row: -headline(row))


def row_of(rows: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for row in rows:
        if row["model"] == name:
            return row
    raise KeyError(f"no results row for {name!r}")


def standing(rows: Sequence[Mapping[str, Any]], proposed: str = PROPOSED) -> dict[str, Any]:
    """Where the proposed model stands among the models (variants left out), by headline score: its
    rank and score, the best other model, and the gap between them (negative: the proposed model trails)."""
    order = ranked(rows)
    others = [row for row in order if row["model"] != proposed]
    score = headline(row_of(rows, proposed))
    return {"rank": [row["model"] for row in order].index(proposed) + 1, "n_models": len(order),
            "score": score, "best_other": others[0]["model"], "best_other_score": headline(others[0]),
            "gap": score - headline(others[0])}


def best_run_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    """Whether an ablation variant beats every model (the comparison above leaves variants out)."""
    best_model, best_run = ranked(rows)[0], ranked(rows, variants=True)[0]
    if best_run["model"] == best_model["model"]:
        return "No ablation variant scores higher."
    return (f"Counting the ablation variants, the best run is {best_run['model']} ({headline(best_run):.3f}), "
            f"a variant of {best_run['model'].partition('@')[0]}; see the ablations below.")


def curve_models(rows: Sequence[Mapping[str, Any]], count: int = 4) -> list[str]:
    """The runs whose precision-recall curves are drawn: the `count` best models, the best run overall
    when it is an ablation variant, and the shallow baseline (the reference a curve should clear)."""
    names = [row["model"] for row in ranked(rows)[:count]]
    best_run = ranked(rows, variants=True)[0]["model"]
    names += [best_run] if best_run not in names else []
    present = {row["model"] for row in rows}
    return names + [name for name in ("baseline_shallow",) if name in present and name not in names]


def variant_sentence(runs_dir: str | Path, rows: Sequence[Mapping[str, Any]], rival: str, n_resamples: int,
                     proposed: str = PROPOSED, seeds: Sequence[int] | None = None) -> str:
    """When a variant of the proposed model beats it: the best such variant against `rival` (paired)."""
    variants = [row for row in ranked(rows, variants=True) if row["model"].startswith(f"{proposed}@")]
    if not variants or headline(variants[0]) <= headline(row_of(rows, proposed)):
        return " "
    best = variants[0]["model"]
    result = paired_difference(runs_dir, best, rival, n_resamples=n_resamples, seeds=seeds)
    result = {"compared with": rival} | result
    return f"Its best variant, {best}, reaches {headline(variants[0]):.3f}. " + difference_sentence(
        best, result, f"Against {rival}")


def standing_sentence(position: Mapping[str, Any], proposed: str = PROPOSED) -> str:
    """"fusion_cross_attention ranks 2nd of 13 models, 0.003 below fusion_early." (or above the next)."""
    rank = position["rank"]
    ordinal = {1: "1st", 2: "2nd", 3: "3rd"}.get(rank, f"{rank}th")
    relation = (f"{position['gap']:.3f} above the next best, {position['best_other']}" if position["gap"] >= 0
                else f"{-position['gap']:.3f} below the best, {position['best_other']}")
    return f"{proposed} ranks {ordinal} of {position['n_models']} models, {relation}."


# ---------------------------------------------------------------------------------- per genre


def evidence_of_genres(truth: Mapping[str, Any] | None) -> dict[str, str] | None:
    """genre -> the twin's evidence kind (image | text | both | interaction | alignment); None on MM-IMDb."""
    return None if truth is None else dict(truth["genre_evidence"])


def genre_label(genre: str, evidence: Mapping[str, str] | None) -> str:
    """"Horror (image)" on the twin, "Horror" on MM-IMDb."""
    return genre if evidence is None else f"{genre} ({evidence[genre]})"


def per_genre_f1(runs: Mapping[str, FinishedRun], names: Sequence[str], policy: str = TUNED_POLICY) -> pd.DataFrame:
    """(models x 23 genres) test F1, mean over seeds; NaN for genres without a positive test movie."""
    table = {}
    for name in names:
        per_seed = []
        for record in runs[name].records:
            genres = record["metrics"][policy]["per_genre"]
            per_seed.append([genres[g]["f1"] if genres[g]["support"] > 0 else np.nan for g in GENRES])
        table[name] = np.mean(per_seed, axis=0)  # (23,)
    return pd.DataFrame.from_dict(table, orient="index", columns=list(GENRES))


def evidence_kind_f1(f1: pd.DataFrame, evidence: Mapping[str, str]) -> pd.DataFrame:
    """(models x evidence kinds) mean F1 over the genres of each kind that have test positives."""
    kinds = [kind for kind in EVIDENCE_KINDS if any(evidence[g] == kind for g in f1.columns)]
    return pd.DataFrame({kind: f1[[g for g in f1.columns if evidence[g] == kind]].mean(axis=1) for kind in kinds})


LEVEL = 0.02  # mean F1 within this of the best counts as level with it (well inside the test split's noise)


def evidence_kind_sentence(kind_f1: pd.DataFrame, proposed: str = PROPOSED) -> str:
    """Per evidence kind: whether the proposed model has the highest mean F1, is level with the best
    (within LEVEL), or trails it (naming the leader, with both numbers)."""
    leads, level, trails = [], [], []
    for kind in kind_f1.columns:
        column = kind_f1[kind].dropna()
        if proposed not in column.index:
            continue
        leader = column.idxmax()
        if leader == proposed:
            leads.append(kind)
        elif column[leader] - column[proposed] <= LEVEL:
            level.append(kind)
        else:
            trails.append(f"{kind} ({leader} {column[leader]:.3f} against {column[proposed]:.3f})")
    parts = [f"{proposed} has the highest mean F1 on {', '.join(leads)}" if leads else f"{proposed} leads on no kind"]
    if level:
        parts.append(f"is within {LEVEL} of the best on {', '.join(level)}")
    if trails:
        parts.append(f"trails on {', '.join(trails)}")
    return "; ".join(parts) + "."


def trailing_kinds(kind_f1: pd.DataFrame, proposed: str = PROPOSED) -> list[str]:
    """The evidence kinds on which some model's mean F1 is more than LEVEL above the proposed model's."""
    kinds = []
    for kind in kind_f1.columns:
        column = kind_f1[kind].dropna()
        if proposed in column.index and column.max() - column[proposed] > LEVEL:
            kinds.append(kind)
    return kinds


# Why the proposed model can trail on a kind, in terms of how the twin plants it (DESIGN.md, "The synthetic
# twin"); the chapter prints the reasons for the kinds it actually trails on.
KIND_REASONS = {
    "interaction": "interaction genres are an AND of a poster object and a plot cue word, two global facts "
                   "that pooled features already carry: a model that puts them side by side (early fusion, or the "
                   "shallow baseline's words and colours) needs no attention to learn them",
    "alignment": "alignment genres need the plot's named prop matched with that very prop on the poster; the "
                 "fusion reads the frozen feature grid of the image run, whose few coarse cells each cover "
                 "several props, so the match is only as good as that grid (4.2 shows where the prop's word "
                 "attends)",
    "image": "image genres are carried by the poster alone, and every fusion reads the same image run's "
             "features, so no fusion has an advantage built in",
    "text": "text genres are carried by cue words alone, and every fusion reads the same text run's features, "
            "so no fusion has an advantage built in",
    "both": "genres with evidence on both sides can be found from either modality alone, so every fusion has "
            "an easy route to them",
}


def trailing_explanation(kinds: Sequence[str]) -> str:
    """Why the proposed model can trail on the given kinds (from how the twin plants them)."""
    if not kinds:
        return ""
    reasons = [KIND_REASONS[kind] for kind in kinds if kind in KIND_REASONS]
    return "What the twin's design says about these kinds: " + " ".join(f"{r[0].upper()}{r[1:]}." for r in reasons)


def bayes_reference(truth: Mapping[str, Any], run: FinishedRun) -> float:
    """Macro-F1 of the twin's noise-free generating rule on the runs' own test movies and labels (the
    best any model can reach there, up to label noise); genres without test positives are left out,
    as in the records."""
    from sklearn.metrics import f1_score


    test = run.test_predictions()
    oracle = oracle_predict(truth, [str(i) for i in test.ids])  # (N, 23)
    present = test.labels.sum(axis=0) > 0  # (23,)
    return float(f1_score(test.labels[:, present], oracle[:, present], average="macro", zero_division=0))


# --------------------------------------------------------------------------- curves and histories


def pr_curve(run: FinishedRun) -> tuple[np.ndarray, np.ndarray, float]:
    """Micro-averaged precision-recall curve of the first seed's test predictions: (recall, precision, AP)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    test = run.test_predictions()
    precision, recall, _ = precision_recall_curve(test.labels.ravel(), test.probs.ravel())
    return recall, precision, float(average_precision_score(test.labels.ravel(), test.probs.ravel()))


def training_history(runs: Mapping[str, FinishedRun], names: Sequence[str]) -> pd.DataFrame:
    """Long table (model, epoch, train_loss, val_loss, val_macro_f1) of the first seed's history;
    runs without training (baselines, late fusion of predictions) are left out."""
    rows = []
    for name in names:
        training = runs[name].records[0].get("training")
        for epoch in (training or {}).get("history", []):
            rows.append({"model": name, "epoch": epoch["epoch"] + 1, "train_loss": epoch["train_loss"],
                         "val_loss": epoch["val_loss"], "val_macro_f1": epoch["val_metrics"].get("macro_f1")})
    return pd.DataFrame(rows, columns=["model", "epoch", "train_loss", "val_loss", "val_macro_f1"])


# ---------------------------------------------------------------------------------- significance


def alignment_genres(evidence: Mapping[str, str] | None) -> list[str]:
    """The twin's alignment genres (the plot names one of several posters objects and the genre depends on
    how that object looks), in canonical order; none on MM-IMDb."""
    return [] if evidence is None else [genre for genre in GENRES if evidence[genre] == "alignment"]


def competitors(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, FinishedRun],
                proposed: str = PROPOSED) -> dict[str, str]:
    """{"best other model": name, "best single-modality model": name} by headline score (variants left out)."""
    found = {"best other model": ranked(rows, exclude=[proposed])[0]["model"]}
    singles = ranked(rows, stages=["unimodal"], runs=runs)
    if singles:
        found["best single-modality model"] = singles[0]["model"]
    return found


def genre_sets(evidence: Mapping[str, str] | None) -> dict[str, list[str] | None]:
    """The genre sets the paired tests use: all genres, and (twin) the alignment genres."""
    sets: dict[str, list[str] | None] = {"all genres": None}
    if alignment_genres(evidence):
        sets[f"alignment genres ({', '.join(alignment_genres(evidence))})"] = alignment_genres(evidence)
    return sets


def significance_table(runs_dir: str | Path, proposed: str, others: Sequence[str],
                       sets: Mapping[str, Sequence[str] | None], n_resamples: int,
                       seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Paired bootstrap of `proposed` minus each other model (macro-F1, tuned thresholds, the same
    resampled test movies for both), once per genre set ({"all genres": None, "alignment ...": [...]})."""
    rows = []
    for other in dict.fromkeys(others):
        for label, genres in sets.items():
            result = paired_difference(runs_dir, proposed, other, genres=genres, n_resamples=n_resamples,
                                       seeds=seeds)
            rows.append({"compared with": other, "genres": label, "delta": result["delta"],
                         "ci_low": result["ci_low"], "ci_high": result["ci_high"], "p_value": result["p_value"]})
    return pd.DataFrame(rows)


def readable_significance(table: pd.DataFrame) -> pd.DataFrame:
    """`significance_table` for the page: "Δ macro-F1 [95% CI]" and p as text."""
    shown = table[["compared with", "genres"]].copy()
    shown["Δ macro-F1 [95% CI]"] = _differences(table)
    shown["p"] = [f"{p:.3f}" for p in table["p_value"]]
    return shown.set_index(["compared with", "genres"])


def _differences(table: pd.DataFrame) -> list[str]:
    """"+0.012 [-0.004, +0.030]" per row of a table with delta, ci_low and ci_high."""
    return [f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"
            for delta, low, high in zip(table["delta"], table["ci_low"], table["ci_high"], strict=True)]


def difference_sentence(proposed: str, result: Mapping[str, Any], what: str) -> str:
    """One honest sentence about a paired difference: which model is ahead, by how much, and whether the
    95% interval excludes zero (`what` names the comparison, e.g. "on all genres")."""
    other = result["compared with"]
    delta, low, high = result["delta"], result["ci_low"], result["ci_high"]
    if low > 0:
        verdict = f"{proposed} is ahead, and the interval excludes zero"
    elif high < 0:
        verdict = f"{proposed} is behind, and the interval excludes zero: {other} is better here"
    else:
        leader = proposed if delta > 0 else other
        verdict = (f"{leader} is ahead on this test split, but the interval includes zero: "
                   "the two cannot be told apart with these test movies")
    return (f"{what}, {proposed} minus {other} is {delta:+.3f} macro-F1 (95% CI [{low:+.3f}, {high:+.3f}], "
            f"p = {result['p_value']:.3f}): {verdict}.")


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
        settings = [f"{key}={value}" for key, value in definition.overrides] + [
            f"{key}={value}" for key, value in definition.run_keys.items()]
        found.append(Ablation(name, definition.model, " ".join(settings)))
    return found


def ablation_table(runs_dir: str | Path, ablations: Sequence[Ablation], rows: Sequence[Mapping[str, Any]],
                   n_resamples: int, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Each variant against the run it changes: both headline scores and the paired difference."""
    table = []
    for ablation in ablations:
        result = paired_difference(runs_dir, ablation.name, ablation.base, n_resamples=n_resamples, seeds=seeds)
        table.append({"variant": ablation.name, "change": ablation.description, "base": ablation.base,
                      "base macro-F1": headline(row_of(rows, ablation.base)),
                      "variant macro-F1": headline(row_of(rows, ablation.name)),
                      "delta": result["delta"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
                      "p_value": result["p_value"]})
    return pd.DataFrame(table)


def readable_ablations(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[["variant", "change"]].copy()
    shown["base → variant"] = [f"{base:.3f} → {variant:.3f}"
                               for base, variant in zip(table["base macro-F1"], table["variant macro-F1"], strict=True)]
    shown["Δ [95% CI]"] = _differences(table)
    shown["p"] = [f"{p:.3f}" for p in table["p_value"]]
    return shown.set_index("variant")


def ablation_sentence(table: pd.DataFrame) -> str:
    """Which changes clearly hurt, which clearly helped (the 95% interval of the difference excludes
    zero), and how many made no difference the test split can resolve."""
    hurt = table[table["ci_high"] < 0]["variant"].tolist()
    helped = table[table["ci_low"] > 0]["variant"].tolist()
    unclear = len(table) - len(hurt) - len(helped)
    parts = []
    if hurt:
        parts.append(f"Clearly lower than the run they change (the interval lies below zero): {', '.join(hurt)}.")
    if helped:
        parts.append(f"Clearly higher (the interval lies above zero): {', '.join(helped)}.")
    parts.append(f"{unclear} of {len(table)} variants differ from their base by less than this test split can "
                 "resolve (the interval includes zero).")
    return " ".join(parts)


# ----------------------------------------------------------------------------- sentences for the page


@dataclass(frozen=True)
class SectionSummary:
    """A table for the page (None: nothing to show on this data) and the sentences glued around it."""

    table: pd.DataFrame | None
    sentences: dict[str, str]
    sentence: str = ""  # the main sentence, where a section has one


NOT_ON_MMIMDB = "MM-IMDb has no planted evidence, so this part applies to the synthetic twin only."


def evidence_summary(runs: Mapping[str, FinishedRun], rows: Sequence[Mapping[str, Any]],
                     truth: Mapping[str, Any] | None, f1: pd.DataFrame) -> SectionSummary:
    """Mean F1 per evidence kind (twin) with the sentences about it and about the Bayes reference."""
    if truth is None:
        return SectionSummary(None, {"kind_intro": NOT_ON_MMIMDB, "kind_sentence": " ", "kind_explanation": " ",
                                     "bayes_sentence": " "})
    evidence = evidence_of_genres(truth)
    table = evidence_kind_f1(f1, evidence)
    best = ranked(rows, variants=True)[0]
    bayes = bayes_reference(truth, runs[best["model"]])
    intro = ("On the synthetic twin every genre's signal was planted in a known place. The table averages "
             "each model's test F1 (tuned thresholds) over the genres of each evidence kind: image (poster "
             "only), text (plot only), both (either suffices), interaction (a poster object and a plot cue "
             "together) and alignment (the plot names one of several props, and the genre depends on how "
             "that prop looks).")
    bayes_text = (f"The twin's generating rule, applied to the same test movies, reaches macro-F1 {bayes:.3f} "
                  f"(it errs only where label noise changed a label); the best run, {best['model']}, is "
                  f"{bayes - headline(best):.3f} below it. (The twin records {truth['bayes_macro_f1']:.3f} for "
                  "the rule on its own official test split.)")
    return SectionSummary(table.round(3), {"kind_intro": intro, "kind_sentence": evidence_kind_sentence(table),
                                           "kind_explanation": trailing_explanation(trailing_kinds(table)),
                                           "bayes_sentence": bayes_text})


def significance_sentences(tests: pd.DataFrame, others: Mapping[str, str],
                           sets: Mapping[str, Sequence[str] | None], proposed: str = PROPOSED) -> dict[str, str]:
    """{"sentence_all", "sentence_alignment"}: the proposed model against the best other model."""
    rival = others["best other model"]
    mine = tests[tests["compared with"] == rival]
    sentences = {"sentence_all": difference_sentence(proposed, mine.iloc[0], "On all genres, against the best "
                                                                                 "other model")}
    alignment = [label for label in sets if label != "all genres"]
    if alignment:
        result = mine[mine["genres"] == alignment[0]].iloc[0]
        sentences["sentence_alignment"] = difference_sentence(proposed, result, f"On the {alignment[0]}")
    else:
        sentences["sentence_alignment"] = "MM-IMDb has no alignment genres, so only all genres are tested."
    return sentences


