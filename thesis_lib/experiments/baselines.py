"""Reference rows of the results table, run and recorded like any model (cheap: seconds).

- `baseline_frequency`: every movie gets each genre's training frequency as its probability
  (`metrics.frequency_baseline_probs`); what any model must beat.
- `baseline_shallow`: one logistic regression per genre (scikit-learn) on a poster colour histogram
  (8 x 8 x 8 RGB bins of the whole poster, square-rooted, standardised) next to a binary bag of words of
  the plot (cleaned as the profile says; vocabulary from the training plots only; binary rather than
  TF-IDF, whose small values the L2 penalty keeps from counting: measured on the twin, text genres F1 0.76
  vs 0.36 at C = 1). It sees colours and words but
  no shapes, so it marks how far the planted cue words and palettes alone carry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import clean_text
from thesis_lib.experiments.pipeline import TEXT_CLEANINGS, GridContext
from thesis_lib.experiments.specs import RunSpec
from thesis_lib.metrics import frequency_baseline_probs
from thesis_lib.train.results import Predictions

HISTOGRAM_BINS = 8  # per RGB channel: 512 colour cells
HISTOGRAM_SIDE = 64  # posters are reduced to 64 x 64 before counting (colour, not detail, is counted)
MAX_ITER = 2000


def run_baseline(spec: RunSpec, ctx: GridContext) -> tuple[Predictions, Predictions, dict[str, Any]]:
    parts = {part: ctx.movies(spec.split, part) for part in ("train", "dev", "test")}
    labels = {part: ctx.release.labels([m.id for m in movies]) for part, movies in parts.items()}
    if spec.model == "baseline_frequency":
        probs = {part: frequency_baseline_probs(labels["train"], len(parts[part])) for part in ("dev", "test")}
        details = {"model_class": f"{frequency_baseline_probs.__module__}.frequency_baseline_probs",
                   "parameters": {"total": labels["train"].shape[1], "trainable": 0}}
    else:
        probs, details = _shallow(parts, labels, TEXT_CLEANINGS[spec.text_cleaning], ctx.profile.shallow_c, spec.seed)
    predictions = {
        part: Predictions(np.array([m.id for m in parts[part]], dtype=str), probs[part].astype(np.float32),
                          labels[part].astype(np.float32))
        for part in ("dev", "test")
    }
    details |= {"backbones": {}, "training": None, "samples_per_s": None,
                "budget": {"tuning_trials": 1, "max_epochs": 0, "epochs_run": 0}}
    return predictions["dev"], predictions["test"], details


def colour_histogram(movie: Movie) -> np.ndarray:
    """The poster's joint RGB histogram (512,), as frequencies, square-rooted (Hellinger)."""
    with Image.open(movie.poster) as image:
        image.draft("RGB", (HISTOGRAM_SIDE * 2, HISTOGRAM_SIDE * 2))  # JPEG: decode at reduced scale
        pixels = np.asarray(image.convert("RGB").resize((HISTOGRAM_SIDE, HISTOGRAM_SIDE)))  # (64, 64, 3) uint8
    cells = (pixels // (256 // HISTOGRAM_BINS)).reshape(-1, 3).astype(np.int64)  # (4096, 3) bin per channel
    index = (cells[:, 0] * HISTOGRAM_BINS + cells[:, 1]) * HISTOGRAM_BINS + cells[:, 2]  # (4096,)
    counts = np.bincount(index, minlength=HISTOGRAM_BINS**3).astype(np.float64)  # (512,)
    return np.sqrt(counts / counts.sum())


def _shallow(parts: dict[str, list[Movie]], labels: dict[str, np.ndarray], cleaning: Any, c: float,
             seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    texts = {part: [clean_text(m.plot, cleaning) for m in movies] for part, movies in parts.items()}
    vectorizer = CountVectorizer(min_df=2, binary=True, lowercase=False)  # the cleaning already decided case
    words = {"train": vectorizer.fit_transform(texts["train"])}  # vocabulary from training plots only
    words |= {part: vectorizer.transform(texts[part]) for part in ("dev", "test")}
    colours = {part: np.stack([colour_histogram(m) for m in movies]) for part, movies in parts.items()}  # (N, 512)
    scaler = StandardScaler().fit(colours["train"])
    features = {part: sparse.hstack([words[part], sparse.csr_matrix(scaler.transform(colours[part]))]).tocsr()
                for part in parts}
    classifier = OneVsRestClassifier(LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed))
    train_labels = labels["train"].astype(int)
    constant = train_labels.min(axis=0) == train_labels.max(axis=0)  # a genre without positives: its frequency
    classifier.fit(features["train"], train_labels[:, ~constant])
    probs = {}
    for part in ("dev", "test"):
        scores = np.tile(train_labels.mean(axis=0), (features[part].shape[0], 1))  # (N, 23)
        scores[:, ~constant] = classifier.predict_proba(features[part])
        probs[part] = scores
    details = {
        "model_class": "sklearn.multiclass.OneVsRestClassifier(LogisticRegression)",
        "parameters": {"total": int(sum(e.coef_.size + e.intercept_.size for e in classifier.estimators_)),
                       "trainable": int(sum(e.coef_.size + e.intercept_.size for e in classifier.estimators_))},
        "features": {"words": len(vectorizer.vocabulary_), "colour_bins": HISTOGRAM_BINS**3, "C": c},
    }
    return probs, details
