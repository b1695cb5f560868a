"""How faithful are the explanations of one trained run? `evaluate_run(run, truth, config)`.

For a run (`ExplainableRun`: a model, its test movies and the way to batch them) the check draws a fixed,
seeded sample of at most `max_pairs` (poster, genre) pairs of the test split and scores its explanations
(`analysis.xai_check` runs it over every run of a runs folder: `thesis xai check`):

On the synthetic twin (ROOT holds twin_truth.json):
    pairs: true-positive genres (labelled, and predicted at the run's thresholds) whose evidence involves
    the poster (image | both | interaction | alignment) and whose planted object exists (the rule's
    object kind; for alignment genres the prop the plot names).
    gradcam_pointing_game            the Grad-CAM maximum lies in the object's box (poster pixel frame)
    hirescam_pointing_game           the same for HiResCAM (Draelos & Carin 2020), the second method
    random_pointing_game             a uniformly random point does (exact: the boxes' share of the area)
    center_pointing_game             the poster's centre does
    randomized_model_pointing_game   Grad-CAM of the same model with re-initialised weights does
    gradcam_energy_in_box            share of the Grad-CAM map's mass inside the box (Wang et al. 2020)
    box_area_share                   the boxes' share of the poster's area: what a uniform map puts in them
                                     (energy's chance level; the strict pointing game's chance too)
    deletion_auc / random_deletion_auc   genre probability while the most highlighted 0..100% of the
                                     poster becomes a blurred copy (lower = more faithful); random order
    randomized_model_rank_correlation    Spearman correlation of the trained and the randomised maps
    gradcam_flat_map_share           share of pairs whose Grad-CAM map is all zero (every weighted activation
                                     negative: the map says nothing, its pointing is a coin toss)
    attention_cue_recall_at_5        (cross-attention models) share of a plot's planted cue words among
                                     its 5 most attended words (poster -> plot attention, merged to words)
    rollout_cue_recall_at_5          (text-reading models) the same with text-encoder attention rollout
    random_cue_recall_at_5           a random ranking of the words (exact expectation)
On real MM-IMDb (no twin_truth.json) there are no boxes or cue words: pairs are true-positive genres of
any kind, and only the deletion scores and the randomised-model correlation are reported.

Resolution: a map's maximum sits on a cell centre of the grid Grad-CAM reads. A ResNet's last stage at
128 px is a 4 x 4 grid whose cell centres fall between the twin's objects (3-7% of a poster each), so its
strict pointing game is near 0 however well it learned. The check reads an earlier stage instead
(`config.gradcam_stage`, xai.gradcam.GRADCAM_STAGE: layer3, an 8 x 8 grid at 128 px, whose cells are
smaller than a planted object, so every box holds a cell centre), and scores the strict game,
POINTING_TOLERANCE_PX = 0: a tolerance large enough to matter would do the localising for the map (at
15 px it added about 0.2 to the layer3 pointing game of the smoke runs, and grew chance with it).

Verdicts: every score is compared with its references by a bootstrap interval of the paired difference
over the same pairs (or plots), `COMPARISONS`, in the result's "comparisons"; `analysis.xai_check` reads
them as `analysis.verdicts` reads any difference: "ahead" (the explanation beats the reference), "behind"
or "undecided".

Deletion costs 22 forward passes per pair, so it runs on the first `max_deletion_pairs` (50) pairs of the
sample.

Every value comes with a percentile bootstrap interval over its pairs (or plots): "<key>_ci": [low, high].
A key a model cannot have (Grad-CAM of a text-only model) is null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import TextCleaningConfig
from thesis_lib.errors import ThesisError
from thesis_lib.genres import GENRES
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.xai.attention import explain_attention, rollout_token_importance, word_piece_importance
from thesis_lib.xai.faithfulness import (
    blurred_copy,
    center_point_hit,
    cue_recall_at_k,
    deletion_auc,
    deletion_curve,
    difference_with_ci,
    energy_in_boxes,
    mean_with_ci,
    pointing_hit,
    random_cue_recall_at_k,
    random_point_hit_rate,
    random_saliency,
    twin_evidence_boxes,
)
from thesis_lib.xai.gradcam import GRADCAM_STAGE, PosterOnlyModel, cam_maps, gradcam_maps, randomized_copy
from thesis_lib.xai.words import plot_word_scores

POINTING_KEYS = ("gradcam_pointing_game", "hirescam_pointing_game", "random_pointing_game", "center_pointing_game",
                 "randomized_model_pointing_game", "gradcam_energy_in_box", "box_area_share")
DELETION_KEYS = ("deletion_auc", "random_deletion_auc", "randomized_model_rank_correlation", "gradcam_flat_map_share")
CUE_KEYS = ("attention_cue_recall_at_5", "rollout_cue_recall_at_5", "random_cue_recall_at_5")
TWIN_KEYS = POINTING_KEYS + DELETION_KEYS + CUE_KEYS
REAL_KEYS = DELETION_KEYS


# The pointing game's margin in poster pixels (Zhang et al. 2018 allow 15 px): 0, strictly inside the box, now
# that the map's grid resolves the objects (module docstring). One value for `thesis xai check` (its
# --tolerance default) and the book's faithfulness table.
POINTING_TOLERANCE_PX = 0.0


@dataclass(frozen=True)
class Comparison:
    """A score against one of its references over the same pairs: ahead = the explanation does better."""

    name: str  # how the prose and the table name it
    key: str  # the explanation's score
    reference: str  # the reference's score on the same pairs (or plots)
    lower_is_better: bool = False  # deletion AUC: the difference is then reference - score

    @property
    def label(self) -> str:
        return f"{self.key} vs {self.reference}"


COMPARISONS = (
    Comparison("pointing game against chance (a random point)", "gradcam_pointing_game", "random_pointing_game"),
    Comparison("pointing game against the poster's centre", "gradcam_pointing_game", "center_pointing_game"),
    Comparison("pointing game against the randomised model's map", "gradcam_pointing_game",
               "randomized_model_pointing_game"),
    Comparison("energy in the box against the box's share of the area", "gradcam_energy_in_box", "box_area_share"),
    Comparison("deletion AUC against random order", "deletion_auc", "random_deletion_auc", lower_is_better=True),
    Comparison("cross-attention cue recall@5 against chance", "attention_cue_recall_at_5", "random_cue_recall_at_5"),
    Comparison("rollout cue recall@5 against chance", "rollout_cue_recall_at_5", "random_cue_recall_at_5"),
    Comparison("cross-attention cue recall@5 against rollout", "attention_cue_recall_at_5", "rollout_cue_recall_at_5"),
)


class XaiCheckError(ThesisError, ValueError):
    """The runs or the data cannot be checked (no runs, a run without weights, mismatched data)."""


@dataclass(frozen=True)
class XaiCheckConfig:
    """How much of each run is evaluated, and how."""

    max_pairs: int = 200  # (poster, genre) pairs per run: a fixed, seeded sample, so the check stays fast
    max_plots: int = 200  # plots per run for cue recall (twin movies with planted cue words)
    seed: int = 0  # sampling, tie breaks, random baselines and the model re-initialisation
    # Pointing-game margin in poster pixels: 0 = strictly inside the box; Zhang et al. (2018) allow 15 px.
    pointing_tolerance_px: float = POINTING_TOLERANCE_PX
    method: str = "gradcam"  # the main method, "gradcam" | "gradcam++" | "hirescam" (HiResCAM is always compared)
    gradcam_stage: str | None = GRADCAM_STAGE  # the CNN stage the maps read (None: the last); ViTs: the patch grid
    # Deletion costs deletion_steps + 1 forward passes per curve and two curves per pair (the map and
    # random order): it runs on the first max_deletion_pairs pairs of the sample only.
    max_deletion_pairs: int = 50
    deletion_steps: int = 10  # the curve is read at 0, 10, ..., 100% of the poster deleted
    blur_sigma: float = 16.0  # px of the model input: the blurred copy deleted pixels become
    top_k: int = 5  # cue recall@k
    # How word pieces combine into a word's score for ranking: "mean", because a sum favours words split
    # into many pieces (rare words, like the cue words under a small trained tokenizer) by length alone.
    word_reduce: str = "mean"
    batch_size: int = 16  # movies per forward pass
    n_resamples: int = 1000  # bootstrap resamples for the intervals


class ExplainableRun(Protocol):
    """What the check needs of a trained run: its model, its test movies and the way to batch them.

    `experiments.loaded_run.LoadedRun` (a run back from its folder) is one; so is anything with these
    attributes (a model built in a notebook, a fake in a test)."""

    model_name: str
    seed: int
    model: GenreClassifier  # trained weights, eval mode
    movies: Mapping[str, Movie]  # the test split by id
    thresholds: np.ndarray  # (23,) the run's decision thresholds (0.5, or tuned on validation)
    tokenizer: Any  # the run's fast tokenizer (None for a model that reads no plot)
    text_cleaning: TextCleaningConfig | None  # the cleaning its dataset applied
    max_length: int | None  # the collator's truncation length
    rollout_model: GenreClassifier | None  # the same weights with the text encoder's attention on
    probabilities: Mapping[str, np.ndarray] | None  # id -> (23,) saved test predictions, if the run has them

    def make_batch(self, ids: Sequence[str]) -> dict[str, Any]:
        """ids -> the model's batch (eval transforms)."""
        ...


