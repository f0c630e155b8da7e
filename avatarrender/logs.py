"""The log lines of the long-running commands (playout, serve) and of the renders they start."""

from __future__ import annotations

import logging
import time

__all__ = ["log_to_stderr"]


class _UTCFormatter(logging.Formatter):
    """``2026-12-03T07:20:28.512Z INFO ...``: UTC, as the messages' own times are, and with its
    zone (local time without an offset read the same for two events in a DST fall-back hour)."""

    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{int(record.msecs):03d}Z"
        )


def log_to_stderr(level: int) -> None:
    """Log at ``level`` to stderr, one stamped line each (as ``logging.basicConfig`` would, if
    nothing set logging up before)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
