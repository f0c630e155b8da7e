"""The render end to end, checked on what a player gets: HLS facts and decoded pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from avatarrender.analysis import analyse, segment_audio
from avatarrender.media import ffmpeg_exe
from avatarrender.compose import preview_frame
from avatarrender.scene import Scene
from avatarrender.spec import load_spec

from conftest import clip_luma, make_tiny_segment, run_cli
from media_check import (
    decode_audio,
    decode_video,
    first_packet_is_keyframe,
    frame_hashes,
    parse_playlist,
    sha256,
    stream_facts,
    ts_info,
)


def test_hls_stream_facts(rendered_tiny):
    yml, out = rendered_tiny
    facts = stream_facts(out / "index.m3u8")
    assert facts["codec"] == "h264" and facts["profile"] == "High"
    assert (facts["width"], facts["height"]) == (320, 180)
    assert facts["pix_fmt"] == "yuv420p" and facts["fps"] == 30
    assert facts["audio_codec"] == "aac" and facts["audio_profile"] == "LC"
    assert facts["sample_rate"] == 48000 and facts["channels"] == 2
    assert facts["video_frames"] == 120
    # a keyframe at every media segment start and nowhere else
    t0 = facts["video_start_s"]
    assert [round(t - t0, 3) for t in facts["keyframe_times_s"]] == [0.0, 1.0, 2.0, 3.0]
    # audio and video last equally long (within one frame), priming included
    assert abs((facts["audio_end_s"] - facts["audio_start_s"]) - 4.0) < 1 / 30 + 1024 / 48000
    assert abs(facts["audio_end_s"] - facts["video_end_s"]) < 1 / 30
    assert "bt709" in ts_info(out / "seg_00000.ts")


def test_playlist_and_manifest(rendered_tiny):
    yml, out = rendered_tiny
    pl = parse_playlist(out / "index.m3u8")
    assert pl["tags"]["EXT-X-PLAYLIST-TYPE"] == "VOD" and "EXT-X-ENDLIST" in pl["tags"]
    assert pl["tags"]["EXT-X-TARGETDURATION"] == "1"
    assert [u for u, _ in pl["segments"]] == [f"seg_{i:05d}.ts" for i in range(4)]
    assert sum(d for _, d in pl["segments"]) == pytest.approx(4.0)
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["frame_count"] == 120 and man["planned_segments"] == 4
    assert man["spec_hash"] == load_spec(yml).spec_hash
    assert man["codecs"].startswith("avc1.64") and man["codecs"].endswith(",mp4a.40.2")
    for seg in man["segments"]:
        assert sha256(out / seg["uri"]) == seg["sha256"]
        assert first_packet_is_keyframe(out / seg["uri"])
    # nothing else beside the output: no partial, no lock file
    assert not any(
        p.name.startswith(".") or p.name.endswith(".partial") for p in out.parent.iterdir() if p.name != "seg"
    )
    # ffmpeg reads the whole rendition without a single warning (continuity counters included)
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "warning", "-i", str(out / "index.m3u8"), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_decoded_tv_shows_the_clip_frame_for_that_time(rendered_tiny):
    """Each clip frame is flat grey at a luma that names its index: read the index back."""
    yml, out = rendered_tiny
    spec = load_spec(yml)
    luma = decode_video(out / "index.m3u8", fmt="gray").astype(np.float64)[..., 0]
    x, y, w, h = spec.tv.screen
    tl = analyse(spec)
    t = np.arange(120) / 30
    on = (t >= 1.0) & (t < 3.5)
    assert (tl.tv_clip[on] == 0).all() and (tl.tv_clip[~on] == -1).all()
    screen = luma[:, y + h // 2 : y + h - 4, x + w // 2 : x + w - 4].mean(axis=(1, 2))  # off the glare
    clip_frame = np.round((t[on] - 1.0) * 30).astype(int) % 60  # 2 s clip, looped
    assert np.abs(screen[on] - [clip_luma(k) for k in clip_frame]).max() < 1.5
    # outside the clip's interval the screen shows the off look, unchanged
    off = luma[~on, y + h // 2 : y + h - 4, x + w // 2 : x + w - 4]
    assert off.std(axis=0).max() < 2 and off.mean() < 50


def test_decoded_mouth_follows_speech_and_captions_their_interval(rendered_tiny):
    yml, out = rendered_tiny
    spec = load_spec(yml)
    frames = decode_video(out / "index.m3u8").astype(np.int16)
    ch = spec.character
    mx, my = ch.position[0] + ch.mouth_offset[0], ch.position[1] + ch.mouth_offset[1]
    from PIL import Image

    mw, mh = Image.open(ch.mouths["X"]).size
    mouth = frames[:, my : my + mh, mx : mx + mw]
    rest = mouth[5]  # 0.17 s: silence
    diff = np.abs(mouth - rest).mean(axis=(1, 2, 3))
    t = np.arange(120) / 30
    silence = (t < 0.4) | ((t > 1.9) & (t < 2.1)) | (t > 3.7)
    speech = ((t > 0.7) & (t < 1.5)) | ((t > 2.4) & (t < 3.3))
    assert diff[silence].max() < 6, diff[silence]
    assert (diff[speech] > 15).mean() > 0.5, diff[speech]

    scene = Scene(spec)
    img, (cx, cy) = scene._caption_image(0)
    region = frames[:, cy : cy + img.height, cx : cx + img.width]
    base = region[int(0.2 * 30)]
    cdiff = np.abs(region - base).mean(axis=(1, 2, 3))
    shown = (t >= 0.5) & (t < 1.8)
    hidden = (t < 0.45) | ((t > 1.85) & (t < 1.95)) | (t > 3.05)
    assert cdiff[shown].min() > 20, cdiff[shown]
    assert cdiff[hidden].max() < 6, cdiff[hidden]


def test_preview_is_the_rendered_frame(rendered_tiny, tmp_path):
    yml, out = rendered_tiny
    spec = load_spec(yml)
    frames = decode_video(out / "index.m3u8").astype(np.int16)
    for at in (0.2, 1.5, 2.5):
        pv = preview_frame(spec, at).astype(np.int16)
        assert np.abs(pv - frames[int(at * 30)]).mean() < 4
    png = tmp_path / "f.png"
    proc = run_cli("preview", str(yml), "--at", "1.5", "-o", str(png))
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    assert Image.open(png).size == (320, 180)


def test_audio_is_the_speech(rendered_tiny):
    """Decoded HLS audio against the source: one global alignment, then sample-level agreement."""
    yml, out = rendered_tiny
    spec = load_spec(yml)
    src = segment_audio(spec)
    got = decode_audio(out / "index.m3u8")
    # global alignment by cross-correlation over the first second of speech
    a = src[int(0.5 * 48000) : int(1.5 * 48000)]
    best = max(
        range(0, 4096), key=lambda lag: float(np.dot(got[int(0.5 * 48000) + lag - 2048 :][: a.size], a))
    )
    lag = best - 2048
    assert abs(lag) <= 1100  # at most the encoder's priming
    aligned = got[max(0, lag) :][: src.size - 2048]
    ref = src[: aligned.size]
    err = aligned - ref
    snr = 10 * np.log10(np.sum(ref**2) / np.sum(err**2))
    assert snr > 15, snr
    # around every media segment boundary: no gap, no repeat
    for b in range(1, 4):
        s = b * 48000
        win = slice(s - 960, s + 960)
        e = np.sum((aligned[win] - ref[win]) ** 2)
        r = np.sum(ref[win] ** 2) + 1e-9
        assert e <= max(r * 0.1, 1e-4), (b, e, r)


def test_render_is_idempotent_and_reports_up_to_date(rendered_tiny):
    yml, out = rendered_tiny
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = run_cli("render", str(yml), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["up_to_date"] is True and summary["frames"] == 120
    assert summary["frames_rendered"] == 0 and summary["wall_s"] is None  # not the first render's
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # as a user types it: no progress bar for what was found done
    proc = run_cli("render", str(yml), "-o", str(out))
    assert proc.returncode == 0 and "up to date" in proc.stdout, proc.stderr
    assert "frames" not in proc.stderr, proc.stderr


def test_a_complete_render_with_lost_or_cut_files_is_rendered_again(rendered_tiny, tmp_path):
    yml, done = rendered_tiny
    out = tmp_path / "out"
    shutil.copytree(done, out)
    want = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "manifest.json"}
    (out / "seg_00001.ts").unlink()
    with open(out / "seg_00002.ts", "r+b") as fh:
        fh.truncate(1000)
    proc = run_cli("render", str(yml), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" not in proc.stdout and "2 media segments missing" in proc.stderr, proc.stderr
    # deterministic: the same bytes (the manifest's statistics are the new render's)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "manifest.json"} == want


def test_a_mount_point_is_refused_as_an_output_before_any_work():
    from avatarrender.errors import OutputError
    from avatarrender.render import _usable_output

    # a render is renamed into place when complete: a mount point (a volume) cannot be
    with pytest.raises(OutputError, match="a mount point"):
        _usable_output(Path("/"), force=True)


@pytest.mark.parametrize("out", [".", "", ".."])
def test_the_current_folder_or_one_it_lies_in_is_refused_as_an_output(tiny_segment, tmp_path, out):
    """`-o .` from an empty folder: the render was renamed into the shell's place (the caller left
    in a removed folder; the command then failed on its own cwd, naming no file)."""
    here = tmp_path / "parent" / "here"
    here.mkdir(parents=True)
    proc = run_cli("render", str(tiny_segment), "-o", out, "--force", cwd=here)
    assert proc.returncode == 2 and "the current folder" in proc.stderr, proc.stderr
    assert here.is_dir() and not any(here.iterdir()) and os.listdir(here.parent) == ["here"]


def test_render_into_spool_publishes_atomically(tiny_segment, tmp_path):
    spool = tmp_path / "spool"

    proc = run_cli("render", str(tiny_segment), "--into", str(spool), "--name", "show1", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["output"] == str((spool / "show1").resolve())
    assert summary["frames"] == 120 and summary["segments"] == 4 and summary["realtime_factor"] > 0
    names = sorted(p.name for p in spool.iterdir())
    assert names == ["show1"], names  # no partial left behind, nor the lock file
    assert json.loads((spool / "show1" / "manifest.json").read_text())["complete"] is True
    # the same render again: up to date; another one under that name: refused, the item kept
    before = {p.name: p.read_bytes() for p in (spool / "show1").iterdir()}
    proc = run_cli("render", str(tiny_segment), "--into", str(spool), "--name", "show1", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["up_to_date"], proc.stderr
    doc = yaml.safe_load(tiny_segment.read_text())
    doc["captions"]["cues"][0]["text"] = "Another program"
    other = tiny_segment.with_name("other.yaml")
    other.write_text(yaml.safe_dump(doc))
    proc = run_cli("render", str(other), "--into", str(spool), "--name", "show1", "--json")
    assert proc.returncode == 2 and "in the spool already" in proc.stderr, proc.stderr
    # with --json the failure is a JSON line on stdout too, as success is (for cron)
    summary = json.loads(proc.stdout)
    assert summary["ok"] is False and summary["exit_code"] == 2 and "in the spool already" in summary["error"]
    assert {p.name: p.read_bytes() for p in (spool / "show1").iterdir()} == before
    assert sorted(p.name for p in spool.iterdir()) == ["show1"]
    # a default name carries the YAML's stem and a UTC time stamp, so cron runs do not collide
    proc = run_cli("render", str(tiny_segment), "--into", str(spool), "-q")
    assert proc.returncode == 0, proc.stderr
    assert any(p.name.startswith("segment-") and p.name.endswith("Z") for p in spool.iterdir())


def test_render_command_leaves_at_once_with_everything_written_and_no_process_behind(tiny_segment, tmp_path):
    # the command ends without tearing its interpreter down (os._exit) once it has succeeded:
    # the summary, the output and the workers' exits must all come before that
    import os
    import time
    import uuid

    tag = f"AVATARRENDER_TEST_TAG={uuid.uuid4().hex}".encode()
    env = {**os.environ, tag.decode().split("=")[0]: tag.decode().split("=")[1]}
    out = tmp_path / "outs" / "show"
    proc = run_cli("render", str(tiny_segment), "-o", str(out), "--json", "--force", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames"] == 120  # printed and flushed before leaving
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    assert sorted(p.name for p in out.parent.iterdir()) == ["show"]  # no partial, no lock file

    def tagged() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and tag in open(f"/proc/{entry}/environ", "rb").read().split(b"\0"):
                    if b"zombie" not in open(f"/proc/{entry}/status", "rb").read().lower():
                        pids.append(int(entry))
            except OSError:
                pass
        return pids

    deadline = time.monotonic() + 10.0  # loky's resource trackers end when they see the pipe close
    while tagged() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tagged() == [], "processes left behind"


def test_scene_drawn_at_one_size_renders_at_another(tiny_segment):
    """Coordinates are the background's pixels; a 320x180 scene previews at 160x90 (and 640x360)."""
    for size in ((160, 90), (640, 360)):
        spec = load_spec(tiny_segment, overrides={"width": size[0], "height": size[1]})
        rgb = preview_frame(spec, 2.0).astype(np.float64)
        assert rgb.shape == (size[1], size[0], 3)
        k = size[0] / 320
        x, y, w, h = (v * k for v in spec.tv.screen)
        centre = rgb[int(y + h * 0.6) : int(y + h * 0.9), int(x + w * 0.6) : int(x + w * 0.9)]
        grey = centre.mean()
        # clip frame 30 (1 s into the clip) is flat luma 110: about 110 in RGB too
        assert abs(grey - (clip_luma(30) - 16) * 255 / 219) < 4, (size, grey)
    bad = tiny_segment.read_text().replace("width: 320", "width: 300")
    tiny_segment.write_text(bad)
    with pytest.raises(Exception) as info:
        load_spec(tiny_segment)
    assert "scene.background" in str(info.value) and "shape" in str(info.value)


