"""Speech with ground truth from a third synthesizer family: the Festival Speech Synthesis System.

Debian ships Festival with voices built from recordings of real speakers by two methods flite's
voices do not use: residual-excited LPC diphones (``kal_diphone``, ``ked_diphone``: two American
male speakers) and an HTS hidden-Markov-model voice (``cmu_us_slt_arctic_hts``, the ARCTIC ``slt``
speaker). Festival's utterance keeps every segment with the time it ends (``utt.save.segs``),
which gives the phone timings (ARPAbet, the "radio" phone set); the audio is the same run's. One
Festival process speaks a whole batch of sentences in a voice (:func:`synthesize_batch`).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from .espeak import Phoneme, Utterance, read_wav

__all__ = ["VOICES", "Request", "available", "synthesize_batch"]

VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
# the voices' own mean pitch (int_lr_params' target_f0_mean; slt's from its recordings)
VOICE_F0_HZ = {"kal_diphone": 105.0, "ked_diphone": 105.0, "cmu_us_slt_arctic_hts": 180.0}


@dataclasses.dataclass(frozen=True)
class Request:
    """One sentence to speak: ``stretch`` 1.3 is 30 % slower; ``f0_hz`` the mean pitch (the
    voice's own when not given; diphone voices only, an HTS voice keeps its own)."""

    text: str
    stretch: float = 1.0
    f0_hz: float | None = None


@functools.lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The voices of :data:`VOICES` that Festival has installed (none without Festival)."""
    if not shutil.which("festival"):
        return ()
    out = subprocess.run(
        ["festival", "-b", "(print (voice.list))"], capture_output=True, text=True, check=False
    ).stdout
    listed = set(out.replace("(", " ").replace(")", " ").split())
    return tuple(v for v in VOICES if v in listed)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _settings(voice: str, req: Request) -> str:
    """Scheme that sets the speaking rate and pitch of ``voice`` for one sentence."""
    if voice.endswith("_hts"):
        # hts_engine's -r: speech speed (>1 faster). Debian's Festival 2.5 ignores its -fm (a
        # pitch shift in half-tones; the median pitch stays within 1 Hz at +12), so an HTS voice
        # keeps its own pitch.
        return f'(set! hts_engine_params (append {voice}::hts_engine_params (list (list "-r" {1.0 / req.stretch:.4f}))))'
    out = f"(Parameter.set 'Duration_Stretch {req.stretch:.4f})"
    if not req.f0_hz:  # the voice's own, kept when the batch began: a pitch set before must not stay
        return out + "(set! int_lr_params own_lr_params)"
    return out + (
        f"(set! int_lr_params '((target_f0_mean {req.f0_hz:.1f}) (target_f0_std "
        f"{req.f0_hz * 0.14:.1f}) (model_f0_mean 170) (model_f0_std 34)))"
    )


def synthesize_batch(requests: list[Request], *, voice: str = "kal_diphone") -> list[Utterance]:
    """Speak every request with one Festival process in ``voice``."""
    if voice not in available():
        raise ValueError(f"Festival has no voice {voice!r} (installed: {', '.join(available()) or 'none'})")
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        lines = [f"(voice_{voice})", "(set! own_lr_params int_lr_params)"]
        for k, req in enumerate(requests):
            lines += [
                _settings(voice, req),
                f"(set! utt (Utterance Text {_scheme_string(req.text)}))",
                "(utt.synth utt)",
                f"(utt.save.wave utt {_scheme_string(f'{tmp}/{k}.wav')} 'riff)",
                f"(utt.save.segs utt {_scheme_string(f'{tmp}/{k}.segs')})",
            ]
        script = Path(tmp, "batch.scm")
        script.write_text("\n".join(lines) + "\n")
        subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=True)
        return [_read(Path(tmp, f"{k}.wav"), Path(tmp, f"{k}.segs")) for k in range(len(requests))]


def _read(wav_path: Path, segs_path: Path) -> Utterance:
    samples, sr = read_wav(wav_path)
    phonemes, start, body = [], 0.0, False
    for line in segs_path.read_text().splitlines():
        if not body:  # an xlabel header, ended by "#"
            body = line.strip() == "#"
            continue
        parts = line.split()
        if len(parts) < 3:
            continue
        phonemes.append(Phoneme(parts[2], start))
        start = float(parts[0])
    return Utterance(samples=samples, sample_rate_hz=sr, phonemes=tuple(phonemes), alphabet="arpabet")
