"""The text encoder's attention paths (`models.text_attention`): the padding-free layout gives the padded
path's features, the collator indexes the real tokens, and a CPU never takes the packed path by itself.

The CUDA kernel (`varlen_attn`) runs only on a GPU: the last test compares it with the padded path there and
is skipped on a CPU.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from test_compile import HostReads  # tests/ is on sys.path (pytest prepend import mode)
from test_models import fake_batch, small_model

from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.models import text as text_module
from thesis_lib.models import text_attention
from thesis_lib.models.text import load_tokenizer
from thesis_lib.models.text_attention import VARLEN_ATTENTION, varlen_attn


def text_batch(name: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """An eval-mode text encoder and a right-padded batch of plots of different lengths, with its index."""
    torch.manual_seed(seed)
    model = small_model(name).eval()
    batch = fake_batch(model, batch_size=4, length=12, seed=seed)
    batch["attention_mask"][2, 7:] = 0  # three lengths: 6, 12, 7, 12
    batch["input_ids"][2, 7:] = model.encoders["text"].pad_token_id
    batch["text_index"] = batch["attention_mask"].flatten().nonzero().squeeze(1)  # what the collator adds
    return model.encoders["text"], batch


def encode(encoder, batch: dict, padding_free: str):
    encoder.padding_free = padding_free
    with torch.no_grad():
        return encoder(batch)


@pytest.mark.parametrize("name", ["text_bert", "text_roberta"])  # MiniLM (BERT positions), RoBERTa positions
def test_the_padding_free_layout_gives_the_padded_path_s_features(name):
    encoder, batch = text_batch(name)
    assert encoder.backbone.config._attn_implementation == VARLEN_ATTENTION
    padded, packed = encode(encoder, batch, "never"), encode(encoder, batch, "always")
    real = padded.mask  # (B, L)
    torch.testing.assert_close(packed.tokens[real], padded.tokens[real], atol=1e-5, rtol=1e-4)
    assert packed.tokens[~real].abs().max() == 0  # padding rows are exact zeros
    torch.testing.assert_close(packed.pooled, padded.pooled, atol=1e-5, rtol=1e-4)
    assert torch.equal(packed.mask, padded.mask)


def test_the_kernel_branch_hands_varlen_attn_rows_and_plot_boundaries(monkeypatch):
    """The CUDA branch's plumbing on a CPU: `varlen_attn` replaced by its documented contract (q, k, v as
    (T, H, Dh) rows, int32 cumulative boundaries, the longest plot's length at most max_q), computed per plot."""
    calls = []

    def contract(q, k, v, cu_q, cu_k, max_q, max_k):
        assert q.dim() == k.dim() == v.dim() == 3 and cu_q.dtype == cu_k.dtype == torch.int32
        bounds = cu_q.tolist()
        assert bounds[-1] == q.shape[0] and max(b - a for a, b in itertools.pairwise(bounds)) <= max_q == max_k
        calls.append(len(bounds) - 1)
        rows = [F.scaled_dot_product_attention(*(x[a:b].transpose(0, 1) for x in (q, k, v))).transpose(0, 1)
                for a, b in itertools.pairwise(bounds)]  # each (n_i, H, Dh)
        return torch.cat(rows)  # (T, H, Dh)

    monkeypatch.setattr(text_attention, "varlen_attn", contract)
    monkeypatch.setattr(text_attention, "varlen_kernel_runs", lambda device, dtype: True)
    monkeypatch.setattr(text_module, "varlen_kernel_runs", lambda device, dtype: True)
    encoder, batch = text_batch("text_bert")
    padded, packed = encode(encoder, batch, "never"), encode(encoder, batch, "auto")  # auto: "the kernel runs"
    assert calls == [4] * encoder.backbone.config.num_hidden_layers  # every layer, all four plots
    real = padded.mask
    torch.testing.assert_close(packed.tokens[real], padded.tokens[real], atol=1e-5, rtol=1e-4)


