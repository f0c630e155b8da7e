"""The in-process loudness meter and true-peak oversampler against the ``ffmpeg`` command's own
``ebur128`` reading of the same samples (as the AAC encoder gets them: mono upmixed to stereo)."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avatarrender import loudness
from avatarrender.media import ffmpeg_exe, read_audio

from conftest import make_speech

SR = 48000


def ffmpeg_ebur128(samples: np.ndarray, tmp_path: Path) -> dict[str, float]:
    """The ffmpeg command's summary of mono ``samples`` upmixed to stereo: I, LRA, Peak."""
    wav = tmp_path / "m.wav"
    soundfile.write(wav, samples, SR, subtype="FLOAT")
    err = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostats",
            "-i",
            str(wav),
            "-af",
            "aformat=channel_layouts=stereo,ebur128=peak=true:framelog=quiet",
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


def _speech(tmp_path: Path, **kw) -> np.ndarray:
    make_speech(tmp_path / "s.wav", sample_rate_hz=SR, **kw)
    return read_audio(tmp_path / "s.wav", sample_rate_hz=SR)


def _signal(kind: str, tmp_path: Path) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "speech":
        return _speech(tmp_path, duration_s=8.0, bursts=[(0.5, 2.0), (2.6, 4.1), (5.0, 7.5)])
    if kind == "quiet":  # about -40 LUFS
        return _speech(tmp_path, duration_s=6.0) * np.float32(0.02)
    if kind == "hot-clipped":
        return np.clip(_speech(tmp_path, duration_s=6.0) * 8, -1, 1).astype(np.float32)
    if kind == "noise-dynamic":  # loud and soft passages: a loudness range of several LU
        env = np.repeat([0.3, 0.03, 0.15, 0.01, 0.3], 3 * SR)
        return (rng.standard_normal(env.size) * env).astype(np.float32)
    if kind == "intersample":  # fs/4 at 45 degrees: samples at 0.707 of the true peak (+3 dB)
        t = np.arange(4 * SR)
        return (0.9 * np.sin(np.pi / 2 * t + np.pi / 4)).astype(np.float32)
    if kind == "silence":
        return np.zeros(3 * SR, dtype=np.float32)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["speech", "quiet", "hot-clipped", "noise-dynamic", "intersample", "silence"]
)
def test_meter_agrees_with_the_ffmpeg_command(tmp_path, kind):
    x = _signal(kind, tmp_path)
    got = loudness.measure(x)
    ref = ffmpeg_ebur128(x, tmp_path)
    if kind == "silence":
        assert got.integrated_lufs is None and got.true_peak_dbtp is None
        assert ref["I"] <= loudness.SILENCE_LUFS and ref["Peak"] == -math.inf
        return
    assert got.integrated_lufs is not None
    assert abs(got.integrated_lufs - ref["I"]) <= 0.1, (got, ref)
    assert abs(got.range_lu - ref["LRA"]) <= 0.2, (got, ref)
    assert abs(got.true_peak_dbtp - ref["Peak"]) <= 0.2, (got, ref)
    if kind == "noise-dynamic":
        assert got.range_lu > 5  # the range is really measured, not a constant
    if kind == "intersample":  # the true peak is above the sample peak by the sine's +3 dB
        sample_peak_dbfs = 20 * math.log10(np.abs(x).max() * loudness._UPMIX)
        assert got.true_peak_dbtp - sample_peak_dbfs > 2.5


def test_meter_short_input_is_silence():
    got = loudness.measure(np.full(SR // 10, 0.5, dtype=np.float32))  # under one 400 ms block
    assert got.integrated_lufs is None


@pytest.mark.parametrize("kind", ["speech", "hot-clipped", "intersample"])
def test_true_peak_oversampler_is_resample_poly(tmp_path, kind):
    """The limiter's numpy oversampler is scipy's 4:1 resample_poly, computed only where needed,
    and its peak is ffmpeg's true peak."""
    from scipy.signal import resample_poly

    x = _signal(kind, tmp_path).astype(np.float64)
    n = x.shape[0]
    ref = np.abs(resample_poly(x, 4, 1))[: 4 * n].reshape(n, 4).max(axis=1)
    ref = np.maximum(ref, np.abs(x))
    tp = loudness._TruePeak(x)
    full = tp.upto(0.0)  # every block
    np.testing.assert_allclose(full, ref, rtol=0, atol=1e-12)
    level = 0.8 * ref.max()
    part = loudness._TruePeak(x).upto(level)
    over = ref >= level
    np.testing.assert_array_equal(part[over], full[over])  # exact wherever it could matter
    assert (part <= full + 1e-15).all()
    tp_db = 20 * math.log10(full.max() * loudness._UPMIX)
    if kind == "intersample":  # a pure sine's true peak is its amplitude (ffmpeg's own
        # resampler reads this one 0.6 dB high, measured)
        assert abs(20 * math.log10(full.max() / 0.9)) <= 0.2  # (the abrupt start rings)
    else:
        assert abs(tp_db - ffmpeg_ebur128(x.astype(np.float32), tmp_path)["Peak"]) <= 0.2


@pytest.mark.parametrize("kind", ["speech", "quiet", "hot-clipped", "silence"])
def test_true_peaks_measured_later_give_the_same_report(tmp_path, kind):
    """A render measures the true peaks after the encoder has the samples
    (``normalise(true_peaks=False)`` then ``add_true_peaks``): the same samples, the same report."""
    x = _signal(kind, tmp_path)
    if kind == "quiet":  # peaks the +25 dB gain would take over the ceiling: the limiter works
        x = x.copy()
        x[SR : SR + 40] += np.float32(0.3) * np.hanning(40).astype(np.float32)
    target = loudness.LoudnessTarget()
    y1, whole = loudness.normalise(x, target)
    y2, part = loudness.normalise(x, target, true_peaks=False)
    np.testing.assert_array_equal(y1, y2)
    assert part.before.true_peak_dbtp is None and part.after.true_peak_dbtp is None
    later = loudness.add_true_peaks(part, x, y2)
    assert later.before == whole.before and later.gain_db == whole.gain_db
    assert later.limited_s == whole.limited_s
    assert later.after.integrated_lufs == whole.after.integrated_lufs
    if whole.after.true_peak_dbtp is None:
        assert later.after.true_peak_dbtp is None
    else:
        assert abs(later.after.true_peak_dbtp - whole.after.true_peak_dbtp) <= 0.1
        assert later.after.true_peak_dbtp < target.true_peak_dbtp
    if kind == "quiet":
        assert whole.limited_s > 0
