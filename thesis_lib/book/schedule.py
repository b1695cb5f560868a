"""Chapter 4.1's convergence section: the profile's seeds file beside a controlled experiment that trains the
same models, seeds, data and split under the other learning-rate schedule (linear decay to 0 at the last epoch
of the budget, or the plateau schedule that early stopping ends; `train.optim.build_scheduler`).

The experiment's file is written by `thesis results seeds` with the schedule's profile values changed
(`experiment_command`) and records those changes (`overrides`). Per run and seed, both files hold the kept epoch
and the epochs run (did the run plateau?), the training and dev loss of the kept epoch (how closely it fits its
training set) and the test scores; the difference of a run's tuned macro-F1 (experiment minus profile) gets a
95% t-interval over the paired seeds and its verdict (ahead / behind / undecided), as every claim of the book.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from thesis_lib.analysis.comparison import PROPOSED
from thesis_lib.analysis.verdicts import Verdict, listing, verdict_of
from thesis_lib.book.seeds import HEADLINE, ahead_sentence
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.seeds import RESULTS_DIR, SeedSummary, read_summary
from thesis_lib.paths import project_root

# The profile values of each schedule's run: the plateau schedule's epochs are a cap, and each warm-up share
# gives the same one-epoch warm-up (0.1 of 10 epochs, 0.05 of 20).
SCHEDULE_CHANGES = {"linear": "lr_schedule=linear epochs=10 warmup_ratio=0.1",
                    "plateau": "lr_schedule=plateau epochs=20 warmup_ratio=0.05"}
LATE = "fusion_late"  # combines finished runs' predictions: trains nothing on the sources' features


def experiment_schedule(profile: Profile) -> str:
    """The schedule the experiment trains under: the one the profile does not use."""
    return next(schedule for schedule in SCHEDULE_CHANGES if schedule != profile.lr_schedule)


def experiment_file(profile: Profile) -> Path:
    """results/seeds-<profile>-<the other schedule>.json, relative to the project root."""
    return RESULTS_DIR / f"seeds-{profile.profile}-{experiment_schedule(profile)}.json"


def experiment_command(profile: Profile) -> str:
    return (f"thesis results seeds --profile {profile.profile} --out {experiment_file(profile).as_posix()} "
            f"{SCHEDULE_CHANGES[experiment_schedule(profile)]}")


def load_experiment(profile: Profile) -> SeedSummary | None:
    """The profile's schedule experiment, or None when it has none."""
    return read_summary(project_root() / experiment_file(profile))


@dataclass(frozen=True)
class PairedSeeds:
    """One run's paired difference per seed (experiment - profile) with the 95% t-interval of its mean."""

    differences: np.ndarray  # (S,)
    low: float  # 95% t-interval of the mean difference (NaN with fewer than two seeds)
    high: float

    @property
    def mean(self) -> float:
        return float(self.differences.mean())

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.low, self.high)


def comparable(base: SeedSummary | None, other: SeedSummary | None) -> list[str]:
    """The runs both files hold on the same seeds, data and split; [] when they cannot be compared."""
    if base is None or other is None or base.seeds != other.seeds:
        return []
    if (base.content["data"] != other.content["data"]
            or base.content.get("split") != other.content.get("split")):
        return []
    return [name for name in base.content["runs"] if name in other.content["runs"]]


def paired(base: SeedSummary, other: SeedSummary, name: str, metric: str = HEADLINE) -> PairedSeeds:
    """`name`'s per-seed difference of `metric` with its 95% t-interval over the seeds."""
    differences = np.array(other.values(name, metric)) - np.array(base.values(name, metric))  # (S,)
    n = len(differences)
    if n < 2:
        return PairedSeeds(differences, math.nan, math.nan)
    half = stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / math.sqrt(n)
    return PairedSeeds(differences, float(differences.mean() - half), float(differences.mean() + half))


def _per_seed(summary: SeedSummary, name: str, key: str) -> list[Any]:
    per_seed = summary.content["runs"][name]["per_seed"]
    return [per_seed[str(seed)].get(key) for seed in summary.seeds]


def _epochs(summary: SeedSummary, name: str) -> str:
    kept, run = _per_seed(summary, name, "best_epoch"), _per_seed(summary, name, "epochs_run")
    return "—" if None in kept else ", ".join(f"{k}/{r}" for k, r in zip(kept, run, strict=True))


def _mean_loss(summary: SeedSummary, name: str, key: str) -> float:
    values = [value for value in _per_seed(summary, name, key) if value is not None]
    return float(np.mean(values)) if values else math.nan


def plateaued(summary: SeedSummary, names: list[str]) -> tuple[int, int]:
    """(trained (run, seed) pairs whose kept epoch is before their last, trained pairs)."""
    pairs = [(kept, run) for name in names
             for kept, run in zip(_per_seed(summary, name, "best_epoch"), _per_seed(summary, name, "epochs_run"),
                                  strict=True) if kept is not None]
    return sum(kept < run for kept, run in pairs), len(pairs)