def test_a_cpu_stays_padded_and_fine_tuning_with_attention_dropout_is_never_packed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the packed path ran")

    encoder, batch = text_batch("text_bert")
    monkeypatch.setattr(text_module, "run_packed", refuse)
    encode(encoder, batch, "auto")  # CPU: the varlen kernel cannot run, so padded
    encoder.train()
    assert encoder.backbone.config.attention_probs_dropout_prob > 0
    encoder.padding_free = "always"
    encoder(batch)  # training with attention dropout: the kernel has none, so padded even when forced


def test_the_collator_indexes_the_real_tokens_and_its_batches_pack():
    encoder, _ = text_batch("text_bert")
    tokenizer = load_tokenizer(encoder.config)
    plots = ["a short plot", "a much longer plot about a detective who hunts a thief across the city", "two"]
    items = [{"id": f"{i:07d}", "labels": torch.zeros(23), "text": plot} for i, plot in enumerate(plots)]
    batch = MultimodalCollator(tokenizer, max_length=32)(items)
    mask = batch["attention_mask"].bool()  # (B, L)
    assert torch.equal(batch["text_index"], mask.flatten().nonzero().squeeze(1))
    assert batch["text_index"].numel() < mask.numel()  # there is padding to skip
    encoder.check_input(batch)  # the index belongs to this batch
    padded, packed = encode(encoder, batch, "never"), encode(encoder, batch, "always")
    torch.testing.assert_close(packed.tokens[mask], padded.tokens[mask], atol=1e-5, rtol=1e-4)


def test_a_batch_without_padding_runs_without_a_mask():
    """Known from the index's length (a shape): transformers gets no mask, so SDPA may take its flash kernel."""
    encoder, batch = text_batch("text_bert")
    batch["attention_mask"][:] = 1
    masks = []
    encoder.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: masks.append(kwargs["attention_mask"]), with_kwargs=True)
    without_index = encode(encoder, {k: v for k, v in batch.items() if k != "text_index"}, "never")
    batch["text_index"] = torch.arange(batch["input_ids"].numel())  # every token is real
    unmasked = encode(encoder, batch, "never")
    assert masks[0].shape == (4, 1, 1, 12) and masks[1] is None
    torch.testing.assert_close(unmasked.tokens, without_index.tokens)


def test_an_index_that_does_not_belong_to_the_batch_is_refused():
    encoder, batch = text_batch("text_bert")
    batch["text_index"] = batch["text_index"][:-1]  # e.g. the batch was sliced after collation
    with pytest.raises(ValueError, match="text_index"):
        encoder.check_input(batch)


@pytest.mark.parametrize("padding_free", ["always", "never"])
def test_neither_path_reads_a_tensor_back_to_the_host(padding_free):
    encoder, batch = text_batch("text_bert")
    encoder.padding_free = padding_free
    with HostReads() as reads, torch.no_grad():
        encoder(batch)
    assert reads.seen == []


@pytest.mark.slow
def test_torch_compile_captures_the_packed_path_in_one_graph():
    encoder, batch = text_batch("text_bert")
    encoder.padding_free = "always"
    torch._dynamo.reset()
    try:
        explanation = torch._dynamo.explain(encoder)(batch)
    finally:
        torch._dynamo.reset()
    reasons = [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons


@pytest.mark.skipif(not torch.cuda.is_available() or varlen_attn is None, reason="needs a CUDA GPU and varlen_attn")
def test_on_a_gpu_the_varlen_kernel_matches_the_padded_path_in_bfloat16(monkeypatch):
    calls = []

    def counted(*args):
        calls.append(args[0].shape)
        return varlen_attn(*args)

    monkeypatch.setattr(text_attention, "varlen_attn", counted)
    encoder, batch = text_batch("text_bert")
    device = torch.device("cuda")
    encoder.to(device)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        padded, packed = encode(encoder, batch, "never"), encode(encoder, batch, "auto")  # auto: the kernel
    assert len(calls) == encoder.backbone.config.num_hidden_layers  # one kernel call per layer
    real = padded.mask
    torch.testing.assert_close(packed.tokens[real].float(), padded.tokens[real].float(), atol=0.05, rtol=0.05)
