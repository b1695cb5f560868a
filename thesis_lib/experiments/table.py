"""The comparison table: one row per run name (model, variant or baseline), over its seeds.

`results_table(runs_dir, split="thesis")` returns, for each run name with finished runs of that split
(`RUNS/<split>/<run>/seed<k>/record.json`; every split makes its own table):

    {"model": name, "seeds": [0, 1, 2],
     "metrics":       {metric: {"mean", "std", "ci_low", "ci_high"}}   at threshold 0.5,
     "metrics_tuned": {metric: {...}}                                  per-genre thresholds tuned on dev,
     "per_genre_f1":  {genre: mean F1 at 0.5}}

for the metrics in TABLE_METRICS. `mean` and `std` are over seeds (std with ddof=1; null for one seed),
each seed's value read from its record. The 95% interval is a percentile bootstrap over test movies of the
seed-averaged metric: each resample draws the same movies for every seed (the seeds share the split), the
metric is computed per seed on it and averaged, so the interval reflects which movies happen to be in the
test split, around the number the table reports. The tuned thresholds are those in each record (chosen on
dev by the run itself).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.records import (
    RecordError,
    iter_records,
    read_predictions,
    tuned_thresholds,
)
from thesis_lib.genres import GENRES
from thesis_lib.metrics import bootstrap_distribution, evaluate

if TYPE_CHECKING:
    import pandas as pd

TABLE_METRICS: tuple[str, ...] = (
    "macro_f1", "micro_f1", "weighted_f1", "samples_f1", "subset_accuracy", "hamming_accuracy",
    "macro_precision", "macro_recall", "roc_auc_macro", "roc_auc_micro", "map_macro",
)
TUNED_POLICY = "tuned_per_genre"  # what `metrics_tuned` reports (the records also hold tuned_global)
POLICIES = {"metrics": "fixed_0.5", "metrics_tuned": TUNED_POLICY}
STAGE_ORDER = ("baseline", "unimodal", "late", "fusion")
PRIMARY_SPLIT = "thesis"  # the split of the main comparison in both profiles (`Profile.primary_split`)
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


def results_table(runs_dir: str | Path, n_resamples: int = 1000, seeds: Sequence[int] | None = None,
                  split: str = PRIMARY_SPLIT) -> list[dict[str, Any]]:
    """The rows described in the module docstring for the runs of `split`, baselines first, then
    single-modality runs, fusions (only the runs of `seeds` when given)."""
    groups: dict[str, list[tuple[RunFolder, dict[str, Any]]]] = defaultdict(list)
    for folder, record in iter_records(RunsFolder(Path(runs_dir)), split, seeds):
        groups[record["name"]].append((folder, record))
    _check_same_split(groups)
    rows = [_row(name, sorted(runs, key=lambda run: run[1]["seed"]), n_resamples) for name, runs in groups.items()]
    stage = {name: runs[0][1].get("stage", "fusion") for name, runs in groups.items()}
    return sorted(rows, key=lambda row: (_stage_rank(stage[row["model"]]), "@" in row["model"], row["model"]))


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def _check_same_split(groups: dict[str, list[tuple[RunFolder, dict[str, Any]]]]) -> None:
    """Rows are only comparable on one test split of one data set."""
    identities = {(r["split"]["hash"], r["data"]["fingerprint"]): folder
                  for runs in groups.values() for folder, r in runs}
    if len(identities) > 1:
        examples = ", ".join(str(folder.path) for folder in list(identities.values())[:2])
        raise RecordError(f"the runs mix splits or data sets (e.g. {examples}); a table compares one split of "
                          "one release")


def _row(name: str, runs: list[tuple[RunFolder, dict[str, Any]]], n_resamples: int) -> dict[str, Any]:
    seeds = [record["seed"] for _, record in runs]
    if len(set(seeds)) != len(seeds):
        raise RecordError(f"run {name!r} has two records for one seed")
    predictions = [read_predictions(folder.predictions("test")) for folder, _ in runs]
    if any(list(p.ids) != list(predictions[0].ids) for p in predictions):
        raise RecordError(f"the seeds of {name!r} were tested on different movies")
    row: dict[str, Any] = {"model": name, "seeds": seeds}
    for key, policy in POLICIES.items():
        values = {metric: [record["metrics"][policy]["summary"][metric] for _, record in runs]
                  for metric in TABLE_METRICS}
        thresholds = [_thresholds(record, policy) for _, record in runs]
        intervals = seed_averaged_intervals(predictions, thresholds, TABLE_METRICS, n_resamples)
        row[key] = {metric: {**_mean_std(values[metric]), "ci_low": intervals[metric][0],
                             "ci_high": intervals[metric][1]}
                    for metric in TABLE_METRICS}
    per_genre = [record["metrics"]["fixed_0.5"]["per_genre"] for _, record in runs]
    row["per_genre_f1"] = {genre: float(np.mean([table[genre]["f1"] for table in per_genre])) for genre in GENRES}
    return row


def _thresholds(record: dict[str, Any], policy: str) -> np.ndarray:
    """(23,) thresholds of a policy: 0.5 everywhere, or those the run tuned on dev."""
    return np.full(len(GENRES), 0.5) if policy == "fixed_0.5" else tuned_thresholds(record, policy)


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    known = [v for v in values if v is not None]  # None: undefined in a record (JSON has no NaN)
    if not known:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(known)), "std": float(np.std(known, ddof=1)) if len(known) > 1 else None}


def seed_averaged_intervals(predictions: Sequence[Any], thresholds: Sequence[np.ndarray], metrics: Sequence[str],
                            n_resamples: int) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bootstrap interval of the seed-averaged metric (same resampled movies for every seed)."""
    distributions = [
        bootstrap_distribution(p.labels, p.probs, t, list(metrics), n_resamples=n_resamples, seed=BOOTSTRAP_SEED)
        for p, t in zip(predictions, thresholds, strict=True)
    ]
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals = {}
    for metric in metrics:
        averaged = np.mean([d[metric] for d in distributions], axis=0)  # (R,) NaN where a seed was undefined
        averaged = averaged[~np.isnan(averaged)]
        if averaged.size == 0:
            intervals[metric] = (None, None)
        else:
            low, high = np.percentile(averaged, [tail, 100 - tail])
            intervals[metric] = (float(low), float(high))
    return intervals


