"""The live channel carries the programs' loudness and subtitles: rendered segments (with
captions and normalised audio) aired by the playout engine on a driven clock."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest
import yaml

from avatarrender.media import ffmpeg_exe
from avatarrender.playout.engine import Playout
from avatarrender.playout.schedule import load_schedule
from avatarrender.render import render
from avatarrender.spec import load_spec

from conftest import make_tiny_segment
from playout_check import check_transition, parse_live
from test_sound import CEILING_DBTP, TARGET_LUFS, ebur128
from test_playout_engine import T0, at
from browser import CHROMIUM, FLAGS

CAPTIONS = {
    "a": [
        {"text": "Alpha & one", "start_s": 0.2, "end_s": 1.5},
        {"text": "Alpha two ليلة سعيدة", "start_s": 1.6, "end_s": 2.9},
    ],
    "b": [{"text": "Bravo 你好", "start_s": 0.4, "end_s": 2.5}],
}


def render_channel_media(root: Path) -> Path:
    """Filler (the idle loop of a segment.yaml) and two programs with captions, rendered."""
    for name, gain in (("a", 0.0), ("b", -20.0)):  # b is 20 dB quieter before normalisation
        yml = make_tiny_segment(root / f"seg_{name}", duration_s=3.0, tv=False)
        doc = yaml.safe_load(yml.read_text())
        doc["captions"] = {"cues": CAPTIONS[name], "burn": False, "language": "en"}
        doc["speech"]["gain_db"] = gain
        yml.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
        render(load_spec(yml), root / name, jobs=2)
    render(load_spec(root / "seg_a" / "segment.yaml").idle(3.0), root / "filler", jobs=2)
    return root


@pytest.fixture(scope="module")
def channel_media(tmp_path_factory) -> Path:
    return render_channel_media(tmp_path_factory.mktemp("live_subs"))


def _first_video_pts(path: Path) -> int:
    with av.open(str(path)) as c:
        return min(p.pts for p in c.demux(video=0) if p.pts is not None)


def _ffmpeg_reads(out: Path) -> bool:
    """ffmpeg reads the live subtitle playlist as it stands (closed: a live one it would poll)."""
    closed = out / "subs_closed.m3u8"
    closed.write_text(
        (out / "subs_en.m3u8").read_text(encoding="utf-8") + "#EXT-X-ENDLIST\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "warning", "-i", str(closed), "-f", "webvtt", "-"],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    closed.unlink()
    other = [ln for ln in proc.stderr.splitlines() if ln.strip() and "duplicated subtitle" not in ln]
    assert proc.returncode == 0 and not other, proc.stderr
    assert "Bravo 你好" in proc.stdout or "Alpha" in proc.stdout, proc.stdout
    return True


def test_live_subtitles_follow_the_video_and_loudness_holds(channel_media: Path, tmp_path: Path):
    sched = channel_media / "schedule.yaml"
    sched.write_text(f"""filler: {{dir: filler}}
late: {{max_late_s: 5}}
subtitles: [{{language: en, name: English}}]
entries:
  - {{name: a, at: "{at(4)}", segment: a}}
  - {{name: b, segment: b}}
