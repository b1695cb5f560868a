"""The product's settings and building blocks, as `thesis run --profile full` uses them, for the benchmark.

Everything here is the grid's own code, called with the full profile (plus the benchmark profile's
`product_overrides`): the model config (`specs.resolve_model_config`), the tokenizer (`pipeline.run_tokenizer`),
datasets and collators (`pipeline.raw_dataset`, `pipeline.multimodal_collator`, `pipeline.image_transforms`),
the training config (`runner.profile_train_config`: batch size, bf16, fused AdamW, channels-last, length
grouping, the loader's workers), the feature-cache pass (`pipeline.feature_cache_config`) and the Accelerator
the grid builds. The benchmark only adds random weights (no pretrained files offline) and synthetic data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from accelerate import Accelerator

from thesis_lib.bench.config import RANDOM_WEIGHTS, BenchConfig, Overrides
from thesis_lib.bench.techniques import Techniques
from thesis_lib.data.mmimdb import Movie
from thesis_lib.experiments.pipeline import BuiltModel, feature_cache_config, run_tokenizer
from thesis_lib.experiments.processes import process_loader_workers
from thesis_lib.experiments.profile import Profile, load_profile
from thesis_lib.experiments.runner import profile_train_config
from thesis_lib.experiments.specs import resolve_model_config
from thesis_lib.machine import choose_device, effective_precision
from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.registry import build_from_config
from thesis_lib.models.text import RANDOM_TEXT_BACKBONES
from thesis_lib.train.config import TrainConfig
from thesis_lib.train.features import FeatureCacheConfig

PRODUCT_PROFILE = "full"  # the profile whose settings are timed


@dataclass
class Product:
    """The full profile on this machine: its device, precision, workers and builders."""

    profile: Profile
    device: torch.device
    model_overrides: Overrides = ()  # the benchmark profile's size overrides (none on the GPU)

    @classmethod
    def load(cls, config: BenchConfig, device: torch.device | None = None) -> Product:
        profile = load_profile(PRODUCT_PROFILE, dict(config.product_overrides))
        return cls(profile, device or choose_device(profile.device), config.model_overrides)

    @property
    def precision(self) -> str:
        """What autocast computes in here ("bf16" on a GPU with bf16 kernels, "no" on the CPU)."""
        return effective_precision(self.device, self.profile.mixed_precision)

    @property
    def techniques(self) -> Techniques:
        """The product's technique mix: its precision here (no autocast on a CPU), fused AdamW, channels-last, SDPA."""
        return Techniques(bf16=self.precision == "bf16", fused_adamw=self.profile.fused_adamw,
                          sdpa=True, channels_last=self.profile.channels_last)

    @property
    def workers(self) -> int:
        """DataLoader workers of a training run on one GPU (`num_workers: -1` -> cores - 2)."""
        return process_loader_workers(self.profile, 1)

    @cached_property
    def accelerator(self) -> Accelerator:
        """The Accelerator the grid builds (experiments.grid.open_grid): one per process, as there."""
        return Accelerator(cpu=self.device.type == "cpu", mixed_precision=self.precision)

    def settings(self) -> dict[str, Any]:
        """The product settings the JSON records next to the numbers."""
        keys = ("model_size", "device", "mixed_precision", "batch_size", "text_max_length", "image_size",
                "num_workers", "fused_adamw", "channels_last", "group_by_length", "image_augment", "text_cleaning")
        return {"profile": PRODUCT_PROFILE, **{key: getattr(self.profile, key) for key in keys},
                "effective_precision": self.precision, "loader_workers": self.workers,
                "feature_cache": dataclasses.asdict(self.feature_cache_config(tokens=True))}

    def model_config(self, name: str, overrides: Overrides = (), backbones: str = "finetune") -> ModelConfig:
        """The grid's config of registry model `name` (random weights; the benchmark profile's size overrides)."""
        base = resolve_model_config(name, overrides, self.profile, backbones)
        parts = (*base.modalities, "fusion")
        sized = tuple((key, value) for key, value in (*RANDOM_WEIGHTS, *self.model_overrides)
                      if key.partition("_")[0] in parts)
        return resolve_model_config(name, (*overrides, *sized), self.profile, backbones)

    def build(self, config: ModelConfig, movies: Sequence[Movie]) -> BuiltModel:
        """The model of `config` on the device, with the run's tokenizer (a random text backbone's is trained
        on `movies`' plots, as a run trains it on its training plots)."""
        tokenizer = None
        if config.text is not None:
            tokenizer = run_tokenizer(config.text, self.profile.text_cleaning, movies)
            if config.text.backbone in RANDOM_TEXT_BACKBONES:
                text = dataclasses.replace(config.text, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
                config = dataclasses.replace(config, text=text)
        torch.manual_seed(0)  # every variant of a case starts from the same weights
        model = build_from_config(config).to(self.device)
        return BuiltModel(model, config, tokenizer, {}, self.profile.text_cleaning)

    def train_config(self, *, lengths_known: bool, prefixes: tuple[str, ...] = ("encoders.",)) -> TrainConfig:
        return profile_train_config(self.profile, self.device, seed=0, processes=1, prefixes=prefixes,
                                    lengths_known=lengths_known)

    def feature_cache_config(self, *, tokens: bool) -> FeatureCacheConfig:
        return feature_cache_config(self.profile, tokens=tokens)
