"""The XAI chapter's faithfulness section (notebooks/04_xai.ipynb): `thesis xai check`'s evaluation of the
chapter's runs, as a table, and the sentences the prose glues in. Every claim is a verdict read from a
bootstrap interval (`analysis.xai_check.verdicts`: the paired difference of a score and its chance, centre
or randomised-model reference; ahead, behind or undecided), never a point estimate against a threshold.
Between runs (`fusion_comparison`: the proposed model against each other fusion and the best variant;
`maps_difference_sentence`: against the image-only model) the difference is paired over the pairs both
runs explained (`xai.between_runs`), since each run samples its own true-positive pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from thesis_lib.analysis.verdicts import Verdict, listing, verdict_of
from thesis_lib.analysis.xai_check import verdicts
from thesis_lib.experiments.loaded_run import LoadedRun
from thesis_lib.xai.between_runs import MEASURES, POINTING, compare_runs
from thesis_lib.xai.check import POINTING_TOLERANCE_PX, XaiCheckConfig, evaluate_run

PAIRS_PER_RUN = 200  # (poster, genre) pairs per run, as `thesis xai check` samples them
# A rehearsal (experiments/rehearsal.py) runs the full-size encoders on CPU: each pair costs two deletion
# curves of eleven forward passes plus a backward pass per map, so a few pairs show that every path runs.
REHEARSAL_PAIRS_PER_RUN = 4


def pairs_per_run(rehearsal: bool) -> int:
    """How many (poster, genre) pairs the chapter explains per run: `thesis xai check`'s sample, or the
    rehearsal's cap (its numbers measure nothing; it shows that the chapter runs)."""
    return REHEARSAL_PAIRS_PER_RUN if rehearsal else PAIRS_PER_RUN


def faithfulness(runs: Mapping[str, LoadedRun], truth: Mapping[str, Any] | None, max_pairs: int,
                 n_resamples: int) -> dict[str, dict[str, Any]]:
    """`thesis xai check`'s evaluation of each run (xai.check.evaluate_run) on a fixed sample of
    `max_pairs` (poster, genre) pairs, with the chapter's pointing tolerance."""
    config = XaiCheckConfig(max_pairs=max_pairs, max_plots=max_pairs, max_deletion_pairs=min(50, max_pairs),
                            pointing_tolerance_px=POINTING_TOLERANCE_PX, n_resamples=n_resamples)
    return {name: evaluate_run(run, truth, config) for name, run in runs.items()}


FAITHFULNESS_COLUMNS = {
    "gradcam_pointing_game": "pointing: Grad-CAM", "hirescam_pointing_game": "pointing: HiResCAM",
    "random_pointing_game": "pointing: chance", "center_pointing_game": "pointing: centre",
    "randomized_model_pointing_game": "pointing: randomised model", "gradcam_energy_in_box": "energy in box",
    "box_area_share": "energy: box's area share (chance)",
    "deletion_auc": "deletion AUC", "random_deletion_auc": "deletion AUC: random",
    "randomized_model_rank_correlation": "randomised model: rank correlation",
    "attention_cue_recall_at_5": "cue recall@5: cross-attention", "rollout_cue_recall_at_5": "cue recall@5: rollout",
    "random_cue_recall_at_5": "cue recall@5: chance",
}


