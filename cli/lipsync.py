"""``avatarrender lipsync``: the mouth track of an audio file in Rhubarb Lip Sync's formats."""
from __future__ import annotations

import io
import sys
from fractions import Fraction
from pathlib import Path
from typing import Optional

import typer

from avatarrender.errors import AssetNotFoundError, SpecError

__all__ = ["register", "plot_track"]

_COLOURS = {"X": (120, 120, 130), "A": (200, 60, 60), "B": (230, 150, 60), "C": (230, 210, 80),
            "D": (90, 190, 90), "E": (70, 160, 210), "F": (110, 90, 200), "G": (200, 90, 180),
            "H": (60, 190, 180)}


def plot_track(y, sample_rate_hz: int, track, *, fps: Fraction, features: dict, path: Path) -> None:
    """Waveform, level and brightness, and the mouth track over time, drawn with Pillow."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from avatarrender.hls import atomic_write
    from avatarrender.lipsync import SHAPES, _runs

    n = len(track)
    width = max(800, min(4000, n * 6))
    lanes = [("waveform", 140), ("level (dB)", 90), ("centroid (Hz)", 90), ("mouth", 60)]
    height = sum(h for _, h in lanes) + 40
    img = Image.new("RGB", (width + 110, height), (250, 250, 252))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    x0, top = 100, 10
    xs = lambda frame: x0 + int(frame / max(n, 1) * width)  # noqa: E731
    for name, h in lanes:
        d.rectangle((x0, top, x0 + width, top + h), outline=(200, 200, 210))
        d.text((6, top + h // 2 - 7), name, fill=(40, 40, 50), font=font)
        if name == "waveform":
            mono = np.asarray(y, dtype=np.float32).reshape(-1)
            cols = np.array_split(mono, width) if len(mono) >= width else [mono]
            for i, c in enumerate(cols):
                if len(c):
                    lo, hi = float(c.min()), float(c.max())
                    d.line((x0 + i, top + h / 2 - hi * h / 2, x0 + i, top + h / 2 - lo * h / 2),
                           fill=(60, 90, 160))
        elif name in ("level (dB)", "centroid (Hz)"):
            v = features["rms_db"] if name.startswith("level") else features["centroid_hz"]
            lo, hi = float(np.min(v)), float(np.max(v)) + 1e-9
            pts = [(xs(i), top + h - (float(v[i]) - lo) / (hi - lo) * (h - 4) - 2) for i in range(len(v))]
            if len(pts) > 1:
                d.line(pts, fill=(200, 80, 60), width=1)
        else:
            for s, e, v in _runs(np.asarray(track)):
                shape = SHAPES[v]
                d.rectangle((xs(s), top + 2, max(xs(e) - 1, xs(s)), top + h - 2), fill=_COLOURS[shape])
                if xs(e) - xs(s) > 10:
                    d.text((xs(s) + 2, top + h // 2 - 7), shape, fill=(20, 20, 20), font=font)
        top += h + 5
    for sec in range(int(n / float(fps)) + 1):
        d.text((xs(sec * float(fps)), top), f"{sec}s", fill=(90, 90, 100), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def lipsync_cmd(
    audio: Path = typer.Argument(..., help="Speech: wav, flac, ogg, mp3, ... (any rate, mono or stereo)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here (default: stdout)."),
    fps: str = typer.Option("30", "--fps", help="Frames per second of the track (30, 25, 30000/1001)."),
    fmt: str = typer.Option("json", "--format", help="json (Rhubarb's mouthCues) or tsv."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw waveform, features and track as PNG."),
    baseline: bool = typer.Option(False, "--baseline", help="Use the old RMS+ZCR method (for comparison)."),
    dialog: Optional[Path] = typer.Option(None, "--dialog", "-d",
                                          help="A text file of the words spoken: aligned to the audio."),
    language: str = typer.Option("en-us", "--language", help="espeak-ng language of the --dialog words."),
) -> None:
    """Write the mouth track of AUDIO in Rhubarb Lip Sync's JSON or TSV format.

    With --dialog, the words are turned into phonemes and aligned to the speech; where they do
    not match it (or cannot be used at all: a warning says why) the track comes from the audio."""
    from avatarrender import lipsync
    from avatarrender.hls import atomic_write
    from avatarrender.timebase import parse_fps

    if fmt not in ("json", "tsv"):
        raise SpecError(None, "--format", f"{fmt!r}: use json or tsv")
    try:
        rate = parse_fps(fps)
    except (ValueError, ZeroDivisionError):
        raise SpecError(None, "--fps", f"{fps!r} is not a frame rate") from None
    if not audio.is_file():
        raise AssetNotFoundError(audio, None, "file not found")
    words = None
    if dialog is not None:
        if baseline:
            raise SpecError(None, "--dialog", "the RMS+ZCR baseline cannot use the words: drop --baseline")
        try:
            words = dialog.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AssetNotFoundError(dialog, "--dialog", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(dialog, "--dialog", f"cannot read the dialog text: {exc}") from None
    y, sr = lipsync.load_audio(audio)
    if words is not None:
        import warnings

        from avatarrender.align import LipsyncWarning, text_mouth_track

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LipsyncWarning)
            track = text_mouth_track(y, sr, fps=rate, texts=words, language=language, source=str(dialog))
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    else:
        method = lipsync.baseline_mouth_track if baseline else lipsync.mouth_track
        track = method(y, sr, fps=rate)
    meta = {"soundFile": str(audio.resolve()), "fps": str(rate),
            "method": "rms-zcr" if baseline else "avatarrender"}
    if dialog is not None:
        meta["dialogFile"] = str(dialog.resolve())
    buf = io.StringIO()
    lipsync.write_track(track, buf, fps=rate, fmt=fmt, metadata=meta)
    if output:
        atomic_write(output, buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())
    if plot:
        feats = lipsync.frame_features(y, sr, fps=rate, n_frames=len(track))
        plot_track(y, sr, track, fps=rate, features=feats, path=plot)


def register(app: typer.Typer) -> None:
    """Add the ``lipsync`` command to ``app``."""
    app.command("lipsync")(lipsync_cmd)
