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
