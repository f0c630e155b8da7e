"""ffmpeg at the edges: the bundled binary, probing, audio decoding and reaped processes.

The ffmpeg binary is imageio-ffmpeg's; there is no ffprobe, so an audio file is probed by
parsing ``ffmpeg -i`` and a video with PyAV (the libraries that decode it in the render).
Every process started here is waited for, and killed if it will not stop.
"""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from collections import OrderedDict
import functools
import math
import re
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from .errors import FFmpegError, MediaError

__all__ = [
    "ffmpeg_exe",
    "VideoInfo",
    "probe_video",
    "check_video_decodes",
    "audio_duration_s",
    "audio_lead_s",
    "channels_cancel",
    "read_audio",
    "FFmpegProcess",
]


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg (or ``IMAGEIO_FFMPEG_EXE`` if set)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration_s: float
    has_audio: bool = False  # the file also carries an audio stream


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")


def _probe_text(path: Path) -> str:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )
    return proc.stderr


# ffmpeg's closing lines that say only that it stopped, not why
_FFMPEG_GENERIC = (
    "At least one output file must be specified",
    "Error opening output file",
    "Conversion failed!",
    "Error opening input file",
)


def _ffmpeg_reason(stderr: str) -> str:
    """The line of ffmpeg's messages that says why it failed (its last lines say only that)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    if any("matches no streams" in ln for ln in lines):
        return "it has no audio stream"
    lines = [re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\] ", "", ln) for ln in lines]  # "[in#0 @ 0x55d0...] "
    said = [ln for ln in lines if not ln.startswith(_FFMPEG_GENERIC)]
    return (said or lines or ["ffmpeg said nothing"])[-1]


def video_stream(container: Any) -> Any:
    """A clip's picture: its first video stream that is not an attached picture (the cover art
    of an audio file, a thumbnail: one still, no frames); None without one."""
    import av

    still = av.stream.Disposition.attached_pic
    return next((s for s in container.streams.video if not s.disposition & still), None)


def probe_video(path: str | Path) -> VideoInfo:
    """Size, rate and duration of the first video stream, once its first frame has decoded with
    the libraries the render decodes it with (PyAV's); ``MediaError`` if it has none or it does
    not decode."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            if stream is None:
                covers = " (only a cover picture: an audio file?)" if container.streams.video else ""
                raise MediaError(path, None, f"not a video: it has no video stream{covers}")
            if next(container.decode(stream), None) is None:
                raise MediaError(path, None, "not a readable video: no frame decodes")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if container.duration:
                duration_s = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                duration_s = float(stream.duration * stream.time_base)
            else:
                duration_s = 0.0
            if duration_s <= 0:
                raise MediaError(path, None, "not a video: it has no duration (a still image?)")
            return VideoInfo(
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=float(rate) if rate else 0.0,
                duration_s=duration_s,
                has_audio=bool(container.streams.audio),
            )
    except av.error.FFmpegError as exc:
        raise MediaError(path, None, f"not a readable video ({exc.strerror or exc})") from None


def check_video_decodes(path: str | Path, *, from_s: float = 0.0, until_s: float | None = None) -> None:
    """Check that a clip decodes over the part of it a segment shows (``from_s`` to ``until_s``
    in the file, default all of it), cheaply: every packet there is read and every keyframe
    decoded. A clip cut short breaks where it ends: a file with an index (MP4, MOV) must hold
    the packets its index promises over that part, its last one whole; a file without one
    (MPEG-TS, Matroska) has its last group of pictures decoded frame by frame when the part
    reaches its end. ``MediaError`` says at what time it breaks.

    Cost: about 0.05 s for the demo's 12 s 640x360 clip; only the part shown is read, so a long
    recording of which a segment shows 20 s costs what 20 s of it do (the whole 12 s 720p clip of
    one keyframe every 250 frames: 0.3 s when its last group of pictures was decoded). A file
    checked before over the same part (same inode, size and modification time) is not read again.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        ident = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, from_s, until_s)
    except OSError:
        ident = None
    if ident is not None and ident in _DECODES_OK:
        return
    _check_video_decodes(path, from_s, until_s)
    if ident is not None:
        _DECODES_OK.add(ident)


_DECODES_OK: set[tuple] = set()  # clips that decoded to their end (a render service sees them again)


def _check_video_decodes(path: Path, from_s: float, until_s: float | None) -> None:
    import av

    at_s = from_s
    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            ctx = stream.codec_context
            ctx.thread_count = 1  # the render's workers are starting meanwhile
            ctx.skip_frame = "NONKEY"
            tb = stream.time_base
            # the file's times from its first frame's (an MPEG-TS clip starts at 1.4 s, say)
            t0 = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
            if from_s > 0 and tb:
                container.seek(int((from_s + t0) / tb), stream=stream, backward=True)
            indexed = bool(stream.frames) and bool(stream.duration) and tb is not None
            end_s = float(stream.duration * tb) if indexed else None
            until = until_s if until_s is not None else float("inf")
            last_key_pts = last = None
            reached_end = True
            for packet in container.demux(stream):
                if not packet.size:
                    continue  # the demuxer's flush at the end
                last = packet
                if packet.pts is not None and tb is not None:
                    at_s = max(at_s, float(packet.pts * tb) - t0)
                if packet.dts is not None and tb is not None and float(packet.dts * tb) - t0 > until:
                    reached_end = False  # past the part shown: the file goes on
                    break
                if packet.is_keyframe:
                    last_key_pts = packet.pts
                    packet.decode()
            if reached_end and last is not None and last.is_corrupt:
                raise MediaError(path, None, f"the clip breaks at about {at_s:.2f} s: its last packet is cut")
            if reached_end and end_s is not None:
                frame_s = 1 / float(stream.average_rate or stream.guessed_rate or 30)
                if at_s + frame_s < min(until, end_s) - max(2 * frame_s, 0.25):
                    raise MediaError(
                        path,
                        None,
                        f"the clip breaks at about {at_s:.2f} s: the file ends there, its index "
                        f"says {end_s:.2f} s (cut short?)",
                    )
            if indexed or not reached_end or last_key_pts is None:
                return  # (no keyframe: probe_video decoded the first frame)
            ctx.skip_frame = "DEFAULT"
            container.seek(last_key_pts, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None:
                    at_s = frame.time - t0
    except av.error.FFmpegError as exc:
        raise MediaError(
            path, None, f"the clip breaks at about {at_s:.2f} s: {exc.strerror or exc}"
        ) from None


def audio_duration_s(path: str | Path) -> float:
    """Duration of an audio file in seconds; ``MediaError`` if it cannot be decoded."""
    path = Path(path)
    declared = _wav_declared_s(path)
    if declared is not None:
        return declared
    try:
        import soundfile

        info = soundfile.info(str(path))
        if info.frames > 0:
            return info.frames / info.samplerate
    except Exception:  # not a libsndfile format: ask ffmpeg
        pass
    own = _audio_stream_duration_s(path)
    if own is not None:
        return own
    text = _probe_text(path)
    d = _DURATION.search(text)
    if "Stream #" in text and "Audio:" not in text:
        raise MediaError(path, None, "not an audio file: it has no audio stream")
    if "Audio:" in text and (not d or not any(map(float, d.groups()))):
        raise MediaError(path, None, "holds no sound (an audio header and nothing after it)")
    if "Audio:" not in text or not d:
        raise MediaError(path, None, f"not a readable audio file ({_ffmpeg_reason(text)})")
    h, m, s = d.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


#: a WAV ``data`` size this large is a streaming writer's "to the end" (a 2 GiB WAV is 3 hours
#: of 48 kHz stereo; one cut that short is not what a TTS hands over)
_STREAMED_WAV_SIZE = 0x7FFF0000


def _wav_declared_s(path: Path) -> float | None:
    """The length a RIFF WAVE file's ``data`` chunk declares, in seconds (libsndfile reports the
    frames present, so a file cut off in its copy looks whole); None for other files, and for a
    size a streaming writer leaves unset or sets as large as it may (0, 0xFFFFFFFF, 0x7FFFFFFF
    and near them: a TTS that writes its WAV while it speaks) and RF64's."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            rate = align = 0
            for _ in range(64):  # chunks before the data: fmt, LIST, fact, bext...
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if kind == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    if len(fmt) < 16:
                        return None
                    rate, align = struct.unpack("<I", fmt[4:8])[0], struct.unpack("<H", fmt[12:14])[0]
                elif kind == b"data":
                    if not rate or not align or size == 0 or size >= _STREAMED_WAV_SIZE:
                        return None
                    return size // align / rate
                else:
                    fh.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def cut_short(header_s: float, decoded_s: float) -> str | None:
    """What to say of a sound file whose header promises over 0.5 s more than decodes (the sound
    that decodes is what airs, not the header's), else None."""
    if header_s - decoded_s <= 0.5:
        return None
    return f"{decoded_s:.2f} s of sound decode, where its header says {header_s:.2f} s (a damaged or cut-off file?)"


