"""Caption text: fonts that fall back for the characters a font lacks, right-to-left lines,
wrapping that breaks words too long for a line, and a cap on the number of lines.

A caption is drawn run by run: each run is the longest stretch of characters the first font of
the chain covers (the caption's own font, then DejaVu Sans for Latin, Greek, Cyrillic, Arabic and
Hebrew, Droid Sans Fallback for Chinese and Japanese, Symbola for emoji and symbols: the Debian
packages scripts/setup.sh installs; Korean needs a font added, e.g. fonts-nanum, through
``AVATARRENDER_FALLBACK_FONTS``). With Pillow's libraqm layout each run is shaped
(Arabic letters join) and the runs, cut by font and by bidi level, are put in the visual order
of the Unicode bidi algorithm (a line whose first strong character is right-to-left is a
right-to-left paragraph; a left-to-right phrase inside it keeps its order whatever fonts draw
it). Without libraqm text is drawn unshaped, left to right.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import unicodedata
from typing import Any

from PIL import ImageDraw, ImageFont, features

__all__ = ["FALLBACK_FONTS", "FontChain", "font_chain", "wrap", "CaptionLayout", "layout_caption", "ELLIPSIS"]

# Debian paths; AVATARRENDER_FALLBACK_FONTS (paths joined by ":") goes before them.
FALLBACK_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
)
ELLIPSIS = "\u2026"
_RAQM = features.check("raqm")


def _fallback_paths() -> list[str]:
    extra = [p for p in os.environ.get("AVATARRENDER_FALLBACK_FONTS", "").split(":") if p]
    return [p for p in extra + list(FALLBACK_FONTS) if os.path.isfile(p)]


@functools.lru_cache(maxsize=16)
def _coverage(path: str) -> frozenset[int]:
    """The code points a font file maps to glyphs (its cmap)."""
    from fontTools.ttLib import TTFont

    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(font.getBestCmap() or ())
    except Exception:  # not a font fontTools reads: then it covers nothing it can vouch for
        return frozenset()


def _sticky(ch: str) -> bool:
    """Characters that go with the run before them: spaces, combining marks, joiners,
    variation selectors, emoji skin tones."""
    cp = ord(ch)
    return (
        ch.isspace()
        or unicodedata.category(ch) in ("Mn", "Mc", "Me", "Cf")
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
    )


# Scripts drawn wrong without libraqm's shaping: Hebrew, Arabic (and its presentation forms),
# Syriac, Thaana, the Indic scripts, Thai, Lao, Tibetan, Myanmar, Khmer
_SHAPED = (
    (0x0590, 0x08FF),
    (0x0900, 0x0FFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0xFB1D, 0xFDFF),
    (0xFE70, 0xFEFF),
)


def unshaped(text: str) -> bool:
    """Whether ``text`` has characters this Pillow draws wrong: a script that needs shaping
    or right-to-left layout, and no libraqm."""
    return not _RAQM and any(a <= ord(ch) <= b for ch in text for a, b in _SHAPED)


@dataclasses.dataclass(frozen=True)
class FontChain:
    """A caption's font and its fallbacks, at one size (px)."""

    paths: tuple[str | None, ...]  # None: Pillow's built-in font
    size_px: int

    def __getstate__(self) -> dict[str, Any]:
        # pickled without the opened fonts (the spec carries chains to the workers): each
        # process opens them once, when it first draws
        return {"paths": self.paths, "size_px": self.size_px}

    @functools.cached_property
    def fonts(self) -> list[Any]:
        engine = ImageFont.Layout.RAQM if _RAQM else ImageFont.Layout.BASIC
        out = []
        for p in self.paths:
            if p is None:
                out.append(ImageFont.load_default(size=self.size_px))
            else:
                out.append(ImageFont.truetype(p, self.size_px, layout_engine=engine))
        return out

    def _covers(self, i: int, cp: int) -> bool:
        path = self.paths[i]
        if path is None:
            return 0x20 <= cp < 0x7F  # the built-in font: ASCII
        return cp in _coverage(path)

    def runs(self, text: str) -> list[tuple[Any, str]]:
        """``text`` cut into (font, run) in logical order: each run in the first font of the
        chain that has its characters (the first font when none has one)."""
        out: list[tuple[int, str]] = []
        for ch in text:
            if out and _sticky(ch):
                out[-1] = (out[-1][0], out[-1][1] + ch)
                continue
            cp = ord(ch)
            k = next((i for i in range(len(self.paths)) if self._covers(i, cp)), 0)
            if out and out[-1][0] == k:
                out[-1] = (k, out[-1][1] + ch)
            else:
                out.append((k, ch))
        return [(self.fonts[k], s) for k, s in out]

    def missing(self, text: str) -> str:
        """The characters of ``text`` no font of the chain has (drawn as boxes), each once."""
        out = dict.fromkeys(
            ch
            for ch in text
            if not _sticky(ch) and not any(self._covers(i, ord(ch)) for i in range(len(self.paths)))
        )
        return "".join(out)

    def length(self, text: str) -> float:
        """Advance width of ``text`` in px."""
        return sum(font.getlength(s, direction=d) for font, s, d in self.visual_runs(text))

    @property
    def line_height_px(self) -> int:
        ascent, descent = self.fonts[0].getmetrics()
        return int((ascent + descent) * 1.15)

    @property
    def ascent_px(self) -> int:
        return self.fonts[0].getmetrics()[0]

    def visual_runs(self, text: str) -> list[tuple[Any, str, str | None]]:
        """``text`` as (font, run, direction) from left to right on the line. With libraqm the
        runs are cut by font and by bidi level (:func:`_bidi_levels`) and put in the visual
        order of the Unicode bidi algorithm (L2), each drawn in its own direction: a phrase of
        left-to-right scripts in two fonts inside a right-to-left line keeps its order. Without
        it, the font runs, reversed on a right-to-left line (direction None)."""
        if not _RAQM:
            runs = self.runs(text)
            return [(f, s, None) for f, s in (runs[::-1] if _right_to_left(text) else runs)]
        levels = _bidi_levels(text, _right_to_left(text))
        items: list[list] = []  # [level, font index, text] in logical order
        for ch, lv in zip(text, levels):
            if items and items[-1][0] == lv and _sticky(ch):
                items[-1][2] += ch
                continue
            cp = ord(ch)
            k = next((i for i in range(len(self.paths)) if self._covers(i, cp)), 0)
            if items and items[-1][0] == lv and items[-1][1] == k:
                items[-1][2] += ch
            else:
                items.append([lv, k, ch])
        order = list(range(len(items)))
        for lv in range(max((it[0] for it in items), default=0), 0, -1):  # L2
            i = 0
            while i < len(order):
                if items[order[i]][0] < lv:
                    i += 1
                    continue
                j = i
                while j < len(order) and items[order[j]][0] >= lv:
                    j += 1
                order[i:j] = order[i:j][::-1]
                i = j
        return [(self.fonts[items[i][1]], items[i][2], "rtl" if items[i][0] % 2 else "ltr") for i in order]

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: Any) -> None:
        """Draw one line with its top-left at ``xy`` (the baseline one ascent below)."""
        x, y = xy
        baseline = y + self.ascent_px
        for font, s, direction in self.visual_runs(text):
            draw.text((x, baseline), s, font=font, fill=fill, anchor="ls", direction=direction)
            x += font.getlength(s, direction=direction)


