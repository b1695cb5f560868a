"""The model zoo: encoders (text | image | objects) -> fusion -> head, built by name from typed configs.

Start from `build_model(name, size="small" | "full", **overrides)` and `list_models()`; see
`thesis_lib.models.registry`. Encoder and fusion modules are importable on their own for experiments.
"""

from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.configs import (
    FusionConfig,
    ImageEncoderConfig,
    ModelConfig,
    ObjectEncoderConfig,
    TextEncoderConfig,
)
from thesis_lib.models.fusion import combine_late, fit_late_fusion_weights
from thesis_lib.models.outputs import EncoderOutput, FusionOutput, ModelOutput
from thesis_lib.models.registry import build_from_config, build_model, describe_model, list_models

__all__ = [
    "EncoderOutput",
    "FusionConfig",
    "FusionOutput",
    "GenreClassifier",
    "ImageEncoderConfig",
    "ModelConfig",
    "ModelOutput",
    "ObjectEncoderConfig",
    "TextEncoderConfig",
    "build_from_config",
    "build_model",
    "combine_late",
    "describe_model",
    "fit_late_fusion_weights",
    "list_models",
]
