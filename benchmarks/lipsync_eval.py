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

TARGETS = {"activity": ">= 0.95", "openness_r": ">= 0.6", "closure": ">= 0.70",
           "closure_precision": "(A runs at a p/b/m)", "one_frame": "0",
           "lag": "0", "accuracy": ">= 0.6"}


# voices (and variants) the classifier never heard in training (evaluation/train.py)
UNSEEN_VOICES = (("en-gb-x-rp", 165), ("en-gb-x-gbclan", 150), ("en-gb-x-gbcwmd", 200), ("en-us+f1", 160))


def _table(results: dict) -> None:
    print(f"{'metric':18} {'ours':>8} {'RMS+ZCR':>8}   target")
    for field, target in TARGETS.items():
        a, b = getattr(results["ours"], field), getattr(results["RMS+ZCR"], field)
        fmt = "{:8d}" if field == "lag" else "{:8.3f}"
        print(f"{field:18} {fmt.format(a)} {fmt.format(b)}   {target}")


def main() -> None:
    import numpy as np
    import librosa

    from avatarrender.evaluation.espeak import synthesize

    fps = Fraction(30)
    print(f"{len(CORPUS)} sentences x {len(VOICES)} voices/rates ({', '.join(f'{v}@{r}' for v, r in VOICES)}), "
          f"{fps} fps")
    results, each = {}, {}
    for name, method in (("ours", mouth_track), ("RMS+ZCR", baseline_mouth_track)):
        t = time.perf_counter()
        results[name], each[name] = evaluate(method, fps=fps)
        print(f"  {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    _table(results)
    print("\nexact shape accuracy per voice (ours / RMS+ZCR):")
    per = len(CORPUS)
    for k, (voice, rate) in enumerate(VOICES):
        a = np.mean([s.accuracy for s in each["ours"][k * per : (k + 1) * per]])
        b = np.mean([s.accuracy for s in each["RMS+ZCR"][k * per : (k + 1) * per]])
        print(f"  {voice + '@' + str(rate):20} {a:.3f} / {b:.3f}")
    print(f"\nvoices never trained on ({', '.join(f'{v}@{r}' for v, r in UNSEEN_VOICES)}):")
    _table({name: evaluate(method, fps=fps, voices=UNSEEN_VOICES)[0]
            for name, method in (("ours", mouth_track), ("RMS+ZCR", baseline_mouth_track))})

    # 60 s of speech with pauses at the renderer's 48 kHz
    parts = []
    while sum(len(p) for p in parts) < 60 * 22050:
        for text in CORPUS:
            parts += [synthesize(text, voice="en-us", rate_wpm=160).samples, np.zeros(11025, np.float32)]
    y = librosa.resample(np.concatenate(parts)[: 60 * 22050], orig_sr=22050, target_sr=48000)
    mouth_track(y[:48000], 48000, fps=fps)
    t = time.perf_counter()
    mouth_track(y, 48000, fps=fps)
    print(f"\n60 s of 48 kHz speech analysed in {time.perf_counter() - t:.3f} s (after import)")


if __name__ == "__main__":
    main()
