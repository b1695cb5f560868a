"""Grad-CAM (and Grad-CAM++ / HiResCAM) on the poster branch of any image-reading model, via pytorch-grad-cam.

pytorch-grad-cam calls `model(images)` with one tensor. `PosterOnlyModel` wraps a `GenreClassifier` so it
can: the other inputs of the same movies (the plot's token features, the detected objects) are encoded
once, detached, and held fixed; only the poster goes through the image encoder, then through the fusion
and the head. The gradient of a genre's logit therefore reaches the poster through the fusion (the plot
can steer where the model looks), but never the text encoder or its input.

Targets are one (row, genre) pair per map: multi-label, so a poster gets a map per genre, each for the
genre's *logit* (`ClassifierOutputTarget`), never a softmax over the 23 genres. A batch of pairs is
explained in one forward/backward pass, each row with its own target.

Frozen encoders have `requires_grad=False`, which would leave Grad-CAM without gradients. During
explanation every parameter is switched off instead (restored afterwards) and the *input* poster requires
the gradient: the activations of the target layer then carry gradients whether or not the backbone was
frozen, no parameter `.grad` is written, and the caller's model is left as it was (except for eval mode,
which pytorch-grad-cam sets).

Frames: maps come back in the model-input frame (S x S, values in [0, 1], per map min-max scaled as
pytorch-grad-cam does). Posters were squashed, not cropped, to that square (data.images), so the
mapping back to the JPEG's W x H pixels is a per-axis scaling: `to_poster_frame` resizes a map,
`point_to_poster_frame` maps one pixel (centre to centre).

Device: the maps are computed where the model is (a GPU when the run was loaded on one); the poster batch
must be there too (`gradcam_maps` checks it: pytorch-grad-cam would copy a stray batch onto the model's
device, off the autograd leaf whose gradient it reads). pytorch-grad-cam brings activations and gradients
back to the CPU itself, so the maps are numpy arrays on the host.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thesis_lib.models.classifier import GenreClassifier
from thesis_lib.models.outputs import EncoderOutput

CAM_METHODS = ("gradcam", "gradcam++", "hirescam")  # Grad-CAM, Grad-CAM++ (Chattopadhay 2018), HiResCAM (Draelos 2020)
# The CNN stage Grad-CAM reads (`ImageEncoder.gradcam_stages`; a ViT reads its patch grid whatever this says).
# The twin's planted objects cover 3-7% of a poster; a ResNet's last stage at 128 px is a 4 x 4 grid, too
# coarse to put a maximum inside one of them, and an earlier stage doubles the grid per step for the cost of
# the same backward pass (a larger input would cost every forward pass). Chosen on the smoke runs' dev pairs
# (strict pointing game, 200 true-positive poster-evidence pairs per run, measured 2026-12): layer4 0.00-0.01
# for every run; layer3 0.47 image_resnet50, 0.42 fusion_cross_attention, 0.39 fusion_early, 0.32 its
# @minilm variant; layer2 0.63, 0.32, 0.43, 0.26 (level with layer3 on average, worse for both
# cross-attention runs, whose maps get patchy at 16 x 16). The test pairs ranked the stages the same way.
GRADCAM_STAGE = "layer3"


def _cam_class(method: str) -> type:
    # pytorch-grad-cam is an optional dependency (not on the GPU image): imported only when used.
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM}
    if method not in classes:
        raise ValueError(f"CAM method {method!r} is not one of {CAM_METHODS}")
    return classes[method]


def select_rows(batch: Mapping[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The batch restricted to `rows` (repeats allowed): tensors, nested dicts (objects) and lists (ids)."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    selected: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "text_index":
            continue  # indexes the whole batch's tokens, not rows: without it the text encoder runs padded
        if isinstance(value, Tensor):
            selected[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, Mapping):
            selected[key] = select_rows(value, rows)
        elif isinstance(value, (list, tuple)):
            selected[key] = [value[row] for row in rows]
        else:
            selected[key] = value
    return selected


def _select_features(features: EncoderOutput, index: Tensor) -> EncoderOutput:
    index = index.to(features.tokens.device)
    return EncoderOutput(
        tokens=features.tokens.index_select(0, index),  # (R, N, D)
        mask=features.mask.index_select(0, index),  # (R, N)
        pooled=features.pooled.index_select(0, index),  # (R, D)
    )


def _broadcast(features: EncoderOutput, batch_size: int) -> EncoderOutput:
    """Held features of one movie repeated for a batch of poster variants (deletion curves)."""
    if features.tokens.shape[0] == batch_size:
        return features
    if features.tokens.shape[0] != 1:
        raise ValueError(f"held features for {features.tokens.shape[0]} movies cannot explain {batch_size} posters")
    return EncoderOutput(
        tokens=features.tokens.expand(batch_size, -1, -1),  # (B, N, D)
        mask=features.mask.expand(batch_size, -1),  # (B, N)
        pooled=features.pooled.expand(batch_size, -1),  # (B, D)
    )


class PosterOnlyModel(nn.Module):
    """`model(images) -> logits` with every non-poster input of `batch` encoded once and held fixed.

    Built for the rows of `batch`; a one-row batch also serves any number of variants of its poster.
    The wrapped model is put in eval mode (dropout off), as the held features were computed in it.
    """

    def __init__(self, model: GenreClassifier, batch: Mapping[str, Any] | None, *,
                 held: Mapping[str, EncoderOutput] | None = None):
        super().__init__()
        if "image" not in model.encoders:
            raise ValueError(f"model reads {list(model.modalities)}: Grad-CAM on posters needs an image encoder")
        self.model = model.eval()
        if held is None:
            with torch.no_grad():
                # Detached: no gradient can reach the text encoder, its embeddings or the object encoder.
                held = {m: encoder(batch).detach() for m, encoder in model.encoders.items() if m != "image"}
        self.held = dict(held)

    def select(self, rows: Sequence[int]) -> PosterOnlyModel:
        """The same wrapper for some of its movies (repeats allowed), without encoding anything again."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        held = {m: _select_features(features, index) for m, features in self.held.items()}
        return PosterOnlyModel(self.model, None, held=held)

    @property
    def image_encoder(self) -> nn.Module:
        return self.model.encoders["image"]

    def forward(self, images: Tensor) -> Tensor:
        encoded = {m: _broadcast(features, images.shape[0]) for m, features in self.held.items()}
        encoded["image"] = self.image_encoder({"image": images})  # (B, N, D) fresh, with gradient
        return self.model.classify(encoded).logits  # (B, 23)