def _audio_stream_duration_s(path: Path) -> float | None:
    """The first audio stream's own duration in a file that also holds a picture (a video's
    sound may end before its picture: the container's duration is the longer one); None when
    there is no picture, or the stream does not say."""
    import av

    try:
        with av.open(str(path)) as container:
            audio = next((s for s in container.streams if s.type == "audio"), None)
            if audio is None or not any(s.type == "video" for s in container.streams):
                return None
            if audio.duration and audio.time_base:
                return float(audio.duration * audio.time_base)
    except Exception:  # noqa: BLE001 - not for PyAV: ffmpeg's probe decides
        pass
    return None


def audio_lead_s(path: str | Path) -> float:
    """Seconds from a clip's start (the picture's time 0, as the TV decoder counts it) to its
    first sound: a clip whose audio stream starts after its video (a phone's, a screen
    recorder's, an MPEG-TS capture's) is heard that much later. 0 when it cannot tell."""
    import av

    try:
        with av.open(str(path)) as container:
            start = Fraction(container.start_time or 0, 1_000_000)
            for frame in container.decode(audio=0):  # its first frame, encoder priming skipped
                if frame.pts is None or frame.time_base is None:
                    return 0.0
                return max(0.0, float(frame.pts * frame.time_base - start))
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        pass
    return 0.0


