"""Lip sync and blinks: a mouth shape per frame from the speech alone, and a seeded blink track.

Shapes are Rhubarb Lip Sync's / Preston Blair's: ``X`` rest, ``A`` closed (p b m), ``B`` slightly
open with teeth (most consonants), ``C`` open (eh, ae), ``D`` wide (aa, ay), ``E`` rounded (ao, er),
``F`` puckered (oo, w), ``G`` upper teeth on lower lip (f, v), ``H`` tongue (l).

We render ahead of time, so the whole audio is known: :func:`mouth_track` classifies every frame
from a few spectral features, then an animation pass over the whole segment looks ahead
(anticipation), holds shapes for at least two frames, handles pauses and puts in-betweens on big
jumps. :func:`baseline_mouth_track` is the RMS + zero-crossing method of the system we replace.
When the words are known, :mod:`avatarrender.align` aligns their phonemes to the same
classifier's phone-class probabilities and feeds the same animation pass.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterable

import numpy as np

from .errors import MediaError, SpecError

__all__ = [
    "SHAPES",
    "OPENNESS",
    "load_audio",
    "mouth_track",
    "baseline_mouth_track",
    "read_track",
    "write_track",
    "fallback_map",
    "blink_track",
    "frame_features",
]

SHAPES = "XABCDEFGH"
_IDX = {s: i for i, s in enumerate(SHAPES)}
# How open each shape is (0 closed .. 1 wide): for in-betweens and for evaluation.
OPENNESS = {"X": 0.05, "A": 0.0, "B": 0.3, "C": 0.6, "D": 1.0, "E": 0.55, "F": 0.25, "G": 0.2, "H": 0.45}
_ANALYSIS_RATE_HZ = 16_000
_TOP_HZ = 3800

# Nearest drawn shape, in order of preference (a three-mouth character: X/A closed, C half, D open).
_FALLBACK = {
    "X": "XAB",
    "A": "AXBF",
    "B": "BCGXA",
    "C": "CBDEX",
    "D": "DCEBX",
    "E": "ECDFBX",
    "F": "FEBCAX",
    "G": "GBAX",
    "H": "HCBDX",
}


def fallback_map(available: Iterable[str]) -> dict[str, str]:
    """Map every shape to one the character draws.

    Each shape falls back along a fixed order of look-alikes (``D`` -> ``C`` -> ``E`` -> ``B`` ->
    ``X``; ``F`` -> ``E`` -> ``B`` -> ``C`` -> ``A`` -> ``X``; ...), ending at ``X``, which every
    character must draw. A three-mouth character (X, C, D) shows A/G/X closed (f and v barely
    part the lips), B/C/E/F/H half, D open.
    """
    have = set(available)
    if "X" not in have:
        raise ValueError("a character must draw at least the X (rest) mouth")
    out = {}
    for s in SHAPES:
        out[s] = next((c for c in _FALLBACK[s] + "XABCDEFGH" if c in have), "X")
    return out


def load_audio(path: str | Path, *, sample_rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """Decode any audio file to mono float32 (at ``sample_rate_hz``, default 16 kHz).

    Raises
    ------
    AssetNotFoundError
        No such file (also a ``FileNotFoundError``).
    MediaError
        It does not decode as audio.
    SpecError
        ``sample_rate_hz`` is not a positive whole number of Hz.
    """
    from .errors import AssetNotFoundError, SpecError
    from .media import read_audio

    if sample_rate_hz is not None and (
        isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, int) or sample_rate_hz <= 0
    ):
        raise SpecError(None, "sample_rate_hz", f"{sample_rate_hz!r} is not a sample rate (Hz, above 0)")
    if not Path(path).exists():
        raise AssetNotFoundError(path, None, "file not found")
    sr = sample_rate_hz or _ANALYSIS_RATE_HZ
    try:
        return read_audio(path, sample_rate_hz=sr), sr
    except MediaError as exc:
        raise MediaError(path, None, exc.message) from None


def _mono(y: np.ndarray) -> np.ndarray:
    """Any audio array as mono float32 in [-1, 1]: channels [shape=(c, n) or (n, c)] averaged,
    integer samples scaled, NaN and infinities replaced."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float32) / float(-np.iinfo(y.dtype).min)
    y = np.atleast_1d(y.astype(np.float32, copy=False))
    if y.size == 0:
        return np.zeros(0, np.float32)  # (a channel mean of nothing warns)
    if y.ndim == 2:
        y = y.mean(axis=0 if y.shape[0] <= y.shape[1] else 1)
    elif y.ndim > 2:
        raise ValueError(f"audio must be [n] or [channels, n], not shape {y.shape}")
    if y.size and -1.0 <= y.min() and y.max() <= 1.0:  # (False with a NaN)
        return y  # already clean: no copy of a long track (read only from here on)
    # a broken sample is silence, not a full-scale click (a copy: the caller's stays as it was)
    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(y, -1.0, 1.0, out=y)


def _frames(y: np.ndarray, sample_rate_hz: int, fps: Fraction, n_frames: int | None) -> int:
    for field, value in (("sample_rate_hz", sample_rate_hz), ("fps", fps)):
        if not value > 0:  # (nan too)
            raise SpecError(None, field, f"must be positive, got {value!r}")
    if n_frames is None:  # as many as the samples cover (none for no samples: it said one)
        shape = np.shape(y)  # (channels as _mono takes them: the shorter axis of two)
        if not np.size(y):
            n_samples = 0  # (0, 2) is what soundfile reads of an empty stereo file
        elif len(shape) == 2:
            n_samples = max(shape)
        else:
            n_samples = shape[0] if shape else 1
        n_frames = math.ceil(n_samples * fps / sample_rate_hz)
    return int(n_frames)


