"""Speech with ground truth from another synthesizer family: CMU flite (Debian's ``flite``).

flite's voices are built from recordings of real speakers: ``kal``/``kal16`` are diphone voices
(one speaker's diphones spliced), ``awb``, ``rms`` and ``slt`` statistical parametric (clustergen)
voices trained on the CMU ARCTIC recordings. ``flite -psdur`` prints every segment with the time
it ends, which gives the phone timings; the audio is the same run's.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile

from .espeak import Phoneme, Utterance, read_wav

__all__ = ["VOICES", "available", "synthesize"]

VOICES = ("kal", "kal16", "awb", "rms", "slt")
# the voices' own mean pitch, about (four male speakers, slt female)
VOICE_F0_HZ = {"kal": 100.0, "kal16": 100.0, "awb": 100.0, "rms": 100.0, "slt": 180.0}


@functools.lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The voices of :data:`VOICES` that ``flite -lv`` lists (none without flite)."""
    exe = shutil.which("flite")
    if not exe:
        return ()
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True, check=False).stdout
    listed = set(out.split(":", 1)[-1].split())
    return tuple(v for v in VOICES if v in listed)


def synthesize(
    text: str, *, voice: str = "slt", stretch: float = 1.0, f0_hz: float | None = None
) -> Utterance:
    """Speak ``text`` with a flite voice.

    Parameters
    ----------
    stretch : float
        Duration factor (``duration_stretch``): 1.3 is 30 % slower.
    f0_hz : float, optional
        Target mean pitch (``int_f0_target_mean``); the voice's own when not given.
    """
    if voice not in available():
        raise ValueError(f"flite has no voice {voice!r} (flite -lv lists {', '.join(available())})")
    fd, path = tempfile.mkstemp(suffix=".wav", prefix="flite-")
    os.close(fd)
    try:
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
        if f0_hz:
            cmd += ["--setf", f"int_f0_target_mean={f0_hz:.1f}"]
        res = subprocess.run(
            cmd + ["-psdur", "-t", text, "-o", path], capture_output=True, text=True, check=True
        )
        samples, sr = read_wav(path)
    finally:
        os.unlink(path)
    phonemes = []
    start = 0.0
    for item in res.stdout.split():
        name, _, end = item.rpartition(":")
        try:
            end_s = float(end)
        except ValueError:
            continue
        phonemes.append(Phoneme(name, start))
        start = end_s
    return Utterance(samples=samples, sample_rate_hz=sr, phonemes=tuple(phonemes), alphabet="arpabet")
