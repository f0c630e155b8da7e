"""The scene cache: everything about a frame that can be done once per state, in yuv420p.

A frame without TV is fully determined by (mouth, eyes, caption). The static base (background,
baked lighting, TV off-look and overlay) is converted to yuv420p once; each state adds small
patches (the character's canvas, the caption box), each converted once per distinct content.
With the TV on, a frame is its state frame with the screen rectangle replaced by the clip
frame and whatever lies above the screen (bezel glare, a character's shoulder) blended back on.
The render composes in one buffer (:meth:`Scene.compose`), refreshing only the state regions and
the screen.
"""
from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from typing import Any
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

from .errors import MediaError
from .spec import EYE_STATES, MOUTH_SHAPES, Cue, Spec, parse_color

__all__ = ["Scene", "rgb_to_yuv420", "yuv420_to_rgb", "Frame"]

# BT.709, limited range: the colour tags we write into the stream.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert an RGB image to BT.709 limited-range yuv420p planes.

    Parameters
    ----------
    rgb : np.ndarray [shape=(h, w, 3), dtype=uint8], h and w even

    Returns
    -------
    (y, u, v) : uint8 arrays of shapes (h, w), (h/2, w/2), (h/2, w/2)
    """
    f = rgb.astype(np.float32) * (1.0 / 255.0)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    yl = _KR * r + _KG * g + _KB * b
    y = 16.0 + 219.0 * yl
    cb = (b - yl) * (224.0 / (2 * (1 - _KB)))
    cr = (r - yl) * (224.0 / (2 * (1 - _KR)))
    h, w = yl.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) + 128.0
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) + 128.0
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, cb, cr))  # type: ignore


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv420` (chroma upsampled by repetition). For previews and tests."""
    yl = (y.astype(np.float32) - 16.0) / 219.0
    cb = np.repeat(np.repeat(u.astype(np.float32) - 128.0, 2, 0), 2, 1) / 224.0 * (2 * (1 - _KB))
    cr = np.repeat(np.repeat(v.astype(np.float32) - 128.0, 2, 0), 2, 1) / 224.0 * (2 * (1 - _KR))
    r = yl + cr
    b = yl + cb
    g = (yl - _KR * r - _KB * b) / _KG
    return np.clip(np.rint(np.stack([r, g, b], -1) * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Frame:
    """A yuv420p frame in one flat buffer, with plane views. ``data`` is what goes to x264."""

    data: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def empty(cls, width: int, height: int) -> Frame:
        data = np.zeros(width * height * 3 // 2, dtype=np.uint8)
        return cls.wrap(data, width, height)

    @classmethod
    def wrap(cls, data: np.ndarray, width: int, height: int) -> Frame:
        n = width * height
        q = n // 4
        return cls(
            data=data,
            y=data[:n].reshape(height, width),
            u=data[n : n + q].reshape(height // 2, width // 2),
            v=data[n + q :].reshape(height // 2, width // 2),
        )

    def paste(self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], x: int, y: int) -> None:
        """Write yuv planes with their top-left at even (x, y)."""
        py, pu, pv = planes
        h, w = py.shape
        self.y[y : y + h, x : x + w] = py
        self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = pu
        self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = pv

    def to_rgb(self) -> np.ndarray:
        return yuv420_to_rgb(self.y, self.u, self.v)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), px


def _even_box(x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> Box:
    return (max(0, x0 - x0 % 2), max(0, y0 - y0 % 2), min(w, x1 + x1 % 2), min(h, y1 + y1 % 2))


def _intersects(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclasses.dataclass
class _Layer:
    """A state-dependent RGBA layer: ``kind`` picks which part of the state key it reads."""

    kind: str  # "character" or "caption"
    box: Box  # the most it can cover, px


@dataclasses.dataclass
class _Blend:
    """Premultiplied content above the TV screen: out = (clip * inv + pm) / 255 within ``box``."""

    box: Box  # relative to the screen rectangle, even
    pm: tuple[np.ndarray, np.ndarray, np.ndarray]  # uint32
    inv: tuple[np.ndarray, np.ndarray]  # uint32, full-res and half-res


def _open_rgba(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGBA")
    except Exception as exc:
        raise MediaError(path, None, f"cannot read image: {exc}") from None


def _blend_layer(base: Image.Image, layer: Image.Image, mode: str, opacity: float,
                 pos: tuple[int, int]) -> Image.Image:
    """Blend an RGBA layer onto an RGBA base once, at load (lighting is baked)."""
    x, y = pos
    region = base.crop((x, y, x + layer.width, y + layer.height))
    rgb = layer.convert("RGB")
    if mode == "add":
        mixed = ImageChops.add(region.convert("RGB"), rgb)
    elif mode == "screen":
        mixed = ImageChops.screen(region.convert("RGB"), rgb)
    elif mode == "multiply":
        mixed = ImageChops.multiply(region.convert("RGB"), rgb)
    else:
        mixed = rgb
    alpha = layer.getchannel("A")
    if opacity < 1.0:
        alpha = alpha.point(lambda a: int(round(a * opacity)))
    out = Image.composite(mixed.convert("RGBA"), region, alpha)
    base.paste(out, (x, y))
    return base


class Scene:
    """Per-spec cache of the base and the state patches in yuv420p. Build once (the render builds
    it in the main process and hands it to the workers); cheap to query.

    Parameters
    ----------
    spec : Spec
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        out = spec.output
        self.width, self.height = out.width, out.height
        m = spec.model
        bg = _open_rgba(spec.path(m.scene.background))
        # The YAML's coordinates are the background's pixels; everything scales to the output.
        self.k = self.width / bg.width
        self._images: dict[str, Image.Image] = {}
        base = bg if bg.size == (self.width, self.height) else bg.resize(
            (self.width, self.height), Image.LANCZOS)
        for layer in m.scene.layers:
            img = self._image(layer.image)
            base = _blend_layer(base, img, layer.blend, layer.opacity, self._pt(layer.position))
        self.screen: Box | None = None
        self._overlay: tuple[Image.Image, tuple[int, int]] | None = None
        if m.tv:
            x, y, w, h = (2 * round(v * self.k / 2) for v in m.tv.screen)
            self.screen = (x, y, x + w, y + h)
            if m.tv.off:
                off = _open_rgba(spec.path(m.tv.off)).resize((w, h), Image.LANCZOS)
            else:
                off = Image.new("RGBA", (w, h), (28, 30, 34, 255))
            base.alpha_composite(off, (x, y))
            if m.tv.overlay:
                ov = self._image(m.tv.overlay)
                self._overlay = (ov, self._pt(m.tv.overlay_position))
                base.paste(*_clip_paste(base, ov, self._overlay[1]))
        self.base_rgba = base
        self.base = Frame.empty(self.width, self.height)

        # captions are laid out now (the region is the union of their boxes), drawn when shown
        burned = m.captions is None or m.captions.burn  # burn: false -> subtitle track only
        self._caption_boxes = [self._caption_box(c) for c in spec.cues] if burned else []
        self._captions_drawn: OrderedDict[int, tuple[Image.Image, tuple[int, int]]] = OrderedDict()
        # State-dependent layers, in z-order. With sprites, the character's base is static:
        # it goes into the base, and only the eye and mouth boxes change from state to state.
        ch = m.character
        cx, cy = self._pt(ch.position)
        self.layers: list[_Layer] = []
        self._static_above: list[tuple[Image.Image, tuple[int, int]]] = (
            [self._overlay] if self._overlay else [])
        if ch.states:
            w, h = self._character_image(0, 0).size
            self.layers.append(_Layer("character", (cx, cy, cx + w, cy + h)))
        else:
            body = self._image(ch.base)
            base.paste(*_clip_paste(base, body, (cx, cy)))
            self._static_above.append((body, (cx, cy)))
            for kind, sprites, offset in (("eyes", ch.eyes, ch.eyes_offset),
                                          ("mouth", ch.mouths, ch.mouth_offset)):
                sizes = [self._image(p).size for p in sprites.values()]
                w, h = max(s[0] for s in sizes), max(s[1] for s in sizes)
                x, y = self._sprite_xy(offset)
                self.layers.append(_Layer(kind, (x, y, x + w, y + h)))
        self.base.paste(rgb_to_yuv420(np.asarray(base.convert("RGB"))), 0, 0)
        if self._caption_boxes:
            box = None
            for b in self._caption_boxes:
                box = b if box is None else _union(box, b)
            self.layers.append(_Layer("caption", box))
        # Disjoint regions of the frame that states change; overlapping layers share one.
        regions: list[tuple[Box, list[int]]] = []
        for i, layer in enumerate(self.layers):
            box = _even_box(*layer.box, self.width, self.height)
            members = [i]
            for r in list(regions):
                if _intersects(r[0], box):
                    regions.remove(r)
                    box = _union(box, r[0])
                    members += r[1]
            regions.append((box, sorted(members)))
        self.regions = regions
        # per (region, the state it depends on); bounded, since each caption makes its own
        self._patches: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._above: OrderedDict[tuple, _Blend | None] = OrderedDict()

    # ------------------------------------------------------------------ layers (RGBA, PIL)

    def _pt(self, xy: tuple[int, int]) -> tuple[int, int]:
        """A point of the YAML (background pixels) in output pixels."""
        return round(xy[0] * self.k), round(xy[1] * self.k)

    def _sprite_xy(self, offset: tuple[int, int]) -> tuple[int, int]:
        ch = self.spec.model.character
        return self._pt((ch.position[0] + offset[0], ch.position[1] + offset[1]))

    def _image(self, rel: str) -> Image.Image:
        """An image of the spec, scaled to the output once."""
        img = self._images.get(rel)
        if img is None:
            img = _open_rgba(self.spec.path(rel))
            if self.k != 1:
                img = img.resize((max(1, round(img.width * self.k)), max(1, round(img.height * self.k))),
                                 Image.LANCZOS)
            self._images[rel] = img
        return img

    def _character_image(self, mouth: int, eyes: int) -> Image.Image:
        """A pre-drawn state image (``character.states``)."""
        ch = self.spec.model.character
        return self._image(ch.states.format(mouth=MOUTH_SHAPES[mouth], eyes=EYE_STATES[eyes]))

    def _caption_layout(self, cue: Cue) -> tuple[Any, list[str], int, int, int, int, int]:
        """Font, wrapped lines, line height, padding, box size and where it goes: (font, lines,
        line_h, pad, w, h, (x, y)) without drawing anything."""
        style = self.spec.model.captions.style
        font = _font(str(self.spec.path(style.font)) if style.font else None,
                     max(6, round(style.size_px * self.k)))
        max_w = round(style.max_width_px * self.k) if style.max_width_px else int(self.width * 0.8)
        pad = round(style.padding_px * self.k)
        lines = _wrap(cue.text, font, max_w - 2 * pad)
        ascent, descent = font.getmetrics()
        line_h = int((ascent + descent) * 1.15)
        text_w = max(int(font.getlength(ln)) for ln in lines) if lines else 0
        w, h = text_w + 2 * pad, line_h * len(lines) + 2 * pad
        ax, ay = (self._pt(style.position) if style.position
                  else (self.width // 2, self.height - self.height // 24))
        x = int(round(ax - w / 2))
        y = int(ay - h)
        x = min(max(0, x), self.width - w)
        y = min(max(0, y), self.height - h)
        return font, lines, line_h, pad, w, h, (x, y)

    def _caption_box(self, cue: Cue) -> Box:
        *_, w, h, (x, y) = self._caption_layout(cue)
        return x, y, x + w, y + h

    def _render_caption(self, cue: Cue) -> tuple[Image.Image, tuple[int, int]]:
        style = self.spec.model.captions.style
        font, lines, line_h, pad, w, h, xy = self._caption_layout(cue)
        img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        if style.box_color:
            draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=min(pad, h // 2),
                                   fill=parse_color(style.box_color))
        color = parse_color(style.color)
        for i, ln in enumerate(lines):
            lw = font.getlength(ln)
            draw.text(((w - lw) / 2, pad + i * line_h), ln, font=font, fill=color)
        return img, xy

    def _caption_image(self, cap: int) -> tuple[Image.Image, tuple[int, int]]:
        """Cue ``cap`` drawn (a few kept: a cue's frames come together)."""
        got = _lru_get(self._captions_drawn, cap)
        if got is None:
            got = _lru_put(self._captions_drawn, cap, self._render_caption(self.spec.cues[cap]),
                           _KEEP_CAPTIONS)
        return got

    def _layer_image(self, index: int, state: tuple[int, int, int]
                     ) -> tuple[Image.Image, tuple[int, int]] | None:
        kind = self.layers[index].kind
        ch = self.spec.model.character
        if kind == "character":
            return self._character_image(state[0], state[1]), self._pt(ch.position)
        if kind == "eyes":
            return self._image(ch.eyes[EYE_STATES[state[1]]]), self._sprite_xy(ch.eyes_offset)
        if kind == "mouth":
            return self._image(ch.mouths[MOUTH_SHAPES[state[0]]]), self._sprite_xy(ch.mouth_offset)
        cap = state[2]
        return self._caption_image(cap) if cap >= 0 else None

    _KEY = {"character": (0, 1), "mouth": (0,), "eyes": (1,), "caption": (2,)}

    def _relevant(self, members: list[int], state: tuple[int, int, int]) -> tuple:
        """The parts of the state that the given layers depend on."""
        return tuple(state[k] for i in members for k in self._KEY[self.layers[i].kind])

    # ------------------------------------------------------------------ yuv frames

    def _patch(self, region: int, state: tuple[int, int, int]):
        box, members = self.regions[region]
        key = (region, self._relevant(members, state))
        patch = _lru_get(self._patches, key)
        if patch is None:
            canvas = self.base_rgba.crop(box)
            for i in members:
                got = self._layer_image(i, state)
                if got is not None:
                    img, (x, y) = got
                    canvas.alpha_composite(img, (x - box[0], y - box[1]))
            patch = rgb_to_yuv420(np.asarray(canvas.convert("RGB")))
            _lru_put(self._patches, key, patch, _KEEP_PATCHES)
        return patch

    def state_frame(self, state: tuple[int, int, int]) -> Frame:
        """The full frame for (mouth, eyes, caption) with the TV off, made afresh."""
        return self.compose(Frame.empty(self.width, self.height), state, None, fresh=True,
                            screen_dirty=False)

    def above_screen(self, state: tuple[int, int, int]) -> _Blend | None:
        """What is drawn above the TV screen in this state, ready to blend; None if nothing."""
        assert self.screen is not None
        sx0, sy0, sx1, sy1 = self.screen
        hits = [i for i, layer in enumerate(self.layers) if _intersects(layer.box, self.screen)]
        key = self._relevant(hits, state)
        if key in self._above:
            self._above.move_to_end(key)
            return self._above[key]
        size = (sx1 - sx0, sy1 - sy0)
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        for img, (ox, oy) in self._static_above:  # bezel, and a character body over the screen
            if _intersects((ox, oy, ox + img.width, oy + img.height), self.screen):
                canvas.alpha_composite(_shift(img, ox - sx0, oy - sy0, size))
        for i in hits:
            got = self._layer_image(i, state)
            if got is not None:
                img, (x, y) = got
                canvas.alpha_composite(_shift(img, x - sx0, y - sy0, size))
        arr = np.asarray(canvas)
        alpha = arr[..., 3]
        if not alpha.any():
            _lru_put(self._above, key, None, _KEEP_PATCHES)
            return None
        ys, xs = np.nonzero(alpha)
        bx0, by0, bx1, by1 = _even_box(int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                       int(ys.max()) + 1, canvas.width, canvas.height)
        sub = arr[by0:by1, bx0:bx1]
        a = sub[..., 3].astype(np.float32) / 255.0
        y, u, v = (p.astype(np.float32) for p in rgb_to_yuv420(np.ascontiguousarray(sub[..., :3])))
        # Chroma of premultiplied content: average (colour * alpha) over each 2x2 block.
        yfull = y * a
        h, w = a.shape
        a2 = a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        pm = (np.rint(yfull * 255).astype(np.uint32),
              np.rint(u * a2 * 255).astype(np.uint32),
              np.rint(v * a2 * 255).astype(np.uint32))
        inv = (np.rint((1 - a) * 255).astype(np.uint32), np.rint((1 - a2) * 255).astype(np.uint32))
        blend = _Blend(box=(bx0, by0, bx1, by1), pm=pm, inv=inv)
        _lru_put(self._above, key, blend, _KEEP_PATCHES)
        return blend

    def tv_frame(self, out: Frame, state: tuple[int, int, int],
                 clip: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Frame:
        """Fill ``out`` with the state frame, the clip frame on the screen, and what is above it."""
        return self.compose(out, state, clip, fresh=True, screen_dirty=False)

    def compose(self, out: Frame, state: tuple[int, int, int],
                clip: tuple[np.ndarray, np.ndarray, np.ndarray] | None, *, fresh: bool,
                screen_dirty: bool) -> Frame:
        """Make in ``out`` the frame :meth:`state_frame` / :meth:`tv_frame` would give, by
        refreshing only what can differ from the frame ``out`` holds: the state regions (eyes,
        mouth, caption: their patches are cached) and the screen. No full frame is copied or
        cached per state, so a worker touches no new memory as states come and go.

        Parameters
        ----------
        fresh : ``out`` holds nothing of ours yet (the base is copied in first)
        screen_dirty : ``out``'s screen shows a clip frame (it goes back to the base when the
            TV is off in this frame)
        """
        if fresh:
            np.copyto(out.data, self.base.data)
        elif clip is None and screen_dirty and self.screen is not None:
            self._copy_box(out, self.base, self.screen)
        for r, (box, _) in enumerate(self.regions):  # disjoint: the state frame's patches
            out.paste(self._patch(r, state), box[0], box[1])
        return out if clip is None else self._on_screen(out, state, clip)

    @staticmethod
    def _copy_box(out: Frame, src: Frame, box: Box) -> None:
        x0, y0, x1, y1 = box  # even
        out.y[y0:y1, x0:x1] = src.y[y0:y1, x0:x1]
        out.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = src.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
        out.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = src.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]

    def _on_screen(self, out: Frame, state: tuple[int, int, int],
                   clip: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Frame:
        """The clip frame on the screen, and what lies above the screen blended over it."""
        sx0, sy0, _, _ = self.screen
        out.paste(clip, sx0, sy0)
        blend = self.above_screen(state)
        if blend is not None:
            bx0, by0, bx1, by1 = blend.box
            ys = slice(sy0 + by0, sy0 + by1)
            xs = slice(sx0 + bx0, sx0 + bx1)
            yc = slice((sy0 + by0) // 2, (sy0 + by1) // 2)
            xc = slice((sx0 + bx0) // 2, (sx0 + bx1) // 2)
            out.y[ys, xs] = (out.y[ys, xs] * blend.inv[0] + blend.pm[0] + 127) // 255
            out.u[yc, xc] = (out.u[yc, xc] * blend.inv[1] + blend.pm[1] + 127) // 255
            out.v[yc, xc] = (out.v[yc, xc] * blend.inv[1] + blend.pm[2] + 127) // 255
        return out


# Kept per Scene: patches and blends (eyes x mouth states are at most 27 per region) and drawn
# captions. Bounded so that a long segment with many captions does not grow a worker.
_KEEP_PATCHES = 96
_KEEP_CAPTIONS = 8


def _lru_get(cache: OrderedDict, key: Any) -> Any:
    got = cache.get(key)
    if got is not None:
        cache.move_to_end(key)
    return got


def _lru_put(cache: OrderedDict, key: Any, value: Any, keep: int) -> Any:
    cache[key] = value
    if len(cache) > keep:
        cache.popitem(last=False)
    return value


def _clip_paste(base: Image.Image, img: Image.Image, xy: tuple[int, int]):
    """Arguments for ``base.paste`` that alpha-composite ``img`` at ``xy`` (clipped to ``base``)."""
    x, y = xy
    region = base.crop((x, y, x + img.width, y + img.height))
    region.alpha_composite(img)
    return region, (x, y)


def _shift(img: Image.Image, x: int, y: int, size: tuple[int, int]) -> Image.Image:
    """``img`` placed at (x, y) on a transparent canvas of ``size`` (clipped)."""
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(img, (x, y))
    return canvas


@functools.lru_cache(maxsize=8)
def _font(path: str | None, size_px: int) -> ImageFont.FreeTypeFont:
    if path:
        try:
            return ImageFont.truetype(path, size_px)
        except OSError as exc:
            raise MediaError(path, "captions.style.font", f"cannot load font: {exc}") from None
    return ImageFont.load_default(size=size_px)


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_w: int) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        words = para.split()
        cur = ""
        for word in words:
            trial = f"{cur} {word}".strip()
            if not cur or font.getlength(trial) <= max_w:
                cur = trial
            else:
                lines.append(cur)
                cur = word
        if cur:
            lines.append(cur)
    return lines or [""]

