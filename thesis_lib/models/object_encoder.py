"""Detected objects as a third modality: one token per detected region, and a fixed detection summary.

The contract with the detector side (`thesis_lib.detection` runs and caches YOLO / Faster R-CNN;
the twin's ground truth stands in as the "oracle" detector). A batch carries `batch["objects"]`, a dict of
tensors padded to the largest number of detections R in the batch:

    boxes    float32 (B, R, 4)  normalised xyxy: x1 <= x2, y1 <= y2, all in [0, 1] of the poster's width/height
    classes  int64   (B, R)     contiguous ids 0..num_classes-1 of the detector's vocabulary (COCO-80 order for
                                pretrained detectors, person = 0; torchvision's 91 COCO category ids must be mapped)
    scores   float32 (B, R)     detection confidence in [0, 1]
    mask     bool    (B, R)     True = a real detection, False = padding

A poster without detections has an all-False row (R may even be 0 for the whole batch). `collate_objects`
builds the dict from per-poster `Detections`, so the detector side only produces those.

Region token = LayerNorm(class embedding + MLP(box geometry) + linear(score)), so attention can tell
*what* is *where* and how sure the detector was. Pooled = the fixed, interpretable summary of the
poster's detections: per class log(1 + count), max score and covered area (sum of box areas, capped at 1),
then the number of people (capped at `max_people`, scaled to [0, 1]); a linear head on it is the
"bag of detections" baseline. When the fusion reads only pooled vectors the region-token layers are not
built (they would get no gradient); the tokens are then the raw region features (one-hot class, geometry,
score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thesis_lib.models.configs import ObjectEncoderConfig
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput

OBJECT_KEYS = ("boxes", "classes", "scores", "mask")
GEOMETRY_FEATURES = 7  # x1, y1, x2, y2, width, height, area
_BOX_TOLERANCE = 1e-3  # rounding in a detector's normalisation is not an error


class Detections(NamedTuple):
    """One poster's detections (R may be 0)."""

    boxes: Tensor  # (R, 4) float, normalised xyxy
    classes: Tensor  # (R,) int64, contiguous class ids
    scores: Tensor  # (R,) float in [0, 1]


def collate_objects(detections: Sequence[Detections]) -> dict[str, Tensor]:
    """Pad per-poster detections into the batch["objects"] dict described in the module docstring."""
    batch_size = len(detections)
    regions = max((len(d.classes) for d in detections), default=0)
    objects = {
        "boxes": torch.zeros(batch_size, regions, 4),  # (B, R, 4)
        "classes": torch.zeros(batch_size, regions, dtype=torch.long),  # (B, R)
        "scores": torch.zeros(batch_size, regions),  # (B, R)
        "mask": torch.zeros(batch_size, regions, dtype=torch.bool),  # (B, R)
    }
    for row, poster in enumerate(detections):
        count = len(poster.classes)
        if not (poster.boxes.shape == (count, 4) and poster.scores.shape == (count,)):
            raise ValueError(
                f"detections of poster {row}: boxes {tuple(poster.boxes.shape)}, "
                f"classes {tuple(poster.classes.shape)}, scores {tuple(poster.scores.shape)} "
                f"do not describe the same {count} regions"
            )
        objects["boxes"][row, :count] = poster.boxes
        objects["classes"][row, :count] = poster.classes
        objects["scores"][row, :count] = poster.scores
        objects["mask"][row, :count] = True
    return objects


