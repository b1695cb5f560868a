"""How the plot encoder's self-attention runs: over the padded batch, or padding-free over the real tokens only.

Plots vary in length (the batch is padded to its longest plot), so attention over the padded batch spends
work on padding. Three paths, chosen per forward pass from host-side facts only (device, dtype, training
mode, which batch keys exist), never from tensor values, so the choice costs no device->host sync and
torch.compile traces it without a graph break:

- eager (`need_attentions`, for the XAI chapter): transformers' eager attention with an additive key mask;
  it returns the attention matrices.
- padded (the default): SDPA over (B, L) with a boolean key mask (B, 1, 1, L) built by the text encoder.
  Works everywhere; on a GPU SDPA picks its masked (memory-efficient) kernel. A batch without any padding
  (every plot truncated at max_length, say; the index's length says so, a shape) gets no mask, so SDPA may
  take its flash kernel.
- padding-free: the real tokens of the batch are packed into one row (1, T), T = the sum of the plot
  lengths, with positions restarting at each plot; every layer's attention then runs per plot through
  `torch.nn.attention.varlen.varlen_attn` (FlashAttention's variable-length kernel, in PyTorch since 2.9),
  and the outputs are put back into the padded (B, L, D) layout (zeros at padding). The embeddings,
  projections and feed-forward layers compute T rows instead of B x L as well. The collator supplies
  batch["text_index"] (the flat positions of the real tokens, computed on the host, so T is known
  without reading anything back from the GPU).

Which path runs (`TextEncoder`): padding-free when the batch carries "text_index", the backbone is
BERT- or RoBERTa-type, it was built with `VARLEN_ATTENTION` (not eager), no attention dropout is active
(the kernel has none: frozen encoders, evaluation and feature extraction qualify; fine-tuning with BERT's
0.1 attention dropout stays padded, to keep the recipe), and the kernel can run: a CUDA tensor in
float16/bfloat16 (autocast or half weights) and a PyTorch that has `varlen_attn`. Otherwise padded. On a
CPU the padded path always runs; `TextEncoder.padding_free = "always"` forces the packed layout with a
block-diagonal SDPA standing in for the kernel (the tests compare it with the padded path).

Other ways to drop padding were considered: transformers' `flash_attention_2` needs the flash-attn package
and its `kernels` fallback downloads from the Hugging Face hub (neither is on the GPU machine, which is
offline); both also read sequence lengths back to the host (`.item()`) unless given them.

Verified on CPU only: the packing, positions, the put-back and the registered attention function (with the
block-diagonal stand-in), eager and under torch.compile. Unverified without a GPU: the `varlen_attn` call
itself (its kernel choice, its speed, its numerics against the padded SDPA path in bfloat16).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

try:  # PyTorch >= 2.9; CUDA only
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # an older PyTorch: the padded path runs everywhere
    varlen_attn = None

VARLEN_ATTENTION = "thesis_sdpa_varlen"  # the attention kind text backbones are built with (SDPA + packed)
# Absolute positions, no token types beyond segment A: packing only renumbers positions (see `_position_offset`).
PACKABLE_MODEL_TYPES = ("bert", "roberta")
_KERNEL_DTYPES = (torch.float16, torch.bfloat16)


def key_padding_mask(mask: Tensor, backbone: PreTrainedModel) -> Tensor:
    """(B, L) bool, True = real token -> the 4-D mask (B, 1, 1, L) the backbone's attention kind reads: bool
    for SDPA, additive (0 / dtype minimum) for eager attention, as transformers would build it.

    Built here because transformers, given the 2-D mask, asks `mask.all()` to drop it when nothing is padded:
    a device->host sync in every eager forward pass, and under torch.compile (where it never asks) the mask
    is always kept. A 4-D mask is used as given; SDPA then runs its masked (memory-efficient) kernel on
    every batch, eager or compiled alike. The padding-free path (`run_packed`) needs no mask at all.
    """
    keep = mask[:, None, None, :]  # (B, 1, 1, L)
    if backbone.config._attn_implementation == "eager":
        dtype = backbone.get_input_embeddings().weight.dtype  # transformers: the embeddings' dtype
        return torch.where(keep, torch.zeros((), dtype=dtype, device=mask.device), torch.finfo(dtype).min)
    return keep


def varlen_attention(
    module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
    dropout: float = 0.0, scaling: float | None = None, **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention function for `VARLEN_ATTENTION`: packed rows (`cu_seq_lens_q` given) attend
    within their own plot; otherwise exactly transformers' SDPA attention."""
    cu_seqlens = kwargs.pop("cu_seq_lens_q", None)
    if cu_seqlens is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if dropout:
        raise ValueError("padding-free attention has no attention dropout: the text encoder packs only without it")
    return packed_attention(query, key, value, cu_seqlens, kwargs["max_length_q"], scaling), None


