"""Encoding: raw yuv420p frames piped to ffmpeg/libx264, muxed with the chunk's AAC frames into
MPEG-TS media segments; and the TV clip decoded by ffmpeg straight to yuv420p at the screen's size.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import FFmpegError
from .media import FFmpegProcess
from .spec import OutputSettings

__all__ = ["TVReader", "ChunkEncoder", "x264_args", "rawvideo_input_args"]


_BT709 = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
          "-color_range", "tv"]


def rawvideo_input_args(out: OutputSettings) -> list[str]:
    """Our raw yuv420p frames, tagged BT.709 limited range *as input*: tagged only on the
    output, ffmpeg inserts a colour conversion that costs about a third of x264's time."""
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{out.width}x{out.height}",
            "-framerate", f"{out.fps.numerator}/{out.fps.denominator}", *_BT709]


def x264_args(out: OutputSettings, *, threads: int | None) -> list[str]:
    """libx264 High, yuv420p, BT.709, a keyframe exactly on every media segment boundary."""
    g = str(out.frames_per_segment)
    args = [
        "-c:v", "libx264", "-preset", out.x264_preset, "-profile:v", "high",
        "-crf", f"{out.crf:g}", "-maxrate", f"{out.maxrate_kbps}k",
        "-bufsize", f"{out.maxrate_kbps * 2}k", "-pix_fmt", "yuv420p",
        "-g", g, "-keyint_min", g, "-sc_threshold", "0", *_BT709,
    ]
    if threads:
        args += ["-threads", str(threads)]
    return args


class TVReader:
    """Decodes the TV clips a chunk shows, one ffmpeg per contiguous run.

    Parameters
    ----------
    clip_paths : list of Path
    size : (w, h) of the screen, px (even)
    fps : output frame rate
    """

    def __init__(self, clip_paths: list[Path], size: tuple[int, int], fps: Fraction):
        self.clip_paths = clip_paths
        self.w, self.h = size
        self.fps = fps
        self._buf = np.empty(self.w * self.h * 3 // 2, dtype=np.uint8)
        n, q = self.w * self.h, self.w * self.h // 4
        self._planes = (self._buf[:n].reshape(self.h, self.w),
                        self._buf[n:n + q].reshape(self.h // 2, self.w // 2),
                        self._buf[n + q:].reshape(self.h // 2, self.w // 2))
        self._proc: FFmpegProcess | None = None
        self._last_ok = False

    def _start(self, clip: int, t_s: float, frames: int) -> None:
        self.close()
        # No colour-matrix conversion: swscale's bt601->bt709 path shifts dark greys by 2 levels;
        # clips keep their own YUV values (HD clips are bt709 already). Full range becomes tv.
        vf = (f"fps={self.fps.numerator}/{self.fps.denominator},"
              f"scale={self.w}:{self.h}:flags=bicubic:out_range=tv,format=yuv420p")
        self._proc = FFmpegProcess(
            ["-ss", f"{t_s:.6f}", "-i", str(self.clip_paths[clip]), "-map", "0:v:0", "-an",
             "-vf", vf, "-frames:v", str(frames), "-f", "rawvideo", "-"],
            stdout=True, what=f"TV clip decoder ({self.clip_paths[clip].name})",
        )
        self._proc.__enter__()

    def _read(self) -> None:
        view = memoryview(self._buf)
        got = 0
        while got < len(view):
            n = self._proc.stdout.readinto(view[got:])
            if not n:
                break
            got += n
        if got < len(view):
            if got == 0 and self._last_ok:
                return  # clip ended a frame early (rounding of its duration): hold the last frame
            proc = self._proc
            proc.proc.wait(timeout=30)
            raise FFmpegError("TV clip decoder gave a short frame", cmd=proc.cmd,
                              stderr=proc.stderr_text())
        self._last_ok = True

    def frames(self, clip: np.ndarray, time_s: np.ndarray) -> Iterator[tuple[np.ndarray, ...] | None]:
        """For each frame: the clip's yuv planes (a reused buffer), or None when the TV is off.

        Parameters
        ----------
        clip : np.ndarray [shape=(n,), dtype=int16]  clip index per frame, -1 off
        time_s : np.ndarray [shape=(n,)]  time inside the clip per frame
        """
        step = 1.0 / float(self.fps)
        n = len(clip)
        prev: tuple[int, float] | None = None
        i = 0
        try:
            while i < n:
                c = int(clip[i])
                if c < 0:
                    prev = None
                    yield None
                    i += 1
                    continue
                t = float(time_s[i])
                if prev is not None and prev[0] == c and abs(t - prev[1]) < step / 2:
                    yield self._planes  # hold: the same clip frame again
                elif prev is not None and prev[0] == c and abs(t - prev[1] - step) < step / 2:
                    self._read()
                    yield self._planes
                else:
                    # a new run: count the frames that advance one step at a time
                    j = i + 1
                    while j < n and clip[j] == c and abs(time_s[j] - time_s[j - 1] - step) < step / 2:
                        j += 1
                    self._last_ok = False
                    self._start(c, t, j - i)
                    self._read()
                    yield self._planes
                prev = (c, t)
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.__exit__(None, None, None)
            self._proc = None


class ChunkEncoder:
    """One ffmpeg per chunk, with one x264 encoder (one output) per media segment.

    A fresh encoder per media segment makes each segment depend on its own frames only (x264's
    rate control carries state from frame to frame), so the decoded output is the same whatever
    the chunk size or worker count. Sharing one ffmpeg process between them avoids a process
    start and a fresh address space per segment (measured: 20-25 % of the CPU at 1080p).

    Each segment's timestamps are offset to its place in the whole: its first frame is stamped
    at its start time (plus the mpegts muxer's constant 1.4 s), its audio at its AAC frames'
    own presentation times.

    Parameters
    ----------
    segments : list of (path, frames, t0_s, audio_path, audio_offset_s)
    """

    def __init__(self, out: OutputSettings,
                 segments: list[tuple[Path, int, Fraction, Path, Fraction]], *,
                 threads: int | None):
        args = [*rawvideo_input_args(out), "-i", "-"]
        for _, _, _, apath, aoff in segments:
            args += ["-itsoffset", f"{float(aoff):.9f}", "-f", "aac", "-i", str(apath)]
        n = len(segments)
        graph, first = [], 0
        if n > 1:
            graph.append("[0:v]split=%d%s" % (n, "".join(f"[s{i}]" for i in range(n))))
        for i, (_, frames, _, _, _) in enumerate(segments):
            src = f"[s{i}]" if n > 1 else "[0:v]"
            graph.append(f"{src}trim=start_frame={first}:end_frame={first + frames},"
                         f"setpts=PTS-STARTPTS[v{i}]")
            first += frames
        args += ["-filter_complex", ";".join(graph)]
        for i, (path, _, t0, _, _) in enumerate(segments):
            args += ["-map", f"[v{i}]", "-map", f"{i + 1}:a", *x264_args(out, threads=threads),
                     "-c:a", "copy", "-output_ts_offset", f"{float(t0):.9f}",
                     "-avoid_negative_ts", "disabled", "-f", "mpegts", str(path)]
        self.proc = FFmpegProcess(args, stdin=True, what=f"video encoder ({segments[0][0].name}..)")

    def write(self, data: np.ndarray) -> None:
        self.proc.write(memoryview(data))

    def finish(self) -> None:
        self.proc.finish()

    def __enter__(self) -> ChunkEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.__exit__(*exc)
