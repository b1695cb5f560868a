"""The synthetic MM-IMDb twin: a miniature release in the real format with planted, recorded evidence.

`generate_twin(out_dir, TwinConfig(...))` writes split.json, dataset/<id>.json|.jpeg and twin_truth.json;
`load_twin_truth(root)` reads the truth back; `oracle_predict(truth, ids)` applies the generating rule
(the best any model can do, up to label noise). See rules.py for which genre carries which evidence.
"""

from thesis_lib.data.twin.config import TwinConfig
from thesis_lib.data.twin.generate import TwinSummary, generate_twin, load_twin_truth
from thesis_lib.data.twin.labels import LabelDraw, draw_labels
from thesis_lib.data.twin.rules import GENRE_EVIDENCE, GENRE_RULES, oracle_predict

__all__ = [
    "GENRE_EVIDENCE",
    "GENRE_RULES",
    "LabelDraw",
    "TwinConfig",
    "TwinSummary",
    "draw_labels",
    "generate_twin",
    "load_twin_truth",
    "oracle_predict",
]
