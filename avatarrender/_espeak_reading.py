"""espeak-ng reads texts aloud, with its phoneme events, in a process of its own.

libespeak-ng keeps state from one utterance to the next (the pitch flutter's phase in
``wavegen.c`` runs on across calls), so the same text read twice in one process comes out a few
samples apart, and so would the alignment's template (:func:`avatarrender.align.template_classes`)
with what was read before. A fresh process reads the same text the same way every time.

Run as ``python -I -S _espeak_reading.py`` (standard library only: about 30 ms to start). Reads one
JSON line ``{"voice": str, "rate_wpm": int, "texts": [str, ...], "samples_fd": int, "ipa": bool}``
on stdin (``ipa``: phonemes named in IPA instead of espeak-ng's mnemonics); writes every part's
samples, 16-bit little-endian mono, one after the other to the inherited descriptor ``samples_fd``,
and one JSON line ``{"rate_hz": int, "parts": [{"samples": int, "events": [[mnemonic, ms], ...]},
...]}`` on stdout. Exit 2 with a message on stderr when
espeak-ng cannot be loaded or has no such voice.
"""

from __future__ import annotations

import ctypes
import json
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2


class _Voice(ctypes.Structure):
    """espeak_VOICE, to ask for a voice by its language (espeak_SetVoiceByProperties)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


def set_voice(lib, voice: str) -> bool:
    """Select ``voice`` by its name or file (``en-us``, ``de``, ``en-us+f1``), else by the
    language it speaks (``en-gb``, ``fr-fr``, ``en-GB``: a language that ``espeak-ng --voices``
    lists but no voice file is named after). False when espeak-ng has none."""
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    if lib.espeak_SetVoiceByName(voice.encode()) == 0:
        return True
    if "+" in voice:  # a variant of a voice asked by name: nothing to look up by language
        return False
    lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
    spec = _Voice(name=None, languages=voice.strip().lower().replace("_", "-").encode())
    return lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) == 0


INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002  # phoneme events name IPA symbols, not espeak's mnemonics
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
EVENT_LIST_TERMINATED, EVENT_PHONEME = 0, 7
PARAM_RATE, PARAM_PITCH = 1, 3


class Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", Id),
    ]


CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))
SYNTH_ARGTYPES = [
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_void_p,
]


def phoneme_events(events) -> list[tuple[str, int]]:
    """The phoneme events of one callback's list: ``[(mnemonic, audio position in ms), ...]``."""
    out, i = [], 0
    while events[i].type != EVENT_LIST_TERMINATED:
        ev = events[i]
        if ev.type == EVENT_PHONEME:
            out.append((bytes(ev.id.string).split(b"\0")[0].decode(errors="replace"), ev.audio_position))
        i += 1
    return out


def main() -> int:
    req = json.loads(sys.stdin.readline())
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")  # the soname; ctypes.util costs 14 ms to import
    except OSError:
        from ctypes.util import find_library

        try:
            lib = ctypes.CDLL(find_library("espeak-ng") or "libespeak-ng.so.1")
        except OSError as exc:
            print(f"cannot load libespeak-ng ({exc}): install espeak-ng", file=sys.stderr)
            return 2
    flags = (
        INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT | (INITIALIZE_PHONEME_IPA if req.get("ipa") else 0)
    )
    rate_hz = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, None, flags)
    if rate_hz <= 0:
        print("espeak_Initialize failed (is espeak-ng-data installed?)", file=sys.stderr)
        return 2
    lib.espeak_Synth.argtypes = SYNTH_ARGTYPES
    if not set_voice(lib, req["voice"]):
        print(f"espeak-ng has no voice {req['voice']!r}", file=sys.stderr)
        return 2
    lib.espeak_SetParameter(PARAM_RATE, int(req["rate_wpm"]), 0)
    lib.espeak_SetParameter(PARAM_PITCH, 50, 0)
    chunks: list[bytes] = []
    events: list[tuple[str, int]] = []

    def callback(wav, n, evs) -> int:
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        events.extend(phoneme_events(evs))
        return 0

    keep = CALLBACK(callback)
    lib.espeak_SetSynthCallback(keep)
    parts, audio = [], []
    for text in req["texts"]:
        chunks.clear()
        events.clear()
        data = text.encode("utf-8", errors="replace")  # a lone surrogate from YAML's escapes
        lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = b"".join(chunks)
        parts.append({"samples": len(pcm) // 2, "events": list(events)})
        audio.append(pcm)
    # the samples to the file the parent handed over: through the pipe, 64 kB at a time, the
    # reading blocked until the reader came for them
    with open(int(req["samples_fd"]), "wb", closefd=True) as fh:
        for pcm in audio:
            fh.write(pcm)
    sys.stdout.write(json.dumps({"rate_hz": rate_hz, "parts": parts}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # one line for the caller's warning, not a traceback
        print(f"the reading failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
