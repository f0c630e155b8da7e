"""Render speed and memory against a hand-written ffmpeg filtergraph and the x264 floor, in one run.

    .venv/bin/python -m benchmarks.render_speed [--scenes demo,grain] [--cases tv,speech]
        [--seconds 20] [--jobs 2] [--repeat 3]
    .venv/bin/python -m benchmarks.render_speed --spec YOUR/segment.yaml [--seconds 20]

For each scene (the demo; the grain scene of ``benchmarks/grain_scene.py``) and case (TV + speech,
speech only), or for your own scene as it is (``--spec``), it times, interleaved, ``--repeat`` times each, and prints the medians:

- **ours**: ``avatarrender render`` as a user types it (Python's start-up, the spec check, the
  analysis, workers, audio and publishing included), with ``AVATARRENDER_PROFILE=1`` so that its
  manifest carries a per-stage profile (printed below the table);
- **filtergraph**: one ffmpeg command making the same composition (the background converted once
  and looped, the clip scaled and overlaid, the character's state images overlaid from a concat
  list built from our Timeline, the captions as pre-drawn PNG overlays enabled by time, the speech
  to AAC) into HLS with the same x264 settings. Its inputs are prepared before the clock starts;
- **bare x264**: one ffmpeg encoding our very frames (dumped raw beforehand) with the same x264
  settings: the floor.

Throughput ratios are ours over theirs (above 1: ours is faster); steady/x264 is ours after its
first media segment is listed (start-up excluded) over bare x264. Peak RSS is of each process tree;
CPU s is user + system time of each command with all its processes (robust to a busy machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import av
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatarrender.analysis import analyse, segment_audio  # noqa: E402
from avatarrender.compose import compose_frames  # noqa: E402
from avatarrender.encode import clip_matrix, rawvideo_input_args, to_bt709, x264_args  # noqa: E402
from avatarrender.media import ffmpeg_exe  # noqa: E402
from avatarrender.plan import DEFAULT_CHUNK_SEGMENTS  # noqa: E402
from avatarrender.scene import Scene  # noqa: E402
from avatarrender.spec import Spec, load_spec, parse_cues  # noqa: E402
from benchmarks.grain_scene import grain_yaml, make_grain_scene  # noqa: E402


class TreeRSS:
    """Samples the summed RSS of this process and all its descendants every 50 ms."""

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        kids: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                    kids.setdefault(ppid, []).append(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += kids.get(p, [])
        return out

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(self._rss(p) for p in self._tree()))
            self._stop.wait(0.05)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


FLOOR_MAX_S = 30.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for descendants so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def demo_yaml(seconds: float, *, tv: bool, preset: str, folder: Path) -> Path:
    """The demo, ``seconds`` long, with the TV playing throughout (``tv``) or off, in ``folder``."""
    demo = ROOT / "examples" / "demo"
    if not (demo / "assets").is_dir():
        subprocess.run([sys.executable, str(demo / "make_assets.py")], check=True)
    doc = yaml.safe_load((demo / "segment.yaml").read_text())
    doc["duration_s"] = seconds
    doc["output"] = {"preset": preset, "x264_preset": "veryfast"}
    clips = doc["tv"]["clips"]
    doc["tv"]["clips"] = [{**clips[0], "start_s": 0.0, "end_s": seconds + 1, "at_end": "loop"}] if tv else []
    cues = parse_cues((demo / doc["captions"].pop("file")).read_text())
    doc["captions"]["cues"] = [
        {"text": c.text, "start_s": c.start_s, "end_s": c.end_s} for c in cues if c.start_s < seconds
    ]  # a shorter cut keeps its cues
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "assets").exists():
        (folder / "assets").symlink_to(demo / "assets")
    path = folder / f"demo-{'tv' if tv else 'speech'}-{seconds:g}s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def scene_yaml(scene: str, seconds: float, *, tv: bool, preset: str, folder: Path) -> Path:
    if scene == "demo":
        return demo_yaml(seconds, tv=tv, preset=preset, folder=folder)
    if scene == "grain":
        assets = make_grain_scene(ROOT / "benchmarks" / "grain")
        return grain_yaml(seconds, tv=tv, folder=folder, assets=assets, preset=preset)
    raise SystemExit(f"unknown scene {scene!r}: use demo or grain")


def given_yaml(spec_file: Path, seconds: float, *, preset: str, folder: Path) -> Path:
    """A user's segment.yaml as it is, ``seconds`` long at ``preset``.

    The copy is written beside the original (its relative paths resolve from its own folder) as a
    hidden file, and a link to it kept in ``folder``; :func:`main` removes it when it is done.
    """
    doc = yaml.safe_load(spec_file.read_text())
    doc["duration_s"] = seconds
    doc["output"] = {**(doc.get("output") or {}), "preset": preset, "x264_preset": "veryfast"}
    copy = spec_file.with_name(f".{spec_file.stem}.bench-{os.getpid()}-{seconds:g}s.yaml")
    copy.write_text(yaml.safe_dump(doc))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "given").write_text(str(copy))
    return copy


def dump_frames(spec: Spec, raw: Path) -> None:
    """Our composed frames, raw yuv420p, for the floor."""
    timeline = analyse(spec, segment_audio(spec))
    scene = Scene(spec)
    with open(raw, "wb") as fh:
        for data, _ in compose_frames(spec, timeline, scene):
            fh.write(memoryview(data))


def floor(spec: Spec, raw: Path, work: Path) -> dict:
    """Time bare ffmpeg/x264 on the dumped frames."""
    out = spec.output
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        *rawvideo_input_args(out),
        "-i",
        str(raw),
        *x264_args(out, threads=None),
        "-f",
        "mpegts",
        str(work / "floor.ts"),
    ]
    t, cpu = time.perf_counter(), _cpu_s()
    proc = subprocess.Popen(cmd)
    with TreeRSS(proc.pid) as mem:
        proc.wait()
    elapsed = time.perf_counter() - t
    cpu = _cpu_s() - cpu
    if proc.returncode:
        raise SystemExit("the floor's ffmpeg failed")
    return {
        "s": elapsed,
        "frames": raw.stat().st_size // (out.width * out.height * 3 // 2),
        "rss_mib": mem.peak_kib / 1024,
        "cpu_s": cpu,
    }


def filtergraph_command(spec: Spec, work: Path) -> list[str]:
    """One ffmpeg command making the segment's composition into HLS (inputs written to ``work``).

    The background (with everything static baked in, as our Scene has it) is converted to
    yuv420p once and looped; the TV clip is looped, scaled bicubic onto the screen and overlaid,
    with what lies above the screen (a bezel) overlaid again; the character's state images
    (the union of the state-dependent character layers, one PNG per state that occurs) come from
    a concat list with one entry per run of equal states; each caption is a PNG overlay enabled
    during its cue; the speech goes to AAC as ours does.
    """
    from PIL import Image

    work.mkdir(parents=True, exist_ok=True)
    out = spec.output
    fps = f"{out.fps.numerator}/{out.fps.denominator}"
    scene = Scene(spec)
    timeline = analyse(spec, segment_audio(spec))
    inputs: list[list[str]] = []
    graph: list[str] = []

    def add_input(args: list[str]) -> int:
        inputs.append(args)
        return len(inputs) - 1

    scene.base_rgba.convert("RGB").save(work / "bg.png", compress_level=1)
    bg = add_input(["-i", str(work / "bg.png")])
    graph.append(
        f"[{bg}:v]scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
        f"loop=loop=-1:size=1:start=0,setpts=N/({fps})/TB[v0]"
    )
    last, k = "v0", 0

    def overlay(src: str, x: int, y: int, enable: str | None = None) -> None:
        nonlocal last, k
        k += 1
        en = f":enable='{enable}'" if enable else ""
        graph.append(f"[{last}][{src}]overlay=x={x}:y={y}:eof_action=repeat{en}[v{k}]")
        last = f"v{k}"

    tv = spec.tv
    if tv and tv.clips and scene.screen:
        clip = tv.clips[0]  # the benchmark's cases: one clip, looped, from start_s
        x0, y0, x1, y1 = scene.screen
        i = add_input(["-stream_loop", "-1", "-ss", f"{clip.clip_start_s}", "-i", str(clip.file)])
        with av.open(str(clip.file)) as c:  # its colours to BT.709, as ours (encode.clip_matrix)
            first = next(c.decode(video=0))
        fmt = first.format
        matrix = clip_matrix(first.colorspace, (first.width, first.height), rgb=fmt.is_rgb)
        colours = "".join(f",{f}" for f in to_bt709(matrix))
        graph.append(
            f"[{i}:v]fps={fps},scale={x1 - x0}:{y1 - y0}:flags=bicubic:in_color_matrix={matrix[0]}:"
            f"out_color_matrix={matrix[0]}:out_range=tv,format=yuv420p{colours},"
            f"setpts=PTS-STARTPTS+{clip.start_s}/TB[tv]"
        )
        overlay("tv", x0, y0, f"between(t,{clip.start_s},{clip.end_s})")
        for n, (img, (ox, oy)) in enumerate(scene._static_above):  # the bezel, drawn over the clip
            if ox < x1 and oy < y1 and ox + img.width > x0 and oy + img.height > y0:
                img.save(work / f"above{n}.png", compress_level=1)
                i = add_input(["-i", str(work / f"above{n}.png")])
                overlay(f"{i}:v", ox, oy)

    # the character: one image per (mouth, eyes) state, the union of its state layers
    char = [i for i, layer in enumerate(scene.layers) if layer.kind != "caption"]
    box = None
    for i in char:
        b = scene.layers[i].box
        box = (
            b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3]))
        )
    lines, made = [], set()
    mouth, eyes = timeline.mouth, timeline.eyes
    n = timeline.frame_count
    start = 0
    for f in range(1, n + 1):
        if f == n or mouth[f] != mouth[start] or eyes[f] != eyes[start]:
            m, e = int(mouth[start]), int(eyes[start])
            name = f"state_{m}_{e}.png"
            if name not in made:
                canvas = Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (0, 0, 0, 0))
                for i in char:
                    img, (x, y) = scene._layer_image(i, (m, e, -1))
                    canvas.alpha_composite(img, (x - box[0], y - box[1]))
                canvas.save(work / name, compress_level=1)
                made.add(name)
            lines += [
                f"file '{work / name}'",
                f"duration {(f - start) / out.fps.numerator * out.fps.denominator:.6f}",
            ]
            start = f
    lines.append(lines[-2])  # the concat demuxer's last entry is shown until the end
    (work / "states.txt").write_text("\n".join(lines) + "\n")
    i = add_input(["-f", "concat", "-safe", "0", "-i", str(work / "states.txt")])
    graph.append(f"[{i}:v]fps={fps}[ch]")
    overlay("ch", box[0], box[1])

    for c, cue in enumerate(spec.cues):
        img, (x, y) = scene._render_caption(spec.captions.layouts[c])
        img.save(work / f"cap{c}.png", compress_level=1)
        i = add_input(["-i", str(work / f"cap{c}.png")])
        overlay(f"{i}:v", x, y, f"gte(t,{cue.start_s})*lt(t,{cue.end_s})")

    audio: list[str] = []
    if spec.speech:
        i = add_input(["-i", str(spec.speech.file)])
        audio = [
            "-map",
            f"{i}:a",
            "-af",
            "apad",
            "-ac",
            "2",
            "-ar",
            "48000",
            "-c:a",
            "aac",
            "-aac_coder",
            "fast",
            "-b:a",
            f"{out.audio_bitrate_kbps}k",
        ]
    hls = work / "hls"
    hls.mkdir(exist_ok=True)
    return [
        ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        *(a for args in inputs for a in args),
        "-filter_complex",
        ";".join(graph),
        "-map",
        f"[{last}]",
        *audio,
        *x264_args(out, threads=None),
        "-r",
        fps,
        "-frames:v",
        str(spec.frame_count),
        "-t",
        f"{float(spec.duration_s):.6f}",
        "-f",
        "hls",
        "-hls_time",
        f"{float(out.segment_duration_s):g}",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_filename",
        str(hls / "seg_%05d.ts"),
        str(hls / "index.m3u8"),
    ]


def filtergraph(cmd: list[str], frames: int, work: Path) -> dict:
    t, cpu = time.perf_counter(), _cpu_s()
    proc = subprocess.Popen(cmd)
    with TreeRSS(proc.pid) as mem:
        proc.wait()
    elapsed = time.perf_counter() - t
    cpu = _cpu_s() - cpu
    if proc.returncode:
        raise SystemExit(f"the filtergraph failed: {' '.join(cmd)}")
    shutil.rmtree(work / "hls", ignore_errors=True)
    (work / "hls").mkdir()
    return {"s": elapsed, "frames": frames, "rss_mib": mem.peak_kib / 1024, "cpu_s": cpu}


def _watch_first_segment(partial: Path, t0: float, done: threading.Event) -> list[float]:
    """Poll the in-progress EVENT playlist; the time (from ``t0``) it first lists a segment."""
    seen: list[float] = []

    def run() -> None:
        playlist = partial / "index.m3u8"
        while not done.is_set():
            try:
                if ".ts" in playlist.read_text():
                    seen.append(time.perf_counter() - t0)
                    return
            except OSError:
                pass
            time.sleep(0.005)

    threading.Thread(target=run, daemon=True).start()
    return seen


CUT_WARNING = "cuts the speech"  # duration_s set to --seconds, shorter than the speech


def ours(yml: Path, work: Path, jobs: int | None, chunk_segments: int, frames: int) -> dict:
    """Our command as a user types it; RSS of its whole process tree (workers, every ffmpeg).
    Times count from the command's start (Python's own start-up included)."""
    exe = Path(sys.executable).with_name("avatarrender")
    done = threading.Event()
    env = {**os.environ, "AVATARRENDER_PROFILE": "1"}
    t_wall = time.time()
    t, cpu = time.perf_counter(), _cpu_s()
    cmd = [
        str(exe),
        "render",
        str(yml),
        "-o",
        str(work / "out"),
        "--json",
        "--chunk-segments",
        str(chunk_segments),
    ] + (["--jobs", str(jobs)] if jobs else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = _watch_first_segment(work / "out.partial", t, done)
    with TreeRSS(proc.pid) as mem:
        stdout, stderr = proc.communicate()
    for line in stderr.splitlines():  # the cut to --seconds is the benchmark's own: not said per run
        if CUT_WARNING not in line:
            print(line, file=sys.stderr)
    elapsed = time.perf_counter() - t
    cpu = _cpu_s() - cpu
    done.set()
    if proc.returncode:
        raise SystemExit(f"render failed with {proc.returncode}")
    summary = json.loads(stdout)
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    shutil.rmtree(work / "out", ignore_errors=True)
    stats = manifest["render"]
    prof = stats.get("profile", {})
    first_s = first[0] if first else elapsed
    first_frames = int(round(frames / summary["segments"]))  # the first media segment's
    return {
        "s": elapsed,
        "frames": frames,
        "first_s": first_s,
        "steady_fps": (frames - first_frames) / max(1e-9, elapsed - first_s),
        "rss_mib": mem.peak_kib / 1024,
        "segments": summary["segments"],
        "cpu_s": cpu,
        "profile": _stages(prof, stats, t_wall, elapsed),
    }


def _stages(prof: dict, stats: dict, t_wall: float, elapsed: float) -> dict:
    """The profile's stages (s): wall-clock marks of the command, then each stage's summed time
    (workers: seconds of one core summed over the workers; main: of the main process)."""
    w, m = prof.get("workers", {}), prof.get("main", {})
    entered = prof.get("entered_at", t_wall) - t_wall
    first = (prof.get("first_chunk_at") or t_wall) - t_wall
    return {
        "start-up": entered,  # command start -> render() (imports, spec check)
        "analysis": stats.get("analysis_s", 0.0),  # speech read, lip sync, scene build
        "1st chunk at": first,  # when a worker began the first chunk (from command start)
        "compose": w.get("compose", 0.0),
        "tv decode": w.get("tv_decode", 0.0),
        "encode": w.get("encode", 0.0) + w.get("mux", 0.0),
        # the soundtrack (TV sound mixed, loudness measured, limiter: main process, in a thread
        # beside the analysis), and how long the workers' muxers waited for its AAC frames
        "soundtrack": m.get("soundtrack", 0.0),
        "audio wait": w.get("audio_wait", 0.0),
        "publish": m.get("publish", 0.0),
        "scene load": w.get("scene_load", 0.0),
        "tail idle": w.get("tail_idle", 0.0),  # a worker done before the other (wall)
        "skip frames": stats.get("skipped_frames", 0),  # frames not given to x264 (a count)
        "after render": elapsed - (stats.get("wall_s", 0.0) + entered),  # exit, rename
        "CPU main": m.get("cpu", 0.0),  # the command's process (not its ffmpeg children)
        "CPU workers": w.get("cpu", 0.0),  # both workers, start-up included
        "CPU wk start": w.get("cpu_start", 0.0),  # the workers' own start-up (imports)
        "wall": elapsed,
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", default="demo,grain")
    ap.add_argument("--cases", default="tv,speech")
    ap.add_argument(
        "--spec",
        action="append",
        type=Path,
        default=[],
        metavar="SEGMENT.yaml",
        help="time your own scene as it is (its TV as given, cut to --seconds), instead of "
        "--scenes/--cases; repeatable. The peer filtergraph plays the first clip looped",
    )
    ap.add_argument(
        "--seconds",
        default="20",
        help="segment lengths, e.g. 20,60 (past 30 s the "
        "floor encodes the segment's first 30 s: its raw file is 3 MB a frame)",
    )
    ap.add_argument("--jobs", type=int, default=None, help="ours: --jobs (default: the command's)")
    ap.add_argument("--chunk-segments", type=int, default=DEFAULT_CHUNK_SEGMENTS)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="run the three side by side this many times; medians are printed",
    )
    ap.add_argument("--preset", default="1080p30")
    ap.add_argument("--no-peer", action="store_true", help="skip the filtergraph")
    args = ap.parse_args()
    print(
        f"{args.preset} x264 veryfast, ours: jobs={args.jobs or 'default'}, "
        f"chunk={args.chunk_segments} segments; {os.cpu_count()} cores; median of {args.repeat}, "
        "interleaved; times are whole commands"
    )
    print(
        f"{'scene':6} {'case':7} {'len':>4} {'ours s':>7} {'fgraph s':>8} {'x264 s':>7} "
        f"{'ours fps':>8} {'/fgraph':>7} {'/x264':>6} {'steady/x264':>11} {'1st seg':>7} {'RSS ours':>8} "
        f"{'fgraph':>7} {'x264':>6} {'CPU s ours':>10} {'fgraph':>7} {'x264':>6}"
    )
    profiles = []
    given = [p.resolve() for p in args.spec]
    for p in given:
        if not p.is_file():
            raise SystemExit(f"--spec {p}: not a file")
    combos = (
        [(p.stem[:6], p, "given") for p in given]
        if given
        else [(s, None, c) for s in args.scenes.split(",") for c in args.cases.split(",")]
    )

    def make(scene: str, spec_file: Path | None, case: str, seconds: float, folder: Path) -> Path:
        if spec_file is not None:
            return given_yaml(spec_file, seconds, preset=args.preset, folder=folder)
        return scene_yaml(scene, seconds, tv=case == "tv", preset=args.preset, folder=folder)

    for seconds in (float(x) for x in args.seconds.split(",")):
        for scene, spec_file, case in combos:
            with tempfile.TemporaryDirectory(prefix="avr-bench-") as tmp:
                work = Path(tmp)
                try:
                    yml = make(scene, spec_file, case, seconds, work)
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message=f".*{CUT_WARNING}")
                        spec = load_spec(yml)
                        cut = (
                            spec
                            if seconds <= FLOOR_MAX_S
                            else load_spec(make(scene, spec_file, case, FLOOR_MAX_S, work / "cut"))
                        )
                    raw = work / "frames.yuv"
                    dump_frames(cut, raw)
                    cmd = None if args.no_peer else filtergraph_command(spec, work / "fg")
                    runs: dict[str, list[dict]] = {"ours": [], "fg": [], "x264": []}
                    for _ in range(args.repeat):
                        runs["ours"].append(ours(yml, work, args.jobs, args.chunk_segments, spec.frame_count))
                        if cmd:
                            runs["fg"].append(filtergraph(cmd, spec.frame_count, work / "fg"))
                        runs["x264"].append(floor(cut, raw, work))
                finally:
                    for link in (work / "given", work / "cut" / "given"):
                        if link.exists():
                            Path(link.read_text()).unlink(missing_ok=True)
                fps = {
                    k: statistics.median(r["frames"] / r["s"] for r in v) if v else float("nan")
                    for k, v in runs.items()
                }
                sec = {k: _median(v, "s") if v else float("nan") for k, v in runs.items()}
                rss = {k: _median(v, "rss_mib") if v else float("nan") for k, v in runs.items()}
                cpu = {k: _median(v, "cpu_s") if v else float("nan") for k, v in runs.items()}
                mark = "*" if seconds > FLOOR_MAX_S else " "
                print(
                    f"{scene:6} {case:7} {seconds:3.0f}s {sec['ours']:7.2f} {sec['fg']:8.2f} "
                    f"{sec['x264']:6.2f}{mark} {fps['ours']:8.1f} {fps['ours'] / fps['fg']:7.2f} "
                    f"{fps['ours'] / fps['x264']:6.2f} {_median(runs['ours'], 'steady_fps') / fps['x264']:11.2f} "
                    f"{_median(runs['ours'], 'first_s'):6.2f}s "
                    f"{rss['ours']:7.0f}M {rss['fg']:6.0f}M {rss['x264']:5.0f}M "
                    f"{cpu['ours']:10.1f} {cpu['fg']:7.1f} {cpu['x264']:6.1f}",
                    flush=True,
                )
                prof = {
                    k: statistics.median(r["profile"][k] for r in runs["ours"])
                    for k in runs["ours"][0]["profile"]
                }
                profiles.append((f"{scene} {case} {seconds:g}s", prof))
    print(
        "\nours, per stage (median, s). Marks from the command's start: start-up (to render(): "
        "imports, spec check), analysis (speech, lip sync, scene build), 1st chunk at. Summed "
        "over the workers (core-seconds): compose, tv decode, encode (x264 + mux), scene load. "
        "soundtrack: TV sound mixed + loudness (main, overlapped with the analysis); audio "
        "wait: the workers' muxers waiting for its AAC frames; publish: main process."
    )
    keys = list(profiles[0][1]) if profiles else []
    print(f"{'case':20} " + " ".join(f"{k:>12}" for k in keys))
    for name, prof in profiles:
        print(f"{name:20} " + " ".join(f"{prof[k]:12.2f}" for k in keys))
    if any(float(x) > FLOOR_MAX_S for x in args.seconds.split(",")):
        print(f"* bare x264 on the segment's first {FLOOR_MAX_S:.0f} s (the same frames up to there)")


if __name__ == "__main__":
    main()
