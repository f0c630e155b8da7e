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
from fractions import Fraction
import json
import os
import threading
import time
from collections import OrderedDict
from typing import Any
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from . import _profile
from .images import open_rgba
from .text import CaptionLayout
from .spec import EYE_STATES, MOUTH_SHAPES, Spec, plain

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
    # Scaled once into the coefficients (no pass dividing by 255); chroma from the 2x2 sums of
    # RGB (the conversion is linear, so it equals the mean of per-pixel chroma): 2.5x faster
    # than converting every pixel, which a state patch of 600x800 paid once per worker.
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    k = 219.0 / 255.0
    y = (r * np.float32(_KR * k) + g * np.float32(_KG * k)) + (b * np.float32(_KB * k) + np.float32(16.0))
    s = f[0::2, 0::2] + f[1::2, 0::2]
    s += f[0::2, 1::2]
    s += f[1::2, 1::2]
    sr, sg, sb = s[..., 0], s[..., 1], s[..., 2]
    kb = 224.0 / (2 * (1 - _KB)) / 255.0 / 4
    kr = 224.0 / (2 * (1 - _KR)) / 255.0 / 4
    cb = sb * np.float32((1 - _KB) * kb) - (sr * np.float32(_KR * kb) + sg * np.float32(_KG * kb))
    cr = sr * np.float32((1 - _KR) * kr) - (sg * np.float32(_KG * kr) + sb * np.float32(_KB * kr))
    return tuple(  # type: ignore
        np.clip(np.rint(p), 0, 255).astype(np.uint8)
        for p in (y, cb + np.float32(128.0), cr + np.float32(128.0))
    )


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
    """Premultiplied content above the TV screen: out = (clip * inv + pm + 127) // 255 within
    ``box`` (:func:`_blend_plane`)."""

    box: Box  # relative to the screen rectangle, even
    pm: tuple[np.ndarray, np.ndarray, np.ndarray]  # uint16, with the rounding's 127 added
    inv: tuple[np.ndarray, np.ndarray]  # uint16, full-res and half-res


# Two uint16 scratch planes per shape for :func:`_blend_plane` (a 1280x720 screen under a
# glare: fresh arrays each frame would fault 3.7 MB of new pages in); the last few shapes kept,
# per thread (a script may preview frames from several).
_SCRATCH = threading.local()


def _blend_plane(plane: np.ndarray, inv: np.ndarray, pm: np.ndarray) -> None:
    """``plane[:] = (plane * inv + pm) // 255`` in place, ``pm`` holding the rounding's 127.

    In 16 bits: with inv = 255 - alpha and pm at most 255 * alpha (+ rounding, + 127), the sum
    stays under 65,281, and below 65,535 ``x // 255`` is ``(x + 1 + (x >> 8)) >> 8``. The same
    bytes as the 32-bit division it replaces (tested), at 2-2.5x its speed on a 1280x720
    screen: every frame the TV shows under a bezel or a glare is blended."""
    shape = plane.shape
    kept = _SCRATCH.__dict__.setdefault("planes", OrderedDict())
    scratch = kept.get(shape)
    if scratch is None:
        scratch = (np.empty(shape, np.uint16), np.empty(shape, np.uint16))
        kept[shape] = scratch
        while len(kept) > 4:
            kept.popitem(last=False)
    else:
        kept.move_to_end(shape)
    x, q = scratch
    np.multiply(plane, inv, out=x)
    x += pm
    np.right_shift(x, 8, out=q)
    q += x
    q += 1
    q >>= 8
    plane[...] = q


def _open_rgba(path: Path) -> Image.Image:
    return open_rgba(path)  # every mode scaled to 8 bits and upright, as the spec check saw it


def _blend_layer(
    base: Image.Image, layer: Image.Image, mode: str, opacity: float, pos: tuple[int, int]
) -> Image.Image:
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


