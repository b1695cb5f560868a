"""The whole model: encoders (one per modality) -> fusion -> head, with timm's two-step API.

    model(batch)                      -> ModelOutput (logits (B, 23) + attention / modality weights)
    model.forward_features(batch)     -> FusionOutput (the head's input and the fusion's explanations)
    model.forward_head(features)      -> logits (B, 23)
    model.encode(batch)               -> {modality: EncoderOutput}   (cache these for frozen backbones)
    model.classify(encoder_outputs)   -> ModelOutput                 (fusion + head on cached features)
    model.check_batch(batch)          -> None, or a clear error      (input values; once per pass, not per step)

No forward pass reads a tensor's value back to the host (no `.item()`, no `if tensor`, no boolean-mask
indexing): a step never waits for the GPU, and torch.compile captures each model in one graph
(tests/test_compile.py). Input values are checked once per pass over a loader by `check_batch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from thesis_lib.models.configs import ModelConfig
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput, ModelOutput


class GenreClassifier(nn.Module):
    """Multi-label genre classifier over any subset of {text, image, objects}."""

    def __init__(
        self, encoders: Mapping[str, Encoder], fusion: Fusion, head: nn.Module, config: ModelConfig | None = None
    ):
        super().__init__()
        self.config = config  # the recipe it was built from, for run records (None when assembled by hand)
        if set(encoders) != set(fusion.modalities):
            raise ValueError(
                f"encoders {sorted(encoders)} do not match the fusion's modalities {list(fusion.modalities)}"
            )
        self.encoders = nn.ModuleDict({m: encoders[m] for m in fusion.modalities})
        self.fusion = fusion
        self.head = head  # nn.Identity when the fusion already produces logits (late fusion)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.fusion.modalities

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The batch keys this model reads."""
        return tuple(key for encoder in self.encoders.values() for key in encoder.input_keys)

    def encode(self, batch: Mapping[str, Any]) -> dict[str, EncoderOutput]:
        """Run every encoder on its part of the batch."""
        return {m: encoder(batch) for m, encoder in self.encoders.items()}

    def check_batch(self, batch: Mapping[str, Any]) -> None:
        """Check the values of every encoder's inputs (`Encoder.check_input`); reads tensors back to the host,
        so the training and evaluation loops call it on the first batch of a pass, not on every batch."""
        for encoder in self.encoders.values():
            encoder.check_input(batch)

    def classify(self, encoded: Mapping[str, EncoderOutput]) -> ModelOutput:
        """Fusion + head on encoder outputs (fresh, or cached from frozen backbones)."""
        features = self.fusion(encoded)
        return ModelOutput(
            logits=self.forward_head(features),
            fused=features.fused,
            modalities=features.modalities,
            attentions=features.attentions,
            modality_weights=features.modality_weights,
            genre_modality_weights=features.genre_modality_weights,
            modality_logits=features.modality_logits,
            encoder_attentions={m: out.attentions for m, out in encoded.items() if out.attentions is not None},
        )

    def forward_features(self, batch: Mapping[str, Any]) -> FusionOutput:
        """Everything up to the head: encoders, then fusion."""
        return self.fusion(self.encode(batch))

    def forward_head(self, features: FusionOutput | Tensor) -> Tensor:
        """The head on the fused features -> logits (B, 23)."""
        fused = features.fused if isinstance(features, FusionOutput) else features  # (B, D_fused)
        return self.head(fused)  # (B, 23)

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        return self.classify(self.encode(batch))

    def parameter_counts(self) -> tuple[int, int]:
        """(total, trainable) number of parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total, trainable