def paired_difference(runs_dir: str | Path, model_a: str, model_b: str, *, metric: str = "macro_f1",
                      genres: Sequence[str] | None = None, policy: str = TUNED_POLICY,
                      n_resamples: int = 1000, seeds: Sequence[int] | None = None,
                      split: str = PRIMARY_SPLIT) -> dict[str, Any]:
    """Model a minus model b on `metric` (optionally over some genres only, e.g. the twin's alignment genres),
    averaged over their common seeds, with a paired bootstrap over test movies: every resample draws the
    same movies for both models and every seed. Returns delta, its 95% interval and a two-sided p-value
    (twice the smaller tail mass at zero, as `metrics.paired_bootstrap`)."""
    finished = list(iter_records(RunsFolder(Path(runs_dir)), split, seeds))
    runs = {name: {r["seed"]: (folder, r) for folder, r in finished if r["name"] == name} for name in (model_a, model_b)}
    seeds = sorted(set(runs[model_a]) & set(runs[model_b]))
    if not seeds:
        raise RecordError(f"{model_a!r} and {model_b!r} have no finished seed in common under {runs_dir}")
    columns = None if genres is None else [GENRES.index(genre) for genre in genres]
    point, deltas = [], []
    for seed in seeds:
        values = []
        for name in (model_a, model_b):
            folder, record = runs[name][seed]
            test = read_predictions(folder.predictions("test"))
            cutoffs = _thresholds(record, policy)
            values.append((
                _full_set_metric(test, cutoffs, metric, columns),
                bootstrap_distribution(test.labels, test.probs, cutoffs, [metric], n_resamples=n_resamples,
                                       seed=BOOTSTRAP_SEED, genres=columns)[metric],
            ))
        point.append(values[0][0] - values[1][0])
        deltas.append(values[0][1] - values[1][1])
    averaged = np.mean(deltas, axis=0)  # (R,)
    averaged = averaged[~np.isnan(averaged)]
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(averaged, [tail, 100 - tail])
    below = (1 + np.count_nonzero(averaged <= 0)) / (averaged.size + 1)
    above = (1 + np.count_nonzero(averaged >= 0)) / (averaged.size + 1)
    return {"model_a": model_a, "model_b": model_b, "metric": metric, "genres": list(genres or GENRES),
            "policy": policy, "seeds": seeds, "delta": float(np.mean(point)), "ci_low": float(low),
            "ci_high": float(high), "p_value": float(min(1.0, 2 * min(below, above)))}


