"""One exception family. Every message names the file and, where there is one, the field."""
from __future__ import annotations

import builtins
from pathlib import Path

__all__ = [
    "AvatarRenderError",
    "SpecError",
    "MediaError",
    "FFmpegError",
    "AssetNotFoundError",
    "RenderLockedError",
    "DiskFullError",
]


class AvatarRenderError(Exception):
    """Base of every error avatarrender raises on purpose. CLI exit code 2 for input errors."""

    exit_code = 2


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
