"""The data-size experiment: does cross-attention fusion overtake early and attention fusion on the twin's
alignment genres as the number of training movies grows?

One larger synthetic twin (`data`), fixed token features that carry the alignment evidence at its
location (`features`: frozen MiniLM plot tokens; one token per poster object with its class, box and
measured colour/halo statistics), the project's own fusion classes on those tokens (`models`), the same
training recipe at every size (`training`), and `experiment`, which runs it all (nested training sets,
dev and test fixed, linear probes per size, paired-bootstrap intervals) and writes one results file with
its provenance (`thesis datasize`), which the book's capacity chapter reads (`book.datasize`).
"""

from thesis_lib.analysis.datasize.experiment import (
    CACHE_DIR,
    COMMAND,
    GROUPS,
    PROBE_FEATURES,
    REFERENCES,
    RESULTS_FILE,
    SCHEMA,
    TOKEN_FUSION,
    DataSizeConfig,
    DataSizeResultError,
    read_results,
    run_datasize,
)
from thesis_lib.analysis.datasize.models import FUSIONS, LABELS
from thesis_lib.analysis.datasize.training import TrainConfig
from thesis_lib.analysis.results_file import write_results  # the file format both experiments share

__all__ = [
    "CACHE_DIR",
    "COMMAND",
    "FUSIONS",
    "GROUPS",
    "LABELS",
    "PROBE_FEATURES",
    "REFERENCES",
    "RESULTS_FILE",
    "SCHEMA",
    "TOKEN_FUSION",
    "DataSizeConfig",
    "DataSizeResultError",
    "TrainConfig",
    "read_results",
    "run_datasize",
    "write_results",
]
