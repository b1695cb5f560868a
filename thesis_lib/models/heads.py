"""The one classification head every model ends in: dropout, then a linear map to the 23 genre logits."""

from __future__ import annotations

from torch import Tensor, nn

from thesis_lib.genres import NUM_GENRES


class GenreHead(nn.Module):
    """Fused features (B, D) -> genre logits (B, 23); a sigmoid per genre, since genres are not exclusive."""

    def __init__(self, in_dim: int, dropout: float = 0.1, num_genres: int = NUM_GENRES):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, num_genres)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(self.dropout(features))  # (B, 23)