""")
    out = tmp_path / "out"
    p = Playout(load_schedule(sched), out, filler=channel_media / "filler")
    p.start(T0)
    now, prev = T0, None
    aired: dict[int, dict] = {}  # sequence -> what aired (kept: files leave the window)
    read_by_ffmpeg = False
    for _ in range(4 * 16):
        now += Fraction(1, 4)
        p.tick(now)
        cur = parse_live((out / "live.m3u8").read_text())
        check_transition(prev, cur)
        prev = cur
        if not p.playlist.segments:
            continue
        subs = (out / "subs_en.m3u8").read_text(encoding="utf-8")
        # in step: the same window, sequence numbers, dates and discontinuities
        video = [s for s in p.playlist.segments]
        assert f"#EXT-X-MEDIA-SEQUENCE:{p.playlist.media_sequence}\n" in subs
        assert f"#EXT-X-DISCONTINUITY-SEQUENCE:{p.playlist.discontinuity_sequence}\n" in subs
        listed = re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n#EXTINF:([\d.]+),\n(\S+)", subs)
        assert [u for _, _, u in listed] == [f"subs/en/{s.sequence:09d}.vtt" for s in video]
        assert [t for t, _, _ in listed] == re.findall(
            r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", (out / "live.m3u8").read_text()
        )[: len(video)]
        assert subs.count("#EXT-X-DISCONTINUITY\n") == sum(s.discontinuity for s in video)
        if not read_by_ffmpeg and any(s.program == "entry/b" for s in video):
            read_by_ffmpeg = _ffmpeg_reads(out)
        for s in video:
            if s.sequence not in aired:
                aired[s.sequence] = {
                    "program": s.program,
                    "disc": s.discontinuity,
                    "ts": (out / s.uri).read_bytes(),
                    "vtt": (out / f"subs/en/{s.sequence:09d}.vtt").read_text(encoding="utf-8"),
                }
    programs = []
    for seq in sorted(aired):
        if not programs or programs[-1][0] != aired[seq]["program"]:
            programs.append((aired[seq]["program"], []))
        programs[-1][1].append(seq)
    assert [name for name, _ in programs] == ["filler", "entry/a", "entry/b", "filler"], programs
    master = (out / "master.m3u8").read_text()
    assert (
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",LANGUAGE="en",NAME="English",DEFAULT=YES,'
        'AUTOSELECT=YES,URI="subs_en.m3u8"'
    ) in master and 'SUBTITLES="subs"' in master
    for name, seqs in programs:
        for k, seq in enumerate(seqs):
            a = aired[seq]
            ts = tmp_path / f"{seq}.ts"
            ts.write_bytes(a["ts"])
            mpegts = int(re.search(r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00.000", a["vtt"])[1])
            if name == "filler":
                assert "-->" not in a["vtt"]  # empty WebVTT segments while filler airs
                continue
            # the map follows the playout's PTS rewriting: local time k s is the aired segment's
            # first video frame
            assert (mpegts + k * 90000) % (1 << 33) == _first_video_pts(ts), (name, k)
            key = name.split("/")[1]
            for cue in CAPTIONS[key]:
                shown = cue["start_s"] < k + 1 and cue["end_s"] > k
                text = cue["text"].replace("&", "&amp;")
                assert (text in a["vtt"]) == shown, (name, k, a["vtt"])
    # loudness across the program changes and the filler (silence is gated out by R 128)
    whole = tmp_path / "aired.ts"
    whole.write_bytes(b"".join(aired[s]["ts"] for s in sorted(aired)))
    got = ebur128(whole)
    assert abs(got["I"] - TARGET_LUFS) <= 0.5 and got["Peak"] < CEILING_DBTP, got
    for name, seqs in programs:
        if name != "filler":
            prog = tmp_path / f"{name.split('/')[1]}.ts"
            prog.write_bytes(b"".join(aired[s]["ts"] for s in seqs))
            got = ebur128(prog)
            assert abs(got["I"] - TARGET_LUFS) <= 0.5 and got["Peak"] < CEILING_DBTP, (name, got)
    assert read_by_ffmpeg, "no window held program b"


# ------------------------------------------------------------------ hls.js in chromium, live


LIVE_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body>
<video id=v muted autoplay playsinline></video>
<script src="vendor/hls.min.js"></script><script>
window.__r = {errors: [], frags: [], cues: {}};
const v = document.getElementById('v');
const hls = new Hls({lowLatencyMode: true});
hls.on(Hls.Events.ERROR, (e, d) => window.__r.errors.push(d.type + ':' + d.details + ':' + d.fatal));
hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => { hls.subtitleDisplay = true; hls.subtitleTrack = 0; });
// each main fragment as buffered: its place on the element's timeline and its date
hls.on(Hls.Events.FRAG_BUFFERED, (e, d) => { if (d.frag.type === 'main')
  window.__r.frags.push({sn: d.frag.sn, start: d.frag.start, pdt: d.frag.programDateTime}); });
hls.loadSource('master.m3u8'); hls.attachMedia(v);
v.play().catch(e => window.__r.errors.push('play:' + e));
setInterval(() => { for (const t of v.textTracks) { if (!t.cues) continue;
  for (const c of t.cues) { const text = c.getCueAsHTML().textContent;
    window.__r.cues[t.label + '|' + c.startTime.toFixed(3) + '|' + text] =
      {label: t.label, language: t.language, start: c.startTime, end: c.endTime, text}; } } }, 50);
window.tracks = () => Array.from(v.textTracks).map(t => ({kind: t.kind, label: t.label, language: t.language}));
</script></body></html>"""