def test_composing_in_one_buffer_equals_the_full_state_and_tv_frames(tiny_segment):
    """Frames made in one buffer, refreshing only the state regions and the screen, are the
    frames a full copy of the state frame gives, for any sequence of states with the TV on and off."""
    from avatarrender.scene import Frame

    spec = load_spec(tiny_segment)
    scene = Scene(spec)
    tl = analyse(spec, segment_audio(spec))
    states = sorted({tl.state_key(i) for i in range(tl.frame_count)})
    assert len(states) > 3
    x0, y0, x1, y1 = scene.screen
    rng = np.random.default_rng(3)
    running = Frame.empty(spec.output.width, spec.output.height)
    tv_before = False
    for i in range(60):
        state = states[rng.integers(len(states))]
        tv_on = bool(rng.integers(2))
        clip = (
            tuple(
                rng.integers(16, 235, size=s, dtype=np.uint8)
                for s in (
                    (y1 - y0, x1 - x0),
                    ((y1 - y0) // 2, (x1 - x0) // 2),
                    ((y1 - y0) // 2, (x1 - x0) // 2),
                )
            )
            if tv_on
            else None
        )
        want = (
            scene.tv_frame(Frame.empty(spec.output.width, spec.output.height), state, clip).data
            if tv_on
            else scene.state_frame(state).data
        )
        got = scene.compose(running, state, clip, fresh=(i == 0), screen_dirty=tv_before).data
        assert np.array_equal(got, want), (i, state, tv_on)
        tv_before = tv_on


def test_blending_above_the_screen_in_16_bits_is_the_exact_division():
    """What lies above the TV screen (a bezel, a glare, a character in front) is blended over
    every clip frame in 16 bits (:func:`scene._blend_plane`): the same bytes as the 32-bit
    ``(plane * inv + pm + 127) // 255``, for every plane value, overlay value and alpha, the
    chroma's 2x2 mean alphas included."""
    from avatarrender.scene import _blend_plane

    plane = np.arange(256, dtype=np.uint8)[:, None, None]  # what the clip shows
    over = np.arange(0, 256, 3, dtype=np.float32)[None, :, None]  # the overlay's Y, U or V
    for alphas in (np.arange(256) / 255.0, np.arange(1021) / 4 / 255.0):  # full-res, 2x2 means
        a = alphas.astype(np.float32)[None, None, :]
        inv = np.rint((1 - a) * 255)
        pm = np.rint(over * a * 255)
        want = (plane.astype(np.uint32) * inv.astype(np.uint32) + pm.astype(np.uint32) + 127) // 255
        got = np.broadcast_to(plane, want.shape).copy()
        inv16 = np.broadcast_to(inv.astype(np.uint16), want.shape)
        _blend_plane(got, inv16, np.broadcast_to((pm + 127).astype(np.uint16), want.shape))
        assert np.array_equal(got, want.astype(np.uint8))


def test_scene_memory_does_not_grow_with_the_number_of_captions(tmp_path):
    """A long segment with a caption every half second: the Scene keeps a bounded number of drawn
    captions and patches, so a worker's memory stays flat; frames stay right (captions change)."""
    from avatarrender import scene as scene_mod
    from avatarrender.scene import Frame
    from conftest import make_tiny_segment

    cues = [{"text": f"Caption number {i}", "start_s": i * 0.5, "end_s": i * 0.5 + 0.45} for i in range(200)]
    yml = make_tiny_segment(
        tmp_path / "seg",
        speech_s=100.5,
        width=160,
        height=90,
        extra={"captions": {"cues": cues, "style": {"size_px": 8}}},
    )
    spec = load_spec(yml)
    sc = Scene(spec)
    tl = analyse(spec, segment_audio(spec))
    buf = Frame.empty(spec.output.width, spec.output.height)
    seen = set()
    for i in range(0, tl.frame_count, 3):
        state = tl.state_key(i)
        data = sc.compose(buf, state, None, fresh=(i == 0), screen_dirty=False).data
        assert np.array_equal(data, sc.state_frame(state).data)
        seen.add(state[2])
    assert len(seen) > 150  # the captions did come and go
    assert len(sc._captions_drawn) <= scene_mod._KEEP_CAPTIONS
    assert len(sc._patches) <= scene_mod._KEEP_PATCHES


def test_scene_static_part_is_reused_only_while_its_files_are_the_same(tmp_path):
    """A render service builds a Scene per submission: the room's static part is built once and
    reused while its images are unchanged, and frames are what a fresh build gives."""
    import os

    from PIL import Image

    from avatarrender import scene as scene_mod

    yml = make_tiny_segment(tmp_path / "seg", tv=False)
    spec = load_spec(yml)
    scene_mod._STATIC.clear()
    fresh = preview_frame(spec, 1.0)
    assert len(scene_mod._STATIC) == 1
    again = preview_frame(spec, 1.0)  # from the cache: the same frame, one caption layer
    assert np.array_equal(fresh, again)
    assert [layer.kind for layer in scene_mod.Scene(spec).layers].count("caption") == 1
    bg = tmp_path / "seg" / "assets" / "room.png"
    Image.new("RGB", Image.open(bg).size, (200, 10, 10)).save(bg)
    os.utime(bg, ns=(1, 1))  # even with an old time: the size or inode differs
    red = preview_frame(load_spec(yml), 1.0)
    assert abs(int(red[2, 2, 0]) - 200) < 4 and abs(int(fresh[2, 2, 0]) - 200) > 50


def test_skip_frames_change_no_frame_count_time_or_quality(rendered_tiny, tmp_path):
    """The shared render has skip frames (on by default); the same segment with
    ``skip_identical_frames: false`` has the same frames at the same times, and the decoded
    frames are as close to the composed ones (mean PSNR over the segment within 1 dB, the
    worst frame within 3 dB)."""
    import av
    import yaml

    from avatarrender.compose import compose_frames
    from avatarrender.render import render

    yml, out = rendered_tiny
    spec_frames = lambda y: load_spec(y).frame_count  # noqa: E731
    man = json.loads((out / "manifest.json").read_text())
    assert man["render"]["skipped_frames"] > 30  # silence and held states in 4 s
    doc = yaml.safe_load(yml.read_text())
    doc.setdefault("output", {})["skip_identical_frames"] = False
    off_yml = yml.with_name("segment-noskip.yaml")
    off_yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    off = tmp_path / "off"
    render(load_spec(off_yml), off, jobs=2, chunk_segments=1)
    assert json.loads((off / "manifest.json").read_text())["render"]["skipped_frames"] == 0

    def pts(folder):
        with av.open(str(folder / "index.m3u8")) as c:
            return [f.pts for f in c.decode(video=0)]

    assert pts(out) == pts(off) and len(pts(out)) == spec_frames(yml)
    spec = load_spec(yml)
    composed = np.stack(
        [
            np.frombuffer(bytes(d), np.uint8)[: spec.output.width * spec.output.height]
            for d, _ in compose_frames(spec, analyse(spec), Scene(spec))
        ]
    ).astype(np.float64)
    composed = composed.reshape(-1, spec.output.height, spec.output.width)

    def psnr_db(folder):  # each frame's
        y = decode_video(folder / "index.m3u8", fmt="gray")[..., 0].astype(np.float64)
        mse = ((y - composed) ** 2).mean(axis=(1, 2))
        return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-9))

    skips, plain = psnr_db(out), psnr_db(off)
    # a skip frame repeats the decoded frame before it where x264 would refine it a little: about
    # 0.3-0.5 dB of the mean at 45 dB, as the speech moves the mouth. A frame repeated that should
    # not be (another mouth) is the worst frame by far: 10 dB and more under the others
    assert skips.mean() > plain.mean() - 1.0, (skips.mean(), plain.mean())
    assert skips.min() > plain.min() - 3.0, (skips.min(), plain.min())


