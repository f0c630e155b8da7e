"""Live playout figures in a real browser (headless Debian chromium + hls.js, the monitor page).

    .venv/bin/python benchmarks/playout_latency.py latency [--size 1920x1080] [--seconds 20]
                                                   [--joins 5] [--via builtin|nginx]
        on-air latency (wall clock - hls.js playingDate) of the monitor page (hls.js defaults,
        ``new Hls()``) on the demo's idle filler as the renderer makes it (``--media testsrc``:
        ffmpeg's test pattern, ten times the bitrate), over several viewers joining one after the other
        (where a viewer joins within a media segment sets its latency: hls.js starts at the
        segment's independent part): median, p95 over all samples, and per join
    .venv/bin/python benchmarks/playout_latency.py submit [--preset 1080p30] [--tries 5]
                                                  [--seconds 30] [--via service|render]
        submit-to-screen: the demo (cut to --seconds) handed to the warm render service
        (``avatarrender submit``; or a one-shot ``render --into SPOOL``) while the playout airs
        filler, to the first frame of it on screen in the browser (hls.js defaults); each try
        also says when the first media segment was listed in the spool, when the program starts
        on the channel clock (its PROGRAM-DATE-TIME), when /status shows it on air, and how far
        behind that start the viewer showed it

Run one at a time: 1080p decoding in chromium takes about a core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from browser import CHROMIUM, FLAGS  # noqa: E402  (tests/browser.py)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _playout(args: list[str], tmp: Path, *, out: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = _port()
    out = out or tmp / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from avatarrender._cli.main import main; main()",
            "playout",
            *args,
            "--out",
            str(out),
            "--serve",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        stdout=open(tmp / "playout.log", "w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/live.m3u8", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                sys.exit((tmp / "playout.log").read_text())
            time.sleep(0.1)
    sys.exit("playout did not start")


def _monitor(p, url: str):
    """Chromium on the monitor page, once its player is playing: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page()
    page.goto(url + "/")
    page.wait_for_function("window.__monitor && window.__monitor.playingAt !== null", timeout=30_000)
    return browser, page


def latency(size: str, seconds: int, joins: int, via: str, part_frames: int, gop: int, media: str) -> None:
    from nginx_front import served_dir, start_nginx
    from playout_media import make_rendered
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="playout-latency-"))
    if media == "demo":  # what the channel airs: the renderer's own output (about 1.6 Mbit/s)
        from avatarrender.render import render
        from avatarrender.spec import load_spec

        presets = {"1920x1080": "1080p30", "1280x720": "720p30"}
        if size not in presets:
            sys.exit(f"--media demo renders at {' or '.join(presets)}")
        spec = load_spec(ROOT / "examples" / "demo" / "segment.yaml", overrides={"preset": presets[size]})
        render(spec.idle(10.0), tmp / "filler")
    else:  # ffmpeg's testsrc, ultrafast: about 16 Mbit/s at 1080p, heavier to load and decode
        make_rendered(
            tmp / "filler", pattern="testsrc", seconds=10, size=size, cache_root=tmp / "cache", gop=gop
        )
    (tmp / "schedule.yaml").write_text(f"filler: {{dir: filler}}\npart_frames: {part_frames}\n")
    out = served_dir()
    proc, url = _playout(["--schedule", str(tmp / "schedule.yaml")], tmp, out=out)
    ng = None
    if via == "nginx":
        ng, url = start_nginx(out, playout_port=int(url.rsplit(":", 1)[1]), work=tmp / "nginx")
    per_join, lat_all, stalls, frames, expected, stall_log = [], [], 0, 0, 0, []
    try:
        with sync_playwright() as p:
            for _ in range(joins):
                browser, page = _monitor(p, url)
                page.wait_for_timeout(2000)
                f0 = page.evaluate("window.__monitor.frames()")
                page.wait_for_timeout(seconds * 1000)
                f1 = page.evaluate("window.__monitor.frames()")
                mon = page.evaluate(
                    "({lat: window.__monitor.latencies, waiting: window.__monitor.waiting,"
                    " log: window.__monitor.waitingLog})"
                )
                browser.close()
                lat = sorted(v / 1000 for t, v, *_ in mon["lat"] if t >= f0["wall"])
                per_join.append(round(statistics.median(lat), 3) if lat else None)
                lat_all += lat
                stalls += mon["waiting"]
                stall_log += [
                    {
                        "join": len(per_join) - 1,
                        "at_s": round((w["wall"] - f0["wall"]) / 1000, 2),
                        "currentTime": round(w["currentTime"], 3),
                        "buffered": w["buffered"],
                    }
                    for w in mon["log"]
                ]
                frames += f1["total"] - f0["total"]
                expected += round((f1["currentTime"] - f0["currentTime"]) * 30)
    finally:
        if ng is not None:
            ng.terminate()
        proc.terminate()
        proc.wait(10)
    lat_all.sort()
    print(
        json.dumps(
            {
                "via": via,
                "media": media,
                "size": size,
                "part_frames": part_frames,
                "gop": gop if media == "testsrc" else 30,
                "joins": joins,
                "seconds_per_join": seconds,
                "samples": len(lat_all),
                "median_s": round(statistics.median(lat_all), 3),
                "p95_s": round(lat_all[int(0.95 * len(lat_all))], 3),
                "max_s": round(lat_all[-1], 3),
                "median_per_join_s": per_join,
                "stalls": stalls,
                "stall_log": stall_log,
                "frames": frames,
                "frames_expected": expected,
            },
            indent=1,
        )
    )
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


