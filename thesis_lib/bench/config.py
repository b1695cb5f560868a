"""What one benchmark run measures: `BenchConfig`, and the three profiles `dry`, `cpu` and `gpu`.

Every setting the product has (batch size, precision, fused AdamW, channels-last, length grouping, text
length, poster size, loader workers, the feature-extraction pass) is read from the `full` profile
(notebooks/params/full.yaml) through `product_overrides`, never restated here: the benchmark times what
`thesis run --profile full` runs. What a profile of the benchmark adds is *how much* to time and which
techniques to compare against the product's choice.

- `gpu`: the full profile as it is (BERT-base, RoBERTa-base, ResNet-50, ViT-B/16 with random weights,
  512 tokens, 224 px, batch 32), sized to end within benchmarks/gpu.sh's budget;
- `cpu`: the small registry models on CPU (`make bench`): shows every path runs, says nothing about a GPU;
- `dry`: the same sections at toy sizes, for the CPU dry run of benchmarks/gpu.sh in the test suite.

Sections run in the order of `SECTIONS` (what a cut-off should lose last comes first); within a process,
a case that would start after `time_budget_s` is recorded as skipped, and the JSON is written after every
case, so a run killed at any moment leaves a JSON with everything that finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from thesis_lib.bench.techniques import PLAIN, Techniques

# The order of benchmarks/gpu.sh. The grid check (`run_bench.py --grid`) runs between loader and gpu_paths.
SECTIONS = ("machine", "train", "compile", "extract", "loader", "gpu_paths", "detectors", "no_workers")

Overrides = tuple[tuple[str, Any], ...]  # (key, typed value) pairs

RANDOM_WEIGHTS: Overrides = (("text_pretrained", False), ("image_pretrained", False))  # no weights offline
TEXT_IMAGE: Overrides = (("modalities", ("text", "image")),)  # BERT + ViT + the fusion layers, no detections


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of one benchmark run (see the module docstring for the profiles)."""

    profile: str  # "dry" | "cpu" | "gpu": recorded in the JSON
    product_overrides: Overrides = ()  # changes to the full profile (smaller sizes for the CPU profiles)
    model_overrides: Overrides = ()  # registry overrides for every model that has the part they name
    # Synthetic-batch training steps (the eager fine-tuning step of the product, then comparisons).
    ablation_model: str = "fusion_cross_attention"  # with TEXT_IMAGE: BERT + ViT + 2 cross-attention layers
    ablations: tuple[Techniques, ...] = (  # compared with the product's techniques on the ablation model
        PLAIN,
        PLAIN.with_(bf16=True),
        PLAIN.with_(bf16=True, fused_adamw=True),
    )
    train_models: tuple[str, ...] = ("text_bert", "image_vit", "text_roberta")  # product techniques
    channels_last_model: str | None = "image_resnet50"  # a CNN timed with NHWC off and on (None: skip)
    warmup_steps: int = 3
    timed_steps: int = 10
    compile_backend: str = "inductor"  # torch.compile's backend ("eager" traces only: the CPU dry run)
    matmul_size: int = 8192  # the measured bf16 peak: one (n x n) @ (n x n) product
    # Product-path extraction (train.features.cache_encoder_features) and the fusion on its caches.
    extract_movies: int = 8192
    cached_fusion_model: str = "fusion_cross_attention"  # the full profile's default fusion (frozen encoders)
    cached_warmup_steps: int = 10
    cached_steps: int = 200  # > 2 x the batches 14 workers queue (prefetch 4): the steady rate is the loader's
    # The real training loader, and fine-tuning fed by it (train.epoch.train_one_epoch).
    loader_movies: int = 4096
    posters: int = 256  # distinct synthetic poster files behind the movies
    e2e_models: tuple[tuple[str, Overrides], ...] = (
        ("fusion_cross_attention", TEXT_IMAGE), ("text_bert", ()), ("image_vit", ()))
    e2e_warmup_steps: int = 10
    e2e_steps: int = 120  # > 2 x the batches 14 workers queue (prefetch 4), so the rate is not the queue's
    # Last: detectors and the 0-worker variants.
    detector_batch_size: int = 32
    detector_image_size: int = 224
    check_posters: int = 8  # posters each detector of the GPU-path checks runs on (two sizes)
    check_detectors: tuple[str, ...] = ("frcnn-twin", "frcnn-r50", "yolov8n")  # detectors the GPU-path checks run
    no_workers_movies: int = 512
    time_budget_s: float = 600.0  # per process: a case that would start later is skipped (recorded)
    sections: tuple[str, ...] = SECTIONS

    def __post_init__(self) -> None:
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"unknown sections {unknown}; known: {list(SECTIONS)}")
        if self.timed_steps < 2 or self.warmup_steps < 1:
            raise ValueError("a median and a spread need warmup_steps >= 1 and timed_steps >= 2")

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.asdict(self)
        plain["ablations"] = [t.label for t in self.ablations]
        return plain


_TINY_MODELS: Overrides = (("text_backbone", "random-bert-small"), ("image_depth", 1), ("fusion_dim", 32),
                           ("fusion_heads", 2), ("fusion_depth", 1), ("objects_dim", 16))
# On a CPU the product computes in float32 (the grid's Accelerator has no autocast there; the rehearsal sets it too).
_ON_CPU: Overrides = (("model_size", "small"), ("device", "cpu"), ("mixed_precision", "no"))

PROFILES: dict[str, BenchConfig] = {
    "gpu": BenchConfig(profile="gpu"),
    "cpu": BenchConfig(
        profile="cpu",
        product_overrides=(*_ON_CPU, ("text_max_length", 64), ("image_size", 64), ("batch_size", 8), ("num_workers", 2)),
        matmul_size=512,
        warmup_steps=2,
        timed_steps=6,
        extract_movies=256,
        cached_warmup_steps=3,
        cached_steps=12,
        loader_movies=512,
        posters=32,
        e2e_warmup_steps=2,
        e2e_steps=8,
        detector_batch_size=2,
        no_workers_movies=128,
        time_budget_s=400.0,
    ),
    "dry": BenchConfig(
        profile="dry",
        product_overrides=(*_ON_CPU, ("text_max_length", 16), ("image_size", 32), ("batch_size", 4), ("num_workers", 1)),
        model_overrides=_TINY_MODELS,
        ablations=(PLAIN,),
        train_models=(),
        channels_last_model=None,
        warmup_steps=1,
        timed_steps=3,
        compile_backend="eager",
        matmul_size=64,
        extract_movies=192,  # three batches of the extraction pass (FeatureCacheConfig.batch_size 64)
        cached_warmup_steps=1,
        cached_steps=3,
        loader_movies=24,
        posters=4,
        e2e_models=(("fusion_cross_attention", TEXT_IMAGE),),
        e2e_warmup_steps=1,
        e2e_steps=3,
        detector_batch_size=1,
        detector_image_size=64,
        check_posters=3,
        check_detectors=("frcnn-twin", "yolov8n"),  # R50-FPN: seconds per poster on a CPU
        no_workers_movies=8,
        time_budget_s=120.0,
    ),
}
