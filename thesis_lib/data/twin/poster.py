"""Poster drawing for the synthetic twin (PIL only, offline, deterministic).

A poster is a palette gradient with scenery (sun or moon, hills, stars), a row of cast names on top,
the title in a band at the bottom, and the planned objects in a 3x3 grid (3x4 when crowded) inside the
evidence zone (ZONE_X x ZONE_Y), which random resized crops (scale >= 0.7) mostly keep: no evidence
sits in the corners, the title band or the top strip.
Objects keep one colour per kind (props excepted: their colour and glow are the alignment evidence),
are drawn mirrored at random (nothing depends on left/right) and cover about 3-7% of the poster each.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from thesis_lib.data.twin.evidence import PlannedObject
from thesis_lib.data.twin.rules import NOIR_PALETTE

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1/y1 exclusive

# Palette name -> (top colour, bottom colour) of the background gradient. No gradient comes within an L1
# distance of ~95 of a prop colour, so a prop's colour never melts into the background.
PALETTE_COLORS: dict[str, tuple[RGB, RGB]] = {
    "noir": ((18, 18, 18), (120, 120, 120)),
    "sunset": ((250, 140, 90), (95, 40, 120)),
    "ocean": ((30, 130, 170), (10, 30, 75)),
    "sage": ((150, 170, 125), (50, 60, 40)),
    "dusk": ((130, 70, 150), (30, 20, 65)),
    "desert": ((225, 200, 165), (150, 95, 60)),
    "plum": ((120, 50, 100), (40, 15, 35)),
    "teal": ((70, 160, 165), (20, 60, 70)),
    "peach": ((245, 200, 180), (160, 100, 90)),
    "midnight": ((45, 45, 110), (10, 10, 40)),
    "rose": ((240, 160, 180), (120, 50, 80)),
}
PROP_RGB: dict[str, RGB] = {"red": (205, 35, 35), "blue": (35, 75, 205), "green": (40, 160, 70), "yellow": (240, 205, 40)}
GLOW_RGB: RGB = (190, 255, 255)
OUTLINE_RGB: RGB = (25, 25, 30)
DARK_PALETTES = {"noir", "ocean", "dusk", "midnight", "plum"}
# Object kinds drawn wider than tall / taller than wide (height or width factor of the cell).
# The evidence zone, as fractions of (width, height): clear of the corners, the cast names on top and the
# title band below. Posters are squashed to a square before cropping (data/images.py), so the whole
# height is seen at evaluation; random resized crops (scale >= 0.7) cut at most a part of a border cell.
ZONE_X = (0.07, 0.93)
ZONE_Y = (0.12, 0.86)
WIDE_KINDS = {"car": 0.62, "tank": 0.7, "knife": 0.42, "suitcase": 0.85}
TALL_KINDS = {"person": 0.6, "tree": 0.75, "cactus": 0.7, "rocket": 0.5, "guitar": 0.5, "lamp": 0.65, "hat": 0.8}


class _Frame:
    """Maps unit coordinates (u, v) in [0, 1]^2 to pixels of one object box, optionally mirrored."""

    def __init__(self, box: Box, mirror: bool) -> None:
        self.x0, self.y0, self.x1, self.y1 = box
        self.mirror = mirror

    def pt(self, u: float, v: float) -> tuple[float, float]:
        u = 1.0 - u if self.mirror else u
        return (self.x0 + u * (self.x1 - 1 - self.x0), self.y0 + v * (self.y1 - 1 - self.y0))

    def rect(self, u0: float, v0: float, u1: float, v1: float) -> list[float]:
        (xa, ya), (xb, yb) = self.pt(u0, v0), self.pt(u1, v1)
        return [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]

    def poly(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.pt(u, v) for u, v in points]

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def _draw_person(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    edge = (95, 95, 105)
    d.ellipse(f.rect(0.3, 0.0, 0.7, 0.3), fill=rgb, outline=edge)
    d.rounded_rectangle(f.rect(0.1, 0.32, 0.9, 1.0), radius=f.width * 0.25, fill=rgb, outline=edge)


def _draw_tree(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rectangle(f.rect(0.42, 0.6, 0.58, 1.0), fill=(100, 70, 40), outline=OUTLINE_RGB)
    d.ellipse(f.rect(0.05, 0.0, 0.95, 0.72), fill=rgb, outline=OUTLINE_RGB)


def _draw_ghost(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.ellipse(f.rect(0.1, 0.0, 0.9, 0.7), fill=rgb)
    d.rectangle(f.rect(0.1, 0.35, 0.9, 0.86), fill=rgb)
    waves = [(0.1, 0.86)] + [(0.1 + 0.8 * k / 8, 1.0 if k % 2 else 0.86) for k in range(1, 9)]
    d.polygon(f.poly(waves), fill=rgb)
    for u in (0.3, 0.58):
        d.ellipse(f.rect(u, 0.22, u + 0.13, 0.42), fill=(15, 15, 20))
    d.ellipse(f.rect(0.42, 0.5, 0.58, 0.64), fill=(15, 15, 20))


def _draw_cactus(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    radius = f.width * 0.12
    for part in ((0.36, 0.02, 0.64, 1.0), (0.06, 0.2, 0.26, 0.6), (0.74, 0.1, 0.94, 0.5)):
        d.rounded_rectangle(f.rect(*part), radius=radius, fill=rgb, outline=OUTLINE_RGB)
    d.rectangle(f.rect(0.1, 0.48, 0.4, 0.6), fill=rgb)
    d.rectangle(f.rect(0.6, 0.38, 0.9, 0.5), fill=rgb)
    d.line([f.pt(0.5, 0.1), f.pt(0.5, 0.95)], fill=(25, 100, 40), width=2)


def _draw_tank(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rectangle(f.rect(0.62, 0.28, 1.0, 0.4), fill=rgb, outline=OUTLINE_RGB)  # barrel
    d.rounded_rectangle(f.rect(0.0, 0.62, 1.0, 1.0), radius=f.width * 0.1, fill=(50, 50, 45))  # tracks
    for k in range(5):
        u = 0.08 + 0.19 * k
        d.ellipse(f.rect(u, 0.7, u + 0.14, 0.94), fill=(110, 110, 100))
    d.rectangle(f.rect(0.06, 0.45, 0.94, 0.66), fill=rgb, outline=OUTLINE_RGB)  # hull
    d.rounded_rectangle(f.rect(0.28, 0.18, 0.68, 0.5), radius=f.width * 0.06, fill=rgb, outline=OUTLINE_RGB)


def _draw_rocket(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.polygon(f.poly([(0.35, 0.8), (0.5, 1.0), (0.65, 0.8)]), fill=(255, 170, 40))  # flame
    fins = (70, 90, 160)
    d.polygon(f.poly([(0.3, 0.5), (0.02, 0.85), (0.3, 0.8)]), fill=fins, outline=OUTLINE_RGB)
    d.polygon(f.poly([(0.7, 0.5), (0.98, 0.85), (0.7, 0.8)]), fill=fins, outline=OUTLINE_RGB)
    d.polygon(f.poly([(0.5, 0.0), (0.72, 0.25), (0.72, 0.82), (0.28, 0.82), (0.28, 0.25)]), fill=rgb, outline=OUTLINE_RGB)
    d.ellipse(f.rect(0.38, 0.3, 0.62, 0.45), fill=(40, 60, 110), outline=OUTLINE_RGB)


def _draw_rainbow(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    bands = ((230, 40, 40), (245, 140, 30), (245, 225, 50), (60, 180, 70), (50, 110, 220), (130, 60, 190))
    band = max(2, round(f.width * 0.075))
    x0, y0, x1, y1 = f.x0, f.y0 + (f.y1 - f.y0) * 0.1, f.x1 - 1, f.y1 - 1 + (f.y1 - f.y0) * 0.9
    for k, color in enumerate(bands):
        inset = k * band
        d.arc([x0 + inset, y0 + inset, x1 - inset, y1 - inset], start=180, end=360, fill=color, width=band)


def _draw_explosion(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    phase = rng.uniform(0, np.pi / 6)
    for outer, inner, color in ((0.5, 0.3, rgb), (0.3, 0.16, (255, 225, 70))):
        angles = phase + np.arange(24) * np.pi / 12
        radii = np.where(np.arange(24) % 2 == 0, outer, inner)
        points = [(0.5 + r * np.cos(a), 0.5 + r * np.sin(a)) for r, a in zip(radii, angles, strict=False)]
        d.polygon(f.poly(points), fill=color, outline=OUTLINE_RGB if color == rgb else None)


def _draw_heart(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.ellipse(f.rect(0.04, 0.06, 0.54, 0.56), fill=rgb, outline=OUTLINE_RGB, width=2)
    d.ellipse(f.rect(0.46, 0.06, 0.96, 0.56), fill=rgb, outline=OUTLINE_RGB, width=2)
    d.polygon(f.poly([(0.06, 0.4), (0.94, 0.4), (0.5, 0.97)]), fill=rgb, outline=OUTLINE_RGB, width=2)
    d.ellipse(f.rect(0.06, 0.08, 0.52, 0.54), fill=rgb)  # cover the outlines inside the heart
    d.ellipse(f.rect(0.48, 0.08, 0.94, 0.54), fill=rgb)
    d.polygon(f.poly([(0.1, 0.42), (0.9, 0.42), (0.5, 0.93)]), fill=rgb)
    d.ellipse(f.rect(0.16, 0.16, 0.3, 0.3), fill=(250, 190, 215))  # highlight


def _draw_guitar(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rectangle(f.rect(0.44, 0.0, 0.56, 0.5), fill=(80, 50, 25), outline=OUTLINE_RGB)  # neck
    d.rectangle(f.rect(0.38, 0.0, 0.62, 0.08), fill=(50, 30, 15))  # head
    d.ellipse(f.rect(0.08, 0.48, 0.92, 1.0), fill=rgb, outline=OUTLINE_RGB)
    d.ellipse(f.rect(0.18, 0.3, 0.82, 0.7), fill=rgb, outline=OUTLINE_RGB)
    d.ellipse(f.rect(0.38, 0.55, 0.62, 0.7), fill=(40, 25, 10))  # sound hole


def _draw_ball(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.ellipse(f.rect(0.0, 0.0, 1.0, 1.0), fill=rgb, outline=OUTLINE_RGB, width=2)
    d.line([f.pt(0.5, 0.0), f.pt(0.5, 1.0)], fill=OUTLINE_RGB, width=2)
    d.line([f.pt(0.0, 0.5), f.pt(1.0, 0.5)], fill=OUTLINE_RGB, width=2)
    d.arc(f.rect(-0.7, 0.0, 0.3, 1.0), start=-45, end=45, fill=OUTLINE_RGB, width=2)
    d.arc(f.rect(0.7, 0.0, 1.7, 1.0), start=135, end=225, fill=OUTLINE_RGB, width=2)


def _draw_knife(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.polygon(f.poly([(0.0, 0.55), (0.18, 0.22), (0.6, 0.2), (0.6, 0.72), (0.18, 0.72)]), fill=rgb, outline=OUTLINE_RGB)
    d.rectangle(f.rect(0.57, 0.05, 0.65, 0.95), fill=(90, 90, 95), outline=OUTLINE_RGB)  # guard
    d.rounded_rectangle(f.rect(0.65, 0.22, 1.0, 0.72), radius=3, fill=(30, 22, 20), outline=(80, 70, 60))


def _draw_castle(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    dark = (45, 40, 50)
    for u0, u1 in ((0.0, 0.26), (0.74, 1.0)):  # towers with battlements
        d.rectangle(f.rect(u0, 0.18, u1, 1.0), fill=rgb, outline=OUTLINE_RGB)
        for k in range(3):
            left = u0 + k * (u1 - u0) / 2.5
            d.rectangle(f.rect(left, 0.06, left + (u1 - u0) / 5, 0.18), fill=rgb, outline=OUTLINE_RGB)
        d.rectangle(f.rect(u0 + 0.09, 0.35, u1 - 0.09, 0.5), fill=dark)
    d.rectangle(f.rect(0.24, 0.4, 0.76, 1.0), fill=rgb, outline=OUTLINE_RGB)
    for k in range(4):
        left = 0.26 + k * 0.135
        d.rectangle(f.rect(left, 0.3, left + 0.07, 0.4), fill=rgb, outline=OUTLINE_RGB)
    d.chord(f.rect(0.4, 0.62, 0.6, 0.9), start=180, end=360, fill=dark)
    d.rectangle(f.rect(0.4, 0.76, 0.6, 1.0), fill=dark)


def _draw_car(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.polygon(f.poly([(0.2, 0.46), (0.32, 0.08), (0.7, 0.08), (0.82, 0.46)]), fill=rgb, outline=OUTLINE_RGB)
    d.polygon(f.poly([(0.28, 0.44), (0.36, 0.16), (0.49, 0.16), (0.49, 0.44)]), fill=(175, 205, 225))
    d.polygon(f.poly([(0.53, 0.44), (0.53, 0.16), (0.66, 0.16), (0.75, 0.44)]), fill=(175, 205, 225))
    d.rounded_rectangle(f.rect(0.0, 0.4, 1.0, 0.8), radius=f.width * 0.06, fill=rgb, outline=OUTLINE_RGB)
    for u in (0.1, 0.66):
        d.ellipse(f.rect(u, 0.6, u + 0.24, 1.0), fill=(20, 20, 20))
        d.ellipse(f.rect(u + 0.07, 0.72, u + 0.17, 0.88), fill=(150, 150, 150))


def _draw_suitcase(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rounded_rectangle(f.rect(0.33, 0.0, 0.67, 0.3), radius=f.width * 0.06, outline=OUTLINE_RGB, width=3)
    d.rounded_rectangle(f.rect(0.02, 0.2, 0.98, 1.0), radius=f.width * 0.08, fill=rgb, outline=OUTLINE_RGB, width=2)
    for u in (0.25, 0.75):
        d.rectangle(f.rect(u - 0.03, 0.2, u + 0.03, 1.0), fill=(70, 50, 35))


def _draw_lamp(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rectangle(f.rect(0.45, 0.45, 0.55, 0.9), fill=(70, 70, 75))
    d.polygon(f.poly([(0.22, 0.02), (0.78, 0.02), (0.98, 0.5), (0.02, 0.5)]), fill=rgb, outline=OUTLINE_RGB)
    d.ellipse(f.rect(0.15, 0.84, 0.85, 1.0), fill=rgb, outline=OUTLINE_RGB)


def _draw_umbrella(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.line([f.pt(0.5, 0.4), f.pt(0.5, 0.86)], fill=(50, 40, 35), width=3)
    d.arc(f.rect(0.5, 0.76, 0.7, 0.98), start=0, end=180, fill=(50, 40, 35), width=3)  # hook
    d.pieslice(f.rect(0.0, 0.02, 1.0, 0.9), start=180, end=360, fill=rgb, outline=OUTLINE_RGB)
    for k in range(4):
        left = k * 0.25
        d.chord(f.rect(left, 0.38, left + 0.25, 0.52), start=180, end=360, fill=None, outline=OUTLINE_RGB)


def _draw_hat(d: ImageDraw.ImageDraw, f: _Frame, rgb: RGB, rng: np.random.Generator) -> None:
    d.rectangle(f.rect(0.22, 0.0, 0.78, 0.82), fill=rgb, outline=OUTLINE_RGB, width=2)
    d.rectangle(f.rect(0.22, 0.58, 0.78, 0.7), fill=(30, 25, 25))  # band
    d.ellipse(f.rect(0.0, 0.74, 1.0, 1.0), fill=rgb, outline=OUTLINE_RGB, width=2)


DRAWERS: dict[str, Callable[[ImageDraw.ImageDraw, _Frame, RGB, np.random.Generator], None]] = {
    "person": _draw_person, "tree": _draw_tree, "ghost": _draw_ghost, "cactus": _draw_cactus, "tank": _draw_tank,
    "rocket": _draw_rocket, "rainbow": _draw_rainbow, "explosion": _draw_explosion, "heart": _draw_heart,
    "guitar": _draw_guitar, "ball": _draw_ball, "knife": _draw_knife, "castle": _draw_castle, "car": _draw_car,
    "suitcase": _draw_suitcase, "lamp": _draw_lamp, "umbrella": _draw_umbrella, "hat": _draw_hat,
}
# One colour per fixed kind (the colour names in rules.FIXED_OBJECT_COLORS describe these).
FIXED_RGB: dict[str, RGB] = {
    "person": (30, 30, 40), "tree": (35, 110, 45), "ghost": (240, 240, 245), "cactus": (60, 160, 70),
    "tank": (95, 110, 50), "rocket": (215, 215, 225), "rainbow": (0, 0, 0), "explosion": (245, 130, 30),
    "heart": (235, 80, 150), "guitar": (160, 90, 40), "ball": (230, 115, 35), "knife": (205, 205, 215),
    "castle": (140, 140, 150),
}


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def evidence_grid(size: tuple[int, int], n_objects: int) -> list[Box]:
    """Grid cells of the evidence zone: 3 columns x 3 rows, or 4 rows when more than 9 objects."""
    width, height = size
    rows = 3 if n_objects <= 9 else 4
    left, right = (round(fraction * width) for fraction in ZONE_X)
    top, bottom = (round(fraction * height) for fraction in ZONE_Y)
    cell_w, cell_h = (right - left) / 3, (bottom - top) / rows
    return [(round(left + c * cell_w), round(top + r * cell_h), round(left + (c + 1) * cell_w), round(top + (r + 1) * cell_h))
            for r in range(rows) for c in range(3)]


def _object_box(cell: Box, label: str, rng: np.random.Generator) -> Box:
    """A box for one object inside its grid cell: 80-95% of the cell, shaped by kind, jittered."""
    cx0, cy0, cx1, cy1 = cell
    cell_w, cell_h = cx1 - cx0, cy1 - cy0
    base = min(cell_w, cell_h) * rng.uniform(0.8, 0.95)
    width = height = base
    if label in WIDE_KINDS:
        width = min(base * 1.15, cell_w - 2)
        height = width * WIDE_KINDS[label]
    elif label in TALL_KINDS:
        height = min(base * 1.3, cell_h - 2)
        width = height * TALL_KINDS[label]
    width, height = int(round(width)), int(round(height))
    x0 = cx0 + int(rng.integers(0, max(1, cell_w - width + 1)))
    y0 = cy0 + int(rng.integers(0, max(1, cell_h - height + 1)))
    return (x0, y0, x0 + width, y0 + height)


def _jitter(rgb: RGB, rng: np.random.Generator, amount: int) -> RGB:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _background(size: tuple[int, int], palette: str, rng: np.random.Generator) -> Image.Image:
    width, height = size
    top, bottom = PALETTE_COLORS[palette]
    if palette == NOIR_PALETTE:  # stay exactly grey: the absence of colour is the evidence
        shift = int(rng.integers(-10, 11))
        top, bottom = (tuple(int(np.clip(c + shift, 0, 255)) for c in color) for color in (top, bottom))
    else:
        top, bottom = _jitter(top, rng, 12), _jitter(bottom, rng, 12)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]  # (H, 1, 1)
    pixels = (1 - ramp) * np.array(top) + ramp * np.array(bottom)  # (H, 1, 3)
    pixels = np.broadcast_to(pixels, (height, width, 3))  # (H, W, 3)
    return Image.fromarray(np.ascontiguousarray(pixels.round().astype(np.uint8)), "RGB")


def _scenery(draw: ImageDraw.ImageDraw, size: tuple[int, int], palette: str, rng: np.random.Generator) -> None:
    """Decoration that carries no evidence: stars, a sun or moon, hills, the dark title band."""
    width, height = size
    top, bottom = PALETTE_COLORS[palette]
    if palette in DARK_PALETTES:
        for _ in range(int(rng.integers(10, 40))):
            x, y = rng.integers(0, width), rng.integers(0, height // 2)
            draw.point((int(x), int(y)), fill=(230, 230, 230))
    if rng.random() < 0.6:
        radius = int(rng.integers(width // 8, width // 5))
        cx, cy = int(rng.integers(radius, width - radius)), int(rng.integers(radius // 2, height // 4))
        glow = tuple(int(c + 0.35 * (255 - c)) for c in top)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=glow)
    hill_color = tuple(int(c * 0.7) for c in bottom)
    base = height - width // 4
    xs = np.linspace(0, width, 7)
    ys = base - rng.integers(0, width // 6, size=7)
    draw.polygon([(0, height)] + [(float(x), float(y)) for x, y in zip(xs, ys, strict=False)] + [(width, height)], fill=hill_color)
    band_top = round(ZONE_Y[1] * height) + 2
    draw.rectangle([0, band_top, width, height], fill=tuple(int(c * 0.35) for c in bottom))


def _poster_text(text: str) -> str:
    """Upper-case ASCII for the poster (the bundled font lacks glyphs such as Ø); the JSON keeps the original."""
    folded = unicodedata.normalize("NFKD", text.replace("ø", "o").replace("Ø", "O").replace("ß", "ss"))
    return "".join(char for char in folded if char.isascii()).upper()


def _text_line(draw: ImageDraw.ImageDraw, text: str, center: tuple[float, float], max_width: int, size: int,
               fill: RGB, stroke: int) -> None:
    while size > 8 and draw.textlength(text, font=_font(size)) > max_width:
        size -= 1
    draw.text(center, text, font=_font(size), fill=fill, anchor="mm", stroke_width=stroke, stroke_fill=(10, 10, 10))


def _title(draw: ImageDraw.ImageDraw, size: tuple[int, int], title: str, cast: Sequence[str], director: str,
           rng: np.random.Generator) -> None:
    width, height = size
    band_top = round(ZONE_Y[1] * height) + 2
    words = _poster_text(title).split()
    lines = [" ".join(words)]
    if len(words) > 2 and draw.textlength(lines[0], font=_font(22)) > width - 16:
        half = (len(words) + 1) // 2
        lines = [" ".join(words[:half]), " ".join(words[half:])]
    color = (255, 255, 255) if rng.random() < 0.6 else (250, 215, 120)
    line_height = (height - band_top - 14) / len(lines)
    font_size = 22 if len(lines) == 1 else 15
    for k, line in enumerate(lines):
        _text_line(draw, line, (width / 2, band_top + line_height * (k + 0.5)), width - 16, font_size, color, 1)
    _text_line(draw, "   ".join(_poster_text(name) for name in cast), (width / 2, 12), width - 12, 10, (235, 235, 235), 0)
    _text_line(draw, "A FILM BY " + _poster_text(director), (width / 2, height - 7), width - 20, 8, (170, 170, 170), 0)


def render_poster(objects: Sequence[PlannedObject], palette: str, title: str, cast: Sequence[str], director: str,
                  size: tuple[int, int], rng: np.random.Generator) -> tuple[Image.Image, list[Box]]:
    """Draw one poster; returns the RGB image and each object's box (x0, y0, x1, y1), in `objects` order."""
    image = _background(size, palette, rng)
    draw = ImageDraw.Draw(image)
    _scenery(draw, size, palette, rng)
    cells = evidence_grid(size, len(objects))
    if len(objects) > len(cells):
        raise ValueError(f"{len(objects)} objects do not fit the {len(cells)} poster slots")
    slots = rng.choice(len(cells), size=len(objects), replace=False)
    boxes: list[Box] = []
    for planned, slot in zip(objects, slots, strict=False):
        box = _object_box(cells[int(slot)], planned.label, rng)
        boxes.append(box)
        mirror = bool(rng.random() < 0.5)
        if planned.role == "prop":
            rgb = _jitter(PROP_RGB[planned.color], rng, 8)
            if planned.glow:
                ring = max(3, round(0.07 * (box[2] - box[0])))
                draw.ellipse([box[0], box[1], box[2] - 1, box[3] - 1], outline=GLOW_RGB, width=ring)
            # Every prop leaves room for the ring, so its size does not tell whether it glows.
            inset_x, inset_y = round(0.12 * (box[2] - box[0])), round(0.12 * (box[3] - box[1]))
            inner = (box[0] + inset_x, box[1] + inset_y, box[2] - inset_x, box[3] - inset_y)
            DRAWERS[planned.label](draw, _Frame(inner, mirror), rgb, rng)
        else:
            rgb = _jitter(FIXED_RGB[planned.label], rng, 8)
            DRAWERS[planned.label](draw, _Frame(box, mirror), rgb, rng)
    _title(draw, size, title, cast, director, rng)
    return image, boxes
