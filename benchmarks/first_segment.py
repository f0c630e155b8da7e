"""Render-ahead streaming: time from typing the command to the first playable media segment.

    .venv/bin/python -m benchmarks.first_segment [--seconds 60] [--preset 1080p30]

Runs ``avatarrender render`` on the demo lengthened to ``--seconds`` (silence after the speech)
as a user would, watches the in-progress EVENT playlist, and prints when the first media segment
was listed, when a quarter of the segment was, and when the render finished.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"


def listed(playlist: Path) -> int:
    try:
        return sum(1 for ln in playlist.read_text().splitlines() if ln and not ln.startswith("#"))
    except OSError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--preset", default="1080p30")
    args = ap.parse_args()
    if not (DEMO / "assets").is_dir():
        subprocess.run([sys.executable, str(DEMO / "make_assets.py")], check=True)
    with tempfile.TemporaryDirectory(prefix="avr-first-") as tmp:
        tmp = Path(tmp)
        doc = yaml.safe_load((DEMO / "segment.yaml").read_text())
        doc["duration_s"] = args.seconds
        (tmp / "assets").symlink_to(DEMO / "assets")
        yml = tmp / "long.yaml"
        yml.write_text(yaml.safe_dump(doc))
        out = tmp / "out"
        exe = Path(sys.executable).with_name("avatarrender")
        started = time.perf_counter()
        proc = subprocess.Popen([str(exe), "render", str(yml), "-o", str(out), "-q", "--preset", args.preset])
        first = quarter = None
        total = int(args.seconds)
        while proc.poll() is None:
            n = listed(out.with_name("out.partial") / "index.m3u8")
            now = time.perf_counter() - started
            if n >= 1 and first is None:
                first = now
            if n >= total // 4 and quarter is None:
                quarter = now
            time.sleep(0.01)
        done = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"render failed with {proc.returncode}")
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"{args.seconds:.0f} s segment at {args.preset}: first media segment playable "
        f"{first:.2f} s after the command started, a quarter after {quarter:.2f} s, "
        f"all {total} s after {done:.2f} s"
    )


if __name__ == "__main__":
    main()
