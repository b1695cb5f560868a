"""What one benchmark run measures: `BenchConfig`, and the three profiles `tiny`, `cpu` and `gpu`.

- `tiny`: one case of each kind on miniature models, seconds on a CPU (the test suite runs it);
- `cpu`: the small registry models on CPU at small shapes (`make bench`, CI-sized, a couple of minutes);
- `gpu`: the full-size models (BERT-base, RoBERTa-base, ResNet-50, ViT-B/16, random weights) at
  512 tokens and 224 px, every technique against the plain version (`benchmarks/gpu.sh`).
Sections run in the order of `SECTIONS`, within `time_budget_s`: a section that would start after the
budget is spent is recorded as skipped, so a run always ends with a complete JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from thesis_lib.bench.batches import BatchShape
from thesis_lib.bench.techniques import BEST_EAGER, PLAIN, Techniques

SECTIONS = ("train", "extract", "loader", "end_to_end", "detectors", "compile")

Overrides = tuple[tuple[str, Any], ...]  # (with_overrides key, typed value) pairs


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of one benchmark run (see the module docstring for the profiles)."""

    profile: str  # "tiny" | "cpu" | "gpu": recorded in the JSON
    size: str  # registry form of every model: "small" | "full"
    train_shape: BatchShape  # synthetic training batches
    extract_shape: BatchShape  # synthetic feature-extraction batches
    ablation_model: str = "fusion_cross_attention"  # the model every technique is measured on
    ablations: tuple[Techniques, ...] = (  # cumulative: each row adds one technique to the previous one
        PLAIN,
        PLAIN.with_(bf16=True),
        PLAIN.with_(bf16=True, fused_adamw=True),
        BEST_EAGER,
    )
    channels_last_model: str | None = "image_resnet50"  # CNN timed with NHWC off and on (None: skip)
    train_models: tuple[str, ...] = (  # timed with the best eager techniques
        "text_bert", "text_roberta", "image_resnet50", "image_vit", "fusion_early", "fusion_attention",
        "fusion_late",
    )
    extract_models: tuple[tuple[str, str], ...] = (  # (model, modality) whose encoder is timed frozen
        ("text_bert", "text"), ("text_roberta", "text"), ("image_resnet50", "image"), ("image_vit", "image"),
    )
    model_overrides: tuple[tuple[str, Overrides], ...] = ()  # extra overrides per registry model
    common_overrides: Overrides = ()  # overrides for every model that has the part they name
    warmup_steps: int = 3
    timed_steps: int = 10
    # Data loading: synthetic JPEG posters and plots (thesis_lib.bench.movies), the project's Dataset.
    loader_movies: int = 512  # movies per loader measurement with workers
    loader_plain_movies: int = 128  # ... and with 0 workers (the plain version is slow: fewer suffice)
    loader_posters: int = 64  # distinct poster files behind them
    loader_batch_size: int = 32
    loader_workers: int = 2  # workers of the "many workers" version (the plain version has 0)
    text_cleaning: str = "clean"  # "clean" (the thesis default: needs scikit-learn's stop words) | "raw"
    # End to end: the real loader feeding the model.
    e2e_model: str = "fusion_cross_attention"
    e2e_overrides: Overrides = (("modalities", "text,image"),)  # cross-attention of BERT and ViT, as in the issue
    e2e_batch_size: int = 32
    e2e_warmup_steps: int = 5
    e2e_steps: int = 20
    e2e_plain_warmup_steps: int = 2  # the plain loader version (0 workers, pageable memory, float32) is slow:
    e2e_plain_steps: int = 5  # fewer steps suffice to measure it
    e2e_extract_batch_size: int = 256
    e2e_extract_batches: int = 8
    detector_batch_size: int = 8
    detector_image_size: int = 224
    compile: bool = False  # time torch.compile on the ablation model (last: it is the slowest to warm up)
    time_budget_s: float = 600.0  # sections that would start later are skipped (recorded as such)
    sections: tuple[str, ...] = SECTIONS

    def __post_init__(self) -> None:
        if self.size not in ("small", "full"):
            raise ValueError(f"size must be 'small' or 'full', got {self.size!r}")
        if self.text_cleaning not in ("clean", "raw"):
            raise ValueError(f"text_cleaning must be 'clean' or 'raw', got {self.text_cleaning!r}")
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"unknown sections {unknown}; known: {list(SECTIONS)}")

    def overrides_for(self, model: str, has_parts: tuple[str, ...]) -> Overrides:
        """Common overrides that apply to `model` (its parts), then its own."""
        common = tuple((k, v) for k, v in self.common_overrides if k.partition("_")[0] in has_parts)
        own = dict(self.model_overrides).get(model, ())
        return common + own

    def to_dict(self) -> dict[str, Any]:
        plain = dataclasses.asdict(self)
        plain["ablations"] = [t.label for t in self.ablations]
        return plain


