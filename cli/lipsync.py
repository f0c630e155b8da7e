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

_COLOURS = {
    "X": (120, 120, 130),
    "A": (200, 60, 60),
    "B": (230, 150, 60),
    "C": (230, 210, 80),
    "D": (90, 190, 90),
    "E": (70, 160, 210),
    "F": (110, 90, 200),
    "G": (200, 90, 180),
    "H": (60, 190, 180),
}
# Rhubarb Lip Sync's shapes, for the plot's key
_MEANING = {
    "X": "rest",
    "A": "closed (P B M)",
    "B": "slightly open (K S T)",
    "C": "open (EH AE)",
    "D": "wide (AA)",
    "E": "rounded (AO ER)",
    "F": "puckered (UW W)",
    "G": "teeth on lip (F V)",
    "H": "tongue (L)",
}
PLOT_SIZE_PX = (1600, 500)
_MAX_FPS = 240


def _check_writable(field: str, path: Path) -> None:
    """Refuse, before any work, an output path that cannot be written: a folder, a missing or
    read-only folder to write in."""
    import os

    if path.is_dir():
        raise SpecError(None, field, f"{path} is a folder: give a file's path")
    if path.exists() and not path.is_file():
        return  # a device or a pipe (/dev/null, /dev/stdout): written through
    parent = path.resolve().parent
    if not parent.is_dir():
        raise SpecError(None, field, f"{parent}: no such folder")
    if not os.access(parent, os.W_OK):
        raise SpecError(None, field, f"{parent}: cannot write in this folder")


