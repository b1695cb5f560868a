"""What the fusion's and the text encoder's attention weights say: word importance, poster heat maps, rollout.

Cross-attention (fusion_cross_attention) returns, per layer, "text_to_image" (B, H, N_text, N_image) and,
when bidirectional, "image_to_text" (B, H, N_image, N_text); the image side is the image encoder's tokens
(a ViT's prefix/CLS token(s), then the patch grid; or a CNN's grid cells), then the object regions.

- Word importance: how much the poster side reads each plot token, `image_to_text` averaged over heads
  and over the real image-side queries. Each query's row sums to 1 over the real text tokens, so the
  importance is a distribution over the plot's tokens (per layer, or averaged over layers).
- Poster heat map: how much the plot reads each patch, `text_to_image` averaged over heads and over the
  real text tokens (or only chosen ones, e.g. the word that names a prop), on the patch grid.
- Attention rollout over the text encoder (Abnar & Zuidema 2020): per layer the head-averaged attention
  plus the residual connection, 0.5 A + 0.5 I with rows renormalised, multiplied through the layers. Row i
  says how much each input token flows into the output token i; what flows into the pooled plot vector
  follows the encoder's pooling: the [CLS] row for CLS pooling, the mean of the rows of the real tokens
  for mean pooling (the pooled vector is the mean of those outputs). Needs the text encoder's
  self-attention, i.e. a model built with `text_need_attentions=True` (eager attention; the weights and
  logits are the same).

Attention weights are what the model mixed, not why it decided: the book pairs them with Grad-CAM and with
the twin's ground truth (`faithfulness`) rather than reading them as explanations on their own.

Device: `explain_attention` runs the model where it is (a GPU when the run was loaded on one) and keeps
the maps there; the readers below (word importance, poster and region maps, rollout) reduce them there
and return their (small) results on the CPU, for figures and scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from thesis_lib.models.classifier import GenreClassifier


@dataclass
class AttentionExplanation:
    """One batch's forward pass with every attention map it produced, and the masks to read them."""

    logits: Tensor  # (B, 23)
    text_mask: Tensor | None  # (B, N_text) bool, True = real token
    image_mask: Tensor | None  # (B, N_image) bool over the whole image side (patches then regions)
    image_side: dict[str, slice]  # modality -> its columns on the image side, e.g. {"image": 0:197, "objects": 197:203}
    num_prefix_tokens: int  # tokens before the patch grid in the "image" part (1 for a ViT's CLS, 0 for a CNN)
    text_to_image: tuple[Tensor, ...] = ()  # per fusion layer (B, H, N_text, N_image)
    image_to_text: tuple[Tensor, ...] = ()  # per fusion layer (B, H, N_image, N_text); empty if one-way
    text_self_attention: tuple[Tensor, ...] = ()  # per text-encoder layer (B, H, L, L), when the model has it
    modality_weights: Tensor | None = None  # (B, M) attention fusion
    modalities: tuple[str, ...] = ()
    text_pooling: str | None = None  # how the text encoder pools its tokens ("cls" | "mean"), None: no text

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of the poster's patch grid on the image side."""
        if "image" not in self.image_side:
            raise ValueError("this model reads no poster: its image side holds object regions only")
        part = self.image_side["image"]
        patches = part.stop - part.start - self.num_prefix_tokens
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"{patches} image tokens do not form a square grid")
        return side, side


@torch.no_grad()
def explain_attention(model: GenreClassifier, batch: Mapping[str, Any]) -> AttentionExplanation:
    """Run `model` on `batch` (eval mode) and keep every attention map and the masks needed to read them."""
    model.eval()
    encoded = model.encode(batch)
    output = model.classify(encoded)
    attentions = output.attentions or {}
    image_side: dict[str, slice] = {}
    start = 0
    for modality in getattr(model.fusion, "image_side", ()):
        count = encoded[modality].tokens.shape[1]
        image_side[modality] = slice(start, start + count)
        start += count
    image_mask = torch.cat([encoded[m].mask for m in image_side], dim=1) if image_side else None  # (B, Ni)
    image_encoder = model.encoders["image"] if "image" in model.encoders else None
    text = encoded.get("text")
    return AttentionExplanation(
        logits=output.logits,
        text_mask=None if text is None else text.mask,
        image_mask=image_mask,
        image_side=image_side,
        num_prefix_tokens=getattr(image_encoder, "num_prefix_tokens", 0),
        text_to_image=tuple(attentions.get("text_to_image", ())),
        image_to_text=tuple(attentions.get("image_to_text", ())),
        text_self_attention=tuple(output.encoder_attentions.get("text", ())),
        modality_weights=output.modality_weights,
        modalities=output.modalities,
        text_pooling=model.encoders["text"].config.pooling if "text" in model.encoders else None,
    )


