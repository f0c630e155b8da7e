"""The public Python API: what the README shows, called as a user would."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import make_tiny_segment
from playout_media import make_rendered

pytestmark = pytest.mark.slow


def test_render_and_preview_take_a_path_or_a_spec(tmp_path):
    import avatarrender

    yml = make_tiny_segment(tmp_path / "seg")
    manifest = avatarrender.render(str(yml), tmp_path / "out", jobs=1)
    assert manifest["complete"] and len(manifest["segments"]) == 4
    spec = avatarrender.load_spec(yml)
    again = avatarrender.render(spec, tmp_path / "out")
    assert again["up_to_date"]
    rgb = avatarrender.preview(yml, at_s=1.5)
    assert rgb.shape == (180, 320, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, avatarrender.preview(spec, at_s=1.5))
    with pytest.raises(avatarrender.SpecError, match="no-such.yaml"):
        avatarrender.render(tmp_path / "no-such.yaml", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    # the module's own function takes a path too (it raised AttributeError on a str)
    assert avatarrender.render.render(str(yml), tmp_path / "out")["up_to_date"]


def test_bad_arguments_raise_our_errors_naming_the_argument(tmp_path):
    import avatarrender

    yml = make_tiny_segment(tmp_path / "seg")
    for at in (float("nan"), float("inf"), "soon"):
        with pytest.raises(avatarrender.SpecError, match="at_s"):  # (a bare ValueError from Fraction)
            avatarrender.preview(yml, at_s=at)
    with pytest.raises(FileNotFoundError, match="nope.wav"):  # AssetNotFoundError is one
        avatarrender.lipsync.load_audio(tmp_path / "nope.wav")
    for rate in (0, -8000):  # 0 was taken as the default, -8000 blamed the file
        with pytest.raises(avatarrender.SpecError, match="sample_rate_hz"):
            avatarrender.lipsync.load_audio(yml.parent / "assets" / "speech.wav", sample_rate_hz=rate)
    assert issubclass(avatarrender.RenderLockedError, avatarrender.AvatarRenderError)
    assert issubclass(avatarrender.DiskFullError, avatarrender.AvatarRenderError)


def test_the_library_leaves_the_callers_warnings_filters_alone():
    """Importing the renderer added a filter to the caller's ``warnings`` (for joblib's advice
    when a generator is closed early); it is said where the pool is made now, and still not
    said when a render stops between chunks."""
    import subprocess
    import sys
    import warnings

    code = (
        # numpy adds filters of its own as it is imported (and scipy through librosa)
        "import warnings, numpy, scipy.signal, joblib; before = list(warnings.filters); "
        "import avatarrender, avatarrender.render, avatarrender.service, avatarrender.playout; "
        "assert warnings.filters == before, [f for f in warnings.filters if f not in before]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    from joblib import delayed

    from avatarrender.render import _pool

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _pool(n_jobs=2, return_as="generator")(delayed(time.sleep)(0.2) for _ in range(6))
        next(results)
        results.close()  # as a render stopped between chunks does
    assert not [w for w in caught if "task" in str(w.message)], [str(w.message) for w in caught]


def test_stock_pillow_over_pillow_simd_is_said_at_a_render(monkeypatch, caplog):
    """`pip install` of anything needing Pillow puts stock Pillow's PIL/ over Pillow-SIMD's:
    renders stayed right and ran slower without a word."""
    import importlib.metadata as md
    import logging

    from avatarrender import doctor, render

    real = md.distribution

    class Stock:
        version = "13.0"

    monkeypatch.setattr(doctor.md, "distribution", lambda name: Stock if name == "pillow" else real(name))
    render._check_pillow_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        render._check_pillow_once()
    render._check_pillow_once.cache_clear()
    assert "stock pillow 13.0" in caplog.text and "slower" in caplog.text


def test_run_playout_publishes_the_channel_and_its_monitor_page(tmp_path):
    import avatarrender

    filler = make_rendered(tmp_path / "filler", pattern="green", seconds=2)
    out, stop, seen = tmp_path / "live", threading.Event(), []
    t = threading.Thread(
        target=avatarrender.run_playout,
        args=(None, out),
        kwargs={"filler": filler, "stop": stop, "on_ready": seen.append},
    )
    t.start()
    try:
        for _ in range(1200):  # a bound, not a timing: the playlist appears on the first tick
            if (out / "live.m3u8").exists():
                break
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive() and len(seen) == 1
    assert "#EXTINF" in (out / "live.m3u8").read_text() and (out / "master.m3u8").exists()
    assert (out / "index.html").exists() and (out / "vendor" / "hls.min.js").stat().st_size > 100_000


def test_serve_address_is_checked_before_anything_starts(tmp_path):
    """A bad --serve / serve= is one line naming the field, exit 2, and nothing written; an
    IPv6 address in brackets is taken."""
    import subprocess
    import sys
    from pathlib import Path

    import avatarrender
    from avatarrender.api import _address
    from avatarrender.errors import SpecError

    assert _address("[::1]:8080") == ("::1", 8080) and _address("8080") == ("127.0.0.1", 8080)
    for bad in ("127.0.0.1:99999", "host:", "nonsense", "1.2.3.4:-1"):
        with pytest.raises(SpecError, match=r"^serve: expected HOST:PORT"):
            avatarrender.run_playout(None, tmp_path / "out", serve=bad)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "playout",
            "-o",
            str(tmp_path / "o2"),
            "--serve",
            "1:2:99999",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "avatarrender: error: --serve: expected HOST:PORT or PORT (0-65535), got '1:2:99999'"
    ], r.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()


def test_a_script_without_the_main_guard_starts_a_render_service(tmp_path):
    """A script starting a RenderService at its top level, without `if __name__ == "__main__":`:
    the service's soundtrack process was spawned, which imports the script again, and the script
    failed (BrokenProcessPool); the README asked for the guard. It runs once, and works."""
    import subprocess
    import sys

    script = tmp_path / "service_script.py"
    script.write_text(
        "import avatarrender\n"
        f"svc = avatarrender.RenderService({str(tmp_path / 'inbox')!r}, {str(tmp_path / 'spool')!r})\n"
        "svc.warm_up()\n"
        "svc.close()\n"
        "print('top level ran')\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("top level ran") == 1, proc.stdout