def _mel_db(y, sample_rate_hz: int, n_mels: int):
    """Mel spectrogram in dB for the plot (librosa: its lazy imports and numba set-up on the first
    call, ~2.5 s of CPU, are paid only by ``--plot``, never by a render).
    Returns (S_db [shape=(n_mels, t)], band edges in Hz [shape=(n_mels + 2,)])."""
    import librosa
    import numpy as np

    y = np.asarray(y, dtype=np.float32).reshape(-1)
    hop = max(1, sample_rate_hz // 100)  # 10 ms columns
    S = librosa.feature.melspectrogram(
        y=y, sr=sample_rate_hz, n_fft=1024, hop_length=hop, n_mels=n_mels, fmax=sample_rate_hz / 2
    )
    edges_hz = librosa.mel_frequencies(n_mels + 2, fmax=sample_rate_hz / 2)
    return librosa.power_to_db(S, ref=np.max, top_db=80.0), edges_hz


def plot_track(
    y, sample_rate_hz: int, track, *, fps: Fraction, features: dict, image_format: str = "PNG"
) -> bytes:
    """Waveform, mel spectrogram, level, brightness and the mouth track over time, as an image
    (``image_format``, PIL's name) of :data:`PLOT_SIZE_PX` with a scale on every lane, a time
    axis in seconds and a key to the shapes: its bytes (the command writes them with its track)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from avatarrender.lipsync import SHAPES, _runs

    n = len(track)
    duration_s = n / float(fps) if n else 1.0
    W, H = PLOT_SIZE_PX
    x0, x1 = 150, W - 20  # plot area, px
    width = x1 - x0
    lanes = [
        ("waveform", 90),
        ("mel spectrogram", 120),
        ("level (dB)", 70),
        ("centroid (Hz)", 70),
        ("mouth", 50),
    ]
    img = Image.new("RGB", (W, H), (250, 250, 252))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=11)
    ink, grid = (40, 40, 50), (225, 225, 232)

    def xs(frame: float) -> int:
        return x0 + int(frame / max(n, 1) * width)

    def yticks(top: int, h: int, lo: float, hi: float, fmt: str) -> None:
        for v, yy in ((hi, top + 2), (lo, top + h - 12)):
            label = fmt.format(v)
            d.text((x0 - 6 - d.textlength(label, font=small), yy), label, fill=(90, 90, 100), font=small)

    top = 10
    tick_s = next(t for t in (1, 2, 5, 10, 30, 60, 300, 600) if duration_s / t <= 16)
    plot_top = top
    for name, h in lanes:
        d.rectangle((x0, top, x1, top + h), outline=(200, 200, 210))
        d.text((6, top + h // 2 - 7), name, fill=ink, font=font)
        if name == "waveform":
            mono = np.asarray(y, dtype=np.float32).reshape(-1)
            cols = np.array_split(mono, width) if len(mono) >= width else [mono]
            for i, c in enumerate(cols):
                if len(c):
                    lo, hi = float(c.min()), float(c.max())
                    d.line(
                        (x0 + i, top + h / 2 - hi * h / 2, x0 + i, top + h / 2 - lo * h / 2),
                        fill=(60, 90, 160),
                    )
            yticks(top, h, -1.0, 1.0, "{:+.0f}")
        elif name == "mel spectrogram":
            S_db, edges_hz = _mel_db(y, sample_rate_hz, n_mels=h)
            t_cols = np.linspace(0, S_db.shape[1] - 1, width).round().astype(int) if S_db.shape[1] else []
            if len(t_cols):
                v = (S_db[::-1, t_cols] + 80.0) / 80.0  # low bands at the bottom, 0..1
                rgb = np.stack([40 + 215 * v, 30 + 120 * v**2, 90 + 60 * (1 - v)], -1)
                img.paste(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)), (x0, top))
            yticks(top, h, float(edges_hz[0]), float(edges_hz[-1]), "{:.0f} Hz")
        elif name in ("level (dB)", "centroid (Hz)"):
            v = features["rms_db"] if name.startswith("level") else features["centroid_hz"]
            lo, hi = float(np.min(v)), float(np.max(v)) + 1e-9
            pts = [(xs(i), top + h - (float(v[i]) - lo) / (hi - lo) * (h - 4) - 2) for i in range(len(v))]
            if len(pts) > 1:
                d.line(pts, fill=(200, 80, 60), width=1)
            yticks(top, h, lo, hi, "{:.0f}")
        else:
            for s, e, v in _runs(np.asarray(track)):
                shape = SHAPES[v]
                d.rectangle((xs(s), top + 2, max(xs(e) - 1, xs(s)), top + h - 2), fill=_COLOURS[shape])
                if xs(e) - xs(s) > 10:
                    d.text((xs(s) + 2, top + h // 2 - 7), shape, fill=(20, 20, 20), font=font)
        top += h + 5
    for k in range(int(duration_s // tick_s) + 1):  # time axis: ticks, gridlines, labels
        x = xs(k * tick_s * float(fps))
        d.line((x, plot_top, x, top - 5), fill=grid)
        d.line((x, top - 5, x, top), fill=ink)
        label = f"{k * tick_s} s"
        d.text((x - d.textlength(label, font=small) / 2, top + 2), label, fill=(90, 90, 100), font=small)
    top += 24
    x = x0  # the key to the mouth shapes
    d.text((6, top), "mouth shapes", fill=ink, font=font)
    for shape in SHAPES:
        label = f"{shape} {_MEANING.get(shape, '')}"
        w = int(d.textlength(label, font=small)) + 26
        if x + w > x1:
            x, top = x0, top + 18
        d.rectangle((x, top + 1, x + 14, top + 13), fill=_COLOURS[shape], outline=(90, 90, 100))
        d.text((x + 18, top + 1), label, fill=ink, font=small)
        x += w
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format=image_format)
    return buf.getvalue()


def lipsync_cmd(
    audio: Path = typer.Argument(
        ..., metavar="AUDIO", help="Speech: wav, flac, ogg, mp3, ... (any rate, mono or stereo)."
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here (default: stdout)."),
    fps: str = typer.Option("30", "--fps", help="Frames per second of the track (30, 25, 30000/1001)."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="json (Rhubarb's mouthCues) or tsv (default: by -o's extension, else json)."
    ),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="Also draw waveform, features and track (PNG, or JPEG/... by its extension)."
    ),
    baseline: bool = typer.Option(False, "--baseline", help="Use the old RMS+ZCR method (for comparison)."),
    dialog: Optional[Path] = typer.Option(
        None, "--dialog", "-d", help="A text file of the words spoken: aligned to the audio."
    ),
    language: str = typer.Option("en-us", "--language", help="espeak-ng language of the --dialog words."),
) -> None:
    """Write the mouth track of AUDIO in Rhubarb Lip Sync's JSON or TSV format.

    With --dialog, the words are turned into phonemes and aligned to the speech; where they do
    not match it (or cannot be used at all: a warning says why) the track comes from the audio."""

    from avatarrender import interrupt, lipsync
    from avatarrender.images import output_format
    from avatarrender.rendition import atomic_write
    from avatarrender.timebase import AUDIO_RATE_HZ, frames_in, parse_fps

    interrupt.install(workers=False)  # SIGINT, SIGTERM, SIGHUP: one line, 130/143/129
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    if fmt is None:
        fmt = suffix if suffix in ("json", "tsv") else "json"
    if fmt not in ("json", "tsv"):
        raise SpecError(None, "--format", f"{fmt!r}: use json or tsv")
    if suffix in ("json", "tsv") and suffix != fmt:
        raise SpecError(None, "--format", f"{fmt} into {output}: give a .{fmt} file, or --format {suffix}")
    try:
        rate = parse_fps(fps)
    except (ValueError, ZeroDivisionError):
        raise SpecError(None, "--fps", f"{fps!r} is not a frame rate") from None
    if not 1 <= rate <= _MAX_FPS:
        raise SpecError(None, "--fps", f"{fps}: give a frame rate from 1 to {_MAX_FPS}")
    if audio.is_dir():
        raise SpecError(audio, None, "a folder, not a sound file")
    if not audio.exists():
        raise AssetNotFoundError(audio, None, "file not found")
    if not audio.is_file():  # a pipe is read twice (the decoder, then ffmpeg): cut short, or hung
        raise SpecError(
            audio, None, "not a regular file (a pipe or a device): save the sound to a file first"
        )
    # where the results go is checked before the work, not after it
    for field, path in (("--output", output), ("--plot", plot)):
        if path is not None:
            _check_writable(field, path)
    if output is None and sys.stdout is None:
        raise SpecError(None, "--output", "standard output is closed: give -o FILE")
    plot_format = output_format(plot, "--plot") if plot else None
    words = None
    if dialog is None and language != "en-us":
        _warn(f"--language {language} is for the --dialog words: without them it is not used")
    if dialog is not None:
        if baseline:
            raise SpecError(None, "--dialog", "the RMS+ZCR baseline cannot use the words: drop --baseline")
        from avatarrender.specload import _caption_text

        try:
            words = _caption_text(dialog)
        except FileNotFoundError:
            raise AssetNotFoundError(dialog, "--dialog", "file not found") from None
        except IsADirectoryError:
            raise SpecError(dialog, "--dialog", "a folder, not a text file") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SpecError(dialog, "--dialog", f"cannot read the dialog text: {exc}") from None
    if words is not None:
        from avatarrender.phonemes import has_language

        if has_language(language) is False:  # a typo: said before the work, as other options are
            raise SpecError(
                None, "--language", f"espeak-ng has no language {language!r} (espeak-ng --voices lists them)"
            )
    from avatarrender.media import audio_duration_s, channels_cancel, cut_short

    # decoded at the render's rate, so that the command and a render decide alike (the analysis
    # resamples either to its own rate; a text at the edge of fitting went one way at 16 kHz and
    # the other at 48 kHz)
    y, sr = lipsync.load_audio(audio, sample_rate_hz=AUDIO_RATE_HZ)
    if channels_cancel(audio, y):  # as the spec check says it for speech.file
        _warn(
            f"{audio}: its channels cancel out when mixed to mono (one inverted?): "
            "the mouth stays shut; invert one channel or give one of them"
        )
    try:
        header_s = audio_duration_s(audio)
    except Exception:  # noqa: BLE001 - the samples decoded: their length is what counts
        header_s = 0.0
    if short := cut_short(header_s, len(y) / sr):  # as the spec check says it for speech.file
        _warn(f"{audio}: {short}")
    # as many frames as a render of this speech has
    n_frames = max(1, frames_in(Fraction(len(y), sr), rate))
    if words is not None:
        import warnings

        from avatarrender.align import LipsyncWarning, text_mouth_track

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", LipsyncWarning)
            track = text_mouth_track(
                y, sr, fps=rate, n_frames=n_frames, texts=words, language=language, source=str(dialog)
            )
        for w in caught:
            _warn(str(w.message))
    else:
        method = lipsync.baseline_mouth_track if baseline else lipsync.mouth_track
        track = method(y, sr, fps=rate, n_frames=n_frames)
    meta = {
        "soundFile": str(audio.resolve()),
        "fps": str(rate),
        "method": "rms-zcr" if baseline else "avatarrender",
    }
    if dialog is not None:
        meta["dialogFile"] = str(dialog.resolve())
    buf = io.StringIO()
    lipsync.write_track(track, buf, fps=rate, fmt=fmt, metadata=meta)
    image = None
    if plot:  # made before either file is written: a stop while it is drawn writes neither
        feats = lipsync.frame_features(y, sr, fps=rate, n_frames=len(track))
        image = plot_track(y, sr, track, fps=rate, features=feats, image_format=plot_format or "PNG")
    # a stop signal whose exception a library's C code swallowed (llvmlite's callbacks while
    # librosa's numba compiles: "Exception ignored", the work went on) still stops the command
    # before it writes: exit 143 came with the whole file written
    if not output:  # (a pipe whose reader may stall it: not where a stop is held back)
        interrupt.check()
        sys.stdout.write(buf.getvalue())
    with interrupt.committing():
        if output:
            atomic_write(output, buf.getvalue())
        if image is not None:
            atomic_write(plot, image)
    if output:
        cues = sum(1 for i in range(len(track)) if i == 0 or track[i] != track[i - 1])
        print(f"{output}: {cues} mouth cues, {len(track) / float(rate):.2f} s at {rate} fps")


def _warn(text: str) -> None:
    print(f"avatarrender: warning: {text}", file=sys.stderr)  # as every command's warnings


def register(app: typer.Typer) -> None:
    """Add the ``lipsync`` command to ``app``."""
    app.command("lipsync")(lipsync_cmd)
