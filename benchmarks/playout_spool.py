"""The playout's look at a large spool, per tick: a day of 1-minute programs left in the spool.

    .venv/bin/python -m benchmarks.playout_spool [--items 1440] [--ticks 400]

Makes ``--items`` spool folders (hard links of one small render), starts a playout on them with
a fake clock, and times its spool poll per tick: when the folder has not changed since it was
last listed (the usual tick), and when it has (a listing: every ``SPOOL_RESCAN_S``, or after an
item comes or goes). Prints milliseconds per poll.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from avatarrender.playout.engine import Playout  # noqa: E402
from avatarrender.playout.schedule import load_schedule  # noqa: E402
from playout_media import make_rendered  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1440)
    ap.add_argument("--ticks", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="avr-spool-") as tmp:
        root = Path(tmp)
        make_rendered(root / "filler", pattern="green", seconds=3)
        make_rendered(root / "a", pattern="testsrc", seconds=1)
        spool = root / "spool"
        spool.mkdir()
        files = [p for p in (root / "a").rglob("*") if p.is_file()]
        for i in range(args.items):
            item = spool / f"item{i:05d}"
            item.mkdir()
            for f in files:
                os.link(f, item / f.relative_to(root / "a"))
        (root / "s.yaml").write_text("filler: {dir: filler}\nlate: {max_late_s: 5}\nspool: spool\n")
        p = Playout(load_schedule(root / "s.yaml"), root / "out", filler=root / "filler")
        now = Fraction(1_800_000_000)
        p.start(now)
        for _ in range(8):
            now += Fraction(1, 4)
            p.tick(now)
        t = time.perf_counter()
        for _ in range(args.ticks):
            p._poll_spool(now)
        same = (time.perf_counter() - t) / args.ticks
        t = time.perf_counter()
        for _ in range(args.ticks // 4):
            p._spool_listing = None  # as after a change of the folder
            p._poll_spool(now)
        listed = (time.perf_counter() - t) / (args.ticks // 4)
        print(
            f"{args.items} spool items: {same * 1e3:.2f} ms per poll, folder unchanged; "
            f"{listed * 1e3:.2f} ms when it is listed again"
        )
        shutil.rmtree(root / "out", ignore_errors=True)


if __name__ == "__main__":
    main()
