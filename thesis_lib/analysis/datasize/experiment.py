"""The whole data-size experiment as one call, and its results file (one small JSON with full provenance).

`run_datasize(DataSizeConfig())` prepares the twin and its fixed tokens (`data.prepare`), then for every
training size (nested prefixes of one shuffled train pool; dev and test fixed) and every seed trains each
fusion of `models.FUSIONS` with the same recipe (`training`), fits the linear probes that show the
alignment evidence is in the tokens at that size, and returns the results document; `write_results`
stores it atomically and `read_results` says in one line what is wrong with a file that is missing,
unreadable, of another schema or made by another configuration.

Scores: test F1 at per-genre thresholds tuned on dev, averaged over a genre group (alignment: Crime and
Mystery; interaction: Thriller and Fantasy; all 23), then over the seeds. Intervals: the percentile
bootstrap over test movies of that seed-averaged F1 (`metrics.bootstrap_indices`, the same resampled
movies for every size, seed and fusion); a difference (cross-attention minus a pooled fusion) is
bootstrapped the same way, paired, and its verdict comes from its interval (`analysis.verdicts`).

The budget (`budget_minutes`, wall time on one core) is part of the configuration, so it is stated before
the run; the file records the wall time of every stage beside it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thesis_lib.analysis import results_file
from thesis_lib.analysis.datasize.data import Prepared, prepare
from thesis_lib.analysis.datasize.features import MovieFeatures, image_token_dim
from thesis_lib.analysis.datasize.models import FUSIONS, LABELS, build_model, parameter_count
from thesis_lib.analysis.datasize.training import TrainConfig, Trained, train_model
from thesis_lib.analysis.probes.scores import ProbeConfig, run_probe
from thesis_lib.analysis.probes.targets import alignment_rules, describe_rule, named_prop_has
from thesis_lib.analysis.verdicts import verdict_of
from thesis_lib.data.tokenizers import load_pretrained_tokenizer, minilm_dir
from thesis_lib.data.twin import GENRE_EVIDENCE, TwinConfig, oracle_predict
from thesis_lib.errors import ThesisError
from thesis_lib.experiments.provenance import library_versions
from thesis_lib.genres import GENRES
from thesis_lib.machine import cpu_name, load_average
from thesis_lib.metrics.bootstrap import bootstrap_indices, resample_counts
from thesis_lib.metrics.inputs import check_pair
from thesis_lib.metrics.weighted import WeightedMetrics
from thesis_lib.paths import project_root
from thesis_lib.storage import stable_hash
from thesis_lib.versions import git_state

SCHEMA = "thesis-datasize/1"
RESULTS_FILE = Path("results") / "datasize.json"  # relative to the project root
COMMAND = "thesis datasize --out results/datasize.json"
CACHE_DIR = Path("data") / "datasize"  # relative to the project root; never committed
REFERENCES = ("early", "attention")  # the pooled fusions cross-attention is compared with
TOKEN_FUSION = "cross_attention"
GROUPS = {kind: [GENRES.index(g) for g, k in GENRE_EVIDENCE.items() if k == kind] for kind in ("alignment", "interaction")}
GROUPS["all"] = list(range(len(GENRES)))
PROBE_FEATURES = {"named": "object token of the named prop", "pooled": "mean of the poster and plot tokens"}
CONFIDENCE = 0.95


class DataSizeResultError(ThesisError, ValueError):
    """A data-size results file that cannot be used: missing, unreadable, or from another configuration."""


@dataclass(frozen=True)
class DataSizeConfig:
    # 22,300 movies: a train split of ~16,050 (the pool for 16,000) and dev/test splits above 1,000/2,000.
    # (A first run to 8,000 movies on an 11,300-movie twin took 17.6 min; the 16,000 step was estimated
    # at ~13 min more from its stage times, which fits the budget below.)
    twin: TwinConfig = field(default_factory=lambda: TwinConfig(n_movies=22_300, seed=0,
                                                                split_fractions=(0.72, 0.095, 0.185)))
    sizes: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000)  # training movies, nested prefixes of one pool
    dev_size: int = 1000
    test_size: int = 2000
    pool_seed: int = 0  # shuffles the twin's train split once; sizes are prefixes of it
    text_tokens: int = 64  # the smoke profile's text_max_length
    max_objects: int = 12  # the twin draws at most 12 objects per poster
    width: int = 64  # every fusion's width (cross-attention: dim 64, 4 heads)
    depth: int = 2  # cross-attention layers (the smoke profile's)
    train: TrainConfig = field(default_factory=TrainConfig)
    fusions: tuple[str, ...] = FUSIONS
    seeds: tuple[int, ...] = (0, 1)
    n_resamples: int = 1000
    bootstrap_seed: int = 0
    probe_resamples: int = 500
    torch_threads: int = 1  # one CPU core: the run time is part of the result
    budget_minutes: float = 35.0  # stated before the run: the wall time the whole command may take

    @classmethod
    def smoke(cls) -> DataSizeConfig:
        """Tiny sizes that check the whole path in seconds (tests, `--smoke`); not the chapter's numbers."""
        return cls(twin=TwinConfig(n_movies=160, seed=0, split_fractions=(0.5, 0.2, 0.3)), sizes=(30, 60),
                   dev_size=30, test_size=40, text_tokens=16, width=8, depth=1, seeds=(0,), n_resamples=50,
                   probe_resamples=20, train=TrainConfig(learning_rates=(1e-3, 1e-2), min_epochs=1, min_sample_visits=60,
                                                    dev_checks=1),
                   budget_minutes=2.0)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as the file holds them

    def config_hash(self) -> str:
        """What a results file must match to be read as this configuration's (schema included)."""
        return stable_hash({"schema": SCHEMA, "config": self.to_dict()}, length=16)


