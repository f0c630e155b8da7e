"""Still images: whatever PNG or JPEG a user gives, as the 8-bit RGBA the scene composites.

Pillow's own ``convert("RGBA")`` clips 16- and 32-bit grey to 255 (a 16-bit grey PNG turns
white) and ignores a JPEG's EXIF orientation (a phone photo lies on its side). Here every mode
Pillow reads is scaled to 8 bits, turned upright, and given its transparency; anything else is
refused with a :class:`~avatarrender.errors.MediaError`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import MediaError, SpecError

# file signatures of image formats the error can name (this Pillow may lack their codecs)
_SIGNATURES = ((b"RIFF", 8, b"WEBP", "WebP"), (b"", 4, b"ftypavif", "AVIF"))

__all__ = ["decoded_size", "header", "open_rgba", "to_rgba"]

# Modes convert("RGBA") handles right (palette and grey transparency included)
_DIRECT = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def to_rgba(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGBA, upright; ``ValueError`` for a mode that has no faithful conversion.

    High bit-depth grey (``I;16*``, ``I``) is scaled by its range (65535 for 16-bit data, 255
    when the values fit in 8 bits), float grey (``F``) by 1.0 when its values lie in 0..1,
    else by 255.
    """
    if im.getexif().get(0x0112, 1) != 1:  # (exif_transpose copies even an upright image)
        im = ImageOps.exif_transpose(im) or im
    if im.mode in _DIRECT:
        if im.mode == "RGBA":
            return im  # loaded: usable after its file is closed
        if im.mode in ("CMYK", "LAB", "HSV", "YCbCr"):
            im = im.convert("RGB")
        return im.convert("RGBA")
    if im.mode.startswith("I") or im.mode == "F":
        grey = np.asarray(im).astype(np.float64)
        if not np.isfinite(grey).all():
            raise ValueError(f"{im.mode} image with non-finite values")
        top = float(grey.max()) if grey.size else 0.0
        if im.mode == "F":
            scale = 255.0 if top <= 1.0 else 1.0
        elif im.mode.startswith("I;16") or top > 255:
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        grey8 = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        out = Image.fromarray(grey8, "L").convert("RGBA")
        t = im.info.get("transparency")
        if isinstance(t, int):  # a tRNS grey level: that exact value is transparent
            alpha = np.where(np.asarray(im) == t, 0, 255).astype(np.uint8)
            out.putalpha(Image.fromarray(alpha, "L"))
        return out
    raise ValueError(f"unsupported image mode {im.mode}")


