"""Linear probes on the frozen encoders the fusions read: do their features still hold what the twin's
alignment genres need?

On the synthetic twin, Crime and Mystery hinge on a *binding*: the plot names one of several props on the
poster, and the genre depends on how THAT prop looks (Crime: it is red; Mystery: it glows). The fusions
read frozen encoders of single-modality runs that were trained on genres alone (the fusion's source runs,
`record["backbones"][modality]["run"]`). If those encoders kept neither which prop the plot names nor which
colour each prop has where, no fusion could recover the binding. A linear probe (Alain & Bengio 2016)
asks what the frozen features still hold: a logistic regression fitted on the train movies' features,
scored on the test movies.

What is probed (features -> target, one row each):

    text encoder (the text source run)
        named prop       <- pooled plot vector            what early, attention and late fusion read
        named prop       <- tokens at the named word      what cross-attention reads (the word's pieces, averaged)
    image encoder (the image source run), for each alignment rule of the truth ("named prop is red", "... glows")
        rule             <- pooled poster vector
        rule             <- pooled poster + plot vectors  what early fusion reads
        rule             <- pooled poster, per named prop positive control, see below
        rule             <- grid cells under the prop     what cross-attention's image side offers if it attends
                                                          to the right place (cells weighted by their overlap
                                                          with the prop's box)
    controls the encoders were trained for, so a failed row is not the probe's fault
        most frequent image genre <- pooled poster vector;  most frequent text genre <- pooled plot vector;
        "some prop is red" / "some prop glows" <- pooled poster vector

The positive control gives the probe the true named label: the poster vector x is read by one linear map
per label (the features are x ⊗ onehot(label), plus the one-hot), so the probe only has to find "the
car's colour" in x, not which prop is named. A probe on the concatenation [x, onehot] could not do that:
a linear map adds the one-hot as one offset per label and reads x the same way for every label.

Scores are balanced accuracies (the mean recall over classes: 1/K for any constant guess, whatever the
class balance), each with a percentile bootstrap interval over test movies. Every row is compared with a
reference on the very same resampled movies (a paired bootstrap of the gain): the majority class, and
for the alignment rules a binding-free reference: the same probe fitted on nothing but how many props
have the look (0-3 red props, read from the truth). The twin's props are exchangeable (the plot names
one whatever its kind), so that count is all that knowing the poster's colours without knowing where
they are can tell about the named prop; only a probe that beats it reads the binding. ("Some prop is
red" is too weak a reference: on the default twin the named prop is red about half the time when 2 of
3 props are red and a fifth of the time when 1 is, and a pooled vector can tell those apart.)

The probe: standardised features, L2 logistic regression with balanced class weights, C chosen by
stratified cross-validation on the train movies (scikit-learn). Targets come from twin_truth.json (clean
facts, no label noise); features from the runs' best weights (`experiments.loaded_run.load_run`, which
restores them and rebuilds their tokenizer and text cleaning), on the eval transform.

    probes = alignment_probes(RUNS, release, load_twin_truth(release.root))
    probes.table()            # one row per probe
    probe_values(probes)      # what the numbers show: verdicts of the paired intervals, for the prose
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from thesis_lib.analysis.verdicts import Verdict, listing, verdict_of
from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.layout import RunFolder, RunsFolder
from thesis_lib.experiments.loaded_run import LoadedRun, load_run
from thesis_lib.experiments.records import RecordError, read_record
from thesis_lib.experiments.restore import source_run
from thesis_lib.metrics.bootstrap import bootstrap_indices, resample_counts
from thesis_lib.xai.words import token_positions_of_span

MAJORITY = "majority class"
FUSION = "fusion_cross_attention"  # the run whose record names the encoders the fusions read
TABLE_COLUMNS = ("target", "features", "run", "n_train", "n_test", "classes", "balanced_accuracy", "ci_low",
                 "ci_high", "chance", "reference", "reference_score", "gain", "gain_ci_low", "gain_ci_high", "C")

# Row names: the features each probe reads.
TEXT_POOLED = "pooled plot vector"
TEXT_MENTION = "tokens at the named word"
IMAGE_POOLED = "pooled poster vector"
EARLY_INPUT = "pooled poster + plot vectors"
PER_LABEL = "pooled poster vector, per named prop"
PROP_CELLS = "grid cells under the named prop"
NAMED_PROP = "named prop"
GENRE_CONTROL = " (genre control)"  # suffix of the control rows' targets: "Horror (genre control)"


class ProbeError(ThesisError, ValueError):
    """The probes cannot run: no twin ground truth, a missing or unfinished run, truth that does not fit."""


@dataclass(frozen=True)
class ProbeConfig:
    """How each probe is fitted and scored."""

    # Inverse L2 strengths; cross-validation picks one. Measured on the smoke runs: with 10.0 added and 5 folds
    # the probes took 88 s instead of 39 s (its lbfgs fits are the slow ones) and no score moved by more than 0.02.
    Cs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    cv_folds: int = 3  # stratified folds on train (fewer when a class has fewer train movies)
    max_iter: int = 2000  # lbfgs iterations; standardised features converge well within this
    n_resamples: int = 1000  # bootstrap resamples of the test movies
    confidence: float = 0.95  # of the percentile intervals
    seed: int = 0  # fold shuffling and bootstrap draws
    batch_size: int = 64  # movies per encoder forward pass


@dataclass(frozen=True)
class ProbeScore:
    """One probe: features -> target, its test balanced accuracy and its gain over a reference."""

    target: str
    features: str
    run: str  # the run(s) whose encoder produced the features
    n_train: int  # train movies with these features (a named word cut off by truncation has none)
    n_test: int
    classes: int  # classes of the target in the train movies
    balanced_accuracy: float  # NaN when the train movies cannot fit a probe (one class, or a singleton)
    ci_low: float
    ci_high: float
    chance: float  # balanced accuracy on test of train's majority class (1/K)
    reference: str  # MAJORITY, or the binding-free count ("number of red props")
    reference_score: float
    gain: float  # balanced_accuracy - reference_score, on the same movies
    gain_ci_low: float
    gain_ci_high: float
    C: float  # the inverse regularisation strength cross-validation chose


@dataclass(frozen=True)
class AlignmentProbes:
    """Every probe of `alignment_probes`, and what they were run on."""

    scores: tuple[ProbeScore, ...]
    rules: tuple[tuple[str, str, Any], ...]  # (genre, attribute, value) of each alignment rule probed
    text_run: str  # "<name>/seed<k>"
    image_run: str
    split: str
    n_train: int  # movies of the split's train and test parts
    n_test: int
    truncated_mentions: int  # movies (train + test) whose named word the text encoder never sees

    def table(self) -> pd.DataFrame:
        """One row per probe (the `TABLE_COLUMNS`), in the order of the module docstring."""
        return pd.DataFrame([asdict(score) for score in self.scores], columns=list(TABLE_COLUMNS))

    def readable(self) -> pd.DataFrame:
        """The table for the page: "0.861 [0.803–0.912]" cells, indexed by target and features."""
        rows = [{"target": s.target, "features": s.features, "run": s.run, "test movies": s.n_test,
                 "balanced accuracy [95% CI]": _estimate(s.balanced_accuracy, s.ci_low, s.ci_high),
                 "reference": f"{s.reference} ({s.reference_score:.3f})",
                 "gain [95% CI]": _gain(s.gain, s.gain_ci_low, s.gain_ci_high),
                 "verdict": str(verdict(s))} for s in self.scores]
        return pd.DataFrame(rows).set_index(["target", "features"])

    def score(self, target: str, features: str) -> ProbeScore:
        for score in self.scores:
            if (score.target, score.features) == (target, features):
                return score
        raise KeyError(f"no probe of {target!r} from {features!r}")


# ------------------------------------------------------------------------------------------- targets


def named_prop_labels(truth: Mapping[str, Any], ids: Sequence[str]) -> np.ndarray:
    """(N,) str: the label of the prop each movie's plot names (twin_truth.json)."""
    movies = _truth_movies(truth, ids)
    return np.array([movie["objects"][movie["named_object"]]["label"] for movie in movies])


