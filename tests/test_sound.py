"""Loudness on target and the TV's own sound, checked on the decoded output with ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from avatarrender.audio import PRIMING_SAMPLES
from avatarrender.errors import SpecError
from avatarrender.media import ffmpeg_exe
from avatarrender.render import render
from avatarrender.spec import load_spec

from conftest import make_speech, make_tiny_segment
from media_check import decode_audio

TARGET_LUFS, CEILING_DBTP = -16.0, -1.5


def ebur128(path: Path) -> dict[str, float]:
    """ffmpeg's own EBU R 128 reading of the decoded audio: I (LUFS), LRA (LU), Peak (dBTP)."""
    err = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostats",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-af",
            "ebur128=peak=true:framelog=quiet",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    summary = err[err.rfind("Summary:") :]
    return {k: float(v) for k, v in re.findall(r"^\s*(I|LRA|Peak):\s+(-?[\d.]+|-?inf)", summary, re.M)}


def _edit(yml: Path, **changes) -> None:
    doc = yaml.safe_load(yml.read_text())
    for key, value in changes.items():
        node = doc
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))


def _input_lufs(wav: Path) -> float:
    return ebur128(wav)["I"]


@pytest.mark.parametrize("kind", ["demo-like", "quiet", "hot-clipped"])
def test_loudness_on_target(tmp_path, kind):
    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36, speech_s=6.0)
    wav = yml.parent / "assets" / "speech.wav"
    if kind == "quiet":  # around -35 LUFS with a few plosive-like peaks at -8 dBFS: the
        # +19 dB gain would take them to +11 dBTP, so the limiter must catch them
        y, sr = soundfile.read(wav, dtype="float32")
        y = y * np.float32(10 ** ((-35 - _input_lufs(wav)) / 20))
        for t in (0.7, 2.5, 3.1):
            i = int(t * sr)
            y[i : i + 40] += np.float32(0.4) * np.hanning(40).astype(np.float32)
        soundfile.write(wav, y, sr, subtype="FLOAT")
    elif kind == "hot-clipped":  # driven far into clipping, written as 16-bit PCM
        y, sr = soundfile.read(wav, dtype="float32")
        soundfile.write(wav, np.clip(y * 8, -1, 1), sr, subtype="PCM_16")
    out = tmp_path / "out"
    man = render(load_spec(yml), out, jobs=2, chunk_segments=2)
    got = ebur128(out / "index.m3u8")
    assert abs(got["I"] - TARGET_LUFS) <= 0.5, got
    assert got["Peak"] < CEILING_DBTP, got
    loud = man["loudness"]
    assert loud["target_lufs"] == TARGET_LUFS and loud["target_true_peak_dbtp"] == CEILING_DBTP
    assert abs(loud["integrated_lufs"] - got["I"]) <= 0.5
    assert loud["true_peak_dbtp"] < CEILING_DBTP and loud["range_lu"] is not None
    if kind == "quiet":
        assert abs(loud["input_integrated_lufs"] + 35) <= 1.5  # the peaks add a little
        assert loud["limited_s"] > 0  # the peaks needed it
    if kind == "hot-clipped":
        assert loud["input_integrated_lufs"] > -10 and loud["gain_db"] < -5


def test_loudness_settings_from_segment_and_preset(tmp_path):
    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36, tv=False, captions=False)
    _edit(yml, audio={"loudness_lufs": -23.0, "true_peak_dbtp": -3.0})
    spec = load_spec(yml)
    from avatarrender.soundtrack import loudness_target

    t = loudness_target(spec)
    assert (t.integrated_lufs, t.true_peak_dbtp, t.enabled) == (-23.0, -3.0, True)
    _edit(yml, audio={"normalise": False}, output__loudness_lufs=-20.0)
    t = loudness_target(load_spec(yml))
    assert (t.integrated_lufs, t.true_peak_dbtp, t.enabled) == (-20.0, -1.5, False)
    man = render(load_spec(yml), tmp_path / "out", jobs=1)
    assert man["loudness"]["target_lufs"] is None
    assert man["loudness"]["integrated_lufs"] == man["loudness"]["input_integrated_lufs"]