# The mono mix this far (dB) under the loudest channel: the channels cancel. A lossy codec leaves
# a residue of an inverted channel (AAC: -41 dB), so the test is relative, not digital silence;
# speech panned or spread across channels loses at most 6 dB
_CANCEL_DB = 20.0
# a mix this loud (RMS, full scale 1) is speech as it comes: no need to decode the channels
_SURELY_LOUD_RMS = 0.01


def channels_cancel(path: str | Path, mono: np.ndarray) -> bool:
    """Whether ``path``'s channels cancel when mixed to mono (one inverted: it sounds right on
    speakers and airs silent): ``mono`` (its :func:`read_audio` samples) is :data:`_CANCEL_DB`
    under its loudest channel over the first minute."""
    # (summed a million samples at a time: a float64 square of a long track is 8 bytes a sample)
    step = 1 << 20
    squares = sum(
        float(np.square(mono[i : i + step], dtype=np.float64).sum()) for i in range(0, mono.size, step)
    )
    mono_rms = math.sqrt(squares / mono.size) if mono.size else 0.0
    if not mono.size or mono_rms >= _SURELY_LOUD_RMS:
        return False
    import av

    sums: np.ndarray | None = None
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                x = frame.to_ndarray().astype(np.float64)
                if frame.format.is_packed:
                    x = x.reshape(-1, len(frame.layout.channels)).T
                sums = (x**2).sum(axis=1) if sums is None else sums + (x**2).sum(axis=1)
                n += x.shape[1]
                if n >= 60 * frame.sample_rate:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return False
    if sums is None or len(sums) < 2 or n == 0:
        return False
    loudest = float(np.sqrt(sums.max() / n))
    return loudest > 1e-3 and mono_rms < loudest * 10 ** (-_CANCEL_DB / 20)


# Files read_audio decoded lately, by (path, inode, size, mtime, ctime, rate), least recently used out
# first: a render checks its speech then analyses it (one decode), and a long-running process (the
# render service) decodes a channel's TV clips once, not for every submission (0.045 s each, on
# the way to the first media segment's audio). Bounded in bytes; a longer file is not kept.
_AUDIO_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_KEEP_AUDIO_BYTES = 64 << 20  # 5.8 min at 48 kHz in all


