"""Captions as a WebVTT subtitle rendition: files, playlists, ffmpeg, and hls.js in chromium."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from avatarrender.analysis import analyse
from avatarrender.media import ffmpeg_exe
from avatarrender.render import render
from avatarrender.spec import Cue, load_spec, parse_cues
from avatarrender.subtitles import TS_START_90K, escape, vtt_segment

from conftest import make_tiny_segment
from media_check import parse_playlist
from browser import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parent.parent
HLS_JS = ROOT / "avatarrender" / "playout" / "web" / "vendor" / "hls.min.js"

CUES = [
    {"text": "Fish & chips <b>not a tag</b> --> not an arrow", "start_s": 0.5, "end_s": 1.6},
    {"text": "日本語の字幕です", "start_s": 1.7, "end_s": 2.3},  # CJK
    {"text": "שלום עולם ومرحبا", "start_s": 2.4, "end_s": 3.9},  # RTL, spans a segment boundary
]
JA_VTT = "WEBVTT\n\n00:00:00.900 --> 00:00:02.100\nこんにちは\n"


def test_escape_and_timestamp_map():
    assert escape("a & b <c> --> d") == "a &amp; b &lt;c&gt; --&gt; d"
    # what the writer escapes, the reader gives back: a .vtt caption file in, the same text out
    text = CUES[0]["text"]
    written = vtt_segment([Cue(text, 0.5, 1.6)], Fraction(0), Fraction(2), duration_s=Fraction(2))
    assert [c.text for c in parse_cues(written)] == [text]
    cues = [Cue("one", 0.5, 1.6), Cue("two", 2.4, 3.9)]
    text = vtt_segment(cues, Fraction(1), Fraction(2), duration_s=Fraction(4))
    lines = text.splitlines()
    assert lines[:2] == ["WEBVTT", f"X-TIMESTAMP-MAP=MPEGTS:{TS_START_90K},LOCAL:00:00:00.000"]
    assert "00:00:00.500 --> 00:00:01.600" in lines and "two" not in text
    # the 33-bit MPEG-TS clock wraps
    assert "MPEGTS:5," in vtt_segment(
        [], Fraction(0), Fraction(1), duration_s=Fraction(1), mpegts_90k=(1 << 33) + 5
    )


@pytest.fixture(scope="module")
def rendered_subs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subs")
    yml = make_tiny_segment(folder / "seg", width=160, height=90, tv=False)
    (yml.parent / "ja.vtt").write_text(JA_VTT, encoding="utf-8")
    doc = yaml.safe_load(yml.read_text())
    doc["captions"] = {
        "cues": CUES,
        "burn": False,
        "language": "en",
        "name": "English",
        "tracks": [{"file": "ja.vtt", "language": "ja", "name": "日本語"}],
    }
    yml.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    out = folder / "out"
    render(load_spec(yml), out, jobs=2, chunk_segments=1)
    return yml, out


def test_rendition_files_and_playlists(rendered_subs):
    yml, out = rendered_subs
    assert (analyse(load_spec(yml)).caption == -1).all()  # burn: false -> not in the picture
    master = (out / "master.m3u8").read_text(encoding="utf-8")
    media = [ln for ln in master.splitlines() if ln.startswith("#EXT-X-MEDIA:")]
    assert media == [
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="en",NAME="English",DEFAULT=YES,'
        'AUTOSELECT=YES,URI="sub_en.m3u8"',
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="ja",NAME="日本語",DEFAULT=NO,'
        'AUTOSELECT=YES,URI="sub_ja.m3u8"',
    ]
    inf = next(ln for ln in master.splitlines() if ln.startswith("#EXT-X-STREAM-INF:"))
    assert 'SUBTITLES="subs"' in inf and 'CODECS="avc1.' in inf and "RESOLUTION=160x90" in inf
    video = parse_playlist(out / "index.m3u8")
    for lang in ("en", "ja"):
        sub = parse_playlist(out / f"sub_{lang}.m3u8")
        assert [d for _, d in sub["segments"]] == [d for _, d in video["segments"]]
        assert "EXT-X-ENDLIST" in sub["tags"]
    seg3 = (out / "sub_en_00003.vtt").read_text(encoding="utf-8")
    seg2 = (out / "sub_en_00002.vtt").read_text(encoding="utf-8")
    assert "שלום עולם ومرحبا" in seg3 and "שלום עולם ومرحبا" in seg2  # spans 2-4 s
    seg0 = (out / "sub_en_00000.vtt").read_text(encoding="utf-8")
    assert "Fish &amp; chips &lt;b&gt;not a tag&lt;/b&gt; --&gt; not an arrow" in seg0
    assert seg0.count("-->") == 1  # only the timing line's
    import json

    man = json.loads((out / "manifest.json").read_text())
    assert [s["language"] for s in man["subtitles"]] == ["en", "ja"]


def test_ffmpeg_reads_the_subtitle_playlists(rendered_subs):
    _, out = rendered_subs
    for name in ("sub_en.m3u8", "master.m3u8"):  # the track alone, then the whole
        proc = subprocess.run(
            [ffmpeg_exe(), "-v", "warning", "-i", str(out / name), "-map", "0:s:0", "-f", "webvtt", "-"],
            capture_output=True,
            text=True,
            encoding="utf-8",
        )
        # a cue spanning a segment boundary is repeated in both files (RFC 8216bis 3.1.4 asks a
        # player to merge them); ffmpeg says so when it merges, and must say nothing else
        other = [
            ln for ln in proc.stderr.splitlines() if ln.strip() and "duplicated subtitle events" not in ln
        ]
        assert proc.returncode == 0 and not other, proc.stderr
        if name == "master.m3u8":
            continue  # read without a complaint; its HLS demuxer interleaves the subtitles
            # with the video on its own clock, so the cues' text and times are checked above
        assert proc.stdout.count("שלום עולם ومرحبا") == 1
        # ffmpeg unescapes the text (and its webvtt writer does not escape it again)
        for cue in CUES:
            assert cue["text"] in proc.stdout
        assert "00:00.500 --> 00:01.600" in proc.stdout and "00:02.400 --> 00:03.900" in proc.stdout


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<video id=v muted autoplay playsinline></video>
<script src="hls.min.js"></script><script>
window.__r = {errors: [], ended: false};
const v = document.getElementById('v');
const hls = new Hls();
hls.on(Hls.Events.ERROR, (e, d) => window.__r.errors.push(d.type + ':' + d.details + ':' + d.fatal));
// where the first video frame sits on the element's timeline: the cues are timed against it
hls.on(Hls.Events.BUFFER_APPENDED, (e, d) => { const r = d.timeRanges && d.timeRanges.video;
  if (r && r.length && window.__r.videoStart === undefined) window.__r.videoStart = r.start(0); });
// a viewer turns the first subtitle track on
hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => { hls.subtitleDisplay = true; hls.subtitleTrack = 0; });
window.__cues = {};  // every cue seen on any track, kept (a player may drop cues behind it)
setInterval(() => { for (const t of v.textTracks) { if (!t.cues) continue;
  for (const c of t.cues) window.__cues[t.language + '|' + c.startTime + '|' + c.endTime + '|' +
    c.getCueAsHTML().textContent] = [t.language, c.startTime, c.endTime, c.getCueAsHTML().textContent]; } }, 50);
hls.loadSource('out/master.m3u8'); hls.attachMedia(v);
v.addEventListener('ended', () => { window.__r.ended = true; });
v.play().catch(e => window.__r.errors.push('play:' + e));
window.tracks = () => Array.from(v.textTracks).map(t => ({
  kind: t.kind, label: t.label, language: t.language, mode: t.mode,
  cues: t.cues ? Array.from(t.cues).map(c => ({start: c.startTime, end: c.endTime,
                                               text: c.getCueAsHTML().textContent})) : []}));
</script></body></html>"""


