"""The comparison of finished runs: ranking, per-genre and per-evidence-kind scores, paired tests and
ablations, with the verdict each allows (`analysis.verdicts`).

It reads only run records and the test predictions next to them (`experiments.records`), so the book's
experiments chapter and `thesis results` draw the very same conclusions. Conventions:
- the headline score is macro-F1 with per-genre thresholds tuned on the dev split (each run's own, stored
  in its record), mean over seeds;
- analyses that need one set of decisions (error analysis, calibration, curves) use the first seed;
- genres without a positive test movie have no F1 (NaN), never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

from thesis_lib.analysis.verdicts import Verdict, verdict_of
from thesis_lib.data.twin import oracle_predict
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.records import iter_records, read_predictions, tuned_thresholds
from thesis_lib.experiments.table import PRIMARY_SPLIT, TUNED_POLICY, paired_difference
from thesis_lib.genres import GENRES
from thesis_lib.metrics.bootstrap import PairedResult, paired_bootstrap
from thesis_lib.train.results import Predictions

PROPOSED = "fusion_cross_attention"  # the thesis's model
HEADLINE = ("metrics_tuned", "macro_f1")  # (results_table key, metric) every ranking uses
EVIDENCE_KINDS = ("image", "text", "both", "interaction", "alignment")  # the twin's kinds, in reading order
LEVEL = 0.02  # mean F1 within this of the best counts as level with it (well inside the test split's noise)


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

    def dev_predictions(self, index: int = 0) -> Predictions:
        """Seed `index`'s dev predictions (its best epoch's; what thresholds and source choices read)."""
        return read_predictions(self.folders[index].predictions("dev"))

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


def require_runs(runs: Mapping[str, FinishedRun], names: Sequence[str]) -> None:
    """The comparison needs these runs; name the ones missing rather than fail later with a KeyError."""
    missing = [name for name in names if name not in runs]
    if missing:
        raise ThesisError(f"the comparison needs the run(s) {', '.join(missing)}, which the grid did not produce; "
                          f"add them to the profile's models (found: {', '.join(sorted(runs))})")


# ------------------------------------------------------------------------------------------ ranking


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


@dataclass(frozen=True)
class Standing:
    """Where the proposed model stands by headline score (ablation variants left out of the ranking)."""

    rank: int  # 1 = best
    n_models: int
    score: float
    best_other: str  # the best model other than the proposed one
    best_other_score: float
    best_run: str  # the best run counting the ablation variants (may be a variant)
    best_run_score: float

    @property
    def gap(self) -> float:
        """The proposed model's score minus the best other model's (negative: it trails)."""
        return self.score - self.best_other_score

    @property
    def leads(self) -> bool:
        return self.rank == 1


def standing(rows: Sequence[Mapping[str, Any]], proposed: str = PROPOSED) -> Standing:
    order = ranked(rows)
    others = [row for row in order if row["model"] != proposed]
    best_run = ranked(rows, variants=True)[0]
    return Standing(rank=[row["model"] for row in order].index(proposed) + 1, n_models=len(order),
                    score=headline(row_of(rows, proposed)), best_other=others[0]["model"],
                    best_other_score=headline(others[0]), best_run=best_run["model"],
                    best_run_score=headline(best_run))


def competitors(rows: Sequence[Mapping[str, Any]], runs: Mapping[str, FinishedRun],
                proposed: str = PROPOSED) -> dict[str, str]:
    """{"best other model": name, "best single-modality model": name} by headline score (variants left out)."""
    found = {"best other model": ranked(rows, exclude=[proposed])[0]["model"]}
    singles = ranked(rows, stages=["unimodal"], runs=runs)
    if singles:
        found["best single-modality model"] = singles[0]["model"]
    return found


def best_variant(rows: Sequence[Mapping[str, Any]], proposed: str = PROPOSED) -> str | None:
    """The best-scoring ablation variant of the proposed model, if the grid has one."""
    variants = [row for row in ranked(rows, variants=True) if row["model"].startswith(f"{proposed}@")]
    return variants[0]["model"] if variants else None


# ---------------------------------------------------------------------------------- per genre


def evidence_of_genres(truth: Mapping[str, Any] | None) -> dict[str, str] | None:
    """genre -> the twin's evidence kind (image | text | both | interaction | alignment); None on MM-IMDb."""
    return None if truth is None else dict(truth["genre_evidence"])


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