def schedule_table(base: SeedSummary | None, other: SeedSummary | None,
                   labels: tuple[str, str]) -> pd.DataFrame | None:
    """Per trained run and late fusion of both files: kept/run epochs per seed, mean training loss of the kept epoch, tuned macro-F1
    (mean ± std over seeds) under each schedule (`labels`: their names), and the paired difference with its
    interval and verdict. None when the files cannot be compared."""
    if not (names := comparable(base, other)):
        return None
    rows = {}
    for name in (name for name in names if not name.startswith("baseline")):  # baselines train nothing
        row: dict[tuple[str, str], Any] = {}
        for label, summary in zip(labels, (base, other), strict=True):
            scores = summary.values(name, HEADLINE)
            row |= {(label, "epochs kept/run"): _epochs(summary, name),
                    (label, "training loss"): round(_mean_loss(summary, name, "train_loss"), 3),
                    (label, "macro-F1 (tuned)"): f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"}
        pair = paired(base, other, name)
        row |= {("difference", "mean [95% CI]"): f"{pair.mean:+.3f} [{pair.low:+.3f}, {pair.high:+.3f}]",
                ("difference", "verdict"): str(pair.verdict)}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("run")


def schedule_values(base: SeedSummary | None, other: SeedSummary | None, profile: Profile,
                    proposed: str = PROPOSED) -> dict[str, Any]:
    """What the page says: which files, how many runs plateau under each schedule, which runs the other
    schedule puts ahead or behind, and how closely the sources and fusions fit their training sets."""
    file = experiment_file(profile).as_posix()
    names = comparable(base, other)
    if not names:
        reason = (f"There is no {file}" if other is None else
                  f"{file} and the profile's seeds file do not hold the same seeds, data and split")
        return {"schedule_status": f"{reason}: `{experiment_command(profile)}` makes it.",
                "schedule_verdicts": "", "schedule_fit": "",
                "schedule_answer": "not measured: no schedule experiment for this profile"}
    changes = ", ".join(f"{key} = {value}" for key, value in other.content.get("overrides", {}).items())
    trained = [name for name in names if _per_seed(base, name, "best_epoch")[0] is not None]
    (base_flat, n), (other_flat, _) = plateaued(base, trained), plateaued(other, trained)
    status = (f"{file} trains the same {len(names)} runs on seeds {', '.join(map(str, other.seeds))} with "
              f"{changes} (created {other.content['created']} at commit {str(other.content['git'].get('commit'))[:7]},"
              f" its runs {other.content.get('run_time_s', math.nan) / 60:.0f} min of training; "
              f"`{experiment_command(profile)}`). Of the "
              f"{n} trained (run, seed) pairs, {base_flat} keep an epoch before their last under the profile's "
              f"schedule and {other_flat} under the experiment's.")
    pairs = {name: paired(base, other, name) for name in names if not name.startswith("baseline")}
    by_verdict = {verdict: [f"{name} ({pair.mean:+.3f})" for name, pair in pairs.items() if pair.verdict == verdict]
                  for verdict in Verdict}
    verdicts = (f"Against the profile's schedule, the experiment's is ahead for {listing(by_verdict[Verdict.AHEAD])}, "
                f"behind for {listing(by_verdict[Verdict.BEHIND])}, and undecided for "
                f"{len(by_verdict[Verdict.UNDECIDED])} run(s) (tuned macro-F1, mean difference over the seeds).")
    return {"schedule_status": status, "schedule_verdicts": verdicts,
            "schedule_fit": _fit_sentence(base, other, trained, _sources(profile), proposed),
            "schedule_answer": _answer(other, names, changes, proposed)}


def _answer(other: SeedSummary, names: list[str], changes: str, proposed: str) -> str:
    """The conclusion's line: the proposed model against each fusion, seed by seed, under the experiment."""
    sentence = ahead_sentence(other, names, proposed) or "no fusion to compare."
    return f"under the other schedule ({changes}): {sentence[0].lower()}{sentence[1:]}"


def _sources(profile: Profile) -> list[str]:
    """The single-modality runs whose frozen encoders the fusions read."""
    return [profile.fusion_text_source, profile.fusion_image_source, profile.fusion_objects_source]


def _fit_sentence(base: SeedSummary, other: SeedSummary, trained: list[str], sources: list[str],
                  proposed: str) -> str:
    """How closely the fusions' sources and the trained fusions fit their training sets under both schedules."""
    def losses(name: str) -> str:
        return (f"{name} {_mean_loss(base, name, 'train_loss'):.3f} → {_mean_loss(other, name, 'train_loss'):.3f} "
                f"(dev loss {_mean_loss(base, name, 'dev_loss'):.3f} → {_mean_loss(other, name, 'dev_loss'):.3f})")
    sources = [name for name in sources if name in trained]
    fusions = [name for name in trained if name.startswith("fusion")]
    if not sources or not fusions:
        return ""
    late = ""
    if LATE in base.content["runs"] and LATE in other.content["runs"]:
        pair = paired(base, other, LATE)
        late = (f" {LATE}, which trains nothing on those features, moves by {pair.mean:+.3f} "
                f"[{pair.low:+.3f}, {pair.high:+.3f}] tuned macro-F1: {pair.verdict}.")
    ordered = [*(name for name in fusions if name == proposed), *(name for name in fusions if name != proposed)]
    return (f"Training loss at the kept epoch, mean over seeds, this build's schedule → the experiment's: "
            f"{listing([losses(name) for name in sources])}; the fusions, which train on the sources' frozen "
            f"features: {listing([losses(name) for name in ordered])}.{late}")


def labels(base: SeedSummary | None, other: SeedSummary | None, profile: Profile) -> tuple[str, str]:
    """Column names of the two schedules: the profile's and the experiment's (from its recorded overrides)."""
    experiment = (other.content.get("overrides", {}).get("lr_schedule") if other is not None else None)
    return (f"{profile.lr_schedule} (this build)", str(experiment or experiment_schedule(profile)))


def schedule_section(base: SeedSummary | None, other: SeedSummary | None,
                     profile: Profile) -> tuple[pd.DataFrame | None, Mapping[str, Any]]:
    """The section's table and glue values in one call (the notebook's cell stays short)."""
    return schedule_table(base, other, labels(base, other, profile)), schedule_values(base, other, profile)