def test_hlsjs_lists_the_track_and_shows_the_cues_on_time(rendered_subs, tmp_path):
    from playwright.sync_api import sync_playwright

    _, out = rendered_subs
    site = tmp_path / "site"
    site.mkdir()
    (site / "out").symlink_to(out)
    (site / "hls.min.js").symlink_to(HLS_JS)
    (site / "index.html").write_text(PAGE, encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                page.wait_for_function(
                    "window.__r.ended || window.__r.errors.some(e => e.endsWith(':true'))", timeout=60_000
                )
                r = page.evaluate("window.__r")
                tracks = page.evaluate("window.tracks()")
                seen = page.evaluate("Object.values(window.__cues)")
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert r["ended"] and not [e for e in r["errors"] if e.endswith(":true")], r
    subs = [t for t in tracks if t["kind"] in ("subtitles", "captions")]
    assert [(t["label"], t["language"]) for t in subs] == [("English", "en"), ("日本語", "ja")]
    frame = 1 / 30
    got = sorted({(round(t0, 3), round(t1, 3), text) for lang, t0, t1, text in seen if lang == "en"})
    assert len(got) == len(CUES), (got, tracks, r)  # a cue repeated in two segments is one cue
    v0 = r["videoStart"]
    for want, (start, end, text) in zip(CUES, got):
        start, end = start - v0, end - v0
        assert text == want["text"]
        assert abs(start - want["start_s"]) <= frame and abs(end - want["end_s"]) <= frame, (want, start, end)
    _ = np
