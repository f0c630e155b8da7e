"""Shared fixtures: a tiny but complete segment (64x36 .. 320x180) made from scratch, real media."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from PIL import Image, ImageDraw

from avatarrender.media import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent


def make_speech(
    path: Path,
    *,
    duration_s: float = 4.0,
    sample_rate_hz: int = 22050,
    bursts: list[tuple[float, float]] | None = None,
    seed: int = 1,
) -> None:
    """Voiced bursts (a buzzy harmonic tone with a varying formant) with silence between."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    y = np.zeros(n, dtype=np.float32)
    for start, end in bursts or [(0.5, 1.6), (2.2, 3.4)]:
        m = (t >= start) & (t < end)
        tt = t[m] - start
        f0 = 120 + 20 * np.sin(2 * np.pi * 3 * tt)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate_hz
        sig = sum(np.sin(k * phase) / k for k in range(1, 12))
        env = np.abs(np.sin(np.pi * tt * 4)) ** 0.5
        y[m] = (0.3 * sig * env + 0.01 * rng.standard_normal(m.sum())).astype(np.float32)
    soundfile.write(path, y, sample_rate_hz)


def clip_luma(frame_index: int) -> int:
    """The flat luma (Y) of frame ``frame_index`` of a :func:`make_clip` clip: tells frames apart."""
    return 20 + 3 * frame_index


