"""Placeholder art drawn in code: the demo's cosy room, lighting, host character, TV bezel and
TV clip (Pillow + numpy, the bundled ffmpeg). The package ships no binary art; ``avatarrender new``
and ``examples/demo/make_assets.py`` draw from here.

Geometry (frame pixels, 1920x1080):

- TV screen ``[96, 160, 768, 432]``; bezel overlay at ``[56, 120]`` (its hole is at (40, 40) in it).
- Character canvas 600x700 at ``[1240, 380]``; mouth sprites 140x90 at ``MOUTH_OFFSET`` and eye
  sprites 220x90 at ``EYES_OFFSET`` on that canvas.
- The clip carries its frame index in pixels: see :func:`clip_frame_index`.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "FRAME_SIZE",
    "SCREEN_RECT",
    "BEZEL_POSITION",
    "BEZEL_SIZE",
    "CHARACTER_POSITION",
    "CHARACTER_SIZE",
    "MOUTH_OFFSET",
    "MOUTH_SIZE",
    "EYES_OFFSET",
    "EYES_SIZE",
    "MOUTH_SHAPES",
    "EYE_STATES",
    "LAMP_CENTER",
    "LAMP_LAYER_SIZE",
    "LAMP_LAYER_POSITION",
    "CLIP_SIZE",
    "CLIP_FPS",
    "CLIP_DURATION_S",
    "make_room",
    "make_lighting",
    "make_character",
    "make_bezel",
    "make_clip",
    "clip_frame_index",
]

FRAME_SIZE = (1920, 1080)
SCREEN_RECT = (96, 160, 768, 432)  # x, y, w, h of the TV screen in the frame
BEZEL_POSITION = (56, 120)
BEZEL_SIZE = (848, 560)
CHARACTER_POSITION = (1240, 380)
CHARACTER_SIZE = (600, 700)
MOUTH_OFFSET = (230, 352)
MOUTH_SIZE = (140, 90)
EYES_OFFSET = (190, 240)
EYES_SIZE = (220, 90)
MOUTH_SHAPES = ("X", "A", "B", "C", "D", "E", "F", "G", "H")
EYE_STATES = ("open", "half", "closed")
WINDOW_RECT = (950, 110, 1150, 540)  # x0, y0, x1, y1 of the glass
LAMP_CENTER = (1250, 330)  # centre of the floor lamp's shade in the frame
LAMP_LAYER_SIZE = (900, 800)
LAMP_LAYER_POSITION = (800, 0)  # the glow layer must lie inside the frame

CLIP_SIZE = (640, 360)
CLIP_FPS = 30
CLIP_DURATION_S = 12.0
CLIP_CODE_BITS = 9  # 2**9 = 512 > 360 frames
CLIP_CODE_CELL = (64, 28)  # width, height of one code cell in clip pixels, on the clip's bottom row


SS = 2  # supersampling factor: draw at 2x, downsample with LANCZOS

SKIN = (246, 205, 172)
SKIN_SHADE = (226, 178, 146)
HAIR = (92, 58, 44)
HAIR_LIGHT = (122, 80, 60)
SWEATER = (58, 132, 128)
SWEATER_DARK = (44, 104, 102)
OUTLINE = (70, 44, 38)
LIP = (196, 96, 100)
MOUTH_IN = (86, 30, 40)
TEETH = (252, 250, 244)
TONGUE = (232, 116, 122)


# ---------------------------------------------------------------------------------------------
# drawing helpers


def _canvas(size: tuple[int, int], color=(0, 0, 0, 0)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """An RGBA canvas at SS times ``size`` and a drawer on it."""
    img = Image.new("RGBA", (size[0] * SS, size[1] * SS), color)
    return img, ImageDraw.Draw(img)


def _s(*values: float) -> list[int]:
    """Scale 1x coordinates to the supersampled canvas."""
    return [int(round(v * SS)) for v in values]


def _down(img: Image.Image) -> Image.Image:
    """Supersampled canvas to final size (LANCZOS), premultiplied so edges do not darken."""
    w, h = img.width // SS, img.height // SS
    pm = img.convert("RGBa").resize((w, h), Image.LANCZOS)
    return pm.convert("RGBA")


def _vgradient(size: tuple[int, int], top, bottom) -> np.ndarray:
    """Vertical gradient, shape (h, w, len(top)) uint8, ``top`` colour at row 0."""
    w, h = size
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    a, b = np.asarray(top, float), np.asarray(bottom, float)
    return np.broadcast_to(a + (b - a) * t, (h, w, len(top))).round().astype(np.uint8)


def _radial(
    size: tuple[int, int], center: tuple[float, float], radius: float, *, power: float = 2.0
) -> np.ndarray:
    """Radial falloff, shape (h, w) float in [0, 1]: 1 at ``center``, 0 at ``radius`` px and beyond."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xx - center[0], yy - center[1]) / radius
    return np.clip(1.0 - d, 0.0, 1.0) ** power


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """Image from rgb (h, w, 3) and alpha (h, w) in [0, 1]."""
    a = (np.clip(alpha, 0, 1) * 255).round().astype(np.uint8)[..., None]
    return Image.fromarray(np.concatenate([np.asarray(rgb, np.uint8), a], axis=2), "RGBA")


