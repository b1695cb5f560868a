"""The base class every encoder shares: which batch keys it reads, its widths, and the frozen switch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from thesis_lib.models.outputs import EncoderOutput


class Encoder(nn.Module):
    """Turns its part of a batch into an `EncoderOutput`.

    A frozen encoder has `requires_grad=False` on every parameter and stays in eval mode even when the
    model is put in training mode: BatchNorm keeps its running statistics and dropout stays off, so a
    frozen backbone computes the same features in every epoch (which is what makes them cacheable).
    Gradients can still flow *through* a frozen encoder to its input or activations (Grad-CAM needs that).
    """

    modality: ClassVar[str]  # the name fusions know it by: "text" | "image" | "objects"
    input_keys: ClassVar[tuple[str, ...]]  # the batch keys forward() reads

    def __init__(self, token_dim: int, pooled_dim: int):
        super().__init__()
        self.token_dim = token_dim  # width of EncoderOutput.tokens
        self.pooled_dim = pooled_dim  # width of EncoderOutput.pooled
        self.frozen = False

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (features only) or unfreeze (fine-tune) every parameter of this encoder."""
        self.frozen = frozen
        self.requires_grad_(not frozen)
        self.train(self.training)  # re-apply the mode: a frozen encoder must sit in eval mode now

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode and not self.frozen)
        return self

    def expected_input(self) -> list[tuple[str, str]]:
        """(batch key, what it must hold) for each key this encoder reads; shown by `describe_model`."""
        raise NotImplementedError

    def forward(self, batch: Mapping[str, Any]) -> EncoderOutput:
        """Checks shapes only: no value of a tensor is read back to the host, so a forward pass never waits
        for the GPU and torch.compile traces it in one graph. Values are checked by `check_input`."""
        raise NotImplementedError

    def check_input(self, batch: Mapping[str, Any]) -> None:
        """Raise a clear error when this encoder's part of `batch` holds values it cannot read (a token id
        past the vocabulary, pixel boxes, ...), which the forward pass would turn into an index error or,
        on a GPU, a device-side assert. It reads tensors back to the host (a device->host sync), so it runs
        once per pass over a loader (`GenreClassifier.check_batch` on the first batch), never per step."""
        self._require_keys(batch)

    def _require_keys(self, batch: Mapping[str, Any]) -> None:
        missing = [key for key in self.input_keys if key not in batch]
        if missing:
            raise KeyError(
                f"{type(self).__name__} needs batch keys {list(self.input_keys)}; missing {missing} "
                f"(the batch has {sorted(batch)})"
            )
