"""Checks of the installation: ``python -m avatarrender.doctor``.

Run by ``scripts/setup.sh`` after every install, so a broken environment fails loudly there
rather than at 3 a.m. in a render.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import sys

__all__ = ["check_pillow_simd", "main"]


def check_pillow_simd() -> str:
    """Return Pillow-SIMD's version; raise ``RuntimeError`` if ``PIL`` is anything else."""
    try:
        simd = md.distribution("pillow-simd")
    except md.PackageNotFoundError:
        raise RuntimeError("Pillow-SIMD is not installed: run scripts/setup.sh") from None
    try:
        stock = md.distribution("pillow")
    except md.PackageNotFoundError:
        stock = None
    if stock is not None:
        raise RuntimeError(
            f"stock pillow {stock.version} is installed beside Pillow-SIMD {simd.version} and "
            "overwrites its PIL/: `pip uninstall -y pillow pillow-simd` and run scripts/setup.sh again"
        )
    import PIL

    if PIL.__version__ != simd.version:
        raise RuntimeError(f"PIL {PIL.__version__} is not Pillow-SIMD {simd.version}")
    return simd.version


def main(argv: list[str] | None = None) -> int:
    try:
        version = check_pillow_simd()
    except RuntimeError as exc:
        print(f"avatarrender doctor: {exc}", file=sys.stderr)
        return 1
    import imageio_ffmpeg

    from PIL import features

    from .text import FALLBACK_FONTS

    print(f"Pillow-SIMD {version}; ffmpeg {imageio_ffmpeg.get_ffmpeg_exe()}")
    missing = [p for p in FALLBACK_FONTS if not os.path.isfile(p)]
    if not features.check("raqm"):
        print("avatarrender doctor: Pillow-SIMD has no libraqm: right-to-left captions are not "
              "shaped (install libraqm-dev and run scripts/setup.sh again)", file=sys.stderr)
    if missing:
        print(f"avatarrender doctor: caption fallback fonts missing: {', '.join(missing)}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