def per_genre_ranking(runs: Mapping[str, FinishedRun], names: Sequence[str], genres: Sequence[str]) -> pd.DataFrame:
    """(run, genre) rows with the first seed's test ROC-AUC and AP of `genres`: threshold-free, so they say how
    well a run ranks a genre's movies whatever threshold it would be decided at."""
    rows = []
    for name in names:
        test = runs[name].test_predictions()
        for genre in genres:
            labels, probs = test.labels[:, GENRES.index(genre)], test.probs[:, GENRES.index(genre)]
            defined = 0 < labels.sum() < len(labels)
            rows.append({"run": name, "genre": genre,
                         "ROC-AUC": roc_auc_score(labels, probs) if defined else np.nan,
                         "AP": average_precision_score(labels, probs) if defined else np.nan})
    return pd.DataFrame(rows, columns=["run", "genre", "ROC-AUC", "AP"])


RANKING_METRICS = {"ROC-AUC": "roc_auc_macro", "AP": "map_macro"}  # per_genre_ranking's columns, one genre's macro


def genre_ranking_difference(run_a: FinishedRun, run_b: FinishedRun, genre: str, metric: str,
                             n_resamples: int = 1000) -> PairedResult:
    """Run a minus run b on one genre's threshold-free `metric` ("ROC-AUC" or "AP"), first seed's test movies,
    paired bootstrap (both runs scored on the same resampled movies)."""
    a, b = run_a.test_predictions(), run_b.test_predictions()
    if not np.array_equal(a.ids, b.ids):
        raise ThesisError(f"{run_a.name} and {run_b.name} did not predict the same test movies")
    return paired_bootstrap(a.labels, a.probs, b.probs, 0.5, 0.5, metric=RANKING_METRICS[metric],
                            n_resamples=n_resamples, genres=[GENRES.index(genre)])


def evidence_kind_f1(f1: pd.DataFrame, evidence: Mapping[str, str]) -> pd.DataFrame:
    """(models x evidence kinds) mean F1 over the genres of each kind that have test positives."""
    kinds = [kind for kind in EVIDENCE_KINDS if any(evidence[g] == kind for g in f1.columns)]
    return pd.DataFrame({kind: f1[[g for g in f1.columns if evidence[g] == kind]].mean(axis=1) for kind in kinds})


def kind_standing(kind_f1: pd.DataFrame, proposed: str = PROPOSED) -> pd.DataFrame:
    """Per evidence kind: the proposed model's mean F1, the leader and its mean F1, and where the proposed
    model stands: "leads" (highest), "level" (within LEVEL of the leader) or "trails" (further below).
    These are point estimates over a handful of genres: a description, not a test."""
    rows = {}
    for kind in kind_f1.columns:
        column = kind_f1[kind].dropna()
        if proposed not in column.index:
            continue
        leader = column.idxmax()
        gap = column[leader] - column[proposed]
        place = "leads" if leader == proposed else "level" if gap <= LEVEL else "trails"
        rows[kind] = {"proposed": column[proposed], "leader": leader, "leader F1": column[leader], "standing": place}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("evidence kind")


def bayes_reference(truth: Mapping[str, Any], run: FinishedRun) -> float:
    """Macro-F1 of the twin's noise-free generating rule on the run's own test movies and labels (the best
    any model can reach there, up to label noise); genres without test positives are left out, as in the
    records."""
    test = run.test_predictions()
    oracle = oracle_predict(truth, [str(i) for i in test.ids])  # (N, 23)
    present = test.labels.sum(axis=0) > 0  # (23,)
    return float(f1_score(test.labels[:, present], oracle[:, present], average="macro", zero_division=0))


# ---------------------------------------------------------------------------------- paired tests


def alignment_genres(evidence: Mapping[str, str] | None) -> list[str]:
    """The twin's alignment genres (the plot names one of several poster objects and the genre depends on
    how that object looks), in canonical order; none on MM-IMDb."""
    return [] if evidence is None else [genre for genre in GENRES if evidence[genre] == "alignment"]


def genre_sets(evidence: Mapping[str, str] | None) -> dict[str, list[str] | None]:
    """The genre sets the paired tests use: all genres, and (twin) the alignment genres."""
    sets: dict[str, list[str] | None] = {"all genres": None}
    if alignment_genres(evidence):
        sets[f"alignment genres ({', '.join(alignment_genres(evidence))})"] = alignment_genres(evidence)
    return sets


def compare(runs_dir: str | Path, model_a: str, model_b: str, *, genres: Sequence[str] | None = None,
            n_resamples: int = 1000, seeds: Sequence[int] | None = None, split: str = PRIMARY_SPLIT) -> dict[str, Any]:
    """Model a minus model b on macro-F1 (tuned thresholds), paired bootstrap over test movies
    (`experiments.table.paired_difference`), with the verdict its interval allows."""
    result = paired_difference(runs_dir, model_a, model_b, genres=genres, n_resamples=n_resamples, seeds=seeds,
                               split=split)
    return {"model": model_a, "compared with": model_b, **result,
            "verdict": verdict_of(result["ci_low"], result["ci_high"])}