@contextlib.contextmanager
def gradients_to_input_only(model: nn.Module) -> Iterator[None]:
    """Switch off every parameter's requires_grad for the block (frozen or not), then restore each flag."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        for param, _ in flags:
            param.requires_grad_(False)
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def gradcam_maps(
    model: GenreClassifier,
    batch: Mapping[str, Any],
    targets: Sequence[tuple[int, int]],
    method: str = "gradcam",
    chunk_size: int = 16,
    held: PosterOnlyModel | None = None,
    stage: str | None = GRADCAM_STAGE,
) -> np.ndarray:
    """One class-activation map per (row of batch, genre index) pair: float32 (P, S, S) in [0, 1].

    The maps are in the model-input frame (the S x S square of batch["image"]); see `to_poster_frame`.
    Pairs are explained `chunk_size` at a time, each with its own genre target on the logits.
    `held`: a `PosterOnlyModel(model, batch)` already built (the plot is then not encoded again).
    `stage`: the CNN stage whose activations are weighed (`GRADCAM_STAGE`; None: the last); a ViT's patch grid
    is read whatever it says.
    """
    return cam_maps(model, batch, targets, (method,), chunk_size, held, stage)[method]


def cam_maps(
    model: GenreClassifier,
    batch: Mapping[str, Any],
    targets: Sequence[tuple[int, int]],
    methods: Sequence[str] = ("gradcam",),
    chunk_size: int = 16,
    held: PosterOnlyModel | None = None,
    stage: str | None = GRADCAM_STAGE,
) -> dict[str, np.ndarray]:
    """`gradcam_maps` for several methods at once: {method: (P, S, S)}, from one forward and backward pass.

    Grad-CAM, Grad-CAM++ and HiResCAM read the same activations and gradients of the target layer and differ
    only in how they weigh them; the first method runs pytorch-grad-cam, and the others apply their own
    class's formula (its `compute_cam_per_layer` and `aggregate_multi_layers`, the library's code) to the
    activations and gradients that pass recorded, so each map is the one its method alone would give.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    methods = tuple(dict.fromkeys(methods))  # each once
    cam_classes = {method: _cam_class(method) for method in methods}
    encoder = model.encoders["image"] if "image" in model.encoders else None
    if encoder is None:
        raise ValueError(f"model reads {list(model.modalities)}: Grad-CAM on posters needs an image encoder")
    if not targets:
        return {method: np.zeros((0, *batch["image"].shape[-2:]), dtype=np.float32) for method in methods}
    _check_same_device(model, batch["image"])
    held = PosterOnlyModel(model, batch) if held is None else held
    if held.model is not model:
        raise ValueError("gradcam_maps: `held` wraps another model than the one to explain")
    maps: dict[str, list[np.ndarray]] = {method: [] for method in methods}
    first, *others = methods
    with gradients_to_input_only(model):
        for start in range(0, len(targets), chunk_size):
            chunk = targets[start : start + chunk_size]
            rows = [row for row, _ in chunk]
            wrapper = held.select(rows)
            images = batch["image"].index_select(0, torch.as_tensor(rows, device=batch["image"].device))
            images = images.detach().clone().requires_grad_(True)  # (P, 3, S, S) the only leaf with a gradient
            cam = cam_classes[first](
                model=wrapper,
                target_layers=encoder.gradcam_target_layers(stage),
                reshape_transform=encoder.gradcam_reshape_transform(),
            )
            genre_targets = [ClassifierOutputTarget(g) for _, g in chunk]
            try:
                # Not `with cam:` -- its __exit__ swallows IndexError; release the hooks explicitly instead.
                maps[first].append(cam(input_tensor=images, targets=genre_targets))
                # The other methods' classes over the same state (hooks, recorded activations and gradients).
                # Each view is kept until all are done: a CAM's __del__ releases the shared recordings.
                views = [object.__new__(cam_classes[method]) for method in others]
                for method, view in zip(others, views, strict=True):
                    view.__dict__.update(cam.__dict__)
                    maps[method].append(view.aggregate_multi_layers(view.compute_cam_per_layer(images, genre_targets,
                                                                                               False)))
            finally:
                cam.activations_and_grads.release()
    return {method: np.concatenate(found).astype(np.float32) for method, found in maps.items()}  # (P, S, S) each