@dataclass(frozen=True)
class Pair:
    """One (poster, genre) to explain."""

    movie_id: str
    genre: int  # index into GENRES
    boxes: tuple[tuple[int, ...], ...]  # the evidence objects' boxes in poster pixels (empty on real data)

    @property
    def key(self) -> str:
        """"<movie id>/<genre>": how the pair's values are keyed, the same in every run (`xai.between_runs`)."""
        return f"{self.movie_id}/{GENRES[self.genre]}"


PairValues = dict[str, dict[str, float]]  # score -> pair key (or plot's movie id) -> value, in sample order


# ------------------------------------------------------------------------------------------------ pairs


def _probabilities(run: ExplainableRun, ids: Sequence[str], batch_size: int) -> np.ndarray:
    """(N, 23) probabilities of `ids`: the run's saved predictions, else a forward pass."""
    if run.probabilities is not None:
        return np.stack([run.probabilities[movie_id] for movie_id in ids]) if ids else np.zeros((0, len(GENRES)))
    probs = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            batch = run.make_batch(ids[start : start + batch_size])
            probs.append(torch.sigmoid(run.model(batch).logits).float().cpu().numpy())  # (b, 23)
    return np.concatenate(probs) if probs else np.zeros((0, len(GENRES)))


def select_pairs(run: ExplainableRun, truth: Mapping[str, Any] | None, config: XaiCheckConfig) -> list[Pair]:
    """The run's fixed sample of true-positive (poster, genre) pairs (see the module docstring).

    Candidate movies are shuffled with `config.seed` and predicted a chunk at a time until enough
    true positives are found, so only as many movies are run as the sample needs.
    """
    candidates: dict[str, list[tuple[int, tuple[tuple[int, ...], ...]]]] = {}
    for movie_id in sorted(run.movies):
        genres = []
        for genre in run.movies[movie_id].genres:
            boxes = () if truth is None else tuple(map(tuple, twin_evidence_boxes(truth, movie_id, genre)))
            if truth is None or boxes:
                genres.append((GENRES.index(genre), boxes))
        if genres:
            candidates[movie_id] = genres
    order = list(candidates)
    np.random.default_rng(config.seed).shuffle(order)
    pairs: list[Pair] = []
    chunk = 4 * config.batch_size
    for start in range(0, len(order), chunk):
        ids = order[start : start + chunk]
        probs = _probabilities(run, ids, config.batch_size)  # (n, 23)
        for movie_id, row in zip(ids, probs, strict=True):
            pairs += [Pair(movie_id, g, boxes) for g, boxes in candidates[movie_id] if row[g] >= run.thresholds[g]]
        if len(pairs) >= config.max_pairs:
            break
    return pairs[: config.max_pairs]