def significance_table(runs_dir: str | Path, proposed: str, others: Sequence[str],
                       sets: Mapping[str, Sequence[str] | None], n_resamples: int,
                       seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """`proposed` minus each other model, once per genre set ({"all genres": None, "alignment ...": [...]}):
    delta, 95% interval, p-value and verdict."""
    rows = []
    for other in dict.fromkeys(others):
        for label, genres in sets.items():
            result = compare(runs_dir, proposed, other, genres=genres, n_resamples=n_resamples, seeds=seeds)
            rows.append({"compared with": other, "genres": label, "delta": result["delta"],
                         "ci_low": result["ci_low"], "ci_high": result["ci_high"], "p_value": result["p_value"],
                         "verdict": result["verdict"]})
    return pd.DataFrame(rows)


def ablation_table(runs_dir: str | Path, variants: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]],
                   n_resamples: int, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Each (variant, base) pair: both headline scores, the paired difference variant minus base and its
    verdict ("ahead": the change helped beyond the test split's noise; "behind": it hurt)."""
    table = []
    for variant, base in variants:
        result = compare(runs_dir, variant, base, n_resamples=n_resamples, seeds=seeds)
        table.append({"variant": variant, "base": base, "base macro-F1": headline(row_of(rows, base)),
                      "variant macro-F1": headline(row_of(rows, variant)), "delta": result["delta"],
                      "ci_low": result["ci_low"], "ci_high": result["ci_high"], "p_value": result["p_value"],
                      "verdict": result["verdict"]})
    return pd.DataFrame(table, columns=["variant", "base", "base macro-F1", "variant macro-F1", "delta", "ci_low",
                                        "ci_high", "p_value", "verdict"])


def by_verdict(table: pd.DataFrame, column: str = "variant") -> dict[Verdict, list[str]]:
    """The names in `column` grouped by their verdict (every verdict present, possibly empty)."""
    return {verdict: table.loc[table["verdict"] == verdict, column].tolist() for verdict in Verdict}


# --------------------------------------------------------------------------- curves and histories


def pr_curve(run: FinishedRun) -> tuple[np.ndarray, np.ndarray, float]:
    """Micro-averaged precision-recall curve of the first seed's test predictions: (recall, precision, AP)."""
    test = run.test_predictions()
    precision, recall, _ = precision_recall_curve(test.labels.ravel(), test.probs.ravel())
    return recall, precision, float(average_precision_score(test.labels.ravel(), test.probs.ravel()))


def training_history(runs: Mapping[str, FinishedRun], names: Sequence[str]) -> pd.DataFrame:
    """Long table (model, epoch, train_loss, val_loss, monitor, val_score, best) of the first seed's history:
    `val_score` is the dev score the run monitored (`monitor`, e.g. map_macro) and `best` marks the epoch it
    kept; runs without training (baselines, late fusion of predictions) are left out."""
    rows = []
    for name in names:
        training = runs[name].records[0].get("training") or {}
        monitor = training.get("monitor", "macro_f1")
        for epoch in training.get("history", []):
            score = epoch["val_loss"] if monitor == "loss" else epoch["val_metrics"].get(monitor)
            rows.append({"model": name, "epoch": epoch["epoch"] + 1, "train_loss": epoch["train_loss"],
                         "val_loss": epoch["val_loss"], "monitor": monitor, "val_score": score,
                         "best": epoch["epoch"] == training.get("best_epoch")})
    return pd.DataFrame(rows, columns=["model", "epoch", "train_loss", "val_loss", "monitor", "val_score", "best"])


@dataclass(frozen=True)
class Convergence:
    """Where a trained run's dev score stopped rising (first seed)."""

    best_epoch: int  # 1-based: the epoch the run kept
    epochs_run: int
    stopped_early: bool

    @property
    def plateaued(self) -> bool:
        """The kept epoch is not the last one run: later epochs did not improve by more than min_delta."""
        return self.best_epoch < self.epochs_run


def convergence(run: FinishedRun) -> Convergence | None:
    """The first seed's convergence; None for a run that trains no network."""
    training = run.records[0].get("training")
    if not training or training.get("best_epoch") is None:
        return None
    return Convergence(int(training["best_epoch"]) + 1, int(training["epochs_run"]),
                       bool(training.get("stopped_early")))
