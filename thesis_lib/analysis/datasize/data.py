"""One larger twin and its fixed tokens, made once and cached under the project's data folder.

The twin is generated with `DataSizeConfig.twin`; its dev and test splits are cut to fixed sizes (the
same movies at every training size), and its train split, shuffled once with `pool_seed`, is the pool
whose prefixes are the training sets: every smaller training set is inside every larger one. The
features of all these movies are computed once (`features.movie_features`) and stored beside the twin
with the seconds each stage took, so a rerun reuses them and still reports what they cost to make.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thesis_lib.analysis.datasize.features import MovieFeatures, movie_features
from thesis_lib.data.mmimdb import load_release
from thesis_lib.data.twin import TwinConfig, generate_twin, load_twin_truth
from thesis_lib.errors import ThesisError
from thesis_lib.storage import stable_hash, write_text_atomic

STAGES_FILE = "datasize-stages.json"  # beside the twin: how long generating it took


class DataSizeDataError(ThesisError, ValueError):
    """The twin of the data-size experiment is too small for the sizes asked of it."""


@dataclass(frozen=True)
class Prepared:
    train_pool: MovieFeatures  # the largest training set; size n is its first n movies
    dev: MovieFeatures
    test: MovieFeatures
    truth: dict[str, Any]
    stages: dict[str, Any]  # wall seconds of generating the twin and of each feature kind, and what was reused
    twin_root: Path


def prepare(twin: TwinConfig, largest: int, dev_size: int, test_size: int, pool_seed: int, text_tokens: int,
            max_objects: int, cache_root: Path, log: Callable[[str], None] = lambda line: None) -> Prepared:
    key = stable_hash(twin.to_json(), length=12)
    root = Path(cache_root) / f"twin-{key}"
    stages: dict[str, Any] = {}
    if not (root / STAGES_FILE).is_file():
        log(f"generating a {twin.n_movies}-movie twin in {root}")
        summary = generate_twin(root, twin, workers=1, overwrite=True)
        write_text_atomic(root / STAGES_FILE, json.dumps({"twin_generation_s": round(summary.seconds, 1)}) + "\n")
        stages["twin_reused"] = False
    else:
        stages["twin_reused"] = True
    stages.update(json.loads((root / STAGES_FILE).read_text(encoding="utf-8")))
    release, truth = load_release(root, verify_posters="header", workers=1), load_twin_truth(root)
    split = release.official_split
    pool = list(split["train"])
    np.random.default_rng(pool_seed).shuffle(pool)
    wanted = {"train": (pool, largest), "dev": (list(split["dev"]), dev_size), "test": (list(split["test"]), test_size)}
    for name, (ids, size) in wanted.items():
        if len(ids) < size:
            raise DataSizeDataError(f"{root}: the twin's {name} split has {len(ids)} movies, the experiment needs "
                                    f"{size}; enlarge DataSizeConfig.twin.n_movies")
    ids = {name: ids[:size] for name, (ids, size) in wanted.items()}
    path = root / f"features-{stable_hash([ids, text_tokens, max_objects], length=12)}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        stages.update(stored["stages"], features_reused=True)
        parts = {name: MovieFeatures(tuple(ids[name]), *stored[name]) for name in ids}
    else:
        log(f"computing the fixed tokens of {sum(map(len, ids.values()))} movies (MiniLM on one core)")
        timings: dict[str, float] = {}
        parts = {name: movie_features(release.movies_in(ids[name]), truth, text_tokens, max_objects, timings)
                 for name in ids}
        timings = {name: round(seconds, 1) for name, seconds in timings.items()}
        torch.save({"stages": timings, **{name: _tensors(part) for name, part in parts.items()}}, path)
        stages.update(timings, features_reused=False)
    return Prepared(parts["train"], parts["dev"], parts["test"], truth, stages, root)


def _tensors(part: MovieFeatures) -> list[torch.Tensor]:
    return [part.text, part.text_mask, part.image, part.image_mask, part.labels, part.text_ids]
