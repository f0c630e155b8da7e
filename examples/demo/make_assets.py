"""Make every asset of the demo segment: room, lighting, character, TV bezel, clip, speech, captions.

Run ``.venv/bin/python examples/demo/make_assets.py [--out DIR] [--force]``. Everything is drawn or
synthesized (Pillow + numpy, the bundled ffmpeg, espeak-ng), so the demo needs no network and
the repository ships no binaries. Files that already exist are kept unless ``--force``. The drawing
lives in :mod:`avatarrender.art` (``avatarrender new`` draws the same art); speech is made here.

Geometry the segment.yaml relies on (frame pixels, 1920x1080):

- TV screen ``[96, 160, 768, 432]``; bezel overlay at ``[56, 120]`` (its hole is at (40, 40) in it).
- Character canvas 600x700 at ``[1240, 380]``; mouth sprites 140x90 at ``MOUTH_OFFSET`` and eye
  sprites 220x90 at ``EYES_OFFSET`` on that canvas.
- The clip carries its frame index in pixels: see :func:`clip_frame_index`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from avatarrender.art import (  # noqa: F401  (re-exported: tests and benchmarks read them here)
    BEZEL_POSITION,
    CHARACTER_POSITION,
    CHARACTER_SIZE,
    CLIP_DURATION_S,
    CLIP_FPS,
    CLIP_SIZE,
    EYE_STATES,
    EYES_OFFSET,
    EYES_SIZE,
    FRAME_SIZE,
    LAMP_CENTER,
    LAMP_LAYER_POSITION,
    LAMP_LAYER_SIZE,
    MOUTH_OFFSET,
    MOUTH_SHAPES,
    MOUTH_SIZE,
    SCREEN_RECT,
    _run,
    clip_frame_index,
    make_bezel,
    make_character,
    make_clip,
    make_lighting,
    make_room,
)

__all__ = [
    "FRAME_SIZE",
    "SCREEN_RECT",
    "BEZEL_POSITION",
    "CHARACTER_POSITION",
    "CHARACTER_SIZE",
    "MOUTH_OFFSET",
    "MOUTH_SIZE",
    "EYES_OFFSET",
    "EYES_SIZE",
    "MOUTH_SHAPES",
    "EYE_STATES",
    "CLIP_SIZE",
    "CLIP_FPS",
    "CLIP_DURATION_S",
    "SENTENCES",
    "make_assets",
    "clip_frame_index",
    "main",
]

SENTENCES = (
    "Hello, and welcome back to Avatar TV!",
    "I'm Pip, your host for this little corner of the internet.",
    "Tonight on the big screen, we have sunset colors and some very busy little cells.",
    "While that plays, let me tell you what's coming up.",
    "After the break, we'll visit a tiny robot who only speaks in colors.",
    "Thanks for hanging out with me. Grab a snack, and stay cozy!",
)
SENTENCE_GAP_S = 0.45
LEAD_IN_S = 0.5
TAIL_S = 0.8


# ---------------------------------------------------------------------------------------------
# speech and captions


def _speak(text: str, path: Path) -> tuple[np.ndarray, int]:
    """One sentence from espeak-ng, trimmed of its leading and trailing silence."""
    _run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text])
    y, sr = sf.read(path, dtype="float32")
    loud = np.flatnonzero(np.abs(y) > 0.01)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng made silence for {text!r}")
    pad = int(0.02 * sr)  # keep 20 ms so the trim does not clip consonant edges
    return y[max(0, loud[0] - pad) : loud[-1] + pad], sr


def _srt_time(t_s: float) -> str:
    ms = int(round(t_s * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_speech(folder: Path) -> None:
    """speech.wav (espeak's 22.05 kHz mono) and captions.srt with one cue per sentence, exact times."""
    pieces: list[np.ndarray] = []
    cues: list[tuple[float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sr = None
        t_samples = 0
        for i, text in enumerate(SENTENCES):
            y, sr_i = _speak(text, Path(tmp) / f"s{i}.wav")
            if sr is None:
                sr = sr_i
                pieces.append(np.zeros(int(LEAD_IN_S * sr), np.float32))
                t_samples = len(pieces[0])
            elif i:
                gap = np.zeros(int(SENTENCE_GAP_S * sr), np.float32)
                pieces.append(gap)
                t_samples += len(gap)
            cues.append((t_samples / sr, (t_samples + len(y)) / sr, text))
            pieces.append(y)
            t_samples += len(y)
        pieces.append(np.zeros(int(TAIL_S * sr), np.float32))
    audio = np.concatenate(pieces)
    sf.write(folder / "speech.wav", audio, sr, subtype="PCM_16")
    lines = []
    for n, (a, b, text) in enumerate(cues, 1):
        lines += [str(n), f"{_srt_time(a)} --> {_srt_time(b)}", text, ""]
    (folder / "captions.srt").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------


def _products(out: Path):
    """(function, outputs) per asset group; a group is remade if any of its outputs is missing."""
    ch = out / "character"
    return [
        (lambda: make_room(out / "room.png"), [out / "room.png"]),
        (
            lambda: make_lighting(out),
            [out / "light_lamp.png", out / "light_window.png", out / "vignette.png"],
        ),
        (
            lambda: make_character(ch),
            [ch / "base.png"]
            + [ch / f"mouth_{s}.png" for s in MOUTH_SHAPES]
            + [ch / f"eyes_{s}.png" for s in EYE_STATES],
        ),
        (lambda: make_bezel(out / "tv_bezel.png"), [out / "tv_bezel.png"]),
        (lambda: make_clip(out / "clip.mp4"), [out / "clip.mp4"]),
        (lambda: make_speech(out), [out / "speech.wav", out / "captions.srt"]),
    ]


def _silent_clip(outputs: list[Path]) -> bool:
    """A clip made before the demo's clip had sound (segment.yaml now mixes it): make it again."""
    from avatarrender.errors import MediaError
    from avatarrender.media import probe_video

    clip = next((p for p in outputs if p.name == "clip.mp4"), None)
    if clip is None or not clip.is_file():
        return False
    try:
        return not probe_video(clip).has_audio
    except MediaError:
        return True


def make_assets(out: str | Path, *, force: bool = False) -> list[Path]:
    """Make every demo asset under ``out``; return the files written (empty if all existed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (scripts/setup.sh installs it)")
    written: list[Path] = []
    for make, outputs in _products(out):
        if force or not all(p.is_file() for p in outputs) or _silent_clip(outputs):
            make()
            written += outputs
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "assets",
        help="folder to write into (default: examples/demo/assets)",
    )
    parser.add_argument("--force", action="store_true", help="remake files that already exist")
    args = parser.parse_args(argv)
    written = make_assets(args.out, force=args.force)
    print(
        f"{len(written)} files written under {args.out}" if written else f"all assets present in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
