"""Model FLOPs, counted by PyTorch rather than by hand formulas.

`torch.utils.flop_counter.FlopCounterMode` intercepts every matmul, convolution and attention kernel a
piece of code dispatches and adds up their FLOPs (2 per multiply-add), backward passes included. Counting
is done once per model and input shape, in float32 with eager attention: the CPU's fused attention kernel
has no FLOP formula registered, and the model's useful work does not depend on which kernel computes it,
so every technique variant of a case shares the one count.

The 6*N*tokens rule (Kaplan et al. 2020: forward 2*N, backward 4*N FLOPs per token for N weights used
once per token) is kept as a cross-check for transformer encoders, not as the measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(run: Callable[[], Any]) -> int:
    """FLOPs dispatched while `run()` executes (forward, and backward if `run` calls it)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def matmul_parameters(module: nn.Module) -> int:
    """Weights of the Linear layers of `module`: the N of the 6*N*tokens rule (embeddings are lookups,
    not matmuls, and norms and biases cost no multiply-adds worth counting)."""
    return sum(layer.weight.numel() for layer in module.modules() if isinstance(layer, nn.Linear))


def rule_flops(parameters: int, tokens: int, *, training: bool) -> int:
    """The 6*N*tokens rule (training: forward + backward) or 2*N*tokens (forward only)."""
    return (6 if training else 2) * parameters * tokens


class QuadraticFlops:
    """FLOPs of a step as a function of the text length L, from counts at three lengths.

    For a fixed batch and poster size, every matmul of a text model is either linear in L (projections,
    feed-forward layers, cross-attention against a fixed number of patches) or quadratic in it
    (self-attention scores), so the FLOPs are exactly a quadratic a + b*L + c*L^2: three counts fix it,
    and batches of any other length (length-grouped batches) get exact FLOPs without a count each.
    """

    def __init__(self, lengths: tuple[int, int, int], counts: tuple[int, int, int]):
        if len(set(lengths)) != 3:
            raise ValueError(f"need three different lengths, got {lengths}")
        self.lengths = lengths
        self.counts = counts

    def __call__(self, length: int) -> float:
        """Lagrange interpolation through the three counted points (exact for a quadratic)."""
        total = 0.0
        for i, (x_i, y_i) in enumerate(zip(self.lengths, self.counts, strict=True)):
            others = [x for j, x in enumerate(self.lengths) if j != i]
            total += y_i * (length - others[0]) * (length - others[1]) / ((x_i - others[0]) * (x_i - others[1]))
        return total