# ---------------------------------------------------------------------------------------------
# room and lighting


def make_room(path: Path) -> None:
    """The room background: 1920x1080 RGB, wall, window, shelf, lamp, sofa, TV cabinet, floor."""
    W, H = FRAME_SIZE
    floor_y = 820
    bg = np.zeros((H * SS, W * SS, 3), np.uint8)
    bg[:] = _vgradient((W * SS, H * SS), (236, 214, 190), (214, 186, 160))  # warm wall
    fy = floor_y * SS
    bg[fy:] = _vgradient((W * SS, H * SS - fy), (168, 112, 76), (120, 76, 52))  # wooden floor
    img = Image.fromarray(bg, "RGB").convert("RGBA")
    d = ImageDraw.Draw(img)

    # wallpaper: faint vertical stripes above the wainscot
    for x in range(0, W, 64):
        d.rectangle(_s(x + 28, 0, x + 36, 620), fill=(226, 202, 178))
    # wainscot panel and chair rail
    d.rectangle(_s(0, 620, W, floor_y), fill=(200, 172, 146))
    for x in range(20, W, 190):
        d.rounded_rectangle(
            _s(x, 648, x + 160, floor_y - 24), radius=6 * SS, outline=(184, 156, 130), width=3 * SS
        )
    d.rectangle(_s(0, 612, W, 626), fill=(178, 146, 118))
    d.rectangle(_s(0, floor_y - 10, W, floor_y + 4), fill=(150, 112, 84))  # skirting board
    # floor planks
    for y, step in ((floor_y + 40, 0), (floor_y + 100, 1), (floor_y + 175, 0), (floor_y + 260, 1)):
        d.line(_s(0, y, W, y), fill=(140, 92, 62), width=2 * SS)
    for i, x in enumerate(range(-60, W, 240)):
        off = (i % 2) * 120
        d.line(_s(x + off, floor_y + 4, x + off - 30, H), fill=(146, 98, 66), width=2 * SS)
    # rug under the sofa
    d.ellipse(_s(1000, 930, 1960, 1120), fill=(178, 86, 80))
    d.ellipse(_s(1040, 950, 1920, 1100), outline=(226, 176, 120), width=5 * SS)

    # window: evening sky with a low sun and hills, white frame, curtains on a rod
    wx0, wy0, wx1, wy1 = WINDOW_RECT
    wm, hm = (wx0 + wx1) / 2, (wy0 + wy1) / 2
    sky = _vgradient(((wx1 - wx0) * SS, (wy1 - wy0) * SS), (84, 112, 186), (252, 184, 132))
    img.paste(Image.fromarray(sky, "RGB"), (wx0 * SS, wy0 * SS))
    d.ellipse(_s(wx1 - 80, wy1 - 170, wx1 - 24, wy1 - 114), fill=(255, 230, 168))  # low sun
    for k, (cy, col) in enumerate(((140, (236, 228, 236)), (220, (244, 214, 210)))):  # two small clouds
        cx = wx0 + 50 + k * 80
        for dx, r in ((0, 16), (20, 22), (42, 15)):
            d.ellipse(_s(cx + dx - r, wy0 + cy - r, cx + dx + r, wy0 + cy + r * 0.7), fill=col)
    w = wx1 - wx0
    d.polygon(
        _s(
            wx0,
            wy1 - 60,
            wx0 + w * 0.25,
            wy1 - 92,
            wx0 + w * 0.55,
            wy1 - 66,
            wx0 + w * 0.8,
            wy1 - 100,
            wx1,
            wy1 - 76,
            wx1,
            wy1,
            wx0,
            wy1,
        ),
        fill=(112, 110, 160),
    )  # far hills
    d.polygon(
        _s(
            wx0, wy1 - 30, wx0 + w * 0.4, wy1 - 54, wx0 + w * 0.7, wy1 - 36, wx1, wy1 - 50, wx1, wy1, wx0, wy1
        ),
        fill=(84, 92, 138),
    )  # near hills
    frame_col = (250, 244, 232)
    d.rectangle(_s(wx0 - 14, wy0 - 14, wx1 + 14, wy1 + 14), outline=frame_col, width=16 * SS)
    d.line(_s(wm, wy0, wm, wy1), fill=frame_col, width=10 * SS)
    d.line(_s(wx0, hm, wx1, hm), fill=frame_col, width=10 * SS)
    d.rectangle(_s(wx0 - 34, wy1 + 10, wx1 + 34, wy1 + 30), fill=(244, 236, 222))  # sill
    d.rectangle(_s(wx0 - 30, wy1 + 30, wx1 + 30, wy1 + 36), fill=(206, 184, 160))
    for edge, sgn in ((wx0 - 16, 1), (wx1 + 16, -1)):  # curtains, gathered at the sill
        pts = [
            (edge - 70 * sgn, 70),
            (edge + 36 * sgn, 70),
            (edge + 10 * sgn, hm),
            (edge + 40 * sgn, wy1 + 60),
            (edge - 70 * sgn, wy1 + 60),
        ]
        d.polygon(_s(*[v for p in pts for v in p]), fill=(206, 96, 86))
        for k in (12, 34, 56):
            d.line(
                _s(edge - 70 * sgn + k * sgn, 80, edge - 66 * sgn + k * sgn, wy1 + 56),
                fill=(184, 80, 72),
                width=3 * SS,
            )
        d.rounded_rectangle(
            _s(
                min(edge - 74 * sgn, edge + 30 * sgn), hm + 30, max(edge - 74 * sgn, edge + 30 * sgn), hm + 44
            ),
            radius=6 * SS,
            fill=(236, 190, 110),
        )  # tie-back
    d.rounded_rectangle(_s(wx0 - 110, 60, wx1 + 110, 74), radius=6 * SS, fill=(120, 84, 60))  # rod
    for ex in (wx0 - 112, wx1 + 112):
        d.ellipse(_s(ex - 10, 57, ex + 10, 77), fill=(120, 84, 60))

    # shelf above the sofa: books, a leaning book, a potted plant; a clock on the wall
    sx0, sx1, sy = 1400, 1820, 250
    d.rectangle(_s(sx0, sy, sx1, sy + 16), fill=(140, 96, 64))
    d.rectangle(_s(sx0, sy + 16, sx1, sy + 20), fill=(112, 76, 50))
    d.polygon(_s(sx0 + 30, sy + 16, sx0 + 50, sy + 16, sx0 + 40, sy + 50), fill=(120, 82, 56))
    d.polygon(_s(sx1 - 50, sy + 16, sx1 - 30, sy + 16, sx1 - 40, sy + 50), fill=(120, 82, 56))
    x = sx0 + 24
    for bw, bh, col in (
        (26, 120, (70, 110, 160)),
        (22, 100, (220, 170, 70)),
        (30, 130, (180, 80, 80)),
        (24, 110, (90, 150, 110)),
        (20, 96, (240, 230, 210)),
    ):
        d.rectangle(_s(x, sy - bh, x + bw, sy), fill=col)
        d.rectangle(_s(x + 4, sy - bh + 14, x + bw - 4, sy - bh + 20), fill=(250, 244, 230))
        d.rectangle(_s(x + 4, sy - 24, x + bw - 4, sy - 18), fill=(250, 244, 230))
        x += bw + 3
    d.polygon(
        _s(x + 6, sy, x + 30, sy - 112, x + 56, sy - 104, x + 32, sy), fill=(120, 150, 180)
    )  # leaning book
    px = 1750
    for ang, ln in ((-60, 70), (-100, 86), (-130, 66), (-30, 60), (-80, 96), (-150, 56)):
        a = math.radians(ang)
        tip = (px + ln * math.cos(a), sy - 50 + ln * math.sin(a))
        d.line(_s(px, sy - 46, *tip), fill=(70, 120, 72), width=3 * SS)
        d.ellipse(_s(tip[0] - 16, tip[1] - 9, tip[0] + 16, tip[1] + 9), fill=(86, 150, 90))
    d.polygon(_s(px - 34, sy - 56, px + 34, sy - 56, px + 24, sy, px - 24, sy), fill=(214, 120, 84))
    d.rectangle(_s(px - 36, sy - 60, px + 36, sy - 50), fill=(196, 104, 72))
    ccx, ccy = 1620, 110
    d.ellipse(
        _s(ccx - 46, ccy - 46, ccx + 46, ccy + 46), fill=(250, 246, 236), outline=(120, 84, 60), width=7 * SS
    )
    for k in range(12):
        a = math.radians(k * 30)
        d.line(
            _s(
                ccx + 34 * math.cos(a), ccy + 34 * math.sin(a), ccx + 38 * math.cos(a), ccy + 38 * math.sin(a)
            ),
            fill=(120, 84, 60),
            width=2 * SS,
        )
    d.line(_s(ccx, ccy, ccx, ccy - 30), fill=(60, 50, 50), width=4 * SS)
    d.line(_s(ccx, ccy, ccx + 20, ccy + 10), fill=(60, 50, 50), width=5 * SS)
    d.ellipse(_s(ccx - 5, ccy - 5, ccx + 5, ccy + 5), fill=(200, 90, 80))

    # floor lamp between the window and the sofa (its pole disappears behind the sofa)
    lx, ly = LAMP_CENTER
    d.line(_s(lx, ly + 40, lx, 900), fill=(70, 60, 56), width=8 * SS)
    d.ellipse(_s(lx - 50, 890, lx + 50, 912), fill=(70, 60, 56))
    d.polygon(
        _s(lx - 40, ly - 50, lx + 40, ly - 50, lx + 70, ly + 45, lx - 70, ly + 45), fill=(252, 226, 164)
    )
    d.polygon(
        _s(lx - 40, ly - 50, lx - 20, ly - 50, lx - 40, ly + 45, lx - 70, ly + 45), fill=(240, 208, 142)
    )
    d.line(_s(lx - 70, ly + 45, lx + 70, ly + 45), fill=(232, 190, 120), width=6 * SS)
    d.line(_s(lx - 40, ly - 50, lx + 40, ly - 50), fill=(232, 190, 120), width=4 * SS)

    # sofa behind the character
    so0, so1 = 1170, 1960
    d.rounded_rectangle(_s(so0, 640, so1, 900), radius=60 * SS, fill=(92, 98, 150))  # back
    d.rounded_rectangle(_s(so0 + 20, 780, so1, 940), radius=40 * SS, fill=(104, 110, 166))  # seat
    d.rounded_rectangle(_s(so0 - 20, 730, so0 + 90, 960), radius=40 * SS, fill=(84, 90, 140))  # arm
    d.rectangle(_s(so0 + 10, 950, so0 + 40, 990), fill=(90, 60, 40))
    d.rounded_rectangle(_s(1680, 700, 1820, 830), radius=30 * SS, fill=(240, 196, 90))  # cushion
    d.line(_s(1560, 660, 1560, 880), fill=(84, 90, 140), width=4 * SS)

    # TV cabinet under the TV (the bezel overlay ends at y=680)
    c0, c1 = 60, 900
    d.rounded_rectangle(_s(c0, 672, c1, 880), radius=10 * SS, fill=(150, 104, 70))
    d.rectangle(_s(c0 - 10, 664, c1 + 10, 684), fill=(126, 86, 58))
    for k in range(3):
        x0 = c0 + 20 + k * 280
        d.rounded_rectangle(_s(x0, 700, x0 + 250, 860), radius=8 * SS, outline=(126, 86, 58), width=4 * SS)
        d.ellipse(_s(x0 + 118, 772, x0 + 132, 786), fill=(226, 190, 120))
    d.rectangle(_s(c0 + 20, 880, c0 + 40, 910), fill=(110, 76, 52))
    d.rectangle(_s(c1 - 40, 880, c1 - 20, 910), fill=(110, 76, 52))
    # plant on the floor beside the cabinet
    px, py = 940, 900
    for ang, ln in ((-70, 150), (-95, 190), (-120, 150), (-45, 120), (-140, 110), (-85, 230), (-105, 120)):
        a = math.radians(ang)
        tip = (px + ln * math.cos(a), py - 90 + ln * math.sin(a))
        d.line(_s(px, py - 80, *tip), fill=(60, 110, 66), width=4 * SS)
        d.ellipse(_s(tip[0] - 26, tip[1] - 14, tip[0] + 26, tip[1] + 14), fill=(76, 146, 86))
    d.polygon(_s(px - 50, py - 100, px + 50, py - 100, px + 38, py, px - 38, py), fill=(236, 232, 220))
    d.rectangle(_s(px - 50, py - 100, px + 50, py - 88), fill=(214, 208, 196))

    _down(img).convert("RGB").save(path, optimize=True)