def make_clip(path: Path, *, duration_s: float = 2.0, size: str = "160x90", fps: int = 30) -> None:
    """A clip whose every frame is flat grey at :func:`clip_luma` of its index (up to 60 frames)."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"color=c=gray:s={size}:r={fps}:d={duration_s},format=yuv420p,geq=lum='20+3*N':cb=128:cr=128",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )


def _rgba(size, draw_fn) -> Image.Image:
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(img))
    return img


def make_tiny_segment(
    folder: Path,
    *,
    width: int = 320,
    height: int = 180,
    duration_s: float | None = None,
    tv: bool = True,
    captions: bool = True,
    speech_s: float = 4.0,
    extra: dict | None = None,
) -> Path:
    """Write assets and a segment.yaml into ``folder``; return the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    a = folder / "assets"
    a.mkdir(exist_ok=True)
    xs = np.linspace(0, 1, width)[None, :, None]
    ys = np.linspace(0, 1, height)[:, None, None]
    bg = np.concatenate([60 + 80 * xs + 0 * ys, 90 + 60 * ys + 0 * xs, 140 - 40 * xs + 0 * ys], 2)
    Image.fromarray(bg.astype(np.uint8), "RGB").save(a / "room.png")
    _rgba(
        (width // 2, height // 2),
        lambda d: d.ellipse((0, 0, width // 2 - 1, height // 2 - 1), fill=(255, 200, 120, 90)),
    ).save(a / "glow.png")
    cw, ch = width // 4, int(height * 0.6)
    _rgba(
        (cw, ch),
        lambda d: (
            d.ellipse((4, 2, cw - 4, ch * 3 // 4), fill=(240, 200, 170, 255)),
            d.rectangle((cw // 4, ch * 3 // 4, cw * 3 // 4, ch - 1), fill=(60, 90, 200, 255)),
        ),
    ).save(a / "base.png")
    mw, mh = cw // 2, ch // 6
    shapes = {
        "X": (0, mh // 2 - 1, mw - 1, mh // 2 + 1),
        "A": (0, mh // 2, mw - 1, mh // 2 + 1),
        "C": (mw // 6, 1, mw * 5 // 6, mh - 2),
        "D": (0, 0, mw - 1, mh - 1),
    }
    for name, box in shapes.items():
        _rgba((mw, mh), lambda d, box=box: d.ellipse(box, fill=(120, 20, 30, 255))).save(
            a / f"mouth_{name}.png"
        )
    ew, eh = cw * 3 // 4, ch // 8
    _rgba(
        (ew, eh),
        lambda d: [
            d.ellipse((x, 0, x + ew // 4, eh - 1), fill=(20, 20, 20, 255)) for x in (2, ew - ew // 4 - 2)
        ],
    ).save(a / "eyes_open.png")
    _rgba(
        (ew, eh),
        lambda d: [
            d.rectangle((x, eh // 2, x + ew // 4, eh // 2 + 1), fill=(20, 20, 20, 255))
            for x in (2, ew - ew // 4 - 2)
        ],
    ).save(a / "eyes_closed.png")
    make_speech(a / "speech.wav", duration_s=speech_s)
    doc: dict = {
        "output": {"preset": "720p30", "width": width, "height": height, "x264_preset": "veryfast"},
        "scene": {
            "background": "assets/room.png",
            "layers": [
                {"image": "assets/glow.png", "blend": "add", "opacity": 0.7, "position": [width // 4, 0]}
            ],
        },
        "character": {
            "position": [width * 5 // 8, height // 6],
            "base": "assets/base.png",
            "mouths": {k: f"assets/mouth_{k}.png" for k in shapes},
            "mouth_offset": [cw // 4, ch * 9 // 20],
            "eyes": {"open": "assets/eyes_open.png", "closed": "assets/eyes_closed.png"},
            "eyes_offset": [cw // 8, ch // 4],
        },
        "speech": {"file": "assets/speech.wav"},
        "blink": {"seed": 3, "mean_interval_s": 2.0},
    }
    if duration_s:
        doc["duration_s"] = duration_s
    if tv:
        sw, sh = (width // 5) * 2 // 2 * 2, (height // 5) // 2 * 2 * 2
        sx, sy = width // 16 // 2 * 2, height // 6 // 2 * 2
        make_clip(a / "clip.mp4", duration_s=2.0)
        bezel = Image.new("RGBA", (sw + 8, sh + 8), (50, 40, 35, 255))
        d = ImageDraw.Draw(bezel)
        d.rectangle((4, 4, sw + 3, sh + 3), fill=(0, 0, 0, 0))
        d.polygon([(4, 4), (sw // 3, 4), (4, sh // 3)], fill=(255, 255, 255, 60))  # glare
        bezel.save(a / "bezel.png")
        doc["tv"] = {
            "screen": [sx, sy, sw, sh],
            "overlay": "assets/bezel.png",
            "overlay_position": [sx - 4, sy - 4],
            "clips": [{"file": "assets/clip.mp4", "start_s": 1.0, "end_s": 3.5, "at_end": "loop"}],
        }
    if captions:
        doc["captions"] = {
            "cues": [
                {"text": "Hello there, friends", "start_s": 0.5, "end_s": 1.8},
                {"text": "Second line", "start_s": 2.0, "end_s": 3.0},
            ],
            "style": {"size_px": max(8, height // 12)},
        }
    for k, v in (extra or {}).items():
        doc[k] = v
    path = folder / "segment.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def make_slow_segment(folder: Path, *, speech_s: float) -> Path:
    """A tiny segment at 720p with x264 medium: it takes seconds to render, so a test can stop
    it midway (a signal, a withdrawn submission)."""
    return make_tiny_segment(
        folder,
        speech_s=speech_s,
        width=1280,
        height=720,
        extra={"output": {"preset": "720p30", "width": 1280, "height": 720, "x264_preset": "medium"}},
    )


@pytest.fixture
def tiny_segment(tmp_path: Path) -> Path:
    return make_tiny_segment(tmp_path / "seg")


@pytest.fixture(scope="session")
def rendered_tiny(tmp_path_factory) -> tuple[Path, Path]:
    """One render of the tiny segment shared by the read-only tests: (yaml, out_dir)."""
    from avatarrender.render import render
    from avatarrender.spec import load_spec

    folder = tmp_path_factory.mktemp("rendered")
    yml = make_tiny_segment(folder / "seg")
    out = folder / "out"
    render(load_spec(yml), out, jobs=2, chunk_segments=1)
    return yml, out


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run the installed ``avatarrender`` entry point as a user would."""
    exe = Path(sys.executable).with_name("avatarrender")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, **kw)


# Tiers (markers registered in pyproject.toml); `make check` runs `-m "not slow"`. Measured on the
# shared 2-core machine (`pytest --durations=0`): a test over ~1 s there renders, encodes, runs a
# CLI process or waits on a timeout, and is slow; whole modules where most tests are.
_MODULE_MARKS = {
    "test_browser_vod": ("browser", "slow"),
    "test_playout_browser": ("browser", "slow"),
    "test_playout_nginx": ("nginx", "slow"),
    "test_push": ("nginx", "slow"),
    "test_chunks": ("slow",),  # long renders, killed workers, dask
    "test_service": ("slow",),  # the render service's processes
    "test_scaffold": ("slow",),  # renders and airs a new channel
    "test_demo_assets": ("slow",),  # espeak-ng and a 12 s clip
    "test_doctor": ("slow",),  # probes the machine for seconds
    "test_metrics": ("slow",),  # a playout and a service
    "test_playout_engine": ("slow",),  # ffmpeg-made renditions per test
    "test_render": ("slow",),  # full renders
    "test_live_subtitles": ("browser", "slow"),  # a live channel with subtitles in chromium
    "test_subtitles": ("slow",),  # renders, and hls.js in chromium
    "test_sound": ("slow",),  # renders measured with ffmpeg's ebur128
    "test_playout_faults": ("slow",),  # playouts, tmpfs, the command with restarts
    "test_playout_fuzz": ("slow",),  # 1360 corrupted segments
    "test_playout_server_limits": ("slow",),  # bursts, slow clients, timeouts
}
_SLOW_TESTS = {
    "test_chunk_waits_for_the_audio_it_needs",
    "test_same_bitstream_as_bare_ffmpeg",
    "test_tv_reader_decodes_what_the_ffmpeg_command_decodes",
    "test_tv_reader_turns_a_rotated_clip_upright_like_ffmpeg",
    "test_cli_writes_a_valid_guide",
    "test_constraints_refuse_stock_pillow",
    "test_doctor_command",
    "test_wheel_contents",
    "test_any_rate_stereo_clipped_and_tiny_audio",
    "test_cli_writes_rhubarb_json_and_a_plot",
    "test_corrupt_audio_names_the_file",
    "test_soak_24_hours_random_late_missing_corrupt",
    "test_blocked_too_long_is_503",
    "test_blocking_reload_holds_until_the_part",
    "test_examples_validate",
    "test_print_one_and_bad_kind",
    "test_cli_bad_input_exit_2_and_nothing_written",
    "test_cli_validate_ok_writes_nothing",
    # test_robust: processes stopped by signals, renders into read-only folders, worker errors
    "test_stop_signal_ends_every_process_and_leaves_a_resumable_render",
    "test_worker_errors_are_the_in_process_error_on_loky_and_dask",
    "test_clip_that_breaks_partway_fails_validate_and_render",
    "test_bad_mouth_track_names_the_field_before_any_output",
    "test_read_only_output_folder_is_one_line",
    "test_output_that_is_someone_elses_folder_is_refused",
    "test_output_that_is_a_file_is_refused_and_kept",
    "test_font_that_is_not_a_font_fails_validate",
    "test_long_caption_is_a_warning_and_renders",
    "test_cli_dialog_option",
    "test_mel_filters_are_librosas",
    "test_a_tiny_training_run_is_deterministic",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        marks = list(_MODULE_MARKS.get(item.module.__name__.rpartition(".")[2], ()))
        if getattr(item, "originalname", item.name) in _SLOW_TESTS:
            marks.append("slow")
        for name in dict.fromkeys(marks):
            item.add_marker(getattr(pytest.mark, name))
