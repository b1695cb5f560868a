"""`thesis xai check --data ROOT --runs RUNS_DIR [--json]`: how faithful are the explanations of trained runs?

For every run under RUNS_DIR (RUNS/<model>/seed<k>/) the check draws a fixed, seeded sample of at most
`max_pairs` (poster, genre) pairs of the test split and scores its explanations:

On the synthetic twin (ROOT holds twin_truth.json):
    pairs: true-positive genres (labelled, and predicted at the run's thresholds) whose evidence involves
    the poster (image | both | interaction | alignment) and whose planted object exists (the rule's
    object kind; for alignment genres the prop the plot names).
    gradcam_pointing_game            the Grad-CAM maximum lies in the object's box (poster pixel frame)
    hirescam_pointing_game           the same for HiResCAM (Draelos & Carin 2020), the second method
    random_pointing_game             a uniformly random point does (exact: the boxes' share of the area)
    center_pointing_game             the poster's centre does
    randomized_model_pointing_game   Grad-CAM of the same model with re-initialised weights does
    gradcam_energy_in_box            share of the Grad-CAM map's mass inside the box (Wang et al. 2020);
                                     its chance level is random_pointing_game (a uniform map)
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

Reading the pointing game: a map's maximum sits on a cell centre of its grid. A ResNet at 112-128 px has a
4 x 4 grid whose cell centres fall between the rows of the twin's 3 x 3 object layout, so its strict
pointing game is near 0 however well it learned (its energy share and deletion AUC still show it);
`pointing_tolerance_px=15` gives Zhang et al.'s tolerant variant, and 224 px inputs a 7 x 7 grid.

Deletion costs 22 forward passes per pair, so it runs on the first `max_deletion_pairs` (50) pairs of the
sample. Runs with nothing to explain (baselines, late fusion of finished runs' predictions, detections-only
models, detections that cannot be produced here) are listed under "skipped_runs" with the reason.

Every value comes with a percentile bootstrap interval over its pairs (or plots): "<key>_ci": [low, high].
With --json one object is printed: its top-level keys are the values of fusion_cross_attention seed 0
(the thesis model), and "per_run" lists the same keys for every run, with "model" and "seed".
A key a model cannot have (Grad-CAM of a text-only model) is null.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.data.splits import Split
from thesis_lib.data.text import TextCleaningConfig
from thesis_lib.errors import ThesisError
from thesis_lib.genres import GENRES
from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import (
    ModelConfig,
)
from thesis_lib.xai.attention import explain_attention, rollout_token_importance, word_piece_importance
from thesis_lib.xai.faithfulness import (
    blurred_copy,
    center_point_hit,
    cue_recall_at_k,
    deletion_auc,
    deletion_curve,
    energy_in_boxes,
    mean_with_ci,
    pointing_hit,
    random_cue_recall_at_k,
    random_point_hit_rate,
    random_saliency,
    twin_evidence_boxes,
)
from thesis_lib.xai.gradcam import PosterOnlyModel, gradcam_maps, randomized_copy
from thesis_lib.xai.words import plot_word_scores

log = logging.getLogger(__name__)

HEADLINE = ("fusion_cross_attention", 0)  # (model, seed) whose values are the JSON's top-level keys
THRESHOLD_POLICY = "tuned_per_genre"  # which predictions count as positive: the run's dev-tuned thresholds
POINTING_KEYS = ("gradcam_pointing_game", "hirescam_pointing_game", "random_pointing_game", "center_pointing_game",
                 "randomized_model_pointing_game", "gradcam_energy_in_box")
DELETION_KEYS = ("deletion_auc", "random_deletion_auc", "randomized_model_rank_correlation", "gradcam_flat_map_share")
CUE_KEYS = ("attention_cue_recall_at_5", "rollout_cue_recall_at_5", "random_cue_recall_at_5")
TWIN_KEYS = POINTING_KEYS + DELETION_KEYS + CUE_KEYS
REAL_KEYS = DELETION_KEYS


class XaiCheckError(ThesisError, ValueError):
    """The runs or the data cannot be checked (no runs, a run without weights, mismatched data)."""


@dataclass(frozen=True)
class XaiCheckConfig:
    """How much of each run is evaluated, and how."""

    max_pairs: int = 200  # (poster, genre) pairs per run: a fixed, seeded sample, so the check stays fast
    max_plots: int = 200  # plots per run for cue recall (twin movies with planted cue words)
    seed: int = 0  # sampling, tie breaks, random baselines and the model re-initialisation
    # Pointing-game margin in poster pixels: 0 = strictly inside the box; Zhang et al. (2018) allow 15 px.
    pointing_tolerance_px: float = 0.0
    method: str = "gradcam"  # the main method, "gradcam" | "gradcam++" | "hirescam" (HiResCAM is always compared)
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


@dataclass
class RunUnderTest:
    """One trained run, as the check needs it (built by `load_run`, or by hand in tests)."""

    model_name: str
    seed: int
    model: GenreClassifier  # trained weights, eval mode
    movies: Mapping[str, Movie]  # the test split by id
    make_batch: Callable[[Sequence[str]], dict[str, Any]]  # ids -> the model's batch (eval transforms)
    thresholds: np.ndarray  # (23,) the run's decision thresholds (0.5, or tuned on validation)
    tokenizer: Any = None  # the run's fast tokenizer (text-reading models)
    text_cleaning: TextCleaningConfig | None = None  # the cleaning its dataset applied
    max_length: int | None = None  # the collator's truncation length
    rollout_model: GenreClassifier | None = None  # the same weights with the text encoder's attention on
    probabilities: Mapping[str, np.ndarray] | None = None  # id -> (23,) saved test predictions, if the run has them


@dataclass(frozen=True)
class Pair:
    """One (poster, genre) to explain."""

    movie_id: str
    genre: int  # index into GENRES
    boxes: tuple[tuple[int, ...], ...]  # the evidence objects' boxes in poster pixels (empty on real data)


# ------------------------------------------------------------------------------------------------ pairs


def _probabilities(run: RunUnderTest, ids: Sequence[str], batch_size: int) -> np.ndarray:
    """(N, 23) probabilities of `ids`: the run's saved predictions, else a forward pass."""
    if run.probabilities is not None:
        return np.stack([run.probabilities[movie_id] for movie_id in ids]) if ids else np.zeros((0, len(GENRES)))
    probs = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            batch = run.make_batch(ids[start : start + batch_size])
            probs.append(torch.sigmoid(run.model(batch).logits).float().cpu().numpy())  # (b, 23)
    return np.concatenate(probs) if probs else np.zeros((0, len(GENRES)))


