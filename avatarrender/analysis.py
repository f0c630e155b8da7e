"""Analysis: once per segment, the whole audio at once, into one :class:`Timeline` of per-frame arrays.

Pure given the spec and the decoded audio: the same spec gives the same timeline, whatever
the chunking later does with it.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from . import lipsync
from .spec import EYE_STATES, MOUTH_SHAPES, Spec
from .timebase import AUDIO_RATE_HZ

__all__ = ["Timeline", "analyse", "segment_audio", "drawn_mouths"]


@dataclasses.dataclass(frozen=True)
class Timeline:
    """Everything that changes per frame, as arrays of length ``frame_count``.

    Attributes
    ----------
    mouth : np.ndarray [shape=(n,), dtype=int8]
        Index into ``MOUTH_SHAPES`` of the *drawn* shape shown (fallbacks applied).
    eyes : np.ndarray [shape=(n,), dtype=int8]
        0 open, 1 half, 2 closed (a drawn state; fallbacks applied).
    caption : np.ndarray [shape=(n,), dtype=int16]
        Index into ``spec.cues`` of the caption burned in, or -1 (none, or ``captions.burn``
        false: then they are only a subtitle track).
    tv_clip : np.ndarray [shape=(n,), dtype=int16]
        Index into ``spec.tv.clips`` or -1 (TV off).
    tv_time_s : np.ndarray [shape=(n,), dtype=float64]
        Time inside the clip file shown at each frame (loop and hold applied); 0 when off.
    """

    fps: Fraction
    mouth: np.ndarray
    eyes: np.ndarray
    caption: np.ndarray
    tv_clip: np.ndarray
    tv_time_s: np.ndarray

    @property
    def frame_count(self) -> int:
        return int(self.mouth.shape[0])

    def state_key(self, frame_index: int) -> tuple[int, int, int]:
        """What a frame without TV depends on: (mouth, eyes, caption)."""
        return (int(self.mouth[frame_index]), int(self.eyes[frame_index]), int(self.caption[frame_index]))


def segment_audio(spec: Spec) -> np.ndarray:
    """The segment's speech at 48 kHz mono with gain, padded or cut to the segment's length.

    Returns
    -------
    np.ndarray [shape=(round(duration_s * 48000),), dtype=float32]
    """
    from .media import read_audio

    n = int(round(spec.duration_s * AUDIO_RATE_HZ))
    if spec.speech is None:
        return np.zeros(n, dtype=np.float32)
    y = read_audio(spec.speech.file, sample_rate_hz=AUDIO_RATE_HZ)  # a new array: ours to change
    gain = np.float32(10 ** (spec.speech.gain_db / 20))
    if y.shape[0] >= n:  # the gain applied in place: no second copy of a long track
        out = y[:n] if y.shape[0] - n <= AUDIO_RATE_HZ else y[:n].copy()
    else:
        out = np.zeros(n, dtype=np.float32)
        out[: y.shape[0]] = y
    del y
    np.multiply(out, gain, out=out)
    return out


def drawn_mouths(spec: Spec) -> set[str]:
    """The mouth shapes the character draws."""
    return set(spec.character.drawn_mouths)


def _drawn_eyes(spec: Spec) -> list[int]:
    """Map eye state index -> the drawn one (half falls back to closed, then open)."""
    have = spec.character.drawn_eyes
    order = {"open": ["open"], "half": ["half", "closed", "open"], "closed": ["closed", "half", "open"]}
    return [EYE_STATES.index(next(e for e in order[s] if e in have)) for s in EYE_STATES]


def _words(spec: Spec) -> tuple[list[str], list[tuple[float, float]] | None, str] | None:
    """The words the lip sync aligns: ``speech.text``, else the captions (their times as loose
    anchors): ``(texts, cue spans or None, where they came from)``; None for the audio alone,
    and without speech (the captions of a segment that has none are no one's words: the mouth
    rests, without a warning that the silence holds no speech)."""
    speech = spec.speech
    if speech is None or speech.mouth_track:
        return None
    if speech.text is not None:
        return [speech.text], None, f"{spec.source}: speech.text"
    if spec.cues:
        return (
            [c.text for c in spec.cues],
            [(c.start_s, c.end_s) for c in spec.cues],
            f"{spec.source}: captions",
        )
    return None


def start_reading(spec: Spec):
    """espeak-ng's reading of the segment's words for the lip sync
    (:func:`avatarrender.phonemes.start_reading`), started now so that it runs while the speech
    is read and the scene built; None without words. Give it to :func:`analyse`, which ends it."""
    from .phonemes import start_reading as start

    words = _words(spec)
    if words is None or not any(t.strip() for t in words[0]):
        return None
    try:
        return start(words[0], voice=spec.speech.language if spec.speech else "en-us")
    except OSError:
        return None  # no process to be had: the alignment goes without the reading


def _mouth_track(spec: Spec, audio: np.ndarray, *, fps, n_frames: int, reading=None) -> np.ndarray:
    """The mouth track from the speech and, when known, its words (:func:`_words`), else the
    audio alone."""
    words = _words(spec)
    if words is None:
        return lipsync.mouth_track(audio, AUDIO_RATE_HZ, fps=fps, n_frames=n_frames)
    from .align import text_mouth_track

    texts, spans, source = words
    return text_mouth_track(
        audio,
        AUDIO_RATE_HZ,
        fps=fps,
        n_frames=n_frames,
        texts=texts,
        cue_spans_s=spans,
        language=spec.speech.language if spec.speech else "en-us",
        source=source,
        reading=reading,
    )


def analyse(spec: Spec, audio: np.ndarray | None = None, reading=None) -> Timeline:
    """Build the segment's timeline.

    Parameters
    ----------
    spec : Spec
    audio : np.ndarray [shape=(n_samples,)], optional
        The output of :func:`segment_audio`; decoded here when not given.
    reading : optional
        :func:`start_reading`'s for this spec, started earlier (ended here in any case).
    """
    n = spec.frame_count
    fps = spec.output.fps
    try:
        if spec.speech is not None and spec.speech.mouth_track:
            shapes = lipsync.read_track(spec.speech.mouth_track, fps=fps, n_frames=n)
        else:
            if audio is None:
                audio = segment_audio(spec)
            shapes = _mouth_track(spec, audio, fps=fps, n_frames=n, reading=reading)
    finally:
        if reading is not None:
            reading.cancel()
    fallback = lipsync.fallback_map(drawn_mouths(spec))
    lut = np.array([MOUTH_SHAPES.index(fallback[s]) for s in MOUTH_SHAPES], dtype=np.int8)
    mouth = lut[np.asarray(shapes, dtype=np.int64)]

    blink = spec.blink
    eyes_raw = lipsync.blink_track(
        seed=blink.seed, n_frames=n, fps=fps, mean_interval_s=blink.mean_interval_s
    )
    eyes = np.array(_drawn_eyes(spec), dtype=np.int8)[np.asarray(eyes_raw, dtype=np.int64)]

    t = np.arange(n, dtype=np.float64) / float(fps)
    caption = np.full(n, -1, dtype=np.int16)
    burned = spec.captions is None or spec.captions.burn
    # in time order, whatever the file's: where cues overlap, the one that started last shows
    for i, cue in sorted(enumerate(spec.cues if burned else ()), key=lambda ic: ic[1].start_s):
        caption[(t >= cue.start_s) & (t < cue.end_s)] = i

    tv_clip = np.full(n, -1, dtype=np.int16)
    tv_time = np.zeros(n, dtype=np.float64)
    if spec.tv:
        one_frame = 1.0 / float(fps)
        for i, clip in enumerate(spec.tv.clips):
            clip_len = clip.file_duration_s
            on = (t >= clip.start_s) & (t < clip.end_s)
            local = clip.clip_start_s + (t[on] - clip.start_s)
            last = max(clip_len - one_frame, 0.0)
            if clip.at_end == "loop":
                span = clip_len - clip.clip_start_s
                local = clip.clip_start_s + np.mod(local - clip.clip_start_s, span)
            local = np.minimum(local, last)
            tv_clip[on] = i
            tv_time[on] = local
    return Timeline(fps=fps, mouth=mouth, eyes=eyes, caption=caption, tv_clip=tv_clip, tv_time_s=tv_time)
