"""Still images: whatever PNG or JPEG a user gives, as the 8-bit RGBA the scene composites.

Pillow's own ``convert("RGBA")`` clips 16- and 32-bit grey to 255 (a 16-bit grey PNG turns
white) and ignores a JPEG's EXIF orientation (a phone photo lies on its side). Here every mode
Pillow reads is scaled to 8 bits, turned upright, and given its transparency; anything else is
refused with a :class:`~avatarrender.errors.MediaError`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import MediaError

__all__ = ["open_rgba", "to_rgba", "upright_size"]

# Modes convert("RGBA") handles right (palette and grey transparency included)
_DIRECT = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
           "HSV"}


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


def open_rgba(path: str | Path, *, field: str | None = None, source: Path | None = None
              ) -> Image.Image:
    """Decode ``path`` to 8-bit RGBA (see :func:`to_rgba`).

    Raises
    ------
    MediaError
        Naming ``source`` (the YAML) and ``field`` when given, else the image's path.
    """
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgba(im)
    except Exception as exc:  # PIL raises many types for a broken or unusual file
        where = source if source is not None else path
        what = f"cannot read image {path}: {exc}" if source is not None else f"cannot read image: {exc}"
        raise MediaError(where, field, what) from None


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image as :func:`open_rgba` gives it, from its header only."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