def _full_set_metric(predictions: Any, cutoffs: np.ndarray, metric: str, columns: list[int] | None) -> float:
    keep = slice(None) if columns is None else columns
    names = GENRES if columns is None else [GENRES[c] for c in columns]
    report = evaluate(predictions.labels[:, keep], predictions.probs[:, keep], cutoffs[keep], genre_names=names)
    return report.summary()[metric]


SHOWN_METRICS = ("macro_f1", "micro_f1", "map_macro")  # at 0.5, then macro-F1 with tuned thresholds
STATISTICS = ("mean", "std", "ci_low", "ci_high")


def _columns(metrics: Sequence[str]) -> list[tuple[str, str, str]]:
    """(row key, metric, header) of each metric column of the table."""
    columns = [("metrics", metric) for metric in metrics] + [("metrics_tuned", "macro_f1")]
    return [(key, metric, f"{metric}{' (tuned)' if key == 'metrics_tuned' else ''}") for key, metric in columns]


def format_table(rows: list[dict[str, Any]], metrics: Sequence[str] = SHOWN_METRICS) -> str:
    """Plain-text table: per metric `mean ± std [ci]` at 0.5 and, for macro-F1, with tuned thresholds."""
    columns = _columns(metrics)
    headers = ["model", "seeds"] + [header for _, _, header in columns]
    body = [[row["model"], ",".join(map(str, row["seeds"]))] + [_cell(row[key][m]) for key, m, _ in columns]
            for row in rows]
    widths = [max(len(str(line[i])) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True))
             for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def table_frame(rows: list[dict[str, Any]], metrics: Sequence[str] = SHOWN_METRICS, *,
                formatted: bool = False) -> pd.DataFrame:
    """The table as a DataFrame, one row per model: the seeds, then per metric column either one cell
    `mean ±std [ci]` as the text table shows it (`formatted`: for LaTeX and Markdown) or the numbers
    `<metric> mean|std|ci_low|ci_high` (for CSV: every digit)."""
    import pandas as pd

    table = {}
    for row in rows:
        cells: dict[str, Any] = {"seeds": ",".join(map(str, row["seeds"]))}
        for key, metric, header in _columns(metrics):
            entry = row[key][metric]
            if formatted:
                cells[header] = _cell(entry)
            else:
                cells.update({f"{header} {statistic}": entry[statistic] for statistic in STATISTICS})
        table[row["model"]] = cells
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("model")


def _cell(entry: dict[str, float | None]) -> str:
    if entry["mean"] is None:
        return "n/a"
    spread = "" if entry["std"] is None or math.isnan(entry["std"]) else f" ±{entry['std']:.3f}"
    interval = "" if entry["ci_low"] is None else f" [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
    return f"{entry['mean']:.3f}{spread}{interval}"

