"""Seed variation of the headline comparison, kept as one small results file the book reads.

The book's grid trains every run once (the profile's seeds; smoke: seed 0), so its intervals reflect which
movies are in the test split, not how a model varies with its initialisation and batch order. `thesis
seeds` (`make seeds`) trains the profile's models (the ablation variants left out) on several seeds with the
grid's own code, then writes `results/seeds-<profile>.json`:

    {"schema": ..., "profile", "overrides", "seeds", "created", "git", "versions", "data": {fingerprint, movies},
     "split": {name, hash}, "wall_time_s", "run_time_s",
     "runs": {name: {"stage", "per_seed": {seed: {"config_hash", "best_epoch", "epochs_run", "train_loss",
                                                   "dev_loss", "metrics": {...}}}}}}

with the test scores of each seed's record (tuned macro-F1, macro-F1 at 0.5, macro ROC-AUC, macro-mAP) and, for
trained runs, the training and dev loss of the kept epoch (how closely the run fits its training set).
`wall_time_s` is the command's own time (finished runs are skipped), `run_time_s` the summed wall time of the
runs' records (what training them all took, whichever command did). `overrides` are the profile values changed for a controlled experiment (`thesis results seeds KEY=VALUE
--out FILE`; {} for the profile as it is).
A run whose seeds already finished (same config, data and split) is skipped, as in `thesis run`. The book
compares each run's seed-0 config hash with the run it rendered: the file speaks for this build only where
they match (`SeedSummary.matches`), and the page says which runs it covers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunsFolder
from thesis_lib.experiments.provenance import library_versions
from thesis_lib.experiments.records import iter_records
from thesis_lib.experiments.table import POLICIES
from thesis_lib.storage import read_json_document, write_text_atomic
from thesis_lib.versions import git_state

SCHEMA = "thesis-seeds/1"
RESULTS_DIR = Path("results")  # relative to the project root
DEFAULT_SEEDS = (0, 1, 2)
SEED_METRICS = (("metrics_tuned", "macro_f1"), ("metrics", "macro_f1"), ("metrics", "roc_auc_macro"),
                ("metrics", "map_macro"))  # (policy key as in experiments.table, metric)


class SeedFileError(ThesisError, ValueError):
    """A seeds results file that cannot be read as one."""


def seeds_file(profile_name: str) -> Path:
    """results/seeds-<profile>.json, relative to the project root."""
    return RESULTS_DIR / f"seeds-{profile_name}.json"


def metric_key(policy: str, metric: str) -> str:
    """"macro_f1 tuned", "roc_auc_macro" (threshold-free metrics need no policy word)."""
    return f"{metric} {'tuned' if policy == 'metrics_tuned' else '@0.5'}" if metric == "macro_f1" else metric


def summarise(runs_dir: str | Path, names: Sequence[str], seeds: Sequence[int], split: str,
              profile_name: str, wall_time_s: float, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The results file's content for the finished runs `names` x `seeds` of `split` in `runs_dir`
    (`overrides`: the profile values changed for these runs, recorded as given)."""
    runs: dict[str, Any] = {}
    data = split_info = None
    run_time_s = 0.0
    for _, record in iter_records(RunsFolder(Path(runs_dir)), split, seeds):
        if record["name"] not in names:
            continue
        data = data or {"fingerprint": record["data"]["fingerprint"], "movies": record["data"]["movies"]}
        split_info = split_info or {"name": record["split"]["name"], "hash": record["split"]["hash"]}
        run_time_s += float(record.get("wall_time_s") or 0.0)
        training = record.get("training") or {}
        history, best = training.get("history") or [], training.get("best_epoch")
        kept = history[best] if best is not None and best < len(history) else {}  # the kept epoch's record
        entry = runs.setdefault(record["name"], {"stage": record.get("stage"), "per_seed": {}})
        entry["per_seed"][str(record["seed"])] = {
            "config_hash": record["config_hash"],
            "best_epoch": None if training.get("best_epoch") is None else training["best_epoch"] + 1,
            "epochs_run": training.get("epochs_run"),
            "train_loss": kept.get("train_loss"),
            "dev_loss": kept.get("val_loss"),
            "metrics": {metric_key(policy, metric): record["metrics"][POLICIES[policy]]["summary"][metric]
                        for policy, metric in SEED_METRICS},
        }
    missing = [f"{name}/seed{seed}" for name in names for seed in seeds
               if str(seed) not in runs.get(name, {}).get("per_seed", {})]
    if missing:
        raise ThesisError(f"seeds: no finished run for {', '.join(missing[:5])}"
                          f"{' and more' if len(missing) > 5 else ''} in {runs_dir}")
    return {"schema": SCHEMA, "profile": profile_name, "overrides": dict(overrides or {}), "seeds": list(seeds),
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "git": git_state(),
            "versions": library_versions(), "data": data, "split": split_info,
            "wall_time_s": round(wall_time_s, 1), "run_time_s": round(run_time_s, 1),
            "runs": {name: runs[name] for name in names}}


def write_summary(path: Path, content: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(content, indent=1) + "\n")


@dataclass(frozen=True)
class SeedSummary:
    """A read seeds results file."""

    path: Path
    content: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        return list(self.content["seeds"])

    def matches(self, name: str, config_hash: str, data_fingerprint: str) -> bool:
        """True when the file's seed-0 run of `name` is the run a build rendered (same config and data)."""
        run = self.content["runs"].get(name)
        first = None if run is None else run["per_seed"].get(str(self.seeds[0]))
        return (first is not None and first["config_hash"] == config_hash
                and self.content["data"]["fingerprint"] == data_fingerprint)

    def values(self, name: str, metric: str) -> list[float]:
        """One value per seed, in the file's seed order."""
        per_seed = self.content["runs"][name]["per_seed"]
        return [float(per_seed[str(seed)]["metrics"][metric]) for seed in self.seeds]


def read_summary(path: Path) -> SeedSummary | None:
    """The seeds file at `path`; None when there is none; SeedFileError (one line, naming it) when it is not one."""
    if not path.is_file():
        return None
    content = read_json_document(path, SCHEMA, SeedFileError, "seeds results file", kind="seeds results file")
    for key in ("seeds", "runs", "data", "git", "created"):
        if key not in content:
            raise SeedFileError(f"{path}: seeds results file without {key!r}")
    return SeedSummary(path, content)
