"""The live channel through a real nginx (examples/nginx.conf) in front of the playout: hls.js with
its defaults in Debian's chromium plays the LL-HLS parts (byte ranges served by nginx) and the
blocking reloads (passed to the playout) across a program change at a part boundary, with decoded
frames matching the time played; ffmpeg reads the same live playlist without an error."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from avatarrender.media import ffmpeg_exe
from playout_check import ffmpeg_reads_live, wait_on_air
from avatarrender.playout.playlist import parse_pdt
from nginx_front import NGINX, free_port, served_dir, start_nginx
from playout_media import make_rendered
from procs import check_stalls, start_playout, stop_command
from browser import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parent.parent
PLAY_S = 24

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX), reason="nginx not installed (scripts/setup.sh --test)"
)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("nginx-channel")
    make_rendered(tmp / "filler", pattern="green", seconds=5)
    make_rendered(tmp / "prog", pattern="testsrc", seconds=6)
    spool = tmp / "spool"
    spool.mkdir()
    out = served_dir()
    port = free_port()
    proc, direct = start_playout(
        "--filler",
        str(tmp / "filler"),
        "--spool",
        str(spool),
        "--out",
        str(out),
        log_path=tmp / "playout.log",
        port=port,
    )
    wait_on_air(direct)  # viewers join a channel that is on air
    ng, url = start_nginx(out, playout_port=port, work=tmp / "nginx")
    yield url, tmp, spool
    ng.terminate()
    ng.wait(10)
    stop_command(proc, tmp / "playout.log")
    shutil.rmtree(out, ignore_errors=True)


def test_hls_js_defaults_through_nginx_across_a_program_change(channel) -> None:
    from playwright.sync_api import sync_playwright

    url, tmp, spool = channel
    ff: dict = {}
    ff_thread = threading.Thread(target=ffmpeg_reads_live, args=(url, PLAY_S, ff))
    ff_thread.start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("window.__monitor && window.__monitor.playingAt !== null", timeout=20_000)
            page.wait_for_timeout(3000)
            f0 = page.evaluate("window.__monitor.frames()")
            page.wait_for_timeout(4000)
            # a program arrives in the spool while filler airs (renamed in: never half there)
            shutil.copytree(tmp / "prog", spool / ".incoming")
            os.rename(spool / ".incoming", spool / "prog")
            t_drop = time.time()
            page.wait_for_timeout((PLAY_S - 4) * 1000)
            f1 = page.evaluate("window.__monitor.frames()")
            mon = page.evaluate(
                "({lat: window.__monitor.latencies, errors: window.__monitor.errors,"
                " waiting: window.__monitor.waiting, wlog: window.__monitor.waitingLog,"
                " ended: window.__monitor.ended, fatal: window.__monitor.fatal})"
            )
            ll = page.evaluate("window.__hls.lowLatencyMode && !!window.__hls.levels[0].details.partList")
        finally:
            browser.close()
    ff_thread.join()
    log = (tmp / "playout.log").read_text()
    access = (tmp / "nginx" / "access.log").read_text()
    lat_s = sorted(v / 1000 for t, v, *_ in mon["lat"] if t >= f0["wall"])
    media_s = f1["currentTime"] - f0["currentTime"]
    wall_s = (f1["wall"] - f0["wall"]) / 1000
    frames = f1["total"] - f0["total"]
    print(
        f"\nthrough nginx: latency median {statistics.median(lat_s):.2f} s, "
        f"p95 {lat_s[int(0.95 * len(lat_s))]:.2f} s; {frames} frames for {media_s:.2f} s played "
        f"in {wall_s:.2f} s; ffmpeg rc {ff.get('rc')}"
    )
    assert "spool/prog started" in log and "spool/prog ended" in log, log
    started = parse_pdt(re.search(r"spool/prog started at (\S+)", log).group(1))
    # at the next part boundary (the engine test checks exactly which one): for information
    print(f"program on air {float(started) - t_drop:.2f} s after it appeared in the spool")
    assert ll, "hls.js did not play the parts (lowLatencyMode, partList)"
    assert re.search(r'"GET /live\.m3u8\?_HLS_msn=\d+&_HLS_part=\d+ HTTP/1\.1" 200', access), (
        "no blocking reload through nginx"
    )
    assert re.search(r'"GET /media/\d+\.ts HTTP/1\.1" 206', access), "no part (byte range) through nginx"
    assert not mon["fatal"] and not mon["ended"], mon["errors"]
    check_stalls(mon["wlog"], f0["wall"], access[-3000:])
    # a stuck player falls far behind; headless chromium's clock itself runs a few % slow when the
    # machine is starved of CPU (measured: up to 4 % with the load at 5x the cores)
    assert media_s >= wall_s - max(0.5, 0.05 * wall_s), "playback fell behind the clock"
    assert abs(frames - media_s * 30) <= 0.02 * media_s * 30 + 3, "frames decoded != time aired"
    assert ff["rc"] == 0, ff["stderr"][-2000:]
    assert not ff["stderr"].strip(), ff["stderr"][-2000:]


def test_headers_through_nginx(channel) -> None:
    """CORS once per response, byte ranges, blocking-reload refusals passed through."""
    import urllib.error

    url, _, _ = channel
    r = urllib.request.urlopen(url + "/live.m3u8")
    text = r.read().decode()
    assert r.headers.get_all("Access-Control-Allow-Origin") == ["*"]
    # each header once: the playout's own are hidden where nginx adds them (a review saw two)
    assert r.headers.get_all("Cache-Control") == ["no-cache, no-store, must-revalidate"]
    s = urllib.request.urlopen(url + "/status")
    assert s.headers.get_all("Cache-Control") == ["no-cache, no-store, must-revalidate"]
    assert s.headers.get_all("Access-Control-Allow-Origin") == ["*"]
    assert len(s.headers.get_all("Access-Control-Expose-Headers") or []) <= 1
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    r = urllib.request.urlopen(
        urllib.request.Request(f"{url}/media/{seq:09d}.ts", headers={"Range": "bytes=0-187"})
    )
    assert r.status == 206 and len(r.read()) == 188
    assert r.headers.get_all("Access-Control-Allow-Origin") == ["*"]
    assert r.headers["Content-Range"].startswith("bytes 0-187/")
    for bad in ("_HLS_part=1", "_HLS_msn=x", f"_HLS_msn={seq + 1000}"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/live.m3u8?{bad}")
        assert e.value.code == 400, bad
    r = urllib.request.urlopen(urllib.request.Request(url + "/media/x.ts", method="OPTIONS"))
    assert r.status == 204 and r.headers.get_all("Access-Control-Allow-Origin") == ["*"]
    assert "Range" in r.headers["Access-Control-Allow-Headers"]


# ------------------------------------------------------------------ the subtitle rendition


@pytest.fixture(scope="module")
def subs_channel(tmp_path_factory: pytest.TempPathFactory):
    """A scheduled channel with an English subtitle track (two captioned programs), behind nginx."""
    import datetime as dt

    from test_live_subtitles import render_channel_media

    tmp = tmp_path_factory.mktemp("nginx-subs")
    media = render_channel_media(tmp)
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=8)
    (media / "schedule.yaml").write_text(f"""filler: {{dir: filler}}
