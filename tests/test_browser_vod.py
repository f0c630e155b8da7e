"""A real player: hls.js in Debian's chromium plays a rendered segment to its end."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
from browser import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parent.parent
HLS_JS = ROOT / "avatarrender" / "playout" / "web" / "vendor" / "hls.min.js"

PAGE = """<!doctype html><html><body><video id=v muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
window.__r = {errors: [], ended: false};
const v = document.getElementById('v');
const hls = new Hls();
hls.on(Hls.Events.ERROR, (e, d) => window.__r.errors.push(d.type + ':' + d.details + ':' + d.fatal));
hls.loadSource('out/index.m3u8'); hls.attachMedia(v);
v.addEventListener('ended', () => { window.__r.ended = true;
  window.__r.frames = v.getVideoPlaybackQuality().totalVideoFrames;
  window.__r.duration = v.duration; window.__r.time = v.currentTime; });
v.play().catch(e => window.__r.errors.push('play:' + e));
</script></body></html>"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(rendered_tiny, tmp_path):
    yml, out = rendered_tiny
    site = tmp_path / "site"
    site.mkdir()
    (site / "out").symlink_to(out)
    (site / "hls.min.js").symlink_to(HLS_JS)
    (site / "index.html").write_text(PAGE)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def test_hlsjs_plays_the_render_to_its_end(served):
    from playwright.sync_api import sync_playwright

    assert HLS_JS.is_file(), "hls.js is installed by scripts/setup.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(served)
            page.wait_for_function(
                "window.__r.ended || window.__r.errors.some(e => e.endsWith(':true'))", timeout=60_000
            )
            r = page.evaluate("window.__r")
        finally:
            browser.close()
    assert r["ended"], r
    assert not [e for e in r["errors"] if e.endswith(":true")], r["errors"]
    assert abs(r["duration"] - 4.0) < 0.1, r
    # every frame was decoded: a missing segment or a timestamp gap would end playback early
    assert r["frames"] >= 118, r
