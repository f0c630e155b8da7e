"""Audio is encoded once per segment (AAC-LC, ADTS) and split between chunks by whole AAC frames.

Independently encoded AAC chunks would each carry encoder priming and click at every boundary;
one continuous stream cut on frame boundaries decodes seamlessly, since the decoder sees every
frame in order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from .media import FFmpegProcess
from .timebase import AUDIO_RATE_HZ

__all__ = ["AAC_FRAME_SAMPLES", "PRIMING_SAMPLES", "encode_aac", "AdtsStream", "background_priority"]

AAC_FRAME_SAMPLES = 1024
# ffmpeg's native AAC encoder delays the signal by one frame (its first packet has pts -1024).
PRIMING_SAMPLES = 1024


def background_priority(pid: int = 0) -> None:
    """Lower the CPU priority of process ``pid`` (0: the calling thread) to nice 10: work that
    must finish, but after what the first media segments wait for. Best effort.

    On Linux nice is a thread's: every thread the process has now is lowered (ffmpeg 7 encodes
    in a thread of its own, which a call on the pid alone would leave as it was).
    """
    try:
        if pid == 0:
            if sys.platform != "linux":  # elsewhere a thread id is no process id
                return
            ids = [threading.get_native_id()]
        elif sys.platform == "linux":
            ids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        else:
            ids = [pid]  # the whole process
        for tid in ids:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, max(10, os.getpriority(os.PRIO_PROCESS, tid)))
            except OSError:
                pass  # ended meanwhile
    except (OSError, AttributeError, ValueError):
        pass


def encode_aac(
    samples: np.ndarray, out_path: Path, *, bitrate_kbps: int, urgent_s: float | None = None
) -> None:
    """Encode mono float32 samples at 48 kHz to stereo AAC-LC in an ADTS file, written out frame
    by frame as the encoder goes (readers may follow it with ``AdtsStream.parse(complete=False)``).

    Parameters
    ----------
    urgent_s : float, optional
        Encode this many seconds at the caller's priority, the rest at nice 10 (see
        :func:`background_priority`): the first media segments wait for their audio, the later
        ones are due seconds later, and on a busy machine the encoder then leaves the CPU to the
        video encoders the first seconds of a program on air wait for.
    """
    with FFmpegProcess(
        [
            "-f",
            "f32le",
            "-ar",
            str(AUDIO_RATE_HZ),
            "-ac",
            "1",
            "-i",
            "-",
            # -aac_coder fast: on speech at 96-128 kbps it is closer to the source than the default
            # twoloop (demo speech at 128k: SNR 44 vs 27 dB, log-spectral distance 1.4 vs 2.2 dB)
            # and 2.6x cheaper, CPU the video encoders share
            "-ac",
            "2",
            "-c:a",
            "aac",
            "-aac_coder",
            "fast",
            "-b:a",
            f"{bitrate_kbps}k",
            "-flush_packets",
            "1",
            "-f",
            "adts",
            str(out_path),
        ],  # frame by frame: chunks read it
        stdin=True,
        what="audio encoder",
    ) as ff:
        data = memoryview(np.ascontiguousarray(samples, dtype="<f4")).cast("B")
        if urgent_s is not None and urgent_s * AUDIO_RATE_HZ < samples.shape[0]:
            cut = int(urgent_s * AUDIO_RATE_HZ) * 4
            ff.write(data[:cut])
            # the encoder holds back its last few frames until more samples come: wait for those
            # before the last 0.25 s (measured: it holds 4-5 frames, 0.1 s)
            _wait_for_frames(out_path, AdtsStream.first_frame_at(Fraction(urgent_s) - Fraction(1, 4)), ff)
            background_priority(ff.proc.pid)
            data = data[cut:]
        ff.write(data)
        ff.finish()


def _wait_for_frames(path: Path, frames: int, ff: FFmpegProcess, timeout_s: float = 2.0) -> None:
    """Until the encoder has written ``frames`` AAC frames to ``path`` (or ended, or timed out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and ff.proc.poll() is None:
        try:
            if AdtsStream.parse(path.read_bytes(), name=str(path), complete=False).frame_count >= frames:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.005)


@dataclasses.dataclass(frozen=True)
class AdtsStream:
    """An ADTS file split into frames. Frame ``k`` presents samples from ``k*1024 - priming``."""

    data: bytes
    offsets: np.ndarray  # [shape=(n_frames + 1,)] byte offsets

    @classmethod
    def read(cls, path: Path) -> AdtsStream:
        return cls.parse(Path(path).read_bytes(), name=str(path))

    @classmethod
    def parse(cls, data: bytes, *, name: str = "ADTS", complete: bool = True) -> AdtsStream:
        """Split ``data`` into frames; with ``complete=False`` (a file still being written)
        a last frame not wholly there yet is left out."""
        offsets = [0]
        i = 0
        while i + 7 <= len(data):
            if data[i] != 0xFF or data[i + 1] & 0xF6 != 0xF0:
                raise ValueError(f"{name}: lost ADTS sync at byte {i}")
            length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
            if not complete and i + length > len(data):
                break
            i += length
            offsets.append(i)
        return cls(data=data, offsets=np.asarray(offsets, dtype=np.int64))

    @property
    def frame_count(self) -> int:
        return len(self.offsets) - 1

    def frames_for(self, t0_s: Fraction, t1_s: Fraction | None) -> tuple[int, int]:
        """AAC frames whose first presented sample lies in [t0, t1); the first chunk also takes
        the priming frame, the last chunk (``t1=None``) takes all that remain."""
        k0 = 0 if t0_s == 0 else self.first_frame_at(t0_s)
        k1 = self.frame_count if t1_s is None else min(self.frame_count, self.first_frame_at(t1_s))
        return k0, k1

    @staticmethod
    def first_frame_at(t_s: Fraction) -> int:
        """The first frame whose first presented sample lies at or after ``t_s``."""
        return max(0, math.ceil((t_s * AUDIO_RATE_HZ + PRIMING_SAMPLES) / AAC_FRAME_SAMPLES))

    def pts_s(self, k: int) -> Fraction:
        """Presentation time of frame ``k``'s first sample (negative for the priming frame)."""
        return Fraction(k * AAC_FRAME_SAMPLES - PRIMING_SAMPLES, AUDIO_RATE_HZ)

    def frame(self, k: int) -> bytes:
        return self.data[int(self.offsets[k]) : int(self.offsets[k + 1])]