late: {{max_late_s: 3}}
subtitles: [{{language: en, name: English}}]
entries:
  - {{name: a, at: "{start.isoformat()}", segment: a}}
  - {{name: b, segment: b}}
""")
    out = served_dir()
    port = free_port()
    proc, _ = start_playout(
        "--schedule", str(media / "schedule.yaml"), "--out", str(out), log_path=tmp / "playout.log", port=port
    )
    try:
        ng, url = start_nginx(out, playout_port=port, work=tmp / "nginx")
        yield url, tmp
        ng.terminate()
        ng.wait(10)
    finally:
        stop_command(proc, tmp / "playout.log")
        shutil.rmtree(out, ignore_errors=True)


def _get(url: str) -> tuple[bytes, dict]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read(), r.headers


def test_subtitle_rendition_through_nginx(subs_channel) -> None:
    """The live channel's subtitle rendition through nginx: the master playlist names it, the
    subtitle playlist is served like live.m3u8 (never cached, no Last-Modified), the WebVTT
    segments as UTF-8 text/vtt cached like the media segments, CORS once; ffmpeg reads the
    subtitle playlist with every WebVTT segment fetched from nginx, with the cues' text.

    (ffmpeg's HLS demuxer does not follow a live WebVTT playlist: measured, it fetches the
    segments and emits no cue. The playlist is read as it stands, closed, as the playout test
    does; hls.js in Chromium follows it live, in test_live_subtitles.)"""
    url, tmp = subs_channel
    master, h = _get(url + "/master.m3u8")
    assert b'TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="en",NAME="English"' in master
    assert 'URI="subs_en.m3u8"' in master.decode() and h["Cache-Control"].startswith("no-cache")
    vtt: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data, h = _get(url + "/subs_en.m3u8")
        assert h["Content-Type"] == "application/vnd.apple.mpegurl"
        assert "no-cache" in h["Cache-Control"] and "Last-Modified" not in h
        assert h.get_all("Access-Control-Allow-Origin") == ["*"]
        playlist = data.decode("utf-8")
        for uri in re.findall(r"^subs/en/\d{9}\.vtt$", playlist, re.M):
            if uri not in vtt:
                body, h = _get(f"{url}/{uri}")
                assert h["Content-Type"] == "text/vtt; charset=utf-8", h["Content-Type"]
                assert h["Cache-Control"] == "public, max-age=86400, immutable"
                assert h.get_all("Access-Control-Allow-Origin") == ["*"]
                vtt[uri] = body.decode("utf-8")
                assert vtt[uri].startswith("WEBVTT\n")
        if any("Bravo" in vtt[u] for u in re.findall(r"^subs/en/\d{9}\.vtt$", playlist, re.M)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(
            "program b's cues never reached the subtitle playlist: " + (tmp / "playout.log").read_text()
        )
    # the playlist as it stands, closed, its segments fetched from nginx by ffmpeg
    closed = tmp / "subs_closed.m3u8"
    closed.write_text(
        re.sub(r"^(subs/en/\d{9}\.vtt)$", lambda m: f"{url}/{m[1]}", playlist, flags=re.M)
        + "#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    got = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-protocol_whitelist",
            "file,http,tcp",
            "-i",
            str(closed),
            "-f",
            "webvtt",
            "-",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    noise = [ln for ln in got.stderr.splitlines() if ln.strip() and "duplicated subtitle" not in ln]
    assert got.returncode == 0 and not noise, got.stderr[-2000:]
    listed = re.findall(r"^subs/en/\d{9}\.vtt$", playlist, re.M)
    texts = {
        t for u in listed for t in ("Alpha &amp; one", "Alpha two ليلة سعيدة", "Bravo 你好") if t in vtt[u]
    }
    assert "Bravo 你好" in texts
    for t in texts:  # (ffmpeg writes the text unescaped)
        assert t.replace("&amp;", "&") in got.stdout, (t, got.stdout)
    access = (tmp / "nginx" / "access.log").read_text()
    for u in listed:
        assert f'"GET /{u} HTTP/1.1" 200' in access, u  # ffmpeg's reads, through nginx


def test_nginx_serves_the_last_playlist_while_the_playout_restarts(tmp_path) -> None:
    """The playout down (a restart: 2-4 s) refuses nginx's connections: the live playlist is
    then the last one it wrote (hls.js gives up for good on a playlist that fails ~3 s), while
    /status says the playout is down instead of showing its last file as on air; /metrics and
    /epg.xml reach the playout through nginx (they were 404)."""
    import urllib.error

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    out = served_dir()
    port = free_port()
    log = tmp_path / "playout.log"
    proc, direct = start_playout(
        "--filler", str(tmp_path / "filler"), "--out", str(out), log_path=log, port=port
    )
    ng = None
    try:
        wait_on_air(direct)
        ng, url = start_nginx(out, playout_port=port, work=tmp_path / "nginx")
        for path, kind in (("/status", "json"), ("/metrics", "text/plain"), ("/epg.xml", "xml")):
            with urllib.request.urlopen(url + path, timeout=10) as r:
                assert r.status == 200 and kind in r.headers["Content-Type"], (
                    path,
                    r.headers["Content-Type"],
                )
        stop_command(proc, log)
        with urllib.request.urlopen(url + "/live.m3u8?_HLS_msn=1&_HLS_part=0", timeout=10) as r:
            assert r.status == 200 and "no-cache" in r.headers["Cache-Control"]
            assert r.read() == (out / "live.m3u8").read_bytes()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/status", timeout=10)
        assert e.value.code == 502
    finally:
        if ng is not None:
            ng.terminate()
            ng.wait(10)
        if proc.poll() is None:
            stop_command(proc, log)
        shutil.rmtree(out, ignore_errors=True)