def _bidi_levels(text: str, rtl: bool) -> list[int]:
    """Each character's embedding level on a line of paragraph direction ``rtl``: the Unicode
    bidi algorithm for text without explicit embeddings (W1, W7, N1, N2, I1, I2): strong
    left-to-right letters, right-to-left ones, European and Arabic numbers, and neutrals
    (spaces, punctuation, emoji) taking the direction of the strong text on both sides of them,
    else the paragraph's."""
    kinds: list[str] = []
    strong = "R" if rtl else "L"
    for ch in text:
        d = unicodedata.bidirectional(ch)
        if d == "NSM":  # W1: a mark is what it marks
            kind = kinds[-1] if kinds else ("R" if rtl else "L")
        elif d == "L":
            kind = strong = "L"
        elif d in ("R", "AL"):
            kind = strong = "R"
        elif d == "EN":  # W7: a number after left-to-right text is left-to-right
            kind = "L" if strong == "L" else "EN"
        elif d == "AN":
            kind = "AN"
        else:
            kind = "N"
        kinds.append(kind)
    edge = "R" if rtl else "L"
    side = ["R" if k in ("EN", "AN") else k for k in kinds]  # N1: numbers count as R
    i = 0
    while i < len(kinds):
        if kinds[i] != "N":
            i += 1
            continue
        j = i
        while j < len(kinds) and kinds[j] == "N":
            j += 1
        before = side[i - 1] if i else edge
        after = side[j] if j < len(kinds) else edge
        kinds[i:j] = [before if before == after else edge] * (j - i)  # N1, else N2
        i = j
    if rtl:  # I2
        return [1 if k == "R" else 2 for k in kinds]
    return [0 if k == "L" else 1 if k == "R" else 2 for k in kinds]  # I1


