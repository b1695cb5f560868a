"""Posters: every colour mode becomes RGB, bad files fail loudly, transforms keep their contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from thesis_lib.data.images import (
    IMAGENET_STATS,
    MMIMDB_STATS,
    ImageTransformConfig,
    PosterError,
    build_image_transform,
    denormalize,
    load_poster,
)

POSTER_SIZE = (60, 90)  # (width, height): portrait, like real posters


def _random_rgb(seed: int = 0, size=POSTER_SIZE) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _flat(mode: str, colour, size=POSTER_SIZE) -> Image.Image:
    return Image.new(mode, size, colour)


# --- load_poster: colour modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "colour", "suffix", "expected_rgb"),
    [
        ("RGB", (10, 200, 30), ".png", (10, 200, 30)),
        ("L", 100, ".png", (100, 100, 100)),
        ("1", 1, ".png", (255, 255, 255)),
        ("RGBA", (10, 20, 30, 0), ".png", (255, 255, 255)),  # fully transparent -> the white "paper"
        ("RGBA", (10, 20, 30, 255), ".png", (10, 20, 30)),   # opaque -> unchanged
        ("LA", (0, 128), ".png", (127, 127, 127)),           # half-transparent black on white
        ("I;16", 65535, ".png", (255, 255, 255)),            # 16-bit white stays white ...
        ("I;16", 32896, ".png", (128, 128, 128)),            # ... and mid-gray is scaled, not clipped to 255
    ],
)
def test_every_mode_becomes_rgb_with_the_right_colour(tmp_path, mode, colour, suffix, expected_rgb):
    path = tmp_path / f"poster{suffix}"
    _flat(mode, colour).save(path)
    poster = load_poster(path)
    assert poster.mode == "RGB"
    assert poster.size == POSTER_SIZE
    assert np.abs(np.asarray(poster).astype(int) - expected_rgb).max() <= 1


def test_cmyk_jpeg_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpeg"
    _flat("CMYK", (255, 0, 0, 0)).save(path)  # pure cyan
    assert Image.open(path).mode == "CMYK"
    pixels = np.asarray(load_poster(path)).astype(int)
    assert np.abs(pixels - (0, 255, 255)).max() <= 3  # JPEG is lossy


def test_palette_images_with_and_without_transparency(tmp_path):
    opaque = _random_rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    opaque.save(tmp_path / "opaque.png")
    expected = np.asarray(opaque.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_poster(tmp_path / "opaque.png")), expected)

    transparent = Image.new("P", POSTER_SIZE, 0)
    transparent.putpalette([0, 0, 0] * 256)
    transparent.save(tmp_path / "transparent.png", transparency=0)  # palette index 0 is see-through
    assert (np.asarray(load_poster(tmp_path / "transparent.png")) == 255).all()


def test_grayscale_jpeg_keeps_its_content(tmp_path):
    gray = _random_rgb().convert("L")
    gray.save(tmp_path / "gray.jpeg", quality=95)
    poster = np.asarray(load_poster(tmp_path / "gray.jpeg")).astype(int)
    assert (poster[..., 0] == poster[..., 1]).all() and (poster[..., 1] == poster[..., 2]).all()
    assert np.abs(poster[..., 0] - np.asarray(gray).astype(int)).mean() < 10


# --- load_poster: bad files ------------------------------------------------------------------------


def _truncated_jpeg(path):
    _random_rgb().save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda path: None, "not found"),
        (lambda path: path.write_bytes(b""), "not a readable image"),
        (lambda path: path.write_bytes(b"definitely not a jpeg" * 50), "not a readable image"),
        (_truncated_jpeg, "truncated"),
        (lambda path: path.mkdir(), "not a regular file"),
    ],
    ids=["missing", "empty", "garbage", "truncated", "directory"],
)
def test_bad_posters_raise_a_poster_error_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "0123456.jpeg"
    make(path)
    with pytest.raises(PosterError, match=problem) as caught:
        load_poster(path)
    assert "0123456.jpeg" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert caught.value.path == path


# --- transforms ------------------------------------------------------------------------------------


def test_both_modes_return_normalised_float_tensors_of_the_configured_size():
    poster = _random_rgb()
    for train in (False, True):
        for size in (224, 64):
            image = build_image_transform(ImageTransformConfig(size=size), train)(poster)
            assert type(image) is torch.Tensor  # a plain tensor, not a tv_tensors subclass
            assert image.shape == (3, size, size)
            assert image.dtype == torch.float32
            restored = denormalize(image, *IMAGENET_STATS)
            assert restored.min() >= -1e-5 and restored.max() <= 1 + 1e-5


@pytest.mark.parametrize("stats", [IMAGENET_STATS, MMIMDB_STATS], ids=["imagenet", "mmimdb"])
def test_normalisation_uses_the_configured_statistics(stats):
    colour = (40, 120, 220)
    config = ImageTransformConfig(size=32, mean=stats.mean, std=stats.std)
    image = build_image_transform(config, train=False)(_flat("RGB", colour))
    expected = (torch.tensor(colour) / 255 - torch.tensor(stats.mean)) / torch.tensor(stats.std)  # (3,)
    torch.testing.assert_close(image.mean(dim=(1, 2)), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(denormalize(image, *stats), torch.tensor(colour).view(3, 1, 1).expand(3, 32, 32) / 255)


def test_eval_keeps_the_whole_poster_squashed_not_cropped():
    # Red band on the top tenth, blue band on the bottom tenth: a centre crop would lose both.
    pixels = np.full((200, 100, 3), 128, dtype=np.uint8)
    pixels[:20] = (255, 0, 0)
    pixels[-20:] = (0, 0, 255)
    image = build_image_transform(ImageTransformConfig(size=50), train=False)(Image.fromarray(pixels))
    restored = denormalize(image, *IMAGENET_STATS)  # (3, 50, 50)
    torch.testing.assert_close(restored[:, 1, 25], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(restored[:, -2, 25], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3, rtol=0)


def test_eval_is_deterministic_and_train_is_random_but_seeded():
    poster = _random_rgb()
    config = ImageTransformConfig(size=64)
    evaluate, train = build_image_transform(config, train=False), build_image_transform(config, train=True)
    torch.testing.assert_close(evaluate(poster), evaluate(poster), atol=0, rtol=0)

    torch.manual_seed(3)
    first = train(poster)
    torch.manual_seed(3)
    torch.testing.assert_close(train(poster), first, atol=0, rtol=0)
    draws = [train(poster) for _ in range(3)]
    assert all(not torch.equal(draw, first) for draw in draws)
    assert not torch.equal(first, evaluate(poster))


def test_train_without_crop_or_jitter_is_the_eval_image_flipped():
    poster = _random_rgb()
    no_randomness_but_flip = ImageTransformConfig(
        size=64, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=1.0, brightness=0, contrast=0, saturation=0
    )
    flipped = build_image_transform(no_randomness_but_flip, train=True)(poster)
    reference = build_image_transform(no_randomness_but_flip, train=False)(poster)
    torch.testing.assert_close(flipped, reference.flip(-1), atol=1e-6, rtol=0)


def test_denormalize_handles_batches():
    batch = torch.zeros(2, 3, 4, 4)  # (B, 3, H, W) at the mean
    restored = denormalize(batch, *MMIMDB_STATS)
    assert restored.shape == (2, 3, 4, 4)
    torch.testing.assert_close(restored[1, :, 0, 0], torch.tensor(MMIMDB_STATS.mean))


@pytest.mark.parametrize(
    "bad", [dict(crop_scale=(0.9, 0.5)), dict(crop_scale=(0.0, 1.0)), dict(hflip_p=1.5), dict(std=(0.2, 0.0, 0.2)),
            dict(size=0)]
)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        ImageTransformConfig(**bad)