_RANDOM_FULL: Overrides = (("text_pretrained", False), ("image_pretrained", False))

PROFILES: dict[str, BenchConfig] = {
    "tiny": BenchConfig(
        profile="tiny",
        size="small",
        train_shape=BatchShape(batch_size=2, text_length=16, image_size=32, regions=2),
        extract_shape=BatchShape(batch_size=2, text_length=16, image_size=32, regions=2),
        ablations=(PLAIN, BEST_EAGER),
        channels_last_model=None,
        train_models=(),
        extract_models=(("image_vit", "image"),),
        common_overrides=(("image_input_size", 32), ("image_depth", 1), ("text_max_length", 32),
                          ("fusion_dim", 32), ("fusion_heads", 2), ("fusion_depth", 1)),
        model_overrides=(("fusion_cross_attention", (("modalities", "text,image"),)),),
        warmup_steps=1,
        timed_steps=2,
        loader_movies=16,
        loader_plain_movies=16,
        loader_posters=4,
        loader_batch_size=4,
        loader_workers=0,
        e2e_batch_size=2,
        e2e_warmup_steps=1,
        e2e_steps=2,
        e2e_plain_warmup_steps=1,
        e2e_plain_steps=1,
        e2e_extract_batch_size=4,
        e2e_extract_batches=2,
        detector_batch_size=1,
        time_budget_s=120.0,
        sections=("train", "extract", "loader", "end_to_end"),
    ),
    "cpu": BenchConfig(
        profile="cpu",
        size="small",
        train_shape=BatchShape(batch_size=2, text_length=64, image_size=64, regions=8),
        extract_shape=BatchShape(batch_size=8, text_length=64, image_size=64, regions=8),
        common_overrides=(("image_input_size", 64), ("text_max_length", 64)),
        warmup_steps=1,
        timed_steps=2,
        loader_movies=256,
        loader_plain_movies=128,
        loader_posters=32,
        loader_batch_size=16,
        loader_workers=2,
        e2e_batch_size=4,
        e2e_warmup_steps=1,
        e2e_steps=3,
        e2e_plain_warmup_steps=1,
        e2e_plain_steps=2,
        e2e_extract_batch_size=16,
        e2e_extract_batches=4,
        detector_batch_size=2,
        time_budget_s=240.0,
    ),
    "gpu": BenchConfig(
        profile="gpu",
        size="full",
        train_shape=BatchShape(batch_size=32, text_length=512, image_size=224, regions=16),
        extract_shape=BatchShape(batch_size=256, text_length=512, image_size=224, regions=16),
        common_overrides=_RANDOM_FULL,
        warmup_steps=5,
        timed_steps=20,
        loader_movies=4096,
        loader_plain_movies=512,
        loader_posters=256,
        loader_batch_size=64,
        loader_workers=12,
        e2e_overrides=(("modalities", "text,image"), *_RANDOM_FULL),
        e2e_batch_size=32,
        e2e_warmup_steps=20,
        e2e_steps=200,
        e2e_plain_steps=10,
        e2e_extract_batch_size=256,
        e2e_extract_batches=24,
        detector_batch_size=32,
        compile=True,
        time_budget_s=270.0,  # compile starts before this at the latest; benchmarks/gpu.sh allows 400 s in all
    ),
}
