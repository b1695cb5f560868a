"""Which single-modality runs the fusions reuse: a stated rule, checked against the runs.

The fusions start from the encoders (and, late fusion, the predictions) of one single-modality run per
modality; the profile names them (`fusion_text_source`, `fusion_image_source`, `fusion_objects_source`).
The rule those names must follow:

    per modality, the single-modality run of the profile with the highest dev macro-mAP
    (threshold-free, so no threshold was fitted on the dev split it is read from);
    the twin's object oracle is never a candidate (it reads the generator's answer, not the poster).

`source_choice` applies the rule to finished runs and says, per modality, whether the profile follows it.
A profile is written before its runs exist, so the book shows this table and names any disagreement
rather than silently re-wiring the fusions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from thesis_lib.analysis.comparison import FinishedRun
from thesis_lib.data.dataset import MODALITIES
from thesis_lib.metrics import evaluate

RULE = ("per modality, the single-modality run with the highest dev macro-mAP (threshold-free); the twin's "
        "object oracle is never a candidate")
NOT_CANDIDATES = ("objects_oracle",)  # reads the twin's ground truth: an upper bound, not a source


@dataclass(frozen=True)
class SourceChoice:
    """The rule applied to one modality."""

    modality: str
    scores: dict[str, float]  # candidate run -> dev macro-mAP (seed 0), best first
    chosen: str  # the rule's pick
    used: str  # what the profile's fusions read

    @property
    def follows_rule(self) -> bool:
        return self.chosen == self.used


def read_modality(run: FinishedRun) -> str | None:
    """The one modality a single-modality run reads (from its record's model config); None otherwise."""
    config = run.records[0].get("model_config") or {}
    read = [m for m in MODALITIES if config.get(m) is not None]
    return read[0] if len(read) == 1 else None


def dev_map(run: FinishedRun, index: int = 0) -> float:
    """Macro-mAP of seed `index`'s dev predictions (the predictions its best epoch made on dev)."""
    dev = run.dev_predictions(index)
    return float(evaluate(dev.labels, dev.probs).scores["map_macro"])


def source_choice(runs: Mapping[str, FinishedRun], used: Mapping[str, str],
                  candidates: Sequence[str]) -> list[SourceChoice]:
    """The rule per modality in `used` (modality -> the run the profile's fusions reuse), over the finished
    single-modality runs named in `candidates` (the profile's models)."""
    choices = []
    for modality, source in used.items():
        scores = {name: dev_map(runs[name]) for name in candidates
                  if name in runs and name not in NOT_CANDIDATES and runs[name].stage == "unimodal"
                  and read_modality(runs[name]) == modality}
        if not scores:
            continue
        ranked = dict(sorted(scores.items(), key=lambda item: -item[1]))
        choices.append(SourceChoice(modality, ranked, next(iter(ranked)), source))
    return choices