def cam_grid(model: GenreClassifier, images: Tensor, stage: str | None = GRADCAM_STAGE) -> tuple[int, int]:
    """(rows, columns) of the grid Grad-CAM weighs at `stage` for these posters (B, 3, S, S): the map's
    resolution before pytorch-grad-cam resizes it to S x S (a ViT: its patch grid)."""
    encoder = model.encoders["image"]
    layer = encoder.gradcam_target_layers(stage)[0]
    transform = encoder.gradcam_reshape_transform()
    seen: list[Tensor] = []
    hook = layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        with torch.no_grad():
            encoder({"image": images[:1]})
    finally:
        hook.remove()
    activation = seen[0] if transform is None else transform(seen[0])  # (1, D, h, w)
    return int(activation.shape[-2]), int(activation.shape[-1])


def _check_same_device(model: nn.Module, images: Tensor) -> None:
    """The posters must be on the model's device (a LoadedRun's `make_batch` puts them there)."""
    device = next(model.parameters()).device
    if images.device != device:
        raise ValueError(f"gradcam_maps: the posters are on {images.device} but the model on {device}: make the "
                         "batch on the model's device (LoadedRun.make_batch does)")


def randomized_copy(model: GenreClassifier, seed: int = 0) -> GenreClassifier:
    """The same architecture with every weight re-initialised (the model-randomisation sanity check of
    Adebayo et al. 2018): a faithful map should change when what was learned is thrown away.

    Modules re-draw their own parameters with `reset_parameters()` (BatchNorm also resets its running
    statistics); parameters that no such module owns (a ViT's CLS token and position embeddings, late
    fusion's weight logits) are re-drawn from a truncated N(0, 0.02), timm's init for them. The original
    model and the global random state are left untouched.

    The weights are drawn on the CPU from its seeded generator and then moved to the model's device, so the
    randomised model is the same whether the run was loaded on the CPU or on a GPU (whose generator would
    draw other numbers from the same seed).
    """
    device = next(model.parameters()).device
    randomized = copy.deepcopy(model).cpu()
    generator_state = torch.random.get_rng_state()
    torch.random.default_generator.manual_seed(seed)  # the CPU's only: a GPU's generator state stays as it was
    try:
        reset: set[int] = set()
        for module in randomized.modules():
            if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                module.reset_parameters()
                reset.update(id(p) for p in module.parameters(recurse=False))
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
        with torch.no_grad():
            for param in randomized.parameters():
                if id(param) not in reset:
                    nn.init.trunc_normal_(param, std=0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return randomized.to(device).eval()


# ------------------------------------------------------------------------------------------------ frames


def to_poster_frame(cam: np.ndarray | Tensor, poster_size: tuple[int, int]) -> np.ndarray:
    """A map (..., S_h, S_w) in the model-input frame -> (..., H, W) over the poster JPEG of
    `poster_size` = (width, height), bilinear (pixel centres aligned, values stay in the input's range)."""
    tensor = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    width, height = poster_size
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])  # (N, 1, S_h, S_w)
    resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)  # (N, 1, H, W)
    return resized.reshape(*lead, height, width).numpy()


def point_to_poster_frame(
    row: float, col: float, input_size: tuple[int, int], poster_size: tuple[int, int]
) -> tuple[float, float]:
    """Pixel (row, col) of the S_h x S_w model input -> (x, y) in the poster's pixel coordinates.

    Pixel centres map to pixel centres: x = (col + 0.5) * W / S_w, y = (row + 0.5) * H / S_h.
    """
    input_h, input_w = input_size
    width, height = poster_size
    return (col + 0.5) * width / input_w, (row + 0.5) * height / input_h


