"""Reading our output back with FFmpeg's own libraries (PyAV) and the bundled ffmpeg binary."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import av
import numpy as np

from avatarrender.media import ffmpeg_exe


def parse_playlist(path: Path) -> dict:
    """A strict-enough HLS media playlist parser for our tests."""
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", "playlist must start with #EXTM3U"
    tags: dict[str, str] = {}
    segments = []
    pending = None
    for ln in lines[1:]:
        if ln.startswith("#EXTINF:"):
            pending = float(ln[8:].split(",")[0])
        elif ln.startswith("#EXT-X-") and ":" in ln:
            k, v = ln[1:].split(":", 1)
            tags[k] = v
        elif ln.startswith("#EXT-X-"):
            tags[ln[1:]] = ""
        elif ln and not ln.startswith("#"):
            assert pending is not None, f"URI {ln} without #EXTINF"
            segments.append((ln, pending))
            pending = None
    return {"tags": tags, "segments": segments, "text": text}


def decode_video(path: Path, fmt: str = "rgb24") -> np.ndarray:
    """All frames [shape=(n, h, w, channels)] in presentation order: rgb24, or gray (the Y plane)."""
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if fmt == "gray":
                frames.append(f.to_ndarray(format="yuv420p")[: f.height, :, None])
            else:
                frames.append(f.to_ndarray(format=fmt))
    return np.stack(frames)


def frame_hashes(path: Path) -> list[str]:
    """md5 of each decoded yuv420p frame (ffmpeg's framemd5 muxer)."""
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ln.rsplit(",", 1)[1].strip() for ln in out.splitlines() if ln and not ln.startswith("#")]


def yuv420p_frames(path: Path, size: int) -> list[bytes]:
    """Each decoded video frame of ``path`` as yuv420p bytes (``size`` a frame), by the bundled
    ffmpeg, which must say nothing at ``-v error`` (a decoder's complaint raises)."""
    run = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-",
        ],
        capture_output=True,
    )
    if run.returncode or run.stderr:
        raise AssertionError(f"{path}: ffmpeg says {run.stderr.decode(errors='replace').strip()!r}")
    return [run.stdout[i : i + size] for i in range(0, len(run.stdout), size)]


def decode_audio(path: Path, sample_rate_hz: int = 48000) -> np.ndarray:
    """Decoded audio, mono mix, float32."""
    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-ac",
            "1",
            "-ar",
            str(sample_rate_hz),
            "-f",
            "f32le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def stream_facts(path: Path) -> dict:
    """ffprobe-level facts of an HLS rendition or a media file, from demuxing every packet."""
    facts: dict = {}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        cc = v.codec_context
        facts.update(
            codec=cc.name,
            profile=cc.profile,
            width=cc.width,
            height=cc.height,
            pix_fmt=cc.pix_fmt,
            fps=v.average_rate,
            audio_codec=a.codec_context.name,
            audio_profile=a.codec_context.profile,
            sample_rate=a.sample_rate,
            channels=a.codec_context.channels,
        )
        vpk, apk = [], []
        for p in c.demux():
            if p.pts is None:
                continue
            (vpk if p.stream.type == "video" else apk).append(
                (float(p.pts * p.time_base), float(p.duration * p.time_base), p.is_keyframe)
            )
    vpk.sort()
    facts["video_frames"] = len(vpk)
    facts["video_start_s"] = vpk[0][0]
    facts["video_end_s"] = vpk[-1][0] + vpk[-1][1]
    facts["keyframe_times_s"] = [t for t, _, k in vpk if k]
    facts["audio_start_s"] = apk[0][0]
    facts["audio_end_s"] = apk[-1][0] + apk[-1][1]
    return facts


def ts_info(path: Path) -> str:
    """The stream lines `ffmpeg -i` prints (colour tags and profile)."""
    err = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    ).stderr
    return "\n".join(ln for ln in err.splitlines() if "Stream #" in ln)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def first_packet_is_keyframe(path: Path) -> bool:
    with av.open(str(path)) as c:
        for p in c.demux(video=0):
            if p.pts is not None:
                return bool(p.is_keyframe)
    return False


def x264_clip(
    path: Path,
    *,
    fps: int = 30,
    gop: int = 250,
    bframes: int = 0,
    open_gop: bool = False,
    duration_s: float = 4.0,
) -> None:
    """A moving, textured clip as users bring them: x264 with a long GOP (its default 250),
    B-frames, an open GOP; ``.ts`` for MPEG-TS (which starts at 1.4 s)."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s=160x90:r={fps}:d={duration_s}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(gop),
            "-sc_threshold",
            "0",
            "-bf",
            str(bframes),
            *(["-x264-params", "open-gop=1"] if open_gop else []),
            str(path),
        ],
        check=True,
    )


_ = re