def faithfulness_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Runs x measures, each "mean [95% CI]" (blank where a model cannot have it), with the pair count."""
    rows = {}
    for name, result in results.items():
        row = {"pairs": result["n_pairs"]}
        for key, label in FAITHFULNESS_COLUMNS.items():
            if key not in result:
                continue  # real data: no boxes or cue words
            row[label] = "" if result[key] is None else _estimate(result, key)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")


def _estimate(result: Mapping[str, Any], key: str) -> str:
    value, interval = result.get(key), result.get(f"{key}_ci")
    if value is None:
        return "n/a"
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _difference(value: float, low: float, high: float) -> str:
    return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"


def verdict_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """(run, comparison) rows: the paired difference "d [95% CI]" (positive: the explanation does better
    than the reference), the pairs and the verdict (`analysis.xai_check.verdicts`)."""
    frames = []
    for name, result in results.items():
        table = verdicts(result)
        if table.empty:
            continue
        frames.append(pd.DataFrame({
            "run": name, "comparison": table.index,
            "difference [95% CI]": [_difference(*row) for row in table[["difference", "ci_low", "ci_high"]].to_numpy()],
            "pairs": table["pairs"].to_numpy(), "verdict": table["verdict"].to_numpy()}))
    if not frames:
        return pd.DataFrame(columns=["difference [95% CI]", "pairs", "verdict"])
    return pd.concat(frames).set_index(["run", "comparison"])


def faithfulness_glue(result: Mapping[str, Any]) -> dict[str, Any]:
    """The proposed model's faithfulness numbers as text ("0.25 [0.17, 0.34]"; "n/a" where it has none), its
    comparisons listed by verdict (`verdicts_ahead`, `verdicts_behind`, `verdicts_undecided`), the pair
    count, the pointing tolerance and the Grad-CAM stage, for the prose."""
    keys = {"pointing_text": "gradcam_pointing_game", "chance_text": "random_pointing_game",
            "centre_text": "center_pointing_game", "randomised_text": "randomized_model_pointing_game",
            "energy_text": "gradcam_energy_in_box", "area_text": "box_area_share",
            "cue_text": "attention_cue_recall_at_5", "cue_chance_text": "random_cue_recall_at_5",
            "rollout_text": "rollout_cue_recall_at_5", "deletion_text": "deletion_auc",
            "random_deletion_text": "random_deletion_auc", "correlation_text": "randomized_model_rank_correlation"}
    values: dict[str, Any] = {name: _estimate(result, key) for name, key in keys.items()}
    table = verdicts(result)
    grouped = {f"verdicts_{verdict}": listing(table.index[table["verdict"] == str(verdict)].tolist())
               for verdict in Verdict}
    return values | grouped | {"n_pairs": int(result["n_pairs"]), "tolerance_px": POINTING_TOLERANCE_PX,
                               "gradcam_stage": result.get("gradcam_stage") or "n/a"}


NO_GROUND_TRUTH = (
    "This release has no ground truth for explanations: no boxes around the objects that carry a genre and no "
    "planted cue words (only the synthetic twin records them). The pointing game, with its chance, centre and "
    "randomised-model references, energy in the box and cue recall need them, so they are not computed here; "
    "this page reports deletion against random order (with its verdict) and, as a description, how much the "
    "maps of a randomly re-initialised copy of the model still rank the poster's cells like the trained maps."
)


def verdict_sentence(result: Mapping[str, Any]) -> str:
    """Each comparison the run has, with its paired difference, interval and verdict (Markdown), then the
    comparisons grouped by verdict."""
    table = verdicts(result)
    if table.empty:
        return "It has no explanation with a reference to compare against."
    parts = [f"{name}: {_difference(row.difference, row.ci_low, row.ci_high)}, **{row.verdict}**"
             for name, row in table.iterrows()]
    groups = {verdict: table.index[table["verdict"] == str(verdict)].tolist() for verdict in Verdict}
    return ("Paired differences (positive: the explanation does better than the reference) with 95% bootstrap "
            f"intervals: {'; '.join(parts)}. Ahead: {listing(groups[Verdict.AHEAD])}; behind: "
            f"{listing(groups[Verdict.BEHIND])}; undecided (the interval includes 0): "
            f"{listing(groups[Verdict.UNDECIDED])}.")


def faithfulness_sentences(model: str, result: Mapping[str, Any], ground_truth: bool) -> dict[str, str]:
    """The faithfulness section's data-dependent sentences (Markdown, `prose.glue_sentences`):
    `faithfulness_scope` (empty on the twin; on MM-IMDb which checks are absent and why) and
    `faithfulness_claim` (the model's numbers and the verdict of each comparison, `verdict_sentence`)."""
    values = faithfulness_glue(result)
    if ground_truth:
        numbers = (f"For {model} ({values['n_pairs']} pairs, maps read at {values['gradcam_stage']}): pointing game "
                   f"{values['pointing_text']} (chance {values['chance_text']}, centre {values['centre_text']}, "
                   f"randomised model {values['randomised_text']}); energy in the box {values['energy_text']} "
                   f"(the box's share of the area {values['area_text']}); cue recall@5 {values['cue_text']} "
                   f"(chance {values['cue_chance_text']}, rollout {values['rollout_text']}); deletion AUC "
                   f"{values['deletion_text']} (random order {values['random_deletion_text']}).")
        return {"faithfulness_scope": "", "faithfulness_claim": f"{numbers} {verdict_sentence(result)}"}
    numbers = (f"For {model} ({values['n_pairs']} pairs of true genres it predicts): deletion AUC "
               f"{values['deletion_text']} (random order {values['random_deletion_text']}); rank correlation of "
               f"its Grad-CAM maps with those of the same model with re-initialised weights "
               f"{values['correlation_text']} (a description: 1 would mean the maps ignore what was learned).")
    return {"faithfulness_scope": NO_GROUND_TRUTH, "faithfulness_claim": f"{numbers} {verdict_sentence(result)}"}


def variant_sentences(variant: str | None, results: Mapping[str, Mapping[str, Any]], ground_truth: bool) -> str:
    """The best variant's numbers and verdicts (Markdown), as `faithfulness_sentences` gives the proposed
    model's; a note when the profile has no variant."""
    if variant is None or variant not in results:
        return "The profile defines no variant of the proposed model, so there is no best variant to explain."
    claim = faithfulness_sentences(variant, results[variant], ground_truth)["faithfulness_claim"]
    return f"The best variant by macro-F1: {claim}"


def maps_difference_sentence(results: Mapping[str, Mapping[str, Any]], fusion: str, image: str,
                             n_resamples: int) -> str:
    """Whether the fusion's Grad-CAM maps point into the evidence boxes more or less often than the
    image-only model's (Markdown): the paired difference of their pointing games over the pairs both
    explained (`xai.between_runs.compare_runs`), with its interval and verdict. Nothing is said about the
    two maps differing unless the interval says so."""
    found = {c.measure: c for c in compare_runs(results[fusion], results[image], n_resamples)}.get(POINTING)
    if found is None or not found.difference.n:
        return ("Without ground-truth boxes the two models' maps cannot be compared by where they point; the "
                "figure shows them, it does not say that they differ.")
    difference = found.difference
    verdict = verdict_of(difference.low, difference.high)
    reading = {Verdict.AHEAD: f"{fusion}'s maps point into the box more often than {image}'s",
               Verdict.BEHIND: f"{fusion}'s maps point into the box less often than {image}'s",
               Verdict.UNDECIDED: ("the sampled pairs cannot tell the two models' maps apart by where they point, "
                                   "so any difference the eye sees in this one poster is not evidence")}[verdict]
    return (f"On the {difference.n} pairs both runs explained, the pointing game of {fusion} minus that of "
            f"{image} is {_difference(difference.mean, difference.low, difference.high)} (**{verdict}**): "
            f"{reading}.")


# ------------------------------------------------------------------------- cross-attention vs the others

# The fusions the proposed model's explanations are compared with, when the grid produced them (plain
# fusion_late combines finished runs' predictions: no network of its own, nothing to explain; its joint
# variant trains one) and the best variant, which the chapter adds.
OTHER_FUSIONS = ("fusion_early", "fusion_attention", "fusion_late@joint")
COMPARISON_COLUMNS = ["explanations", "proposed", "other", "difference [95% CI]", "pairs", "verdict"]


def fusion_comparison(results: Mapping[str, Mapping[str, Any]], proposed: str, others: list[str],
                      n_resamples: int) -> pd.DataFrame:
    """(other run, measure) rows: the proposed run against each of `others` it has results for, on the
    pairs (plots) both explained (`xai.between_runs.compare_runs`): which explanation each exposes, each
    one's mean over the shared pairs, the paired difference "d [95% CI]" (positive: the proposed model's
    explanations are more faithful; deletion, lower is better, is oriented the same way), the pairs and the
    verdict (`analysis.verdicts`)."""
    rows = {}
    for other in others:
        if other == proposed or other not in results:
            continue
        for found in compare_runs(results[proposed], results[other], n_resamples):
            estimate = found.difference
            rows[(other, found.measure)] = {
                "explanations": f"{found.source_a} / {found.source_b}",
                "proposed": _mean(found.mean_a), "other": _mean(found.mean_b),
                "difference [95% CI]": _difference(estimate.mean, estimate.low, estimate.high) if estimate.n else "n/a",
                "pairs": estimate.n, "verdict": str(verdict_of(estimate.low, estimate.high))}
    if not rows:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COMPARISON_COLUMNS)
    return table.rename_axis(["other run", "measure"])


