"""The segment's final audio: speech, the TV clip's own sound ducked under it, loudness on target.

Everything happens on the whole segment's sample array before the single AAC encode
(:mod:`avatarrender.audiotrack`), so chunk boundaries never see a seam and the result does not
depend on how the render is chunked or how many workers run it.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from .loudness import LoudnessReport, LoudnessTarget, normalise
from .rendition import Loudness
from .spec import Spec
from .timebase import AUDIO_RATE_HZ

__all__ = [
    "soundtrack",
    "mix",
    "tv_sound",
    "speech_activity",
    "loudness_target",
    "manifest_loudness",
    "CONTROL_RATE_HZ",
    "FADE_S",
]

# Ducking is computed at this rate, then interpolated to samples (smooth, and cheap in Python).
CONTROL_RATE_HZ = 200
# Fade length at a loop point and where the clip comes on or goes off screen: no click.
FADE_S = 0.005
# Speech counts as present where its 10 ms RMS is within this of its loudest (and above
# the floor), and stays so for the hold after it (the gaps between words do not un-duck).
_SPEECH_RANGE_DB = 35.0
_SPEECH_FLOOR_DBFS = -55.0
_SPEECH_HOLD_S = 0.25
# The speech should stand this far over the TV's sound while it is heard (dialogue over a bed:
# less, and the words are hard to follow); below it the render says so
_SPEECH_OVER_TV_DB = 6.0

log = logging.getLogger("avatarrender.loudness")


def loudness_target(spec: Spec) -> LoudnessTarget:
    """The segment's ``audio:`` block over its output preset (resolved by load_spec)."""
    return LoudnessTarget(
        integrated_lufs=spec.audio.loudness_lufs,
        true_peak_dbtp=spec.audio.true_peak_dbtp,
        enabled=spec.audio.normalise,
    )


