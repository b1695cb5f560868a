"""What one probe is and how it is scored: a logistic regression on frozen features, its balanced
accuracy with a bootstrap interval, and its gain over a reference on the same resampled movies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from thesis_lib.analysis.verdicts import Verdict, verdict_of
from thesis_lib.errors import ThesisError
from thesis_lib.metrics.bootstrap import bootstrap_indices, resample_counts

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




# ------------------------------------------------------------------------------------ verdicts, text


def verdict(score: ProbeScore) -> Verdict:
    """A probe against its reference: the verdict of the paired interval of its gain."""
    return verdict_of(score.gain_ci_low, score.gain_ci_high)


def score_text(score: ProbeScore) -> str:
    """"0.86 [0.80–0.91]": the balanced accuracy with its interval, for the prose."""
    if math.isnan(score.balanced_accuracy):
        return "n/a (too few train movies)"
    return f"{score.balanced_accuracy:.2f} [{score.ci_low:.2f}–{score.ci_high:.2f}]"


def _estimate(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f} [{low:.3f}–{high:.3f}]"


def _gain(value: float, low: float, high: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"
