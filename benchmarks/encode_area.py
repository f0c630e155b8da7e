"""What x264 would cost on only the part of the picture that changes (the TV + speech bound).

    .venv/bin/python -m benchmarks.encode_area [--scenes demo,grain] [--seconds 10]

With the TV playing, every frame differs from the one before, so the render hands x264 every
frame (``benchmarks.render_speed``: ours/x264 about 0.9 once frames flow). But most of the
picture does not change: the background, the character's body, the caption between cues. This
measures how much an encoder of the changing part only could save. For each scene with the TV
playing it composes the frames as the render does, then per media segment (its first frame is
an IDR, coded whole anyway) finds what changed from each frame to the next:

- the macroblock rows that change (a full-width band: an H.264 slice is a run of macroblocks in
  raster order, so a band is the one region a slice of its own can cover without splitting rows);
- the macroblock-aligned box around all changes.

It then times libx264 (one thread, the render's settings, CPU seconds: robust to a busy machine)
on the whole frames, on the union of the bands and on the union of the boxes (the same region
through the whole run, so that x264 sees a video), and prints each one's share of the picture's
area and of the whole frames' CPU time.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatarrender.encode import rawvideo_input_args, x264_args  # noqa: E402
from avatarrender.media import ffmpeg_exe  # noqa: E402
from avatarrender.spec import load_spec  # noqa: E402
from benchmarks.render_speed import dump_frames, scene_yaml  # noqa: E402

MB = 16


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def changed_regions(raw: Path, width: int, height: int, per_segment: int) -> tuple[list[set[int]], tuple]:
    """Per media segment, the macroblock rows that change after its first frame; and the union
    box (x0, y0, x1, y1) in macroblocks of every change after a segment's first frame."""
    size = width * height * 3 // 2
    prev = None
    rows: list[set[int]] = []
    box = [width // MB, height // MB, 0, 0]
    with open(raw, "rb") as fh:
        i = 0
        while chunk := fh.read(size):
            y = np.frombuffer(chunk, np.uint8)[: width * height].reshape(height, width)
            if i % per_segment == 0:
                rows.append(set())
            elif prev is not None:
                diff = y != prev
                r = np.flatnonzero(diff.any(axis=1))
                c = np.flatnonzero(diff.any(axis=0))
                if len(r):
                    rows[-1].update(range(r[0] // MB, r[-1] // MB + 1))
                    box = [
                        min(box[0], c[0] // MB),
                        min(box[1], r[0] // MB),
                        max(box[2], c[-1] // MB + 1),
                        max(box[3], r[-1] // MB + 1),
                    ]
            prev = y.copy()
            i += 1
    return rows, tuple(box)


def crop(raw: Path, out: Path, width: int, height: int, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """Write the yuv420p frames of ``raw`` cropped to ``box`` (pixels) into ``out``."""
    x0, y0, x1, y1 = box
    size = width * height * 3 // 2
    with open(raw, "rb") as fh, open(out, "wb") as dst:
        while chunk := fh.read(size):
            f = np.frombuffer(chunk, np.uint8)
            y = f[: width * height].reshape(height, width)
            u = f[width * height : width * height * 5 // 4].reshape(height // 2, width // 2)
            v = f[width * height * 5 // 4 :].reshape(height // 2, width // 2)
            dst.write(y[y0:y1, x0:x1].tobytes())
            dst.write(u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2].tobytes())
            dst.write(v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2].tobytes())
    return x1 - x0, y1 - y0


def x264_cpu(raw: Path, out_settings, size: tuple[int, int], work: Path) -> tuple[float, int]:
    """CPU seconds of libx264 (one thread) on ``raw`` frames of ``size``, and the bytes written."""
    args = rawvideo_input_args(out_settings)
    args[args.index("-s") + 1] = f"{size[0]}x{size[1]}"
    dst = work / "area.ts"
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-y",
        *args,
        "-i",
        str(raw),
        *x264_args(out_settings, threads=1),
    ]
    cmd += ["-f", "mpegts", str(dst)]
    t = _cpu_s()
    subprocess.run(cmd, check=True)
    return _cpu_s() - t, dst.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="demo,grain")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--preset", default="1080p30")
    args = ap.parse_args()
    print(f"TV + speech, {args.seconds:g} s, {args.preset}, libx264 veryfast one thread; CPU s of x264")
    print(
        f"{'scene':6} {'region':30} {'area':>6} {'x264 CPU s':>10} {'share':>6} {'kB':>7}   "
        "changing MB rows per media segment (after its IDR)"
    )
    for scene in args.scenes.split(","):
        with tempfile.TemporaryDirectory(prefix="avr-area-") as tmp:
            work = Path(tmp)
            spec = load_spec(scene_yaml(scene, args.seconds, tv=True, preset=args.preset, folder=work))
            out = spec.output
            w, h = out.width, out.height
            raw = work / "frames.yuv"
            dump_frames(spec, raw)
            rows, box = changed_regions(raw, w, h, out.frames_per_segment)
            all_rows = sorted(set().union(*rows))
            per_seg = " ".join(str(len(r)) for r in rows)
            regions = {"whole frame": (0, 0, w, h)}
            if all_rows:
                band = (0, all_rows[0] * MB, w, min(h, (all_rows[-1] + 1) * MB))
                regions["band (union of changing rows)"] = band
                regions["box (union of changes)"] = (
                    box[0] * MB,
                    box[1] * MB,
                    min(w, box[2] * MB),
                    min(h, box[3] * MB),
                )
            whole = None
            for name, region in regions.items():
                src = raw
                size = (w, h)
                if region != (0, 0, w, h):
                    src = work / "crop.yuv"
                    size = crop(raw, src, w, h, region)
                cpu, nbytes = x264_cpu(src, out, size, work)
                whole = whole or cpu
                area = size[0] * size[1] / (w * h)
                note = (
                    f"   {per_seg} (of {-(-h // MB)})" if name == "whole frame" else f"   {size[0]}x{size[1]}"
                )
                print(
                    f"{scene:6} {name:30} {area:6.0%} {cpu:10.2f} {cpu / whole:6.0%} {nbytes / 1000:7.0f}{note}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