# ------------------------------------------------------------------------------------ poster scores


def _poster_size(movie: Movie) -> tuple[int, int]:
    with Image.open(movie.poster) as image:  # reads the header only
        return image.size


def _rank_correlation(a: np.ndarray, b: np.ndarray, cell: int = 8) -> float:
    """Spearman correlation of two maps after `cell` x `cell` average pooling (NaN for a flat map)."""
    from scipy.stats import spearmanr

    def pooled(cam: np.ndarray) -> np.ndarray:
        height, width = (cam.shape[0] // cell) * cell, (cam.shape[1] // cell) * cell
        return cam[:height, :width].reshape(height // cell, cell, width // cell, cell).mean(axis=(1, 3)).ravel()

    x, y = pooled(a), pooled(b)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def poster_scores(run: ExplainableRun, pairs: Sequence[Pair], twin: bool, config: XaiCheckConfig) -> PairValues:
    """Per-pair values of the pointing game (twin only), deletion and the randomised-model check, keyed by
    `Pair.key`."""
    values: PairValues = {key: {} for key in (POINTING_KEYS if twin else ()) + DELETION_KEYS}
    randomized = randomized_copy(run.model, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    for start in range(0, len(pairs), config.batch_size):
        chunk = pairs[start : start + config.batch_size]
        ids = list(dict.fromkeys(pair.movie_id for pair in chunk))
        batch = run.make_batch(ids)
        held = PosterOnlyModel(run.model, batch)  # the plots (and objects) of these movies, encoded once
        targets = [(ids.index(pair.movie_id), pair.genre) for pair in chunk]
        chunk_size = config.batch_size
        stage = config.gradcam_stage
        both = cam_maps(run.model, batch, targets, (config.method, "hirescam"), chunk_size, held, stage)
        maps, second_maps = both[config.method], both["hirescam"]
        random_maps = gradcam_maps(randomized, batch, targets, config.method, chunk_size, stage=stage)
        for index, (pair, (row, genre), cam, random_cam, second_cam) in enumerate(
            zip(chunk, targets, maps, random_maps, second_maps, strict=True), start=start
        ):
            if twin:
                poster = _poster_size(run.movies[pair.movie_id])  # (W, H) of the JPEG the boxes refer to
                margin = config.pointing_tolerance_px
                for key, pointed in (("gradcam_pointing_game", cam), ("hirescam_pointing_game", second_cam),
                                     ("randomized_model_pointing_game", random_cam)):
                    values[key][pair.key] = float(pointing_hit(pointed, pair.boxes, poster, rng, margin))
                grown = [[x0 - margin, y0 - margin, x1 + margin, y1 + margin] for x0, y0, x1, y1 in pair.boxes]
                values["random_pointing_game"][pair.key] = random_point_hit_rate(grown, poster)
                values["center_pointing_game"][pair.key] = float(center_point_hit(grown, poster))
                values["gradcam_energy_in_box"][pair.key] = energy_in_boxes(cam, pair.boxes, poster)
                values["box_area_share"][pair.key] = random_point_hit_rate(pair.boxes, poster)
            values["randomized_model_rank_correlation"][pair.key] = _rank_correlation(cam, random_cam)
            values["gradcam_flat_map_share"][pair.key] = float(cam.max() <= 0.0)
            if index >= config.max_deletion_pairs:
                continue
            movie = held.select([row])

            def genre_probability(images: torch.Tensor, movie=movie, genre=genre) -> torch.Tensor:
                return torch.sigmoid(movie(images))[:, genre]  # (N,) this movie's plot with each poster variant

            image = batch["image"][row]  # (3, S, S)
            blurred = blurred_copy(image, config.blur_sigma)  # (3, S, S) shared by both curves
            for key, saliency in (("deletion_auc", cam), ("random_deletion_auc", random_saliency(cam.shape, rng))):
                curve = deletion_curve(genre_probability, image, saliency, config.deletion_steps, baseline=blurred,
                                       rng=rng)
                values[key][pair.key] = deletion_auc(*curve)
    return values


# --------------------------------------------------------------------------------------- cue words


def cue_movies(run: ExplainableRun, truth: Mapping[str, Any], config: XaiCheckConfig) -> list[str]:
    """A fixed, seeded sample of test movies with planted evidence cue words (checked against the plot)."""
    ids = []
    for movie_id in sorted(run.movies):
        cues = _cue_spans(truth, movie_id)
        plot = run.movies[movie_id].plot
        for start, end, word in cues:
            if plot[start:end].lower() != word.lower():
                raise XaiCheckError(
                    f"twin_truth.json: cue word {word!r} of movie {movie_id} is not at {start}:{end} of its plot "
                    f"(found {plot[start:end]!r}); was the release loaded with another plot choice than 'longest'?"
                )
        if cues:
            ids.append(movie_id)
    np.random.default_rng(config.seed).shuffle(ids)
    return ids[: config.max_plots]


def _cue_spans(truth: Mapping[str, Any], movie_id: str) -> list[tuple[int, int, str]]:
    return [(*cue["char_span"], cue["word"]) for cue in truth["movies"][movie_id]["cue_words"]
            if cue["role"] == "evidence"]


def cue_scores(run: ExplainableRun, truth: Mapping[str, Any], config: XaiCheckConfig) -> PairValues:
    """Per-plot cue recall@k of cross-attention word importance and of text-encoder rollout, and chance, keyed
    by movie id (`cue_movies` draws the same plots for every run of a test split).

    Empty when the model has neither (e.g. early fusion built without the text encoder's attention).
    """
    sources: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {}
    if "image_to_text" in _attention_kinds(run.model):
        sources["attention_cue_recall_at_5"] = lambda batch: word_piece_importance(explain_attention(run.model, batch))
    if run.rollout_model is not None:
        rollout = run.rollout_model
        sources["rollout_cue_recall_at_5"] = lambda batch: rollout_token_importance(explain_attention(rollout, batch))
    if not sources:
        return {}
    values: PairValues = {key: {} for key in (*sources, "random_cue_recall_at_5")}
    ids = cue_movies(run, truth, config)
    for start in range(0, len(ids), config.batch_size):
        chunk = ids[start : start + config.batch_size]
        batch = run.make_batch(chunk)
        token_scores = {key: source(batch).float().cpu().numpy() for key, source in sources.items()}  # (b, L)
        for row, movie_id in enumerate(chunk):
            plot = run.movies[movie_id].plot
            spans = [(first, last) for first, last, _ in _cue_spans(truth, movie_id)]
            real_ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            for key, scores in token_scores.items():
                words = plot_word_scores(plot, scores[row], run.tokenizer, run.text_cleaning, run.max_length,
                                         input_ids=real_ids, reduce=config.word_reduce)
                values[key][movie_id] = cue_recall_at_k(words, spans, config.top_k)
            values["random_cue_recall_at_5"][movie_id] = random_cue_recall_at_k(words, spans, config.top_k)
    return values


def _attention_kinds(model: GenreClassifier) -> set[str]:
    fusion = model.fusion
    if not hasattr(fusion, "image_side"):
        return set()
    return {"text_to_image", "image_to_text"} if getattr(fusion, "bidirectional", False) else {"text_to_image"}


# ------------------------------------------------------------------------------------------ one run


def evaluate_run(
    run: ExplainableRun, truth: Mapping[str, Any] | None, config: XaiCheckConfig = XaiCheckConfig()
) -> dict[str, Any]:
    """Every key this run can have (others null), each with its bootstrap interval and count; under
    "comparisons" every `COMPARISONS` entry it has both sides of (`compare`), by its label; "gradcam_stage"
    what the maps read; "pair_values" the per-pair (per-plot) values behind the means, {score: {pair key:
    value}} (`Pair.key`; a plot's movie id for cue recall), to compare two runs on the pairs both explained
    (`xai.between_runs`; `analysis.xai_check.summarise` leaves them out of the printed summary)."""
    twin = truth is not None
    keys = TWIN_KEYS if twin else REAL_KEYS
    values: PairValues = {}
    pairs: list[Pair] = []
    if "image" in run.model.encoders:
        pairs = select_pairs(run, truth, config)
        values |= poster_scores(run, pairs, twin, config)
    if twin and "text" in run.model.encoders and run.tokenizer is not None:
        values |= cue_scores(run, truth, config)
    result: dict[str, Any] = {"model": run.model_name, "seed": run.seed, "n_pairs": len(pairs)}
    for key in keys:
        finite = [v for v in values.get(key, {}).values() if not np.isnan(v)]
        if key not in values:
            result[key], result[f"{key}_ci"] = None, None
            continue
        estimate = mean_with_ci(finite, config.n_resamples, config.seed)
        result[key] = estimate.mean if estimate.n else None
        result[f"{key}_ci"] = [estimate.low, estimate.high] if estimate.n else None
        result[f"{key}_n"] = estimate.n
    result["comparisons"] = compare(values, config.n_resamples, config.seed)
    result["pair_values"] = {key: {pair: float(v) for pair, v in found.items()} for key, found in values.items()}
    result["gradcam_stage"] = _stage_read(run.model, config.gradcam_stage)
    return result


def compare(values: Mapping[str, Mapping[str, float]], n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Each comparison whose two scores were measured: {label: {"name", "difference", "ci", "n"}}, the paired
    difference over the pairs (keys of `values[score]`) both were measured on, oriented so that a positive
    one means the explanation beats its reference (its verdict is read by `analysis.xai_check.verdicts`)."""
    compared = {}
    for comparison in COMPARISONS:
        if comparison.key not in values or comparison.reference not in values:
            continue
        found, references = values[comparison.key], values[comparison.reference]
        shared = [pair for pair in found if pair in references]
        score = np.asarray([found[pair] for pair in shared], dtype=np.float64)
        reference = np.asarray([references[pair] for pair in shared], dtype=np.float64)
        better, worse = (reference, score) if comparison.lower_is_better else (score, reference)
        estimate = difference_with_ci(better, worse, n_resamples, seed)
        if not estimate.n:
            continue
        compared[comparison.label] = {"name": comparison.name, "difference": estimate.mean,
                                      "ci": [estimate.low, estimate.high], "n": estimate.n}
    return compared


def _stage_read(model: GenreClassifier, stage: str | None) -> str | None:
    """What the maps read: the CNN stage's name, "patches" for a ViT, None without a poster encoder."""
    encoder = model.encoders["image"] if "image" in model.encoders else None
    if encoder is None:
        return None
    stages = encoder.gradcam_stages()
    return "patches" if not stages else (stage or stages[0])
