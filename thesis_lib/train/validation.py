"""The validation scores that pick the best epoch: one small function, so the metric code can change alone.

It delegates to `thesis_lib.metrics.evaluate` (the same conventions as the book's tables: zero_division=0
for F1, mAP over genres with both classes present) at one fixed threshold.
"""

from __future__ import annotations

import numpy as np


def validation_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Summary metrics (macro_f1, micro_f1, map_macro, ...) for labels and probabilities (N, C)."""
    # Imported here: the metrics pull in scikit-learn and pandas, which training steps alone do not need
    # (the speed benchmark imports the training path on machines that may lack them).
    from thesis_lib.metrics import evaluate

    return evaluate(labels, probs, threshold).summary()