def packed_attention(
    query: Tensor, key: Tensor, value: Tensor, cu_seqlens: Tensor, max_length: int, scaling: float | None
) -> Tensor:
    """Attention within each packed plot: q, k, v (1, H, T, Dh), cu_seqlens (B + 1,) int32 plot boundaries,
    `max_length` an upper bound on a plot's length -> (1, T, H, Dh), the layout transformers' attention
    functions return."""
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, H, Dh) each
    head_dim = q.shape[-1]
    default_scale = scaling is None or math.isclose(scaling, head_dim**-0.5)
    if varlen_kernel_runs(q.device, q.dtype) and default_scale:
        # Positional arguments only: the keyword set changed between PyTorch 2.9 and 2.12.
        out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_length, max_length)  # (T, H, Dh)
        return out.unsqueeze(0)  # (1, T, H, Dh)
    # Stand-in (CPU, or no kernel): one SDPA over all T tokens, masked to a block per plot. O(T^2): for
    # checking the packed layout, not for speed (the text encoder packs by itself only where the kernel runs).
    tokens = torch.arange(q.shape[0], device=q.device)  # (T,)
    plot = torch.searchsorted(cu_seqlens[1:].to(torch.int64), tokens, right=True)  # (T,) each token's plot
    same_plot = plot[:, None] == plot[None, :]  # (T, T)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=same_plot, scale=scaling)  # (1, H, T, Dh)
    return out.transpose(1, 2)  # (1, T, H, Dh)


def varlen_kernel_runs(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `varlen_attn` can run here: PyTorch has it, a CUDA device, float16/bfloat16."""
    return varlen_attn is not None and device.type == "cuda" and dtype in _KERNEL_DTYPES


def compute_dtype(backbone: PreTrainedModel, device: torch.device) -> torch.dtype:
    """The dtype the attention inputs will have: autocast's when it is on, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return backbone.get_input_embeddings().weight.dtype


def can_pack(backbone: PreTrainedModel, training: bool) -> bool:
    """Whether this backbone can run the packed layout at all (any device; see the module docstring)."""
    config = backbone.config
    dropout = getattr(config, "attention_probs_dropout_prob", 0.0)
    return (
        config._attn_implementation == VARLEN_ATTENTION
        and config.model_type in PACKABLE_MODEL_TYPES
        and not (training and dropout > 0)
    )


def run_packed(backbone: PreTrainedModel, input_ids: Tensor, mask: Tensor, index: Tensor) -> Tensor:
    """The backbone over the real tokens only -> last hidden states in the padded layout (B, L, D), zeros
    at padding. `input_ids`, `mask` (B, L), right-padded; `index` (T,) the flat positions of `mask`'s
    True entries in row-major order (batch["text_index"])."""
    batch, length = input_ids.shape
    packed_ids = input_ids.reshape(-1).index_select(0, index).unsqueeze(0)  # (1, T)
    positions = (index % length + _position_offset(backbone)).unsqueeze(0)  # (1, T) restart at each plot
    lengths = mask.sum(dim=1)  # (B,) real tokens per plot
    cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)  # (B + 1,) plot boundaries in the row
    out = backbone(
        input_ids=packed_ids,
        position_ids=positions,
        token_type_ids=torch.zeros_like(packed_ids),  # (1, T) segment A, as the padded path's default
        cu_seq_lens_q=cu_seqlens,
        cu_seq_lens_k=cu_seqlens,
        max_length_q=length,  # an upper bound suffices (the kernel sizes its grid by it): no read of lengths
        max_length_k=length,
    )
    packed = out.last_hidden_state[0]  # (T, D)
    tokens = packed.new_zeros(batch * length, packed.shape[-1]).index_copy(0, index, packed)  # (B * L, D)
    return tokens.view(batch, length, -1)  # (B, L, D)


def _position_offset(backbone: PreTrainedModel) -> int:
    # RoBERTa numbers real tokens from padding_idx + 1 (its create_position_ids_from_input_ids); BERT from 0.
    return backbone.config.pad_token_id + 1 if backbone.config.model_type == "roberta" else 0


def register_varlen_attention() -> None:
    """Make `VARLEN_ATTENTION` known to transformers (attention function and mask builder); idempotent."""
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    AttentionMaskInterface.register(VARLEN_ATTENTION, sdpa_mask)


register_varlen_attention()