def test_soundtrack_in_a_process_of_its_own_is_the_same_and_fails_fast(rendered_tiny, tmp_path):
    """The render service mixes, normalises and encodes the soundtrack in a process of its own
    (render.soundtrack_process): the same media and loudness as in a thread; a soundtrack that
    fails stops the render at once with its error (the chunks are told; no 120 s wait); a
    process that died is replaced by the service before the next render."""
    import concurrent.futures
    import time

    from avatarrender.render import render, shutdown_soundtrack_process, soundtrack_process
    from avatarrender.service import RenderService

    yml, ref = rendered_tiny
    spec = load_spec(yml)
    pool = soundtrack_process()
    try:
        man = render(spec, tmp_path / "apart", jobs=2, chunk_segments=1, audio_pool=pool)
        want = json.loads((ref / "manifest.json").read_text())
        assert man["loudness"] == want["loudness"]
        assert frame_hashes(tmp_path / "apart" / "index.m3u8") == frame_hashes(ref / "index.m3u8")
        got, exp = decode_audio(tmp_path / "apart" / "index.m3u8"), decode_audio(ref / "index.m3u8")
        assert got.shape == exp.shape and np.array_equal(got, exp)
    finally:
        shutdown_soundtrack_process(pool)

    class Failing(concurrent.futures.Executor):
        def submit(self, fn, *args, **kwargs):
            f = concurrent.futures.Future()
            f.set_exception(RuntimeError("the soundtrack process broke"))
            return f

    t0 = time.monotonic()
    with pytest.raises(Exception, match="audio encoder failed|soundtrack process broke"):
        render(spec, tmp_path / "failing", jobs=2, chunk_segments=1, audio_pool=Failing())
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "failing" / "manifest.json").exists()

    service = RenderService(tmp_path / "inbox", tmp_path / "spool")
    first = service._soundtrack_process()
    for p in list(first._processes.values()):
        p.kill()
        p.join(5)
    with pytest.raises(concurrent.futures.process.BrokenProcessPool):
        first.submit(int, 1).result(timeout=30)
    second = service._soundtrack_process()
    try:
        assert second is not first and second.submit(int, 7).result(timeout=30) == 7
    finally:
        service.close()
    assert not second._processes


