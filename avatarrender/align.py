"""Lip sync from the script: the known words aligned to the speech.

When the words are known (the segment's captions, ``speech.text``, ``--dialog``), espeak-ng turns
them into phonemes (:func:`avatarrender.phonemes.phonemize`), and a left-to-right Viterbi lays the
chain of phonemes over the audio, scored by the lip-sync classifier's phone-class probabilities
on a 90 fps grid (a beam keeps it to the few dozen live states of each frame: about 0.15 s for a
minute of speech). The mouth then shows each phoneme's shape where the alignment is sure of it and
the audio-only track elsewhere; the same animation pass follows (anticipation, holds, in-betweens).

The classifier alone is least sure on voices unlike its training; espeak-ng's own reading of the
text is a second opinion that does not depend on it as much (:func:`template_classes`): read aloud
and laid over the speech by a dynamic time warp, it says which phoneme sounds at each frame, and
the path leans towards that. Whether the text is what is said is judged without it.

Text and audio may disagree (words missing or extra, ad-libs, another language). The chain lets
the alignment skip a phoneme or a whole word, and between words a *filler* state takes any sound
(scored as the classifier's best class, less a penalty) or silence. Words whose frames score badly
against their phonemes are dropped; if too little matches, a :class:`LipsyncWarning` says so and
the audio-only track is returned.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from fractions import Fraction
from typing import Any

import numpy as np

from . import acoustic, lipsync, phonemes
from .lipsync import SHAPES, _animate, analyse_audio
from .errors import warn
from .phonemes import CLASS_SHAPE, CLASSES, EspeakUnavailable, Word, phonemize
from .spec import SpecWarning

__all__ = ["LipsyncWarning", "Alignment", "align", "text_mouth_track"]

_SIL = CLASSES.index("sil")
_BILABIAL = CLASSES.index("bilabial")
_GRID_FPS = lipsync._GRID_FPS
_SHAPE_OF_CLASS = np.array([SHAPES.index(c) for c in CLASS_SHAPE], dtype=np.int8)

# Costs (natural log units per transition or frame), tuned on held-out espeak and flite speech
_FILLER_PENALTY = 1.2  # per frame a filler spends on sound rather than silence
_SKIP_PHONE = 2.5  # leaving a phoneme out (it fell between two 30 fps frames)
_SKIP_BILABIAL = 5.0  # closures last long enough to be seen: skip them reluctantly
_SKIP_WORD = 6.0  # a word in the text that is not spoken
_WORD_OK = -1.6  # mean (aligned - best) log-probability over a word's frames for it to count
_MIN_MATCH = 0.35  # share of speech frames the text must explain, or audio alone is used
# below this agreement (see Alignment.agreement) the text is not what is said: measured on held-out
# espeak-ng and flite speech, right texts -0.66..-0.04 (flite's median -0.4), other sentences
# and German text on English speech -1.04..-0.56 (median -0.8)
_MIN_AGREEMENT = -0.62
# between these, the text must also fit clearly better than its own phonemes backwards
_UNSURE_AGREEMENT, _MIN_GAIN = -0.4, 0.15
_PRIOR_SHARE = 0.5  # emissions are posteriors over prior ** 0.5: +0.02 shape accuracy over 0 or 1
# the path and each word's fit use log-probabilities / 1.5 (the classifier is overconfident, most
# on voices unlike its training): with text on flite held out 0.67 -> 0.70 shape accuracy, on
# espeak-ng 0.84 -> 0.85; 2 gave a little more but lost a closure where words are missing. The
# whole text's fit stays untempered, so wrong texts are caught as before (right flite texts
# accepted 80 -> 93 %, wrong ones 10 -> 7 %)
_TEMPERATURE = 1.5
_MAX_PHONES_PER_S = 30.0  # more phonemes than this per second of speech: not this speech
_MAX_CHARS_PER_S = 100.0  # more characters than this per second of sound: not read at all
_ANCHOR_SLACK_S = 0.5  # caption times are loose anchors
# longest plausible word (s per phoneme, plus 0.15 s) and phonemes: longer ones cover other words
_WORD_S_PER_PHONE, _VOWEL_MAX_S, _CONSONANT_MAX_S = 0.12, 0.45, 0.25
_VOWELS = {CLASSES.index(c) for c in ("round", "midround", "open", "front")}
_BEAM = 15.0  # states this far (log units) below the best at a frame are dropped
# a shape's share of a frame counts this much in the minimum-hold pass, against 1 for the shape at
# the frame's middle: boundaries land where the alignment put them (+0.02 shape accuracy)
_COVER_WEIGHT = 3.0
_CLOSED_COVER = 3.0  # a closure frame the read-back kept: its cover counts this many times in full
_FINAL_CLOSURE_HOLD = 2  # frames a closure before a pause holds on (the silent hold of a final p)
# The spoken template: espeak-ng reads the text aloud, a dynamic time warp lays its frames over the
# speech (cepstra and the classifier's class probabilities, 30 fps), and each frame's class in the
# template adds this much (log units) to that class for the path. With the text, held-out CORPUS:
# shape accuracy on flite held out 0.69 -> 0.71, espeak-ng unseen voices 0.85 -> 0.88; tuning set
# (DEV_CORPUS, flite / espeak-ng): weight 0 0.65 / 0.85, 2 0.69 / 0.88, 3 0.68 / 0.88
_TEMPLATE_WEIGHT = 2.0
# below this chance that the speech's frame and the reading's frame it was matched with are the
# same class, the warp was passing through (words the text lacks): no template there. Without it,
# three words missing from the text cost a closure that audio alone gets (tuning set: 0.1 keeps
# shape accuracy, 0.15 lost 0.02 on flite)
_TEMPLATE_MIN_SAME = 0.1
_TEMPLATE_MIN_AGREEMENT, _TEMPLATE_MIN_GAIN = -0.4, 0.2  # see _text_mouth_track
# A translation of what is said (the same names, the same rhythm) or another sentence may fit the
# classifier's path as well as a right text in a voice it reads badly, but not espeak-ng's reading
# of it: a text in the unsure band (_UNSURE_AGREEMENT) must also be confirmed by its reading, at
# the line where the reading alone takes a doubted text. Tuning set (DEV_CORPUS in every family's
# voices with the shipped classifier; flite's and Piper's with classifiers trained without them):
# German translations taken 43 -> 6 of 120, 21 -> 9 of 60, 11 -> 3 of 36; Spanish 8, 7, 3 -> none;
# other sentences 12 -> 1, 8 -> 2, 2 -> 0; right texts 119 of 120, 59 -> 58 of 60, 36 of 36 (on
# the benchmark's sentences, held-out classifiers: 30, 18, 24 of flite's, Festival's, espeak-ng's
# kept, Piper's 18 -> 17). The right texts' readings agreed -0.41 at the least (5 % under -0.24);
# -0.45 kept those two, but took 15, 13 and 4 of the German translations
_READING_MIN_AGREEMENT = _TEMPLATE_MIN_AGREEMENT
_TEMPLATE_BAND_S = 2.0  # the warp strays at most this far from the cues' times (or its line without)
_TEMPLATE_BAND_SHARE = 0.1  # without cue times, this share of the speech's sounding time
_WARP_BLOCK_ROWS = 128  # 10 minutes without cues: 128 x 600 cells x 12 cepstra, 7 MB
_TEMPLATE_MAX_BAND_S = 10.0  # 10 minutes of text without cues: 600 columns a row, 43 MB


class LipsyncWarning(SpecWarning):
    """The text could not be used for the mouth track; the audio-only track stands in (a
    :class:`~avatarrender.spec.SpecWarning`: the segment's text and speech disagree)."""


@dataclasses.dataclass
class Alignment:
    """The phone class per frame (-1 where the audio-only track holds), and how well the text
    fits the speech."""

    grid_class: np.ndarray  # [shape=(n,)]
    matched_words: int
    words: int
    match_share: float  # share of speech frames inside matched words
    fit: float = 0.0  # mean (aligned - best class) log-probability over the aligned frames
    visited: float = 1.0  # share of the text's phonemes that got at least one frame
    word_fits: list = dataclasses.field(default_factory=list)  # ``fit`` of each word (NaN: skipped)
    frame_word: np.ndarray | None = None  # [shape=(n,)] word index per frame, -1 in fillers
    # the agreement of the path drawn to espeak-ng's reading, the reading counted (None: no reading)
    template_agreement: float | None = None

    @property
    def agreement(self) -> float:
        """One figure for "is this text what is said": 0 for a perfect fit, lower is worse."""
        return self.fit + 0.5 * (self.match_share - 1.0) + (self.visited - 1.0)


def align(
    class_logp: np.ndarray,
    active: np.ndarray,
    words: list[Word],
    *,
    cue_spans_s: list[tuple[float, float]] | None = None,
    fps: Fraction = _GRID_FPS,
    template: np.ndarray | list[np.ndarray] | None = None,
) -> Alignment:
    """Align ``words`` to frame posteriors.

    Parameters
    ----------
    class_logp : np.ndarray [shape=(n, 11)]
        Phone-class log-probabilities per frame.
    active : np.ndarray [shape=(n,)]
        Speech activity per frame.
    fps : Fraction
        Frame rate of ``class_logp``.
    words : list of Word
    cue_spans_s : list of (start_s, end_s), optional
        Caption times by cue index: a word's phonemes stay within its cue's span, +-0.5 s.
    template : np.ndarray [shape=(n,)], or a list of them, optional
        The class espeak-ng's own reading of the text puts at each frame (:func:`template_classes`),
        or the acoustic model's alignment (:func:`_heard_template`), -1 where none: the path
        favours it; how well the text fits (the agreement) does not see it.
    """
    n = len(class_logp)
    # states: filler F_0, word 0's phonemes, F_1, word 1's phonemes, ..., F_W
    cls, word_of, is_filler = [], [], []
    first_of_word, last_of_word, filler_idx = [], [], []
    for w, word in enumerate(words):
        filler_idx.append(len(cls))
        cls.append(-1)
        word_of.append(-1)
        is_filler.append(True)
        first_of_word.append(len(cls))
        for c in word.classes:
            cls.append(c)
            word_of.append(w)
            is_filler.append(False)
        last_of_word.append(len(cls) - 1)
    filler_idx.append(len(cls))
    cls.append(-1)
    word_of.append(-1)
    is_filler.append(True)
    n_states = len(cls)
    cls_a = np.array(cls)
    filler = np.array(is_filler)
    word_a = np.array(word_of)

    # emissions: scaled likelihoods (posterior over a share of the prior), so frequent classes do
    # not push the boundaries of rare ones; fillers take silence, or any sound at a penalty
    speech = active if active.any() else np.ones(n, bool)

    def scaled(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prior = np.log(np.exp(lp[speech]).mean(axis=0) + 1e-4)
        lp = lp - _PRIOR_SHARE * prior[None, :]
        return lp, lp.max(axis=1)

    # the whole-text fit (Alignment.agreement, which tells a wrong text) stays untempered
    if template is not None:
        class_logp = lipsync.lean_on(
            class_logp, template if isinstance(template, list) else [template], _TEMPLATE_WEIGHT
        )
    untempered, untempered_best = scaled(class_logp)  # with the template, if any, counted
    tempered = class_logp / _TEMPERATURE
    class_logp, best = scaled(tempered - np.log(np.exp(tempered).sum(axis=1, keepdims=True)))
    scale = float(_GRID_FPS / Fraction(fps))  # overlapping windows: finer frames add no evidence
    table = np.column_stack([class_logp, np.maximum(class_logp[:, _SIL], best - _FILLER_PENALTY)]) * scale
    col = np.where(filler, table.shape[1] - 1, cls_a)  # each state's column of ``table``
    t_min = np.zeros(n_states, dtype=np.int64)
    t_max = np.full(n_states, n, dtype=np.int64)
    if cue_spans_s:
        for w, word in enumerate(words):
            if word.cue < len(cue_spans_s):
                a, b = cue_spans_s[word.cue]
                t_min[first_of_word[w] : last_of_word[w] + 1] = int((a - _ANCHOR_SLACK_S) * float(fps))
                t_max[first_of_word[w] : last_of_word[w] + 1] = int(
                    math.ceil((b + _ANCHOR_SLACK_S) * float(fps))
                )

    # predecessors [S, 4] (self, previous, two back, word skip) and their costs
    pred = np.tile(np.arange(n_states)[:, None], (1, 4))
    cost = np.full((n_states, 4), -np.inf)
    cost[:, 0] = 0.0
    idx = np.arange(n_states)
    pred[1:, 1] = idx[:-1]
    cost[1:, 1] = 0.0
    # skip one phoneme inside a word, or pass from a word's last phoneme straight into the next word
    for s in range(2, n_states):
        mid = s - 1
        if not filler[mid] and not filler[s] and word_a[mid] == word_a[s]:
            pred[s, 2] = s - 2
            cost[s, 2] = -(_SKIP_BILABIAL if cls_a[mid] == _BILABIAL else _SKIP_PHONE)
        elif filler[mid] and not filler[s] and not filler[s - 2]:
            pred[s, 2] = s - 2  # no pause between words
            cost[s, 2] = 0.0
    for w in range(len(words)):
        f_next = filler_idx[w + 1]
        pred[f_next, 3] = filler_idx[w]
        cost[f_next, 3] = -(_SKIP_WORD + 0.5 * len(words[w].classes))
    reach = int((idx[:, None] - pred).max())  # the longest step forward in one frame

    # Viterbi over a window of live states (a beam): the chain only moves forward, so each frame
    # touches a few dozen states, not all of them (60 s of speech: ~1000 states, 5400 frames)
    def emit(t: int, lo: int, hi: int) -> np.ndarray:
        e = table[t, col[lo:hi]]
        if cue_spans_s:
            e[(t < t_min[lo:hi]) | (t > t_max[lo:hi])] = -1e4
        return e

    score = np.full(n_states, -np.inf)
    lo, hi = 0, min(2, n_states)
    score[lo:hi] = emit(0, lo, hi)
    back = np.zeros((n, n_states), dtype=np.int8)
    rows = np.arange(n_states)
    for t in range(1, n):
        hi = min(hi + reach, n_states)
        cand = score[pred[lo:hi]]
        cand += cost[lo:hi]
        k = cand.argmax(axis=1)
        back[t, lo:hi] = k
        new = cand[rows[: hi - lo], k]
        new += emit(t, lo, hi)
        keep = np.flatnonzero(new > new.max() - _BEAM)
        k0, k1 = int(keep[0]), int(keep[-1]) + 1
        score[lo:hi] = -np.inf
        score[lo + k0 : lo + k1] = new[k0:k1]
        lo, hi = lo + k0, lo + k1
    # end in the last filler or the last word's last phoneme (the best live state if neither is)
    ends = [e for e in (n_states - 1, n_states - 2) if e >= 0 and np.isfinite(score[e])]
    s = max(ends, key=lambda e: score[e]) if ends else int(np.argmax(score))
    path = np.empty(n, dtype=np.int64)
    for t in range(n - 1, -1, -1):
        path[t] = s
        if t:
            s = pred[s, back[t, s]]

    grid_class = np.where(filler[path], -1, cls_a[path])
    # keep the words whose frames fit their phonemes
    frame_word = word_a[path]
    matched = 0
    word_fits = []
    for w in range(len(words)):
        on = frame_word == w
        if not on.any():
            word_fits.append(np.nan)
            continue
        fit = float(np.mean(class_logp[on, grid_class[on]] - best[on]))
        word_fits.append(fit)
        # a word stretched over far more time than its phonemes take is covering other words
        held_s = [(path[on] == st).sum() / float(fps) for st in np.unique(path[on])]
        limit_s = [_VOWEL_MAX_S if cls_a[st] in _VOWELS else _CONSONANT_MAX_S for st in np.unique(path[on])]
        too_long = on.sum() / float(fps) > _WORD_S_PER_PHONE * len(words[w].classes) + 0.15 or any(
            h > m for h, m in zip(held_s, limit_s)
        )
        if fit >= _WORD_OK and not too_long:
            matched += 1
        else:
            grid_class[on] = -1
    speech = active.sum()
    share = float(((grid_class >= 0) & active).sum() / speech) if speech else 0.0
    on = grid_class >= 0
    fit = float(np.mean(untempered[on, grid_class[on]] - untempered_best[on])) if on.any() else -99.0
    visited = len(set(path[~filler[path]].tolist())) / max(1, sum(len(w.classes) for w in words))
    return Alignment(
        grid_class,
        matched,
        len(words),
        share,
        fit,
        visited,
        word_fits,
        np.where(filler[path], -1, word_a[path]),
    )


def text_mouth_track(
    y: np.ndarray,
    sample_rate_hz: int,
    *,
    fps: Fraction,
    texts: list[str] | str,
    cue_spans_s: list[tuple[float, float]] | None = None,
    language: str = "en-us",
    n_frames: int | None = None,
    model=None,
    source: str = "text",
    reading=None,
) -> np.ndarray:
    """The mouth shape per frame from the audio and the words spoken.

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,) or (channels, n_samples)]
    sample_rate_hz : int
    fps : Fraction
    texts : list of str, or str
        The words, one item per caption cue (or the whole dialog as one).
    cue_spans_s : list of (start_s, end_s), optional
        Each item's caption time, a loose anchor (+-0.5 s).
    language : str
        espeak-ng language of the words (``en-us``, ``es``, ``de``, ...).
    source : str
        Where the words came from, for warnings (``captions``, ``speech.text``, a file name).
    reading : phonemes.Reading, optional
        espeak-ng's reading of ``texts`` in ``language``, started earlier
        (:func:`phonemes.start_reading`); started here when not given. Ended here in any case.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=int8]
        Indices into :data:`avatarrender.lipsync.SHAPES`. Where the text cannot be used (empty,
        another language, far longer than the speech, nothing espeak can say), a
        :class:`LipsyncWarning` and the audio-only track.
    """
    fps = Fraction(fps)
    texts = [texts] if isinstance(texts, str) else list(texts)
    # (samples along the longer axis: [n], [channels, n] and [n, channels] are all taken)
    chars = sum(len(t) for t in texts)
    sound_s = max(np.shape(y) or (0,)) / sample_rate_hz if sample_rate_hz > 0 else 0.0
    if chars > _MAX_CHARS_PER_S * max(sound_s, 1.0):  # before espeak-ng spends its time on it all
        if reading is not None:
            reading.cancel()
        warn(
            f"{source}: {chars} characters for {sound_s:.1f} s of sound: the text is far longer than "
            "the speech; using the audio-only mouth track",
            LipsyncWarning,
        )
        return lipsync.mouth_track(y, sample_rate_hz, fps=fps, n_frames=n_frames, model=model)
    # espeak-ng reads the text aloud in a process of its own while this one analyses the speech
    if reading is None and any(t.strip() for t in texts):
        try:
            reading = phonemes.start_reading(texts, voice=language)
        except OSError as exc:  # no process or file to be had: the text's phonemes lead alone
            warn(f"{source}: espeak-ng could not read the text aloud ({exc})", LipsyncWarning)
    try:
        return _text_mouth_track(
            y, sample_rate_hz, fps, texts, cue_spans_s, language, n_frames, model, source, reading
        )
    finally:
        if reading is not None:
            reading.cancel()  # read, or not wanted (the text was refused first)


def _text_mouth_track(y, sample_rate_hz, fps, texts, cue_spans_s, language, n_frames, model, source, reading):
    a = analyse_audio(y, sample_rate_hz, fps=fps, n_frames=n_frames, model=model)
    if a.raw is None:
        warn(
            f"{source}: the audio holds no speech to lay the words on: the mouth rests",
            LipsyncWarning,
        )
        return np.zeros(a.n_frames, dtype=np.int8)

    def audio_only(why: str) -> np.ndarray:
        warn(f"{source}: {why}; using the audio-only mouth track", LipsyncWarning)
        if lipsync._unsure_of(a.grid_class_logp, a.grid_active):  # mouth_track would hear it
            return lipsync.mouth_track(y, sample_rate_hz, fps=fps, n_frames=n_frames, model=model)
        return _animate(a.raw, a.active, fps, a.level_db).astype(np.int8)  # what it would give

    try:
        words = phonemize(texts, language=language)
    except ValueError as exc:
        return audio_only(str(exc))
    except EspeakUnavailable as exc:
        return audio_only(str(exc))
    if not words:
        return audio_only("no words espeak-ng can speak in the text")
    n_phones = sum(len(w.classes) for w in words)
    speech_s = float(a.grid_active.sum()) / float(_GRID_FPS)
    if n_phones > _MAX_PHONES_PER_S * max(speech_s, 0.2):
        return audio_only(
            f"{n_phones} phonemes for {speech_s:.1f} s of speech: the text is far longer than the speech"
        )
    fine = _fine_posteriors(y, sample_rate_hz, a, model)
    template = None
    if reading is not None:
        try:
            template = template_classes(
                fine,
                a,
                texts,
                language=language,
                cue_spans_s=cue_spans_s,
                model=model,
                reading=reading.result(),
            )
        except EspeakUnavailable as exc:  # the text's phonemes still lead, without the reading
            warn(f"{source}: espeak-ng could not read the text aloud ({exc})", LipsyncWarning)
    al = align_audio(
        y, sample_rate_hz, a, words, cue_spans_s=cue_spans_s, model=model, fine=fine, template=template
    )
    fits = not (
        al.match_share < _MIN_MATCH
        or al.agreement < _MIN_AGREEMENT
        or (
            al.agreement < _UNSURE_AGREEMENT
            and al.agreement - _null_agreement(fine, words, cue_spans_s) < _MIN_GAIN
        )
        # an unsure text must also sound like its reading (see _READING_MIN_AGREEMENT)
        or (
            al.agreement < _UNSURE_AGREEMENT
            and al.template_agreement is not None
            and al.template_agreement < _READING_MIN_AGREEMENT
        )
    )
    # a text the classifier doubts, but whose reading, laid over the speech, explains it clearly
    # better than the classifier's path alone: the words are what is said, in a voice the
    # classifier reads badly. Measured with two trainings of the classifier without flite (the
    # tuning set; held-out sentences): right flite texts it refused taken 7 of 13 and 3 of 12
    # (4 of 7 and 5 of 7), wrong sentences taken none of 108 (none of 54) with either; -0.5 and
    # 0.15 took more right texts with the one training, and 2-3 wrong ones with the other
    fits = fits or (
        al.template_agreement is not None
        and al.match_share >= _MIN_MATCH
        and al.template_agreement >= _TEMPLATE_MIN_AGREEMENT
        and al.template_agreement - al.agreement >= _TEMPLATE_MIN_GAIN
    )
    heard, rescued = None, False
    if not fits:  # the acoustic model of real speakers may hear the words where the classifier does not
        rescued, heard = _heard_confirms(
            y, sample_rate_hz, texts, words, al, len(fine[0]), language, a.grid_active
        )
        fits = rescued
    if not fits:
        return audio_only(
            f"the text does not fit the speech (it explains {al.match_share:.0%} of "
            f"it, agreement {al.agreement:.2f}): another language, or other words?"
            + (
                f" (or cue times more than {_ANCHOR_SLACK_S:g} s off the speech: the cues' times "
                "bound where their words are looked for)"
                if cue_spans_s
                else ""
            )
        )
    # the words are what is said: an acoustic model of real speakers says where each phone of them
    # sounds, and the path leans on that too (English)
    if heard is None:
        try:
            heard = _heard_template(y, sample_rate_hz, texts, words, al, len(fine[0]), language)
        except Exception:  # noqa: BLE001 - a second opinion only: the track goes on without it
            logging.getLogger(__name__).debug("PocketSphinx's alignment failed", exc_info=True)
    if heard is not None:
        al = align_audio(
            y,
            sample_rate_hz,
            a,
            words,
            cue_spans_s=cue_spans_s,
            fine=fine,
            template=[t for t in (template, heard) if t is not None],
            plain=al,
        )
    grid_class = al.grid_class
    if rescued and heard is not None:
        # the words the classifier doubted, where the model of real speakers heard them
        on_grid = heard[_STRIDE // 2 :: _STRIDE][: len(grid_class)]
        grid_class = grid_class.copy()
        fill = (grid_class[: len(on_grid)] < 0) & (on_grid >= 0)
        grid_class[: len(on_grid)][fill] = on_grid[fill]
    return _combine(a, grid_class, al.cover)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_HEARD_MARGIN_S = 0.3  # each sentence is looked for this far around where the path put it
# a sentence whose words fit the path drawn to the reading better than this (mean log-probability
# below the best class per frame) is not searched for. Tuning set: espeak-ng's voices -0.01..-0.04,
# the other families -0.03..-0.25; shape accuracy with the text, searched always -> so: espeak-ng
# 0.839 -> 0.856 (0.861 never searched), flite 0.818 -> 0.817, Festival 0.805 -> 0.803, Piper
# 0.752 -> 0.765, Kokoro 0.634 -> 0.633 (-0.035: the same within 0.01)
_HEARD_SURE_FIT = -0.045


def _heard_template(
    y, sample_rate_hz, texts, words, al, n_fine: int, language: str, *, heard_fits: list | None = None
) -> np.ndarray | None:
    """The phone class PocketSphinx's alignment of the words (:mod:`avatarrender.acoustic`) puts
    at each 90 fps frame, -1 where none; ``None`` for languages it has no model of.

    Each sentence is searched for alone, around the frames the classifier's path (``al``) gave
    its words: a search's time grows faster than its length. ``heard_fits`` (a list): every sentence is
    searched for, and the list gets each one's fit (:func:`acoustic.align_phones`)."""
    if not language.lower().startswith("en") or al.frame_word is None:
        return None
    whole_s = n_fine / float(_FINE_FPS)
    if heard_fits is not None and whole_s <= acoustic._MAX_SPAN_S:
        # judged: the whole text over the whole speech, where it fits in one search (the path of a
        # classifier that doubts the words may have put them in the wrong places)
        phones = acoustic.align_phones(
            lipsync._mono(y),
            sample_rate_hz,
            [" ".join(texts)],
            [(0.0, whole_s)],
            language=language,
            fits=heard_fits,
        )
        return acoustic.phone_classes(phones, n_fine, float(_FINE_FPS)) if phones else None
    pieces = [p for t in texts for p in _SENTENCE_END.split(t) if p.strip()]
    piece_of_word = [w.cue for w in words]
    if len(pieces) > len(texts):
        try:  # which sentence each word is of: the sentences' words, if they are the texts' words
            split = phonemize(pieces, language=language)
        except (ValueError, EspeakUnavailable):
            split = []
        if [w.classes for w in split] == [w.classes for w in words]:
            piece_of_word = [w.cue for w in split]
        else:
            pieces = texts
    else:
        pieces = texts
    # a sentence the path already explains is not searched for: it would gain nothing there
    fits = np.asarray(al.word_fits, dtype=np.float64)
    of_piece = np.asarray(piece_of_word)
    sure = set()
    for k in range(len(pieces)):
        f = fits[(of_piece == k) & np.isfinite(fits)]
        if heard_fits is None and len(f) and float(f.mean()) > _HEARD_SURE_FIT:
            sure.add(k)
    fw = al.frame_word
    frame_piece = np.where(fw >= 0, np.asarray(piece_of_word + [-1])[fw], -1)
    found = [np.flatnonzero(frame_piece == k) for k in range(len(pieces))]
    # every sentence's frames bound its neighbours' spans, searched or not
    bounds = [(f[0], f[-1] + 1) if len(f) else None for f in found]
    margin = int(_HEARD_MARGIN_S * _FINE_FPS)
    spans: list[tuple[float, float] | None] = []
    for k, b in enumerate(bounds):
        if b is None or k in sure:
            spans.append(None)
            continue
        before = max((e for e in (x[1] for x in bounds[:k] if x) if e <= b[0]), default=None)
        after = min((s for s in (x[0] for x in bounds[k + 1 :] if x) if s >= b[1]), default=None)
        lo = b[0] - margin if before is None else max(b[0] - margin, (before + b[0]) // 2)
        hi = b[1] + margin if after is None else min(b[1] + margin, (b[1] + after + 1) // 2)
        spans.append((max(lo, 0) / float(_FINE_FPS), min(hi, n_fine) / float(_FINE_FPS)))
    if all(s is None for s in spans):
        return None
    phones = acoustic.align_phones(
        lipsync._mono(y), sample_rate_hz, pieces, spans, language=language, fits=heard_fits
    )
    return acoustic.phone_classes(phones, n_fine, float(_FINE_FPS)) if phones else None


# A text the classifier refuses is taken when PocketSphinx's model of real speakers hears it: the
# log-likelihood of the words' forced alignment per 10-ms frame of speech (the speech activity's
# frames: a review found that counting every frame within 35 dB of the loudest took the pauses of
# a recording with a noise floor as speech, which the path's silence explains whatever the words,
# and Spanish and other sentences were taken at -2.9..-3.7), at least this. The classifier learnt
# synthesizers, and on a real voice (ALSA's test recordings, one speaker) refused the right words
# of 6 of 8 utterances, and of all 8 put one after the other. That review's 333 cases (ALSA's and
# a LibriVox reader's recordings, espeak-ng and flite, clean and under noise 21-31 dB down;
# right, other, half-right, Spanish and German texts), where the classifier refused: right texts
# -1.8..-2.6 clean, -2.7..-6.9 under noise; other texts -2.7 (half of the words right) and
# -3.1..-4.9 clean, -3.8 and below under noise. So the right words of a clean recording are
# taken, and under a noise floor the refusal stands, as before
_HEARD_MIN_FIT = -2.65
_HEARD_NO_PATH_FIT = -10.0  # a sentence the pruned search found no path for counts as this


def _heard_confirms(y, sample_rate_hz, texts, words, al, n_fine: int, language: str, grid_active: np.ndarray):
    """``(heard, template)``: whether PocketSphinx hears the words in the speech (English; the
    whole text over the whole speech up to ``acoustic._MAX_SPAN_S``, else each sentence around
    where the path ``al`` put it), and its template (:func:`_heard_template`) when it does."""
    fits: list = []
    try:
        heard = _heard_template(y, sample_rate_hz, texts, words, al, n_fine, language, heard_fits=fits)
    except Exception:  # noqa: BLE001 - a second opinion only: the refusal stands without it
        logging.getLogger(__name__).debug("PocketSphinx's alignment failed", exc_info=True)
        return False, None
    # per frame of speech (the speech activity's, which holds under a noise floor: pauses, which
    # the path's silence explains whatever the words, would raise a wrong text's fit)
    active = np.concatenate([[0], np.cumsum(grid_active)])
    total, speech = 0.0, 0.0
    for score, (s0, s1) in fits:
        g0, g1 = (min(len(grid_active), int(round(x * float(_GRID_FPS)))) for x in (s0, s1))
        n = (active[g1] - active[g0]) / float(_GRID_FPS) / 0.01  # 10-ms frames
        total += _HEARD_NO_PATH_FIT * n if score is None else score
        speech += n
    if heard is None or not speech:
        return False, None
    fit = float(total / speech)
    logging.getLogger(__name__).debug("PocketSphinx's fit of the text: %.2f", fit)
    return fit >= _HEARD_MIN_FIT, heard


_STRIDE = 3
_FINE_FPS = _GRID_FPS * _STRIDE


def _fine_posteriors(y, sample_rate_hz: int, a, model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phone-class log-probabilities [shape=(3 * n_grid, 11)] and activity on the 90 fps grid,
    and the cepstra of the 30 fps grid's frames [shape=(n_grid, 13)]."""
    n_grid = len(a.grid_active)
    f = lipsync.frame_features(
        lipsync._mono(y), sample_rate_hz, fps=_FINE_FPS, n_frames=_STRIDE * n_grid, warp=a.warp
    )
    lp = lipsync.class_logp(f, model, stride=_STRIDE)
    return lp, np.repeat(a.grid_active, _STRIDE), f["mfcc"][1::_STRIDE][:n_grid]


def template_classes(
    fine,
    a,
    texts: list[str],
    *,
    language: str,
    cue_spans_s: list[tuple[float, float]] | None = None,
    model=None,
    reading=None,
) -> np.ndarray | None:
    """The phone class espeak-ng's own reading of ``texts`` puts at each 90 fps frame of the
    speech, -1 where none (``None``: nothing to read).

    espeak-ng reads each cue aloud (in a process of its own: :func:`phonemes.start_reading`); a
    dynamic time warp between its frames and the speech's (12 cepstra, standardised per side, and
    the classifier's class probabilities: the distance of the one plus -log of the probability
    that both frames are the same class) maps every frame of the speech to a moment of the
    reading, and so to the phoneme espeak-ng says there. The warp keeps within a band around the
    cues' times (without them, around the line that matches the shares of sounding frames):
    memory and time grow with the length, not its square.

    ``reading``: what :meth:`phonemes.Reading.result` gave for ``texts`` (read here when not given).
    """
    fine_lp, _, mfcc = fine
    if not any(t.strip() for t in texts):
        return None
    samples, rate_hz, events, offsets_s = reading or phonemes.read_aloud(texts, voice=language)
    if not events or not len(samples):
        return None
    fps = float(_GRID_FPS)
    syn = lipsync.frame_features(samples, rate_hz, fps=_GRID_FPS)
    n_syn, n_real = len(syn["rms_db"]), len(mfcc)
    if n_syn < 2 or n_real < 2:
        return None
    # the band's centre: each cue's reading laid over its caption time; without them, the k-th
    # share of the reading's sounding frames over the k-th share of the speech's (pauses of other
    # lengths on either side move the rest of the line no further)
    rows_s = (np.arange(n_syn) + 0.5) / fps
    if cue_spans_s and len(cue_spans_s) >= len(texts):
        src = np.concatenate([[s0, s1] for s0, s1 in offsets_s])
        dst = np.concatenate([[a0, a1] for a0, a1 in cue_spans_s[: len(texts)]])
        centre_s = np.interp(rows_s, src, np.maximum.accumulate(dst))
        band = int(_TEMPLATE_BAND_S * fps)
    else:
        real_on = np.cumsum(a.grid_active[:n_real])
        syn_on = np.cumsum(lipsync._activity(syn["rms_db"]))
        if real_on[-1] and syn_on[-1]:
            centre_s = np.searchsorted(real_on / real_on[-1], syn_on / syn_on[-1]) / fps
        else:
            centre_s = rows_s * n_real / n_syn
        speech_s = max(real_on[-1], syn_on[-1]) / fps
        band = int(min(max(_TEMPLATE_BAND_S, _TEMPLATE_BAND_SHARE * speech_s), _TEMPLATE_MAX_BAND_S) * fps)
    centre = np.clip(np.rint(centre_s * fps).astype(np.int64), 0, n_real - 1)

    def standard(m: np.ndarray) -> np.ndarray:
        m = m[:, 1:]
        return (m - m.mean(axis=0)) / (m.std(axis=0) + 1e-6) / np.sqrt(m.shape[1])

    real_m, syn_m = standard(mfcc), standard(syn["mfcc"])
    real_p = np.exp(fine_lp[1::_STRIDE][:n_real])
    syn_p = np.exp(lipsync.class_logp(syn, model))

    # the band's cells a block of rows at a time ([rows, widest row]: memory in the band's width,
    # not the speech's length)
    lo, hi = _band(n_syn, n_real, centre, band)
    real_sq = (real_m**2).sum(axis=1)
    block: dict[str, Any] = {"start": -(10**9)}

    def cost(i: int, a: int, b: int) -> np.ndarray:
        if not block["start"] <= i < block["start"] + _WARP_BLOCK_ROWS:
            r0, r1 = i, min(i + _WARP_BLOCK_ROWS, n_syn)
            width = int((hi[r0:r1] - lo[r0:r1]).max())  # the block's own: a cue gap widens few rows
            cols = np.minimum(lo[r0:r1, None] + np.arange(width)[None, :], n_real - 1)
            sm, sp = syn_m[r0:r1], syn_p[r0:r1]
            d = real_sq[cols] + (sm**2).sum(axis=1)[:, None] - 2.0 * np.einsum("ijk,ik->ij", real_m[cols], sm)
            block["start"] = r0
            block["costs"] = np.sqrt(np.maximum(d, 0.0)) - np.log(
                np.einsum("ijk,ik->ij", real_p[cols], sp) + 1e-3
            )
        return block["costs"][i - block["start"], : b - a]

    rows = _banded_warp(cost, lo, hi)
    # every 90 fps frame of the speech -> a moment of the reading -> the phoneme sounding there
    fine_s = (np.arange(len(fine_lp)) + 0.5) / float(_FINE_FPS)
    grid_s = (np.arange(n_real) + 0.5) / fps
    syn_s = np.interp(fine_s, grid_s, (rows + 0.5) / fps)
    # events without a name (IPA mode marks stress and syllables so) continue the phoneme before
    events = [e for e in events if e[0]] or events
    starts = np.array([s for _, s in events])
    k = np.clip(np.searchsorted(starts, syn_s, side="right") - 1, 0, len(events) - 1)
    ipa = phonemes.reads_in_ipa(language)  # as phonemes.start_reading names them
    classes = np.array([phonemes.event_class(name, ipa) for name, _ in events], dtype=np.int64)[k]
    # where the speech and the reading matched there sound unalike (words spoken that the text
    # lacks, an ad-lib), the warp was only passing through: no template there
    at = np.clip(np.rint(rows).astype(np.int64), 0, n_syn - 1)
    same = np.einsum("ij,ij->i", real_p, syn_p[at])
    unsure = np.repeat(same < _TEMPLATE_MIN_SAME, _STRIDE)[: len(classes)]
    classes[np.flatnonzero(unsure)] = -1
    return classes


def _band(n: int, m: int, centre: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's columns ``lo[i] .. hi[i] - 1`` of a warp within ``band`` of ``centre``: both
    ends non-decreasing, each row meeting the one above, the corners in."""
    lo = np.clip(centre - band, 0, m - 1)
    hi = np.clip(centre + band + 1, 1, m)
    lo = np.minimum.accumulate(lo[::-1])[::-1]
    hi = np.maximum.accumulate(hi)
    lo[0], hi[-1] = 0, m
    for i in range(1, n):
        lo[i] = min(lo[i], hi[i - 1] - 1)
    return lo, hi


def _banded_warp(cost, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The least-cost monotone path from (0, 0) to (n-1, m-1) (steps right, down, diagonal)
    through the cells of a band (:func:`_band`: row ``i``'s columns ``lo[i] .. hi[i] - 1``, ``n``
    rows, ``m = hi[-1]`` columns), ``cost(i, lo, hi)`` giving row ``i``'s costs for columns
    ``lo..hi-1``: for each column, the mean row the path passes there [shape=(m,)].

    Row by row in numpy: a row's cost of arriving from the left is a running minimum
    (``D[i, j] = S[j] + min_{k <= j}(T[k] - S[k])``, ``S`` the row's cumulative cost, ``T`` the
    cost of arriving from above), so no Python loop runs over the columns; each cell keeps the
    step it came by (0 diagonal, 1 from above, 2 from the left) for the way back."""
    n, m = len(lo), int(hi[-1])
    steps = []  # row i: the step into (i, lo[i] .. hi[i] - 1)
    prev = None
    for i in range(n):
        a, b = int(lo[i]), int(hi[i])
        c = cost(i, a, b)
        cs = np.cumsum(c)
        if prev is None:
            row, step = cs, np.full(b - a, 2, np.int8)
        else:
            pa, pb, prow = prev
            up = np.full(b - a + 1, np.inf)  # D[i-1, j] for j in a-1 .. b-1
            s0, s1 = max(a - 1, pa), min(b, pb)
            if s1 > s0:
                up[s0 - (a - 1) : s1 - (a - 1)] = prow[s0 - pa : s1 - pa]
            diagonal = up[:-1] <= up[1:]
            t = c + np.where(diagonal, up[:-1], up[1:])
            row = cs + np.minimum.accumulate(t - cs)
            # from the left where that beats arriving from above (compared directly: the running
            # minimum's rounding would take ties for wins)
            left = np.zeros(b - a, bool)
            left[1:] = row[:-1] + c[1:] < t[1:]
            step = np.where(left, 2, np.where(diagonal, 0, 1)).astype(np.int8)
        steps.append(step)
        prev = (a, b, row)
    # back from the end along the kept steps
    total = np.zeros(m)
    count = np.zeros(m)
    i, j = n - 1, m - 1
    while True:
        total[j] += i
        count[j] += 1
        if i == 0 and j == 0:
            break
        k = steps[i][j - lo[i]]
        if k == 0:
            i, j = i - 1, j - 1
        elif k == 1:
            i -= 1
        else:
            j -= 1
    return total / np.maximum(count, 1)


def _null_agreement(fine, words: list[Word], cue_spans_s) -> float:
    """The agreement of the same phonemes backwards: what a text that is not spoken scores."""
    backwards = [Word(tuple(reversed(w.classes)), w.cue) for w in reversed(words)]
    return align(fine[0], fine[1], backwards, cue_spans_s=cue_spans_s, fps=_FINE_FPS).agreement


def align_audio(
    y: np.ndarray,
    sample_rate_hz: int,
    a,
    words: list[Word],
    *,
    cue_spans_s=None,
    model=None,
    fine=None,
    template: np.ndarray | list[np.ndarray] | None = None,
    plain: Alignment | None = None,
) -> Alignment:
    """:func:`align` on a 90 fps grid (phonemes are often shorter than a 30 fps frame; the
    classifier sees the same 5 x 33 ms context there), read back on the 30 fps grid of ``a``
    (an :class:`~avatarrender.lipsync.AudioAnalysis`): every third fine frame is centred on one.
    ``plain``: the alignment whose fit was judged, when made before (its fit, match_share and
    visited are kept; with a template, a path drawn to it is made anew)."""
    fine_lp, fine_active, _ = fine or _fine_posteriors(y, sample_rate_hz, a, model)
    al = plain or align(fine_lp, fine_active, words, cue_spans_s=cue_spans_s, fps=_FINE_FPS)
    if template is not None:
        # whether the text is what is said is judged on the audio's own path first (a path drawn
        # to the template fits the posteriors less, so right texts looked wrong: flite 13 -> 42
        # of 60 rejected), then on how much the reading adds (text_mouth_track); the mouth
        # follows the path drawn to the template
        led = align(fine_lp, fine_active, words, cue_spans_s=cue_spans_s, fps=_FINE_FPS, template=template)
        led.template_agreement = led.agreement
        led.fit, led.match_share, led.visited = al.fit, al.match_share, al.visited
        al = led
    n_grid = len(a.grid_active)
    fine_shape = np.where(al.grid_class >= 0, _SHAPE_OF_CLASS[np.maximum(al.grid_class, 0)], -1)
    al.grid_class = _read_back(al.grid_class, n_grid)
    # how much of each 30 fps frame each shape covers (its three 90 fps frames)
    cover = np.zeros((n_grid, len(SHAPES)))
    for j in range(_STRIDE):
        sh = fine_shape[j::_STRIDE][:n_grid]
        ok = sh >= 0
        cover[np.flatnonzero(ok), sh[ok]] += 1.0 / _STRIDE
    al.cover = cover
    return al


def _read_back(fine: np.ndarray, n_grid: int) -> np.ndarray:
    """The 30 fps classes of a 90 fps class path: the class at each frame's middle, except that
    a closure no frame's middle falls in still gets its frame (lips that close must be seen),
    and a closure before a pause holds up to two more frames (the silent hold of a final p)."""
    grid = fine[1::_STRIDE][:n_grid].copy()
    is_b = fine == _BILABIAL
    if not is_b.any():
        return grid
    edges = np.flatnonzero(np.diff(is_b.astype(np.int8))) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(fine)]])
    for s, e in zip(starts, ends):
        if not is_b[s]:
            continue
        g0, g1 = s // _STRIDE, min((e - 1) // _STRIDE, n_grid - 1)
        if not (grid[g0 : g1 + 1] == _BILABIAL).any():
            grid[min((s + e - 1) // 2 // _STRIDE, n_grid - 1)] = _BILABIAL
        k = g1 + 1
        while k < min(g1 + 1 + _FINAL_CLOSURE_HOLD, n_grid) and grid[k] == -1:
            grid[k] = _BILABIAL
            k += 1
    return grid


def _combine(a, grid_class: np.ndarray, cover: np.ndarray | None = None) -> np.ndarray:
    """Text shapes where the alignment holds, the audio-only path elsewhere, then the
    animation pass (``cover``: each shape's share of each 30 fps frame, for its holds)."""
    cls = grid_class[a.grid_of_frame]
    raw = a.raw.copy()
    # a phoneme aligned to a quiet frame is still spoken: the silent closure of a p, a faint f
    known = cls >= 0
    raw[known] = _SHAPE_OF_CLASS[cls[known]]
    soft = None
    if cover is not None:
        soft = _COVER_WEIGHT * cover[a.grid_of_frame] * known[:, None]
        closed = raw == SHAPES.index("A")  # closures the read-back kept count in full
        soft[closed, SHAPES.index("A")] = _CLOSED_COVER * _COVER_WEIGHT
    return _animate(raw, a.active | known, a.fps, a.level_db, known=known, soft=soft).astype(np.int8)
