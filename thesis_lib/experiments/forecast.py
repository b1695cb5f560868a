"""The plan before the spend: what every run of a profile's grid will cost, before anything is trained.

`forecast_grid(profile, release)` walks `specs.plan_grid(profile)` in the order the grid runs it and gives
each run its epochs, optimizer steps, train/dev/test movies, GPU FLOPs, projected GPU time and checkpoint
bytes, then adds the work outside the training loop (poster decoding and transforms, object detection,
explanations) and the disk the grid holds at its fullest. `thesis run --plan [--json]` prints it.

Where each number comes from:
- FLOPs are counted by code (`models.costs`: `FlopCounterMode` on the real architectures built on the meta
  device), per sample at the plot's own length in tokens. Text FLOPs are a quadratic in the length, so
  counts at three lengths give every length exactly (`models.flops.QuadraticFlops`). Lengths are the
  release's plots tokenised by the backbone's tokenizer when it is on this machine, else by a stated
  stand-in (`PlotLengths.source`); every run is also costed at the 512-token worst case.
- Epochs are the profile's `epochs` x `lr_scales` trials: an upper bound, early stopping (`patience`) may
  end a run sooner.
- GPU time is FLOPs over a rate: the achieved FLOP/s that `benchmarks/results/*.json` measured for that
  model and task on that GPU where there is one (`rate_source` "measured ..."), else `MFU_ASSUMED` of the
  GPU's dense bf16 peak (`machine.PEAK_BF16_DENSE`).
- CPU-side costs per item were measured on a 2-core AMD EPYC (DESIGN.md, "full profile at real size"):
  `CPU_MS_PER_ITEM`, Faster R-CNN 1.28 s per poster; the GPU detection rates and the CPU FLOP rate for
  explanations are assumptions, named as such in the output.
- Disk: checkpoints are parameter bytes (float32 safetensors; `best/` stays after a run, `last/` with its
  AdamW moments only while it runs), feature caches follow `feature_cache_plan` (one function, the policy
  the grid's feature cache implements), plus the fixed costs: venv and release measured where they exist,
  pretrained weights measured or counted from the architectures.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thesis_lib.data.mmimdb import Movie, Release
from thesis_lib.data.splits import Split, official_split, thesis_split
from thesis_lib.data.text import clean_text
from thesis_lib.experiments.caches import feature_caches_of
from thesis_lib.experiments.pipeline import TEXT_CLEANINGS
from thesis_lib.experiments.profile import Profile
from thesis_lib.experiments.specs import RunSpec, config_hashes, plan_grid, resolve_model_config
from thesis_lib.machine import PEAK_BF16_DENSE, choose_device, loader_workers, peak_bf16_flops
from thesis_lib.models import costs
from thesis_lib.models.architectures import text_architectures
from thesis_lib.models.configs import ModelConfig, TextEncoderConfig
from thesis_lib.models.flops import QuadraticFlops
from thesis_lib.models.pretrained import pretrained_dir
from thesis_lib.paths import project_root

MFU_ASSUMED = 0.35  # share of the dense bf16 peak a run achieves when no benchmark measured it (DESIGN.md: 25-40%)
DEFAULT_GPU = "NVIDIA H100 80GB HBM3"  # the GPU a plan is made for when this machine has none (H100 SXM)
WORST_LENGTH = 512  # tokens: every plot at the longest input BERT-base / RoBERTa-base read
COUNT_LENGTHS = (64, 256, 512)  # three lengths fix the quadratic FLOPs(L) of a text model exactly
# CPU milliseconds per item, one core (DESIGN.md "full profile at real size", measured on AMD EPYC).
CPU_MS_PER_ITEM = {"decode": 1.27, "eval_transform": 0.88, "train_transform": 1.74, "clean_text": 0.25,
                   "tokenize_collate": 0.57}
# Object detection, seconds per poster. CPU: measured (Faster R-CNN R50-FPN, 2 cores); the rest assumed.
DETECTION_S_PER_POSTER = {
    "frcnn": {"cpu": 1.28, "gpu": 1 / 100},   # GPU: assumed 100 posters/s (R50-FPN at ~224-336 px, batched)
    "yolo": {"cpu": 0.05, "gpu": 1 / 500},    # assumed: YOLOv8n, 224 px; CPU 2 cores, GPU batched
    "oracle": {"cpu": 0.0, "gpu": 0.0},       # the twin's ground truth: read, not computed
}
DETECTION_MEASURED = {("frcnn", "cpu")}  # which of the above were measured (the others are assumptions)
CPU_FLOPS_PER_CORE = 50e9  # assumed fp32 FLOP/s of one CPU core (AVX2), for explanations on the CPU
# `thesis xai check` per explained run (xai.check.XaiCheckConfig): 200 pairs x 3 class-activation maps
# (Grad-CAM, HiResCAM, randomised model: forward + backward each), 50 deletion pairs x 22 forward passes,
# and about 400 forward passes to find the true-positive pairs. Chapter 04_xai: assumed 3 runs' worth.
XAI_TRAIN_PASSES, XAI_FORWARD_PASSES, XAI_CHAPTER_RUNS = 600, 1500, 3
ADAMW_STATE_PER_PARAMETER = 2  # exp_avg and exp_avg_sq, float32 like the weights
# Fixed disk costs that cannot be measured before they exist (DESIGN.md, measured 2026-12).
VENV_BYTES_STATED = 6.8e9
RELEASE_BYTES_STATED = 8.5e9
DETECTOR_WEIGHT_BYTES = {"frcnn": 167.1e6, "yolo": 6.5e6}  # COCO Faster R-CNN R50-FPN, YOLOv8n checkpoints
PARTS = ("train", "dev", "test")


# ------------------------------------------------------------------------------------------ plot lengths


@dataclass(frozen=True)
class PlotLengths:
    """Plot lengths in tokens (special tokens included, before truncation) for one tokenizer and text
    cleaning: of every movie, or of a seeded sample (`sampled`), and how they were obtained."""

    ids: tuple[str, ...]
    lengths: np.ndarray      # (N,) int64, in the order of `ids`
    source: str              # e.g. "tokenised with bert-base-uncased's tokenizer", or the stated estimate
    sampled: bool = False    # True: a random sample of the release; other movies get its lengths in turn

    def of(self, ids: Sequence[str], max_length: int) -> np.ndarray:
        """(len(ids),) lengths truncated to `max_length`: exact per movie, or the sample tiled to length."""
        if self.sampled:
            values = np.resize(self.lengths, len(ids))
        else:
            values = self.lengths[[self.index[i] for i in ids]]
        return np.minimum(values, max_length)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """movie id -> its position in `ids` (built once: a plan asks for every split part many times)."""
        return {movie_id: i for i, movie_id in enumerate(self.ids)}


def plot_lengths(movies: Sequence[Movie], backbone: str, cleaning: str) -> PlotLengths:
    """Token lengths of the movies' plots for `backbone`'s tokenizer after `cleaning`.

    The backbone's own tokenizer when it is on this machine (local folder or HF cache, never the network
    offline); else, for the uncased WordPiece models, the packaged MiniLM tokenizer, whose vocabulary is
    bert-base-uncased's (the same pieces, so exact); for the others the same WordPiece count as a stated
    estimate (RoBERTa's byte-level BPE gives a similar count on English prose); without MiniLM, words x 1.3.
    """
    texts = [clean_text(movie.plot, TEXT_CLEANINGS[cleaning]) for movie in movies]
    return _counted(movies, texts, *_tokenizer(backbone))


def _counted(movies: Sequence[Movie], texts: Sequence[str], tokenizer: Any, source: str,
             sampled: bool = False) -> PlotLengths:
    ids = tuple(movie.id for movie in movies)
    if tokenizer is None:
        words = np.array([len(text.split()) for text in texts])
        return PlotLengths(ids, np.ceil(1.3 * words).astype(np.int64) + 2, source, sampled)
    tokenizer.model_max_length = 10**6  # count, do not truncate (and do not warn about long plots)
    rows = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    return PlotLengths(ids, np.array([len(row) for row in rows], dtype=np.int64), source, sampled)


def _tokenizer(backbone: str) -> tuple[Any, str]:
    """(tokenizer or None, what the lengths are) for `backbone`; see `plot_lengths`."""
    # Imported here: tokenizers pull in transformers (seconds), which a plan without text never needs.
    from thesis_lib.data.tokenizers import TokenizerNotFoundError, minilm_dir
    from thesis_lib.models.text import load_tokenizer

    try:
        return load_tokenizer(TextEncoderConfig(backbone=backbone)), f"tokenised with {backbone}'s tokenizer"
    except (OSError, ValueError, TokenizerNotFoundError):
        pass
    try:
        from transformers import AutoTokenizer  # seconds to import; only when the backbone's is missing

        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    except (OSError, ModuleNotFoundError):
        return None, f"ESTIMATE for {backbone}: words x 1.3 + 2 (no tokenizer on this machine)"
    kind = text_architectures().get(backbone, (None, ""))[1]
    exact = "exact" if kind == "wordpiece" else f"an ESTIMATE of {backbone}'s {kind or 'own'} tokens"
    return tokenizer, (f"{backbone}'s tokenizer not on this machine: MiniLM's WordPiece (bert-base-uncased's "
                       f"vocabulary), {exact}")


# ------------------------------------------------------------------------------------------ rates


@dataclass(frozen=True)
class GpuRates:
    """The GPU a plan is made for: its peak, and achieved FLOP/s that a benchmark measured on it."""

    name: str
    peak_flops: float
    peak_source: str
    measured: Mapping[tuple[str, str], tuple[float, str]]  # (model, "train" | "extract") -> (FLOP/s, file)
    origin: str = "given"  # why this GPU: "given" (--gpu), "this machine's", or the default's reason

    def rate(self, model: str, task: str) -> tuple[float, str]:
        """(FLOP/s, where it comes from) for `task` of `model`."""
        if (model, task) in self.measured:
            flops, where = self.measured[model, task]
            return flops, f"measured {flops / 1e12:.0f} TFLOP/s ({where})"
        return MFU_ASSUMED * self.peak_flops, f"assumed {MFU_ASSUMED:.0%} MFU"


def gpu_rates(gpu: str | None = None, results_dir: Path | None = None) -> GpuRates:
    """The rates for `gpu` (a CUDA device name; default: this machine's GPU, else an H100 SXM)."""
    origin = "given"
    if gpu is None:
        device = choose_device("auto")
        gpu, origin = DEFAULT_GPU, "this machine has none: planned for an H100; --gpu NAME plans for another"
        if device.type == "cuda":
            import torch  # only reached when a GPU is usable: its name

            gpu, origin = torch.cuda.get_device_name(device), "this machine's"
    known = peak_bf16_flops(gpu)
    if known is None:  # a GPU the table does not know: plan for the H100 and say so
        known = peak_bf16_flops(DEFAULT_GPU)
        assert known is not None
        known = (known[0], f"{gpu} is not in machine.PEAK_BF16_DENSE: planned with the H100 SXM's peak")
    return GpuRates(gpu, known[0], known[1], measured_rates(gpu, results_dir), origin)


def measured_rates(gpu: str, results_dir: Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    """Best achieved FLOP/s per (model, task) of full-size bf16 benchmark cases run on `gpu`."""
    folder = results_dir or project_root() / "benchmarks" / "results"
    fragment = next((name for name, _, _ in PEAK_BF16_DENSE if name in gpu), gpu)
    found: dict[tuple[str, str], tuple[float, str]] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        device = result.get("device") or {}
        if device.get("type") != "cuda" or fragment not in str(device.get("name", "")):
            continue
        for case in result.get("cases", []):
            achieved = case.get("achieved_tflops")
            if case.get("size") != "full" or not (case.get("techniques") or {}).get("bf16") or not achieved:
                continue
            key = (case.get("model"), case.get("task"))
            if achieved * 1e12 > found.get(key, (0.0, ""))[0]:
                found[key] = (achieved * 1e12, path.name)
    return found


# ------------------------------------------------------------------------------------------ one run


@dataclass
class RunCost:
    """One run of the plan (`Forecast.rows`)."""

    label: str
    name: str
    model: str
    split: str
    seed: int
    kind: str                 # "train" | "late" | "baseline"
    backbones: str            # "finetune" | "frozen"
    epochs: int               # upper bound: early stopping may end sooner
    steps: int                # optimizer steps over all epochs and learning-rate trials
    movies: dict[str, int]    # train/dev/test
    flops: float              # training + evaluation FLOPs at the release's plot lengths
    flops_worst: float        # the same with every plot at WORST_LENGTH tokens
    extraction_flops: float   # feature caches this run writes (counted at the run that first needs them)
    gpu_hours: float
    gpu_hours_worst: float
    rate_source: str          # "measured ..." | "assumed 35% MFU" | "-" (nothing on the GPU)
    best_bytes: int           # best/ checkpoint kept after the run
    last_bytes: int           # last/ (weights + AdamW moments) while the run is going
    cpu_core_s: float         # loader work: decode, transforms, cleaning, tokenising (core-seconds)
    caches_created: list[str] = field(default_factory=list)
    caches_freed: list[str] = field(default_factory=list)
    disk_during: float = 0.0  # bytes on disk while this run goes (fixed + checkpoints + live caches)
    disk_during_worst: float = 0.0


@dataclass(frozen=True)
class CacheNeed:
    """One feature cache of the plan: which encoder over which split, how big, and which runs read it."""

    key: str          # "<split> | <encoder> | <modality> | <pooled|tokens>"
    modality: str
    layout: str       # "pooled" (N x D float32) | "tokens" (ragged fp16 tokens + pooled)
    split: str
    encoder: str      # whose encoder: "run <split>/<name>/seed<k> <config hash>" | "registry <hash> seed<k>"
    bytes: float
    bytes_worst: float
    extraction_flops: float
    extraction_flops_worst: float
    first: int        # index in the plan of the first run that reads it (it is written then)
    last: int         # index of the last run that reads it (it is deleted after it)


@dataclass
class DiskItem:
    name: str
    bytes: float
    how: str          # "measured <path>" | "stated ..." | "counted ..."
    exists: bool      # already on this machine (needs no free space)


# ------------------------------------------------------------------------------------------ the forecast


@dataclass
class Forecast:
    """The plan of one profile's grid over one release: `rows` (one per run), `totals`, the work outside
    training (`cpu_work`), fixed disk costs, and the assumptions each number rests on."""

    profile: str
    release: str
    movies: int
    gpu: str
    rows: list[RunCost]
    caches: list[CacheNeed]
    fixed: list[DiskItem]
    cpu_work: list[dict[str, Any]]
    totals: dict[str, Any]
    lengths: dict[str, dict[str, Any]]
    assumptions: list[str]

    @property
    def peak_disk_bytes(self) -> float:
        return self.totals["peak_disk_bytes"]

    @property
    def existing_bytes(self) -> float:
        """Bytes of the fixed costs already on this machine (they need no free space)."""
        return sum(item.bytes for item in self.fixed if item.exists)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "release": self.release, "movies": self.movies, "gpu": self.gpu,
            "totals": self.totals, "lengths": self.lengths, "assumptions": self.assumptions,
            "cpu_work": self.cpu_work, "fixed_disk": [dataclasses.asdict(item) for item in self.fixed],
            "caches": [dataclasses.asdict(cache) for cache in self.caches],
            "runs": [dataclasses.asdict(row) for row in self.rows],
        }

    def summary(self) -> str:
        t = self.totals
        lines = [f"plan: profile {self.profile}, {self.movies:,} movies from {self.release}, GPU {self.gpu}",
                 f"  {'split':<8} {'run':<34} {'seeds':<6} {'epochs':>6} {'steps':>7} {'train/dev/test':>18} "
                 f"{'PFLOP':>7} {'@512':>7} {'GPU min':>7}  rate"]
        groups: dict[tuple[str, str], list[RunCost]] = {}
        for row in self.rows:
            groups.setdefault((row.split, row.name), []).append(row)
        for (split, name), rows in groups.items():
            row = rows[0]
            seeds = ",".join(str(r.seed) for r in rows)
            movies = "/".join(f"{row.movies[p]:,}" for p in PARTS)
            flops = row.flops + row.extraction_flops
            worst = row.flops_worst + row.extraction_flops
            epochs = "-" if row.kind != "train" else str(row.epochs)
            lines.append(f"  {split:<8} {name:<34} {seeds:<6} {epochs:>6} {row.steps or '-':>7} {movies:>18} "
                         f"{flops / 1e15:7.1f} {worst / 1e15:7.1f} {row.gpu_hours * 60:7.1f}  {row.rate_source}")
        lines.append(f"  ({len(self.rows)} runs; each line is one run per seed; PFLOP include the feature caches a "
                     f"run writes; @512: every plot at {WORST_LENGTH} tokens)")
        lines.append(f"GPU: {t['flops'] / 1e18:.2f} EFLOP at the release's plot lengths -> {t['gpu_hours']:.1f} "
                     f"GPU-hours; 512-token worst case {t['flops_worst'] / 1e18:.2f} EFLOP -> "
                     f"{t['gpu_hours_worst']:.1f} GPU-hours")
        lines.append("CPU-side work:")
        for item in self.cpu_work:
            lines.append(f"  {item['work']:<44} {item['hours']:7.2f} h  {item['note']}")
        lines.append(f"disk at peak: {t['peak_disk_bytes'] / 1e9:.1f} GB (512-token worst case "
                     f"{t['peak_disk_bytes_worst'] / 1e9:.1f} GB), during {t['peak_disk_run']}:")
        lines.append(f"  checkpoints {t['peak_checkpoint_bytes'] / 1e9:.1f} GB, feature caches "
                     f"{t['peak_cache_bytes'] / 1e9:.1f} GB, fixed {t['fixed_bytes'] / 1e9:.1f} GB "
                     f"({', '.join(f'{i.name} {i.bytes / 1e9:.1f} GB' for i in self.fixed)})")
        lines.append(f"  all checkpoints at the end: {t['checkpoint_bytes'] / 1e9:.1f} GB (every finished run keeps "
                     f"best/); largest single cache {t['largest_cache_bytes'] / 1e9:.1f} GB")
        lines.append("plot lengths in tokens (before truncation):")
        lines += [f"  {key:<24} mean {v['mean']:.0f}, p95 {v['p95']:.0f}, {v['over_max']:.1%} over {v['max_length']}: "
                  f"{v['source']}" for key, v in self.lengths.items()]
        lines.append("assumptions:")
        lines += [f"  - {assumption}" for assumption in self.assumptions]
        return "\n".join(lines)


def forecast_grid(
    profile: Profile,
    release: Release,
    *,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    runs_dir: Path | None = None,
    gpu: str | None = None,
    results_dir: Path | None = None,
    splits: Mapping[str, Split] | None = None,
    plot_sample: int | None = None,
) -> Forecast:
    """The plan of `profile`'s grid over `release`; see the module docstring. `splits` (default: made in
    memory as the grid makes them, nothing written) and `gpu`/`results_dir` are for tests and what-ifs;
    `plot_sample` tokenises only that many plots (a seeded sample; the preflight's quick estimate)."""
    plan = plan_grid(profile, models, seeds)
    splits = dict(splits) if splits is not None else _splits(profile, release)
    rates = gpu_rates(gpu, results_dir)
    by_key = {spec.key: spec for spec in plan}
    configs = {spec.key: cost_config(spec, by_key, profile) for spec in plan if spec.kind != "baseline"}
    lengths = _LengthTable(release, plot_sample)
    rows = [_run_cost(spec, configs.get(spec.key), splits[spec.split], profile, lengths, rates,
                      _text_cleaning(spec, by_key)) for spec in plan]
    caches = feature_cache_plan(plan, configs, splits, lengths, by_key, profile)
    for cache in caches:
        rows[cache.first].caches_created.append(cache.key)
        rows[cache.first].extraction_flops += cache.extraction_flops
        rows[cache.last].caches_freed.append(cache.key)
    for row, spec in zip(rows, plan, strict=True):  # extraction time at the extracting model's rate
        if row.extraction_flops:
            rate, _ = rates.rate(spec.model, "extract")
            row.gpu_hours += row.extraction_flops / rate / 3600
            row.gpu_hours_worst += row.extraction_flops / rate / 3600
    fixed = fixed_disk(profile, release, plan, configs, runs_dir)
    fixed_bytes = sum(item.bytes for item in fixed)
    peak = disk_timeline(rows, caches, fixed_bytes)
    cpu_work = _cpu_work(profile, release, plan, configs, rows, caches, splits, lengths, rates)
    totals = {
        "runs": len(rows),
        "trained_runs": sum(row.kind == "train" for row in rows),
        "flops": sum(row.flops + row.extraction_flops for row in rows),
        "flops_worst": sum(row.flops_worst + row.extraction_flops for row in rows)
        + sum(c.extraction_flops_worst - c.extraction_flops for c in caches),
        "gpu_hours": sum(row.gpu_hours for row in rows),
        "gpu_hours_worst": sum(row.gpu_hours_worst for row in rows),
        "cpu_hours": {item["work"]: item["hours"] for item in cpu_work},
        "checkpoint_bytes": sum(row.best_bytes for row in rows),
        "largest_cache_bytes": max((c.bytes for c in caches), default=0.0),
        "fixed_bytes": fixed_bytes,
        **peak,
    }
    gpu = rates.name if rates.origin == "given" else f"{rates.name} ({rates.origin})"
    return Forecast(profile.profile, str(release.root), len(release.movies), gpu, rows, caches, fixed,
                    cpu_work, totals, lengths.describe(), _assumptions(rates, profile))


def _splits(profile: Profile, release: Release) -> dict[str, Split]:
    """The profile's splits as the grid makes them (the thesis split computed in memory, not written)."""
    return {name: official_split(release) if name == "official" else
            thesis_split(release.ids, release.labels(release.ids), seed=profile.split_seed)
            for name in profile.splits}


def cost_config(spec: RunSpec, by_key: Mapping[tuple[str, int, str], RunSpec], profile: Profile) -> ModelConfig:
    """The run's model config as the grid builds it (a fusion with encoders=runs takes its sources' text and
    image parts), with `frozen` cleared: costs depend on the architecture, not on the backbone mode."""
    config = resolve_model_config(spec.model, spec.overrides, profile, spec.backbones)
    if spec.encoders == "runs" and spec.kind == "train":
        changes = {}
        for modality in ("text", "image"):
            if getattr(config, modality) is not None and spec.sources:
                source = by_key[(spec.split, spec.seed, spec.source(modality))]
                changes[modality] = getattr(cost_config(source, by_key, profile), modality)
        config = dataclasses.replace(config, **changes)
    changes = {m: dataclasses.replace(getattr(config, m), frozen=False) for m in config.modalities}
    return dataclasses.replace(config, **changes)


def _text_cleaning(spec: RunSpec, by_key: Mapping[tuple[str, int, str], RunSpec]) -> str:
    if spec.encoders == "runs" and "text" in dict(spec.sources):
        return _text_cleaning(by_key[(spec.split, spec.seed, spec.source("text"))], by_key)
    return spec.text_cleaning


class _LengthTable:
    """Plot lengths per (tokenizer backbone, cleaning), computed on first use; plots are cleaned once per
    cleaning and tokenised once per tokenizer that really differs (both take seconds at full size)."""

    def __init__(self, release: Release, sample: int | None = None):
        self.movies = list(release.movies.values())
        if sample is not None and sample < len(self.movies):  # the same seeded sample for every table
            chosen = np.random.default_rng(0).choice(len(self.movies), size=sample, replace=False)
            self.movies = [self.movies[i] for i in sorted(chosen)]
        self.sampled = len(self.movies) < len(release.movies)
        self.texts: dict[str, list[str]] = {}
        self.tables: dict[tuple[str, str], PlotLengths] = {}
        self.by_source: dict[tuple[str, str], PlotLengths] = {}
        self.max_lengths: dict[tuple[str, str], int] = {}

    def get(self, text: TextEncoderConfig, cleaning: str) -> tuple[PlotLengths, int]:
        key = (text.backbone, cleaning)
        if key not in self.tables:
            if cleaning not in self.texts:
                self.texts[cleaning] = [clean_text(m.plot, TEXT_CLEANINGS[cleaning]) for m in self.movies]
            tokenizer, source = _tokenizer(text.backbone)
            shared = (str(getattr(tokenizer, "name_or_path", text.backbone)), cleaning)  # one count per tokenizer
            if shared not in self.by_source:
                self.by_source[shared] = _counted(self.movies, self.texts[cleaning], tokenizer, source, self.sampled)
            self.tables[key] = dataclasses.replace(self.by_source[shared], source=source)
        self.max_lengths[key] = min(text.max_length, WORST_LENGTH)
        return self.tables[key], self.max_lengths[key]

    def describe(self) -> dict[str, dict[str, Any]]:
        result = {}
        for (backbone, cleaning), table in self.tables.items():
            values = table.lengths
            limit = self.max_lengths[backbone, cleaning]
            sample = f" ({len(values):,}-plot sample)" if self.sampled else ""
            result[f"{backbone}/{cleaning}"] = {
                "mean": float(values.mean()), "p95": float(np.percentile(values, 95)), "max": int(values.max()),
                "over_max": float((values > limit).mean()), "max_length": limit, "source": table.source + sample}
        return result


@dataclass(frozen=True)
class _SampleFlops:
    """FLOPs per sample of one run's model as a function of the plot length (arrays in, arrays out)."""

    train: QuadraticFlops | None      # fine-tune: encoders + fusion + head, forward + backward
    forward: QuadraticFlops | None    # fine-tune: the same, forward only
    head_train: QuadraticFlops        # fusion + head only (frozen backbones read cached features)
    head_forward: QuadraticFlops


def _quadratic(count) -> QuadraticFlops:
    return QuadraticFlops(COUNT_LENGTHS, tuple(int(count(length)) for length in COUNT_LENGTHS))


@functools.cache
def sample_flops(config: ModelConfig) -> _SampleFlops:
    """Per-sample FLOPs of `config` (text length L as the variable; constant for models without text)."""
    image = costs.image_cost(config.image) if config.image is not None else None

    def encoders(length: int, train: bool) -> int:
        total = 0
        if config.text is not None:
            text = costs.text_cost(config.text, length)
            total += text.train if train else text.forward
        if image is not None:
            total += image.train if train else image.forward
        return total

    return _SampleFlops(
        train=_quadratic(lambda n: encoders(n, True) + costs.classify_cost(config, n)[1]),
        forward=_quadratic(lambda n: encoders(n, False) + costs.classify_cost(config, n)[0]),
        head_train=_quadratic(lambda n: costs.classify_cost(config, n)[1]),
        head_forward=_quadratic(lambda n: costs.classify_cost(config, n)[0]),
    )


def _sum(function: QuadraticFlops, lengths: np.ndarray) -> float:
    """Sum of a quadratic over an array of lengths (vectorised: a + b L + c L^2 evaluated at every L)."""
    return float(np.sum(function(lengths.astype(np.float64))))


def _run_cost(spec: RunSpec, config: ModelConfig | None, split: Split, profile: Profile, lengths: _LengthTable,
              rates: GpuRates, cleaning: str) -> RunCost:
    movies = {part: len(split.part(part)) for part in PARTS}
    trials = len(profile.lr_scales)
    trained = spec.kind == "train"
    epochs = profile.epochs if trained else 0
    steps = math.ceil(movies["train"] / profile.batch_size) * epochs * trials if trained else 0
    row = RunCost(spec.label, spec.name, spec.model, spec.split, spec.seed, spec.kind, spec.backbones, epochs,
                  steps, movies, 0.0, 0.0, 0.0, 0.0, 0.0, "-", 0, 0, 0.0)
    if not trained or config is None:
        return row
    per = sample_flops(config)
    frozen = spec.backbones == "frozen"
    train_f, eval_f = (per.head_train, per.head_forward) if frozen else (per.train, per.forward)
    for worst in (False, True):
        part_lengths = {part: _lengths(config, split.part(part), lengths, cleaning, worst) for part in PARTS}
        total = epochs * trials * (_sum(train_f, part_lengths["train"]) + _sum(eval_f, part_lengths["dev"]))
        total += _sum(eval_f, part_lengths["dev"]) + _sum(eval_f, part_lengths["test"])  # the chosen model
        if worst:
            row.flops_worst = total
        else:
            row.flops = total
    rate, row.rate_source = rates.rate(spec.model, "train")
    row.gpu_hours, row.gpu_hours_worst = row.flops / rate / 3600, row.flops_worst / rate / 3600
    parameters = costs.parameter_counts(config)
    kept = {m: n for m, n in parameters.items() if not (frozen and m in ("text", "image"))}
    row.best_bytes = 4 * sum(kept.values())
    row.last_bytes = row.best_bytes * (1 + ADAMW_STATE_PER_PARAMETER)
    row.cpu_core_s = 0.0 if frozen else _loader_core_s(config, movies, epochs * trials, profile.image_augment)
    return row


def _lengths(config: ModelConfig, ids: Sequence[str], lengths: _LengthTable, cleaning: str,
             worst: bool) -> np.ndarray:
    """The plot lengths the model reads for these movies (zeros for a model without text)."""
    if config.text is None:
        return np.zeros(len(ids), dtype=np.int64)
    table, limit = lengths.get(config.text, cleaning)
    return np.full(len(ids), limit, dtype=np.int64) if worst else table.of(ids, limit)


def _loader_core_s(config: ModelConfig, movies: Mapping[str, int], passes: int, augment: bool) -> float:
    """CPU core-seconds the data loaders spend on one fine-tuning run (every epoch decodes and transforms
    each poster, cleans and tokenises each plot again; dev every epoch, dev + test once more at the end)."""
    ms = CPU_MS_PER_ITEM
    train_items, eval_items = passes * movies["train"], (passes + 1) * movies["dev"] + movies["test"]
    total = 0.0
    if config.image is not None:
        train_transform = ms["train_transform"] if augment else ms["eval_transform"]
        total += train_items * (ms["decode"] + train_transform) + eval_items * (ms["decode"] + ms["eval_transform"])
    if config.text is not None:
        total += (train_items + eval_items) * (ms["clean_text"] + ms["tokenize_collate"])
    return total / 1000


# ------------------------------------------------------------------------------------------ caches and disk


def feature_cache_plan(
    plan: Sequence[RunSpec],
    configs: Mapping[tuple[str, int, str], ModelConfig],
    splits: Mapping[str, Split],
    lengths: _LengthTable,
    by_key: Mapping[tuple[str, int, str], RunSpec],
    profile: Profile,
) -> list[CacheNeed]:
    """The feature caches the grid writes and when it deletes them, sized for this release.

    Which caches each run reads comes from the grid's own bookkeeping (`caches.feature_caches_of`, what
    `run_grid` deletes by): one cache per heavy encoder (text, image) and split part when every heavy encoder
    of the run is frozen; a source run's encoder (encoders=runs: one set per split and seed) or the
    registry's; pooled-only (N x D float32) for fusions that read pooled vectors, float16 tokens stored
    ragged (a plot's real tokens, 197 for ViT-B/16) plus pooled vectors, a mask byte per token and N + 1
    offsets for fusions that read tokens. A cache is written when the first run that needs it starts and
    deleted once no later run of the grid needs it. The three parts of one encoder are sized together."""
    hashes = config_hashes(list(plan), profile)
    found: dict[str, CacheNeed] = {}
    for index, spec in enumerate(plan):
        for need in feature_caches_of(spec, profile, by_key, hashes):
            if need.part != "train":
                continue  # the dev and test parts come with the train part: sized over the whole split
            layout = "tokens" if need.tokens else "pooled"
            key = f"{need.split} | {need.encoder} | {need.modality} | {layout}"
            if key in found:
                found[key] = dataclasses.replace(found[key], last=index)
                continue
            found[key] = _cache_need(key, need.modality, layout, need.split, need.encoder, configs[spec.key],
                                     splits[spec.split].ids, lengths, _text_cleaning(spec, by_key), index)
    return list(found.values())


def _cache_need(key: str, modality: str, layout: str, split: str, encoder: str, config: ModelConfig,
                ids: Sequence[str], lengths: _LengthTable, cleaning: str, index: int) -> CacheNeed:
    count = len(ids)
    values = {}
    for worst in (False, True):
        if modality == "text":
            token_counts = _lengths(config, ids, lengths, cleaning, worst)
            per_length = _quadratic(lambda n: costs.text_cost(config.text, n).forward)
            flops = _sum(per_length, token_counts)
            cost = costs.text_cost(config.text, WORST_LENGTH)
        else:
            cost = costs.image_cost(config.image)
            token_counts = np.full(count, cost.tokens, dtype=np.int64)
            flops = float(count * cost.forward)
        size = count * cost.pooled_dim * 4.0
        if layout == "tokens":
            size += float(token_counts.sum()) * (cost.token_dim * 2 + 1) + (count + 1) * 8
        values[worst] = (size, flops)
    return CacheNeed(key, modality, layout, split, encoder, values[False][0], values[True][0], values[False][1],
                     values[True][1], index, index)


def disk_timeline(rows: Sequence[RunCost], caches: Sequence[CacheNeed], fixed_bytes: float) -> dict[str, Any]:
    """Bytes on disk while each run goes, in grid order: fixed costs, the best/ checkpoints of the runs
    before it, its own best/ and last/, and every cache alive then. Fills `disk_during` of each row and
    returns the peak and its parts (for both the release's plot lengths and the worst case)."""
    finished = 0.0
    peak: dict[str, Any] = {"peak_disk_bytes": 0.0, "peak_disk_bytes_worst": 0.0}
    for index, row in enumerate(rows):
        alive = [cache for cache in caches if cache.first <= index <= cache.last]
        checkpoints = finished + row.best_bytes + row.last_bytes
        row.disk_during = fixed_bytes + checkpoints + sum(cache.bytes for cache in alive)
        row.disk_during_worst = fixed_bytes + checkpoints + sum(cache.bytes_worst for cache in alive)
        if row.disk_during > peak["peak_disk_bytes"]:
            peak |= {"peak_disk_bytes": row.disk_during, "peak_disk_run": row.label,
                     "peak_checkpoint_bytes": checkpoints, "peak_cache_bytes": sum(c.bytes for c in alive)}
        peak["peak_disk_bytes_worst"] = max(peak["peak_disk_bytes_worst"], row.disk_during_worst)
        finished += row.best_bytes
    peak.setdefault("peak_disk_run", "-")
    peak.setdefault("peak_checkpoint_bytes", 0.0)
    peak.setdefault("peak_cache_bytes", 0.0)
    return peak


def fixed_disk(profile: Profile, release: Release, plan: Sequence[RunSpec],
               configs: Mapping[tuple[str, int, str], ModelConfig], runs_dir: Path | None = None) -> list[DiskItem]:
    """The disk the grid needs besides checkpoints and caches: the venv, the release, pretrained weights."""
    items = []
    if sys.prefix != sys.base_prefix:  # running from a virtual environment: measure it
        items.append(DiskItem("venv", folder_bytes(Path(sys.prefix)), f"measured {sys.prefix}", True))
    else:
        items.append(DiskItem("venv", VENV_BYTES_STATED, "stated (DESIGN.md: the project's venv)", True))
    items.append(DiskItem("release", folder_bytes(Path(release.root)), f"measured {release.root}", True))
    if profile.model_size == "full":
        items.append(_weights_item(plan, configs))
    return items


def _weights_item(plan: Sequence[RunSpec], configs: Mapping[tuple[str, int, str], ModelConfig]) -> DiskItem:
    counted: dict[str, float] = {}
    detectors = set()
    for config in configs.values():
        if config.text is not None and config.text.pretrained:
            counted[config.text.backbone] = 4.0 * costs.text_cost(config.text, COUNT_LENGTHS[0]).parameters
        if config.image is not None and config.image.pretrained:
            counted[config.image.backbone] = 4.0 * costs.image_cost(config.image).parameters
        if config.objects is not None:
            detectors.add(config.objects.source)
    total = sum(counted.values()) + sum(DETECTOR_WEIGHT_BYTES.get(d, 0.0) for d in detectors)
    local = pretrained_dir()
    present = folder_bytes(local) if local.is_dir() else 0.0
    names = ", ".join([*counted, *sorted(detectors)])
    return DiskItem("weights", total, f"counted from the architectures (float32): {names}; "
                    f"{present / 1e9:.1f} GB already in {local}", present >= 0.9 * total)


def folder_bytes(path: Path) -> float:
    """Bytes of the files under `path` (links not followed); 0 for a missing folder."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return float(total)


# ------------------------------------------------------------------------------------------ CPU-side work


def _cpu_work(profile: Profile, release: Release, plan: Sequence[RunSpec],
              configs: Mapping[tuple[str, int, str], ModelConfig], rows: Sequence[RunCost],
              caches: Sequence[CacheNeed], splits: Mapping[str, Split], lengths: _LengthTable,
              rates: GpuRates) -> list[dict[str, Any]]:
    """Hours of the work around training: data loading, detection, explanations."""
    workers = max(loader_workers(profile.num_workers), 1)
    ms = CPU_MS_PER_ITEM
    loader_s = sum(row.cpu_core_s for row in rows)
    extraction_s = sum(
        (len(splits[c.split].ids) * (ms["decode"] + ms["eval_transform"] if c.modality == "image"
                                     else ms["clean_text"] + ms["tokenize_collate"])) / 1000 for c in caches)
    gpu = profile.device == "auto"
    work = [{"work": "data loading (decode, transforms, tokenising)", "core_hours": (loader_s + extraction_s) / 3600,
             "hours": (loader_s + extraction_s) / 3600 / workers,
             "note": f"{(loader_s + extraction_s) / 3600:.1f} core-h over {workers} loader worker(s) "
                     f"(num_workers={profile.num_workers}); overlaps GPU time while the workers keep up"}]
    sources = sorted({c.objects.source for c in configs.values() if c.objects is not None})
    posters = len(release.movies)
    for source in sources:
        if profile.model_size != "full":  # the twin's small detectors, trained here: not costed
            work.append({"work": f"detection {source} (twin-trained, small)", "hours": 0.0,
                         "note": "small detectors trained on the twin: not costed here (minutes on a CPU)"})
            continue
        rate = DETECTION_S_PER_POSTER.get(source, {"cpu": 0.0, "gpu": 0.0})
        where = "gpu" if gpu else "cpu"
        measured = "measured" if (source, where) in DETECTION_MEASURED else "assumed"
        other = "cpu" if gpu else "gpu"
        work.append({"work": f"detection {source} ({posters:,} posters, once)",
                     "hours": posters * rate[where] / 3600,
                     "note": f"on the {where.upper()} at {rate[where]:.3g} s/poster ({measured}); on the "
                             f"{other.upper()}: {posters * rate[other] / 3600:.1f} h"})
    by_key = {spec.key: spec for spec in plan}
    explained = [(spec, row) for spec, row in zip(plan, rows, strict=True)
                 if row.kind == "train" and spec.split == profile.primary_split
                 and {"text", "image"} & set(configs[spec.key].modalities)]
    xai_flops = 0.0
    for spec, _ in explained:
        config = configs[spec.key]
        per = sample_flops(config)
        test = _lengths(config, splits[spec.split].part("test"), lengths, _text_cleaning(spec, by_key), False)
        mean_length = float(test.mean()) if len(test) else 0.0
        xai_flops += XAI_TRAIN_PASSES * per.train(mean_length) + XAI_FORWARD_PASSES * per.forward(mean_length)
    if explained:
        xai_flops *= 1 + XAI_CHAPTER_RUNS / len(explained)
    gpu_rate = MFU_ASSUMED * rates.peak_flops
    cpu_rate = CPU_FLOPS_PER_CORE * (os.cpu_count() or 1)
    on_gpu, on_cpu = xai_flops / gpu_rate / 3600, xai_flops / cpu_rate / 3600
    work.append({"work": f"explanations (xai check of {len(explained)} runs + 04_xai)",
                 "hours": on_gpu if gpu else on_cpu,
                 "note": f"{xai_flops / 1e15:.1f} PFLOP: GPU {on_gpu * 60:.1f} min at {MFU_ASSUMED:.0%} MFU; "
                         f"CPU {on_cpu:.1f} h at an assumed {CPU_FLOPS_PER_CORE / 1e9:.0f} GFLOP/s x "
                         f"{os.cpu_count()} cores"})
    return work


def _assumptions(rates: GpuRates, profile: Profile) -> list[str]:
    return [
        f"GPU {rates.name}: {rates.peak_flops / 1e12:.0f} TFLOP/s dense bf16 ({rates.peak_source}); runs "
        f"without a measured rate at {MFU_ASSUMED:.0%} MFU",
        f"epochs are upper bounds ({profile.epochs} x {len(profile.lr_scales)} trial(s); patience "
        f"{profile.patience} may stop sooner)",
        "FLOPs per sample without padding (group_by_length), object-encoder layers and elementwise work not counted",
        "feature caches: one extraction pass per cache, pooled-only for pooled fusions, fp16 ragged tokens for "
        "cross-attention, deleted after their last reader",
        "checkpoints: float32 weights; frozen runs keep slim ones (no backbone); last/ adds AdamW moments while a "
        "run goes",
        "not counted: tokenizer/detection caches (MB), HF cache duplicates, the release archive (8.1 GB; "
        "`thesis data download` deletes it after extracting unless --keep-archive)",
    ]