def make_lighting(folder: Path) -> None:
    """Lighting layers: warm lamp glow (add), window light (screen), vignette (multiply)."""
    W, H = FRAME_SIZE
    # lamp glow: a 900x800 layer at LAMP_LAYER_POSITION, centred on the lamp shade
    lw, lh = LAMP_LAYER_SIZE
    cx, cy = LAMP_CENTER[0] - LAMP_LAYER_POSITION[0], LAMP_CENTER[1] - LAMP_LAYER_POSITION[1]
    f = _radial((lw, lh), (cx, cy), lw / 2, power=2.2)
    rgb = np.empty((lh, lw, 3), np.uint8)
    rgb[:] = (150, 98, 40)
    _rgba(rgb, f).save(folder / "light_lamp.png", optimize=True)

    # window light: a soft slanted beam from the window onto the floor, plus a halo around the glass
    img = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(img)
    wx0, wy0, wx1, wy1 = WINDOW_RECT
    d.polygon([(wx0, wy0), (wx1, wy0), (wx1, wy1), (wx1 + 300, H), (wx0 - 200, H), (wx0, wy1)], fill=110)
    d.rectangle((wx0 - 20, wy0 - 20, wx1 + 20, wy1 + 20), fill=170)
    alpha = np.asarray(img.filter(ImageFilter.GaussianBlur(60)), np.float32) / 255.0
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = (255, 226, 190)
    _rgba(rgb, alpha).save(folder / "light_window.png", optimize=True)

    # vignette: multiply by a warm dark tone towards the corners
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r = np.hypot((xx - W / 2) / (W / 2), (yy - H * 0.45) / (H / 2)) / math.sqrt(2)
    v = np.clip((r - 0.35) / 0.65, 0, 1) ** 1.6
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = (96, 70, 84)
    _rgba(rgb, v * 0.9).save(folder / "vignette.png", optimize=True)