def test_audio_encoder_is_lowered_only_when_the_render_airs_while_it_renders(
    tiny_segment, tmp_path, monkeypatch
):
    # a render that does not air (cron, the CLI) keeps its AAC encoder at its own priority: lowered,
    # the workers outran it and waited for its frames; one that airs while it renders (a lead)
    # lowers it after its first seconds, so that the first media segments' video goes first
    import avatarrender.audio
    import avatarrender.render

    lowered: list[int] = []
    real = avatarrender.audio.background_priority

    def record(pid: int = 0) -> None:
        lowered.append(pid)
        real(pid)

    monkeypatch.setattr(avatarrender.audio, "background_priority", record)
    monkeypatch.setattr(avatarrender.render, "background_priority", record)
    monkeypatch.setattr(avatarrender.render, "URGENT_AUDIO_S", 1.0)  # the 4 s segment is longer
    spec = load_spec(tiny_segment)
    avatarrender.render.render(spec, tmp_path / "plain", jobs=1)
    assert lowered == []
    avatarrender.render.render(spec, tmp_path / "airing", jobs=1, lead_frames=12)
    assert len(lowered) == 2 and lowered[0] > 0  # the encoder process, then the true-peak thread
    plain, airing = (decode_audio(tmp_path / d / "index.m3u8") for d in ("plain", "airing"))
    assert plain.shape == airing.shape and np.array_equal(plain, airing)  # the same track either way


