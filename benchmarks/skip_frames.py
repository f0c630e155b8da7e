"""What skip frames change: the same segment rendered with ``output.skip_identical_frames`` on
and off, in one run.

    .venv/bin/python -m benchmarks.skip_frames [--scenes demo,grain] [--cases tv,speech]
        [--seconds 10] [--jobs 2]

For each scene and case it prints the share of frames written as skip frames, the render's
wall and CPU seconds (the whole command, every process), the bytes of video, and how close the
decoded frames are to the composed ones (PSNR over Y, U and V of every frame: mean and worst
frame), for both settings. It also checks what must hold whatever the setting: ffmpeg decodes
every media segment without a message, the frame count and timestamps are those of the render
without skip frames, and each skip frame decodes to the frame before it, byte for byte.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from avatarrender.analysis import analyse, segment_audio  # noqa: E402
from avatarrender.compose import compose_frames  # noqa: E402
from avatarrender.media import ffmpeg_exe  # noqa: E402
from avatarrender.scene import Scene  # noqa: E402
from avatarrender.spec import load_spec  # noqa: E402
from benchmarks.render_speed import scene_yaml  # noqa: E402
from media_check import yuv420p_frames  # noqa: E402  (tests/media_check.py)


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def render(yml: Path, out: Path, jobs: int | None) -> dict:
    cmd = [
        sys.executable,
        "-c",
        "from cli.main import main; main()",
        "render",
        str(yml),
        "-o",
        str(out),
        "-q",
    ]
    if jobs:
        cmd += ["-j", str(jobs)]
    t, cpu = time.perf_counter(), _cpu_s()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return {"s": time.perf_counter() - t, "cpu_s": _cpu_s() - cpu}


def decoded(folder: Path, size: int) -> tuple[list[bytes], list[str], int]:
    """Every frame of the rendition's media segments (yuv420p), their pts, video bytes."""
    frames: list[bytes] = []
    pts: list[str] = []
    video_bytes = 0
    for seg in sorted(folder.glob("seg_*.ts")):
        try:
            frames += yuv420p_frames(seg, size)
        except AssertionError as exc:
            raise SystemExit(str(exc)) from None
        probe = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", str(seg), "-map", "0:v", "-c", "copy", "-f", "framecrc", "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for ln in probe.splitlines():
            if ln and not ln.startswith("#"):
                f = [x.strip() for x in ln.split(",")]
                pts.append(f[2])
                video_bytes += int(f[4])
    return frames, pts, video_bytes


def psnr_db(a: bytes, b: bytes) -> float:
    d = np.frombuffer(a, np.uint8).astype(np.float32) - np.frombuffer(b, np.uint8)
    mse = float(np.mean(d * d))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", default="demo,grain")
    ap.add_argument("--cases", default="speech,tv")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    print("scene  case    skip  skipped  wall s  CPU s  video kB  PSNR mean  worst  (vs composed frames)")
    with tempfile.TemporaryDirectory(prefix="avr-skip-") as tmp:
        work = Path(tmp)
        for scene_name in args.scenes.split(","):
            for case in args.cases.split(","):
                base = scene_yaml(
                    scene_name, args.seconds, tv=case == "tv", preset="1080p30", folder=work / scene_name
                )
                spec = load_spec(base)
                timeline = analyse(spec, segment_audio(spec))
                composed, same = [], []
                for data, s in compose_frames(spec, timeline, Scene(spec)):
                    composed.append(bytes(data))
                    same.append(s)
                size = len(composed[0])
                seg = spec.output.frames_per_segment  # a segment's first frame is always x264's
                rows = {}
                for skip in (False, True):
                    doc = yaml.safe_load(base.read_text())
                    doc["output"]["skip_identical_frames"] = skip
                    yml = base.with_name(f"{base.stem}-skip{int(skip)}.yaml")
                    yml.write_text(yaml.safe_dump(doc))
                    out = work / f"out-{scene_name}-{case}-{int(skip)}"
                    took = render(yml, out, args.jobs)
                    frames, pts, nbytes = decoded(out, size)
                    skipped = sum(1 for i in range(len(same)) if same[i] and i % seg)
                    db = [psnr_db(f, c) for f, c in zip(frames, composed)]
                    rows[skip] = (frames, pts)
                    print(
                        f"{scene_name:6} {case:7} {'on' if skip else 'off':4} {skipped / len(same) if skip else 0:7.0%}"
                        f" {took['s']:7.2f} {took['cpu_s']:6.1f} {nbytes / 1000:9.0f} {np.mean(db):10.2f}"
                        f" {min(db):6.2f}",
                        flush=True,
                    )
                    if len(frames) != len(composed):
                        raise SystemExit(f"{len(frames)} frames decoded, {len(composed)} composed")
                    if skip:
                        bad = [
                            i
                            for i in range(1, len(frames))
                            if same[i] and i % seg and frames[i] != frames[i - 1]
                        ]
                        if bad:
                            raise SystemExit(f"skip frames {bad[:5]} do not repeat the frame before")
                if rows[True][1] != rows[False][1]:
                    raise SystemExit("the timestamps differ with skip frames")


if __name__ == "__main__":
    main()