def _layers(maps: tuple[Tensor, ...], layer: int | None, what: str) -> Tensor:
    """One layer's maps (B, H, Nq, Nk), or the mean over layers when `layer` is None."""
    if not maps:
        raise ValueError(
            f"no {what} attention: the model has no cross-attention fusion"
            + (" in that direction (bidirectional=False)" if what == "image_to_text" else "")
        )
    return maps[layer] if layer is not None else torch.stack(maps).mean(dim=0)


def _masked_query_mean(weights: Tensor, query_mask: Tensor) -> Tensor:
    """(B, H, Nq, Nk) -> (B, Nk): mean over heads, then over the real queries only."""
    per_query = weights.mean(dim=1)  # (B, Nq, Nk)
    mask = query_mask.to(per_query.dtype).unsqueeze(-1)  # (B, Nq, 1)
    return (per_query * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, Nk)


def word_piece_importance(
    explanation: AttentionExplanation, layer: int | None = None, queries: str = "all"
) -> Tensor:
    """How much the poster side attends to each plot token: (B, N_text), rows sum to 1 over real tokens.

    `queries`: "all" image-side tokens, only the poster's "image" tokens, or only the "objects" regions.
    """
    weights = _layers(explanation.image_to_text, layer, "image_to_text")  # (B, H, Ni, Nt)
    query_mask = explanation.image_mask.clone()  # (B, Ni)
    if queries != "all":
        if queries not in explanation.image_side:
            raise ValueError(f"queries {queries!r}: the image side holds {list(explanation.image_side)}")
        keep = torch.zeros_like(query_mask)
        keep[:, explanation.image_side[queries]] = True
        query_mask &= keep
    return _masked_query_mean(weights, query_mask).cpu()  # (B, Nt)


def poster_attention_map(
    explanation: AttentionExplanation, layer: int | None = None, text_tokens: Tensor | None = None
) -> Tensor:
    """How much the plot attends to each poster patch: (B, rows, cols) on the patch grid.

    `text_tokens` (B, N_text) bool picks the querying tokens (default: every real token), e.g. the pieces
    of the word that names a prop. Values are attention mass (the rest went to the CLS token and regions).
    """
    weights = _layers(explanation.text_to_image, layer, "text_to_image")  # (B, H, Nt, Ni)
    query_mask = explanation.text_mask  # (B, Nt)
    if text_tokens is not None:
        query_mask = query_mask & text_tokens.to(query_mask.device)
    per_key = _masked_query_mean(weights, query_mask)  # (B, Ni)
    part = explanation.image_side["image"]
    rows, cols = explanation.patch_grid
    patches = per_key[:, part.start + explanation.num_prefix_tokens : part.stop]  # (B, rows*cols) raster order
    return patches.reshape(-1, rows, cols).cpu()  # (B, rows, cols)


def region_attention(explanation: AttentionExplanation, layer: int | None = None) -> Tensor:
    """How much the plot attends to each detected region: (B, R); absent regions are 0."""
    if "objects" not in explanation.image_side:
        raise ValueError("this model reads no object regions")
    weights = _layers(explanation.text_to_image, layer, "text_to_image")  # (B, H, Nt, Ni)
    per_key = _masked_query_mean(weights, explanation.text_mask)  # (B, Ni)
    return per_key[:, explanation.image_side["objects"]].cpu()  # (B, R)