def read_audio(path: str | Path, *, sample_rate_hz: int) -> np.ndarray:
    """Decode any audio file to mono float32 at ``sample_rate_hz`` with ffmpeg.

    Returns
    -------
    np.ndarray [shape=(n_samples,), dtype=float32]
        A new array the caller may change.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        # ctime too: a file rewritten in place with its mtime kept (cp -p, rsync -t) is new
        ident = (
            os.path.realpath(path),
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            sample_rate_hz,
        )
    except OSError:
        ident = None
    kept = _AUDIO_CACHE.get(ident) if ident is not None else None
    if kept is not None:
        _AUDIO_CACHE.move_to_end(ident)
        return kept.copy()
    y = _decode_audio(path, sample_rate_hz)
    if ident is not None and y.nbytes <= _KEEP_AUDIO_BYTES:
        _AUDIO_CACHE[ident] = y.copy()
        while sum(a.nbytes for a in _AUDIO_CACHE.values()) > _KEEP_AUDIO_BYTES:
            _AUDIO_CACHE.popitem(last=False)
    return y


# Containers whose first audio stream PyAV decodes, downmixes and resamples to the very samples
# of the ffmpeg command below (tested, codec by codec): no process to start. 20 s of speech: 0.06 s
# in this process against 0.13-0.2 s for the command (the bundled ffmpeg's own start-up, a 4 MB
# pipe), on the way to a render's first frame and to the render service's first segment. MP4/MOV
# stay with the command: it trims AAC's end padding by the edit list, which PyAV's frames keep.
_IN_PROCESS_FORMATS = frozenset({"wav", "w64", "flac", "ogg", "mp3", "aiff"})


def _decode_in_process(path: Path, sample_rate_hz: int) -> np.ndarray | None:
    """The samples of ``-ac 1 -ar RATE -f f32le`` for a file of :data:`_IN_PROCESS_FORMATS`; None
    for anything else, or anything PyAV stumbles on (the command then decides, as it always did:
    it skips a corrupt packet where PyAV stops)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not set(container.format.name.split(",")) & _IN_PROCESS_FORMATS or not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)
            # written into one array as the frames come (a list of frames, then their
            # concatenation, held the track twice), sized by the container's duration
            out = _Samples(_expected_samples(container, stream, sample_rate_hz))
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    out.add(resampled.to_ndarray().reshape(-1))
            for resampled in resampler.resample(None):
                out.add(resampled.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return out.result()


def _expected_samples(container, stream, sample_rate_hz: int) -> int:
    """Samples a decode of ``stream`` at ``sample_rate_hz`` will give, as its container says
    (a little over: a guess to size the array, not a promise); 0 when it does not say."""
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000
    else:
        return 0
    if not 0 < seconds < 24 * 3600:  # a header's nonsense: grown as it comes instead
        return 0
    return int(seconds * sample_rate_hz) + sample_rate_hz // 10 + 4096


class _Samples:
    """A float32 array filled as decoded frames come: ``expected`` samples made at once (pages
    the decode never reaches are never touched), grown by half again if they run over."""

    def __init__(self, expected: int):
        self._a = np.empty(max(expected, 1 << 16), dtype=np.float32)
        self._n = 0

    def add(self, x: np.ndarray) -> None:
        end = self._n + x.shape[0]
        if end > self._a.shape[0]:
            grown = np.empty(max(end, self._a.shape[0] * 3 // 2), dtype=np.float32)
            grown[: self._n] = self._a[: self._n]
            self._a = grown
        self._a[self._n : end] = x
        self._n = end

    def result(self) -> np.ndarray:
        """The samples, in an array of their own size (a copy only when the guess was well over)."""
        a, n = self._a, self._n
        self._a = np.zeros(0, dtype=np.float32)
        if n == a.shape[0]:
            return a
        if a.shape[0] - n <= max(1 << 16, n // 64):
            return a[:n]  # the pages past n were never written: no memory
        return a[:n].copy()


def _decode_audio(path: Path, sample_rate_hz: int) -> np.ndarray:
    y = _decode_in_process(path, sample_rate_hz)
    if y is not None:
        return y
    proc = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(sample_rate_hz),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise MediaError(
            path, None, f"cannot decode audio ({_ffmpeg_reason(proc.stderr.decode(errors='replace'))})"
        )
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def _grow_pipe(stream: IO[bytes] | None) -> None:
    """1 MiB pipe buffer: a 3 MB frame then crosses in 3 wake-ups instead of 48."""
    if stream is None:
        return
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default still works


class FFmpegProcess:
    """An ffmpeg child that is always reaped.

    Use as a context manager. stderr goes to a temporary file (a pipe could fill and block
    ffmpeg); on a non-zero exit :class:`FFmpegError` carries its tail. Leaving the block with an
    exception (Ctrl-C included) closes stdin, then terminates and kills ffmpeg if it lingers.
    """

    def __init__(
        self, args: Sequence[str], *, stdin: bool = False, stdout: bool = False, what: str = "ffmpeg"
    ):
        self.cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args]
        self.what = what
        self._err: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=self._err,
            start_new_session=False,
        )
        if stdin:
            _grow_pipe(self.proc.stdin)

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def stderr_text(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def write(self, data: memoryview | bytes) -> None:
        """Write to ffmpeg's stdin; a dead ffmpeg raises ``FFmpegError`` with its stderr."""
        try:
            self.stdin.write(data)
        except (BrokenPipeError, OSError):
            rc = self.proc.wait(timeout=30)
            raise FFmpegError(
                f"{self.what}: ffmpeg exited with {rc} while reading frames",
                cmd=self.cmd,
                stderr=self.stderr_text(),
            ) from None

    def finish(self, timeout_s: float = 600) -> None:
        """Close stdin, wait, and raise ``FFmpegError`` on a non-zero exit."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = self.proc.wait(timeout=timeout_s)
        if rc != 0:
            sig = f" (signal {signal.Signals(-rc).name})" if rc < 0 else ""
            raise FFmpegError(
                f"{self.what}: ffmpeg exited with {rc}{sig}", cmd=self.cmd, stderr=self.stderr_text()
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> FFmpegProcess:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.kill()  # a no-op when ffmpeg has already exited
        finally:
            self._err.close()