def speech_activity(speech: np.ndarray, *, sample_rate_hz: int = AUDIO_RATE_HZ) -> np.ndarray:
    """Where the character speaks, at :data:`CONTROL_RATE_HZ`.

    Returns
    -------
    np.ndarray [shape=(ceil(n / (sample_rate_hz / CONTROL_RATE_HZ)),), dtype=bool]
    """
    hop = sample_rate_hz // CONTROL_RATE_HZ
    n_ctl = -(-speech.shape[0] // hop)
    if n_ctl == 0:
        return np.zeros(0, dtype=bool)
    padded = np.zeros(n_ctl * hop, dtype=np.float64)
    padded[: speech.shape[0]] = speech
    # 10 ms windows centred on each control point
    power = (padded.reshape(n_ctl, hop) ** 2).mean(axis=1)
    win = max(1, int(round(0.010 * CONTROL_RATE_HZ)))
    power = np.convolve(power, np.ones(win) / win, mode="same")
    level_db = 10 * np.log10(np.maximum(power, 1e-20))
    loudest = level_db.max()
    active = level_db > max(_SPEECH_FLOOR_DBFS, loudest - _SPEECH_RANGE_DB)
    hold = int(round(_SPEECH_HOLD_S * CONTROL_RATE_HZ))
    if hold and active.any():
        # hold forward only: a pause after a word keeps the duck for the hold (on at k when
        # speech was on anywhere in k - hold .. k)
        c = np.concatenate([np.zeros(hold + 1, dtype=np.int64), np.cumsum(active, dtype=np.int64)])
        active = c[hold + 1 :] - c[: active.shape[0]] > 0
    return active


def _duck_gain_db(active: np.ndarray, duck_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """The duck in dB at the control rate: one-pole towards ``duck_db`` while speech is on
    (``attack_s`` time constant), back towards 0 when it stops (``release_s``)."""
    a_att = 1 - math.exp(-1 / (attack_s * CONTROL_RATE_HZ))
    a_rel = 1 - math.exp(-1 / (release_s * CONTROL_RATE_HZ))
    out = np.empty(active.shape[0], dtype=np.float64)
    g = 0.0
    for k, on in enumerate(active.tolist()):
        goal = duck_db if on else 0.0
        g += (goal - g) * (a_att if on else a_rel)
        out[k] = g
    return out


def _clip_samples(spec: Spec, i: int, n: int, sr: int) -> tuple[slice, np.ndarray] | None:
    """Clip ``i``'s sound where it is on screen, faded at every loop point and edge."""
    from .media import audio_lead_s, read_audio

    clip = spec.tv.clips[i]
    clip_len_s = clip.file_duration_s
    sound = read_audio(clip.file, sample_rate_hz=sr)
    lead = int(round(audio_lead_s(clip.file) * sr))  # its sound starts after its picture
    if lead > 0:
        sound = np.concatenate([np.zeros(lead, sound.dtype), sound])
    end_s = clip.end_s
    n0 = min(n, int(round(clip.start_s * sr)))
    n1 = min(n, int(round(end_s * sr)))
    if n1 <= n0:
        return None
    first = int(round(clip.clip_start_s * sr))
    span = max(1, int(round(clip_len_s * sr)) - first)  # the picture's length: sound stays in sync
    m = n1 - n0  # samples the clip is on screen
    # one pass of the clip (a loop repeats it): its sound, silent where the sound is shorter than
    # the picture (a held last frame), faded at both ends of the sound; built once, then repeated
    # (not indexed sample by sample: this sits on the way to the first media segment's audio)
    heard = min(span, max(0, sound.shape[0] - first))
    one = np.zeros(span, dtype=np.float64)
    one[:heard] = sound[first : first + heard]
    fade_n = max(1, int(round(FADE_S * sr)))
    p = np.arange(span)
    edge = np.minimum(np.minimum(p, span - 1 - p), heard - 1 - p)  # a pass starts, ends, sound ends
    fade = np.clip((edge + 0.5) / fade_n, 0.0, 1.0)
    if clip.at_end == "loop":
        y, f = np.resize(one, m), np.resize(fade, m)
    else:  # after one pass: nothing (the picture holds its last frame)
        y, f = np.zeros(m), np.zeros(m)
        y[: min(m, span)], f[: min(m, span)] = one[:m], fade[:m]
    k = min(m, fade_n)  # the clip goes off screen
    f[m - k :] = np.minimum(f[m - k :], np.clip((np.arange(k)[::-1] + 0.5) / fade_n, 0.0, 1.0))
    y *= f
    gain = 10 ** (clip.audio.gain_db / 20)
    return slice(n0, n1), y * gain


def tv_sound(spec: Spec, speech: np.ndarray, *, sample_rate_hz: int = AUDIO_RATE_HZ) -> np.ndarray | None:
    """The TV clips' sound for the whole segment, ducked under the speech; None when no clip
    asks for sound.

    Returns
    -------
    np.ndarray [shape=speech.shape, dtype=float64] or None
    """
    tv = spec.tv
    if not tv or not any(c.audio is not None for c in tv.clips):
        return None
    n = speech.shape[0]
    out = np.zeros(n, dtype=np.float64)
    duck_db = np.zeros(n, dtype=np.float64)
    active = speech_activity(speech, sample_rate_hz=sample_rate_hz)
    hop = sample_rate_hz // CONTROL_RATE_HZ
    ctl_t = (np.arange(active.shape[0]) + 0.5) * hop  # control points, in samples
    ducked = slice(n, 0)  # the samples any duck covers (elsewhere the gain is exactly 1)
    for i, clip in enumerate(tv.clips):
        # a later clip takes the screen from an earlier one (as the picture does), sound or not
        on = slice(
            min(n, int(round(clip.start_s * sample_rate_hz))), min(n, int(round(clip.end_s * sample_rate_hz)))
        )
        if clip.audio is None:
            out[on] = 0.0
            continue
        got = _clip_samples(spec, i, n, sample_rate_hz)
        if got is None:
            continue
        where, y = got
        out[where] = y
        duck = _duck_gain_db(active, clip.audio.duck_db, clip.audio.attack_s, clip.audio.release_s)
        duck_db[where] = np.interp(np.arange(where.start, where.stop, dtype=np.float64), ctl_t, duck)
        ducked = slice(min(ducked.start, where.start), max(ducked.stop, where.stop))
    if ducked.start < ducked.stop:
        out[ducked] *= 10 ** (duck_db[ducked] / 20)
    _say_if_buried(spec, speech, out, active, sample_rate_hz)
    return out


def _say_if_buried(spec: Spec, speech: np.ndarray, tv: np.ndarray, active: np.ndarray, sr: int) -> None:
    """A warning naming the clip whose ducked sound stands less than :data:`_SPEECH_OVER_TV_DB`
    under the speech where the character speaks (normalisation gains both alike: quiet speech
    over a loud clip stays buried, and nothing else says so)."""
    n = speech.shape[0]
    speaking = np.repeat(active, sr // CONTROL_RATE_HZ)[:n]
    for i, clip in enumerate(spec.tv.clips):
        if clip.audio is None:
            continue
        lo, hi = min(n, int(round(clip.start_s * sr))), min(n, int(round(clip.end_s * sr)))
        both = speaking[lo:hi]
        if both.sum() < 0.5 * sr:  # half a second of speech over it at least
            continue
        voice = float(np.mean(np.square(speech[lo:hi][both], dtype=np.float64)))
        bed = float(np.mean(np.square(tv[lo:hi][both])))
        if bed <= 0.0 or voice <= 0.0:
            continue
        over_db = 10 * math.log10(voice / bed)
        if over_db < _SPEECH_OVER_TV_DB:
            log.warning(
                "%s: tv.clips[%d].audio: while the character speaks, the speech stands %.1f dB %s the "
                "clip's ducked sound (%.0f dB or more keeps the words clear); lower its gain_db or "
                "duck_db, or raise speech.gain_db",
                spec.source,
                i,
                abs(over_db),
                "over" if over_db >= 0 else "under",
                _SPEECH_OVER_TV_DB,
            )


def mix(spec: Spec, speech: np.ndarray) -> np.ndarray:
    """Speech plus TV sound, before normalisation.

    Returns
    -------
    np.ndarray [shape=speech.shape, dtype=float32]
    """
    tv = tv_sound(spec, speech)
    if tv is None:
        return speech
    return (speech.astype(np.float64) + tv).astype(np.float32)


def soundtrack(
    spec: Spec, speech: np.ndarray, *, true_peaks: bool = True
) -> tuple[np.ndarray, LoudnessReport]:
    """Speech plus TV sound, normalised: the samples the AAC track is encoded from.

    Parameters
    ----------
    speech : np.ndarray [shape=(n,), dtype=float32]
        :func:`avatarrender.analysis.segment_audio`'s output.
    true_peaks : bool
        False: the report's true peaks are left out (see
        :func:`avatarrender.loudness.add_true_peaks`).

    Returns
    -------
    samples : np.ndarray [shape=(n,), dtype=float32]
    report : LoudnessReport
    """
    return normalise(
        mix(spec, speech),
        loudness_target(spec),
        name=str(spec.source),
        true_peaks=true_peaks,
        silent_ok=silent_by_design(spec),
    )


def silent_by_design(spec: Spec) -> bool:
    """No speech and no clip with sound: silence is what the segment asks for (a filler)."""
    return spec.speech is None and not any(c.audio for c in (spec.tv.clips if spec.tv else ()))


def manifest_loudness(report: LoudnessReport) -> Loudness:
    """The manifest's record of ``report``."""
    return Loudness(
        integrated_lufs=report.after.integrated_lufs,
        true_peak_dbtp=report.after.true_peak_dbtp,
        range_lu=report.after.range_lu,
        input_integrated_lufs=report.before.integrated_lufs,
        input_true_peak_dbtp=report.before.true_peak_dbtp,
        input_range_lu=report.before.range_lu,
        target_lufs=report.target.integrated_lufs if report.target.enabled else None,
        target_true_peak_dbtp=report.target.true_peak_dbtp if report.target.enabled else None,
        gain_db=report.gain_db,
        limited_s=report.limited_s,
    )