# Scenes' static parts by what they are built from (see Scene._build_static): a render service
# builds a Scene per submission, mostly of the same room and character; blending the layers and
# converting the base to yuv took 0.2 s of the demo's 0.35 s Scene. Shared parts are read-only.
_STATIC: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_KEEP_STATIC = 4
_STATIC_ATTRS = ("k", "_images", "base_rgba", "base", "screen", "_overlay", "_static_above", "layers")


def _static_key(spec: Spec) -> tuple | None:
    """The static part's inputs: the spec's scene, TV (not its clips) and character, the output
    size, and the identity of every image file they name (None if one cannot be stat'ed)."""
    tv = dataclasses.replace(spec.tv, clips=()) if spec.tv else None
    doc = {
        "size": [spec.output.width, spec.output.height],
        "scene": plain(spec.scene),
        "character": plain(spec.character),
        "tv": plain(tv),
    }
    files = []
    for path in sorted({str(p) for p in _paths((spec.scene, spec.character, tv))}):
        try:
            st = os.stat(path)
        except OSError:
            return None
        files.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
    return json.dumps(doc, sort_keys=True), tuple(files)


def _paths(obj: Any) -> list[Path]:
    """Every path in ``obj`` (resolved spec objects)."""
    if isinstance(obj, Path):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _paths([getattr(obj, f.name) for f in dataclasses.fields(obj)])
    if isinstance(obj, dict):
        return _paths(list(obj.values()))
    if isinstance(obj, (list, tuple)):
        return [p for v in obj for p in _paths(v)]
    return []


