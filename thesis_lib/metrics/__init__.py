"""Multi-label evaluation: metrics, validation-tuned thresholds, bootstrap intervals and tests.

- `scores`: `evaluate(y_true, y_prob, thresholds) -> MetricReport` (accuracy, P/R/F1 in four averages,
  ROC-AUC, mAP, per-genre table) and the conventions for undefined cases.
- `thresholds`: `tune_thresholds` (validation split only), `evaluate_threshold_policies` (0.5 vs tuned).
- `bootstrap`: `bootstrap_ci` and `paired_bootstrap` over resampled movies (engine in `weighted`).
- `baselines`: `frequency_baseline_probs`, the label-frequency reference row.
"""

from thesis_lib.metrics.baselines import frequency_baseline_probs
from thesis_lib.metrics.bootstrap import (
    PairedResult,
    bootstrap_ci,
    bootstrap_distribution,
    bootstrap_indices,
    paired_bootstrap,
)
from thesis_lib.metrics.scores import (
    PER_GENRE_COLUMNS,
    PREDICTION_RULE,
    SUMMARY_METRICS,
    MetricReport,
    evaluate,
    summary_table,
)
from thesis_lib.metrics.thresholds import (
    DEFAULT_THRESHOLD_GRID,
    FALLBACK_THRESHOLD,
    THRESHOLD_POLICIES,
    evaluate_threshold_policies,
    f1_per_threshold,
    tune_thresholds,
)

__all__ = [
    "DEFAULT_THRESHOLD_GRID",
    "FALLBACK_THRESHOLD",
    "PER_GENRE_COLUMNS",
    "PREDICTION_RULE",
    "SUMMARY_METRICS",
    "THRESHOLD_POLICIES",
    "MetricReport",
    "PairedResult",
    "bootstrap_ci",
    "bootstrap_distribution",
    "bootstrap_indices",
    "evaluate",
    "evaluate_threshold_policies",
    "f1_per_threshold",
    "frequency_baseline_probs",
    "paired_bootstrap",
    "summary_table",
    "tune_thresholds",
]
