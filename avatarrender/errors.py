"""One exception family. Every message names the file and, where there is one, the field."""

from __future__ import annotations

import builtins
import os
import sys
import warnings
from pathlib import Path

__all__ = [
    "AvatarRenderError",
    "SpecError",
    "MediaError",
    "FFmpegError",
    "AssetNotFoundError",
    "RenderLockedError",
    "DiskFullError",
    "OutputError",
    "ClusterError",
    "StopRender",
]

_PACKAGE = os.path.dirname(__file__) + os.sep


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointed at the first caller outside this package (what Python 3.12's
    ``skip_file_prefixes`` does), however deep inside it the warning was found: a script sees its
    own ``render(...)`` line, not ours."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def _rebuild(cls: type, args: tuple, state: dict) -> BaseException:
    """Unpickle an error of ours without calling its ``__init__`` (whose signature differs from
    ``args``): the same message, class and attributes as the one raised in the worker."""
    # OSError's __new__ for the OSError kinds: the first __new__ in their MRO is ValueError's,
    # which refuses a class whose layout is OSError's
    new = OSError.__new__ if issubclass(cls, OSError) else cls.__new__
    exc = new(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class AvatarRenderError(Exception):
    """Base of every error avatarrender raises on purpose. CLI exit code 2 for input errors.

    Picklable whatever a subclass's ``__init__`` takes: an error raised in a worker process
    (loky, Dask) is rebuilt in the parent as itself, not as a broken pool.
    """

    exit_code = 2

    def __reduce__(self):
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class SpecError(AvatarRenderError, ValueError):
    """A segment.yaml (or schedule) that is malformed or inconsistent.

    ``str(err)`` is one line: ``FILE: FIELD: what is wrong``.
    """

    def __init__(self, file: str | Path | None, field: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        parts = [p for p in (self.file, field) if p]
        super().__init__(": ".join(parts + [message]))


class AssetNotFoundError(SpecError, builtins.FileNotFoundError):
    """A file the spec names does not exist. Catch it as either class."""


class MediaError(SpecError):
    """An image, audio file or clip that exists but cannot be read."""


class FFmpegError(AvatarRenderError, RuntimeError):
    """ffmpeg exited non-zero or died; carries the command and its stderr tail."""

    exit_code = 1

    def __init__(self, message: str, *, cmd: list[str] | None = None, stderr: str = ""):
        self.cmd = cmd or []
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-12:])
        super().__init__(message + (f"\nffmpeg said:\n{tail}" if tail else ""))


class RenderLockedError(AvatarRenderError):
    """Another render of the same output holds the lock."""

    exit_code = 3


class DiskFullError(AvatarRenderError, OSError):
    """The output's file system is full. What was finished before stays valid."""

    exit_code = 1


class StopRender(AvatarRenderError):
    """Raised by a render's ``progress`` or ``on_publish`` to stop it and keep its workers: the
    chunks not yet begun are skipped, those running finish unpublished, then this is raised from
    :func:`avatarrender.render` (any other error a callback raises ends it at once, and joblib then ends the
    pool's workers: a warm render service withdrawing a submission lost them)."""


class ClusterError(AvatarRenderError):
    """The Dask cluster to render on cannot be used: no scheduler answers, or it has no worker."""

    exit_code = 1


class OutputError(AvatarRenderError, OSError):
    """The output path cannot be used: it is a file or a folder that is not a render (refused
    unless forced, exit 2), or it cannot be written (read-only, no permission: exit 1)."""

    exit_code = 2
