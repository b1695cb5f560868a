"""Chapter 4.1's seed section: the committed seeds results file (`make seeds`, `experiments.seeds`) beside the
runs this build rendered.

The build's own grid trains the profile's seeds (smoke: one); the file holds the profile's models on several
seeds. A run of the file speaks for this build only when its seed-0 run has the config hash and data of the
run the page rendered; the others are named as stale rather than mixed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from thesis_lib.analysis.comparison import PROPOSED, FinishedRun
from thesis_lib.analysis.verdicts import listing
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.seeds import SeedSummary, metric_key, read_summary, seeds_file
from thesis_lib.paths import project_root

COMMAND = "make seeds"  # = thesis results seeds --profile PROFILE --seeds 0,1,2
HEADLINE = metric_key("metrics_tuned", "macro_f1")
SHOWN = (HEADLINE, "map_macro")


def load(profile: Profile) -> SeedSummary | None:
    """The profile's seeds results file (results/seeds-<profile>.json), or None when it has none."""
    return read_summary(project_root() / seeds_file(profile.profile))


def current_runs(summary: SeedSummary, runs: Mapping[str, FinishedRun]) -> list[str]:
    """The file's runs whose seed-0 run is the run this build rendered (same config hash and data)."""
    return [name for name in summary.content["runs"] if name in runs
            and summary.matches(name, runs[name].records[0]["config_hash"],
                                runs[name].records[0]["data"]["fingerprint"])]


def seed_table(summary: SeedSummary | None, runs: Mapping[str, FinishedRun]) -> pd.DataFrame | None:
    """Per run of the file that this build rendered: each seed's tuned macro-F1 and macro-mAP, their mean and
    standard deviation over seeds (ddof 1). None without a file or without a current run."""
    if summary is None or not (names := current_runs(summary, runs)):
        return None
    rows = {}
    for name in names:
        row: dict[str, Any] = {}
        for metric in SHOWN:
            values = summary.values(name, metric)
            label = "macro-F1 (tuned)" if metric == HEADLINE else "macro-mAP"
            row |= {(label, f"seed {seed}"): round(value, 3) for seed, value in zip(summary.seeds, values,
                                                                                    strict=True)}
            row |= {(label, "mean ± std"): f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("run")


def seed_values(summary: SeedSummary | None, runs: Mapping[str, FinishedRun], profile: Profile,
                proposed: str = PROPOSED) -> dict[str, Any]:
    """What the page says: the file, the seeds, which runs it covers, and on how many seeds the proposed model
    is ahead of each other fusion on tuned macro-F1 (with the mean difference and its spread)."""
    file = seeds_file(profile.profile).as_posix()
    if summary is None:
        return {"seeds_status": f"There is no {file} yet: `{COMMAND}` makes it, so every number on this page "
                                f"comes from the build's own seed(s).", "proposed_seeds": ""}
    names = current_runs(summary, runs)
    stale = [name for name in summary.content["runs"] if name not in names]
    status = (f"`{COMMAND}` trained the profile's models on seeds {', '.join(map(str, summary.seeds))} "
              f"({file}, created {summary.content['created']} at commit "
              f"{str(summary.content['git'].get('commit'))[:7]}; its runs took {_run_minutes(summary):.0f} min "
              "of training). "
              f"{len(names)} of its {len(summary.content['runs'])} runs are the runs rendered here (same "
              f"configuration and data); "
              + (f"the others ({listing(stale)}) were trained with other settings and are left out."
                 if stale else "none is stale."))
    return {"seeds_status": status, "proposed_seeds": ahead_sentence(summary, names, proposed)}


def _run_minutes(summary: SeedSummary) -> float:
    """The runs' summed training time (files written before it was recorded: the command's own time)."""
    return summary.content.get("run_time_s", summary.content["wall_time_s"]) / 60


def ahead_sentence(summary: SeedSummary, names: list[str], proposed: str) -> str:
    if proposed not in names:
        return f"The file does not cover the {proposed} run rendered here, so no seed comparison is made."
    ours = np.array(summary.values(proposed, HEADLINE))  # (S,)
    parts = []
    for name in (n for n in names if n.startswith("fusion_") and n != proposed):
        differences = ours - np.array(summary.values(name, HEADLINE))  # (S,)
        parts.append(f"{name} on {int((differences > 0).sum())} of {len(differences)} seeds (mean difference "
                     f"{differences.mean():+.3f} ± {differences.std(ddof=1):.3f})")
    if not parts:
        return ""
    return f"Per seed, {proposed} scores a higher tuned macro-F1 than {listing(parts)}."