# ---------------------------------------------------------------------------------------------
# character


def make_character(folder: Path) -> None:
    """Base (no eyes, no mouth), 9 mouth sprites, 3 eye sprites; RGBA, drawn at 2x."""
    folder.mkdir(parents=True, exist_ok=True)
    W, H = CHARACTER_SIZE
    img, d = _canvas((W, H))
    cx = W / 2
    # hair behind the head: a bob that ends at the jaw
    d.ellipse(_s(cx - 178, 78, cx + 178, 430), fill=HAIR)
    d.rounded_rectangle(_s(cx - 178, 240, cx + 178, 476), radius=70 * SS, fill=HAIR)
    # body: shoulders and sweater
    d.ellipse(_s(22, 526, W - 22, 990), fill=SWEATER)
    d.arc(_s(96, 620, 300, 1080), 180, 260, fill=SWEATER_DARK, width=5 * SS)  # arm creases
    d.arc(_s(W - 300, 620, W - 96, 1080), 280, 360, fill=SWEATER_DARK, width=5 * SS)
    d.regular_polygon((_s(cx + 120)[0], _s(620)[0], 20 * SS), 5, rotation=0, fill=(246, 200, 96))  # badge
    # neck with a shadow under the chin
    d.rounded_rectangle(_s(cx - 46, 420, cx + 46, 560), radius=20 * SS, fill=SKIN)
    d.ellipse(_s(cx - 52, 420, cx + 52, 482), fill=SKIN_SHADE)
    # crew-neck collar
    d.chord(_s(cx - 96, 500, cx + 96, 606), 180, 360, fill=SWEATER)
    d.chord(_s(cx - 78, 472, cx + 78, 584), 0, 180, fill=SWEATER_DARK)
    d.chord(_s(cx - 60, 472, cx + 60, 560), 0, 180, fill=SKIN)
    # ears
    for ex in (cx - 148, cx + 148):
        d.ellipse(_s(ex - 24, 268, ex + 24, 340), fill=SKIN)
        d.ellipse(_s(ex - 11, 284, ex + 11, 324), fill=SKIN_SHADE)
    # face
    d.ellipse(_s(cx - 145, 130, cx + 145, 462), fill=SKIN)
    # fringe: the top of the head minus a face-shaped window, swept to one side
    fringe = Image.new("L", img.size, 0)
    fd = ImageDraw.Draw(fringe)
    fd.ellipse(_s(cx - 162, 82, cx + 162, 400), fill=255)
    fd.ellipse(_s(cx - 190, 180, cx + 220, 600), fill=0)
    fd.rectangle(_s(0, 330, W, H), fill=0)
    img.paste(HAIR + (255,), (0, 0, img.width, img.height), fringe)
    d.arc(_s(cx - 128, 104, cx + 120, 300), 200, 262, fill=HAIR_LIGHT, width=7 * SS)  # shine
    d.arc(_s(cx - 60, 96, cx + 150, 260), 250, 300, fill=HAIR_LIGHT, width=5 * SS)
    # eyebrows
    for ex, sgn in ((EYES_OFFSET[0] + 55, -1), (EYES_OFFSET[0] + 165, 1)):
        d.arc(
            _s(ex - 34, 226, ex + 34, 262),
            200 if sgn < 0 else 210,
            330 if sgn < 0 else 340,
            fill=HAIR,
            width=8 * SS,
        )
    # nose
    d.arc(_s(cx - 16, 314, cx + 16, 346), 20, 160, fill=SKIN_SHADE, width=5 * SS)
    # cheeks
    blush = Image.new("RGBA", img.size, (0, 0, 0, 0))
    bd = ImageDraw.Draw(blush)
    for bx in (cx - 92, cx + 92):
        bd.ellipse(_s(bx - 32, 346, bx + 32, 380), fill=(240, 130, 130, 90))
    img = Image.alpha_composite(img, blush.filter(ImageFilter.GaussianBlur(6 * SS)))
    _down(img).save(folder / "base.png", optimize=True)

    for shape in MOUTH_SHAPES:
        _mouth(shape).save(folder / f"mouth_{shape}.png", optimize=True)
    for state in EYE_STATES:
        _eyes(state).save(folder / f"eyes_{state}.png", optimize=True)