class ObjectEncoder(Encoder):
    """Detections (boxes, classes, scores) -> region tokens, their mask, and the detection summary."""

    modality = "objects"
    input_keys = ("objects",)

    def __init__(self, config: ObjectEncoderConfig, region_tokens: bool = True):
        classes = config.num_classes
        summary_dim = 3 * classes + (0 if config.person_class is None else 1)
        token_dim = config.dim if region_tokens else classes + GEOMETRY_FEATURES + 1
        super().__init__(token_dim=token_dim, pooled_dim=summary_dim)
        self.config = config
        self.region_tokens = region_tokens
        if region_tokens:
            self.class_embedding = nn.Embedding(classes, config.dim)
            self.geometry_mlp = nn.Sequential(
                nn.Linear(GEOMETRY_FEATURES, config.dim), nn.GELU(), nn.Linear(config.dim, config.dim)
            )
            self.score_projection = nn.Linear(1, config.dim)
            self.norm = nn.LayerNorm(config.dim)
        self.set_frozen(config.frozen)

    @classmethod
    def from_config(cls, config: ObjectEncoderConfig, region_tokens: bool = True) -> ObjectEncoder:
        return cls(config, region_tokens=region_tokens)

    def forward(self, batch: Mapping[str, Any]) -> EncoderOutput:
        self._require_keys(batch)
        objects = batch["objects"]
        self._check(objects)
        mask: Tensor = objects["mask"]  # (B, R) bool
        # Padding is overwritten (not multiplied: 0 * NaN is NaN), so whatever it held can never matter.
        boxes = objects["boxes"].float().masked_fill(~mask.unsqueeze(-1), 0.0)  # (B, R, 4)
        scores = objects["scores"].float().masked_fill(~mask, 0.0)  # (B, R)
        classes = objects["classes"].masked_fill(~mask, 0)  # (B, R) any valid id; masked out below
        geometry = box_geometry(boxes)  # (B, R, 7)
        if self.region_tokens:
            tokens = (
                self.class_embedding(classes)  # (B, R, D)
                + self.geometry_mlp(geometry)  # (B, R, D)
                + self.score_projection(scores.unsqueeze(-1))  # (B, R, D)
            )
            tokens = self.norm(tokens)  # (B, R, D)
        else:
            one_hot = F.one_hot(classes, self.config.num_classes).float()  # (B, R, C)
            tokens = torch.cat([one_hot, geometry, scores.unsqueeze(-1)], dim=-1)  # (B, R, C + 7 + 1)
        tokens = tokens * mask.unsqueeze(-1)  # (B, R, D) padded regions are exact zeros
        pooled = self.summary(classes, scores, geometry[..., 6], mask)  # (B, 3C [+ 1])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def summary(self, classes: Tensor, scores: Tensor, areas: Tensor, mask: Tensor) -> Tensor:
        """The fixed detection summary: per class log(1+count), max score, covered area; then people."""
        one_hot = F.one_hot(classes, self.config.num_classes).float() * mask.unsqueeze(-1)  # (B, R, C)
        counts = one_hot.sum(dim=1)  # (B, C)
        if one_hot.shape[1]:
            max_score = (one_hot * scores.unsqueeze(-1)).amax(dim=1)  # (B, C) 0 for absent classes (scores >= 0)
        else:
            max_score = torch.zeros_like(counts)  # (B, C) no region in the whole batch: amax has nothing to reduce
        covered = (one_hot * areas.unsqueeze(-1)).sum(dim=1).clamp(max=1.0)  # (B, C) overlaps may double-count
        parts = [torch.log1p(counts), max_score, covered]  # log: one vs. two objects matters more than 11 vs. 12
        if self.config.person_class is not None:
            people = counts[:, self.config.person_class : self.config.person_class + 1]  # (B, 1)
            parts.append(people.clamp(max=self.config.max_people) / self.config.max_people)  # (B, 1) in [0, 1]
        return torch.cat(parts, dim=-1)  # (B, 3C [+ 1])

    def expected_input(self) -> list[tuple[str, str]]:
        last = self.config.num_classes - 1
        return [(
            "objects",
            f"dict from {self.config.source} detections: boxes float (B, R, 4) normalised xyxy, "
            f"classes int64 (B, R) in 0..{last}, scores float (B, R), mask bool (B, R)",
        )]

    def _check(self, objects: Mapping[str, Tensor]) -> None:
        missing = [key for key in OBJECT_KEYS if key not in objects]
        if missing:
            raise KeyError(f"batch['objects'] lacks {missing}; it needs {list(OBJECT_KEYS)} (see object_encoder)")
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
        if not mask.any():
            return
        classes, boxes, scores = objects["classes"][mask], objects["boxes"][mask], objects["scores"][mask]
        if int(classes.min()) < 0 or int(classes.max()) >= self.config.num_classes:
            raise ValueError(
                f"batch['objects'] has class ids {int(classes.min())}..{int(classes.max())} outside the "
                f"{self.config.source} vocabulary 0..{self.config.num_classes - 1} (ObjectEncoderConfig.num_classes): "
                "map detector labels to contiguous ids"
            )
        low, high = -_BOX_TOLERANCE, 1 + _BOX_TOLERANCE
        if float(boxes.min()) < low or float(boxes.max()) > high:
            raise ValueError(
                f"batch['objects'] boxes span {float(boxes.min()):.3g}..{float(boxes.max()):.3g}: they must be "
                "normalised to [0, 1] (pixel coordinates divided by the poster's width/height)"
            )
        inverted = (boxes[:, 2] < boxes[:, 0] - _BOX_TOLERANCE) | (boxes[:, 3] < boxes[:, 1] - _BOX_TOLERANCE)  # (R,)
        if bool(inverted.any()):
            raise ValueError("batch['objects'] boxes must be xyxy (x1 <= x2, y1 <= y2); got xywh or swapped corners?")
        if float(scores.min()) < 0 or float(scores.max()) > 1:
            raise ValueError("batch['objects'] scores must lie in [0, 1]")


def box_geometry(boxes: Tensor) -> Tensor:
    """Normalised xyxy boxes (..., 4) -> (..., 7): corners, width, height, area."""
    width = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)  # (...)
    height = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)  # (...)
    return torch.cat([boxes, width[..., None], height[..., None], (width * height)[..., None]], dim=-1)  # (..., 7)
