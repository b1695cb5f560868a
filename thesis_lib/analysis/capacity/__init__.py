"""The capacity experiment: when does token-level (cross-attention) fusion help?

Controlled token-level tasks (`tasks`: additive, interaction, alignment) fed as synthetic encoder outputs
straight into the project's own fusion classes (`models`: early, attention, late trained jointly,
cross-attention at depth 1 and 2, one-way and bidirectional) and a token-level control that is not
cross-attention (self-attention over the concatenated tokens), all at about the same parameter count and
with the same tuning budget (`training`); `experiment` runs it all over 3 seeds and writes one results
file with its provenance (`thesis capacity`), which the book's chapter reads (`book.capacity`).

Pooled fusions read the mean of the tokens, so they lose which object has which colour by construction:
the alignment task shows what token-level fusion buys, not that cross-attention is the only way to bind.
"""

from thesis_lib.analysis.capacity.experiment import (
    COMMAND,
    CONTROL,
    POOLED_REFERENCE,
    RESULTS_FILE,
    SCHEMA,
    CapacityConfig,
    CapacityResultError,
    pooled_ceiling,
    read_results,
    run_capacity,
)
from thesis_lib.analysis.capacity.models import LABELS, MODELS, POOLED_MODELS, TOKEN_MODELS, ModelSizing
from thesis_lib.analysis.capacity.tasks import TASKS, TaskConfig, TokenData, make_split
from thesis_lib.analysis.capacity.training import TrainConfig
from thesis_lib.analysis.results_file import write_results  # the file format both experiments share

__all__ = [
    "COMMAND",
    "CONTROL",
    "LABELS",
    "MODELS",
    "POOLED_MODELS",
    "POOLED_REFERENCE",
    "RESULTS_FILE",
    "SCHEMA",
    "TASKS",
    "TOKEN_MODELS",
    "CapacityConfig",
    "CapacityResultError",
    "ModelSizing",
    "TaskConfig",
    "TokenData",
    "TrainConfig",
    "make_split",
    "pooled_ceiling",
    "read_results",
    "run_capacity",
    "write_results",
]