def _first_listed(spool: Path, name: str) -> bool:
    """Does the spool list a media segment of ``name`` yet (in progress or complete)?"""
    for folder in (spool / f".{name}.partial", spool / name):
        try:
            if json.loads((folder / "manifest.json").read_text())["segments"]:
                return True
        except (OSError, ValueError, KeyError):
            pass
    return False


def submit(preset: str, tries: int, seconds: float, via: str, keep: bool = False) -> None:
    """Submit-to-screen, ``tries`` times in one sitting, one viewer watching throughout."""
    from playwright.sync_api import sync_playwright

    from avatarrender.render import render
    from avatarrender.spec import load_spec, parse_cues

    demo = ROOT / "examples" / "demo"
    tmp = Path(tempfile.mkdtemp(prefix="playout-submit-"))
    doc = yaml.safe_load((demo / "segment.yaml").read_text())
    doc["duration_s"] = seconds
    caps = doc.get("captions") or {}
    if caps.get("file"):  # the cues that end before the cut
        cues = parse_cues((demo / caps.pop("file")).read_text())
        caps["cues"] = [
            {"text": c.text, "start_s": c.start_s, "end_s": c.end_s} for c in cues if c.end_s <= seconds
        ]
    (tmp / "assets").symlink_to(demo / "assets")
    yml = tmp / "talk.yaml"
    yml.write_text(yaml.safe_dump(doc))
    spool, inbox = tmp / "spool", tmp / "inbox"
    spool.mkdir()
    t = time.time()
    render(load_spec(demo / "segment.yaml", overrides={"preset": preset}).idle(10.0), tmp / "filler")
    print(f"filler rendered in {time.time() - t:.1f} s", file=sys.stderr)
    exe = str(Path(sys.executable).with_name("avatarrender"))
    service = None
    if via == "service":
        service = subprocess.Popen(
            # warmed with the channel's scene (the filler's spec), as a channel runs it
            [exe, "serve", "--inbox", str(inbox), "--spool", str(spool), "--preset", preset]
            + ["--warm", str(demo / "segment.yaml")],
            stdout=open(tmp / "serve.log", "w"),
            stderr=subprocess.STDOUT,
        )
        while "watching" not in (tmp / "serve.log").read_text():
            if service.poll() is not None:
                sys.exit((tmp / "serve.log").read_text())
            time.sleep(0.05)
    proc, url = _playout(["--spool", str(spool), "--filler", str(tmp / "filler")], tmp)

    def on_air() -> dict:
        return json.loads(urllib.request.urlopen(url + "/status").read())["on_air"]

    results = []
    try:
        with sync_playwright() as p:
            browser, page = _monitor(p, url)
            # a program starts at a part boundary: submissions at a random phase of the part
            # grid (else the 4 s wait after the last program, which ended on the grid, puts
            # every try of a sitting at the same phase, all early or all a part late)
            rng = random.Random(20261130)
            part_s = json.loads(urllib.request.urlopen(url + "/status").read())["part_target_s"] or 0.2
            for i in range(tries):
                page.wait_for_timeout(4000 + 1000 * rng.uniform(0, part_s))
                name = f"submitted{i}"
                # new speech every time, as a TTS makes it (the service keeps decoded audio by
                # file: the channel's clips are decoded once, speech never twice)
                shutil.copyfile(demo / doc["speech"]["file"], tmp / f"speech{i}.wav")
                yml = tmp / f"talk{i}.yaml"
                yml.write_text(yaml.safe_dump({**doc, "speech": {**doc["speech"], "file": f"speech{i}.wav"}}))
                t_submit = time.time()
                if via == "service":
                    cmd = [exe, "submit", str(yml), "--inbox", str(inbox), "--name", name]
                else:
                    cmd = [
                        exe,
                        "render",
                        str(yml),
                        "--preset",
                        preset,
                        "--into",
                        str(spool),
                        "--name",
                        name,
                        "--quiet",
                    ]
                sub = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
                since = t_first = None
                while since is None and time.time() - t_submit < 60:
                    if t_first is None and _first_listed(spool, name):
                        t_first = time.time()
                    oa = on_air()
                    if oa.get("key") == f"spool/{name}":
                        since = oa["since"]
                    time.sleep(0.01)
                t_published = time.time()
                if since is None:
                    sys.exit(f"{name} did not go on air within 60 s; see {tmp}")
                page.wait_for_function(
                    f"window.__hls && window.__hls.playingDate && window.__hls.playingDate >= new Date('{since}')",
                    timeout=30_000,
                    polling=10,
                )
                t_screen = time.time()
                pdt = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
                results.append(
                    {
                        "first_segment_s": round((t_first or t_published) - t_submit, 3),
                        "program_start_s": round(pdt - t_submit, 3),
                        "submit_to_air_s": round(t_published - t_submit, 3),
                        "submit_to_screen_s": round(t_screen - t_submit, 3),
                        "viewer_behind_s": round(t_screen - pdt, 3),
                    }
                )
                print(json.dumps(results[-1]), file=sys.stderr)
                sub.wait()
                # the program ends (filler inside it, when a media segment comes late, is not
                # its end), then filler again
                while time.time() < pdt + seconds or on_air().get("key") != "filler":
                    time.sleep(0.2)
            mon = page.evaluate("({waiting: window.__monitor.waiting, errors: window.__monitor.errors})")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
        if service is not None:
            service.terminate()
            service.wait(30)
    screen = sorted(r["submit_to_screen_s"] for r in results)
    print(
        json.dumps(
            {
                "preset": preset,
                "via": via,
                "seconds": seconds,
                "tries": results,
                "median_submit_to_screen_s": statistics.median(screen),
                "p95_submit_to_screen_s": screen[min(len(screen) - 1, int(0.95 * len(screen)))],
                **{
                    f"median_{k}": statistics.median(r[k] for r in results)
                    for k in ("first_segment_s", "program_start_s", "submit_to_air_s", "viewer_behind_s")
                },
                "stalls": mon["waiting"],
                "fatal_errors": [e for e in mon["errors"] if e["fatal"]],
                # "media segment N not rendered in time: filler until it is"
                "filler_inside_programs": (tmp / "playout.log").read_text().count("not rendered in time"),
            },
            indent=1,
        )
    )
    if keep:
        print(f"kept {tmp} (serve.log, playout.log, the spool's manifests)", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("latency")
    a.add_argument("--size", default="1920x1080")
    a.add_argument("--seconds", type=int, default=20)
    a.add_argument("--joins", type=int, default=5)
    a.add_argument("--via", choices=["builtin", "nginx"], default="builtin")
    from avatarrender.playout.schedule import ScheduleModel

    a.add_argument(
        "--part-frames",
        type=int,
        default=ScheduleModel.model_fields["part_frames"].default,
        help="LL-HLS part length in frames (default: the schedule's default)",
    )
    a.add_argument(
        "--media",
        choices=["demo", "testsrc"],
        default="demo",
        help="the demo's idle filler as the renderer makes it, or ffmpeg's testsrc",
    )
    a.add_argument(
        "--gop",
        type=int,
        default=30,
        help="testsrc only: keyframe every N frames (30: one per "
        "media segment, as the renderer's presets; = part frames: every part independent)",
    )
    b = sub.add_parser("submit")
    b.add_argument("--preset", default="1080p30")
    b.add_argument("--tries", type=int, default=5)
    b.add_argument("--seconds", type=float, default=30.0)
    b.add_argument(
        "--via",
        choices=["service", "render"],
        default="service",
        help="the warm render service (avatarrender submit) or a one-shot render --into",
    )
    b.add_argument("--keep", action="store_true", help="keep the logs and the spool (path printed)")
    args = ap.parse_args()
    if args.cmd == "latency":
        latency(args.size, args.seconds, args.joins, args.via, args.part_frames, args.gop, args.media)
    else:
        submit(args.preset, args.tries, args.seconds, args.via, args.keep)


if __name__ == "__main__":
    main()
