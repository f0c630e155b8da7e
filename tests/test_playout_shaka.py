"""The live channel in Shaka Player (low-latency mode) in Debian's chromium: a second real
LL-HLS player beside hls.js.

Shaka transmuxes each fetched LL-HLS part on its own and needs the H.264 parameter sets in it: it
refused every part but a media segment's first (error 3018, TRANSMUXING_FAILED) until every frame
carried them. The channel airs real renders (the renderer's own encoder): a filler rendered from
a segment.yaml and a program, across their joins.

``manifest.hls.sequenceMode``: without it Shaka 5.2 drops the parts that do not start on a
keyframe when the stream's timestamps are far from zero, as a live channel's are (its issue
#10589, fixed in its nightly): 6-18 of 30 frames a second were shown.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from browser import CHROMIUM, FLAGS
from conftest import make_tiny_segment
from playout_check import wait_on_air
from procs import start_command, start_playout, stop_command

ROOT = Path(__file__).resolve().parent.parent
SHAKA = Path(__file__).resolve().parent / "data" / "shaka" / "shaka-player.hls.js"
PLAY_S = 20

_PLAYER = """async (src) => {
  const v = document.getElementById("v");
  shaka.polyfill.installAll();
  const player = new shaka.Player();
  window.__errors = [];
  player.addEventListener("error", (e) => window.__errors.push(e.detail.code + " " + JSON.stringify(e.detail.data).slice(0, 300)));
  await player.attach(v);
  player.configure({streaming: {lowLatencyMode: true}, manifest: {hls: {sequenceMode: true}}});
  await player.load(src);
  window.__player = player;
  v.play().catch(() => {});
}"""


def test_shaka_low_latency_plays_the_live_channel(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    yml = make_tiny_segment(tmp_path / "seg", speech_s=6.0, width=320, height=180)
    render = start_command(
        "render", str(yml), "-o", str(tmp_path / "prog"), "-q", log_path=tmp_path / "render.log"
    )
    assert render.wait(300) == 0, (tmp_path / "render.log").read_text()
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=14)
    (tmp_path / "schedule.yaml").write_text(
        f"filler: {{spec: {yml}, duration_s: 3}}\n"
        f'entries:\n  - {{name: prog, at: "{start.isoformat()}", segment: {tmp_path / "prog"}}}\n'
    )
    log = tmp_path / "playout.log"
    proc, url = start_playout(
        "--schedule", str(tmp_path / "schedule.yaml"), "--out", str(tmp_path / "out"), log_path=log
    )
    try:
        wait_on_air(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                page.set_content(
                    '<html><body><video id="v" muted autoplay playsinline></video></body></html>'
                )
                page.add_script_tag(path=str(SHAKA))
                page.evaluate(_PLAYER, url + "/master.m3u8")
                page.wait_for_function("document.getElementById('v').currentTime > 0.5", timeout=20_000)
                sample = (
                    "(() => { const v = document.getElementById('v'); const q = v.getVideoPlaybackQuality();"
                    " const d = window.__player.getPlayheadTimeAsDate();"
                    " return {t: v.currentTime, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames, wall: Date.now(),"
                    " behind: d ? Date.now() - d.getTime() : null, errors: window.__errors}; })()"
                )
                s0 = page.evaluate(sample)
                trace = []
                for _ in range(PLAY_S):
                    page.wait_for_timeout(1000)
                    trace.append(page.evaluate(sample))
                s1 = trace[-1]
            finally:
                browser.close()
    finally:
        stop_command(proc, log)
    print([(round(x["t"], 1), x["frames"], x["dropped"], x["behind"]) for x in trace])
    played = s1["t"] - s0["t"]
    wall = (s1["wall"] - s0["wall"]) / 1000
    print(
        f"\nshaka: {played:.1f} s played in {wall:.1f} s, {s1['frames'] - s0['frames']} frames, {s1['behind'] / 1000:.2f} s behind"
    )
    assert not s1["errors"], s1["errors"]
    assert "entry/prog started" in log.read_text()
    assert played >= wall - 3, "Shaka stalled"
    assert s1["frames"] - s0["frames"] >= 0.9 * 30 * played, "frames missing"
    # a sanity bound only: it plays near the live edge, as a low-latency player
    assert s1["behind"] is not None and s1["behind"] <= 3500, s1
