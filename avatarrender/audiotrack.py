"""The segment's audio track: encoded once into AAC while the chunks render, and cut per media segment.

The main process encodes the whole track (:func:`encode_track`) into ``NAME.part``, frame by
frame, then renames it to ``NAME``; on failure it leaves ``NAME.failed``. Each chunk reads it
through :class:`AudioSource`, which waits until the AAC frames a media segment needs are written.
Encoding once (not per chunk) keeps AAC priming samples out of the chunk boundaries.
"""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio import AdtsStream, encode_aac
from .encode import SegmentJob
from .errors import AvatarRenderError

__all__ = ["AudioSource", "encode_track", "part_path", "failed_path", "AUDIO_STALL_S"]

_ADTS: dict[str, AdtsStream] = {}

# A chunk waiting for the AAC track gives up when the file has not grown for this long.
AUDIO_STALL_S = 120.0


def part_path(path: Path) -> Path:
    """Where the track at ``path`` grows while it is encoded."""
    return path.with_name(path.name + ".part")


def failed_path(path: Path) -> Path:
    """The marker left when encoding the track at ``path`` failed (waiting chunks stop)."""
    return path.with_name(path.name + ".failed")


class AudioSource:
    """A chunk's view of the segment's AAC track, which may still be being encoded.

    The main process encodes the track once into ``NAME.part`` frame by frame while the first
    chunks render, then renames it to ``NAME``; a media segment waits (at the end of its
    video) until the frames it needs are written. On shared storage the same works for
    cluster workers.
    """

    def __init__(self, path: Path):
        self.path = path

    def _until(self, frames: int | None) -> AdtsStream:
        key = str(self.path)
        if key in _ADTS:
            return _ADTS[key]
        size, since = -1, time.monotonic()
        while True:
            if self.path.is_file():
                _ADTS.clear()
                adts = _ADTS[key] = AdtsStream.read(self.path)
                return adts
            if failed_path(self.path).exists():
                raise AvatarRenderError(f"{self.path.name}: the audio encoder failed")
            try:
                now = part_path(self.path).stat().st_size
            except FileNotFoundError:
                now = 0  # not started yet, or renamed just now
            if now != size:  # grown: are the frames it needs there yet?
                size, since = now, time.monotonic()
                if frames is not None and now:
                    try:
                        data = part_path(self.path).read_bytes()
                    except FileNotFoundError:
                        continue  # renamed meanwhile: the finished file is there
                    adts = AdtsStream.parse(data, name=str(self.path), complete=False)
                    if adts.frame_count >= frames:
                        return adts
            elif time.monotonic() - since > AUDIO_STALL_S:
                raise AvatarRenderError(
                    f"{self.path}: the audio track stopped growing ({size} bytes for {AUDIO_STALL_S:.0f} s)"
                )
            time.sleep(0.01)

    def __call__(self, job: SegmentJob) -> tuple[list[bytes], Fraction]:
        needed = None if job.end_s is None else AdtsStream.first_frame_at(job.end_s)
        adts = self._until(needed)
        k0, k1 = adts.frames_for(job.start_s, job.end_s)
        return [adts.frame(k) for k in range(k0, k1)], adts.pts_s(k0)


def encode_track(
    samples: np.ndarray, path: Path, bitrate_kbps: int, *, urgent_s: float | None = None
) -> None:
    """Encode into ``NAME.part`` (chunks follow it as it grows), then rename to ``NAME``; on
    failure leave ``NAME.failed`` so that waiting chunks stop. ``urgent_s``: see
    :func:`~avatarrender.audio.encode_aac`."""
    try:
        encode_aac(samples, part_path(path), bitrate_kbps=bitrate_kbps, urgent_s=urgent_s)
        os.replace(part_path(path), path)
    except BaseException:
        try:
            failed_path(path).touch()
        except OSError:
            pass
        raise
