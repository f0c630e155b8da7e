"""Lip-sync scores against espeak-ng's phoneme timings, ours beside the RMS+ZCR baseline.

    .venv/bin/python -m benchmarks.lipsync_eval
"""
from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avatarrender.evaluation import CORPUS, VOICES, evaluate  # noqa: E402
from avatarrender.lipsync import baseline_mouth_track, mouth_track  # noqa: E402

TARGETS = {"activity": ">= 0.95", "openness_r": ">= 0.6", "closure": ">= 0.70", "one_frame": "0",
           "lag": "0", "accuracy": ">= 0.6"}


def main() -> None:
    fps = Fraction(30)
    print(f"{len(CORPUS)} sentences x {len(VOICES)} voices/rates ({', '.join(f'{v}@{r}' for v, r in VOICES)}), "
          f"{fps} fps")
    results = {}
    for name, method in (("ours", mouth_track), ("RMS+ZCR", baseline_mouth_track)):
        t = time.perf_counter()
        results[name] = evaluate(method, fps=fps)[0]
        print(f"  {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(f"{'metric':12} {'ours':>8} {'RMS+ZCR':>8}   target")
    for field, target in TARGETS.items():
        a, b = getattr(results["ours"], field), getattr(results["RMS+ZCR"], field)
        fmt = "{:8d}" if field == "lag" else "{:8.3f}"
        print(f"{field:12} {fmt.format(a)} {fmt.format(b)}   {target}")
    import numpy as np

    y = np.random.default_rng(0).standard_normal(60 * 48000).astype(np.float32) * 0.1
    mouth_track(y[:48000], 48000, fps=fps)
    t = time.perf_counter()
    mouth_track(y, 48000, fps=fps)
    print(f"60 s of 48 kHz audio analysed in {time.perf_counter() - t:.3f} s (after import)")


if __name__ == "__main__":
    main()
