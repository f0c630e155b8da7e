"""Kept for imports written before :mod:`avatarrender.rendition` owned the rendered folder.

Everything here is a re-export: the MPEG-TS constants, the one atomic write, the rendition's
playlist and codecs string live in :mod:`avatarrender.rendition`. Import from there.
"""
from __future__ import annotations

from .rendition import TS_PACKET_BYTES as TS_PACKET
from .rendition import _dump_json as dump_json
from .rendition import atomic_write, codecs_string, continue_cc, media_playlist

__all__ = [
    "TS_PACKET",
    "continue_cc",
    "atomic_write",
    "media_playlist",
    "codecs_string",
    "dump_json",
]