def _mean(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"  # NaN: no shared pair


def fusion_comparison_sentence(table: pd.DataFrame, proposed: str) -> str:
    """The answer to "are the proposed model's explanations more faithful than the other fusions'?"
    (Markdown), read from the verdicts of `fusion_comparison` only: the comparisons it is ahead in, behind
    in and undecided in, and how many of each; nothing stronger than the intervals."""
    if table.empty:
        return (f"No other fusion with explanations was trained in this grid, so {proposed}'s explanations "
                "are not compared with another fusion's.")
    counts = {verdict: int((table["verdict"] == str(verdict)).sum()) for verdict in Verdict}
    named = {verdict: _by_measure(table, verdict) for verdict in Verdict}
    tally = (f"ahead in {counts[Verdict.AHEAD]}, behind in {counts[Verdict.BEHIND]} and undecided in "
             f"{counts[Verdict.UNDECIDED]} of {len(table)} comparisons")
    if counts[Verdict.AHEAD] == len(table):
        answer = "yes, on every measure against every other fusion compared"
    elif counts[Verdict.BEHIND] == len(table):
        answer = "no: they are less faithful on every measure against every other fusion compared"
    elif counts[Verdict.UNDECIDED] == len(table):
        answer = "the sampled pairs cannot tell: every comparison's interval includes 0"
    elif not counts[Verdict.AHEAD]:
        answer = f"no, nowhere ahead: {tally}"
    elif not counts[Verdict.BEHIND]:
        answer = f"in part, and nowhere behind: {tally}"
    else:
        answer = f"mixed: {tally}"
    return (f"Are {proposed}'s explanations more faithful than the other fusions'? By the paired intervals, "
            f"{answer}. Ahead: {named[Verdict.AHEAD]}. Behind: {named[Verdict.BEHIND]}. Undecided: "
            f"{named[Verdict.UNDECIDED]}.")


def _by_measure(table: pd.DataFrame, verdict: Verdict) -> str:
    """"pointing game (Grad-CAM) against a and b; cue recall@5 against c": the rows with `verdict`."""
    rows = table.index[table["verdict"] == str(verdict)]
    measures = dict.fromkeys(measure for _, measure in rows)
    return "; ".join(f"{measure} against {listing([other for other, m in rows if m == measure])}"
                     for measure in measures) or "none"


def comparison_measures() -> str:
    """The measures compared between runs, listed for the prose."""
    return listing([measure.name for measure in MEASURES])
