"""Posters: load any image file as RGB, and the train/eval transforms that turn it into a model input.

`load_poster` is the only place that opens a poster. MM-IMDb mixes colour modes (most posters are RGB
JPEGs, some are grayscale or CMYK, a few PNG-like files carry a palette or transparency), so every mode is
converted here, once, to 8-bit RGB; a missing, corrupt or truncated file raises `PosterError` naming the
file instead of reaching a DataLoader worker as an obscure PIL traceback.

`build_image_transform` returns a torchvision.transforms.v2 pipeline. Posters are portrait (about 2:3)
and the evidence can sit anywhere on them (a title at the top, a figure at the bottom), so evaluation
keeps the whole poster and squashes it to a square, as MMBT does, rather than centre-cropping it away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from thesis_lib.errors import ThesisError


class PosterError(ThesisError, ValueError):
    """A poster file that cannot be used: missing, not an image, corrupt or truncated."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"poster {self.path}: {problem}")


class NormalizationStats(NamedTuple):
    """Per-channel mean and std (RGB, on the [0, 1] scale) used to normalise image tensors."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# The statistics every ImageNet-pretrained backbone (torchvision, timm) was trained with.
IMAGENET_STATS = NormalizationStats(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# Statistics of the MM-IMDb posters, as used by MMBT / MMF for their poster encoder.
MMIMDB_STATS = NormalizationStats(mean=(0.4678, 0.4453, 0.4066), std=(0.1222, 0.1215, 0.1438))

_WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def load_poster(path: Path | str) -> Image.Image:
    """Open a poster and return it as an 8-bit RGB image (fully decoded, file closed).

    Transparent images are composited on white (a poster is printed on paper, and black would invent
    dark regions); 16-bit grayscale is scaled down to 8 bits rather than clipped to white.
    """
    path = Path(path)
    if not path.is_file():
        raise PosterError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later inside a worker
            return _to_rgb(image)
    except Image.DecompressionBombError as error:
        raise PosterError(path, f"image too large to decode safely ({error})") from error
    except Image.UnidentifiedImageError as error:
        raise PosterError(path, "not a readable image (unknown format or corrupt header)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise PosterError(path, f"corrupt or truncated image data ({error})") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (see load_poster for the choices made)."""
    if image.mode == "RGB":
        return image.copy()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # a palette with a transparent index: treat like any alpha image
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in {"I", "F"}:
        return _high_depth_gray_to_rgb(image)
    # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's own conversions (CMYK uses Pillow's standard formula,
    # the same as every MM-IMDb loader that calls .convert("RGB")).
    return image.convert("RGB")


def _high_depth_gray_to_rgb(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit RGB by rescaling (Pillow's convert would clip)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        # Float images are either [0, 1] or [0, 255]; anything else is clipped.
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    elif image.mode in _SIXTEEN_BIT_MODES or (values.size and values.max() > 255):
        scale = 255.0 / 65535.0  # Pillow opens 16-bit PNGs as "I;16" or as 32-bit "I" holding 0..65535
    else:
        scale = 1.0
    gray = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")  # uint8 (H, W) -> mode L


@dataclass(frozen=True)
class ImageTransformConfig:
    """How posters become (3, size, size) tensors. Augmentation fields apply to training only."""

    size: int = 224                                    # output side in pixels (square, like every backbone here)
    crop_scale: tuple[float, float] = (0.7, 1.0)       # random resized crop: fraction of the poster kept (train)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)   # ... and its aspect range, relative to the squashed poster
    hflip_p: float = 0.5                               # horizontal flip probability (mirrored text is rare evidence)
    brightness: float = 0.2                            # colour jitter strengths (0 = off)
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0                                   # no hue shift: colour itself can be genre evidence
    mean: tuple[float, float, float] = IMAGENET_STATS.mean  # normalisation (see IMAGENET_STATS / MMIMDB_STATS)
    std: tuple[float, float, float] = IMAGENET_STATS.std

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be positive, got {self.size}")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not 0.0 <= self.hflip_p <= 1.0:
            raise ValueError(f"hflip_p must be a probability, got {self.hflip_p}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be three values with std > 0, got {self.mean} / {self.std}")

    @property
    def stats(self) -> NormalizationStats:
        return NormalizationStats(mean=tuple(self.mean), std=tuple(self.std))


def build_image_transform(config: ImageTransformConfig, train: bool) -> Callable[[Image.Image], torch.Tensor]:
    """An RGB PIL poster -> float32 tensor (3, size, size), normalised with config.mean/std.

    Both modes first squash the whole poster to size x size. Training then takes a random resized crop
    of that square, so the crop's aspect jitter is centred on the geometry the model sees at evaluation
    (cropping the portrait original with ratios around 1 would stretch objects differently in training
    than in evaluation), then flips and jitters colour. Evaluation is deterministic.
    """
    square = (config.size, config.size)
    steps: list[Callable] = [v2.ToImage(), v2.Resize(square, antialias=True)]  # uint8 (3, size, size)
    if train:
        steps += [
            v2.RandomResizedCrop(square, scale=config.crop_scale, ratio=config.crop_ratio, antialias=True),
            v2.RandomHorizontalFlip(p=config.hflip_p),
            v2.ColorJitter(
                brightness=config.brightness,
                contrast=config.contrast,
                saturation=config.saturation,
                hue=config.hue,
            ),
        ]
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # [0, 255] -> [0, 1]
        v2.Normalize(mean=list(config.mean), std=list(config.std)),
        v2.ToPureTensor(),  # a plain Tensor, so default collation and torch.stack see no tv_tensors subclass
    ]
    return v2.Compose(steps)


def denormalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo Normalize for figures: (..., 3, H, W) normalised -> the same shape on the [0, 1] scale.

    The exact inverse, not clamped (values stay in [0, 1] up to float error for tensors made by
    `build_image_transform`); clamp before imshow if the tensor came from elsewhere.
    """
    if tensor.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got shape {tuple(tensor.shape)}")
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)  # (3, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(3, 1, 1)  # (3, 1, 1)
    return tensor * std_t + mean_t  # (..., 3, H, W)
