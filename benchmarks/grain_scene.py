"""A second benchmark scene, built unlike the demo: film grain, full-image character states.

    .venv/bin/python -m benchmarks.grain_scene [--out DIR] [--seconds 20] [--force]

Writes ``DIR/assets/`` and ``DIR/grain-tv.yaml`` / ``DIR/grain-speech.yaml`` (default DIR:
``benchmarks/grain``, git-ignored). Everything is drawn or synthesized here (numpy + Pillow, the
bundled ffmpeg, espeak-ng):

- a 1920x1080 background with baked lighting (a window's light and a lamp's glow multiplied in,
  darker corners) and fine 2x2-pixel film grain over it: every frame is costlier to encode, for
  every renderer alike;
- the character as ``states:``, full pre-drawn 600x800 RGBA images, one per mouth x eyes state
  (27), so every state change replaces a 600x800 region (not small sprites over a base);
- a 640x360 30 fps H.264 clip, scaled up onto a 720x404 screen, looping, no bezel;
- bold 48 px captions in a 60 % black box, a new cue every 3 s;
- ``--seconds`` of espeak-ng speech, a sentence in each cue's 3 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["make_grain_scene", "grain_yaml", "SCREEN_RECT", "CHARACTER_POSITION", "STATE_SIZE"]

FRAME_SIZE = (1920, 1080)
SCREEN_RECT = (120, 200, 720, 404)  # x, y, w, h: the 640x360 clip is scaled up onto it
CHARACTER_POSITION = (1180, 240)
STATE_SIZE = (600, 800)
CLIP_SIZE = (640, 360)
CLIP_FPS = 30
CLIP_DURATION_S = 8.0  # shorter than the segment: it loops
CUE_EVERY_S = 3.0
SPEECH = "speech-in-3s-slots.wav"  # (a new name: an earlier speech.wav, not in slots, is not taken)
MOUTHS = "XABCDEFGH"
EYES = ("open", "half", "closed")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
SENTENCES = (
    "Good evening, and welcome to the late show on grain television.",
    "Everything you see tonight was drawn by a small script.",
    "The picture is noisy on purpose, like old film stock.",
    "That makes every frame harder to compress, for everyone alike.",
    "On the screen behind me, a test pattern keeps looping.",
    "My face is one of twenty seven pictures, swapped whole.",
    "Stay with us, more noise is coming after the break.",
    "Thank you for watching, and good night.",
)


def _grain(rng: np.random.Generator, size: tuple[int, int], amplitude: float) -> np.ndarray:
    """Noise in 2x2-pixel cells, shape (h, w, 1), float."""
    w, h = size
    cells = rng.normal(0.0, amplitude, (h // 2, w // 2, 1)).astype(np.float32)
    return np.repeat(np.repeat(cells, 2, 0), 2, 1)


def make_background(path: Path) -> None:
    w, h = FRAME_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # a wall (top) and a floor (bottom), cool blue-grey
    wall = np.array([72, 80, 104], np.float32)
    floor = np.array([58, 46, 40], np.float32)
    t = np.clip((yy - 760) / 40, 0, 1)[..., None]
    img = wall * (1 - t) + floor * t
    # wall panels: faint vertical stripes
    img *= (1 + 0.05 * np.sign(np.sin(xx / 60.0)))[..., None]
    # baked lighting: a warm lamp glow, a window's cool light shaft, darker corners
    lamp = np.exp(-(((xx - 1650) / 420) ** 2 + ((yy - 300) / 360) ** 2))[..., None]
    shaft = np.clip(1 - np.abs((xx - 0.6 * yy) - 700) / 220, 0, 1)[..., None] * (yy < 900)[..., None]
    vignette = (1 - 0.55 * (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / 2)[..., None]
    img = img * (0.7 + 1.1 * lamp * np.array([1.25, 1.0, 0.7])) + 60 * shaft * np.array([0.8, 0.9, 1.1])
    img *= vignette
    img += _grain(np.random.default_rng(11), FRAME_SIZE, 9.0)
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB").save(path)


def _state_image(mouth: str, eyes: str) -> Image.Image:
    """One full 600x800 state: body, head, eyes and mouth drawn together (a shaded painting)."""
    w, h = STATE_SIZE
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # body and head, with soft shading
    d.rounded_rectangle((90, 470, 510, 800), radius=120, fill=(170, 60, 70, 255))
    d.rectangle((250, 400, 350, 500), fill=(226, 178, 150, 255))
    d.ellipse((110, 40, 490, 470), fill=(236, 190, 160, 255))
    d.pieslice((90, 10, 510, 300), 180, 360, fill=(70, 44, 30, 255))  # hair
    shade = Image.new("L", (w, h), 0)
    ImageDraw.Draw(shade).ellipse((300, 60, 560, 520), fill=70)
    shade = shade.filter(ImageFilter.GaussianBlur(40))
    dark = Image.new("RGBA", (w, h), (40, 20, 40, 255))
    alpha = img.getchannel("A")
    img = Image.composite(
        dark, img, Image.fromarray((np.asarray(shade, np.uint16) * (np.asarray(alpha) > 0)).astype(np.uint8))
    )
    img.putalpha(alpha)
    d = ImageDraw.Draw(img)
    # eyes
    lid = {"open": 0.0, "half": 0.5, "closed": 1.0}[eyes]
    for cx in (225, 375):
        top, bottom = 215, 275
        d.ellipse(
            (cx - 42, top, cx + 42, bottom), fill=(250, 250, 245, 255), outline=(40, 30, 30, 255), width=4
        )
        if lid < 1:
            d.ellipse((cx - 18, 227, cx + 18, 263), fill=(60, 110, 70, 255))
            d.ellipse((cx - 8, 237, cx + 8, 253), fill=(15, 15, 15, 255))
        if lid > 0:
            d.rectangle((cx - 44, top - 2, cx + 44, top + (bottom - top) * lid), fill=(220, 170, 140, 255))
            d.line(
                (cx - 44, top + (bottom - top) * lid, cx + 44, top + (bottom - top) * lid),
                fill=(40, 30, 30, 255),
                width=4,
            )
    # mouth: one shape per letter (open height, width, teeth)
    open_h, width, teeth = {
        "X": (6, 90, 0),
        "A": (10, 70, 0),
        "B": (26, 110, 1),
        "C": (44, 120, 1),
        "D": (64, 130, 1),
        "E": (40, 80, 0),
        "F": (24, 60, 1),
        "G": (20, 100, 2),
        "H": (34, 100, 0),
    }[mouth]
    cx, cy = 300, 370
    d.ellipse(
        (cx - width // 2, cy - open_h // 2, cx + width // 2, cy + open_h // 2),
        fill=(110, 30, 40, 255),
        outline=(60, 20, 25, 255),
        width=3,
    )
    if teeth:
        d.rectangle(
            (cx - width // 3, cy - open_h // 2 + 2, cx + width // 3, cy - open_h // 2 + 2 + open_h // 4),
            fill=(245, 245, 240, 255),
        )
    if teeth == 2:
        d.line((cx - 20, cy + open_h // 2 - 2, cx + 20, cy - 2), fill=(245, 245, 240, 255), width=6)
    return img


def make_states(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for m in MOUTHS:
        for e in EYES:
            _state_image(m, e).save(folder / f"{m}_{e}.png")


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def make_clip(path: Path) -> None:
    """640x360, 30 fps, H.264: a moving test pattern with a clock."""
    w, h = CLIP_SIZE
    _run(
        [
            _ffmpeg(),
            "-nostdin",
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={w}x{h}:r={CLIP_FPS}",
            "-frames:v",
            str(int(CLIP_DURATION_S * CLIP_FPS)),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "20",
            "-pix_fmt",
            "yuv420p",
            "-g",
            str(CLIP_FPS),
            "-movflags",
            "+faststart",
            str(path),
        ]
    )


def make_speech(path: Path, seconds: float) -> None:
    """``seconds`` of espeak-ng speech, 22.05 kHz mono: the sentences in turn (repeated as
    needed), each in a slot of :data:`CUE_EVERY_S` (spoken fast enough to fit, then silence), so
    that each caption cue shows the sentence being said (at 160 words a minute the sentences took
    2.7-4.2 s, and the cues every 3 s drifted seconds away from their words: the lip sync refused them)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (scripts/setup.sh installs it)")
    pieces, sr = [], 22050
    slot = int(CUE_EVERY_S * sr)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(int(-(-seconds // CUE_EVERY_S))):
            wav = Path(tmp) / f"s{i}.wav"
            for rate in range(200, 400, 20):  # the slowest rate at which it fits, 0.2 s to spare
                _run(
                    [
                        "espeak-ng",
                        "-v",
                        "en-us",
                        "-s",
                        str(rate),
                        "-w",
                        str(wav),
                        SENTENCES[i % len(SENTENCES)],
                    ]
                )
                y, sr = sf.read(wav, dtype="float32")
                if len(y) <= slot - int(0.2 * sr):
                    break
            pieces.append(np.concatenate([y, np.zeros(slot - len(y), np.float32)])[:slot])
    sf.write(path, np.concatenate(pieces)[: int(seconds * sr)], sr, subtype="PCM_16")


def make_grain_scene(out: Path, *, force: bool = False) -> Path:
    """Make the assets under ``out/assets`` (kept if there, unless ``force``); return the folder."""
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    products = [
        (lambda: make_background(assets / "background.png"), [assets / "background.png"]),
        (
            lambda: make_states(assets / "states"),
            [assets / "states" / f"{m}_{e}.png" for m in MOUTHS for e in EYES],
        ),
        (lambda: make_clip(assets / "clip.mp4"), [assets / "clip.mp4"]),
        (lambda: make_speech(assets / SPEECH, 120.0), [assets / SPEECH]),
    ]
    for make, outputs in products:
        if force or not all(p.is_file() for p in outputs):
            make()
    return assets


def grain_yaml(
    seconds: float,
    *,
    tv: bool,
    folder: Path,
    assets: Path,
    preset: str = "1080p30",
    x264_preset: str = "veryfast",
) -> Path:
    """The grain segment, ``seconds`` long, TV playing throughout (``tv``) or off, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "assets"
    if not link.exists():
        link.symlink_to(assets.resolve())
    n_cues = int(-(-seconds // CUE_EVERY_S))
    cues = [
        {
            "text": SENTENCES[i % len(SENTENCES)],
            "start_s": i * CUE_EVERY_S,
            "end_s": min(seconds, (i + 1) * CUE_EVERY_S),
        }
        for i in range(n_cues)
    ]
    doc = {
        "output": {"preset": preset, "x264_preset": x264_preset},
        "duration_s": seconds,
        "scene": {"background": "assets/background.png"},
        "character": {"position": list(CHARACTER_POSITION), "states": "assets/states/{mouth}_{eyes}.png"},
        "tv": {
            "screen": list(SCREEN_RECT),
            "off": None,
            "clips": [{"file": "assets/clip.mp4", "start_s": 0.0, "end_s": seconds + 1, "at_end": "loop"}]
            if tv
            else [],
        },
        "speech": {"file": f"assets/{SPEECH}"},
        "captions": {
            "cues": cues,
            "style": {
                "font": FONT,
                "size_px": 48,
                "color": "#ffffff",
                "box_color": "#00000099",
                "padding_px": 16,
                "position": [960, 1050],
                "max_width_px": 1500,
            },
        },
        "blink": {"seed": 3, "mean_interval_s": 4.0},
    }
    path = folder / f"grain-{'tv' if tv else 'speech'}-{seconds:g}s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "grain")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--force", action="store_true", help="remake assets that already exist")
    args = ap.parse_args(argv)
    assets = make_grain_scene(args.out, force=args.force)
    for tv in (True, False):
        print(grain_yaml(args.seconds, tv=tv, folder=args.out, assets=assets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