def _right_to_left(text: str) -> bool:
    """The paragraph direction of ``text``: its first strong character's (Unicode bidi, P2)."""
    for ch in text:
        d = unicodedata.bidirectional(ch)
        if d in ("R", "AL"):
            return True
        if d == "L":
            return False
    return False


@functools.lru_cache(maxsize=16)
def font_chain(path: str | None, size_px: int) -> FontChain:
    """The chain for a caption font (None: the default, DejaVu Sans where installed)."""
    fallbacks = _fallback_paths()
    first: str | None = path
    if first is None:
        first = fallbacks[0] if fallbacks else None
    rest = tuple(p for p in fallbacks if p != first)
    return FontChain(paths=(first, *rest), size_px=size_px)


def _clusters(word: str) -> list[str]:
    """``word`` cut where a line may break inside it: before each character that does not
    stick to the one before it (combining marks, joiners and the like stay attached)."""
    out: list[str] = []
    for ch in word:
        if out and (_sticky(ch) or out[-1].endswith("\u200d")):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def wrap(text: str, chain: FontChain, max_w_px: float) -> list[str]:
    """Lines of ``text`` no wider than ``max_w_px`` (but for a single character wider than
    that): broken between words, and inside a word that is wider than a line (text without
    spaces, such as Chinese or Japanese, breaks between any two characters)."""
    lines: list[str] = []
    for para in text.split("\n"):
        cur = ""
        for word in para.split():
            sep = " " if cur else ""
            if chain.length(cur + sep + word) <= max_w_px:
                cur += sep + word
                continue
            if chain.length(word) <= max_w_px:
                lines.append(cur)
                cur = word
                continue
            for i, piece in enumerate(_clusters(word)):  # too long for a line: cut it
                trial = cur + (sep if i == 0 else "") + piece
                if not cur or chain.length(trial) <= max_w_px:
                    cur = trial
                else:
                    lines.append(cur)
                    cur = piece
        if cur:
            lines.append(cur)
    return [ln for ln in lines if ln] or [""]


def _ellipsize(line: str, chain: FontChain, max_w_px: float) -> str:
    pieces = _clusters(line)
    while pieces and chain.length("".join(pieces).rstrip() + ELLIPSIS) > max_w_px:
        pieces.pop()
    return "".join(pieces).rstrip() + ELLIPSIS


@dataclasses.dataclass(frozen=True)
class CaptionLayout:
    """Where and how a caption is drawn, in output pixels."""

    chain: FontChain
    lines: tuple[str, ...]
    line_h_px: int
    pad_px: int
    size_px: tuple[int, int]  # the box, w x h
    xy_px: tuple[int, int]  # its top-left
    wanted_lines: int  # before the cap: more than len(lines) when the caption was cut


def layout_caption(
    text: str, style: Any, *, k: float, frame_px: tuple[int, int], font_path: str | None
) -> CaptionLayout:
    """Lay out one caption: wrap, then cap to ``style.max_lines`` and to what fits in the
    frame (the last line kept ends with an ellipsis).

    Parameters
    ----------
    style : the spec's caption style (size_px, padding_px, max_width_px, max_lines, position)
    k : scale from the spec's pixels (the background's) to output pixels
    frame_px : (width, height) of the output
    font_path : the caption font's absolute path, or None for the default
    """
    width, height = frame_px
    chain = font_chain(font_path, max(6, round(style.size_px * k)))
    max_w = round(style.max_width_px * k) if style.max_width_px else int(width * 0.8)
    max_w = min(max_w, width)
    pad = round(style.padding_px * k)
    inner_w = max(1, max_w - 2 * pad)
    lines = wrap(text, chain, inner_w)
    line_h = chain.line_height_px
    fit = max(1, (height - 2 * pad) // max(1, line_h))
    cap = max(1, min(getattr(style, "max_lines", 3) or 3, fit))
    wanted = len(lines)
    if wanted > cap:
        lines = lines[: cap - 1] + [_ellipsize(lines[cap - 1], chain, inner_w)]
    text_w = max(int(chain.length(ln)) for ln in lines) if lines else 0
    w, h = min(width, text_w + 2 * pad), min(height, line_h * len(lines) + 2 * pad)
    if style.position:
        ax, ay = round(style.position[0] * k), round(style.position[1] * k)
    else:
        ax, ay = width // 2, height - height // 24
    x = min(max(0, int(round(ax - w / 2))), width - w)
    y = min(max(0, int(ay - h)), height - h)
    return CaptionLayout(
        chain=chain,
        lines=tuple(lines),
        line_h_px=line_h,
        pad_px=pad,
        size_px=(w, h),
        xy_px=(x, y),
        wanted_lines=wanted,
    )