def _mouth(shape: str) -> Image.Image:
    """One Preston Blair mouth, 140x90 RGBA, centred at (70, 40)."""
    img, d = _canvas(MOUTH_SIZE)
    cx, cy = 70, 40

    def opening(
        w: float,
        h: float,
        *,
        teeth_top: float = 0,
        teeth_bottom: float = 0,
        tongue: float = 0,
        tongue_up: bool = False,
        round_: bool = False,
    ) -> None:
        box = _s(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        inner = Image.new("L", img.size, 0)
        ImageDraw.Draw(inner).ellipse(box, fill=255) if round_ else ImageDraw.Draw(inner).rounded_rectangle(
            box, radius=int(min(w, h) * SS / 2.2), fill=255
        )
        fill = Image.new("RGBA", img.size, (0, 0, 0, 0))
        fd = ImageDraw.Draw(fill)
        fd.rectangle(box, fill=MOUTH_IN)
        if tongue:
            if tongue_up:  # tip raised behind the upper teeth ("L")
                fd.ellipse(
                    _s(cx - w * 0.3, cy - h / 2 + teeth_top, cx + w * 0.3, cy + h / 2 + 8), fill=TONGUE
                )
                fd.line(_s(cx, cy - h / 2 + teeth_top + 8, cx, cy + h / 2), fill=(200, 90, 100), width=2 * SS)
            else:
                fd.ellipse(
                    _s(cx - w * 0.38, cy + h / 2 - tongue, cx + w * 0.38, cy + h / 2 + tongue), fill=TONGUE
                )
        if teeth_top:
            fd.rectangle(_s(cx - w / 2, cy - h / 2, cx + w / 2, cy - h / 2 + teeth_top), fill=TEETH)
        if teeth_bottom:
            fd.rectangle(_s(cx - w / 2, cy + h / 2 - teeth_bottom, cx + w / 2, cy + h / 2), fill=TEETH)
        img.paste(fill, (0, 0), inner)
        outline = ImageDraw.Draw(img)
        if round_:
            outline.ellipse(box, outline=LIP, width=5 * SS)
        else:
            outline.rounded_rectangle(box, radius=int(min(w, h) * SS / 2.2), outline=LIP, width=5 * SS)

    if shape == "X":  # rest: relaxed closed, a soft smile
        d.arc(_s(cx - 28, cy - 22, cx + 28, cy + 8), 25, 155, fill=OUTLINE, width=4 * SS)
    elif shape == "A":  # M B P: lips pressed together, a flat line with a pushed-out lower lip
        d.line(_s(cx - 30, cy, cx + 30, cy), fill=OUTLINE, width=5 * SS)
        d.arc(_s(cx - 20, cy - 2, cx + 20, cy + 14), 20, 160, fill=LIP, width=5 * SS)
        d.line(_s(cx - 34, cy - 3, cx - 30, cy), fill=OUTLINE, width=3 * SS)
        d.line(_s(cx + 34, cy - 3, cx + 30, cy), fill=OUTLINE, width=3 * SS)
    elif shape == "B":  # K S T: slightly open, clenched teeth showing
        opening(64, 20, teeth_top=9, teeth_bottom=7)
        d.line(_s(cx - 30, cy + 1, cx + 30, cy + 1), fill=(200, 196, 190), width=1 * SS)
    elif shape == "C":  # EH AE: open
        opening(62, 34, teeth_top=8, tongue=8)
    elif shape == "D":  # AA: wide open
        opening(74, 56, teeth_top=10, tongue=14)
    elif shape == "E":  # AO ER: rounded
        opening(46, 40, tongue=10, round_=True)
    elif shape == "F":  # UW OW W: puckered small "oo"
        d.ellipse(_s(cx - 19, cy - 18, cx + 19, cy + 18), fill=LIP)
        d.ellipse(_s(cx - 9, cy - 9, cx + 9, cy + 9), fill=MOUTH_IN)
        d.arc(_s(cx - 19, cy - 18, cx + 19, cy + 18), 0, 360, fill=OUTLINE, width=2 * SS)
    elif shape == "G":  # F V: upper teeth resting on the lower lip
        d.chord(_s(cx - 30, cy - 14, cx + 30, cy + 10), 180, 360, fill=MOUTH_IN)
        d.rectangle(_s(cx - 22, cy - 8, cx + 22, cy + 2), fill=TEETH)
        d.line(_s(cx - 22, cy + 2, cx + 22, cy + 2), fill=(210, 206, 200), width=1 * SS)
        d.arc(_s(cx - 30, cy - 14, cx + 30, cy + 10), 180, 360, fill=LIP, width=4 * SS)
        d.chord(_s(cx - 30, cy - 4, cx + 30, cy + 18), 0, 180, fill=LIP)  # lower lip tucked under the teeth
    elif shape == "H":  # L: open with the tongue raised
        opening(62, 40, teeth_top=7, tongue=1, tongue_up=True)
    else:
        raise ValueError(f"unknown mouth shape {shape!r}")
    return _down(img)


def _eyes(state: str) -> Image.Image:
    """Both eyes, 220x90 RGBA; eye centres at (55, 48) and (165, 48)."""
    img, d = _canvas(EYES_SIZE)
    for ex, out in ((55, -1), (165, 1)):
        ey = 48
        if state == "closed":  # a gentle downward curve with a lash at the outer corner
            d.arc(_s(ex - 26, ey - 20, ex + 26, ey + 12), 15, 165, fill=OUTLINE, width=5 * SS)
            d.line(_s(ex + 24 * out, ey + 1, ex + 33 * out, ey - 3), fill=OUTLINE, width=4 * SS)
            continue
        eye = Image.new("RGBA", img.size, (0, 0, 0, 0))
        ed = ImageDraw.Draw(eye)
        box = _s(ex - 24, ey - 28, ex + 24, ey + 28)
        ed.ellipse(box, fill=(255, 255, 255), outline=OUTLINE, width=3 * SS)
        ed.ellipse(_s(ex - 16, ey - 14, ex + 16, ey + 18), fill=(110, 74, 50))
        ed.ellipse(_s(ex - 9, ey - 6, ex + 9, ey + 12), fill=(30, 20, 20))
        ed.ellipse(_s(ex - 11, ey - 11, ex - 2, ey - 2), fill=(255, 255, 255))
        ed.ellipse(_s(ex + 5, ey + 5, ex + 9, ey + 9), fill=(255, 255, 255))
        if state == "half":  # the lid hides the top half: cut the eye there and draw the lid's edge
            lid_y = ey - 1
            ed.rectangle(_s(ex - 30, ey - 32, ex + 30, lid_y), fill=(0, 0, 0, 0))
            img.alpha_composite(eye)
            d.arc(_s(ex - 25, lid_y - 8, ex + 25, lid_y + 10), 180, 360, fill=OUTLINE, width=5 * SS)
            d.line(_s(ex - 25, lid_y + 1, ex + 25, lid_y + 1), fill=OUTLINE, width=5 * SS)
            d.arc(
                _s(ex - 24, lid_y - 22, ex + 24, lid_y + 4), 200, 340, fill=SKIN_SHADE, width=3 * SS
            )  # crease
            d.line(_s(ex + 24 * out, lid_y + 1, ex + 33 * out, lid_y - 3), fill=OUTLINE, width=4 * SS)
        else:
            img.alpha_composite(eye)
            d.arc(box, 200, 340, fill=OUTLINE, width=6 * SS)  # upper lash line
            d.line(_s(ex + 20 * out, ey - 17, ex + 31 * out, ey - 23), fill=OUTLINE, width=4 * SS)
    return _down(img)


# ---------------------------------------------------------------------------------------------
# TV


def make_bezel(path: Path) -> None:
    """TV set overlay, 848x560 RGBA: frame, chin with a power light, feet; transparent screen hole
    at (40, 40, 768x432) with a faint glare in its top-left."""
    W, H = BEZEL_SIZE
    sx, sy = SCREEN_RECT[0] - BEZEL_POSITION[0], SCREEN_RECT[1] - BEZEL_POSITION[1]
    sw, sh = SCREEN_RECT[2], SCREEN_RECT[3]
    img, d = _canvas((W, H))
    # feet first, then the body over them
    for fx in (150, W - 150):
        d.polygon(_s(fx - 40, H - 40, fx + 40, H - 40, fx + 24, H, fx - 24, H), fill=(40, 40, 46))
    d.rounded_rectangle(_s(0, 0, W - 1, H - 30), radius=26 * SS, fill=(52, 52, 60))
    d.rounded_rectangle(_s(6, 6, W - 7, H - 36), radius=22 * SS, outline=(78, 78, 88), width=4 * SS)
    d.rounded_rectangle(_s(sx - 8, sy - 8, sx + sw + 8, sy + sh + 8), radius=6 * SS, fill=(24, 24, 28))
    # chin: brand plate and power light
    d.rounded_rectangle(
        _s(W / 2 - 50, sy + sh + 20, W / 2 + 50, sy + sh + 36), radius=6 * SS, fill=(120, 120, 132)
    )
    d.ellipse(_s(W - 76, sy + sh + 22, W - 64, sy + sh + 34), fill=(90, 230, 120))
    for k in range(6):
        d.line(_s(60 + k * 14, sy + sh + 20, 60 + k * 14, sy + sh + 40), fill=(40, 40, 46), width=4 * SS)
    # cut the screen hole exactly (no supersampling blur on its edge)
    out = _down(img)
    a = np.asarray(out).copy()
    a[sy : sy + sh, sx : sx + sw] = 0
    # glare: a faint diagonal sheen in the top-left of the glass
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    u = xx / sw + yy / sh  # 0 at the top-left corner, 2 at the bottom-right
    sheen = np.clip(1.0 - np.abs(u - 0.45) / 0.18, 0, 1) * np.clip(1.0 - u / 0.8, 0, 1)
    sheen = np.maximum(
        sheen, 0.5 * np.clip(1.0 - np.abs(u - 0.72) / 0.05, 0, 1) * np.clip(1.0 - u / 1.0, 0, 1)
    )
    a[sy : sy + sh, sx : sx + sw, :3] = 255
    a[sy : sy + sh, sx : sx + sw, 3] = (sheen * 46).round().astype(np.uint8)
    Image.fromarray(a, "RGBA").save(path, optimize=True)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _font_file() -> str | None:
    for p in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ):
        if Path(p).is_file():
            return p
    return None