def test_silence_gets_no_gain_and_a_warning(tmp_path, caplog):
    """A silent speech file gets no gain and a warning; a segment without speech or clip sound
    (a filler, a silent scaffold) is silent by design: no warning (it came on every filler)."""
    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36, tv=False, captions=False, duration_s=2.0)
    soundfile.write(yml.parent / "assets" / "speech.wav", np.zeros(2 * 48000, np.float32), 48000)
    with caplog.at_level("WARNING", logger="avatarrender.loudness"):
        man = render(load_spec(yml), tmp_path / "out", jobs=1)
    assert man["loudness"]["integrated_lufs"] is None and man["loudness"]["gain_db"] == 0.0
    assert any("silent" in r.getMessage() and "segment.yaml" in r.getMessage() for r in caplog.records)
    assert np.abs(decode_audio(tmp_path / "out" / "index.m3u8")).max() == 0.0
    caplog.clear()
    _edit(yml, speech=None)
    with caplog.at_level("WARNING", logger="avatarrender.loudness"):
        man = render(load_spec(yml), tmp_path / "out2", jobs=1)
    assert man["loudness"]["integrated_lufs"] is None
    assert not [r for r in caplog.records if "silent" in r.getMessage()]


def test_a_target_the_ceiling_keeps_out_of_reach_is_a_warning(caplog):
    """-9 LUFS under a -3 dBTP ceiling, for sound as peaky as speech: the limiter holds the
    level short of it, and that is said (it was silent), with what was reached."""
    from avatarrender.loudness import LoudnessTarget, normalise

    rng = np.random.default_rng(0)
    t = np.arange(48000 * 5) / 48000
    bursts = (np.sin(2 * np.pi * 3 * t) > 0.3).astype(np.float32)
    x = (rng.laplace(size=t.size) * 0.05 * bursts).astype(np.float32)
    with caplog.at_level("WARNING", logger="avatarrender.loudness"):
        _, report = normalise(x, LoudnessTarget(integrated_lufs=-9, true_peak_dbtp=-3), name="talk.yaml")
        _, fine = normalise(x, LoudnessTarget(integrated_lufs=-23, true_peak_dbtp=-1), name="quiet.yaml")
    assert report.after.integrated_lufs < -10 and abs(fine.after.integrated_lufs + 23) < 0.3
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("talk.yaml: ") and "not the -9.0 asked" in said[0], said


# ------------------------------------------------------------------------------- TV sound

TONE_HZ = 4999.7  # far above the test speech's harmonics; not whole cycles per loop: a cut
# without a fade would be a step


def make_clip_with_sound(path: Path, *, duration_s: float = 2.0) -> None:
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"color=c=gray:s=160x90:r=30:d={duration_s}",
            "-f",
            "lavfi",
            "-i",
            f"sine=f={TONE_HZ}:d={duration_s}:sample_rate=48000",
            "-shortest",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "192k",
            str(path),
        ],
        check=True,
    )


def _tv_segment(tmp_path: Path, **audio) -> Path:
    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36, speech_s=5.0, captions=False)
    a = yml.parent / "assets"
    make_speech(a / "speech.wav", duration_s=5.0, bursts=[(1.05, 1.95)])
    make_clip_with_sound(a / "clip.mp4")
    doc = yaml.safe_load(yml.read_text())
    doc["tv"]["clips"] = [
        {
            "file": "assets/clip.mp4",
            "start_s": 0.5,
            "end_s": 4.5,
            "at_end": "loop",
            "clip_start_s": 0.3,
            "audio": {"gain_db": -12, "duck_db": -10, **audio},
        }
    ]
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return yml


def _tone_db(y: np.ndarray, t0: float, t1: float, sr: int = 48000) -> float:
    seg = y[int(t0 * sr) : int(t1 * sr)].astype(np.float64)
    win = np.hanning(seg.size)
    spec = np.abs(np.fft.rfft(seg * win)) * 2 / win.sum()  # the tone's amplitude
    k = int(round(TONE_HZ * seg.size / sr))
    return 20 * np.log10(spec[k - 2 : k + 3].max() + 1e-12)