@pytest.mark.parametrize("front", ["built-in", "nginx"])
def test_hlsjs_live_subtitles_across_a_program_change(tmp_path_factory, front: str) -> None:
    """hls.js in Chromium, from the playout's own server or through the real nginx of
    examples/nginx.conf in front of it: the subtitle track is listed and its cues sit on the
    picture's timeline within one frame, across a program change."""
    import datetime as dt
    import os
    import shutil
    import time

    from playwright.sync_api import sync_playwright

    from avatarrender.playout.playlist import parse_pdt

    from nginx_front import NGINX, served_dir, start_nginx
    from procs import free_port, start_playout, stop_command

    if front == "nginx" and not os.path.exists(NGINX):
        pytest.skip("nginx not installed (scripts/setup.sh --test)")
    media = render_channel_media(tmp_path_factory.mktemp("live_browser"))
    # nginx's workers (www-data) cannot read pytest's 0700 folders
    out = served_dir() if front == "nginx" else media / "out"
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10)
    (media / "schedule.yaml").write_text(f"""filler: {{dir: filler}}
late: {{max_late_s: 3}}
subtitles: [{{language: en, name: English}}]
entries:
  - {{name: a, at: "{start.isoformat()}", segment: a}}
  - {{name: b, segment: b}}
""")
    port = free_port()
    log_path = media / "playout.log"
    proc, url = start_playout(
        "--schedule", str(media / "schedule.yaml"), "--out", str(out), log_path=log_path, port=port
    )
    ng = None
    try:
        if front == "nginx":
            ng, url = start_nginx(out, playout_port=port, work=media / "nginx")
        (out / "subs_page.html").write_text(LIVE_PAGE, encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page()
                page.goto(url + "/subs_page.html")
                deadline = time.time() + 60
                while "entry/b ended" not in log_path.read_text() and time.time() < deadline:
                    page.wait_for_timeout(500)
                page.wait_for_timeout(4000)  # the player is a few seconds behind the edge
                r = page.evaluate("window.__r")
                tracks = page.evaluate("window.tracks()")
            finally:
                browser.close()
    finally:
        if ng is not None:
            ng.terminate()
            ng.wait(10)
        stop_command(proc, log_path)
        if front == "nginx":
            shutil.rmtree(out, ignore_errors=True)
    text = log_path.read_text()
    assert "entry/b ended" in text, text
    if front == "nginx":  # what the player read came through nginx
        access = (media / "nginx" / "access.log").read_text()
        assert re.search(r'"GET /subs_en\.m3u8[^"]* HTTP/1\.1" 200', access), access[-2000:]
        assert re.search(r'"GET /subs/en/\d{9}\.vtt HTTP/1\.1" 200', access), access[-2000:]
        # hls.js asks for parts by range: a whole-file 200 (a failed If-Range after the filler
        # segment was cut for program a) would put that file's parts on the picture twice
        media_answers = re.findall(r'"GET /media/\d{9}\.ts HTTP/1\.1" (\d{3})', access)
        assert media_answers and set(media_answers) == {"206"}, access[-2000:]
    assert not [e for e in r["errors"] if e.endswith(":true")], r["errors"]
    subs = [t for t in tracks if t["kind"] in ("subtitles", "captions")]
    assert [(t["label"], t["language"]) for t in subs] == [("English", "en")], tracks
    started = {k: parse_pdt(m) for k, m in re.findall(r"entry/(\w) started at (\S+)", text)}
    assert set(started) == {"a", "b"}, text
    frags = [f for f in r["frags"] if f["pdt"]]
    assert frags, r

    def element_time(pdt_s: float) -> float:
        """Where the frame dated ``pdt_s`` sits on the element's timeline (from the nearest
        fragment the player buffered before it)."""
        f = max((f for f in frags if f["pdt"] / 1000 <= pdt_s + 1e-6), key=lambda f: f["pdt"])
        return f["start"] + (pdt_s - f["pdt"] / 1000)

    seen = list(r["cues"].values())
    frame = 1 / 30
    for key in ("a", "b"):
        for cue in CAPTIONS[key]:
            got = [c for c in seen if c["text"] == cue["text"]]
            assert len(got) == 1, (cue, seen)
            want0 = element_time(float(started[key]) + cue["start_s"])
            want1 = element_time(float(started[key]) + min(cue["end_s"], 3.0))
            assert abs(got[0]["start"] - want0) <= frame, (cue, got[0], want0)
            assert abs(got[0]["end"] - want1) <= frame, (cue, got[0], want1)


# ------------------------------------------------------------------ across a playout restart

LONG_CUES = [
    {"text": "Charlie one", "start_s": 0.3, "end_s": 1.7},
    {"text": "Charlie two", "start_s": 2.2, "end_s": 3.4},
    {"text": "Charlie three", "start_s": 3.6, "end_s": 4.5},
    {"text": "Charlie four", "start_s": 4.8, "end_s": 5.9},
]


def _check_in_step(out: Path, playlist) -> str:
    """The live subtitle playlist lists exactly the video's segments: same window, media and
    discontinuity sequence, dates and discontinuities. Returns its text."""
    subs = (out / "subs_en.m3u8").read_text(encoding="utf-8")
    video = list(playlist.segments)
    assert f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}\n" in subs
    assert f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}\n" in subs
    listed = re.findall(
        r"(#EXT-X-DISCONTINUITY\n)?#EXT-X-PROGRAM-DATE-TIME:(\S+)\n#EXTINF:([\d.]+),\n(\S+)", subs
    )
    assert [u for *_, u in listed] == [f"subs/en/{s.sequence:09d}.vtt" for s in video]
    assert [bool(d) for d, *_ in listed] == [s.discontinuity for s in video]
    live = (out / "live.m3u8").read_text()
    assert [t for _, t, _, _ in listed] == re.findall(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", live)[: len(video)]
    assert [float(d) for *_, d, _ in listed] == pytest.approx([float(s.duration_s) for s in video], abs=1e-5)
    return subs


def _subs_state(text: str) -> dict:
    """Media sequence, discontinuity sequence and segments {seq: (uri, pdt, disc)} of a subtitle
    playlist."""
    mseq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])
    dseq = int(re.search(r"#EXT-X-DISCONTINUITY-SEQUENCE:(\d+)", text)[1])
    listed = re.findall(
        r"(#EXT-X-DISCONTINUITY\n)?#EXT-X-PROGRAM-DATE-TIME:(\S+)\n#EXTINF:[\d.]+,\n(\S+)", text
    )
    return {
        "mseq": mseq,
        "dseq": dseq,
        "segs": {mseq + i: (u, t, bool(d)) for i, (d, t, u) in enumerate(listed)},
    }