def test_images_partly_outside_the_frame_are_cut_at_its_edges(tmp_path):
    """A character whose body goes below the frame and off its left edge, and a layer over its
    top-right corner, render cut at the edges (they were refused); one wholly outside is refused,
    naming the field. Checked on the decoded render, for state images and for base + sprites."""
    from PIL import Image

    yml = make_tiny_segment(tmp_path / "seg", tv=False, captions=False, speech_s=1.0)
    a = yml.parent / "assets"
    for eyes in ("open", "closed"):  # 40x100: its left 10 columns red, the rest green
        img = Image.new("RGBA", (40, 100), (0, 200, 0, 255))
        img.paste((255, 0, 0, 255), (0, 0, 10, 100))
        img.save(a / f"X_{eyes}.png")
    corner = Image.new("RGBA", (40, 40), (255, 0, 255, 255))  # its top 20 rows yellow
    corner.paste((255, 255, 0, 255), (0, 0, 40, 20))
    corner.save(a / "corner.png")
    doc = yaml.safe_load(yml.read_text())
    doc["character"] = {"position": [-10, 120], "states": "assets/{mouth}_{eyes}.png"}
    doc["scene"]["layers"] = [{"image": "assets/corner.png", "position": [300, -20]}]
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out"
    r = run_cli("render", str(yml), "-o", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    frame = decode_video(out / "index.m3u8")[10].astype(int)  # 320x180
    body = frame[125:175, 2:28]  # the character's visible part: green, none of its red
    assert body[..., 1].min() > 150 and body[..., 0].max() < 80, body.reshape(-1, 3)[:4]
    top = frame[2:18, 302:318]  # the layer's visible part: magenta, none of its yellow
    assert top[..., 0].min() > 200 and top[..., 1].max() < 80 and top[..., 2].min() > 200

    # base + sprites, the base partly below and left of the frame
    doc = yaml.safe_load(yml.read_text())
    base = yaml.safe_load(make_tiny_segment(tmp_path / "seg2", tv=False, captions=False).read_text())
    doc["character"] = {**base["character"], "position": [-20, 100]}
    doc["scene"]["layers"] = []
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(yml)
    state = analyse(spec, segment_audio(spec)).state_key(10)
    want = Scene(spec).state_frame(state).to_rgb().astype(int)[100:180, 0:60]
    assert (np.abs(want - want[:1, -1:]).sum(axis=2) > 60).mean() > 0.3  # the base is there
    r = run_cli("render", str(yml), "-o", str(tmp_path / "out2"), "--quiet")
    assert r.returncode == 0, r.stderr
    got = decode_video(tmp_path / "out2" / "index.m3u8")[10].astype(int)[100:180, 0:60]
    assert np.abs(got - want).mean() < 6, np.abs(got - want).mean()

    doc["character"]["position"] = [-200, 100]  # wholly outside: a mistake, said as the field
    yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_cli("render", str(yml), "-o", str(tmp_path / "out3"))
    assert r.returncode != 0 and "character.position" in r.stderr and "wholly outside" in r.stderr
    assert str(yml) in r.stderr or yml.name in r.stderr
    assert not (tmp_path / "out3").exists()