def named_prop_has(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: 1 where the named prop's `attribute` equals `value` (e.g. "color" == "red")."""
    movies = _truth_movies(truth, ids)
    return np.array([int(movie["objects"][movie["named_object"]].get(attribute) == value) for movie in movies])


def props_with(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: how many props on the poster have `attribute` == `value` (whichever the plot names)."""
    movies = _truth_movies(truth, ids)
    return np.array([sum(obj.get(attribute) == value for obj in movie["objects"] if obj["role"] == "prop")
                     for movie in movies])


def some_prop_has(truth: Mapping[str, Any], ids: Sequence[str], attribute: str, value: Any) -> np.ndarray:
    """(N,) int: 1 where any prop on the poster has `attribute` == `value`."""
    return (props_with(truth, ids, attribute, value) > 0).astype(int)


def genre_targets(truth: Mapping[str, Any], ids: Sequence[str], genre: str) -> np.ndarray:
    """(N,) int: 1 where `genre` is among the movie's clean (noise-free) genres."""
    return np.array([int(genre in movie["clean_genres"]) for movie in _truth_movies(truth, ids)])


def alignment_rules(truth: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(genre, attribute, value) of every alignment genre, from the truth's declared rules."""
    rules = []
    for genre, kind in truth["genre_evidence"].items():
        if kind == "alignment":
            for attribute, value in truth["rules"][genre]["named_object"].items():
                rules.append((genre, attribute, value))
    return rules


def describe_count(attribute: str, value: Any) -> str:
    """"number of red props", "number of glowing props": the binding-free reference of a rule."""
    if attribute == "glow":
        return f"number of {'glowing' if value else 'unlit'} props"
    if attribute == "color":
        return f"number of {value} props"
    return f"number of props with {attribute} {value}"


def describe_rule(attribute: str, value: Any, subject: str = NAMED_PROP) -> str:
    """"named prop is red", "named prop glows", "some prop glows"."""
    if attribute == "glow":
        return f"{subject} {'glows' if value else 'does not glow'}"
    if attribute == "color":
        return f"{subject} is {value}"
    return f"{subject} has {attribute} {value}"


def control_genre(truth: Mapping[str, Any], ids: Sequence[str], kind: str) -> str:
    """The most frequent genre among `ids` whose evidence is `kind` ("image" or "text") alone."""
    genres = [genre for genre, evidence in truth["genre_evidence"].items() if evidence == kind]
    if not genres:
        raise ProbeError(f"twin_truth.json declares no genre with {kind} evidence: no control for that encoder")
    counts = {genre: int(genre_targets(truth, ids, genre).sum()) for genre in genres}
    return max(genres, key=lambda genre: counts[genre])


def _truth_movies(truth: Mapping[str, Any], ids: Sequence[str]) -> list[Mapping[str, Any]]:
    missing = [movie_id for movie_id in ids if movie_id not in truth["movies"]]
    if missing:
        raise ProbeError(f"twin_truth.json has no entry for {len(missing)} movie(s) of the split, e.g. "
                         f"{', '.join(missing[:3])}: is it the truth of this release?")
    return [truth["movies"][movie_id] for movie_id in ids]


# ------------------------------------------------------------------------------------------ features


@dataclass(frozen=True)
class TextFeatures:
    pooled: np.ndarray  # (N, D) the text encoder's pooled plot vector
    mention: np.ndarray  # (N, D) mean of the tokens of the named word; NaN rows: truncated away


@dataclass(frozen=True)
class ImageFeatures:
    pooled: np.ndarray  # (N, D) the image encoder's pooled poster vector
    prop_cells: np.ndarray  # (N, D) grid tokens weighted by their overlap with the named prop's box


def per_label_features(features: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """x ⊗ onehot(label), then the one-hot: (N, D) -> (N, K * D + K). Row i carries x_i in the block of its
    label and zeros elsewhere, so a linear probe fits one read-out of x per label."""
    onehot = (labels[:, None] == np.asarray(classes)[None, :]).astype(features.dtype)  # (N, K)
    blocks = features[:, None, :] * onehot[:, :, None]  # (N, K, D)
    return np.concatenate([blocks.reshape(len(features), -1), onehot], axis=1)  # (N, K * D + K)


def box_cell_weights(box: Sequence[float], poster_size: tuple[int, int], grid: int) -> np.ndarray:
    """(grid * grid,) share of the box's area in each cell of a grid x grid feature map, raster order.

    The eval transform squashes the whole poster to a square, so cell (row, col) covers poster pixels
    x in [col * W / grid, (col + 1) * W / grid), y likewise with H."""
    x0, y0, x1, y1 = box
    width, height = poster_size
    edges = np.arange(grid + 1)  # (grid + 1,)
    overlap_x = np.clip(np.minimum(edges[1:] * width / grid, x1) - np.maximum(edges[:-1] * width / grid, x0), 0, None)
    overlap_y = np.clip(np.minimum(edges[1:] * height / grid, y1) - np.maximum(edges[:-1] * height / grid, y0),
                        0, None)
    area = np.outer(overlap_y, overlap_x).ravel()  # (grid * grid,)
    if area.sum() <= 0:
        raise ProbeError(f"box {list(box)} lies outside the {width} x {height} poster")
    return area / area.sum()


def encode_text(run: LoadedRun, movies: Sequence[Movie], truth: Mapping[str, Any], batch_size: int) -> TextFeatures:
    """Pooled plot vectors and the named word's token features of `movies`, as the run reads its plots
    (its tokenizer, text cleaning and truncation; the word's pieces found by `xai.words`)."""
    pooled, mention = [], []
    for chunk, batch, encoded in _encoded_batches(run, "text", movies, batch_size):
        tokens = encoded.tokens.float().cpu().numpy()  # (B, L, D)
        lengths = batch["attention_mask"].sum(dim=1).tolist()  # (B,) real tokens per plot
        pooled.append(encoded.pooled.float().cpu().numpy())  # (B, D)
        for row, movie in enumerate(chunk):
            span = _mention_span(truth, movie)
            positions = token_positions_of_span(movie.plot, span, run.tokenizer, run.text_cleaning, run.max_length)
            if positions and max(positions) >= lengths[row]:
                raise ProbeError(f"movie {movie.id}: the named word's token positions {positions} lie past the "
                                 f"{lengths[row]} tokens the collator made: tokenizer or cleaning differ")
            mention.append(tokens[row, positions].mean(axis=0) if positions else np.full(tokens.shape[-1], np.nan))
    return TextFeatures(np.concatenate(pooled), np.stack(mention))


def encode_image(run: LoadedRun, movies: Sequence[Movie], truth: Mapping[str, Any], batch_size: int) -> ImageFeatures:
    """Pooled poster vectors and the grid tokens under the named prop of `movies`, on the eval transform."""
    encoder = run.model.encoders["image"]
    pooled, prop_cells = [], []
    for chunk, _, encoded in _encoded_batches(run, "image", movies, batch_size):
        cells = encoded.tokens[:, encoder.num_prefix_tokens :].float().cpu().numpy()  # (B, h*w, D)
        grid = math.isqrt(cells.shape[1])
        if grid * grid != cells.shape[1]:
            raise ProbeError(f"{run.model_name}: {cells.shape[1]} image tokens do not form a square grid")
        pooled.append(encoded.pooled.float().cpu().numpy())  # (B, D)
        for row, movie in enumerate(chunk):
            facts = truth["movies"][movie.id]
            with Image.open(movie.poster) as poster:  # the header only: the boxes are in its pixel frame
                poster_size = poster.size  # (W, H)
            weights = box_cell_weights(facts["objects"][facts["named_object"]]["box"], poster_size, grid)
            prop_cells.append(weights @ cells[row])  # (D,)
    return ImageFeatures(np.concatenate(pooled), np.stack(prop_cells))


def _encoded_batches(run: LoadedRun, modality: str, movies: Sequence[Movie],
                     batch_size: int) -> Iterator[tuple[Sequence[Movie], dict, Any]]:
    """(movies, the run's eval batch, its `modality` EncoderOutput) per batch of `movies`, in order, without
    gradients."""
    for start in range(0, len(movies), batch_size):
        chunk = movies[start : start + batch_size]
        batch = run.make_batch([movie.id for movie in chunk])
        with torch.no_grad():
            encoded = run.model.encode(batch)[modality]
        yield chunk, batch, encoded  # outside no_grad: the caller's code runs with its own grad mode


def _mention_span(truth: Mapping[str, Any], movie: Movie) -> tuple[int, int]:
    """The raw-plot characters of the named word, checked against the plot the release gives."""
    mention = truth["movies"][movie.id]["named_object_mention"]
    start, end = mention["char_span"]
    if movie.plot[start:end].lower() != mention["word"].lower():
        raise ProbeError(f"twin_truth.json: movie {movie.id} names {mention['word']!r} at characters {start}-{end}, "
                         f"but its plot has {movie.plot[start:end]!r} there")
    return start, end


# --------------------------------------------------------------------------------- fitting, scoring


def balanced_accuracy_resampled(y_true: np.ndarray, y_pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Balanced accuracy of `y_pred` on each resample: (R,) from how often each movie was drawn, counts
    (R, N). Recall per class, averaged over the classes the resample holds (as scikit-learn's
    `balanced_accuracy_score` with those counts as sample weights)."""
    classes = np.unique(y_true)
    members = (y_true[:, None] == classes[None, :]).astype(np.float64)  # (N, K)
    hits = members * (y_pred == y_true)[:, None]  # (N, K)
    drawn, found = counts @ members, counts @ hits  # (R, K) each
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(drawn > 0, found / drawn, np.nan)  # (R, K)
    return np.nanmean(recall, axis=1)


def run_probe(target: str, features: str, run: str, train_x: np.ndarray, train_y: np.ndarray,
              test_x: np.ndarray, test_y: np.ndarray, *, reference: str = MAJORITY,
              reference_predictions: np.ndarray | None = None, config: ProbeConfig = ProbeConfig()) -> ProbeScore:
    """Fit one probe on (train_x, train_y), score it on the test movies against a reference.

    Rows of x with NaN (no features for that movie) are left out of fitting and scoring. The reference
    is the majority class of train unless `reference_predictions` (one per test movie) are given.
    """
    from sklearn.dummy import DummyClassifier

    train_rows, test_rows = ~np.isnan(train_x).any(axis=1), ~np.isnan(test_x).any(axis=1)
    train_x, train_y = train_x[train_rows], train_y[train_rows]
    test_x, test_y = test_x[test_rows], test_y[test_rows]
    majority = DummyClassifier(strategy="most_frequent").fit(train_x, train_y).predict(test_x)  # (n_test,)
    baseline = majority if reference_predictions is None else np.asarray(reference_predictions)[test_rows]
    classes, folds = len(np.unique(train_y)), _folds(train_y, config)
    counts = resample_counts(bootstrap_indices(len(test_y), config.n_resamples, config.seed), len(test_y))
    everyone = np.ones((1, len(test_y)))  # the test set itself: every movie drawn once
    chance = float(balanced_accuracy_resampled(test_y, majority, everyone)[0])
    reference_score = float(balanced_accuracy_resampled(test_y, baseline, everyone)[0])
    score = low = high = gain = gain_low = gain_high = chosen = float("nan")  # stay NaN when train cannot fit
    if folds is not None:
        predictions, chosen = _fit_predict(train_x, train_y, test_x, folds, config)
        scores = balanced_accuracy_resampled(test_y, predictions, counts)  # (R,)
        gains = scores - balanced_accuracy_resampled(test_y, baseline, counts)  # (R,) paired: same movies
        score = float(balanced_accuracy_resampled(test_y, predictions, everyone)[0])
        gain = score - reference_score
        low, high = _interval(scores, config.confidence)
        gain_low, gain_high = _interval(gains, config.confidence)
    return ProbeScore(target, features, run, int(len(train_y)), int(len(test_y)), classes, score, low, high, chance,
                      reference, reference_score, gain, gain_low, gain_high, chosen)


def count_reference(train_counts: np.ndarray, train_y: np.ndarray, test_counts: np.ndarray,
                    config: ProbeConfig = ProbeConfig()) -> np.ndarray:
    """(n_test,) predictions of the binding-free reference: the probe fitted on a one-hot of how many props
    have the look (the majority class of train when train cannot fit a probe)."""
    values = np.arange(max(train_counts.max(), test_counts.max()) + 1)  # (V,)
    train_x = (train_counts[:, None] == values[None, :]).astype(np.float64)  # (n_train, V)
    test_x = (test_counts[:, None] == values[None, :]).astype(np.float64)  # (n_test, V)
    folds = _folds(train_y, config)
    if folds is None:
        labels, counts = np.unique(train_y, return_counts=True)
        return np.full(len(test_counts), labels[np.argmax(counts)])
    return _fit_predict(train_x, train_y, test_x, folds, config)[0]


def _folds(train_y: np.ndarray, config: ProbeConfig) -> int | None:
    """Cross-validation folds for `train_y`, or None when it cannot fit a probe (one class, or a class of
    a single movie: stratified folds need two)."""
    _, per_class = np.unique(train_y, return_counts=True)
    if len(per_class) < 2 or per_class.min() < 2:
        return None
    return min(config.cv_folds, int(per_class.min()))


def _fit_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, folds: int,
                 config: ProbeConfig) -> tuple[np.ndarray, float]:
    """Standardise, choose C by stratified CV (balanced accuracy), refit on all of train, predict test."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=list(config.Cs), l1_ratios=(0.0,), cv=StratifiedKFold(folds, shuffle=True, random_state=config.seed),
        scoring="balanced_accuracy", class_weight="balanced", max_iter=config.max_iter,
        use_legacy_attributes=False))
    probe.fit(train_x, train_y)
    return probe.predict(test_x), float(np.ravel(probe[-1].C_)[0])


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------ the probes


def alignment_probes(
    runs_dir: str | Path,
    release: Release,
    truth: Mapping[str, Any] | None,
    *,
    seed: int = 0,
    split: str = "thesis",
    fusion: str = FUSION,
    text_run: str | None = None,
    image_run: str | None = None,
    config: ProbeConfig = ProbeConfig(),
) -> AlignmentProbes:
    """Every probe of the module docstring on the encoders the fusions read.

    Args:
        runs_dir: the grid's runs folder (`experiments.layout`); read only.
        release: the release the runs were trained on (its fingerprint is checked against theirs).
        truth: its twin_truth.json (`data.twin.load_twin_truth`); None (real MM-IMDb) is an error.
        seed: the training seed of the runs to probe.
        split: the split the runs were trained on; the probes fit on its train part, score on its test part.
        fusion: the fusion run whose record names its text and image source runs.
        text_run, image_run: run names that override the fusion record's sources (then `fusion` is not read
            for that modality).
    """
    if truth is None:
        raise ProbeError(f"the alignment probes read the twin's ground truth (twin_truth.json), and {release.root} "
                         "has none: they need the synthetic twin")
    runs = RunsFolder(Path(runs_dir))
    folders = {modality: _source_run(runs, modality, name, fusion, seed, split)
               for modality, name in (("text", text_run), ("image", image_run))}
    loaded = {}
    for modality, folder in folders.items():
        try:
            loaded[modality] = load_run(folder, release)  # its weights, tokenizer, cleaning and eval transform
        except RecordError as error:
            raise ProbeError(f"{folder.path}: cannot probe its {modality} encoder: {error}") from None
        if modality not in loaded[modality].model.encoders:
            raise ProbeError(f"{folder.path}: the run has no {modality} encoder")
    data_split = loaded["text"].split  # found by its record's hash, never re-drawn
    if loaded["image"].split.split_hash() != data_split.split_hash():
        raise ProbeError(f"{folders['text'].path} and {folders['image'].path} were trained on different splits")
    train, test = release.movies_in(data_split.train), release.movies_in(data_split.test)
    text = {part: encode_text(loaded["text"], movies, truth, config.batch_size)
            for part, movies in (("train", train), ("test", test))}
    image = {part: encode_image(loaded["image"], movies, truth, config.batch_size)
             for part, movies in (("train", train), ("test", test))}
    names = {modality: f"{folder.name}/seed{folder.seed}" for modality, folder in folders.items()}
    ids = {"train": [movie.id for movie in train], "test": [movie.id for movie in test]}
    scores = _all_probes(truth, ids, text, image, names, config)
    truncated = sum(int(np.isnan(text[part].mention).any(axis=1).sum()) for part in text)
    return AlignmentProbes(tuple(scores), tuple(alignment_rules(truth)), names["text"], names["image"],
                           data_split.name, len(train), len(test), truncated)


def _all_probes(truth: Mapping[str, Any], ids: Mapping[str, list[str]], text: Mapping[str, TextFeatures],
                image: Mapping[str, ImageFeatures], names: Mapping[str, str], config: ProbeConfig) -> list[ProbeScore]:
    """The rows of the table, in the module docstring's order."""
    both = f"{names['image']} + {names['text']}"

    def probe(target: str, features: str, run: str, x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
              reference: str = MAJORITY, reference_predictions: np.ndarray | None = None) -> ProbeScore:
        return run_probe(target, features, run, x["train"], y["train"], x["test"], y["test"], reference=reference,
                         reference_predictions=reference_predictions, config=config)

    labels = {part: named_prop_labels(truth, ids[part]) for part in ids}
    classes = sorted(set(labels["train"]) | set(labels["test"]))
    rows = [probe(NAMED_PROP, TEXT_POOLED, names["text"], {p: text[p].pooled for p in ids}, labels),
            probe(NAMED_PROP, TEXT_MENTION, names["text"], {p: text[p].mention for p in ids}, labels)]
    for genre, attribute, value in alignment_rules(truth):
        target = f"{describe_rule(attribute, value)} ({genre})"
        y = {part: named_prop_has(truth, ids[part], attribute, value) for part in ids}
        counts = {part: props_with(truth, ids[part], attribute, value) for part in ids}
        unbound = describe_count(attribute, value)
        reference = count_reference(counts["train"], y["train"], counts["test"], config)
        for features, run, x in (
            (IMAGE_POOLED, names["image"], {p: image[p].pooled for p in ids}),
            (EARLY_INPUT, both, {p: np.concatenate([image[p].pooled, text[p].pooled], axis=1) for p in ids}),
            (PER_LABEL, names["image"], {p: per_label_features(image[p].pooled, labels[p], classes) for p in ids}),
            (PROP_CELLS, names["image"], {p: image[p].prop_cells for p in ids}),
        ):
            rows.append(probe(target, features, run, x, y, unbound, reference))
    image_genre, text_genre = control_genre(truth, ids["train"], "image"), control_genre(truth, ids["train"], "text")
    rows.append(probe(f"{image_genre}{GENRE_CONTROL}", IMAGE_POOLED, names["image"],
                      {p: image[p].pooled for p in ids}, {p: genre_targets(truth, ids[p], image_genre) for p in ids}))
    rows.append(probe(f"{text_genre}{GENRE_CONTROL}", TEXT_POOLED, names["text"],
                      {p: text[p].pooled for p in ids}, {p: genre_targets(truth, ids[p], text_genre) for p in ids}))
    for _, attribute, value in alignment_rules(truth):
        rows.append(probe(describe_rule(attribute, value, "some prop"), IMAGE_POOLED, names["image"],
                          {p: image[p].pooled for p in ids},
                          {p: some_prop_has(truth, ids[p], attribute, value) for p in ids}))
    return rows


def _source_run(runs: RunsFolder, modality: str, name: str | None, fusion: str, seed: int, split: str) -> RunFolder:
    """The run whose `modality` encoder is probed: `name`, or the fusion record's source of that encoder."""
    if name is not None:
        return _finished(runs.run(split, name, seed))
    folder = _finished(runs.run(split, fusion, seed))
    backbone = (read_record(folder).get("backbones") or {}).get(modality)
    if not backbone or backbone.get("weights") != "run":
        raise ProbeError(f"{folder.path}: the {fusion} run did not take its {modality} encoder from a run of the "
                         f"grid (backbones: {backbone}); name the run to probe with {modality}_run=")
    try:
        return _finished(source_run(folder, backbone))
    except ThesisError as error:
        raise ProbeError(str(error)) from None


def _finished(run: RunFolder) -> RunFolder:
    try:
        record = read_record(run)
    except RecordError as error:
        raise ProbeError(str(error)) from None
    if record is None:
        raise ProbeError(f"no finished run {run.name} (seed {run.seed}, {run.split} split) under {run.runs.root}: "
                         f"{run.record} does not exist")
    return run


# ------------------------------------------------------------------------------------------ in words


def probe_values(probes: AlignmentProbes | None) -> dict[str, Any]:
    """What the probes show, for the prose: each a verdict of a paired interval (`analysis.verdicts`), never
    a point estimate. On a release without twin truth every value says so.

    controls_verdict   "ahead" when every genre control beats the majority class, else "behind": then a
                       failed probe below may be the probe's fault rather than the features'
    mention_text, pooled_text, chance   the named prop read from the tokens at the named word / the pooled
                       plot vector, "0.99 [0.97–1.00]", and the chance level
    mention_verdict    the token read-out against the majority class
    bound_pooled       the looks ("named prop is red", ...) some pooled read-out (the poster vector, early
                       fusion's input, or the poster vector told which prop is named) reads beyond the
                       binding-free count reference; bound_cells those the grid cells under the named prop
                       read beyond it; unbound_cells those they do not ("none" when the list is empty)
    """
    if probes is None:
        return {"probe_scope": "The probes read the synthetic twin's ground truth (which prop each plot names and "
                               "how every prop looks); this release has none, so there is nothing to probe here.",
                "controls_verdict": "n/a", "mention_text": "n/a", "pooled_text": "n/a", "chance": float("nan"),
                "mention_verdict": "n/a", "truncated_mentions": 0, "bound_pooled": "n/a", "bound_cells": "n/a",
                "unbound_cells": "n/a"}
    controls = [score for score in probes.scores if score.target.endswith(GENRE_CONTROL)]
    pooled_text, mention = probes.score(NAMED_PROP, TEXT_POOLED), probes.score(NAMED_PROP, TEXT_MENTION)
    bound_pooled, bound_cells, unbound_cells = [], [], []
    for genre, attribute, value in probes.rules:
        rule = describe_rule(attribute, value)
        rows = {features: probes.score(f"{rule} ({genre})", features)
                for features in (IMAGE_POOLED, EARLY_INPUT, PER_LABEL, PROP_CELLS)}
        if any(verdict(rows[features]) == Verdict.AHEAD for features in (IMAGE_POOLED, EARLY_INPUT, PER_LABEL)):
            bound_pooled.append(rule)
        (bound_cells if verdict(rows[PROP_CELLS]) == Verdict.AHEAD else unbound_cells).append(rule)
    return {"probe_scope": "", "chance": pooled_text.chance, "truncated_mentions": probes.truncated_mentions,
            "controls_verdict": str(Verdict.AHEAD if all(verdict(s) == Verdict.AHEAD for s in controls)
                                    else Verdict.BEHIND),
            "mention_text": _short(mention), "pooled_text": _short(pooled_text),
            "mention_verdict": str(verdict(mention)), "bound_pooled": listing(bound_pooled),
            "bound_cells": listing(bound_cells), "unbound_cells": listing(unbound_cells)}


def verdict(score: ProbeScore) -> Verdict:
    """A probe against its reference: the verdict of the paired interval of its gain."""
    return verdict_of(score.gain_ci_low, score.gain_ci_high)


def _short(score: ProbeScore) -> str:
    if math.isnan(score.balanced_accuracy):
        return "n/a (too few train movies)"
    return f"{score.balanced_accuracy:.2f} [{score.ci_low:.2f}–{score.ci_high:.2f}]"


def _estimate(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f} [{low:.3f}–{high:.3f}]"


def _gain(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
