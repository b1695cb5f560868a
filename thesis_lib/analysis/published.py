"""Published MM-IMDb results of the peers, as the papers report them: the one place these numbers live.

Every entry is a test-set score on the release's official split (15,552 / 2,608 / 7,799 movies) with every
genre decided at probability 0.5, the setting the MM-IMDb literature shares; the book sets them beside
the project's own official-split rows at threshold 0.5 with the same averages, on the real release only
(on the synthetic twin they would compare different data). A score a paper does not report is absent,
never guessed; `approximate` marks numbers read as "≈" (rounded in the source).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SPLIT = "official"  # the split every published number below was measured on
THRESHOLD = 0.5  # the decision threshold behind every published number below
AVERAGES = ("micro_f1", "macro_f1", "weighted_f1", "samples_f1")  # the F1 averages the papers report


@dataclass(frozen=True)
class PublishedResult:
    """One paper's test scores on MM-IMDb's official split at threshold 0.5."""

    model: str  # e.g. "GMU"
    citation: str  # "Arevalo et al. 2017"
    cite_key: str  # the entry in book/references.bib
    source: str  # where in the paper the numbers are
    scores: Mapping[str, float] = field(default_factory=dict)  # average (AVERAGES) -> F1
    approximate: bool = False  # the paper's numbers were read as "≈" (rounded)

    @property
    def label(self) -> str:
        """The table row label: "GMU (Arevalo et al. 2017), published"; "Braz et al. 2021, published" where
        the paper names its model after its authors."""
        if self.citation.startswith(self.model):
            return f"{self.citation}, published"
        return f"{self.model} ({self.citation}), published"

    def score_text(self, average: str) -> str:
        """"0.630", "≈ 0.616", or "–" where the paper reports no such average."""
        if average not in self.scores:
            return "–"
        return f"{'≈ ' if self.approximate else ''}{self.scores[average]:.3f}"


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("GMU", "Arevalo et al. 2017", "arevalo2017gmu",
                    "ICLR 2017 workshop paper, results table on MM-IMDb (gated multimodal unit)",
                    {"micro_f1": 0.630, "macro_f1": 0.541}),
    PublishedResult("MMBT", "Kiela et al. 2019", "kiela2019mmbt",
                    "arXiv:1909.02950, MM-IMDb results (multimodal bitransformer)",
                    {"micro_f1": 0.668, "macro_f1": 0.616}, approximate=True),
    PublishedResult("Braz et al.", "Braz et al. 2021", "braz2021mmimdb",
                    "ICPRS 2021, MM-IMDb results of the multimodal fusion network module",
                    {"micro_f1": 0.675, "macro_f1": 0.616, "weighted_f1": 0.675, "samples_f1": 0.673}),
)
