"""read_audio decodes in this process (PyAV) where that gives the ffmpeg command's very samples,
and leaves everything else to the command: checked against the command, format by format."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatarrender import media
from avatarrender.media import ffmpeg_exe

from media_check import decode_audio  # the ffmpeg command, as the tests decode any audio

# (file name, ffmpeg output options): what users hand us as speech or clip sound
FORMATS = [
    ("s16_22k_mono.wav", ["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16le"]),
    ("s24_48k_stereo.wav", ["-ar", "48000", "-ac", "2", "-c:a", "pcm_s24le"]),
    ("f32_44k_stereo.wav", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_f32le"]),
    ("surround.wav", ["-ar", "48000", "-ac", "6", "-c:a", "pcm_s16le"]),
    ("speech.flac", ["-ar", "44100", "-ac", "2", "-c:a", "flac"]),
    ("speech.mp3", ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k"]),
    ("speech.opus.ogg", ["-ar", "48000", "-ac", "2", "-c:a", "libopus"]),
    ("speech.aiff", ["-ar", "32000", "-ac", "1", "-c:a", "pcm_s16be"]),
]


def _make(path: Path, options: list[str]) -> None:
    # two tones a fifth apart, one per channel, with a click: resampling and downmix both show
    source = "sine=f=440:d=3.3[a];sine=f=660:d=3.3[b];[a][b]amerge,volume=0.7"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-filter_complex", source, *options, str(path)],
        check=True,
    )


@pytest.mark.parametrize("name, options", FORMATS, ids=[n for n, _ in FORMATS])
def test_in_process_decode_gives_the_commands_samples(tmp_path: Path, name: str, options: list[str]) -> None:
    path = tmp_path / name
    _make(path, options)
    for rate in (48_000, 16_000):
        mine = media._decode_in_process(path, rate)
        assert mine is not None, "decoded by the command, not in this process"
        ref = decode_audio(path, rate)
        assert mine.dtype == np.float32 and mine.shape == ref.shape, (mine.shape, ref.shape)
        assert np.array_equal(mine, ref), float(np.abs(mine - ref).max())


def test_mp4_and_broken_files_go_to_thedecode_audio(tmp_path: Path) -> None:
    m4a = tmp_path / "speech.m4a"
    _make(m4a, ["-ar", "48000", "-c:a", "aac"])
    assert media._decode_in_process(m4a, 48_000) is None  # the command trims AAC's end padding
    assert np.array_equal(media._decode_audio(m4a, 48_000), decode_audio(m4a, 48_000))
    mp3 = tmp_path / "speech.mp3"
    _make(mp3, ["-c:a", "libmp3lame"])
    data = bytearray(mp3.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = b"\x00" * 4000  # a damaged stretch mid-file
    mp3.write_bytes(bytes(data))
    got = media._decode_audio(mp3, 48_000)
    assert np.array_equal(got, decode_audio(mp3, 48_000))  # whichever decoded it: the command's samples
    garbage = tmp_path / "speech.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot a wave file at all" * 50)
    with pytest.raises(media.MediaError):
        media._decode_audio(garbage, 48_000)


def test_a_videos_sound_lasts_as_long_as_its_audio_stream(tmp_path: Path) -> None:
    # a phone's clip whose sound stops before its picture: the speech lasts as long as its sound,
    # not as the container (no "damaged or cut-off file" note for it)
    clip = tmp_path / "talk.mp4"
    subprocess.run(
        [
            ffmpeg_exe(), "-v", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", "sine=f=440:d=2.0",
            "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=4.0",
            "-c:a", "aac", "-c:v", "libx264", "-shortest", "-t", "4", str(clip),
        ],
        check=True,
    )  # fmt: skip
    assert media.audio_duration_s(clip) == pytest.approx(2.0, abs=0.05)
    assert media.audio_duration_s(clip) == pytest.approx(len(decode_audio(clip, 48_000)) / 48_000, abs=0.05)