# Decoded images, by file identity. The spec check decodes every image and the Scene again, and a
# render service builds a Scene per submission from mostly the same room and character: PNG
# decoding was a third of a warm submission's time to its first media segment (0.12 s of the
# demo's 0.35 s Scene, as much again in the spec check). Bounded by bytes; callers get copies.
_CACHE_BYTES = 256 << 20
_cache: OrderedDict[tuple, Image.Image] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def _file_key(path: str | Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(key: tuple, img: Image.Image) -> bool:
    """Keep ``img`` for ``key``; False when it is too large to keep."""
    global _cache_bytes
    size = img.width * img.height * 4
    if size > _CACHE_BYTES // 4:
        return False
    with _cache_lock:
        if key in _cache:
            return True
        _cache[key] = img
        _cache_bytes += size
        while _cache_bytes > _CACHE_BYTES:
            _, old = _cache.popitem(last=False)
            _cache_bytes -= old.width * old.height * 4
    return True


def _decoded(path: str | Path, field: str | None, source: Path | None) -> tuple[Image.Image, bool]:
    """The decoded RGBA image and whether it is the cache's own (not to be changed)."""
    key = _file_key(path)
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
        if hit is not None:
            return hit, True
    try:
        with Image.open(path) as im:
            im.load()
            img = to_rgba(im)
        if img is im:
            img = img.copy()  # a plain Image, not the file's
    except Exception as exc:  # PIL raises many types for a broken or unusual file
        where = source if source is not None else path
        why = _why(path, exc)
        what = f"cannot read image {path}: {why}" if source is not None else f"cannot read image: {why}"
        raise MediaError(where, field, what) from None
    return img, key is not None and _remember(key, img)


def _why(path: str | Path, exc: Exception) -> str:
    """Why an image did not decode, in the user's words where Pillow's say less."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return str(exc)
    if not head:
        return "an empty file (0 bytes)"
    from PIL import features

    for start, at, tag, name in _SIGNATURES:
        if head.startswith(start) and head[at : at + len(tag)] == tag and not features.check(name.lower()):
            return f"a {name} image, which this Pillow cannot read: give PNG or JPEG"
    return str(exc)


def open_rgba(path: str | Path, *, field: str | None = None, source: Path | None = None) -> Image.Image:
    """Decode ``path`` to 8-bit RGBA (see :func:`to_rgba`); a new image the caller may change.

    A file decoded before (same path, inode, size and modification time) is not decoded again.

    Raises
    ------
    MediaError
        Naming ``source`` (the YAML) and ``field`` when given, else the image's path.
    """
    img, shared = _decoded(path, field, source)
    return img.copy() if shared else img


def decoded_size(
    path: str | Path, *, field: str | None = None, source: Path | None = None
) -> tuple[int, int]:
    """(width, height) of ``path`` decoded as :func:`open_rgba` decodes it, which it checks; the
    image is kept for the next :func:`open_rgba` (no copy made: the spec check wants the size).
    Thread-safe; PIL decodes without the GIL, so several files decode side by side.

    Raises
    ------
    MediaError
        As :func:`open_rgba`.
    """
    return _decoded(path, field, source)[0].size


def header(path: str | Path) -> tuple[tuple[int, int], int]:
    """(upright (width, height), frame count) from the file's header, nothing decoded: a size to
    refuse before decoding 64 M pixels, and an animation (GIF, APNG, WebP) of which a still
    shows the first frame. ``OSError`` or PIL's errors when it is no image."""
    with Image.open(path) as im:
        w, h = im.size
        late = _png_orientation(path) if im.format == "PNG" and not _EXIF_KEYS & set(im.info) else None
        # PIL decodes a whole PNG to look for orientation after the pixels (the spec check
        # decoded every PNG twice: 0.19 of its 0.42 CPU s on a scene of 27 600x800 states)
        orientation = late if late is not None else im.getexif().get(0x0112, 1)
        frames = getattr(im, "n_frames", 1) if getattr(im, "is_animated", False) else 1
    return ((h, w) if orientation in (5, 6, 7, 8) else (w, h)), frames


# what PIL reads an orientation from in a PNG: the eXIf chunk, XMP, ImageMagick's raw profiles
_EXIF_KEYS = {"exif", "XML:com.adobe.xmp", "Raw profile type exif", "Raw profile type APP1"}
_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def _png_orientation(path: str | Path) -> int | None:
    """The EXIF orientation of a PNG whose chunks before its pixels say none, from its chunks'
    headers (the pixels not decoded): an eXIf chunk after them is read; 1 when there is none;
    None when a text chunk after them may hold one (XMP, a raw profile: PIL's getexif decides)."""
    import struct

    with open(path, "rb") as fh:
        fh.seek(8)  # the signature
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return 1
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return 1
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(fh.read(length))
                return exif.get(0x0112)  # (none there: XMP may say it, PIL decides)
            if kind in _TEXT_CHUNKS:
                keyword = fh.read(min(length, 80)).split(b"\0", 1)[0].decode("latin-1")
                if keyword in _EXIF_KEYS:
                    return None
                fh.seek(length - min(length, 80) + 4, os.SEEK_CUR)
                continue
            fh.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


def output_format(path: str | Path, field: str) -> str:
    """The PIL format an image to write asks for by its name (PNG when it has no extension),
    once its folder is known to exist: a SpecError naming ``field`` otherwise (before any work,
    and naming the file, not the temporary one beside it)."""
    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower()) if path.suffix else "PNG"
    if kind is None or kind not in Image.SAVE:
        raise SpecError(None, field, f"{path}: no image type for {path.suffix!r} (use .png or .jpg)")
    if not path.parent.is_dir():
        raise SpecError(None, field, f"{path.parent}: no such folder")
    return kind
