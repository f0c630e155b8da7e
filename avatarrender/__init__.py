"""avatarrender: render 2D avatar segments ahead of air time into HLS, and play them out live.

The public API (each name is imported on first use, so ``import avatarrender`` stays cheap)::

    import avatarrender

    manifest = avatarrender.render("segment.yaml", "out/")      # a path or a Spec
    spec = avatarrender.load_spec("segment.yaml")
    rgb = avatarrender.preview(spec, at_s=1.5)                 # np.ndarray [shape=(h, w, 3)]
    y, sr = avatarrender.lipsync.load_audio("speech.wav")
    track = avatarrender.lipsync.mouth_track(y, sr, fps=30)    # np.ndarray [shape=(n_frames,)]
    avatarrender.run_playout("schedule.yaml", "live/", serve="127.0.0.1:8080")  # until stopped
    avatarrender.submit("segment.yaml", "inbox/")              # to a RenderService's inbox
"""

import logging as _logging
import os
from importlib import import_module
from typing import TYPE_CHECKING

# Before numpy loads (in any process that imports us: the CLI, the workers, a user's script): its
# OpenBLAS would start a thread per core that spins after each small product of the analysis,
# taking CPU from the render's workers (2-3 % of a render here). A value already set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

# PyAV hands libav's messages to the "libav" logger once a level is set; with no handler,
# Python's last-resort handler would print them under our one-line errors (which carry them).
_logging.getLogger("libav").addHandler(_logging.NullHandler())

# name -> module that defines it. ``render`` and ``lipsync`` are modules: ``avatarrender.render``
# is callable (``avatarrender.render(spec, out_dir)``, see :mod:`avatarrender.render`) and
# ``avatarrender.lipsync`` holds the lip-sync functions (``load_audio``, ``mouth_track``, ...).
_LAZY = {
    "render": None,
    "lipsync": None,
    "load_spec": "spec",
    "Spec": "spec",
    "preview": "api",
    "run_playout": "api",
    "Playout": "playout.engine",
    "load_schedule": "playout.schedule",
    "RenderService": "service",
    "submit": "service",
    "AvatarRenderError": "errors",
    "SpecError": "errors",
    "AssetNotFoundError": "errors",
    "MediaError": "errors",
    "FFmpegError": "errors",
    "OutputError": "errors",
    "RenderLockedError": "errors",
    "DiskFullError": "errors",
    "SpecWarning": "spec",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # what a type checker sees of the names imported on first use
    from . import lipsync  # noqa: F401
    from .api import preview, run_playout  # noqa: F401
    from .errors import (  # noqa: F401
        AssetNotFoundError,
        AvatarRenderError,
        DiskFullError,
        FFmpegError,
        MediaError,
        OutputError,
        RenderLockedError,
        SpecError,
    )
    from .playout.engine import Playout  # noqa: F401
    from .playout.schedule import load_schedule  # noqa: F401
    from .render import render  # noqa: F401 the module is callable as this function (see render.py)
    from .service import RenderService, submit  # noqa: F401
    from .spec import Spec, SpecWarning, load_spec  # noqa: F401


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'avatarrender' has no attribute {name!r}")
    where = _LAZY[name]
    module = import_module(f"{__name__}.{where or name}")
    value = module if where is None else getattr(module, name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