def select_pairs(run: RunUnderTest, truth: Mapping[str, Any] | None, config: XaiCheckConfig) -> list[Pair]:
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


def poster_scores(
    run: RunUnderTest, pairs: Sequence[Pair], twin: bool, config: XaiCheckConfig
) -> dict[str, list[float]]:
    """Per-pair values of the pointing game (twin only), deletion and the randomised-model check."""
    values: dict[str, list[float]] = {key: [] for key in (POINTING_KEYS if twin else ()) + DELETION_KEYS}
    randomized = randomized_copy(run.model, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    for start in range(0, len(pairs), config.batch_size):
        chunk = pairs[start : start + config.batch_size]
        ids = list(dict.fromkeys(pair.movie_id for pair in chunk))
        batch = run.make_batch(ids)
        held = PosterOnlyModel(run.model, batch)  # the plots (and objects) of these movies, encoded once
        targets = [(ids.index(pair.movie_id), pair.genre) for pair in chunk]
        chunk_size = config.batch_size
        maps = gradcam_maps(run.model, batch, targets, config.method, chunk_size, held=held)
        second_maps = gradcam_maps(run.model, batch, targets, "hirescam", chunk_size, held=held)
        random_maps = gradcam_maps(randomized, batch, targets, config.method, chunk_size)
        for index, (pair, (row, genre), cam, random_cam, second_cam) in enumerate(
            zip(chunk, targets, maps, random_maps, second_maps, strict=True), start=start
        ):
            if twin:
                poster = _poster_size(run.movies[pair.movie_id])  # (W, H) of the JPEG the boxes refer to
                margin = config.pointing_tolerance_px
                for key, pointed in (("gradcam_pointing_game", cam), ("hirescam_pointing_game", second_cam),
                                     ("randomized_model_pointing_game", random_cam)):
                    values[key].append(float(pointing_hit(pointed, pair.boxes, poster, rng, margin)))
                grown = [[x0 - margin, y0 - margin, x1 + margin, y1 + margin] for x0, y0, x1, y1 in pair.boxes]
                values["random_pointing_game"].append(random_point_hit_rate(grown, poster))
                values["center_pointing_game"].append(float(center_point_hit(grown, poster)))
                values["gradcam_energy_in_box"].append(energy_in_boxes(cam, pair.boxes, poster))
            values["randomized_model_rank_correlation"].append(_rank_correlation(cam, random_cam))
            values["gradcam_flat_map_share"].append(float(cam.max() <= 0.0))
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
                values[key].append(deletion_auc(*curve))
    return values


# --------------------------------------------------------------------------------------- cue words


def cue_movies(run: RunUnderTest, truth: Mapping[str, Any], config: XaiCheckConfig) -> list[str]:
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


def cue_scores(run: RunUnderTest, truth: Mapping[str, Any], config: XaiCheckConfig) -> dict[str, list[float]]:
    """Per-plot cue recall@k of cross-attention word importance and of text-encoder rollout, and chance.

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
    values: dict[str, list[float]] = {key: [] for key in (*sources, "random_cue_recall_at_5")}
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
                values[key].append(cue_recall_at_k(words, spans, config.top_k))
            values["random_cue_recall_at_5"].append(random_cue_recall_at_k(words, spans, config.top_k))
    return values


def _attention_kinds(model: GenreClassifier) -> set[str]:
    fusion = model.fusion
    if not hasattr(fusion, "image_side"):
        return set()
    return {"text_to_image", "image_to_text"} if getattr(fusion, "bidirectional", False) else {"text_to_image"}


# ------------------------------------------------------------------------------------------ one run


def evaluate_run(
    run: RunUnderTest, truth: Mapping[str, Any] | None, config: XaiCheckConfig = XaiCheckConfig()
) -> dict[str, Any]:
    """Every key this run can have (others null), each with its bootstrap interval and count."""
    twin = truth is not None
    keys = TWIN_KEYS if twin else REAL_KEYS
    values: dict[str, list[float]] = {}
    pairs: list[Pair] = []
    if "image" in run.model.encoders:
        pairs = select_pairs(run, truth, config)
        values |= poster_scores(run, pairs, twin, config)
    if twin and "text" in run.model.encoders and run.tokenizer is not None:
        values |= cue_scores(run, truth, config)
    result: dict[str, Any] = {"model": run.model_name, "seed": run.seed, "n_pairs": len(pairs)}
    for key in keys:
        finite = [v for v in values.get(key, []) if not np.isnan(v)]
        if key not in values:
            result[key], result[f"{key}_ci"] = None, None
            continue
        estimate = mean_with_ci(finite, config.n_resamples, config.seed)
        result[key] = estimate.mean if estimate.n else None
        result[f"{key}_ci"] = [estimate.low, estimate.high] if estimate.n else None
        result[f"{key}_n"] = estimate.n
    return result


# ------------------------------------------------------------------------------------------- command


def find_runs(runs: Path) -> list[tuple[str, int, Path]]:
    """(model, seed, folder) of every run folder RUNS/<model>/seed<k>/ holding a record.json, sorted."""
    if not runs.is_dir():
        raise XaiCheckError(f"runs folder {runs} does not exist")
    found = []
    for record in sorted(runs.glob("*/seed*/record.json")):
        folder = record.parent
        seed = folder.name.removeprefix("seed")
        if seed.isdigit():
            found.append((folder.parent.name, int(seed), folder))
    if not found:
        raise XaiCheckError(f"no runs under {runs}: expected <model>/seed<k>/record.json")
    return sorted(found)


class NotExplainable(Exception):
    """A run the check has nothing to explain in (a baseline, late fusion of predictions, detections only)."""


def _run_tokenizer(config: ModelConfig, record: Mapping[str, Any], split: Split, release: Release) -> Any:
    """The tokenizer the run read its plots with (`pipeline.run_tokenizer`), checked against the model."""
    from thesis_lib.experiments.pipeline import run_tokenizer
    from thesis_lib.models.text import RANDOM_TEXT_BACKBONES

    tokenizer = run_tokenizer(config.text, record["text_cleaning"], release.movies_in(split.train))
    trained_here = config.text.backbone in RANDOM_TEXT_BACKBONES  # its vocabulary size is the model's
    if trained_here and len(tokenizer) != config.text.vocab_size:
        raise XaiCheckError(f"run {record['name']}/seed{record['seed']}: the re-made tokenizer has {len(tokenizer)} "
                            f"entries, the model {config.text.vocab_size}: not the tokenizer it was trained with")
    return tokenizer


def load_run(folder: Path, release: Release, objects: dict[str, Any] | None = None) -> RunUnderTest:
    """A finished run folder -> `RunUnderTest`: its best weights, test split, eval batches, tokenizer,
    saved test predictions and dev-tuned per-genre thresholds. `objects` caches detection providers
    across runs. Raises `NotExplainable` for runs without a poster or plot encoder to explain.
    The weights come back through `experiments.restore` (a fusion's frozen encoders from its source runs)."""
    from thesis_lib.data.dataset import MMIMDbDataset, MultimodalCollator
    from thesis_lib.experiments.objects import ObjectsProvider
    from thesis_lib.experiments.pipeline import (
        TEXT_CLEANINGS,
        ObjectsCollator,
        RawBatchCollator,
        SourceRunError,
        image_transforms,
    )
    from thesis_lib.experiments.records import (
        PREDICTIONS_TEST,
        RecordError,
        model_config_from_dict,
        read_predictions,
        read_record,
        run_split,
        tuned_thresholds,
    )
    from thesis_lib.experiments.restore import restore_trained_model
    from thesis_lib.models.registry import build_from_config
    from thesis_lib.train.checkpoint import CheckpointMismatchError

    record = read_record(folder)
    if record is None:
        raise NotExplainable("not finished (no record.json)")
    if record.get("kind") != "train":
        raise NotExplainable(f"a {record.get('kind')} run has no network of its own")
    if record["data"]["fingerprint"] != release.fingerprint:
        raise XaiCheckError(f"run {folder} was trained on other data (fingerprint {record['data']['fingerprint'][:12]}"
                            f", {record['data']['root']}) than {release.root} ({release.fingerprint[:12]})")
    config = model_config_from_dict(record["model_config"])
    heavy = tuple(m for m in config.modalities if m != "objects")
    if not heavy:
        raise NotExplainable("reads detections only (no poster or plot encoder)")
    try:
        model = restore_trained_model(folder, record, config=config)  # eval mode
    except (SourceRunError, RecordError, CheckpointMismatchError) as error:  # no weights, a missing source run, ...
        raise XaiCheckError(f"run {folder}: {error}") from None
    try:
        split = run_split(record, folder, release)
    except RecordError as error:
        raise XaiCheckError(str(error)) from None
    test_movies = release.movies_in(split.test)
    tokenizer = _run_tokenizer(config, record, split, release) if config.text is not None else None
    transform = image_transforms(model)[False] if config.image is not None else None
    objects_collator = None
    if config.objects is not None:
        source = config.objects.source
        cache = {} if objects is None else objects
        key = (source, split.split_hash())  # the detector the run read: trained on its split's train part
        try:
            if key not in cache:
                cache[key] = ObjectsProvider.create(source, release, record["config"]["train"]["model_size"], split)
        except ImportError as error:  # the detector's library is not installed here (ultralytics on the GPU image)
            raise NotExplainable(f"its {source} detections cannot be produced here: {error}") from None
        objects_collator = ObjectsCollator(cache[key])
    cleaning = TEXT_CLEANINGS[record["text_cleaning"] or "clean"]
    dataset = MMIMDbDataset(test_movies, image_transform=transform, text_cleaning=cleaning, tokenizer=tokenizer,
                            modalities=heavy)
    max_length = config.text.max_length if config.text is not None else 2
    collate = RawBatchCollator(MultimodalCollator(tokenizer, max_length), objects_collator)
    row_of = {movie.id: row for row, movie in enumerate(test_movies)}

    def make_batch(ids: Sequence[str]) -> dict[str, Any]:
        return collate([dataset[row_of[movie_id]] for movie_id in ids])

    predictions = read_predictions(folder / PREDICTIONS_TEST)
    rollout = None
    if config.text is not None:
        rollout = build_from_config(dataclasses.replace(
            config, text=dataclasses.replace(config.text, need_attentions=True)))
        rollout.load_state_dict(model.state_dict(), strict=True)  # the same weights, attention maps on
        rollout.eval()
    return RunUnderTest(
        model_name=record["name"],
        seed=int(record["seed"]),
        model=model,
        movies={movie.id: movie for movie in test_movies},
        make_batch=make_batch,
        thresholds=tuned_thresholds(record, THRESHOLD_POLICY),
        tokenizer=tokenizer,
        text_cleaning=cleaning,
        max_length=max_length,
        rollout_model=rollout,
        probabilities={str(i): p for i, p in zip(predictions.ids, predictions.probs, strict=True)},
    )


def check_runs(
    data: Path,
    runs: Path,
    config: XaiCheckConfig = XaiCheckConfig(),
    progress: Callable[[str], None] | None = None,
    load: Callable[[Path, Release], RunUnderTest] | None = None,
) -> dict[str, Any]:
    """Evaluate every run under `runs` against the data in `data`; the object `--json` prints.

    `load(run_folder, release)` builds each run (default `load_run`; tests pass their own).
    """
    from thesis_lib.data.mmimdb import load_release
    from thesis_lib.data.twin import load_twin_truth
    from thesis_lib.data.twin.generate import TRUTH_FILE

    found = find_runs(runs)  # a missing or empty runs folder fails before the data is read
    truth = load_twin_truth(data) if (data / TRUTH_FILE).is_file() else None
    release = load_release(data)
    objects: dict[Any, Any] = {}  # (source, split hash) -> ObjectsProvider
    load = load or (lambda folder, release: load_run(folder, release, objects))
    per_run, skipped = [], []
    for model_name, seed, folder in found:
        try:
            run = load(folder, release)
        except NotExplainable as reason:
            skipped.append({"model": model_name, "seed": seed, "reason": str(reason)})
            continue
        if progress:
            progress(f"xai check: {model_name} seed {seed}")
        per_run.append(evaluate_run(run, truth, config))
    keys = TWIN_KEYS if truth is not None else REAL_KEYS
    headline = next((r for r in per_run if (r["model"], r["seed"]) == HEADLINE), None)
    summary: dict[str, Any] = {
        "data": str(data),
        "twin": truth is not None,
        "headline_run": None if headline is None else f"{HEADLINE[0]}/seed{HEADLINE[1]}",
        "threshold_policy": THRESHOLD_POLICY,
        "max_pairs": config.max_pairs,
        "pointing_tolerance_px": config.pointing_tolerance_px,
        "seed": config.seed,
    }
    for key in keys:
        summary[key] = None if headline is None else headline[key]
        summary[f"{key}_ci"] = None if headline is None else headline[f"{key}_ci"]
    summary["n_pairs"] = None if headline is None else headline["n_pairs"]
    summary["per_run"] = per_run
    summary["skipped_runs"] = skipped
    return summary


_SHORT_NAMES = {
    "gradcam_pointing_game": "gradcam", "hirescam_pointing_game": "hirescam", "random_pointing_game": "random",
    "center_pointing_game": "centre", "randomized_model_pointing_game": "rand.model", "gradcam_energy_in_box": "energy",
    "deletion_auc": "del.auc", "random_deletion_auc": "rand.del", "randomized_model_rank_correlation": "rand.rho",
    "gradcam_flat_map_share": "flat.maps",
    "attention_cue_recall_at_5": "attn.cue5", "rollout_cue_recall_at_5": "roll.cue5",
    "random_cue_recall_at_5": "rand.cue5",
}


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary `xai_check` returns as a plain-text table: one row per run, then the skipped runs."""
    keys = TWIN_KEYS if summary["twin"] else REAL_KEYS
    lines = [f"XAI check of {summary['data']} ({'synthetic twin' if summary['twin'] else 'real data'}); "
             "pointing game columns gradcam..energy, deletion AUC del.auc/rand.del, cue recall@5 *.cue5",
             f"{'run':<40} {'pairs':>5} " + " ".join(f"{_SHORT_NAMES[k]:>10}" for k in keys)]
    for run in summary["per_run"]:
        cells = " ".join(f"{'-' if run[k] is None else format(run[k], '.3f'):>10}" for k in keys)
        lines.append(f"{run['model'] + '/seed' + str(run['seed']):<40} {run['n_pairs']:>5} {cells}")
    lines += [f"skipped {s['model']}/seed{s['seed']}: {s['reason']}" for s in summary["skipped_runs"]]
    if summary["headline_run"] is None:
        lines.append(f"(no {HEADLINE[0]} seed {HEADLINE[1]} run: the JSON's top-level values are null)")
    return "\n".join(lines)


def xai_check(data: str | Path, runs: str | Path, config: XaiCheckConfig = XaiCheckConfig()) -> dict[str, Any]:
    """What `thesis xai check` reports: `check_runs` with one progress line per run on this module's logger.

    A file missing under `data` or `runs` is the user's input, so it is raised as `XaiCheckError`.
    """
    try:
        return check_runs(Path(data), Path(runs), config, progress=log.info)
    except FileNotFoundError as error:
        raise XaiCheckError(str(error)) from error
