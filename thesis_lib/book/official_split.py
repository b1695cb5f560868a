"""The experiments chapter's second split (notebooks/04_experiments.ipynb): the headline claims of the thesis
split and of the official split side by side, the official split's comparison table, and, on the real
release only, the peers' published figures beside the project's own rows.

The official split is the one the MM-IMDb literature reports (`analysis.published`); the thesis split is
the project's stratified 70/15/15 split and stays the primary one. Both splits' claims come from run
records only (`experiments.table.results_table(..., split=...)` and `analysis.comparison.compare`), with
the same verdict words (`analysis.verdicts`), so a claim that holds on one split and not on the other shows
as two different verdicts in one table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from thesis_lib.analysis import comparison
from thesis_lib.analysis.comparison import PROPOSED, FinishedRun
from thesis_lib.analysis.published import AVERAGES, PUBLISHED, THRESHOLD
from thesis_lib.analysis.published import SPLIT as PUBLISHED_SPLIT
from thesis_lib.book.experiments_chapter import METRIC_NAMES, estimate_text, profile_runs
from thesis_lib.book.provenance import DataDescription
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.table import results_table

OFFICIAL = "official"
SPLIT_WORDS = {"thesis": "thesis split (70/15/15, stratified)", "official": "official split (the release's own)"}


@dataclass(frozen=True)
class SplitResults:
    """The finished runs of one split that the profile defines, and their results_table rows."""

    split: str
    runs: dict[str, FinishedRun]
    rows: list[dict[str, Any]]

    @property
    def n_test(self) -> int:
        """Test movies of the split (every run of a split is tested on the same movies)."""
        return len(self.runs[PROPOSED].test_predictions().ids)


def split_results(runs_dir: str | Path, profile: Profile, split: str) -> SplitResults | None:
    """The profile's runs of `split` (None when the profile does not run that split); the proposed model
    must be among them (ThesisError naming what is missing)."""
    if split not in profile.splits:
        return None
    runs = profile_runs(comparison.finished_runs(runs_dir, profile.seeds, split=split), profile)
    comparison.require_runs(runs, [PROPOSED])
    rows = [row for row in results_table(runs_dir, profile.bootstrap_resamples, profile.seeds, split=split)
            if row["model"] in runs]
    return SplitResults(split, runs, rows)


def headline_claims(runs_dir: str | Path, results: SplitResults, n_resamples: int,
                    seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """The chapter's headline claims on one split: where the proposed model ranks by tuned macro-F1, the
    best other model, and the paired difference to it with its verdict (ahead / behind / undecided)."""
    position = comparison.standing(results.rows)
    test = comparison.compare(runs_dir, PROPOSED, position.best_other, n_resamples=n_resamples, seeds=seeds,
                              split=results.split)
    return {"split": results.split, "n_test": results.n_test, "rank": position.rank, "n_models": position.n_models,
            "score": position.score, "best_other": position.best_other, "best_other_score": position.best_other_score,
            "gap": position.gap, "delta": test["delta"], "ci_low": test["ci_low"], "ci_high": test["ci_high"],
            "p_value": test["p_value"], "verdict": str(test["verdict"])}


def claims_table(claims: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The headline claims of each split side by side: one column per split, one row per claim."""
    table = {}
    for claim in claims:
        table[f"{SPLIT_WORDS.get(claim['split'], claim['split'])}, {claim['n_test']:,} test movies"] = {
            f"rank of {PROPOSED} (macro-F1 tuned)": f"{claim['rank']} of {claim['n_models']} ({claim['score']:.3f})",
            "best other model": f"{claim['best_other']} ({claim['best_other_score']:.3f})",
            "paired Δ macro-F1 [95% CI]": f"{claim['delta']:+.3f} [{claim['ci_low']:+.3f}, {claim['ci_high']:+.3f}]",
            "p": f"{claim['p_value']:.3f}",
            "verdict": claim["verdict"],
        }
    return pd.DataFrame(table).rename_axis("claim")


def official_sentence(claims: Sequence[Mapping[str, Any]], profile: Profile) -> str:
    """The official split's claims for the prose (Markdown), and whether its verdict agrees with the thesis
    split's; on a profile without the official split, a sentence saying where they would be."""
    by_split = {claim["split"]: claim for claim in claims}
    if OFFICIAL not in by_split:
        return (f"This build's profile ({profile.profile}) runs the {' and '.join(profile.splits)} split only; "
                "the full profile adds the official split, and its table and claims appear here.")
    claim = by_split[OFFICIAL]
    text = (f"On the official split's {claim['n_test']:,} test movies, the proposed model ranks {claim['rank']} of "
            f"{claim['n_models']} by macro-F1 with tuned thresholds ({claim['score']:.3f}); the best other model "
            f"there is {claim['best_other']} ({claim['best_other_score']:.3f}). The paired test of the proposed "
            f"model minus {claim['best_other']} gives {claim['delta']:+.3f} (95% CI [{claim['ci_low']:+.3f}, "
            f"{claim['ci_high']:+.3f}], p = {claim['p_value']:.3f}): **{claim['verdict']}**.")
    primary = next((c for split, c in by_split.items() if split != OFFICIAL), None)
    if primary is not None:
        same = primary["verdict"] == claim["verdict"]
        text += (f" On the {primary['split']} split the same test (against {primary['best_other']}) is "
                 f"**{primary['verdict']}**: the two splits {'agree' if same else 'disagree'}.")
    return text


def reference_table(results: SplitResults | None, data: DataDescription) -> pd.DataFrame | None:
    """The project's official-split models at threshold 0.5 beside the peers' published figures (the same
    split, threshold and F1 averages; `analysis.published`), on the real release only: None on the synthetic
    twin, whose numbers are not comparable with MM-IMDb's, and when the profile has no official split."""
    if data.kind == "twin" or results is None or results.split != PUBLISHED_SPLIT:
        return None
    columns = [f"{METRIC_NAMES[average]} @{THRESHOLD:g}" for average in AVERAGES]
    table = {}
    for row in results.rows:
        if "@" in row["model"]:
            continue  # the models, not the ablation variants
        table[f"{row['model']} (this build)"] = dict(zip(columns, (estimate_text(row["metrics"][average])
                                                                   for average in AVERAGES), strict=True))
    for paper in PUBLISHED:
        table[paper.label] = dict(zip(columns, (paper.score_text(average) for average in AVERAGES), strict=True))
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("official split, test")


def reference_note(results: SplitResults | None, data: DataDescription) -> str:
    """Whether the published figures are set beside this build's rows, and why not when they are not."""
    if data.kind == "twin":
        return ("They were measured on the real MM-IMDb release; this build's data is the synthetic twin, so "
                "they are not set beside its numbers.")
    if results is None:
        return "This build has no official-split runs to set them beside."
    return (f"The table sets them (rows marked \"published\"; \"≈\": rounded in the paper, \"–\": not reported) "
            f"beside this build's models on the same split at threshold {THRESHOLD:g}, with the same F1 "
            "averages (mean over seeds [95% bootstrap interval]).")
