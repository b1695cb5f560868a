"""The batch: the one dict every model, the training loop and the feature cache read. This docstring is the
reference; other modules point here instead of describing it again.

A batch of B movies holds `ids` and `labels` always, and the inputs of the modalities its model reads:

    key             type and shape                  what it holds
    ids             list[str] (B)                   7-digit movie ids, in batch order
    labels          float32 (B, 23)                 multi-hot genres, in `genres.GENRES` order
    image           float32 (B, 3, S, S)            posters through the run's transform (S = the image encoder's
                                                    input size), normalised with the backbone's statistics
    input_ids       int64   (B, L)                  token ids of the cleaned plots, padded to the batch's
    attention_mask  int64   (B, L)                    longest plot (L <= max_length); mask 1 = real token
    text_index      int64   (T,)                    flat positions (row * L + column) of the real tokens,
                                                    T = sum of the plot lengths, row-major; computed on the
                                                    host so padding-free attention knows T without a sync
                                                    (`models.text_attention`); right padding only
    objects         dict of tensors (below)         each poster's detections, padded to R regions
    features        {modality: {tokens, mask,       cached outputs of frozen encoders (cached-feature
                     pooled}} (below)               training only; the cached encoders never run)

batch["objects"] (what `thesis_lib.detection` produces and `models.object_encoder.ObjectEncoder` reads):

    boxes    float32 (B, R, 4)  normalised xyxy: x1 <= x2, y1 <= y2, all in [0, 1] of the poster's width/height
    classes  int64   (B, R)     contiguous ids 0..num_classes-1 of the detector's vocabulary (COCO-80 order for
                                pretrained detectors, person = 0; torchvision's 91 COCO category ids must be mapped)
    scores   float32 (B, R)     detection confidence in [0, 1] (the detection side sorts each row descending)
    mask     bool    (B, R)     True = a real detection, False = padding (zeros in boxes, classes, scores)

A poster without detections has an all-False row (R may even be 0 for a whole batch). The detector side
makes per-poster `detection.Detections` and pads them with `detection.pad_detections`; a
`detection.DetectionTable` holds a whole release padded to the detector's `max_regions` and hands out
rows by id. `check_objects` validates the entry's values (`GenreClassifier.check_batch` runs it once per pass);
`check_object_layout` its keys, dtypes and shapes (the object encoder runs it in every forward pass).

batch["features"][modality] (what `train.features.CachedFeatureDataset` items hold, batched):

    tokens   float32 (B, N, D)  the encoder's tokens, padded to the batch's longest sample (N >= 1)
    mask     bool    (B, N)     True = real token
    pooled   float32 (B, D_p)   the encoder's pooled vector

Two collators assemble batches (both plain top-level objects, so DataLoader workers can pickle them):
- `MultimodalCollator`: dataset items {"id", "labels", ["image"], ["text"]} (`dataset.MMIMDbDataset`, or
  labels-only items) -> ids, labels, image, input_ids, attention_mask, text_index; plots are tokenised here, once per
  batch (a fast tokenizer encodes a batch far faster than plot by plot, and padding to the longest plot of
  the batch, not to 512, keeps short batches cheap);
- `CachedFeaturesCollator`: cached items {"id", "labels", "features"} -> ids, labels, features.
Either adds batch["objects"] from an `ObjectsSource` (a `detection.DetectionTable`) when given one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

# Every text encoder here has 512 positions.
MAX_TEXT_LENGTH = 512
# batch["objects"]: key -> dtype (shapes in the module docstring)
OBJECT_DTYPES: dict[str, torch.dtype] = {
    "boxes": torch.float32, "classes": torch.int64, "scores": torch.float32, "mask": torch.bool,
}
OBJECT_KEYS = tuple(OBJECT_DTYPES)
FEATURE_PARTS = ("tokens", "mask", "pooled")  # batch["features"][modality] (and each cached item) holds these
BOX_TOLERANCE = 1e-3  # rounding in a detector's normalisation is not an error


class ObjectsSource(Protocol):
    """Where a collator gets batch["objects"] from: `detection.DetectionTable` (any object with this method)."""

    def objects(self, ids: Sequence[str]) -> dict[str, Tensor]: ...


@dataclass(frozen=True, eq=False)
class MultimodalCollator:
    """List of dataset items -> a batch (see the module docstring), with batch["objects"] when `objects` is set.

    Text is tokenised here, batched: padded to the longest plot in the batch (rounded up to
    `pad_to_multiple_of` if set, which helps tensor cores) and truncated to `max_length` tokens.
    """

    tokenizer: Any = None                # a Hugging Face tokenizer; only needed when items carry text
    max_length: int = MAX_TEXT_LENGTH    # truncation length in tokens, special tokens included
    pad_to_multiple_of: int | None = None  # round L up (e.g. 8 for tensor cores); must divide max_length
    objects: ObjectsSource | None = None  # detections by poster id; None when the model reads none

    def __post_init__(self) -> None:
        if not 2 <= self.max_length <= MAX_TEXT_LENGTH:
            raise ValueError(f"max_length must be in [2, {MAX_TEXT_LENGTH}], got {self.max_length}")
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", MAX_TEXT_LENGTH)
        if self.max_length > tokenizer_limit:
            raise ValueError(f"max_length {self.max_length} exceeds the tokenizer's limit {tokenizer_limit}")
        multiple = self.pad_to_multiple_of
        if multiple is not None and (multiple < 1 or self.max_length % multiple):
            # Otherwise a batch truncated at max_length would be padded back beyond it.
            raise ValueError(
                f"max_length {self.max_length} is not a multiple of pad_to_multiple_of {self.pad_to_multiple_of}"
            )

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        keys = set(items[0])
        if any(set(item) != keys for item in items):
            raise ValueError("items in one batch carry different keys (mixed modalities?)")
        batch: dict[str, Any] = {"ids": [item["id"] for item in items]}
        if "image" in keys:
            batch["image"] = torch.stack([item["image"] for item in items])  # (B, 3, S, S)
        if "text" in keys:
            batch |= self._tokenize([item["text"] for item in items])
        batch["labels"] = torch.stack([item["labels"] for item in items]).float()  # (B, 23)
        if self.objects is not None:
            batch["objects"] = self.objects.objects(batch["ids"])  # {boxes (B, R, 4), classes, scores, mask (B, R)}
        return batch

    def _tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        if self.tokenizer is None:
            raise ValueError("items carry text but the collator has no tokenizer")
        encoded = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="pt",
        )
        batch = {
            "input_ids": encoded["input_ids"].long(),  # (B, L)
            "attention_mask": encoded["attention_mask"].long(),  # (B, L), 1 = real token
        }
        if getattr(self.tokenizer, "padding_side", "right") == "right":  # real tokens first in every row
            batch["text_index"] = batch["attention_mask"].flatten().nonzero().squeeze(1)  # (T,) on the host
        return batch


@dataclass(frozen=True, eq=False)
class CachedFeaturesCollator:
    """Cached items {"id", "labels" (23,), "features": {modality: {"tokens" (n_i, D), "mask" (n_i,), "pooled" (D,)}}}
    -> a batch {"ids", "labels", "features"} (see the module docstring), with batch["objects"] when `objects` is set.

    Tokens are padded to the batch's longest sample (at least 1 position); shorter samples are zero-padded
    with mask False. Items may hold each sample's own rows (a ragged cache) or rows padded further: only up
    to the last real token is read."""

    objects: ObjectsSource | None = None  # detections by poster id; None when the model reads none

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        features = {}
        for modality in items[0]["features"]:
            parts = [item["features"][modality] for item in items]
            lengths = [int(stored_lengths(part["mask"][None])[0]) for part in parts]
            length = max(*lengths, 1)  # an all-padding batch still gets one (masked) position
            width = parts[0]["tokens"].shape[-1]
            tokens = torch.zeros(len(parts), length, width)  # (B, N, D) float32: CPUs lack fast fp16 kernels
            mask = torch.zeros(len(parts), length, dtype=torch.bool)  # (B, N)
            for row, (part, n) in enumerate(zip(parts, lengths, strict=True)):
                tokens[row, :n] = part["tokens"][:n]  # float16 storage -> float32 on copy
                mask[row, :n] = part["mask"][:n]
            features[modality] = {
                "tokens": tokens,
                "mask": mask,
                "pooled": torch.stack([part["pooled"] for part in parts]),  # (B, D_p)
            }
        batch: dict[str, Any] = {
            "ids": [item["id"] for item in items],
            "labels": torch.stack([item["labels"] for item in items]),  # (B, 23)
            "features": features,
        }
        if self.objects is not None:
            batch["objects"] = self.objects.objects(batch["ids"])  # {boxes (B, R, 4), classes, scores, mask (B, R)}
        return batch


def stored_lengths(mask: Tensor) -> Tensor:
    """(B, N) padding mask -> (B,) positions up to each sample's last real token (0 when it has none): the
    rows a feature cache stores and a cached batch reads."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)  # (N,) 1-based
    return torch.nn.functional.pad(mask.long() * positions, (1, 0)).amax(dim=1)  # (B,); the 0 column: N may be 0