def make_clip(path: Path, *, duration_s: float = CLIP_DURATION_S) -> None:
    """The TV clip: 640x360, 30 fps, ``duration_s`` (12 s) long, H.264 mp4, lavfi sources and
    drawing filters only.

    Moving colour gradients, a Game of Life panel, a title, a running clock and frame number, colour
    bars, a red marker at x = frame index on row 326..332, and the frame index as 9 binary cells on
    the bottom row (see :func:`clip_frame_index`).
    """
    w, h = CLIP_SIZE
    cw, chh = CLIP_CODE_CELL
    code_y = h - chh
    bars_y = code_y - 6 - 26
    filters = ["[0][1]overlay=x=320:y=88:shortest=1", "drawbox=x=316:y=84:w=296:h=176:c=white:t=4"]
    for i, c in enumerate(
        ("0xc0c0c0", "0xc0c000", "0x00c0c0", "0x00c000", "0xc000c0", "0xc00000", "0x0000c0")
    ):
        filters.append(f"drawbox=x={i * 92}:y={bars_y}:w=92:h=26:c={c}:t=fill")
    filters.append(f"drawbox=x=0:y={code_y - 6}:w={w}:h={chh + 6}:c=black:t=fill")
    filters.append(f"drawbox=x=0:y={code_y}:w={cw}:h={chh}:c=white:t=fill")  # reference cell: always white
    for k in range(CLIP_CODE_BITS):
        bit = CLIP_CODE_BITS - 1 - k  # most significant first
        filters.append(
            f"drawbox=x={cw * (k + 1)}:y={code_y}:w={cw}:h={chh}:c=white:t=fill"
            f":enable='eq(mod(floor(n/{1 << bit}),2),1)'"
        )
    graph = ",".join(filters) + "[b];[b][2]overlay=x='n':y=" + str(code_y - 6) + ":shortest=1"
    font = _font_file()
    if font:  # drawtext needs a font file; the code cells carry the frame index without one
        graph += (
            f",drawtext=fontfile={font}:text='AVATAR TV':x=24:y=22:fontsize=44:fontcolor=white"
            ":shadowx=3:shadowy=3"
            f",drawtext=fontfile={font}:text='%{{pts\\:hms}}':x=24:y=100:fontsize=30:fontcolor=white"
            ":box=1:boxcolor=black@0.5:boxborderw=8"
            f",drawtext=fontfile={font}:text='frame %{{frame_num}}':x=24:y=160:fontsize=30"
            ":fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=8"
        )
    cmd = [
        _ffmpeg(),
        "-nostdin",
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"gradients=s={w}x{h}:r={CLIP_FPS}:speed=0.01:n=3:c0=#1b3a6b:c1=#e96f4a:c2=#f6c85f:seed=3",
        "-f",
        "lavfi",
        "-i",
        f"life=s=96x56:r={CLIP_FPS}:mold=8:life_color=#ffffff:death_color=#224466"
        ":mold_color=#112233:seed=5,scale=288:168:flags=neighbor",
        "-f",
        "lavfi",
        "-i",
        f"color=c=red:s=4x6:r={CLIP_FPS}",
        # its own sound (a soft two-note chord with a slow swell), for the TV sound under the
        # speech (segment.yaml tv.clips[].audio)
        "-f",
        "lavfi",
        "-i",
        "aevalsrc='0.15*(sin(2*PI*220*t)+0.7*sin(2*PI*277.2*t))*(0.6+0.4*sin(2*PI*0.25*t))':s=48000",
        "-filter_complex",
        graph,
        "-map",
        "3:a",
        "-t",
        f"{duration_s}",
        "-frames:v",
        str(int(round(duration_s * CLIP_FPS))),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-g",
        str(CLIP_FPS),
        "-movflags",
        "+faststart",
        str(path),
    ]
    _run(cmd)


def clip_frame_index(frame_rgb: np.ndarray) -> int:
    """Read the frame index back from a clip frame (any size: the layout scales with it).

    Parameters
    ----------
    frame_rgb : np.ndarray [shape=(h, w, 3) or (h, w), dtype=uint8]
        One clip frame as shown (RGB or luma), e.g. the TV screen cut out of a rendered frame.

    Returns
    -------
    int
        The clip's frame index (0-based), from the 9 binary cells on the bottom row.
    """
    img = np.asarray(frame_rgb, np.float32)
    luma = img if img.ndim == 2 else img[..., :3].mean(axis=2)
    h, w = luma.shape
    sx, sy = w / CLIP_SIZE[0], h / CLIP_SIZE[1]
    cw, chh = CLIP_CODE_CELL
    y0, y1 = int((CLIP_SIZE[1] - chh * 0.75) * sy), int((CLIP_SIZE[1] - chh * 0.25) * sy)
    value = 0
    for k in range(CLIP_CODE_BITS):
        x0, x1 = int((cw * (k + 1) + cw * 0.25) * sx), int((cw * (k + 1) + cw * 0.75) * sx)
        value = value * 2 + int(luma[y0:y1, x0:x1].mean() > 128)
    return value


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