def _check_subs_transition(prev: dict | None, cur: dict) -> None:
    if prev is None:
        return
    assert cur["mseq"] >= prev["mseq"], "subtitle MEDIA-SEQUENCE went backwards"
    removed = [q for q in prev["segs"] if q < cur["mseq"]]
    assert cur["dseq"] == prev["dseq"] + sum(prev["segs"][q][2] for q in removed), (
        "subtitle DISCONTINUITY-SEQUENCE does not count the removed discontinuities"
    )
    for q, seg in cur["segs"].items():
        assert prev["segs"].get(q, seg) == seg, f"subtitle segment {q} changed"
    if prev["segs"] and cur["segs"]:
        assert max(cur["segs"]) >= max(prev["segs"]), "the subtitle playlist lost its newest segment"


def test_live_subtitles_stay_in_step_across_a_playout_restart(tmp_path: Path):
    """Stopped in the middle of a program and restarted on the same folder 1.5 s later: the
    subtitle playlist keeps the video's window, dates and discontinuities, its media sequence
    never goes back, and the WebVTT files aired after the restart hold the cues of the media
    segment they go with, mapped onto its rewritten PTS."""
    yml = make_tiny_segment(tmp_path / "seg_c", duration_s=6.0, speech_s=6.0, tv=False)
    doc = yaml.safe_load(yml.read_text())
    doc["captions"] = {"cues": LONG_CUES, "burn": False, "language": "en"}
    yml.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    render(load_spec(yml), tmp_path / "c", jobs=2)
    render(load_spec(yml).idle(3.0), tmp_path / "filler", jobs=2)
    sched = tmp_path / "schedule.yaml"
    sched.write_text(f"""filler: {{dir: filler}}
late: {{max_late_s: 5}}
subtitles: [{{language: en, name: English}}]
entries:
  - {{name: c, at: "{at(4)}", segment: c}}
""")
    out = tmp_path / "out"
    aired: dict[int, dict] = {}
    prev = prev_subs = None
    restarts = []
    now = T0
    p = Playout(load_schedule(sched), out, filler=tmp_path / "filler")
    p.start(now)
    for step in range(4 * 14):
        if step == 4 * 6 + 2:  # 6.5 s: program c's third media segment is on air
            restarts += [now, set(aired)]  # stopped here, with these aired
            now += Fraction(3, 2)  # down for 1.5 s; a new process takes over the folder
            p = Playout(load_schedule(sched), out, filler=tmp_path / "filler")
            p.start(now)
        now += Fraction(1, 4)
        p.tick(now)
        cur = parse_live((out / "live.m3u8").read_text())
        check_transition(prev, cur)
        prev = cur
        if not p.playlist.segments:
            continue
        cur_subs = _subs_state(_check_in_step(out, p.playlist))
        _check_subs_transition(prev_subs, cur_subs)  # sequences and dates never go back
        prev_subs = cur_subs
        for s in p.playlist.segments:
            if s.sequence not in aired:
                aired[s.sequence] = {
                    "program": s.program,
                    "disc": s.discontinuity,
                    "pdt_s": s.pdt_s,
                    "ts": (out / s.uri).read_bytes(),
                    "vtt": (out / f"subs/en/{s.sequence:09d}.vtt").read_text(encoding="utf-8"),
                }
    assert restarts
    seqs = sorted(aired)
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "a sequence number was skipped or reused"
    # the new process closes the media segment cut at the stop (if it had parts out), then
    # airs after a discontinuity
    after = [q for q in seqs if q not in restarts[1]]
    assert [aired[q]["disc"] for q in after[:2]] in ([True, False], [False, True]), after
    prog = [q for q in seqs if aired[q]["program"] == "entry/c"]
    resumed = next(q for q in after if aired[q]["disc"])
    before_c = [q for q in prog if q < resumed]
    after_c = [q for q in prog if q >= resumed]
    assert before_c and after_c, "program c aired on both sides of the restart"
    c_start = aired[prog[0]]["pdt_s"]  # its first media segment's air time
    ks = {}
    for q in prog:
        a = aired[q]
        ts = tmp_path / f"{q}.ts"
        ts.write_bytes(a["ts"])
        mpegts = int(re.search(r"X-TIMESTAMP-MAP=MPEGTS:(\d+),LOCAL:00:00:00.000", a["vtt"])[1])
        # which media segment of c this is, from the picture: its rewritten PTS less the map's
        delta = (_first_video_pts(ts) - mpegts) % (1 << 33)
        assert delta % 90000 == 0, (q, delta)
        k = ks[q] = delta // 90000
        for cue in LONG_CUES:
            shown = cue["start_s"] < k + 1 and cue["end_s"] > k
            assert (cue["text"] in a["vtt"]) == shown, (q, k, a["vtt"])
    # the picture and its cues on the wall clock: before the stop media segment k aired at
    # c's start + k s; after the restart the program went on from a later media segment,
    # consecutively, each 1 s after the one before
    assert [ks[q] for q in before_c] == list(range(len(before_c)))
    assert all(aired[q]["pdt_s"] == c_start + ks[q] for q in before_c)
    first = ks[after_c[0]]
    assert first >= len(before_c) - 1 and [ks[q] for q in after_c] == list(
        range(first, first + len(after_c))
    ), ks
    assert all(aired[q]["pdt_s"] - ks[q] == aired[after_c[0]]["pdt_s"] - first for q in after_c)