def check_object_layout(objects: Mapping[str, Tensor]) -> None:
    """Raise when batch["objects"] lacks a key, has a non-bool mask, or shapes that do not agree. Reads
    shapes and dtypes only (host metadata), so the object encoder runs it in every forward pass without a
    device->host sync and torch.compile traces it without a graph break."""
    missing = [key for key in OBJECT_KEYS if key not in objects]
    if missing:
        raise KeyError(f"batch['objects'] lacks {missing}; it needs {list(OBJECT_KEYS)} (see thesis_lib.data.batch)")
    mask = objects["mask"]
    shape = tuple(mask.shape)
    if mask.dtype != torch.bool or len(shape) != 2:
        raise ValueError(f"batch['objects']['mask'] must be bool (B, R); got {mask.dtype} {shape}")
    if tuple(objects["boxes"].shape) != (*shape, 4) or objects["classes"].shape != mask.shape or (
        objects["scores"].shape != mask.shape
    ):
        raise ValueError(
            f"batch['objects']: boxes {tuple(objects['boxes'].shape)}, classes {tuple(objects['classes'].shape)}, "
            f"scores {tuple(objects['scores'].shape)} do not match mask {shape}"
        )


def check_objects(objects: Mapping[str, Tensor], num_classes: int | None = None, source: str = "detector") -> None:
    """Raise when batch["objects"] breaks the format of the module docstring: the layout (`check_object_layout`),
    and on real detections class ids outside 0..num_classes-1 (when given), pixel (unnormalised) or xywh
    boxes, scores outside [0, 1]. `source` names the detector in messages.

    The value checks read tensors back to the host (a device->host sync on a GPU): run it where batches are
    checked once (`ObjectEncoder.check_input`), never in a forward pass."""
    check_object_layout(objects)
    mask = objects["mask"]
    if not mask.any():
        return
    classes, boxes, scores = objects["classes"][mask], objects["boxes"][mask], objects["scores"][mask]  # (n,) (n, 4)
    if num_classes is not None and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        raise ValueError(
            f"batch['objects'] has class ids {int(classes.min())}..{int(classes.max())} outside the "
            f"{source} vocabulary 0..{num_classes - 1} (ObjectEncoderConfig.num_classes): "
            "map detector labels to contiguous ids"
        )
    low, high = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
    if float(boxes.min()) < low or float(boxes.max()) > high:
        raise ValueError(
            f"batch['objects'] boxes span {float(boxes.min()):.3g}..{float(boxes.max()):.3g}: they must be "
            "normalised to [0, 1] (pixel coordinates divided by the poster's width/height)"
        )
    inverted = (boxes[:, 2] < boxes[:, 0] - BOX_TOLERANCE) | (boxes[:, 3] < boxes[:, 1] - BOX_TOLERANCE)  # (n,)
    if bool(inverted.any()):
        raise ValueError("batch['objects'] boxes must be xyxy (x1 <= x2, y1 <= y2); got xywh or swapped corners?")
    if float(scores.min()) < 0 or float(scores.max()) > 1:
        raise ValueError("batch['objects'] scores must lie in [0, 1]")