def attention_rollout(attentions: Sequence[Tensor], mask: Tensor | None = None, residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): (B, L, L), row i = how much each input token reaches token i.

    Each layer's map is averaged over heads and mixed with the identity for the residual stream,
    residual * I + (1 - residual) * A, rows renormalised; the layers are multiplied bottom to top.
    Padded tokens (mask False) are cut out as keys, so no flow is attributed to them.
    """
    if not attentions:
        raise ValueError("attention rollout needs the text encoder's self-attention: build the model with "
                         "text_need_attentions=True (eager attention)")
    batch, _, length, _ = attentions[0].shape
    eye = torch.eye(length, dtype=attentions[0].dtype, device=attentions[0].device)  # (L, L)
    keys = torch.ones(batch, 1, length, dtype=eye.dtype, device=eye.device) if mask is None else (
        mask.to(eye.dtype).unsqueeze(1)  # (B, 1, L)
    )
    rollout = eye.expand(batch, length, length)  # (B, L, L)
    for layer in attentions:
        mixed = residual * eye + (1.0 - residual) * layer.mean(dim=1)  # (B, L, L)
        mixed = mixed * keys  # (B, L, L) padded keys carry nothing
        mixed = mixed / mixed.sum(dim=-1, keepdim=True).clamp(min=1e-12)  # rows sum to 1 again
        rollout = mixed @ rollout  # (B, L, L)
    return rollout


ROLLOUT_POOLINGS = ("cls", "mean")


def pooled_rollout(rollout: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """What flows into the pooled vector: (B, L, L) rollout -> (B, L), a distribution over input tokens.

    "cls": the pooled vector is the first output token, so its row; "mean": the pooled vector is the mean
    of the real tokens' outputs (`models.text`: masked mean), so the mean of their rows."""
    if pooling == "cls":
        return rollout[:, 0]  # (B, L)
    if pooling != "mean":
        raise ValueError(f"rollout of a text encoder pooled by {pooling!r}: known poolings are {ROLLOUT_POOLINGS}")
    real = torch.ones(rollout.shape[:2], dtype=rollout.dtype, device=rollout.device) if mask is None else (
        mask.to(rollout.dtype))  # (B, L)
    weights = real / real.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, L) 1/n on each real token
    return (weights.unsqueeze(-1) * rollout).sum(dim=1)  # (B, L)


def rollout_token_importance(explanation: AttentionExplanation, residual: float = 0.5) -> Tensor:
    """How much each token reaches the text encoder's pooled plot vector by attention rollout: (B, L), read
    as the encoder pools (`pooled_rollout`: the [CLS] row, or the mean of the real tokens' rows); special
    tokens included (word merging drops them)."""
    if explanation.text_pooling is None:
        raise ValueError("attention rollout needs a model that reads the plot")
    rollout = attention_rollout(explanation.text_self_attention, explanation.text_mask, residual)  # (B, L, L)
    return pooled_rollout(rollout, explanation.text_mask, explanation.text_pooling).cpu()  # (B, L)


@torch.no_grad()
def modality_weights_over(
    model: GenreClassifier, batches: Iterable[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """An attention-fusion model's per-movie modality weights over a split: ((N, M) weights, (N, 23) labels),
    in the order of `batches` (e.g. the test loader); the modality order is `model.modalities`."""
    model.eval()
    weights, labels = [], []
    for batch in batches:
        output = model(batch)
        if output.modality_weights is None:
            raise ValueError(f"a {model.fusion.__class__.__name__} gives no per-movie modality weights "
                             "(attention fusion does; late fusion has per-genre weights: genre_modality_weights)")
        weights.append(output.modality_weights.float().cpu().numpy())  # (b, M)
        labels.append(batch["labels"].float().cpu().numpy())  # (b, 23)
    return np.concatenate(weights), np.concatenate(labels)


def modality_weights_per_genre(weights: np.ndarray | Tensor, labels: np.ndarray | Tensor) -> np.ndarray:
    """Mean per-movie modality weights over the movies of each genre: (N, M), (N, 23) -> (23, M).

    `labels` is the multi-hot truth (or the predictions, to ask what the model weighed when it said the
    genre). A genre without any movie gets NaN.
    """
    weights = np.asarray(weights, dtype=np.float64)  # (N, M)
    labels = np.asarray(labels, dtype=np.float64)  # (N, 23)
    if weights.ndim != 2 or labels.ndim != 2 or weights.shape[0] != labels.shape[0]:
        raise ValueError(f"weights (N, M) and labels (N, 23) must agree on N; got {weights.shape} and {labels.shape}")
    counts = labels.sum(axis=0)  # (23,)
    totals = labels.T @ weights  # (23, M)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[:, None] > 0, totals / counts[:, None], np.nan)  # (23, M)