def test_tv_sound_ducked_under_speech_and_seamless(tmp_path):
    yml = _tv_segment(tmp_path, attack_s=0.03, release_s=0.1)
    spec = load_spec(yml)
    out1, out2 = tmp_path / "a", tmp_path / "b"
    render(spec, out1, jobs=2, chunk_segments=1)
    render(spec, out2, jobs=1, chunk_segments=3)
    y = decode_audio(out1 / "index.m3u8")
    # deterministic whatever the chunking and the worker count
    assert np.array_equal(y, decode_audio(out2 / "index.m3u8"))
    y = y[PRIMING_SAMPLES:]  # the first AAC frame (1024 samples) presents before time 0
    # the TV is silent while off screen, ducked ~10 dB while the character speaks
    off = _tone_db(y, 4.6, 4.95)
    speech = _tone_db(y, 1.3, 1.9)
    pause = _tone_db(y, 2.6, 3.6)
    depth = pause - speech
    assert 8.5 <= depth <= 11.5, (speech, pause)
    assert off < pause - 40, (off, pause)
    # no click at any chunk boundary (every 1 s), loop point (0.5 + 1.7 k s) or on/off edge:
    # above 8 kHz (where the tone and the speech's voicing have nothing) the signal there is
    # no louder than just before and after it
    from scipy.signal import butter, sosfiltfilt

    hp = np.abs(sosfiltfilt(butter(8, 8000, "highpass", fs=48000, output="sos"), y.astype(np.float64)))
    sr = 48000
    for t in [1.0, 2.0, 3.0, 4.0, 0.5, 2.2, 3.9, 4.5]:
        i = int(t * sr)
        at = hp[i - sr // 200 : i + sr // 200].max()
        around = max(hp[i - sr // 25 : i - sr // 100].max(), hp[i + sr // 100 : i + sr // 25].max())
        assert at <= 2 * around + 1e-4, (t, at, around)
    got = ebur128(out1 / "index.m3u8")
    assert abs(got["I"] - TARGET_LUFS) <= 0.5 and got["Peak"] < CEILING_DBTP


def test_tv_sound_without_an_audio_stream_is_refused(tmp_path):
    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36)
    doc = yaml.safe_load(yml.read_text())
    doc["tv"]["clips"][0]["audio"] = {"gain_db": -12}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(yml)
    msg = str(err.value)
    assert "tv.clips[0].audio" in msg and "segment.yaml" in msg and "clip.mp4" in msg


def test_speech_activity_holds_after_the_speech_not_before():
    """The duck holds through the pauses between words: on from the speech's start until the
    hold (0.25 s) after its end, never ahead of it."""
    from avatarrender.soundtrack import CONTROL_RATE_HZ, speech_activity

    sr = 48000
    y = np.zeros(2 * sr, dtype=np.float32)
    y[sr // 2 : sr // 2 + sr // 10] = 0.3 * np.sin(np.arange(sr // 10) * 0.3)  # 0.5-0.6 s
    on = np.flatnonzero(speech_activity(y, sample_rate_hz=sr)) / CONTROL_RATE_HZ
    assert 0.49 <= on[0] <= 0.5, on[0]
    assert 0.83 <= on[-1] <= 0.86, on[-1]
    assert on.size == round((on[-1] - on[0]) * CONTROL_RATE_HZ) + 1  # one run, no gap


def test_limiter_filters_only_around_peaks_exactly_as_over_the_whole_signal():
    """The limiter's envelope is computed span by span around the samples that need reduction;
    it must equal the envelope of the whole signal filtered at once (peaks at both edges, close
    together and far apart)."""
    from avatarrender import loudness as L

    sr = 48000
    rng = np.random.default_rng(7)
    peak = np.abs(rng.normal(0.0, 0.1, 20 * sr))
    for at, n, k in [
        (0, 3, 9.0),
        (2 * sr, 400, 8.0),
        (2 * sr + 4000, 50, 7.0),
        (11 * sr, sr, 6.0),
        (-2, 2, 9.0),
    ]:
        peak[at : at + n if at + n else None] *= k
    ceiling = 0.5
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    half = max(2, int(round((L._LOOKAHEAD_S + L._RELEASE_S) / 2 * sr)))
    whole = L._sliding_min(need, half)
    whole = np.minimum(L._box_below_one(L._box_below_one(whole, half // 2), half // 2), need)
    got = L._limiter_gain(peak, ceiling, sr)
    assert (whole < 1).sum() > 0 and ((got < 1) == (whole < 1)).all()
    assert np.abs(got - whole).max() < 1e-9
    assert (got * peak <= ceiling * (1 + 1e-9)).all()
    quiet = np.full(sr, 0.01)
    assert (L._limiter_gain(quiet, ceiling, sr) == 1.0).all()


def test_a_clips_sound_that_starts_after_its_picture_is_heard_then(tmp_path):
    """A clip whose audio stream starts 0.6 s after its video (as phones and MPEG-TS captures
    make them) is heard 0.6 s into its picture, not from its picture's first frame."""
    from avatarrender.soundtrack import tv_sound

    yml = make_tiny_segment(tmp_path / "seg", width=64, height=36, speech_s=3.0, captions=False)
    a = yml.parent / "assets"
    late = f"-itsoffset 0.6 -f lavfi -i sine=f={TONE_HZ}:d=1:sample_rate=48000"
    cmd = f"-v error -y -f lavfi -i color=c=gray:s=160x90:r=30:d=3 {late} -c:v libx264 -preset ultrafast"
    subprocess.run(
        [ffmpeg_exe(), *cmd.split(), "-pix_fmt", "yuv420p", "-c:a", "aac", str(a / "late.mp4")], check=True
    )
    doc = yaml.safe_load(yml.read_text())
    doc["tv"]["clips"] = [
        {"file": "assets/late.mp4", "start_s": 0.0, "end_s": 3.0, "at_end": "hold", "audio": {"gain_db": 0}}
    ]
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    y = tv_sound(spec, np.zeros(3 * 48000, np.float32))
    env = np.convolve(np.abs(y), np.ones(480) / 480, "same")
    onset = np.flatnonzero(env > env.max() / 2)[0] / 48000
    assert abs(onset - 0.6) < 0.04, onset


def test_normalise_off_keeps_the_level_but_not_over_the_ceiling(caplog):
    """normalise: false leaves the level as it is, but a mix over full scale (a hot file, a
    speech gain) is limited to the true-peak ceiling, with a warning (it aired at +6 dBTP)."""
    from avatarrender.loudness import LoudnessTarget, measure, normalise

    t = np.arange(4 * 48000) / 48000
    quiet = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    target = LoudnessTarget(integrated_lufs=-16, true_peak_dbtp=-1.0, enabled=False)
    out, report = normalise(quiet, target, name="seg.yaml")
    assert out is quiet and report.limited_s == 0.0  # under the ceiling: untouched
    hot = quiet * 20  # peaks at 2.0, +6 dBFS
    with caplog.at_level("WARNING", logger="avatarrender.loudness"):
        out, report = normalise(hot, target, name="seg.yaml")
    assert report.after.true_peak_dbtp <= -0.9 and report.limited_s > 1.0
    assert abs(report.before.integrated_lufs - measure(hot).integrated_lufs) < 0.05
    assert any("normalise is off" in r.getMessage() and "seg.yaml" in r.getMessage() for r in caplog.records)


def test_speech_buried_under_the_tv_sound_is_a_warning(tmp_path, caplog):
    """Normalisation gains speech and TV sound alike: a clip loud against quiet speech stays
    over it, and the render says so, naming the clip (it aired so without a word)."""
    from avatarrender.analysis import segment_audio
    from avatarrender.soundtrack import tv_sound

    said = {}
    for case, audio in (("ducked", {}), ("loud", {"gain_db": 6, "duck_db": 0})):
        spec = load_spec(_tv_segment(tmp_path / case, **audio))
        caplog.clear()
        with caplog.at_level("WARNING", logger="avatarrender.loudness"):
            tv_sound(spec, segment_audio(spec))
        said[case] = [r.getMessage() for r in caplog.records]
    assert said["ducked"] == []
    assert len(said["loud"]) == 1 and "tv.clips[0].audio: while the character speaks" in said["loud"][0]
    assert "segment.yaml" in said["loud"][0] and "under" in said["loud"][0], said["loud"]
