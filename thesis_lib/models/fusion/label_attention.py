"""Label-wise attention: a single-modality readout in which every genre attends over the encoder's tokens.

A pooled vector (the [CLS] token, or the mean of the tokens) is one summary for all 23 genres; a frozen
encoder's summary need not keep the few words that decide one genre. Label-wise attention (CAML,
Mullenbach et al. 2018) gives each genre g its own query q_g and reads its own summary of the tokens:

    a_g = softmax_n( q_g . W_k h_n / sqrt(D) )        over the real tokens n        (B, 23, N)
    s_g = sum_n a_g,n h_n                                                            (B, 23, D)
    logit_g = w_g . dropout(s_g) + b_g                                               (B, 23)

so the output is already the 23 logits (the classifier's head is then the identity, as for late fusion),
and `a` says which tokens each genre read (kept as the output's attention, one "head").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from thesis_lib.genres import NUM_GENRES
from thesis_lib.models.fusion.base import Fusion
from thesis_lib.models.outputs import EncoderOutput, FusionOutput

ATTENTION_KEY = "genre_to_tokens"  # FusionOutput.attentions key: (B, 1, 23, N), one layer


class LabelAttention(Fusion):
    """One modality's tokens (B, N, D) -> 23 genre logits, each genre attending over the tokens itself."""

    reads_tokens = True
    produces_logits = True

    def __init__(self, modality: str, token_dim: int, dropout: float, num_genres: int = NUM_GENRES):
        super().__init__((modality,), out_dim=num_genres)
        self.keys = nn.Linear(token_dim, token_dim)
        self.queries = nn.Parameter(torch.randn(num_genres, token_dim) * token_dim**-0.5)  # (23, D)
        self.dropout = nn.Dropout(dropout)
        self.weight = nn.Parameter(torch.zeros(num_genres, token_dim))  # (23, D) one linear map per genre
        self.bias = nn.Parameter(torch.zeros(num_genres))  # (23,)

    def forward(self, encoded: Mapping[str, EncoderOutput]) -> FusionOutput:
        (only,) = self._inputs(encoded)
        tokens, mask = only.tokens, only.mask  # (B, N, D), (B, N) True for real tokens
        scores = torch.einsum("gd,bnd->bgn", self.queries, self.keys(tokens)) / math.sqrt(tokens.shape[-1])
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), torch.finfo(scores.dtype).min)  # (B, 23, N)
        weights = scores.softmax(dim=-1)  # (B, 23, N) each genre's weights sum to 1 over the real tokens
        summaries = torch.einsum("bgn,bnd->bgd", weights, tokens)  # (B, 23, D)
        logits = (self.dropout(summaries) * self.weight).sum(dim=-1) + self.bias  # (B, 23)
        return FusionOutput(fused=logits, modalities=self.modalities,
                            attentions={ATTENTION_KEY: (weights.unsqueeze(1),)})  # (B, 1, 23, N)
