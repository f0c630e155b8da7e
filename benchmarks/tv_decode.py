"""The workers' TV decode on the grain scene, with its clip as made and re-encoded with longer GOPs.

    .venv/bin/python -m benchmarks.tv_decode [--gops 0,250] [--height 0] [--workers 2] [--seconds 20]

For each clip (``--gops``: 0 is the scene's own clip, GOP 30; N re-encodes it with x264 veryfast,
CRF 20, ``-g N``, as downloads come; ``--height`` scales it first, e.g. 1080), the render's chunk
plan is dealt to ``--workers`` workers in turn (chunk k to worker k mod N, as the pool does when
the chunks take equal time); each worker is a thread of this process with its own kept
decoders, and the chunks run one at a time. Printed per clip: the TV decode's CPU seconds summed
over the workers (thread CPU time: robust to a busy machine), the runs that sought and those that
decoded on, and a hash of every frame in air order: the same hash on two code versions or
worker counts means the same frames.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatarrender import encode  # noqa: E402
from avatarrender.analysis import analyse, segment_audio  # noqa: E402
from avatarrender.compose import slice_timeline  # noqa: E402
from avatarrender.media import ffmpeg_exe  # noqa: E402
from avatarrender.plan import plan_chunks  # noqa: E402
from avatarrender.scene import Scene  # noqa: E402
from avatarrender.spec import load_spec  # noqa: E402
from benchmarks.grain_scene import grain_yaml, make_grain_scene  # noqa: E402


def reencode(src: Path, dst: Path, *, gop: int, height: int) -> None:
    if dst.is_file():
        return
    scale = ["-vf", f"scale=-2:{height}"] if height else []
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), *scale, "-c:v", "libx264"]
    cmd += ["-preset", "veryfast", "-crf", "20", "-g", str(gop), "-threads", "1", str(dst)]
    subprocess.run(cmd, check=True)


class Worker:
    """A thread standing for a worker process: the TV decoders it keeps are its own (they are
    kept per thread). Chunks are run one at a time, in plan order, whoever takes them."""

    def __init__(self) -> None:
        self.tasks: queue.Queue = queue.Queue()
        self.cpu_s = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (task := self.tasks.get()) is not None:
            fn, done = task
            t0 = time.thread_time()
            try:
                done.append(fn())
            except BaseException as exc:  # handed to the caller
                done.append(exc)
            self.cpu_s += time.thread_time() - t0
        getattr(encode, "close_clip_decoders", lambda: None)()  # (older versions kept none)

    def run(self, fn):
        done: list = []
        self.tasks.put((fn, done))
        while not done:
            time.sleep(0.001)
        if isinstance(done[0], BaseException):
            raise done[0]
        return done[0]

    def stop(self) -> None:
        self.tasks.put(None)
        self.thread.join()


def tv_decode(yml: Path, workers: int) -> dict:
    """The chunks' TV frames decoded by ``workers`` workers taking chunks in turn."""
    spec = load_spec(yml)
    timeline = analyse(spec, segment_audio(spec))
    x0, y0, x1, y1 = Scene(spec).screen
    frames: dict[int, bytes] = {}
    pool = [Worker() for _ in range(workers)]
    sought = decoded_on = 0

    def chunk_frames(part):
        reader = encode.TVReader([c.file for c in spec.tv.clips], (x1 - x0, y1 - y0), spec.output.fps)
        out = [
            b"".join(p.tobytes() for p in planes) for planes in reader.frames(part.tv_clip, part.tv_time_s)
        ]
        return out, getattr(reader, "seeks", 0), getattr(reader, "continued", 0)

    try:
        for k, chunk in enumerate(plan_chunks(spec).chunks):
            part = slice_timeline(timeline, chunk.frame_start, chunk.frame_end)
            out, s, c = pool[k % workers].run(lambda part=part: chunk_frames(part))
            sought, decoded_on = sought + s, decoded_on + c
            frames.update({chunk.frame_start + i: f for i, f in enumerate(out)})
    finally:
        for w in pool:
            w.stop()
    digest = hashlib.sha1(b"".join(frames[i] for i in sorted(frames))).hexdigest()[:16]
    cpu_s = sum(w.cpu_s for w in pool)
    return {"cpu_s": cpu_s, "sought": sought, "decoded_on": decoded_on, "hash": digest}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gops", default="0,250", help="0: the scene's own clip (GOP 30)")
    ap.add_argument("--height", type=int, default=0, help="re-encode at this height (0: 360)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args(argv)
    folder = ROOT / "benchmarks" / "grain"
    assets = make_grain_scene(folder)
    base = grain_yaml(args.seconds, tv=True, folder=folder, assets=assets)
    print(f"{'clip':24} {'tv decode CPU s':>16} {'sought':>7} {'decoded on':>11}  frames hash")
    for gop in (int(g) for g in args.gops.split(",")):
        yml, name = base, "GOP 30 (as made)"
        if gop or args.height:
            clip = assets / f"clip-g{gop or 30}-h{args.height or 360}.mp4"
            reencode(assets / "clip.mp4", clip, gop=gop or 30, height=args.height)
            yml = folder / f"tv-decode-{clip.stem}.yaml"
            yml.write_text(base.read_text().replace("assets/clip.mp4", f"assets/{clip.name}"))
            name = f"GOP {gop or 30}, {args.height or 360}p"
        r = tv_decode(yml, args.workers)
        print(f"{name:24} {r['cpu_s']:16.2f} {r['sought']:7d} {r['decoded_on']:11d}  {r['hash']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