def _fitted(img: Image.Image, screen: tuple[int, int], fit: str) -> Image.Image:
    """``img`` on a screen of ``screen`` as ``tv.fit`` fits a clip, in the same box
    (:func:`encode.fit_box`): whole on black (contain), filling it with its edges cut (cover),
    or stretched (stretch, and any image within 2 % of the screen's shape)."""
    from .encode import fit_box

    w, h = screen
    box = fit_box(Fraction(img.width, img.height), screen, fit)
    if box is None:
        return img.resize((w, h), Image.LANCZOS)
    sw, sh, x, y = box
    scaled = img.resize((sw, sh), Image.LANCZOS)
    out = Image.new("RGBA", (w, h), (0, 0, 0, 255))
    if fit == "cover":
        out.alpha_composite(scaled.crop((x, y, x + w, y + h)))
    else:
        out.alpha_composite(scaled, (x, y))
    return out


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
        key = _static_key(spec)
        static = _STATIC.get(key) if key is not None else None
        if static is not None:
            _STATIC.move_to_end(key)
            self.__dict__.update(static)
            self.layers = list(static["layers"])
            self._static_above = list(static["_static_above"])
        else:
            self._build_static(spec)
            if key is not None:
                # lists copied: __init__ goes on to append the caption layer to self.layers
                _STATIC[key] = {
                    k: (list(v) if isinstance(v, list) else v)
                    for k in _STATIC_ATTRS
                    for v in (getattr(self, k),)
                }
                while len(_STATIC) > _KEEP_STATIC:
                    _STATIC.popitem(last=False)
        # captions were laid out by load_spec (the region is the union of their boxes), drawn
        # when shown; burn: false -> a subtitle track only, no layouts
        self._caption_boxes = [_box(lay) for lay in spec.captions.layouts] if spec.captions else []
        self._captions_drawn: OrderedDict[int, tuple[Image.Image, tuple[int, int]]] = OrderedDict()
        if self._caption_boxes:
            box = None
            for b in self._caption_boxes:
                box = b if box is None else _union(box, b)
            self.layers.append(_Layer("caption", box))
        # Disjoint regions of the frame that states change, each with the layers it depends on:
        # where layers overlap (a caption over the character), the overlap is its own region.
        # One region for the union would be redrawn and converted for every combination of
        # their states (mouth x eyes x caption: 1566x810 px each in the grain benchmark).
        self.regions = _cells([_even_box(*layer.box, self.width, self.height) for layer in self.layers])
        # what each region of the buffer last composed shows (see compose)
        self._shown: tuple[int, list[tuple | None]] = (0, [])
        # per (region, the state it depends on); bounded, since each caption makes its own
        self._patches: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._above: OrderedDict[tuple, _Blend | None] = OrderedDict()

    def _build_static(self, spec: Spec) -> None:
        """What does not depend on the segment's words: the background with its layers, the TV
        when off and its bezel, the character's static parts, in RGBA and yuv420p."""
        bg = _open_rgba(spec.scene.background)
        if bg.getextrema()[3][0] < 255:  # see-through parts: on black (their hidden colour showed)
            bg = Image.alpha_composite(Image.new("RGBA", bg.size, (0, 0, 0, 255)), bg)
        # The YAML's coordinates are the background's pixels; everything scales to the output.
        self.k = self.width / bg.width
        self._images: dict[str, Image.Image] = {}
        base = (
            bg
            if bg.size == (self.width, self.height)
            else bg.resize((self.width, self.height), Image.LANCZOS)
        )
        for layer in spec.scene.layers:
            img = self._image(layer.image)
            base = _blend_layer(base, img, layer.blend, layer.opacity, self._pt(layer.position))
        self.screen: Box | None = None
        self._overlay: tuple[Image.Image, tuple[int, int]] | None = None
        tv = spec.tv
        if tv:
            x, y, w, h = (2 * round(v * self.k / 2) for v in tv.screen)
            self.screen = (x, y, x + w, y + h)
            if tv.off:
                off = _fitted(_open_rgba(tv.off), (w, h), tv.fit)
            else:
                off = Image.new("RGBA", (w, h), (28, 30, 34, 255))
            base.alpha_composite(off, (x, y))
            if tv.overlay:
                ov = self._image(tv.overlay)
                self._overlay = (ov, self._pt(tv.overlay_position))
                base.paste(*_clip_paste(base, ov, self._overlay[1]))
        self.base_rgba = base
        self.base = Frame.empty(self.width, self.height)

        # State-dependent layers, in z-order. With sprites, the character's base is static:
        # it goes into the base, and only the eye and mouth boxes change from state to state.
        ch = spec.character
        cx, cy = self._pt(ch.position)
        self.layers: list[_Layer] = []
        self._static_above: list[tuple[Image.Image, tuple[int, int]]] = (
            [self._overlay] if self._overlay else []
        )
        if ch.states:
            # the box every state is drawn in: the largest state's (a taller mouth's image was
            # cut to the first state's size)
            from .images import decoded_size

            sizes = [decoded_size(p) for p in ch.states.values()]
            w = max(max(1, round(sw * self.k)) for sw, _ in sizes)
            h = max(max(1, round(sh * self.k)) for _, sh in sizes)
            self.layers.append(_Layer("character", (cx, cy, cx + w, cy + h)))
        else:
            body = self._image(ch.base)
            base.paste(*_clip_paste(base, body, (cx, cy)))
            self._static_above.append((body, (cx, cy)))
            for kind, sprites, offset in (
                ("eyes", ch.eyes, ch.eyes_offset),
                ("mouth", ch.mouths, ch.mouth_offset),
            ):
                sizes = [self._image(p).size for p in sprites.values()]
                w, h = max(s[0] for s in sizes), max(s[1] for s in sizes)
                x, y = self._sprite_xy(offset)
                self.layers.append(_Layer(kind, (x, y, x + w, y + h)))
        self.base.paste(rgb_to_yuv420(np.asarray(base.convert("RGB"))), 0, 0)

    # ------------------------------------------------------------------ layers (RGBA, PIL)

    def _pt(self, xy: tuple[int, int]) -> tuple[int, int]:
        """A point of the YAML (background pixels) in output pixels."""
        return round(xy[0] * self.k), round(xy[1] * self.k)

    def _sprite_xy(self, offset: tuple[int, int]) -> tuple[int, int]:
        ch = self.spec.character
        return self._pt((ch.position[0] + offset[0], ch.position[1] + offset[1]))

    def _image(self, path: Path) -> Image.Image:
        """An image of the spec, scaled to the output once."""
        img = self._images.get(path)
        if img is None:
            img = _open_rgba(path)
            if self.k != 1:
                img = img.resize(
                    (max(1, round(img.width * self.k)), max(1, round(img.height * self.k))), Image.LANCZOS
                )
            self._images[path] = img
        return img

    def _character_image(self, mouth: int, eyes: int) -> Image.Image:
        """A pre-drawn state image (``character.states``)."""
        return self._image(self.spec.character.states[(MOUTH_SHAPES[mouth], EYE_STATES[eyes])])

    def _render_caption(self, lay: CaptionLayout) -> tuple[Image.Image, tuple[int, int]]:
        """A caption drawn as load_spec laid it out: its box, its lines, and where it goes."""
        style = self.spec.captions.style
        w, h = lay.size_px
        pad = lay.pad_px
        img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        if style.box_color:
            ImageDraw.Draw(img).rounded_rectangle(
                (0, 0, w - 1, h - 1), radius=min(pad, h // 2), fill=style.box_color
            )
        # the letters as coverage, then the colour over the box through it: drawn on the box
        # itself, a see-through colour replaced the box under each letter instead of going over
        # it (and a glyph's edge pixels replaced it too)
        cover = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(cover)
        for i, ln in enumerate(lay.lines):
            lw = lay.chain.length(ln)
            lay.chain.draw(draw, ((w - lw) / 2, pad + i * lay.line_h_px), ln, 255)
        color = tuple(style.color)  # (r, g, b, a), parsed by the spec
        text = Image.new("RGBA", (w, h), color)
        text.putalpha(cover if color[3] == 255 else cover.point(lambda v: v * color[3] // 255))
        img.alpha_composite(text)
        return img, lay.xy_px

    def _caption_image(self, cap: int) -> tuple[Image.Image, tuple[int, int]]:
        """Cue ``cap`` drawn (a few kept: a cue's frames come together)."""
        got = _lru_get(self._captions_drawn, cap)
        if got is None:
            got = _lru_put(
                self._captions_drawn,
                cap,
                self._render_caption(self.spec.captions.layouts[cap]),
                _KEEP_CAPTIONS,
            )
        return got

    def _layer_image(
        self, index: int, state: tuple[int, int, int]
    ) -> tuple[Image.Image, tuple[int, int]] | None:
        kind = self.layers[index].kind
        ch = self.spec.character
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
        return self.compose(Frame.empty(self.width, self.height), state, None, fresh=True, screen_dirty=False)

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
        bx0, by0, bx1, by1 = _even_box(
            int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, canvas.width, canvas.height
        )
        sub = arr[by0:by1, bx0:bx1]
        a = sub[..., 3].astype(np.float32) / 255.0
        y, u, v = (p.astype(np.float32) for p in rgb_to_yuv420(np.ascontiguousarray(sub[..., :3])))
        # Chroma of premultiplied content: average (colour * alpha) over each 2x2 block.
        yfull = y * a
        h, w = a.shape
        a2 = a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        pm = (
            (np.rint(yfull * 255) + 127).astype(np.uint16),
            (np.rint(u * a2 * 255) + 127).astype(np.uint16),
            (np.rint(v * a2 * 255) + 127).astype(np.uint16),
        )
        inv = (np.rint((1 - a) * 255).astype(np.uint16), np.rint((1 - a2) * 255).astype(np.uint16))
        blend = _Blend(box=(bx0, by0, bx1, by1), pm=pm, inv=inv)
        _lru_put(self._above, key, blend, _KEEP_PATCHES)
        return blend

    def tv_frame(
        self, out: Frame, state: tuple[int, int, int], clip: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> Frame:
        """Fill ``out`` with the state frame, the clip frame on the screen, and what is above it."""
        return self.compose(out, state, clip, fresh=True, screen_dirty=False)

    def compose(
        self,
        out: Frame,
        state: tuple[int, int, int],
        clip: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        *,
        fresh: bool,
        screen_dirty: bool,
    ) -> Frame:
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
        t0 = time.perf_counter() if _profile.ENABLED else 0.0
        buffer, shown = self._shown
        if fresh or buffer != id(out.data):
            shown = [None] * len(self.regions)  # nothing known about what ``out`` shows
            self._shown = (id(out.data), shown)
        if fresh:
            np.copyto(out.data, self.base.data)
        elif clip is None and screen_dirty and self.screen is not None:
            self._copy_box(out, self.base, self.screen)
        screen_touched = self.screen is not None and (clip is not None or screen_dirty)
        for r, (box, members) in enumerate(self.regions):  # disjoint: the state frame's patches
            key = self._relevant(members, state)
            if key == shown[r] and not (screen_touched and _intersects(box, self.screen)):
                continue  # already there: a state lasts several frames, a region is up to 0.5 MP
            out.paste(self._patch(r, state), box[0], box[1])
            shown[r] = key
        if clip is not None:
            self._on_screen(out, state, clip)
        if _profile.ENABLED:
            _profile.add("compose", t0)
        return out

    @staticmethod
    def _copy_box(out: Frame, src: Frame, box: Box) -> None:
        x0, y0, x1, y1 = box  # even
        out.y[y0:y1, x0:x1] = src.y[y0:y1, x0:x1]
        out.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = src.u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
        out.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = src.v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]

    def _on_screen(
        self, out: Frame, state: tuple[int, int, int], clip: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> Frame:
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
            _blend_plane(out.y[ys, xs], blend.inv[0], blend.pm[0])
            _blend_plane(out.u[yc, xc], blend.inv[1], blend.pm[1])
            _blend_plane(out.v[yc, xc], blend.inv[1], blend.pm[2])
        return out


# Kept per Scene: patches and blends (eyes x mouth states are at most 27 per region) and drawn
# captions. Bounded so that a long segment with many captions does not grow a worker.
_KEEP_PATCHES = 96
_KEEP_CAPTIONS = 8


def _cells(boxes: list[Box]) -> list[tuple[Box, list[int]]]:
    """Split the union of ``boxes`` (even) into disjoint boxes, each with the indices of the
    boxes that cover it; parts covered by none are left out. Overlapping boxes are cut on a grid
    of their edges; grid cells with the same cover are joined along rows, then down columns."""
    groups: list[list[int]] = []  # boxes that overlap, transitively
    for i, box in enumerate(boxes):
        hit = [g for g in groups if any(_intersects(box, boxes[j]) for j in g)]
        merged = [i] + [j for g in hit for j in g]
        groups = [g for g in groups if g not in hit] + [sorted(merged)]
    out: list[tuple[Box, list[int]]] = []
    for g in groups:
        if len(g) == 1:
            out.append((boxes[g[0]], g))
            continue
        xs = sorted({v for j in g for v in (boxes[j][0], boxes[j][2])})
        ys = sorted({v for j in g for v in (boxes[j][1], boxes[j][3])})
        rows: list[list[tuple[Box, list[int]]]] = []
        for y0, y1 in zip(ys, ys[1:]):
            row: list[tuple[Box, list[int]]] = []
            for x0, x1 in zip(xs, xs[1:]):
                cover = [j for j in g if _intersects(boxes[j], (x0, y0, x1, y1))]
                if not cover:
                    continue
                if row and row[-1][1] == cover and row[-1][0][2] == x0:
                    row[-1] = ((row[-1][0][0], y0, x1, y1), cover)
                else:
                    row.append(((x0, y0, x1, y1), cover))
            rows.append(row)
        done: list[tuple[Box, list[int]]] = []
        for row in rows:
            for box, cover in row:
                for k, (b, c) in enumerate(done):
                    if c == cover and b[0] == box[0] and b[2] == box[2] and b[3] == box[1]:
                        done[k] = ((b[0], b[1], b[2], box[3]), c)
                        break
                else:
                    done.append((box, cover))
        out += done
    return out


def _box(lay: CaptionLayout) -> Box:
    """The box a caption layout covers, output px."""
    (x, y), (w, h) = lay.xy_px, lay.size_px
    return x, y, x + w, y + h


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
