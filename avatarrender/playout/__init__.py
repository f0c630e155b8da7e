"""Live playout: stitch rendered segments into a low-latency live HLS channel (see engine.py)."""

from __future__ import annotations

from avatarrender.playout.engine import Playout, prepare_filler
from avatarrender.playout.playlist import LivePlaylist, master_playlist
from avatarrender.playout.render_ahead import Renderer, RenderJob
from avatarrender.playout.schedule import Schedule, Scheduler, load_schedule
from avatarrender.playout.server import PlayoutServer, serve_in_thread

__all__ = [
    "Playout",
    "prepare_filler",
    "LivePlaylist",
    "master_playlist",
    "Schedule",
    "Scheduler",
    "load_schedule",
    "PlayoutServer",
    "serve_in_thread",
    "Renderer",
    "RenderJob",
]