def run_datasize(config: DataSizeConfig, cache_root: Path | None = None,
                 log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Prepare, train, probe and score everything; the results document (see the module docstring).
    `cache_root`: where the twin and its tokens are kept (default: the project's data/datasize)."""
    cache_root = project_root() / CACHE_DIR if cache_root is None else Path(cache_root)
    torch.set_num_threads(config.torch_threads)
    started, load_before = time.perf_counter(), load_average()
    code = git_state()  # read before training: the code that ran, not the checkout as it is at the end
    data = prepare(config.twin, max(config.sizes), config.dev_size, config.test_size, config.pool_seed,
                   config.text_tokens, config.max_objects, cache_root, log)
    text_dim, image_dim = data.test.text.shape[-1], image_token_dim()
    runs: list[dict[str, Any]] = []
    trained: dict[tuple[int, str], list[Trained]] = {}
    probes: list[dict[str, Any]] = []
    for size in config.sizes:
        train = data.train_pool.rows(range(size))
        size_started = time.perf_counter()
        for seed in config.seeds:
            for name in config.fusions:
                tried = [_train(name, train, data, text_dim, image_dim, lr, config, seed)
                         for lr in config.train.learning_rates]
                run = min(tried, key=lambda t: t.dev_loss)  # the first of equals: min keeps it
                trained.setdefault((size, name), []).append(run)
                runs.append({"size": size, "fusion": name, "seed": seed, "learning_rate": run.learning_rate,
                             "epochs": run.epochs, "best_epoch": run.best_epoch, "dev_loss": round(run.dev_loss, 5),
                             "test_f1": {group: _f1(data.test, run, columns) for group, columns in GROUPS.items()},
                             "tried": [{"learning_rate": t.learning_rate, "dev_loss": round(t.dev_loss, 5),
                                        "best_epoch": t.best_epoch, "wall_s": round(t.wall_s, 1)} for t in tried],
                             "wall_s": round(sum(t.wall_s for t in tried), 1)})
                log(f"{size:>6} movies  {name:<16} seed {seed}: alignment F1 {runs[-1]['test_f1']['alignment']:.3f}, "
                    f"interaction {runs[-1]['test_f1']['interaction']:.3f} (lr {run.learning_rate:g}, "
                    f"{runs[-1]['wall_s']:.0f} s)")
        training_s = time.perf_counter() - size_started
        probe_started = time.perf_counter()
        probes += _probes(data, train, size, config)
        data.stages.setdefault("sizes", []).append({"size": size, "training_s": round(training_s, 1),
                                                    "probes_s": round(time.perf_counter() - probe_started, 1)})
    summary, comparisons = _summaries(config, data, trained)
    wall = time.perf_counter() - started
    return {
        "schema": SCHEMA,
        "command": COMMAND,
        "config_hash": config.config_hash(),
        "config": config.to_dict(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": code,
        "versions": library_versions(),
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "budget": {"minutes": config.budget_minutes, "wall_minutes": round(wall / 60, 1),
                   "within": wall / 60 <= config.budget_minutes},
        "wall_time_s": round(wall, 1),
        "stages": data.stages,
        "twin": _twin_facts(config, data),
        "groups": {group: [GENRES[c] for c in columns] for group, columns in GROUPS.items()},
        "models": {name: {"label": LABELS[name],
                          "parameters": parameter_count(build_model(name, config.width, text_dim, image_dim, config.depth))}
                   for name in config.fusions},
        "summary": summary,
        "comparisons": comparisons,
        "first_ahead": _first_ahead(config, comparisons),
        "probes": probes,
        "runs": runs,
    }


def _train(name: str, train: MovieFeatures, data: Prepared, text_dim: int, image_dim: int, learning_rate: float,
           config: DataSizeConfig, seed: int) -> Trained:
    torch.manual_seed(seed)  # the same initialisation for every learning rate of a seed
    model = build_model(name, config.width, text_dim, image_dim, config.depth)
    return train_model(model, train, data.dev, data.test, learning_rate, config.train, seed)


def _engine(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, columns: list[int]) -> WeightedMetrics:
    """The project's resampled-metrics engine on the genre columns of one group (validated inputs)."""
    labels, probs = check_pair(labels[:, columns], probs[:, columns])
    return WeightedMetrics(labels, probs, np.asarray(thresholds, dtype=np.float64)[columns])


def _f1(data: MovieFeatures, run: Trained, columns: list[int]) -> float:
    engine = _engine(data.labels.numpy(), run.test_probs, run.thresholds, columns)
    return round(float(engine.compute(np.ones((1, len(data))), ["macro_f1"])["macro_f1"][0]), 4)


def _summaries(config: DataSizeConfig, data: Prepared, trained: dict[tuple[int, str], list[Trained]]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per size, fusion and genre group: macro-F1 averaged over seeds with its bootstrap interval; and
    cross-attention minus each pooled fusion, paired over the same resampled test movies."""
    labels, n_test = data.test.labels.numpy(), len(data.test)
    everyone = np.ones((1, n_test))
    counts = resample_counts(bootstrap_indices(n_test, config.n_resamples, config.bootstrap_seed), n_test)  # (R, N)
    oracle = oracle_predict(data.truth, data.test.ids).astype(np.float64)  # (N, 23) the noise-free rule
    summary, comparisons = [], []
    for group, columns in GROUPS.items():
        ceiling = _engine(labels, oracle, np.full(len(GENRES), 0.5), columns)
        for size in config.sizes:
            resampled, point = {}, {}
            for name in config.fusions:
                engines = [_engine(labels, run.test_probs, run.thresholds, columns) for run in trained[(size, name)]]
                resampled[name] = np.mean([e.compute(counts, ["macro_f1"])["macro_f1"] for e in engines], axis=0)  # (R,)
                seeds = [float(e.compute(everyone, ["macro_f1"])["macro_f1"][0]) for e in engines]
                point[name] = float(np.mean(seeds))
                low, high = _interval(resampled[name])
                summary.append({"group": group, "size": size, "fusion": name, "f1": point[name], "ci_low": low,
                                "ci_high": high, "seed_f1": seeds})
            for reference in REFERENCES:
                if TOKEN_FUSION in point and reference in point:
                    low, high = _interval(resampled[TOKEN_FUSION] - resampled[reference])
                    comparisons.append({"group": group, "size": size, "a": TOKEN_FUSION, "b": reference,
                                        "delta": point[TOKEN_FUSION] - point[reference], "ci_low": low,
                                        "ci_high": high, "verdict": str(verdict_of(low, high))})
        summary.append({"group": group, "size": None, "fusion": "oracle",
                        "f1": float(ceiling.compute(everyone, ["macro_f1"])["macro_f1"][0]),
                        "ci_low": None, "ci_high": None, "seed_f1": []})
    return summary, comparisons


def _first_ahead(config: DataSizeConfig, comparisons: list[dict[str, Any]]) -> dict[str, int | None]:
    """Per genre group: the smallest size from which on cross-attention is ahead of every pooled fusion."""
    first: dict[str, int | None] = {}
    for group in GROUPS:
        ahead = {size: all(c["verdict"] == "ahead" for c in comparisons if c["group"] == group and c["size"] == size)
                 for size in config.sizes}
        sizes = [size for size in config.sizes if all(ahead[later] for later in config.sizes if later >= size)]
        first[group] = min(sizes) if sizes and any(c["group"] == group for c in comparisons) else None
    return first


def _probes(data: Prepared, train: MovieFeatures, size: int, config: DataSizeConfig) -> list[dict[str, Any]]:
    """Is the alignment evidence in the tokens? A linear probe per alignment rule, from the named prop's
    object token (where the evidence is) and from the pooled tokens (what a pooled fusion starts from)."""
    probe_config = ProbeConfig(n_resamples=config.probe_resamples)
    rows = []
    for genre, attribute, value in alignment_rules(data.truth):
        target = describe_rule(attribute, value)
        train_y, test_y = (named_prop_has(data.truth, part.ids, attribute, value) for part in (train, data.test))
        for key, (train_x, test_x) in {"named": (_named_tokens(train, data), _named_tokens(data.test, data)),
                                        "pooled": (_pooled(train), _pooled(data.test))}.items():
            score = run_probe(target, PROBE_FEATURES[key], "fixed tokens", train_x, train_y, test_x, test_y,
                              config=probe_config)
            rows.append({"size": size, "genre": genre, "target": target, "features": key,
                         **{k: v for k, v in dataclasses.asdict(score).items() if k not in ("target", "features", "run")}})
    return rows


def _named_tokens(part: MovieFeatures, data: Prepared) -> np.ndarray:
    """(N, D_image) the object token of each movie's named prop."""
    named = [data.truth["movies"][movie_id]["named_object"] for movie_id in part.ids]
    return part.image[torch.arange(len(part)), torch.tensor(named)].numpy()


def _pooled(part: MovieFeatures) -> np.ndarray:
    """(N, D_image + D_text) the masked means of the object and text tokens."""
    image = (part.image * part.image_mask[..., None]).sum(1) / part.image_mask.sum(1, keepdim=True).clamp(min=1)
    text = (part.text.float() * part.text_mask[..., None]).sum(1) / part.text_mask.sum(1, keepdim=True).clamp(min=1)
    return torch.cat([image, text], dim=1).numpy()


def _twin_facts(config: DataSizeConfig, data: Prepared) -> dict[str, Any]:
    """What the twin is, and whether the plot's named prop survives the token cut."""
    vocabulary = load_pretrained_tokenizer(minilm_dir()).get_vocab()
    parts = {"train": data.train_pool, "dev": data.dev, "test": data.test}
    kept = {}
    for name, part in parts.items():
        words = [data.truth["movies"][i]["named_object_mention"]["word"].lower() for i in part.ids]
        word_ids = torch.tensor([vocabulary.get(word, -1) for word in words])  # (N,)
        kept[name] = float((part.text_ids == word_ids[:, None]).any(dim=1).float().mean())
    return {"seed": config.twin.seed, "n_movies": config.twin.n_movies, "folder": data.twin_root.name,
            "pool_size": len(data.train_pool), "dev_size": len(data.dev), "test_size": len(data.test),
            "bayes_macro_f1_whole_test_split": data.truth["bayes_macro_f1"], "label_noise": data.truth.get("label_noise_measured"),
            "named_prop_within_token_cut": kept}


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def read_results(path: Path, config: DataSizeConfig | None = None) -> dict[str, Any]:
    """The results document at `path`; DataSizeResultError (one line naming the file) when it is missing,
    unreadable, of another schema, or made by another configuration than `config` (default: the current)."""
    return results_file.read_results(path, what="data-size", schema=SCHEMA, config_hash=(config or DataSizeConfig()).config_hash(),
                                     command=COMMAND, error=DataSizeResultError)