@functools.lru_cache(maxsize=4)
def mel_filters(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``librosa.filters.mel`` (Slaney scale and area norm, its defaults), in numpy.

    Importing librosa's filters module costs about half a second, which every render would pay
    before its first chunk starts; a test checks that both give the same matrix.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)]
    """

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log_at = 1000.0 / (200.0 / 3)
        return np.where(
            f >= 1000.0, log_at + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), lin
        )

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        log_at = 1000.0 / (200.0 / 3)
        return np.where(m >= log_at, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - log_at)), m * (200.0 / 3))

    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2 : n_mels + 2] - mel_hz[:n_mels]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _dct_ortho(n: int, k: int) -> np.ndarray:
    """The first ``k`` rows of the orthonormal DCT-II of length ``n`` [shape=(k, n)]: what
    ``scipy.fft.dct(x, type=2, norm="ortho")[:k]`` computes, without importing scipy.fft
    (0.7 s on a one-shot render's critical path, for a 13 x 40 product)."""
    j = np.arange(n)
    d = np.cos(np.pi * (j[None, :] + 0.5) * np.arange(k)[:, None] / n) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def frame_features(
    y: np.ndarray,
    sample_rate_hz: int,
    *,
    fps: Fraction,
    n_frames: int | None = None,
    warp: float = 1.0,
    voicing: bool = False,
    warps: tuple[float, ...] = (),
) -> dict[str, np.ndarray]:
    """Per-frame features, each ``np.ndarray [shape=(n_frames,)]``.

    ``rms_db`` (dB re full scale), ``zcr`` (crossings per sample), ``centroid_hz``, ``flatness``
    (0 tonal .. 1 noise), ``low``/``mid``/``high`` (band energy shares of 100-900, 900-2500 and
    2500-3800 Hz), ``mfcc`` [shape=(n_frames, 13)], on a window centred on each frame; with
    ``voicing``, ``voicing`` too (see :func:`_voicing`).

    ``warp`` is for training only (vocal tract length perturbation): the mel filterbank's band
    edges are divided by it, so the cepstra read the formants near the top of the band (F2, F3)
    as ``warp`` times higher and those below 1 kHz (F1) about half as far moved (the bands are
    spaced evenly in mel between the moved edges), another vocal tract. Pitch, level, timing and
    the other features stay. 1 in the shipped recipe (measured, no gain:
    ``evaluation.train.VTLP_RANGE``); at render time the speaker's own (:func:`_speaker_warp`).
    ``warps``: the cepstra through each of these warps too, ``mfcc_warped`` [shape=(n_frames,
    len(warps), 13)], from the same spectra.
    """
    n = _frames(y, sample_rate_hz, fps, n_frames)
    sr = _ANALYSIS_RATE_HZ
    hop = sr / float(fps)
    win = 1024
    # frame i covers [i/fps, (i+1)/fps): centre the window on its middle
    centres = ((np.arange(n) + 0.5) * hop).astype(np.int64)
    pad = _padded(_mono(y), sample_rate_hz, win)
    mel = mel_filters(sr=sr, n_fft=win, n_mels=32, fmin=50 / warp, fmax=_TOP_HZ / warp)
    extra = tuple(mel_filters(sr=sr, n_fft=win, n_mels=32, fmin=50 / w, fmax=_TOP_HZ / w) for w in warps)
    # Frames are independent: a block at a time keeps the windows and spectra (about 40 kB per
    # frame) from growing with the segment's length.
    blocks = [
        _block_features(
            pad, centres[a : a + _BLOCK_FRAMES], sr=sr, win=win, mel=mel, voicing=voicing, extra=extra
        )
        for a in range(0, n, _BLOCK_FRAMES)
    ] or [_block_features(pad, centres, sr=sr, win=win, mel=mel, voicing=voicing, extra=extra)]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


_BLOCK_FRAMES = 512
_RESAMPLE_PASS = 1 << 20  # input samples resampled at a time


def _padded(y: np.ndarray, sample_rate_hz: int, win: int) -> np.ndarray:
    """Mono float32 ``y`` at :data:`_ANALYSIS_RATE_HZ`, clipped to [-1, 1], NaN as 0, with
    ``win`` zeros each side [shape=(n_16k + 2 * win,), dtype=float32].

    Resampled a pass at a time straight into the one array: soxr's stream gives the samples of
    its one-shot ``resample`` (what librosa.resample(res_type="soxr_hq") calls), and a long
    track is not held again whole at 16 kHz besides the padded copy."""
    if sample_rate_hz == _ANALYSIS_RATE_HZ or not len(y):
        pad = np.zeros(y.shape[0] + 2 * win, dtype=np.float32)
        n = y.shape[0]
        pad[win : win + n] = y
    else:
        import soxr  # without librosa's import time

        expected = -(-y.shape[0] * _ANALYSIS_RATE_HZ // sample_rate_hz) + 64
        pad = np.zeros(expected + 2 * win, dtype=np.float32)
        stream = soxr.ResampleStream(sample_rate_hz, _ANALYSIS_RATE_HZ, 1, dtype="float32", quality="HQ")
        n = 0
        for i in range(0, y.shape[0], _RESAMPLE_PASS):
            part = np.ascontiguousarray(y[i : i + _RESAMPLE_PASS])
            got = stream.resample_chunk(part, last=i + _RESAMPLE_PASS >= y.shape[0])
            if win + n + got.shape[0] + win > pad.shape[0]:  # (never, by soxr's lengths)
                pad = np.concatenate([pad, np.zeros(got.shape[0] + 2 * win, dtype=np.float32)])
            pad[win + n : win + n + got.shape[0]] = got
            n += got.shape[0]
        pad = pad[: n + 2 * win]
        pad[win + n :] = 0.0
    body = pad[win : win + n]
    np.clip(body, -1.0, 1.0, out=body)
    np.nan_to_num(body, copy=False)
    dc = _dc_offset(body, win)
    if abs(dc) >= _DC_MIN:
        body -= dc
    return pad


# An offset under this (-40 dBFS) is left in: it leaves speech's floor and peak far apart (the
# activity is relative to them). espeak-ng's held-out sentences, whose quietest stretches are
# low sounds rather than silence, read 0.0001-0.0068 by :func:`_dc_offset`: taken out, their
# text track lost 0.015 shape accuracy and 0.027 openness r (benchmark's espeak-ng voices)
_DC_MIN = 0.01


def _dc_offset(body: np.ndarray, win: int) -> np.float32:
    """The recording's DC offset (a sound card's, a bad converter's): the median mean of its
    quietest tenth of ``win``-sample stretches, where no sound moves it (0 for digital silence:
    a synthesizer's pauses stay exact zeros, and its speech as it was). Left in, every window's
    level sat on it: 0.1 of offset read the whole recording as one steady noise with nothing on
    top, the mouth at rest throughout (tuning set)."""
    k = len(body) // win
    if k == 0:
        return np.float32(body.mean(dtype=np.float64)) if len(body) else np.float32(0.0)
    blocks = body[: k * win].reshape(k, win)
    means = blocks.mean(axis=1, dtype=np.float64)
    spread = blocks.std(axis=1, dtype=np.float64)
    quiet = np.argsort(spread, kind="stable")[: max(1, k // 10)]
    return np.float32(np.median(means[quiet]))


def _block_features(
    pad: np.ndarray,
    centres: np.ndarray,
    *,
    sr: int,
    win: int,
    mel: np.ndarray,
    voicing: bool = False,
    extra: tuple[np.ndarray, ...] = (),
) -> dict[str, np.ndarray]:
    idx = centres[:, None] + np.arange(-win // 2, win // 2)[None, :] + win
    idx = np.clip(idx, 0, len(pad) - 1)
    raw = pad[idx]
    frames = raw * np.hanning(win).astype(np.float32)[None, :]
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(win, 1.0 / sr)
    rms = np.sqrt(np.mean(raw[:, win // 4 : 3 * win // 4] ** 2, axis=1)) + 1e-9
    zcr = np.mean(np.abs(np.diff(np.sign(raw[:, win // 4 : 3 * win // 4]), axis=1)) > 0, axis=1)
    # Only 100 Hz - 3.8 kHz is used, so 8 kHz telephone audio gives the same features as 48 kHz.
    top = _TOP_HZ
    band = lambda lo, hi: spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)  # noqa: E731
    total = band(100, top)
    inband = (freqs >= 100) & (freqs < top)
    centroid = (spec[:, inband] * freqs[None, inband]).sum(axis=1) / spec[:, inband].sum(axis=1)
    geo = np.exp(np.mean(np.log(spec[:, inband]), axis=1))
    flat = geo / np.mean(spec[:, inband], axis=1)
    logmel = np.log(spec @ mel.T + 1e-10)
    mfcc = logmel @ _dct_ortho(logmel.shape[1], 13).T
    out = {
        "rms_db": 20 * np.log10(rms),
        "zcr": zcr,
        "centroid_hz": centroid,
        "flatness": flat,
        "low": band(100, 900) / total,
        "mid": band(900, 2500) / total,
        "high": band(2500, top) / total,
        "mfcc": mfcc,
    }
    if voicing:
        out["voicing"] = _voicing(frames, sr)
    if extra:
        dct = _dct_ortho(logmel.shape[1], 13).T
        out["mfcc_warped"] = np.stack([np.log(spec @ m.T + 1e-10) @ dct for m in extra], axis=1)
    return out


def _voicing(frames: np.ndarray, sr: int) -> np.ndarray:
    """How periodic each windowed frame is at a voice's pitch (60-400 Hz): the highest local
    peak of its autocorrelation there, over the window's own (1 for a steady vowel; see
    :data:`_VOICED`). A peak, not the highest value: a thump or a 40 Hz hum, whose
    autocorrelation only falls across those lags, is no voice (0 where there is none)."""
    win = frames.shape[1]
    lo, hi = sr // 400, sr // 60
    x = frames - frames.mean(axis=1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, n=2 * win, axis=1)) ** 2, axis=1)
    w = np.hanning(win)
    w_ac = np.correlate(w, w, "full")[win - 1 :]
    r = ac[:, lo - 1 : hi + 1] / (ac[:, :1] + 1e-12) / (w_ac[lo - 1 : hi + 1] / w_ac[0])
    mid = r[:, 1:-1]
    peak = (mid > r[:, :-2]) & (mid >= r[:, 2:])
    return np.where(peak, mid, 0.0).max(axis=1)


# frames around each frame the classifier sees (two ahead), for a model without ``CONTEXT`` of its
# own (a model carries the offsets it was trained on: evaluation.train.CONTEXT)
_CONTEXT = (-2, -1, 0, 1, 2)


def context_features(
    y: np.ndarray,
    sample_rate_hz: int,
    *,
    fps: Fraction,
    n_frames: int | None = None,
    context: tuple[int, ...] = _CONTEXT,
    warp: float = 1.0,
) -> np.ndarray:
    """The classifier's input: per-recording-normalised features of the frames around each frame
    (``context``: their offsets in frames; ``warp``: see :func:`frame_features`, training only).

    Returns
    -------
    np.ndarray [shape=(n_frames, len(context) * 20)]
    """
    f = frame_features(y, sample_rate_hz, fps=fps, n_frames=n_frames, warp=warp)
    return _context(f, context=context)


def _context(f: dict[str, np.ndarray], stride: int = 1, context: tuple[int, ...] = _CONTEXT) -> np.ndarray:
    """``stride``: frames per 30 fps frame of the features (3 for 90 fps features), so the
    context spans the same time whatever the hop; ``context``: the offsets (30 fps frames)."""
    level = f["rms_db"]
    _, peak = _levels(level)
    loud = np.clip((level - (peak - 45.0)) / 45.0, -0.5, 1.2)  # 0 at 45 dB below the speech peak
    mfcc = f["mfcc"]
    voiced = loud > 0.3
    mfcc = mfcc - (mfcc[voiced].mean(axis=0) if voiced.sum() > 3 else mfcc.mean(axis=0))  # CMN
    # and variance: voices (and synthesizers) differ in how far their spectra move; measured on
    # flite's voices with a classifier trained on espeak-ng alone, +0.03 shape accuracy
    sd = mfcc[voiced].std(axis=0) if voiced.sum() > 3 else mfcc.std(axis=0)
    mfcc = mfcc / (sd + 1e-3)
    base = np.column_stack(
        [mfcc, loud, np.gradient(loud), f["zcr"], np.log(f["flatness"] + 1e-6), f["low"], f["mid"], f["high"]]
    )
    n = len(base)
    cols = []
    for d in context:
        idx = np.clip(np.arange(n) + d * stride, 0, n - 1)
        cols.append(base[idx])
    return np.concatenate(cols, axis=1).astype(np.float64)


def _levels(rms_db: np.ndarray) -> tuple[float, float]:
    """(noise floor, speech peak) in dBFS, whatever the share of silence in the recording.

    The peak is taken among frames within 30 dB of the loudest, so three seconds of speech in a
    minute of silence (a padded segment) read the same as the three seconds alone.
    """
    if not len(rms_db):
        return -200.0, -200.0
    near_top = rms_db[rms_db >= rms_db.max() - 30.0]
    return float(np.percentile(rms_db, 10)), float(np.percentile(near_top, 90))


def _activity(rms_db: np.ndarray) -> np.ndarray:
    """Speech activity with hysteresis, relative to this recording's floor and peaks."""
    if not len(rms_db):
        return np.zeros(0, bool)
    floor, peak = _levels(rms_db)
    if peak < _SILENT_DBFS or peak - floor < 10:  # silence, or a steady noise with nothing on top
        return np.zeros(len(rms_db), bool)
    start = max(floor + _START * (peak - floor), peak - 40.0)
    keep = max(floor + _KEEP * (peak - floor), peak - 46.0)
    quiet_frames_to_stop = _STOP_FRAMES
    on = np.zeros(len(rms_db), bool)
    talking, quiet = False, 0
    for i, level in enumerate(rms_db):
        if not talking and level >= start:
            talking, quiet = True, 0
        elif talking:
            quiet = quiet + 1 if level < keep else 0
            if quiet >= quiet_frames_to_stop:
                talking = False
                on[i - quiet + 1 : i] = False
        on[i] = talking
    return on


def _voiced_runs(active: np.ndarray, voicing: np.ndarray) -> np.ndarray:
    """``active`` without its runs in which nothing is voiced: a click, a clap, a breath or a
    burst of noise between sentences is louder than the floor but no speech (a mouth opened for
    five to eight frames at each); every spoken word holds a voiced sound. Whispers are lost."""
    out = active.copy()
    for a, b, on in _runs(active.astype(np.int8)):
        if on and voicing[a:b].max() < _VOICED:
            out[a:b] = False
    return out


def _classify(f: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
    """A raw shape per frame (before the animation pass)."""
    n = len(active)
    out = np.full(n, _IDX["X"], dtype=np.int8)
    if not active.any():
        return out
    level = f["rms_db"]
    speech_levels = level[active]
    lo, hi = np.percentile(speech_levels, 10), np.percentile(speech_levels, 95)
    loud = np.clip((level - lo) / max(hi - lo, 1e-6), 0, 1)
    noisy = (f["flatness"] > 0.25) | (f["zcr"] > 0.25)
    for i in np.nonzero(active)[0]:
        if noisy[i] and f["high"][i] > 0.45:
            shape = "G" if f["centroid_hz"][i] < 3500 and loud[i] < 0.45 else "B"  # f/v vs s/sh
        elif loud[i] < 0.18:
            shape = "A" if f["low"][i] > 0.75 else "B"  # nasal murmur (m) is low-band and weak
        elif f["low"][i] > 0.8 and f["mid"][i] < 0.12:
            shape = "F" if loud[i] < 0.6 else "E"  # rounded: energy held low (oo, ao)
        elif loud[i] > 0.72 and f["mid"][i] > 0.2:
            shape = "D"
        elif loud[i] > 0.4:
            shape = "C"
        else:
            shape = "B"
        out[i] = _IDX[shape]
    # closures: a dip in level inside speech (the stop before p/b, the murmur of m)
    for i in range(1, n - 1):
        if active[i] and level[i] < min(level[i - 1], level[i + 1]) - 6 and loud[i] < 0.35:
            out[i] = _IDX["A"]
    return out


def _animate(
    raw: np.ndarray,
    active: np.ndarray,
    fps: Fraction,
    level_db: np.ndarray | None = None,
    known: np.ndarray | None = None,
    soft: np.ndarray | None = None,
) -> np.ndarray:
    """The animation pass over the whole segment: anticipation, holds, pauses, in-betweens,
    long static stretches broken at the syllable peaks of ``level_db`` [shape=(n,), dBFS].

    ``known`` [shape=(n,), bool] marks frames whose shape comes from aligned text: their long
    holds are real (a held vowel) and stay, and the minimum hold is the one that changes the
    fewest frames (:func:`_best_holds`) rather than a greedy merge; ``soft`` [shape=(n, 9)] adds
    how much of each frame each shape covers, so that boundaries move onto frames that are split."""
    n = len(raw)
    out = raw.copy()
    per_s = float(fps)
    # pauses: short ones hold the last shape, medium ones relax (B, then rest), long ones rest
    i = 0
    while i < n:
        if active[i]:
            i += 1
            continue
        j = i
        while j < n and not active[j]:
            j += 1
        gap_s = (j - i) / per_s
        if 0 < i and j < n and gap_s < _HOLD_PAUSE_S:
            out[i:j] = out[i - 1] if out[i - 1] != _IDX["A"] else _IDX["B"]  # short: hold
        elif 0 < i and j < n and gap_s < _RELAX_PAUSE_S:
            out[i:j] = _IDX["B"]  # medium: relax to slightly open
        elif 0 < i and j - i >= 4:
            out[i : i + 2] = _IDX["B"]  # long: ease out, then rest
        i = j
    # anticipation: inside speech the classifier sees two frames ahead; out of a rest the mouth
    # takes the first shape ~67 ms (two frames at 30 fps) before the sound, as animators advance it
    lead = max(1, int(round(_ONSET_LEAD_S * per_s)))
    runs = _runs(out)
    for k in range(len(runs) - 1):
        s_, e, v = runs[k]
        if v == _IDX["X"] and runs[k + 1][2] != _IDX["X"] and e - s_ >= lead + 2:
            out[e - lead : e] = runs[k + 1][2]
    # minimum hold of two frames: a one-frame shape takes its longer neighbour's shape
    min_hold = max(2, int(round(per_s / 15)))
    for _ in range(3 if known is None else 0):
        runs = _runs(out)
        changed = False
        for k, (s, e, v) in enumerate(runs):
            if e - s >= min_hold or len(runs) == 1:
                continue
            if v == _IDX["A"] and e - s >= 1 and k not in (0, len(runs) - 1):
                # keep closures visible: stretch them over the next frame instead
                if e < n:
                    out[e] = v
                    changed = True
                continue
            prev_len = runs[k - 1][1] - runs[k - 1][0] if k > 0 else -1
            next_len = runs[k + 1][1] - runs[k + 1][0] if k + 1 < len(runs) else -1
            out[s:e] = runs[k - 1][2] if prev_len >= next_len else runs[k + 1][2]
            changed = True
        if not changed:
            break
    # in-betweens: a jump from closed to wide opens through C for two frames
    for s_, e, v in _runs(out)[1:]:
        if {SHAPES[out[s_ - 1]], SHAPES[v]} in ({"A", "D"}, {"X", "D"}) and e - s_ >= (
            6 if known is not None and known[s_:e].all() else 4
        ):  # text: only long vowels
            out[s_ : s_ + 2] = _IDX["C"]
    # audio alone, between two syllable peaks the mouth never left open (a hum's pulses, vowels
    # the classifier is sure of across a dip of _DIP_DB or more): it relaxes at the dip
    if known is None and level_db is not None:
        open_ = np.array([OPENNESS[c] >= 0.5 for c in SHAPES])
        peaks = _syllable_peaks(np.where(active, level_db, -200.0), per_s)
        for p0, p1 in zip(peaks, peaks[1:]):
            d = p0 + 1 + int(np.argmin(level_db[p0 + 1 : p1])) if p1 - p0 > 2 else -1
            if d < 0 or not active[p0 : p1 + 1].all() or not open_[out[p0 : p1 + 1]].all():
                continue
            if min(level_db[p0], level_db[p1]) - level_db[d] >= _DIP_DB:
                lo = d - 1 if level_db[d - 1] < level_db[min(d + 1, p1)] else d
                out[lo : lo + 2] = _IDX["B"]
    # long static stretches inside speech: open (or relax) the mouth on each syllable peak, so a
    # held hum or vowel still moves; a closure held longer than a real m opens the soonest
    beat = max(2, int(round(0.1 * per_s)))
    for s_, e, v in _runs(out):
        limit_s = _STATIC_A_S if v == _IDX["A"] else _STATIC_S
        if v == _IDX["X"] or (e - s_) / per_s <= limit_s or active[s_:e].mean() < 0.8:
            continue
        if known is not None and known[s_:e].mean() > 0.5:
            continue
        alt = _IDX["B"] if SHAPES[v] in "CDE" else _IDX["C"]
        peaks = _syllable_peaks(level_db[s_:e], per_s) if level_db is not None else []
        if not peaks:  # no syllables to follow: alternate every 0.4 s
            step = max(2, int(per_s * 0.4))
            peaks = list(range(step, e - s_ - step, 2 * step))
        for p in peaks:
            lo, hi = s_ + max(p - beat // 2, 2), min(s_ + p - beat // 2 + beat, e - 2)
            if hi - lo >= 2:
                out[lo:hi] = alt
    if known is not None:
        return _best_holds(out, min_hold, soft)
    return _min_hold(out, max(2, int(round(per_s / 15))))


def _best_holds(track: np.ndarray, min_hold: int, soft: np.ndarray | None = None) -> np.ndarray:
    """The track nearest ``track`` (fewest frames changed, a closure frame counting double, plus
    ``soft`` [shape=(n, 9)] when given) in which every shape holds at least ``min_hold`` frames:
    a Viterbi over (shape, frames held)."""
    n, k, m = len(track), len(SHAPES), min_hold
    if n < m:
        return track.copy()
    gain = np.zeros((n, k))
    gain[np.arange(n), track] = np.where(track == _IDX["A"], _HOLD_CLOSURE_GAIN, 1.0)
    if soft is not None:
        gain += soft
        # a frame that must change takes the shape nearest in openness (D -> C, not D -> A)
        opening = np.array([OPENNESS[c] for c in SHAPES])
        gain += _NEAR_OPEN * (1.0 - np.abs(opening[None, :] - opening[track][:, None]))
    # state = shape * m + (held - 1), the last held level meaning "m or more"
    score = np.full(k * m, -np.inf)
    score[0::m] = gain[0]
    back = np.zeros((n, k * m), dtype=np.int16)
    ends = np.arange(k) * m + (m - 1)
    for t in range(1, n):
        new = np.full(k * m, -np.inf)
        src = np.zeros(k * m, dtype=np.int16)
        done = score[ends]
        # enter shape j at held 1 from any other shape that has held long enough
        order = np.argsort(done)[::-1]
        best, second = order[0], order[1]
        enter = np.where(np.arange(k) == best, done[second], done[best])
        new[0::m] = enter
        src[0::m] = np.where(np.arange(k) == best, ends[second], ends[best])
        for h in range(1, m):
            new[h::m] = score[h - 1 :: m]
            src[h::m] = np.arange(k) * m + h - 1
        stay = score[ends] > new[ends]
        new[ends] = np.where(stay, score[ends], new[ends])
        src[ends] = np.where(stay, ends, src[ends])
        score = new + np.repeat(gain[t], m)
        back[t] = src
    out = np.empty(n, dtype=track.dtype)
    s = int(ends[np.argmax(score[ends])])
    for t in range(n - 1, -1, -1):
        out[t] = s // m
        s = int(back[t, s])
    return out


def _syllable_peaks(level_db: np.ndarray, per_s: float) -> list[int]:
    """Frame offsets of the level's local maxima at least 0.2 s apart and 3 dB above the dips
    around them (syllable nuclei)."""
    gap = max(2, int(round(0.2 * per_s)))
    peaks: list[int] = []
    for i in range(1, len(level_db) - 1):
        if level_db[i] < level_db[i - 1] or level_db[i] < level_db[i + 1]:
            continue
        around = level_db[max(0, i - gap) : i + gap + 1]
        if level_db[i] - around.min() < 3.0 or level_db[i] < around.max():
            continue
        if peaks and i - peaks[-1] < gap:
            continue
        peaks.append(i)
    return peaks


def _min_hold(out: np.ndarray, min_hold: int) -> np.ndarray:
    """No shape shorter than ``min_hold`` frames: a closure borrows frames from a neighbour,
    anything else takes the longer neighbour's shape."""
    out = out.copy()
    for _ in range(20):
        runs = _runs(out)
        short = [k for k, (s_, e, _) in enumerate(runs) if e - s_ < min_hold]
        if not short or len(runs) == 1:
            break
        for k in short:
            s_, e, v = _runs(out)[k] if k < len(_runs(out)) else (0, 0, 0)
            runs = _runs(out)
            if k >= len(runs) or runs[k][1] - runs[k][0] >= min_hold:
                continue
            s_, e, v = runs[k]
            prev = runs[k - 1] if k > 0 else None
            nxt = runs[k + 1] if k + 1 < len(runs) else None
            need = min_hold - (e - s_)
            if v == _IDX["A"] and nxt and nxt[1] - nxt[0] - need >= min_hold:
                out[e : e + need] = v
            elif v == _IDX["A"] and prev and prev[1] - prev[0] - need >= min_hold:
                out[s_ - need : s_] = v
            else:
                plen = prev[1] - prev[0] if prev else -1
                nlen = nxt[1] - nxt[0] if nxt else -1
                out[s_:e] = prev[2] if plen >= nlen else nxt[2]
            break
    return out


def _runs(track: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, value) of each run of equal values."""
    if not len(track):
        return []
    edges = np.nonzero(np.diff(track))[0] + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(track)]])
    return [(int(s), int(e), int(track[s])) for s, e in zip(starts, ends)]


def _viterbi(logp: np.ndarray, switch_cost: float) -> np.ndarray:
    """The best shape path: per-frame log-probabilities minus a cost for every change."""
    n, k = logp.shape
    score = logp[0].copy()
    back = np.zeros((n, k), dtype=np.int16)
    stay = np.eye(k, dtype=bool)
    for t in range(1, n):
        cand = score[:, None] - np.where(stay, 0.0, switch_cost)  # [from, to]
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(k)] + logp[t]
    path = np.zeros(n, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def _loudness_prior(logp: np.ndarray, level_db: np.ndarray) -> np.ndarray:
    """Log-weights [shape=(n, 9)] favouring the shape whose openness matches the loudness,
    scaled by how unsure the classifier is (0 when its best shape has probability >= 0.7)."""
    target = _loudness_target(level_db)
    openness = np.array([OPENNESS[c] for c in SHAPES])
    prior = -((openness[None, :] - target[:, None]) ** 2) / (2 * 0.15**2)
    return _unsure(logp)[:, None] * prior


def _loudness_target(level_db: np.ndarray) -> np.ndarray:
    """Openness from loudness alone [shape=(n,)]: 0 at 30 dB below the speech peak, 1 at 6 dB."""
    _, peak = _levels(level_db)
    return np.clip((level_db - (peak - 30.0)) / 24.0, 0.0, 1.0)


def _unsure(logp: np.ndarray) -> np.ndarray:
    """0 where the best shape's probability is at least ``_SURE``, rising to 1 at 0.4 below
    [shape=(n,)]."""
    return np.clip((_SURE - np.exp(logp.max(axis=1))) / 0.4, 0.0, 1.0)


def class_logp(f: dict[str, np.ndarray], model=None, *, stride: int = 1) -> np.ndarray:
    """Log-probabilities of the phone classes (``phonemes.CLASSES``) per frame [shape=(n, 11)].

    ``model``: a mapping or module with ``MU``, ``SD``, ``W1``, ``B1``, ``W2``, ``B2`` (default:
    the shipped ``_lipsync_model``)."""
    return _network(f, model, stride=stride)[0]


def _network(
    f: dict[str, np.ndarray], model=None, *, stride: int = 1
) -> tuple[np.ndarray, np.ndarray | None]:
    """The classifier's phone-class log-probabilities [shape=(n, 11)] and, when the model has an
    openness head (``W3``, ``B3``), its openness estimate per frame [shape=(n,)], 0 closed .. 1
    wide (else ``None``)."""
    if model is None:
        from . import _lipsync_model as model
    get = (
        (lambda k: model.get(k))
        if isinstance(model, dict)
        else (lambda k: model[k] if k in model.files else None)
        if hasattr(model, "files")
        else (lambda k: getattr(model, k, None))
    )
    # a model carries the frame offsets it was trained on (``CONTEXT``); older ones used _CONTEXT
    ctx = get("CONTEXT")
    context = _CONTEXT if ctx is None else tuple(int(round(c)) for c in np.ravel(ctx))
    z = (_context(f, stride, context) - get("MU")) / get("SD")
    h = np.maximum(z @ get("W1") + get("B1"), 0.0)
    logits = h @ get("W2") + get("B2")
    logits -= logits.max(axis=1, keepdims=True)
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    w3 = get("W3")
    if w3 is None:
        return lp, None
    return lp, 1.0 / (1.0 + np.exp(-(h @ w3 + get("B3"))[:, 0]))


@functools.lru_cache(maxsize=1)
def _class_openness() -> np.ndarray:
    """Openness of each phone class's shape [shape=(11,)]."""
    from .phonemes import CLASS_SHAPE

    return np.array([OPENNESS[c] for c in CLASS_SHAPE])


def _openness_prior(openness_est: np.ndarray) -> np.ndarray:
    """Log-weights [shape=(n, 9)] favouring the shapes whose openness is near ``openness_est``
    [shape=(n,)], 0 closed .. 1 wide."""
    openness = np.array([OPENNESS[c] for c in SHAPES])
    return -_OPEN_WEIGHT * (openness[None, :] - openness_est[:, None]) ** 2 / (2 * _OPEN_SD**2)


def _shape_logp(class_lp: np.ndarray) -> np.ndarray:
    """Shape log-probabilities [shape=(n, 9)]: each shape sums its phone classes."""
    from .phonemes import CLASS_SHAPE

    out = np.full((len(class_lp), len(SHAPES)), -50.0)
    for i, s in enumerate(SHAPES):
        cols = [k for k, c in enumerate(CLASS_SHAPE) if c == s]
        if cols:
            m = class_lp[:, cols].max(axis=1)
            out[:, i] = m + np.log(np.exp(class_lp[:, cols] - m[:, None]).sum(axis=1))
    return np.maximum(out, -50.0)


def _frame_logp(f: dict[str, np.ndarray], model=None) -> np.ndarray:
    return _shape_logp(class_logp(f, model))


def mouth_track(
    y: np.ndarray,
    sample_rate_hz: int,
    *,
    fps: Fraction | int | float,
    n_frames: int | None = None,
    model=None,
    hear: bool = True,
) -> np.ndarray:
    """The mouth shape per frame, from the audio alone.

    A small classifier (one hidden layer over eleven phone classes, trained on espeak-ng, flite
    and Festival speech, rate, pitch, room, band, noise and codec varied, by ``avatarrender.evaluation.train``)
    over spectral features of five frames around each frame (two frames of look-ahead), on a 30 fps
    grid, gives each shape's probability (the sum of its classes'); where it is sure, a pull
    towards the mean openness of its classes keeps a lone wrong guess (a closure amid vowels)
    off the path; where it is unsure a loudness prior (louder opens wider) is blended in. Frames outside speech activity (level
    hysteresis) rest. The best path through the probabilities with a cost per change (Viterbi)
    avoids flicker; closures longer than an m are reopened. Then the animation pass over the
    whole segment: onset anticipation, pauses (short hold, medium relax, long rest), a minimum
    hold of two frames at 30 fps, two-frame in-betweens on closed-to-wide jumps, and long holds
    broken at syllable peaks, and an open stretch between two syllable peaks relaxed at the dip
    between them.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (channels, n_samples)]
        Speech, any sample rate, mono or multichannel.
    sample_rate_hz : int
    fps : Fraction
        Frames per second of the track.
    n_frames : int, optional
        Length of the track; default: as many frames as the audio covers.
    model : optional
        Classifier weights (see :func:`class_logp`); default: the shipped ones.
    hear : bool
        Lean on the phones PocketSphinx's model of recorded speakers hears (its phone loop,
        without the words; about 3 s of CPU a minute of speech): the classifier learnt
        synthesizers only.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=int8]
        Indices into :data:`SHAPES`. Silence rests (``X``).
    """
    a = analyse_audio(y, sample_rate_hz, fps=fps, n_frames=n_frames, model=model, hear=hear)
    if a.raw is None:
        return np.zeros(a.n_frames, dtype=np.int8)
    return _animate(a.raw, a.active, a.fps, a.level_db).astype(np.int8)


@dataclasses.dataclass
class AudioAnalysis:
    """What :func:`mouth_track` knows about a recording before the animation pass.

    ``raw`` is ``None`` when nothing is spoken. Arrays on the track's frames have shape
    ``(n_frames,)``; those on the classifier's 30 fps grid have ``(n_grid,)``.
    """

    fps: Fraction
    n_frames: int
    raw: np.ndarray | None  # shape per frame after the Viterbi smoothing, before the animation pass
    active: np.ndarray  # speech activity per frame
    level_db: np.ndarray  # level per frame (dBFS)
    grid_class_logp: np.ndarray | None  # [shape=(n_grid, 11)] phone-class log-probabilities
    grid_active: np.ndarray | None  # [shape=(n_grid,)]
    grid_of_frame: np.ndarray  # nearest grid frame of each track frame
    warp: float = 1.0  # the speaker's vocal tract warp the classifier read the speech through


def analyse_audio(
    y: np.ndarray,
    sample_rate_hz: int,
    *,
    fps: Fraction,
    n_frames: int | None = None,
    model=None,
    hear: bool = False,
) -> AudioAnalysis:
    """The audio-only analysis behind :func:`mouth_track` (see there; ``hear``: lean on the
    phones PocketSphinx hears, as it does)."""
    fps = Fraction(fps)
    y = _mono(y)
    n = _frames(y, sample_rate_hz, fps, n_frames)
    n_grid = max(1, math.ceil(n * _GRID_FPS / fps))
    pos = np.clip((np.arange(n) + 0.5) * float(_GRID_FPS / fps) - 0.5, 0, n_grid - 1)
    nearest = np.clip(np.rint(pos).astype(np.int64), 0, n_grid - 1)
    quiet = AudioAnalysis(fps, n, None, np.zeros(n, bool), np.full(n, -200.0), None, None, nearest)
    if y.size == 0:
        return quiet
    # the classifier was trained on 30 fps frames: analyse on that grid, then resample in time
    f = frame_features(y, sample_rate_hz, fps=_GRID_FPS, n_frames=n_grid, voicing=True, warps=_WARPS)
    grid_active = _voiced_runs(_activity(f["rms_db"]), f["voicing"])
    if not grid_active.any():
        quiet.level_db = f["rms_db"][nearest]
        return quiet
    warp, f = _speaker_warp(f, grid_active, model)
    grid_class, grid_open = _network(f, model)
    if hear and _unsure_of(grid_class, grid_active):
        heard = _heard_classes(y, sample_rate_hz, grid_active)
        if heard is not None:  # the phone the model of real speakers hears, where it hears one
            grid_class = lean_on(grid_class, [heard], _HEARD_WEIGHT)
    grid_logp = _shape_logp(grid_class)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_grid - 1)
    frac = (pos - lo)[:, None]
    logp = (1 - frac) * grid_logp[lo] + frac * grid_logp[hi]
    active = grid_active[nearest]
    # where the classifier is unsure (voices unlike its training: singing, cartoon voices, hums),
    # lean on loudness: louder opens wider, as an RMS mouth would, so the mouth still moves
    level = f["rms_db"][nearest]
    sure = 1.0 - _unsure(logp)
    logp = logp + _loudness_prior(logp, level)
    # how open the mouth is, as a whole: the openness head's estimate, else the posterior mean of
    # the classes' openness; a pull towards it keeps the best path from a wrong guess at the far
    # end (a closure amid vowels), as far as the classifier is sure (where it is not, loudness
    # leads), and not on a dip in level, where lips may close (a stop, a hum's pulses)
    if grid_open is None:
        grid_open = np.exp(grid_class) @ _class_openness()
    est = (1 - frac[:, 0]) * grid_open[lo] + frac[:, 0] * grid_open[hi]
    pad = np.pad(level, 2, mode="edge")
    around = np.minimum(np.maximum(pad[:-4], pad[1:-3]), np.maximum(pad[3:-1], pad[4:]))
    sure[level < around - _DIP_DB] = 0.0
    logp += sure[:, None] * _openness_prior(est)
    logp[~active, :] = -50.0
    logp[~active, _IDX["X"]] = 0.0
    logp[active, _IDX["X"]] -= 3.0  # inside speech the mouth moves
    logp[:, _IDX["A"]] += _CLOSURE_BIAS  # closures are short: make them worth a change
    switch_cost = _SWITCH_COST * 30 / float(fps)
    path = _viterbi(logp, switch_cost=switch_cost)
    # a closure held longer than an m is a hum or a misread vowel: let it close only briefly
    keep = max(2, int(round(0.1 * float(fps))))
    too_long = [
        (s_, e)
        for s_, e, v in _runs(path)
        if v == _IDX["A"] and (e - s_) / float(fps) > _STATIC_A_S and active[s_:e].mean() >= 0.8
    ]
    if too_long:
        for s_, e in too_long:
            logp[s_ + keep : e, _IDX["A"]] = -50.0
        path = _viterbi(logp, switch_cost=switch_cost)
    return AudioAnalysis(fps, n, path.astype(np.int8), active, level, grid_class, grid_active, nearest, warp)


# Audio alone, the classifier's class log-probabilities get this much for the phone PocketSphinx's
# phone loop hears at each frame (acoustic.hear_phones: a model of recorded speakers, where the
# classifier learnt synthesizers). Tuning set (DEV_CORPUS, 6 sentences; flite, Festival, Piper
# with classifiers trained without them; espeak-ng, its Spanish and German, with the shipped one),
# shape accuracy / openness r / p/b/m closure, without -> with: flite 0.59 / 0.72 / 0.93 -> 0.63 /
# 0.75 / 0.95, Festival 0.56 / 0.69 / 0.93 -> 0.63 / 0.73 / 0.95, Piper 0.48 / 0.58 / 0.86 -> 0.51
# / 0.60 / 0.86, espeak-ng 0.71 / 0.70 / 0.83 -> 0.72 / 0.70 / 0.81, Spanish 0.61 -> 0.64, German
# 0.63 -> 0.65; a LibriVox reader's closures 0.55 -> 0.76. Weighted 2: espeak-ng lost 0.04 and
# its closures 0.07. Every other frame scored (ds=2, half the time): closures lower (Festival 0.93,
# the reader 0.62)
_HEARD_WEIGHT = 1.0
# ... where the classifier is unsure of the recording: the mean log-probability of its best class
# over the speech under this. Tuning set, 10 % / median / 90 %: espeak-ng -0.55 / -0.48 / -0.38
# (the shipped classifier, trained on it), flite, Festival held out -0.63..-0.61 / -0.57..-0.56 /
# -0.47, recorded speakers (ALSA's, LibriVox's, PocketSphinx's test cards) -0.62..-0.61 / -0.59..
# -0.54 / -0.53..-0.50; the demo's speech -0.34, the grain scene's -0.42. What is sure is left as
# it was, for nothing: the loop's 3.7 s of CPU a minute of speech (a 20 s render of the demo
# without captions, 3.0 -> 4.0 s) go to the voices that gain from it
_HEAR_BELOW = -0.5


def lean_on(class_logp: np.ndarray, templates: list[np.ndarray], weight: float) -> np.ndarray:
    """``class_logp`` [shape=(n, classes)] with ``weight`` log units more for the class each
    template [shape=(n,)] gives a frame (-1: none), normalised again (a new array)."""
    out = class_logp.copy()
    for tpl in templates:
        on = np.flatnonzero(tpl >= 0)
        out[on, tpl[on]] += weight
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


def _unsure_of(grid_class: np.ndarray, grid_active: np.ndarray) -> bool:
    """Whether the classifier is unsure of the recording (:data:`_HEAR_BELOW`)."""
    return float(grid_class[grid_active].max(axis=1).mean()) < _HEAR_BELOW


# each run of speech is heard alone, with this much around it (runs closer than that joined): the
# front end takes its cepstral mean over what it is given, and a burst of noise in a pause moved
# the phones of the speech after it
_HEARD_PAD_S = 0.2
_HEARD_MAX_S = 20.0


def _heard_classes(y: np.ndarray, sample_rate_hz: int, grid_active: np.ndarray) -> np.ndarray | None:
    """The phone class PocketSphinx hears at each 30 fps frame of ``grid_active``'s runs of
    speech, -1 where none (``None``: no model here)."""
    from . import acoustic

    # the DC offset taken out as the features take it out, measured on about 16 kHz of the
    # samples (a view: a long recording is not copied whole)
    step = max(1, sample_rate_hz // _ANALYSIS_RATE_HZ)
    dc = float(_dc_offset(y[::step], 400))
    dc = dc if np.isfinite(dc) and abs(dc) >= _DC_MIN else 0.0
    n_grid = len(grid_active)
    out = np.full(n_grid, -1, dtype=np.int64)
    pad = int(round(_HEARD_PAD_S * float(_GRID_FPS)))
    runs: list[list[int]] = []
    for s_, e, v in _runs(grid_active.astype(np.int8)):
        if not v:
            continue
        s_, e = max(0, s_ - pad), min(n_grid, e + pad)
        if runs and s_ <= runs[-1][1]:
            runs[-1][1] = e
        else:
            runs.append([s_, e])
    # a long run is heard in pieces: each search holds the GIL (a stop, Ctrl-C, waits for it),
    # about 1.2 s of CPU for 20 s
    most = int(_HEARD_MAX_S * float(_GRID_FPS))
    runs = [[a, min(a + most, e)] for s_, e in runs for a in range(s_, e, most)]
    heard = False
    for s_, e in runs:
        i0 = int(s_ / float(_GRID_FPS) * sample_rate_hz)
        i1 = min(len(y), int(e / float(_GRID_FPS) * sample_rate_hz))
        part = np.nan_to_num(np.clip(y[i0:i1], -1.0, 1.0)) - np.float32(dc)
        peak = float(np.abs(part).max()) if len(part) else 0.0
        if peak == 0:
            continue
        # each run at one level: in 16 bits and their dither, speech at -40 dBFS was heard as
        # other phones
        phones = acoustic.hear_phones(part * np.float32(0.5 / peak), sample_rate_hz)
        if phones is None:
            continue
        heard = True
        cls = acoustic.phone_classes(phones, e - s_, float(_GRID_FPS))
        out[s_:e] = np.where(cls >= 0, cls, out[s_:e])
    return out if heard else None


def _speaker_warp(f: dict[str, np.ndarray], active: np.ndarray, model=None) -> tuple[float, dict]:
    """The vocal tract warp (:data:`_WARPS`, or 1) through which the classifier is surest of the
    speech (``active`` frames: the mean log-probability of its best class), and ``f`` with the
    cepstra read through it. A child's voice, or one pitch-shifted with its formants, lies
    outside the voices the classifier learnt; read through the warp that brings its formants
    back among them, it is classified as they are (see :data:`_WARP_GAIN`)."""
    plain = {k: v for k, v in f.items() if k != "mfcc_warped"}
    if "mfcc_warped" not in f or not len(_WARPS) or active.sum() < _WARP_MIN_FRAMES:
        return 1.0, plain
    best, best_k = float(_network(plain, model)[0][active].max(axis=1).mean()), -1
    sure_plain = best
    for k in range(len(_WARPS)):
        g = dict(plain, mfcc=f["mfcc_warped"][:, k])
        sure = float(_network(g, model)[0][active].max(axis=1).mean())
        if sure > best:
            best, best_k = sure, k
    if best_k < 0 or best - sure_plain < _WARP_GAIN:
        return 1.0, plain
    return _WARPS[best_k], dict(plain, mfcc=f["mfcc_warped"][:, best_k])


_SWITCH_COST = 1.0
_NEAR_OPEN = 0.5  # text-driven holds: +0.01 openness r within speech
_HOLD_CLOSURE_GAIN = 2.0  # text-driven holds: a closure frame counts this much against 1
_GRID_FPS = Fraction(30)  # the frame rate the classifier was trained at
_ONSET_LEAD_S = 0.067  # the mouth leaves rest this much before the sound
_SURE = 0.55  # classifier confidence above which loudness is ignored
# the openness estimate's pull on the shapes (_openness_prior), with closures made worth a bit more
# (_CLOSURE_BIAS 2 -> 2.5), off on dips of _DIP_DB below the louder of two frames on each side:
# audio alone on espeak-ng voices never trained on, shape accuracy / r within speech / closure
# 0.68 / 0.65 / 0.79 -> 0.69 / 0.67 / 0.81, on flite held out 0.55 / 0.62 / 0.88 -> 0.55 / 0.64 /
# 0.89. Without the dips' exception r within speech rose to 0.69 and 0.65, but a pulsing hum
# no longer closed between pulses (tests/test_lipsync.py)
_OPEN_WEIGHT, _OPEN_SD, _DIP_DB = 0.5, 0.15, 6.0
_STATIC_S, _STATIC_A_S = 0.6, 0.3  # longer holds inside speech are broken up (A: longer than an m)
_START, _KEEP, _STOP_FRAMES = 0.3, 0.15, 4  # activity hysteresis (share of floor..peak), hangover
# a recording whose speech peaks under this is silent: everything else is relative to its own
# floor and peak, so a quiet recording (speech peaking at -40 or -60 dBFS, a microphone's gain set
# low) moves the mouth as it would at full level. At -55 speech peaking at -40 dBFS lost one
# voice in nine on the tuning set, and at -60 dBFS every one (16-bit dither sits near -100)
_SILENT_DBFS = -80.0
# a run of activity is speech if one of its frames is this periodic (_voicing; tuning set: every
# run of speech of every family 0.93 or more clean, espeak-ng at its lowest pitch 0.73, 0.80
# under white noise 10 dB down, 0.67 at 5 dB; white noise, clicks, claps and breaths 0.3 at
# most, thumps and hums 0, noise low-passed under 80-250 Hz 0.05-0.68: a rumble may pass)
_VOICED = 0.6
# vocal tract warps tried on each recording (1, the plain cepstra, besides), about +-5 semitones
# of formant shift, and how much surer (mean log-probability of the best class a frame) the
# classifier must be through one to take it
_WARPS = (0.75, 0.8, 0.86, 0.93, 1.07, 1.15, 1.24, 1.33)
_WARP_GAIN = 0.03
_WARP_MIN_FRAMES = 45  # 1.5 s of speech at least: a word or two says little of the speaker
_HOLD_PAUSE_S = 0.15
_RELAX_PAUSE_S = 0.22
_CLOSURE_BIAS = 2.5


def baseline_mouth_track(
    y: np.ndarray, sample_rate_hz: int, *, fps: Fraction, n_frames: int | None = None
) -> np.ndarray:
    """The method of the system we replace: RMS and zero-crossing rate per frame, no look-ahead.

    Each frame's RMS relative to the loudest frame picks X (< 2 %), A (< 10 %), B (< 25 %),
    C (< 50 %) or D; a zero-crossing rate above 0.3 (a fricative) gives B. No smoothing.
    """
    fps = Fraction(fps)
    y = _mono(y)
    n = _frames(y, sample_rate_hz, fps, n_frames)
    hop = sample_rate_hz / float(fps)
    rms = np.zeros(n)
    zcr = np.zeros(n)
    for i in range(n):
        seg = y[int(i * hop) : int((i + 1) * hop)]
        if len(seg) > 1:
            rms[i] = float(np.sqrt(np.mean(seg**2)))
            zcr[i] = float(np.mean(np.abs(np.diff(np.sign(seg))) > 0))
    rel = rms / max(float(rms.max(initial=0.0)), 1e-9)
    out = np.zeros(n, dtype=np.int8)
    for i in range(n):
        if rms[i] < 1e-3 or rel[i] < 0.02:
            shape = "X"
        elif zcr[i] > 0.3:
            shape = "B"
        else:
            shape = "A" if rel[i] < 0.1 else "B" if rel[i] < 0.25 else "C" if rel[i] < 0.5 else "D"
        out[i] = _IDX[shape]
    return out


def blink_track(*, seed: int, n_frames: int, fps: Fraction, mean_interval_s: float = 4.0) -> np.ndarray:
    """Eye state per frame: 0 open, 1 half, 2 closed.

    Intervals between blinks are drawn from a gamma distribution around ``mean_interval_s``
    (clipped to 1.5-3x the mean), one blink in eight is a double blink; a blink is half, closed
    (two frames at 30 fps), half. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    per_s = float(fps)
    out = np.zeros(n_frames, dtype=np.int8)
    closed = max(1, int(round(per_s / 15)))
    half = max(1, int(round(per_s / 30)))
    t = rng.uniform(0.5, mean_interval_s) * per_s
    while True:
        start = int(t)
        blinks = 2 if rng.random() < 0.125 else 1
        for b in range(blinks):
            s = start + b * (2 * half + closed + int(0.12 * per_s))
            for k, v in (
                [(i, 1) for i in range(half)]
                + [(half + i, 2) for i in range(closed)]
                + [(half + closed + i, 1) for i in range(half)]
            ):
                if 0 <= s + k < n_frames:
                    out[s + k] = v
        interval = rng.gamma(4.0, mean_interval_s / 4.0)
        t += per_s * float(np.clip(interval, mean_interval_s * 0.4, mean_interval_s * 2.5))
        if t >= n_frames:
            return out


def read_track(path: str | Path, *, fps: Fraction, n_frames: int) -> np.ndarray:
    """Read a Rhubarb Lip Sync track (JSON with ``mouthCues``, or TSV ``start<TAB>shape``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, None, f"cannot read mouth track: {exc}") from None
    cues: list[tuple[float, str]] = []
    ends: dict[int, float] = {}  # JSON cues' ends (a TSV cue lasts until the next)
    k = -1
    try:
        if text.lstrip().startswith("{"):
            for k, cue in enumerate(json.loads(text)["mouthCues"]):
                cues.append((float(cue["start"]), str(cue["value"]).strip()))
                if cue.get("end") is not None:
                    ends[k] = float(cue["end"])
        else:
            for k, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
                start, shape = line.split("\t")[:2] if "\t" in line else line.split()[:2]
                cues.append((float(start), shape.strip()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        at = f" at cue {k + 1}" if k >= 0 else ""
        raise SpecError(
            path, None, f"not a Rhubarb JSON or TSV mouth track{at} ({type(exc).__name__}: {exc})"
        ) from None
    if not cues:
        raise SpecError(path, None, "the mouth track has no cues")
    odd = [t for t, _ in cues if not math.isfinite(t) or t < 0]
    if odd:
        raise SpecError(path, None, f"cue start {odd[0]} s: times must be finite and not negative")
    short = [k for k, end in ends.items() if not math.isfinite(end) or end < cues[k][0]]
    if short:
        raise SpecError(path, None, f"cue {short[0] + 1}: its end ({ends[short[0]]} s) is before its start")
    bad = [s for _, s in cues if s not in _IDX]
    if bad:
        raise SpecError(path, None, f"unknown mouth shape {bad[0]!r}: use {', '.join(SHAPES)}")
    out = np.zeros(n_frames, dtype=np.int8)
    mids = (np.arange(n_frames) + 0.5) / float(fps)  # cue times are rounded to 10 ms
    order = sorted(range(len(cues)), key=lambda i: cues[i][0])
    for j, i in enumerate(order):
        start, shape = cues[i]
        following = cues[order[j + 1]][0] if j + 1 < len(order) else math.inf
        out[(mids >= start) & (mids < following)] = _IDX[shape]
        if ends.get(i, math.inf) < following:  # a gap after it, or the track ends: the mouth rests
            out[(mids >= ends[i]) & (mids < following)] = _IDX["X"]
    return out


def write_track(
    track: np.ndarray,
    path_or_file: str | Path | IO[str],
    *,
    fps: Fraction,
    fmt: str = "json",
    metadata: dict | None = None,
) -> None:
    """Write a track in Rhubarb Lip Sync's JSON or TSV format (cues at run starts)."""
    fps = Fraction(fps)
    runs = _runs(np.asarray(track))
    if fmt == "json":
        doc = {
            "metadata": {**(metadata or {}), "duration": round(len(track) / float(fps), 2)},
            "mouthCues": [
                {"start": round(s / float(fps), 2), "end": round(e / float(fps), 2), "value": SHAPES[v]}
                for s, e, v in runs
            ],
        }
        text = json.dumps(doc, indent=2) + "\n"
    elif fmt == "tsv":
        text = "".join(f"{s / float(fps):.2f}\t{SHAPES[v]}\n" for s, _, v in runs)
        text += f"{len(track) / float(fps):.2f}\tX\n"
    else:
        raise ValueError(f"unknown format {fmt!r}: json or tsv")
    if hasattr(path_or_file, "write"):
        path_or_file.write(text)
    else:
        Path(path_or_file).write_text(text)
