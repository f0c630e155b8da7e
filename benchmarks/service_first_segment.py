"""Submission to first media segment: the warm render service against the one-shot render.

    .venv/bin/python -m benchmarks.service_first_segment [--seconds 20] [--preset 1080p30] [--tries 5]

Starts ``avatarrender serve`` once (workers warm), then, interleaved, ``tries`` times each:

* service: ``avatarrender submit`` of the demo (cut to ``--seconds``) to its inbox, timed from
  the moment the submit command starts to the first media segment listed in the spool;
* one-shot: ``avatarrender render --into SPOOL``, timed the same way.

Prints the median and every try, and the service's own figure from its render statistics.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from avatarrender.spec import parse_cues

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo"
EXE = Path(sys.executable).with_name("avatarrender")


def _listed(part: Path, final: Path) -> bool:
    for folder in (part, final):
        try:
            if json.loads((folder / "manifest.json").read_text())["segments"]:
                return True
        except (OSError, ValueError, KeyError):
            pass
    return False


def _first_segment(cmd: list[str], spool: Path, name: str, *, wait_done: bool = True) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    part, final = spool / f".{name}.partial", spool / name
    while not _listed(part, final):
        if any(spool.parent.glob(f"inbox/{name}.error")):
            raise SystemExit(next(spool.parent.glob(f"inbox/{name}.error")).read_text())
        if time.perf_counter() - t0 > 120:
            raise SystemExit(f"{name}: no media segment after 120 s")
        time.sleep(0.002)
    first = time.perf_counter() - t0
    proc.wait()
    while wait_done and not (final / "manifest.json").is_file():
        time.sleep(0.02)
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--preset", default="1080p30")
    ap.add_argument("--tries", type=int, default=5)
    args = ap.parse_args()
    if not (DEMO / "assets").is_dir():
        subprocess.run([sys.executable, str(DEMO / "make_assets.py")], check=True)
    with tempfile.TemporaryDirectory(prefix="avr-service-") as tmp:
        tmp = Path(tmp)
        doc = yaml.safe_load((DEMO / "segment.yaml").read_text())
        doc["duration_s"] = args.seconds
        caps = doc.get("captions") or {}
        if caps.get("file"):  # keep the cues that end before the cut
            cues = parse_cues((DEMO / caps.pop("file")).read_text())
            caps["cues"] = [
                {"text": c.text, "start_s": c.start_s, "end_s": c.end_s}
                for c in cues
                if c.end_s <= args.seconds
            ]
        (tmp / "assets").symlink_to(DEMO / "assets")
        yml = tmp / "talk.yaml"
        yml.write_text(yaml.safe_dump(doc))
        inbox, spool = tmp / "inbox", tmp / "spool"
        log = open(tmp / "serve.log", "w")
        serve = subprocess.Popen(
            # warmed with the scene (the demo's own spec), as a channel runs it
            [str(EXE), "serve", "--inbox", str(inbox), "--spool", str(spool), "--preset", args.preset]
            + ["--warm", str(DEMO / "segment.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while "watching" not in (tmp / "serve.log").read_text():
                if serve.poll() is not None:
                    raise SystemExit((tmp / "serve.log").read_text())
                time.sleep(0.05)
            warm, oneshot = [], []
            for i in range(args.tries):
                # new speech every time, as a TTS makes it (the service keeps decoded audio by
                # file: a channel's clips are decoded once, speech never twice)
                shutil.copyfile(DEMO / doc["speech"]["file"], tmp / f"speech{i}.wav")
                yml = tmp / f"talk{i}.yaml"
                yml.write_text(yaml.safe_dump({**doc, "speech": {**doc["speech"], "file": f"speech{i}.wav"}}))
                warm.append(
                    _first_segment(
                        [str(EXE), "submit", str(yml), "--inbox", str(inbox), "--name", f"warm{i}"],
                        spool,
                        f"warm{i}",
                    )
                )
                oneshot.append(
                    _first_segment(
                        [
                            str(EXE),
                            "render",
                            str(yml),
                            "--preset",
                            args.preset,
                            "--into",
                            str(spool),
                            "--name",
                            f"cold{i}",
                            "-q",
                        ],
                        spool,
                        f"cold{i}",
                    )
                )
            status = json.loads((inbox / ".status.json").read_text())
        finally:
            serve.terminate()
            serve.wait(30)
    inner = [d["first_segment_s"] for d in status["done"]]
    print(
        json.dumps(
            {
                "preset": args.preset,
                "seconds": args.seconds,
                "service_median_s": round(statistics.median(warm), 3),
                "service_tries_s": [round(x, 3) for x in warm],
                "service_render_first_segment_s": inner,
                "oneshot_median_s": round(statistics.median(oneshot), 3),
                "oneshot_tries_s": [round(x, 3) for x in oneshot],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
