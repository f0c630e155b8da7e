"""Rendered-segment folders for playout tests, made with the bundled ffmpeg in the renderer's format.

320x180 (or smaller) testsrc + sine, 30 fps, 1 s media segments with a keyframe at each start,
H.264 High yuv420p + AAC-LC 48 kHz stereo, manifest.json and index.m3u8 as ``avatarrender render``
writes them. Cached per (pattern, seconds, size) so a test session encodes each once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from avatarrender.media import ffmpeg_exe

__all__ = ["make_rendered", "write_manifest", "make_partial", "hold_render_lock"]

_PATTERNS = {
    "testsrc": "testsrc2=s={size}:r=30:d={d}",
    "bars": "smptebars=s={size}:r=30:d={d}",
    "red": "color=c=0xc03030:s={size}:r=30:d={d}",
    "blue": "color=c=0x3040c0:s={size}:r=30:d={d}",
    "green": "color=c=0x30a040:s={size}:r=30:d={d}",
}
_CACHE: dict[tuple[str, float, str, int], Path] = {}


def write_manifest(
    folder: Path, segments: list[dict], *, complete: bool, planned: int, width: int, height: int
) -> dict:
    """Write manifest.json and index.m3u8 for ``segments`` (dicts with uri and frames)."""
    segs = []
    for s in segments:
        data = (folder / s["uri"]).read_bytes()
        segs.append(
            {
                "uri": s["uri"],
                "frames": s["frames"],
                "duration_s": s["frames"] / 30,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    duration = sum(s["duration_s"] for s in segs)
    peak = max((s["bytes"] * 8 / s["duration_s"] for s in segs), default=0)
    doc = {
        "format": "avatarrender.segment/1",
        "complete": complete,
        "spec_hash": "test",
        "width": width,
        "height": height,
        "fps": "30/1",
        "duration_s": duration,
        "frame_count": sum(s["frames"] for s in segs),
        "segment_type": "mpegts",
        "target_duration_s": 1,
        "codecs": "avc1.640028,mp4a.40.2",
        "bandwidth_bps": int(peak * 1.1),
        "planned_segments": planned,
        "segments": segs,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "render": {},
    }
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if complete else 'EVENT'}",
    ]
    for s in segs:
        lines += [f"#EXTINF:{s['duration_s']:.5f},", s["uri"]]
    if complete:
        lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")
    tmp = folder / ".manifest.json.tmp"
    tmp.write_text(json.dumps(doc))
    tmp.replace(folder / "manifest.json")
    return doc


def _encode(pattern: str, seconds: float, size: str, cache_root: Path, gop: int = 30) -> Path:
    key = (pattern, seconds, size, gop)
    if key in _CACHE and (_CACHE[key] / "manifest.json").exists():
        return _CACHE[key]
    folder = cache_root / (f"{pattern}-{seconds:g}-{size}" + (f"-g{gop}" if gop != 30 else ""))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    src = _PATTERNS[pattern].format(size=size, d=seconds)
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            src,
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            "-keyint_min",
            "30",
            *(["-force_key_frames", f"expr:eq(mod(mod(n,30),{gop}),0)"] if gop != 30 else []),
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-b:a",
            "64k",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_options",
            "pes_payload_size=0",  # one PES per AAC frame, as the renderer
            "-hls_segment_filename",
            str(folder / "seg_%05d.ts"),
            str(folder / "ffmpeg.m3u8"),
        ],
        check=True,
    )
    (folder / "ffmpeg.m3u8").unlink()
    files = sorted(folder.glob("seg_*.ts"))
    total_frames = round(seconds * 30)
    segments = []
    for i, f in enumerate(files):
        frames = min(30, total_frames - 30 * i)
        segments.append({"uri": f.name, "frames": frames})
    w, h = (int(x) for x in size.split("x"))
    write_manifest(folder, segments, complete=True, planned=len(segments), width=w, height=h)
    _CACHE[key] = folder
    return folder


def make_rendered(
    dest: Path,
    *,
    pattern: str = "testsrc",
    seconds: float = 3.0,
    size: str = "320x180",
    cache_root: Path | None = None,
    gop: int = 30,
) -> Path:
    """A complete rendered folder at ``dest`` (files copied from a per-session cache).

    ``gop``: a keyframe every ``gop`` frames of each 1 s media segment (and at its start).
    """
    cache_root = cache_root or Path("/tmp/avatarrender-playout-media")
    src = _encode(pattern, seconds, size, cache_root, gop)
    shutil.copytree(src, dest)
    return dest


def make_partial(src: Path, dest: Path, *, finished: int) -> Path:
    """A render-in-progress copy of ``src`` at ``dest``: the first ``finished`` media segments."""
    doc = json.loads((src / "manifest.json").read_text())
    dest.mkdir(parents=True)
    (dest / ".work").mkdir()
    segs = doc["segments"][:finished]
    for s in segs:
        shutil.copyfile(src / s["uri"], dest / s["uri"])
    write_manifest(
        dest,
        [{"uri": s["uri"], "frames": s["frames"]} for s in segs],
        complete=False,
        planned=doc["planned_segments"],
        width=doc["width"],
        height=doc["height"],
    )
    return dest


def hold_render_lock(out_dir: Path) -> int:
    """Hold ``out_dir``'s render lock as a running render does (``.NAME.lock`` beside it): a
    spool's ``.NAME.partial`` with no render behind it is not aired. Close the descriptor to
    let go (a stopped render)."""
    import fcntl
    import os

    fd = os.open(out_dir.with_name(f".{out_dir.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd
