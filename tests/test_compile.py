"""No forward pass waits for the device: no model reads a tensor's value back to the host, so a GPU step is
never stalled, and torch.compile captures every model family in one graph.

Two checks per model, on CPU at the registry's small size (input values are checked once per pass by
`GenreClassifier.check_batch`, outside the forward pass):
- eager: a dispatch mode records every op that hands a tensor's value to Python or sizes its output by the
  data (`.item()`, `bool(t)`, `if t.any()`, `int(t.max())`, boolean-mask indexing, `nonzero`, `torch.equal`,
  F.one_hot on CPU). The ops are the same on every device, so what this finds on CPU would stall a GPU step;
- compiled: `torch._dynamo.explain` (trace only, no code generation) reports no graph break.
"""

from __future__ import annotations

import pytest
import torch
from test_models import fake_batch, small_model  # tests/ is on sys.path (pytest prepend import mode)
from torch.utils._python_dispatch import TorchDispatchMode

from thesis_lib.models import list_models

aten = torch.ops.aten
# Ops whose result depends on a tensor's values on the host side: a device->host copy and a wait on a GPU.
SYNCING_OPS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.equal, aten._unique2,
               aten.unique_dim, aten.unique_consecutive}
INDEXING_OPS = {aten.index, aten.index_put, aten.index_put_}  # sync when indexed by a boolean mask
# One of each encoder and fusion kind (text: MiniLM = BERT; RoBERTa), as the product builds them.
FAMILIES = ["text_bert", "text_roberta", "image_resnet50", "image_vit", "objects_yolo",
            "fusion_early", "fusion_late", "fusion_attention", "fusion_cross_attention"]


class HostReads(TorchDispatchMode):
    """Records the ops that read tensor values back to the host (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet in SYNCING_OPS or (packet in INDEXING_OPS and _has_bool_index(args)):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


def test_the_detector_sees_the_reads_it_is_meant_to_catch():
    values = torch.tensor([1.0, -2.0, 3.0])
    with HostReads() as reads:
        values.sum() * 2  # device-side only
    assert reads.seen == []
    with HostReads() as reads:
        float(values.max())
        bool((values > 0).any())
        values[values > 0]
        torch.nn.functional.one_hot(torch.tensor([0, 2]), 3)  # on CPU it checks its ids' range on the host
    assert len(reads.seen) >= 4, reads.seen


@pytest.mark.parametrize("name", list_models())
def test_no_forward_pass_reads_a_tensor_back_to_the_host(name):
    torch.manual_seed(0)
    model = small_model(name).train()  # the training step is the hot path (frozen encoders stay in eval)
    batch = fake_batch(model)
    model.check_batch(batch)  # what the loops run once per pass, outside the step
    with HostReads() as reads:
        logits = model(batch).logits
    assert reads.seen == [], f"{name}'s forward pass reads tensors back to the host: {reads.seen}"
    assert logits.shape == (3, 23)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_torch_compile_captures_each_model_family_in_one_graph(name):
    torch.manual_seed(0)
    model = small_model(name).train()
    batch = fake_batch(model)
    torch._dynamo.reset()
    try:
        explanation = torch._dynamo.explain(model)(batch)
    finally:
        torch._dynamo.reset()
    reasons = [f"{reason.reason} at {reason.user_stack[-1] if reason.user_stack else '?'}"
               for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, f"{name}: {explanation.graph_break_count} graph breaks: {reasons}"
    assert explanation.graph_count == 1
