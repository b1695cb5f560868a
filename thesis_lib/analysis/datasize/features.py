"""The data-size experiment's inputs: one larger twin, and fixed (never retrained) token features of it.

Text: the frozen pretrained MiniLM (the smoke profile's `text_bert` backbone) over the cleaned plot, cut
to `text_tokens` WordPiece tokens as the smoke profile cuts it: every token's last hidden state (384).

Image: one token per poster object, in the regime this experiment chooses so that the tokens carry the
alignment evidence at its location (stated plainly: this is not what the smoke build's encoders see).
The objects are the twin's true boxes, i.e. the project's "oracle" detector (`detection.oracle`): a
token says *what* (the detector's class, one-hot over `detection.vocab.twin_classes`), *where* (the
normalised box) and *how it looks*, measured from the poster's pixels by a fixed, non-learned function:
a 3 x 3 x 3 colour histogram and the mean colour of the box's inner part (where a prop's body is drawn)
and of its rim (where a glowing prop's halo is). A grid of colour statistics alone would not do: every
prop kind comes in every colour, so only the kind (its shape) says which prop the plot names, and a
fixed colour grid does not carry shape. Nothing here is learned, so no encoder is retrained per size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import clean_text
from thesis_lib.detection.vocab import twin_classes
from thesis_lib.genres import to_multi_hot
from thesis_lib.models.configs import TextEncoderConfig
from thesis_lib.models.text import load_text_backbone, load_tokenizer

HIST_BINS = 3  # per channel: 27 colour bins
RIM = 0.12  # the share of a box's side left around a prop's body (poster.py draws the halo there)
APPEARANCE = 2 * (HIST_BINS**3 + 3)  # inner and rim: histogram + mean colour
GEOMETRY = 4  # x0, y0, x1, y1 over the poster's width and height


def image_token_dim() -> int:
    return len(twin_classes()) + GEOMETRY + APPEARANCE


@dataclass(frozen=True)
class MovieFeatures:
    """Every movie's fixed tokens, in one order; masks say which rows are real."""

    ids: tuple[str, ...]
    text: Tensor  # (N, L, 384) float16, MiniLM's last hidden states
    text_mask: Tensor  # (N, L) bool, True = a real token
    image: Tensor  # (N, R, D_image) float32, one row per object
    image_mask: Tensor  # (N, R) bool, True = a real object
    labels: Tensor  # (N, 23) float32, the written (noisy) genres
    text_ids: Tensor  # (N, L) int64 WordPiece ids (0 = padding): which words survived the token cut

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, index: np.ndarray | Sequence[int]) -> MovieFeatures:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return MovieFeatures(tuple(self.ids[i] for i in index.tolist()), self.text[index], self.text_mask[index],
                             self.image[index], self.image_mask[index], self.labels[index],
                             self.text_ids[index])


def object_tokens(poster: Path, objects: Sequence[Mapping[str, Any]], max_objects: int) -> np.ndarray:
    """(max_objects, D_image) tokens of one poster's objects (zero rows past the last object)."""
    with Image.open(poster) as opened:
        pixels = np.asarray(opened.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    height, width = pixels.shape[:2]
    classes = twin_classes()
    tokens = np.zeros((max_objects, image_token_dim()), dtype=np.float32)
    for row, obj in enumerate(objects[:max_objects]):
        x0, y0, x1, y1 = (int(v) for v in obj["box"])
        box = pixels[y0:y1, x0:x1]  # (h, w, 3)
        inset_y, inset_x = round(RIM * (y1 - y0)), round(RIM * (x1 - x0))
        inner = np.zeros(box.shape[:2], dtype=bool)  # (h, w)
        inner[inset_y:box.shape[0] - inset_y, inset_x:box.shape[1] - inset_x] = True
        geometry = [x0 / width, y0 / height, x1 / width, y1 / height]
        tokens[row, classes.index(obj["label"])] = 1.0
        tokens[row, len(classes):len(classes) + GEOMETRY] = geometry
        tokens[row, len(classes) + GEOMETRY:] = np.concatenate([_appearance(box[inner]), _appearance(box[~inner])])
    return tokens


def _appearance(pixels: np.ndarray) -> np.ndarray:
    """(27 + 3,) the colour histogram (fractions) and the mean colour of (P, 3) pixels in [0, 1]."""
    if len(pixels) == 0:
        return np.zeros(HIST_BINS**3 + 3, dtype=np.float32)
    bins = np.minimum((pixels * HIST_BINS).astype(np.int64), HIST_BINS - 1)  # (P, 3)
    codes = (bins[:, 0] * HIST_BINS + bins[:, 1]) * HIST_BINS + bins[:, 2]  # (P,)
    histogram = np.bincount(codes, minlength=HIST_BINS**3) / len(pixels)  # (27,)
    return np.concatenate([histogram, pixels.mean(axis=0)]).astype(np.float32)


@torch.no_grad()
def minilm_tokens(plots: Sequence[str], max_length: int, batch_size: int = 64) -> tuple[Tensor, Tensor, Tensor]:
    """(N, L, 384) float16 last hidden states of the frozen MiniLM over the cleaned plots, (N, L) masks and
    (N, L) WordPiece ids (0 = padding)."""
    config = TextEncoderConfig(backbone="minilm", pretrained=True, frozen=True, max_length=max_length)
    tokenizer, backbone = load_tokenizer(config), load_text_backbone(config).eval()
    hidden = torch.zeros(len(plots), max_length, backbone.config.hidden_size, dtype=torch.float16)
    mask = torch.zeros(len(plots), max_length, dtype=torch.bool)
    ids = torch.zeros(len(plots), max_length, dtype=torch.long)
    for start in range(0, len(plots), batch_size):
        batch = tokenizer([clean_text(p) for p in plots[start:start + batch_size]], padding=True,
                          truncation=True, max_length=max_length, return_tensors="pt")
        out = backbone(**batch).last_hidden_state  # (B, L_batch, 384)
        end, length = start + out.shape[0], out.shape[1]
        hidden[start:end, :length] = out.to(torch.float16)
        mask[start:end, :length] = batch["attention_mask"].bool()
        ids[start:end, :length] = batch["input_ids"]
    return hidden, mask, ids


def movie_features(movies: Sequence[Movie], truth: Mapping[str, Any], text_tokens: int, max_objects: int,
                   timings: dict[str, float] | None = None) -> MovieFeatures:
    """The fixed tokens of `movies` (text, then image); `timings` gets each part's wall seconds."""
    started = time.perf_counter()
    text, text_mask, text_ids = minilm_tokens([movie.plot for movie in movies], text_tokens)
    text_s = time.perf_counter() - started
    image = np.stack([object_tokens(movie.poster, truth["movies"][movie.id]["objects"], max_objects)
                      for movie in movies])  # (N, R, D_image)
    counts = np.array([min(len(truth["movies"][movie.id]["objects"]), max_objects) for movie in movies])
    image_mask = torch.arange(max_objects)[None, :] < torch.from_numpy(counts)[:, None]  # (N, R)
    if timings is not None:
        timings["text_features_s"] = timings.get("text_features_s", 0.0) + text_s
        timings["image_features_s"] = timings.get("image_features_s", 0.0) + time.perf_counter() - started - text_s
    labels = torch.from_numpy(np.stack([to_multi_hot(movie.genres) for movie in movies]))
    return MovieFeatures(tuple(movie.id for movie in movies), text, text_mask, torch.from_numpy(image), image_mask,
                         labels, text_ids)
