"""The capacity section of chapter 4: the committed results file of `thesis capacity` as a table, a
figure and verdicts for the prose.

Nothing here trains or computes a number the file does not hold: `analysis.capacity.read_results` reads
`results/capacity.json` and checks it is this code's configuration; the intervals and the verdicts of the
differences were computed by the experiment (`analysis.capacity.experiment`). A file that is missing,
unreadable or from another configuration gives one line (`status`) and the section shows no number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib.analysis.capacity import (
    COMMAND,
    CONTROL,
    LABELS,
    POOLED_REFERENCE,
    RESULTS_FILE,
    CapacityConfig,
    CapacityResultError,
    pooled_ceiling,
    read_results,
)
from thesis_lib.analysis.results_file import provenance_line
from thesis_lib.analysis.verdicts import listing

DATA_CAPTION = ("Data: synthetic token tasks of `thesis_lib.analysis.capacity` (word tokens and grid tokens "
                "drawn by a generator), not MM-IMDb and not the synthetic twin. Weights: every model trained from "
                "random initialisation by the experiment itself (`thesis capacity`; no weights kept).")
TABLE_COLUMNS = ["parameters", "accuracy", "CI low", "CI high", "seed min", "seed max"]


@dataclass(frozen=True)
class CapacityResults:
    """The committed results file, or why there is none to show (`document` None, `problem` says why)."""

    document: dict[str, Any] | None
    problem: str | None

    @property
    def status(self) -> str:
        """One line for the page: where the numbers come from, or why there are none."""
        if self.document is None:
            return f"No capacity result is shown: {self.problem}."
        return provenance_line(self.document, RESULTS_FILE)


def load(root: Path | str) -> CapacityResults:
    """The results file under the project `root` (never an exception for a bad file: see `status`)."""
    try:
        return CapacityResults(read_results(Path(root) / RESULTS_FILE), None)
    except CapacityResultError as error:
        return CapacityResults(None, str(error))


def accuracy_frame(results: CapacityResults) -> pd.DataFrame:
    """One row per task and model in the experiment's order: accuracy, interval, pooled or token-level."""
    if results.document is None:
        return pd.DataFrame(columns=["task", "model", "accuracy", "ci_low", "ci_high", "pooled", "seeds"])
    models = results.document["models"]
    return pd.DataFrame([{"task": row["task"], "model": models[row["model"]]["label"], "accuracy": row["accuracy"],
                          "ci_low": row["ci_low"], "ci_high": row["ci_high"], "pooled": models[row["model"]]["pooled"],
                          "seeds": row["seed_accuracies"]}
                         for row in results.document["summary"]])


def references(results: CapacityResults) -> pd.DataFrame:
    """Per task: the majority guess's test accuracy and the best accuracy pooled vectors allow."""
    if results.document is None:
        return pd.DataFrame(columns=["majority", "pooled_ceiling"])
    return pd.DataFrame({task: {"majority": info["majority_accuracy"], "pooled_ceiling": info["pooled_ceiling"]}
                         for task, info in results.document["tasks"].items()}).T


def capacity_table(results: CapacityResults) -> pd.DataFrame | None:
    """The section's table: per task and model, parameters, mean test accuracy over the seeds with its 95%
    interval and the seeds' range; a "majority guess" row per task. None without a usable file."""
    if results.document is None:
        return None
    d = results.document
    rows = []
    for task, info in d["tasks"].items():
        majority = info["majority_accuracy"]
        rows.append({"task": task, "model": "majority guess", "parameters": 0, "accuracy": majority,
                     "CI low": None, "CI high": None, "seed min": None, "seed max": None})
        for row in (r for r in d["summary"] if r["task"] == task):
            model = d["models"][row["model"]]
            rows.append({"task": task, "model": model["label"], "parameters": model["parameters"],
                         "accuracy": row["accuracy"], "CI low": row["ci_low"], "CI high": row["ci_high"],
                         "seed min": min(row["seed_accuracies"]), "seed max": max(row["seed_accuracies"])})
    return pd.DataFrame(rows).set_index(["task", "model"])[TABLE_COLUMNS]


def verdict_values(results: CapacityResults) -> dict[str, str | float | int]:
    """What the prose says, each sentence decided by the intervals of the file's paired differences."""
    config = CapacityConfig()  # a file that is shown has this configuration (its hash was checked)
    values: dict[str, str | float | int] = {"capacity_status": results.status, "capacity_command": COMMAND,
                                            "n_seeds": len(config.seeds),
                                            "pooled_ceiling": pooled_ceiling("alignment", config.task)}
    if results.document is None:
        none = "not measured (no usable results file)"
        return values | {key: none for key in ("pooled_tasks", "alignment_tokens", "alignment_pooled",
                                                "control_sentence", "control_seeds", "parameter_range")}
    d = results.document

    def names(task: str, b: str, verdict: str, models: list[str] | None = None) -> list[str]:
        return [LABELS[c["a"]] for c in d["comparisons"]
                if c["task"] == task and c["b"] == b and c["verdict"] == verdict and (models is None or c["a"] in models)]

    pooled = [m for m, info in d["models"].items() if info["pooled"]]
    tokens = [m for m, info in d["models"].items() if not info["pooled"]]
    counts = [info["parameters"] for info in d["models"].values()]
    values["parameter_range"] = f"{min(counts):,} to {max(counts):,}"
    values["pooled_tasks"] = "; ".join(
        f"on {task}, {listing(names(task, 'majority', 'ahead'))} beat the majority guess and "
        f"{listing(names(task, POOLED_REFERENCE, 'behind'))} fall behind early fusion"
        for task in d["tasks"] if task != "alignment")
    values["alignment_tokens"] = (f"{listing(names('alignment', POOLED_REFERENCE, 'ahead', tokens))} are ahead of "
                                  f"early fusion (interval of the difference above zero); undecided: "
                                  f"{listing(names('alignment', POOLED_REFERENCE, 'undecided', tokens))}")
    values["alignment_pooled"] = (f"{listing(names('alignment', 'majority', 'ahead', pooled))} beat the majority "
                                  f"guess; the best pooled model reaches "
                                  f"{max(r['accuracy'] for r in d['summary'] if r['task'] == 'alignment' and r['model'] in pooled):.3f}")
    values["control_sentence"] = (f"against the self-attention control, cross-attention variants ahead: "
                                  f"{listing(names('alignment', CONTROL, 'ahead'))}; behind: "
                                  f"{listing(names('alignment', CONTROL, 'behind'))}; undecided: "
                                  f"{listing(names('alignment', CONTROL, 'undecided'))}")
    control_seeds = next(r["seed_accuracies"] for r in d["summary"] if r["task"] == "alignment" and r["model"] == CONTROL)
    crossing = [r for r in d["summary"] if r["task"] == "alignment" and r["model"].startswith("xattn_")]
    values["control_seeds"] = (f"every seed above the control's best seed: "
                               f"{listing([LABELS[r['model']] for r in crossing if min(r['seed_accuracies']) > max(control_seeds)])}; "
                               f"seeds overlapping the control's: "
                               f"{listing([LABELS[r['model']] for r in crossing if min(r['seed_accuracies']) <= max(control_seeds)])}")
    return values
