"""Detected objects as a third modality: one token per detected region, and a fixed detection summary.

The encoder reads batch["objects"]: boxes (B, R, 4) normalised xyxy, classes (B, R) contiguous ids of the
detector's vocabulary, scores (B, R), mask (B, R) True = a real detection; the format (and its validator
`check_objects`, run once per pass by `check_input`; the forward pass checks shapes only) lives with the rest
of the batch contract in `thesis_lib.data.batch`. The detections come
from `thesis_lib.detection` (YOLO / Faster R-CNN run once and cached; the twin's ground truth stands in
as the "oracle" detector), which this model never imports.

Region token = LayerNorm(class embedding + MLP(box geometry) + linear(score)), so attention can tell
*what* is *where* and how sure the detector was. Pooled = the fixed, interpretable summary of the
poster's detections: per class log(1 + count), max score and covered area (sum of box areas, capped at 1),
then the number of people (capped at `max_people`, scaled to [0, 1]); a linear head on it is the
"bag of detections" baseline. When the fusion reads only pooled vectors the region-token layers are not
built (they would get no gradient); the tokens are then the raw region features (one-hot class, geometry,
score).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from thesis_lib.data.batch import check_object_layout, check_objects
from thesis_lib.models.configs import ObjectEncoderConfig
from thesis_lib.models.encoder import Encoder
from thesis_lib.models.outputs import EncoderOutput

GEOMETRY_FEATURES = 7  # x1, y1, x2, y2, width, height, area


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
        check_object_layout(objects)  # shapes only: the values are checked once per pass (`check_input`)
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
            one_hot = self._one_hot(classes)  # (B, R, C)
            tokens = torch.cat([one_hot, geometry, scores.unsqueeze(-1)], dim=-1)  # (B, R, C + 7 + 1)
        tokens = tokens * mask.unsqueeze(-1)  # (B, R, D) padded regions are exact zeros
        pooled = self.summary(classes, scores, geometry[..., 6], mask)  # (B, 3C [+ 1])
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def summary(self, classes: Tensor, scores: Tensor, areas: Tensor, mask: Tensor) -> Tensor:
        """The fixed detection summary: per class log(1+count), max score, covered area; then people."""
        one_hot = self._one_hot(classes) * mask.unsqueeze(-1)  # (B, R, C)
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

    def check_input(self, batch: Mapping[str, Any]) -> None:
        self._require_keys(batch)
        check_objects(batch["objects"], self.config.num_classes, self.config.source)

    def _one_hot(self, classes: Tensor) -> Tensor:
        """(B, R) class ids -> (B, R, C) float one-hot. A comparison, not `F.one_hot`: on CPU that reads the
        ids' min and max back to check them (a host read per batch, and a graph break under torch.compile);
        the ids were checked once by `check_input`."""
        vocabulary = torch.arange(self.config.num_classes, device=classes.device)  # (C,)
        return (classes.unsqueeze(-1) == vocabulary).float()  # (B, R, C)

    def expected_input(self) -> list[tuple[str, str]]:
        last = self.config.num_classes - 1
        return [(
            "objects",
            f"dict from {self.config.source} detections: boxes float (B, R, 4) normalised xyxy, "
            f"classes int64 (B, R) in 0..{last}, scores float (B, R), mask bool (B, R)",
        )]


def box_geometry(boxes: Tensor) -> Tensor:
    """Normalised xyxy boxes (..., 4) -> (..., 7): corners, width, height, area."""
    width = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)  # (...)
    height = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)  # (...)
    return torch.cat([boxes, width[..., None], height[..., None], (width * height)[..., None]], dim=-1)  # (..., 7)
