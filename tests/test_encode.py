"""The in-process encoder against bare ffmpeg, and chunks following an AAC track still being written."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avatarrender import h264
from avatarrender.audio import AdtsStream, encode_aac
from avatarrender.audiotrack import AudioSource, failed_path, part_path
from avatarrender.encode import ChunkEncoder, SegmentJob, fit_filters, rawvideo_input_args, x264_args
from avatarrender.errors import AvatarRenderError
from avatarrender.media import ffmpeg_exe
from avatarrender.spec import load_spec

from conftest import make_tiny_segment
from media_check import x264_clip, yuv420p_frames


def _frames(n: int, w: int, h: int) -> np.ndarray:
    """Moving, textured yuv420p frames (flat buffers): x264 has real decisions to make."""
    rng = np.random.default_rng(7)
    tex = rng.integers(16, 235, size=(h * 2, w * 2), dtype=np.uint8)
    out = np.empty((n, w * h * 3 // 2), dtype=np.uint8)
    for i in range(n):
        y = tex[i % h : i % h + h, (3 * i) % w : (3 * i) % w + w]
        out[i, : w * h] = y.ravel()
        out[i, w * h :] = 128 + (i % 7)
    return out


def _h264_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def test_same_bitstream_as_bare_ffmpeg(tmp_path):
    """ChunkEncoder's x264 (PyAV's libavcodec) writes exactly what ``ffmpeg -c:v libx264`` writes
    from the same frames with the same options, so the speed benchmark's floor is this encoder."""
    yml = make_tiny_segment(tmp_path / "seg", speech_s=4.0, width=320, height=180)
    out = load_spec(yml).output
    frames = _frames(out.frames_per_segment, out.width, out.height)
    raw = tmp_path / "frames.yuv"
    raw.write_bytes(frames.tobytes())
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-y",
            *rawvideo_input_args(out),
            "-i",
            str(raw),
            *x264_args(out, threads=1),
            "-f",
            "mpegts",
            str(tmp_path / "bare.ts"),
        ],
        check=True,
    )
    aac = tmp_path / "a.aac"
    encode_aac(np.zeros(48000, np.float32), aac, bitrate_kbps=out.audio_bitrate_kbps)
    adts = AdtsStream.read(aac)
    ours = tmp_path / "ours.ts"
    job = SegmentJob(path=ours, frames=len(frames), start_s=Fraction(0), end_s=None)
    with ChunkEncoder(
        out,
        [job],
        audio=lambda j: ([adts.frame(k) for k in range(adts.frame_count)], adts.pts_s(0)),
        threads=1,
    ) as enc:
        for f in frames:
            enc.write(f)
        enc.finish()
    bare, mine = _h264_packets(tmp_path / "bare.ts"), _h264_packets(ours)
    assert len(mine) == len(frames)
    assert mine[0] == bare[0]
    # every later frame carries the IDR's parameter sets (an LL-HLS part demuxed on its own
    # has them: Shaka Player refused every part but a segment's first), then x264's own units
    nals = [[au[s:e] for s, e in h264.nal_units(au)] for au in mine]
    params = [u for u in nals[0] if u[0] & 0x1F in (7, 8)]
    assert [u[0] & 0x1F for u in params] == [7, 8]
    for units in nals[1:]:
        assert units[0][0] & 0x1F == 9 and units[1 : 1 + len(params)] == params  # AUD first
    same = [[u for u in units if u[0] & 0x1F not in (7, 8)] for units in nals[1:]]
    assert same == [[au[s:e] for s, e in h264.nal_units(au)] for au in bare[1:]]
    with av.open(str(ours)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) == adts.frame_count


def test_encoder_refuses_too_many_or_too_few_frames(tmp_path):
    yml = make_tiny_segment(tmp_path / "seg", speech_s=4.0, width=64, height=36)
    out = load_spec(yml).output
    frames = _frames(3, out.width, out.height)
    silent = lambda j: ([], Fraction(0))
    with ChunkEncoder(
        out, [SegmentJob(tmp_path / "x.ts", 2, Fraction(0), None)], audio=silent, threads=1
    ) as enc:
        enc.write(frames[0])
        with pytest.raises(ValueError, match="1 of its 1|0 of its 1"):
            enc.finish()
    assert not (tmp_path / "x.ts").exists()  # nothing half-written


def _adts_bytes(tmp_path: Path, seconds: float) -> bytes:
    aac = tmp_path / "src.aac"
    t = np.arange(int(48000 * seconds)) / 48000
    encode_aac((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), aac, bitrate_kbps=96)
    return aac.read_bytes()


def test_partial_adts_leaves_out_an_unfinished_frame(tmp_path):
    data = _adts_bytes(tmp_path, 1.0)
    whole = AdtsStream.parse(data)
    cut = int(whole.offsets[10]) + 5  # five bytes into frame 10
    part = AdtsStream.parse(data[:cut], complete=False)
    assert part.frame_count == 10
    assert part.frame(9) == whole.frame(9)


def test_chunk_waits_for_the_audio_it_needs(tmp_path):
    """A segment's audio is taken from the growing NAME.part once its frames are there; the last
    segment waits for the finished file."""
    data = _adts_bytes(tmp_path, 3.0)
    whole = AdtsStream.parse(data)
    path = tmp_path / "audio.aac"
    src = AudioSource(path)
    written = threading.Event()

    def writer():
        with open(part_path(path), "wb") as fh:
            for i in range(0, len(data), 700):
                fh.write(data[i : i + 700])
                fh.flush()
                time.sleep(0.01)
        written.set()
        time.sleep(0.2)
        part_path(path).rename(path)

    t = threading.Thread(target=writer)
    t.start()
    try:
        first = SegmentJob(tmp_path / "a.ts", 30, Fraction(0), Fraction(1))
        frames, start = src(first)
        k0, k1 = whole.frames_for(Fraction(0), Fraction(1))
        assert frames == [whole.frame(k) for k in range(k0, k1)] and start == whole.pts_s(k0)
        assert not written.is_set()  # it did not wait for the whole track
        last = SegmentJob(tmp_path / "b.ts", 30, Fraction(2), None)
        frames, start = src(last)
        assert path.is_file()  # the last one waited for the finished file
        k0, k1 = whole.frames_for(Fraction(2), None)
        assert frames == [whole.frame(k) for k in range(k0, k1)] and k1 == whole.frame_count
    finally:
        t.join()


def test_chunk_stops_waiting_when_the_audio_encoder_failed(tmp_path):
    path = tmp_path / "audio.aac"
    part_path(path).write_bytes(b"")
    failed_path(path).touch()
    with pytest.raises(AvatarRenderError, match="audio encoder failed"):
        AudioSource(path)(SegmentJob(tmp_path / "a.ts", 30, Fraction(0), Fraction(1)))


_SCALE = "flags=bicubic:in_color_matrix=bt601:out_color_matrix=bt601:out_range=tv"
_TO_709 = "colorspace=all=bt709:iall=bt601-6-525:range=tv:irange=tv:fast=1:format=yuv420p"


def _cli_tv(
    path: Path, t_s: float, n: int, w: int, h: int, fps: Fraction, *, fit: list[str] | None = None
) -> np.ndarray:
    """The clip's frames from ``t_s`` as ffmpeg's fps filter gives them over the whole clip:
    decoded from its start, its time moved so that T is 0, ``fps=R:start_time=0`` (at T the
    frame nearest T, or the last before it when none is nearer), scaled, yuv420p. (Not ``-ss T``:
    its accurate seek drops the frames before T, so at T it shows the next frame instead, and a
    run started at a frame gave other frames than the run before it.) ``fit``: filters in place
    of the scale (a clip of another shape than the screen)."""
    # (the test clips are small and untagged: BT.601, taken to BT.709 after the scale)
    scale = ",".join(fit) if fit else f"scale={w}:{h}:{_SCALE}"
    vf = f"setpts=PTS-{t_s:.6f}/TB,fps={fps.numerator}/{fps.denominator}:start_time=0,{scale},format=yuv420p,{_TO_709}"
    out = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-an",
            "-vf",
            vf,
            "-frames:v",
            str(n),
            "-f",
            "rawvideo",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, w * h * 3 // 2)


@pytest.mark.parametrize("clip_fps", [25, 30])
@pytest.mark.parametrize("out_fps", [Fraction(30), Fraction(30000, 1001), Fraction(25)])
def test_tv_reader_decodes_what_the_ffmpeg_command_decodes(tmp_path, clip_fps, out_fps):
    """The in-process TV decoder picks, scales and converts exactly the frames of the ffmpeg
    command (:func:`_cli_tv`): same frame-rate conversion, same pixels."""
    from avatarrender.encode import TVReader
    from conftest import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, duration_s=2.0, fps=clip_fps)
    w, h, n = 96, 54, 20
    for t_s in (0.0, 0.5, 31 / 30, 0.9, 1.7):
        want = _cli_tv(clip, t_s, n, w, h, out_fps)
        reader = TVReader([clip], (w, h), out_fps)
        got = np.array(
            [
                np.concatenate([p.ravel() for p in planes])
                for planes in reader.frames(np.zeros(n, np.int16), t_s + np.arange(n) / float(out_fps))
            ]
        )
        assert len(want) > 0
        assert np.array_equal(got[: len(want)], want), (t_s, got[:, 0], want[:, 0])
        assert all(np.array_equal(g, want[-1]) for g in got[len(want) :])  # past the clip's end: held


@pytest.mark.parametrize("rotation", ["90", "180", "270", "90 hflip", "0 vflip", "180 hflip", "270 vflip"])
def test_tv_reader_turns_a_rotated_clip_upright_like_ffmpeg(tmp_path, rotation):
    """A phone clip carries its rotation as a display matrix; ffmpeg turns it upright, so do we.
    A mirrored one (a front camera's) too: it was turned but not mirrored."""
    from avatarrender.encode import TVReader

    src, clip = tmp_path / "src.mp4", tmp_path / "rotated.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=160x90:r=30:d=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "10",
            str(src),
        ],
        check=True,
    )
    subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-display_rotation",
            rotation.split()[0],
            *[f"-display_{flip}" for flip in rotation.split()[1:]],
            "-i",
            str(src),
            "-c",
            "copy",
            str(clip),
        ],
        check=True,
    )
    w, h, n, fps = 96, 54, 5, Fraction(30)
    # upright, a portrait clip on a landscape screen: whole, between black bars (fit: contain)
    sideways = int(rotation.split()[0]) in (90, 270)
    aspect = Fraction(90, 160) if sideways else Fraction(160, 90)
    fit = fit_filters(aspect, (w, h), "contain")
    assert len(fit) == (2 if sideways else 1)
    want = _cli_tv(clip, 0.5, n, w, h, fps, fit=fit)
    got = np.array(
        [
            np.concatenate([p.ravel() for p in planes])
            for planes in TVReader([clip], (w, h), fps).frames(np.zeros(n, np.int16), 0.5 + np.arange(n) / 30)
        ]
    )
    assert np.array_equal(got, want)
    unturned = _cli_tv(src, 0.5, n, w, h, fps, fit=fit)
    assert not np.array_equal(got, unturned)  # it was turned


def test_tv_reader_counts_time_from_an_mpegts_clips_start(tmp_path):
    """An MPEG-TS clip starts at 1.4 s (or anywhere): times count from its start, as with -ss.
    And its frame at T is the one shown at T: ffmpeg's -ss on MPEG-TS lands on the frame a
    P-frame after a keyframe and shows the next keyframe's frames from T (0.17 s late here)."""
    from avatarrender.encode import TVReader, close_clip_decoders
    from conftest import clip_luma, make_clip

    mp4, ts = tmp_path / "clip.mp4", tmp_path / "clip.ts"
    make_clip(mp4, duration_s=2.0, fps=30)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(mp4), "-c", "copy", str(ts)], check=True)
    with av.open(str(ts)) as c:
        assert c.start_time > 0
    w, h, n, fps = 96, 54, 10, Fraction(30)
    for t_s in (0.0, 0.5, 0.9):
        close_clip_decoders()
        want = _cli_tv(ts, t_s, n, w, h, fps)
        got = np.array(
            [
                np.concatenate([p.ravel() for p in planes])
                for planes in TVReader([ts], (w, h), fps).frames(
                    np.zeros(n, np.int16), t_s + np.arange(n) / 30
                )
            ]
        )
        assert len(want) == n and np.array_equal(got, want), t_s
        assert abs(int(got[0, 0]) - clip_luma(round(t_s * 30))) <= 1, (t_s, got[0, 0])


def _clip_structure(path: Path) -> tuple[int, bool, bool]:
    """(keyframes, any frame decoded after a later one, any frame decoded after a keyframe but
    shown before it: an open GOP's leading pictures) of the clip's packets."""
    with av.open(str(path)) as c:
        packets = [(p.pts, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    keys = [i for i, (_, k) in enumerate(packets) if k]
    reordered = any(b[0] < a[0] for a, b in zip(packets, packets[1:]))
    leading = any(
        packets[j][0] < packets[k][0] for k in keys[1:] for j in range(k + 1, min(k + 4, len(packets)))
    )
    return len(keys), reordered, leading


# A worker's chunks of one clip, each a list of runs (start s, frames), at 30 fps: the first
# seeks; the second goes on where the first ended; the third starts ahead (after another
# worker's chunk); the fourth starts ahead again, then jumps back (a looping clip)
_WORKER_CHUNKS = [[(0.5, 20)], [(0.5 + 20 / 30, 20)], [(2.0, 15)], [(3.0, 10), (1.0, 10)]]


@pytest.mark.parametrize(
    "kind, clip_args, ts, seeks",
    [
        ("long GOP", dict(gop=250), False, 2),
        ("B-frames", dict(gop=250, bframes=3), False, 2),
        ("25 fps at 30", dict(gop=250, fps=25, bframes=2), False, 2),
        # keyframes at 0, 1.5 and 3 s, leading B-frames before the last two: the second chunk
        # decodes on across the one at 1.5 s, where a seek to 2 s starts from it
        ("open GOP", dict(gop=45, bframes=3, open_gop=True), False, 4),
        ("MPEG-TS", dict(gop=250, bframes=3), True, None),
    ],
)
def test_tv_reader_decodes_on_across_runs_and_chunks_as_a_fresh_seek_would(
    tmp_path, kind, clip_args, ts, seeks
):
    """A worker keeps the clip's decoder from run to run and chunk to chunk and decodes on where
    a seek would start from the same packet; every run's frames are those of a reader that
    seeks afresh, and those of the ffmpeg command, so the render's frames do not depend on
    which worker took which chunk."""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / ("clip.ts" if ts else "clip.mp4")
    x264_clip(clip, **clip_args)
    keyframes, reordered, leading = _clip_structure(clip)
    assert reordered == (clip_args.get("bframes", 0) > 0)
    assert leading == clip_args.get("open_gop", False)
    assert keyframes == (3 if clip_args.get("open_gop") else 1)
    w, h, fps = 96, 54, Fraction(30)

    def flat(it):
        return [np.concatenate([p.ravel() for p in planes]) for planes in it]

    def times(t_s, n):
        return t_s + np.arange(n) / float(fps)

    close_clip_decoders()
    kept, seek_count, continued = [], 0, 0
    for runs in _WORKER_CHUNKS:
        reader = TVReader([clip], (w, h), fps)
        n = sum(k for _, k in runs)
        kept += flat(reader.frames(np.zeros(n, np.int16), np.concatenate([times(t, k) for t, k in runs])))
        seek_count += reader.seeks
        continued += reader.continued
    runs = [r for chunk in _WORKER_CHUNKS for r in chunk]
    assert seek_count + continued == len(runs)
    if seeks is not None:
        assert seek_count == seeks, (seek_count, continued)  # the forward path was taken
    at = 0
    for t_s, n in runs:
        close_clip_decoders()
        fresh = TVReader([clip], (w, h), fps)
        got = flat(fresh.frames(np.zeros(n, np.int16), times(t_s, n)))
        assert fresh.seeks == 1
        assert all(np.array_equal(a, b) for a, b in zip(kept[at : at + n], got)), (kind, t_s)
        want = _cli_tv(clip, t_s, n, w, h, fps)
        assert len(want) == n and np.array_equal(np.array(got), want), (kind, t_s)
        at += n
    close_clip_decoders()


def test_tv_reader_goes_back_a_few_frames_after_skipping_b_frames(tmp_path):
    """Frames before a run's start that no frame refers to (B-frames) are not decoded; a run
    that then starts a frame or a few back, among them, seeks rather than miss them."""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "clip.mp4"
    x264_clip(clip, gop=250, bframes=3)
    w, h, fps = 96, 54, Fraction(30)

    def flat(it):
        return [np.concatenate([p.ravel() for p in planes]) for planes in it]

    def times(t_s, n):
        return t_s + np.arange(n) / float(fps)

    for back in range(1, 5):
        close_clip_decoders()
        flat(TVReader([clip], (w, h), fps).frames(np.zeros(5, np.int16), times(0.5, 5)))
        reader = TVReader([clip], (w, h), fps)  # the next chunk: on to 2 s, then back
        got = flat(
            reader.frames(np.zeros(4, np.int16), np.concatenate([times(2.0, 1), times(2.0 - back / 30, 3)]))
        )
        assert reader.continued >= 1
        close_clip_decoders()
        fresh = flat(TVReader([clip], (w, h), fps).frames(np.zeros(3, np.int16), times(2.0 - back / 30, 3)))
        assert all(np.array_equal(a, b) for a, b in zip(got[1:], fresh)), back
    close_clip_decoders()


def test_tv_clip_decoders_are_kept_per_thread(tmp_path):
    """Two threads (a threaded Dask worker's chunks) reading the same clip side by side each
    keep their own decoder: their frames are those of a fresh reader."""
    import threading

    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "clip.mp4"
    x264_clip(clip, gop=250, bframes=3)
    w, h, fps, n = 96, 54, Fraction(30), 12
    starts = {0: [0.2, 1.4, 2.6], 1: [0.8, 2.0, 3.2]}
    got: dict[tuple[int, float], list[np.ndarray]] = {}
    barrier = threading.Barrier(2)

    def work(who: int) -> None:
        for t_s in starts[who]:
            reader = TVReader([clip], (w, h), fps)
            frames = reader.frames(np.zeros(n, np.int16), t_s + np.arange(n) / 30)
            out = []
            for i, planes in enumerate(frames):
                out.append(np.concatenate([p.ravel() for p in planes]))
                if i % 4 == 0:
                    barrier.wait(timeout=30)  # the other thread decodes in between
            got[who, t_s] = out
        close_clip_decoders()

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6
    for (_, t_s), frames in got.items():
        close_clip_decoders()
        fresh = [
            np.concatenate([p.ravel() for p in planes])
            for planes in TVReader([clip], (w, h), fps).frames(np.zeros(n, np.int16), t_s + np.arange(n) / 30)
        ]
        assert all(np.array_equal(a, b) for a, b in zip(frames, fresh)), t_s
    close_clip_decoders()


def test_tv_reader_keeps_few_decoders_and_reopens_a_replaced_clip(tmp_path):
    """The kept decoders are bounded, another spec's clips are closed, and a clip file replaced
    under the same name is decoded anew (not from the old file's decoder)."""
    import os

    from avatarrender import encode
    from avatarrender.encode import KEEP_CLIP_DECODERS, TVReader, close_clip_decoders
    from conftest import clip_luma, make_clip

    close_clip_decoders()
    clips = [tmp_path / f"c{i}.mp4" for i in range(KEEP_CLIP_DECODERS + 2)]
    for c in clips:
        make_clip(c, duration_s=1.0)
    w, h, fps = 32, 18, Fraction(30)
    n = len(clips)
    reader = TVReader(clips, (w, h), fps)
    list(reader.frames(np.arange(n, dtype=np.int16), np.full(n, 0.2)))
    assert len(encode._kept_decoders()) == KEEP_CLIP_DECODERS
    TVReader(clips[-1:], (w, h), fps)  # another spec: the others' decoders are closed
    assert [k[0] for k in encode._kept_decoders()] == [str(clips[-1])]

    clip = clips[0]
    first = [
        p[0].copy()
        for p in TVReader([clip], (w, h), fps).frames(np.zeros(2, np.int16), np.array([0.2, 0.2 + 1 / 30]))
    ]
    make_clip(tmp_path / "other.mp4", duration_s=2.0)
    os.replace(tmp_path / "other.mp4", clip)
    # a new file: the same times give the other clip's frames (frame 30 onwards is past the old one)
    later = [
        p[0].copy()
        for p in TVReader([clip], (w, h), fps).frames(np.zeros(2, np.int16), np.array([1.5, 1.5 + 1 / 30]))
    ]
    assert abs(int(later[0][0, 0]) - clip_luma(45)) <= 1 and int(first[0][0, 0]) != int(later[0][0, 0])
    close_clip_decoders()
    assert not encode._kept_decoders()


def test_audio_encoder_goes_to_the_background_after_the_urgent_seconds(tmp_path):
    """The track is the same bytes whether the encoder is lowered to nice 10 after its first
    seconds or not, and the lowering reaches the encoder process and the calling thread."""
    import os
    import subprocess
    import threading

    from avatarrender.audio import background_priority

    t = np.arange(48000 * 6) / 48000
    y = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    plain, urgent = tmp_path / "plain.aac", tmp_path / "urgent.aac"
    encode_aac(y, plain, bitrate_kbps=96)
    encode_aac(y, urgent, bitrate_kbps=96, urgent_s=2.0)
    assert plain.read_bytes() == urgent.read_bytes() and AdtsStream.read(urgent).frame_count > 280

    # a process with threads (ffmpeg 7 encodes in one of its own): every thread is lowered
    code = "import threading, time; threading.Thread(target=time.sleep, args=(5,)).start(); print(1, flush=True); time.sleep(5)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"1"
        tids = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tids) >= 2
        base = os.getpriority(os.PRIO_PROCESS, child.pid)
        background_priority(child.pid)
        assert [os.getpriority(os.PRIO_PROCESS, t) for t in tids] == [max(10, base)] * len(tids)
    finally:
        child.kill()
        child.wait()
    seen = []
    mine = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's (Linux: PRIO_PROCESS 0 is the caller)

    def lowered() -> None:
        background_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    th = threading.Thread(target=lowered)
    th.start()
    th.join()
    assert seen == [max(10, mine)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # only the thread that asked


def _yuv_frames(path: Path) -> tuple[list[bytes], list[int]]:
    """Each decoded frame's yuv420p bytes and pts, with the bundled ffmpeg (which must say nothing
    at ``-v error``: a decoder complaint fails the test)."""
    with av.open(str(path)) as c:
        pts = [f.pts for f in c.decode(video=0)]
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    return yuv420p_frames(path, w * h * 3 // 2), pts


def _psnr_db(a: bytes, b: bytes) -> float:
    d = np.frombuffer(a, np.uint8).astype(np.float64) - np.frombuffer(b, np.uint8)
    mse = float(np.mean(d * d))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("threads", [1, None])
def test_identical_frames_become_skip_frames(tmp_path, threads):
    """Frames marked the same as the previous one are H.264 skip frames: ffmpeg decodes the
    segments without a word, every frame is there at its time, each skip frame is the previous
    decoded frame byte for byte, and every other frame decodes exactly as x264's encoding of the
    changed frames alone decodes (so the x264 frame after a run of skip frames predicts from a
    picture equal to the one x264 predicted from). Runs of 1 to 12 skip frames, one straight
    after the IDR, frame_num wrapping (at 16 with veryfast) twice, a segment ending on a run."""
    yml = make_tiny_segment(tmp_path / "seg", speech_s=4.0, width=320, height=180)
    out = load_spec(yml).output
    seg = out.frames_per_segment
    n = seg * 3 // 2  # a 30-frame segment and a 15-frame one
    moving = _frames(n, out.width, out.height)
    same = np.zeros(n, bool)
    for a, b in ((1, 3), (5, 6), (9, 16), (20, 32), (40, 42)):  # 30: a segment's first frame
        same[a:b] = True
    frames = moving.copy()
    for i in range(1, n):
        if same[i]:
            frames[i] = frames[i - 1]
    aac = tmp_path / "a.aac"
    encode_aac(np.zeros(48000, np.float32), aac, bitrate_kbps=out.audio_bitrate_kbps)
    adts = AdtsStream.read(aac)
    audio = lambda j: ([adts.frame(k) for k in range(40)], j.start_s)  # 0.85 s each
    bounds = [(0, seg), (seg, n)]

    def encode(name: str, parts: list[list[int]], skip: bool) -> list[Path]:
        jobs = [
            SegmentJob(tmp_path / f"{name}{k}.ts", len(p), Fraction(p[0], 30), None)
            for k, p in enumerate(parts)
        ]
        with ChunkEncoder(out, jobs, audio=audio, threads=threads) as enc:
            assert enc.skip_frames
            for p in parts:
                for i in p:
                    enc.write(frames[i], same_as_previous=skip and bool(same[i]))
            enc.finish()
            assert enc.skipped_count == (sum(int(same[i]) for p in parts for i in p[1:]) if skip else 0)
        return [j.path for j in jobs]

    ours = encode("skip", [list(range(a, b)) for a, b in bounds], True)
    changed = [[i for i in range(a, b) if i == a or not same[i]] for a, b in bounds]
    alone = encode("alone", changed, False)
    plain = encode("plain", [list(range(a, b)) for a, b in bounds], False)
    for (a, b), path, ref, keep, full in zip(bounds, ours, alone, changed, plain):
        got, pts = _yuv_frames(path)
        assert pts == _yuv_frames(full)[1] and len(got) == b - a
        want, _ = _yuv_frames(ref)
        assert [got[i - a] for i in keep] == want
        for i in range(a + 1, b):
            if same[i]:
                assert got[i - a] == got[i - a - 1], f"skip frame {i} is not the frame before"
        assert min(_psnr_db(got[i - a], frames[i].tobytes()) for i in range(a, b)) > 28
    assert sum(p.stat().st_size for p in ours) < sum(p.stat().st_size for p in plain)


def test_skip_frames_off(tmp_path):
    """``output.skip_identical_frames: false``: x264 gets every frame, as bare ffmpeg would."""
    yml = make_tiny_segment(
        tmp_path / "seg",
        speech_s=4.0,
        width=64,
        height=36,
        extra={"output": {"skip_identical_frames": False}},
    )
    out = load_spec(yml).output
    assert not out.skip_identical_frames
    aac = tmp_path / "a.aac"
    encode_aac(np.zeros(4800, np.float32), aac, bitrate_kbps=out.audio_bitrate_kbps)
    adts = AdtsStream.read(aac)
    audio = lambda j: ([adts.frame(0)], adts.pts_s(0))
    with ChunkEncoder(
        out, [SegmentJob(tmp_path / "x.ts", 2, Fraction(0), None)], audio=audio, threads=1
    ) as enc:
        assert not enc.skip_frames
        f = _frames(1, out.width, out.height)[0]
        enc.write(f)
        enc.write(f, same_as_previous=True)
        enc.finish()
        assert enc.skipped_count == 0
    assert _h264_packets(tmp_path / "x.ts")[1][4:5] != b"\x68"  # no PPS of ours


@pytest.mark.parametrize("fit", ["contain", "cover", "stretch"])
@pytest.mark.parametrize("size,sar", [("120x90", "1:1"), ("90x160", "1:1"), ("120x90", "4:3")])
def test_tv_clip_of_another_shape_is_fitted_to_the_screen(tmp_path, fit, size, sar):
    """A 4:3 clip, a portrait one and an anamorphic one (120x90 pixels 4:3 wide: 16:9 on
    screen) on a 16:9 screen: ``contain`` shows it whole between black bars of even width,
    ``cover`` fills the screen, ``stretch`` fills it too; the picture keeps its shape (the bars'
    width is the shape's) and the grey of the clip where it shows."""
    from avatarrender.encode import TVReader
    from conftest import clip_luma, make_clip

    src, clip = tmp_path / "src.mp4", tmp_path / "clip.mp4"
    make_clip(src, duration_s=1.0, size=size)
    # the pixels' shape as the encoder wrote it (H.264's VUI, the MP4's pasp), as a DVD source has it
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(src), "-vf", f"setsar={sar.replace(':', '/')}"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(clip)],
        check=True,
    )
    with av.open(str(clip)) as c:
        assert Fraction(c.streams.video[0].sample_aspect_ratio or 1) == Fraction(sar.replace(":", "/"))
    w, h = 192, 108
    (planes,) = list(TVReader([clip], (w, h), Fraction(30), fit).frames(np.zeros(1, np.int16), np.zeros(1)))
    y = planes[0].astype(int)
    grey = clip_luma(0)
    lit = np.abs(y - grey) <= 2
    dark = y <= 17  # black in TV range
    sw, sh = map(int, size.split("x"))
    aspect = Fraction(sw, sh) * Fraction(sar.replace(":", "/"))
    if fit != "contain" or aspect == Fraction(w, h):
        assert lit.all(), (fit, size, sar)
        return
    assert (lit | dark).all() and dark.any()
    cols, rows = lit.any(axis=0), lit.any(axis=1)
    inner_w, inner_h = int(cols.sum()), int(rows.sum())
    if aspect < Fraction(w, h):  # bars left and right
        assert inner_h == h and abs(inner_w - h * aspect) <= 2
        left = int(np.argmax(cols))
        assert left % 2 == 0 and abs(left - (w - inner_w - left)) <= 2
    else:
        assert inner_w == w and abs(inner_h - w / aspect) <= 2


@pytest.mark.parametrize("clip_rate", ["24000/1001", "25", "30000/1001", "50", "10"])
def test_a_run_started_at_any_frame_shows_what_the_whole_run_shows(tmp_path, clip_rate):
    """A chunk's (or preview's) run that starts at output frame k gives frames k, k+1, ... of the
    run from the clip's start, at any clip rate: the frame before a chunk's start is the one the
    fps filter shows there when no frame falls nearer (23.976 fps clips on 30 fps output gave
    another frame on chunk boundaries, and so other frames for other chunk sizes)."""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=96x54:r={clip_rate}:d=4"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )
    fps, n = Fraction(30), 100

    def run(k: int, count: int) -> list[bytes]:
        reader = TVReader([clip], (96, 54), fps)
        times = (k + np.arange(count)) / float(fps)
        return [
            b"".join(p.tobytes() for p in planes)
            for planes in reader.frames(np.zeros(count, np.int16), times)
        ]

    whole = run(0, n)
    assert len(set(whole)) > n // 4  # a moving picture
    for k in range(1, n - 5):
        close_clip_decoders() if k % 2 else None  # afresh (a seek), or on from the last run
        assert run(k, 5) == whole[k : k + 5], k


_BARS = {"yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255), "red": (255, 0, 0)}


def _bt709_rgb(planes, x: int, y: int) -> tuple[float, float, float]:
    """The R, G, B (0..255) a player shows at (x, y) of yuv420p TV-range ``planes`` decoded as
    BT.709, the render's stream says."""
    yy = (float(planes[0][y, x]) - 16) * 255 / 219
    cb = (float(planes[1][y // 2, x // 2]) - 128) * 255 / 224
    cr = (float(planes[2][y // 2, x // 2]) - 128) * 255 / 224
    return (yy + 1.5748 * cr, yy - 0.1873 * cb - 0.4681 * cr, yy + 1.8556 * cb)


def _bars_clip(path: Path, size: str, matrix: str | None, tag: str | None) -> None:
    """Four colour bars, converted to yuv420p with ``matrix`` (BT.709 or BT.601), tagged ``tag``
    (or not at all), coded losslessly."""
    from PIL import Image

    w, h = (int(v) for v in size.split("x"))
    img = Image.new("RGB", (w, h))
    for i, rgb in enumerate(_BARS.values()):
        img.paste(rgb, (i * w // 4, 0, (i + 1) * w // 4, h))
    png = path.with_suffix(".png")
    img.save(png)
    tags = ["-colorspace", tag, "-color_primaries", "bt709" if tag == "bt709" else "smpte170m"] if tag else []
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-loop", "1", "-i", str(png), "-t", "0.5", "-r", "30"]
        + ["-vf", f"scale=out_color_matrix={matrix}:out_range=tv,format=yuv420p", *tags]
        + ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", str(path)],
        check=True,
    )


@pytest.mark.parametrize(
    "size,matrix,tag",
    [
        ("640x360", "bt709", "bt709"),  # tagged BT.709
        ("640x360", "bt601", "smpte170m"),  # tagged BT.601
        ("1280x720", "bt709", None),  # untagged HD: BT.709, as players take it
        ("640x360", "bt601", None),  # untagged SD: BT.601
    ],
)
def test_tv_clip_colours_come_out_as_the_stream_says_bt709(tmp_path, size, matrix, tag):
    """The render's stream is tagged BT.709: a clip's colours decoded that way are the clip's,
    whatever matrix it was made with. (swscale wrote BT.601 when not told: a BT.709 clip's
    yellow aired as 254,235,0.)"""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "bars.mp4"
    _bars_clip(clip, size, matrix, tag)
    close_clip_decoders()
    w, h = 256, 144
    planes = next(
        iter(TVReader([clip], (w, h), Fraction(30), "stretch").frames(np.zeros(1, np.int16), np.zeros(1)))
    )
    for i, (name, want) in enumerate(_BARS.items()):
        got = _bt709_rgb(planes, (2 * i + 1) * w // 8, h // 2)
        assert max(abs(g - e) for g, e in zip(got, want)) < 8, (name, [round(g) for g in got], want)


def test_a_clip_shorter_than_half_an_output_frame_shows_its_frame(tmp_path):
    """One 120 fps frame (8 ms): the fps filter gave no frame for it and the render failed
    after validate passed; it is shown, and held."""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "tiny.mp4"
    cmd = "-v error -y -f lavfi -i color=c=white:s=64x36:r=120 -frames:v 1 -c:v libx264 -pix_fmt yuv420p"
    subprocess.run([ffmpeg_exe(), *cmd.split(), str(clip)], check=True)
    close_clip_decoders()
    frames = list(TVReader([clip], (32, 18), Fraction(30)).frames(np.zeros(5, np.int16), np.arange(5) / 30))
    assert len(frames) == 5 and all(f[0].min() > 200 for f in frames)


def test_an_interlaced_clip_is_deinterlaced(tmp_path):
    """A clip coded interlaced (its fields from two instants: a moving edge combs) airs
    deinterlaced: neighbouring lines differ no more than lines two apart."""
    from avatarrender.encode import TVReader, close_clip_decoders

    clip = tmp_path / "interlaced.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=black:s=320x240:r=60:d=1"]
        + ["-f", "lavfi", "-i", "color=white:s=40x240:r=60:d=1", "-filter_complex"]
        + ["[0][1]overlay=x='mod(t*800,280)':y=0,tinterlace=interleave_top,fieldorder=tff"]
        + ["-c:v", "libx264", "-flags", "+ilme+ildct"]
        + ["-pix_fmt", "yuv420p", "-qp", "0", str(clip)],
        check=True,
    )
    close_clip_decoders()
    (y, _, _) = next(iter(TVReader([clip], (320, 240), Fraction(30)).frames(np.zeros(1, np.int16), [0.5])))
    y = y.astype(int)
    one, two = np.abs(np.diff(y, axis=0)).mean(), np.abs(y[2:] - y[:-2]).mean()
    assert one <= two, (one, two)  # combed: lines one apart differ far more than two apart


def _pq(nits: float) -> float:
    """SMPTE ST 2084's inverse EOTF: the PQ signal of ``nits``."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = (nits / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


# BT.709's red in BT.2020 primaries (BT.2087), linear
_RED_2020 = (0.6274, 0.0691, 0.0164)


@pytest.mark.parametrize(
    "trc,patches",
    [
        # PQ: 100 nits grey is BT.2408's SDR level (100 / 203) ** (1 / 2.4) = 190 of 255; a
        # 1000-nit white is SDR white; 100-nit BT.709 red stays red
        (
            16,
            [
                ((_pq(100),) * 3, (190, 190, 190)),
                ((_pq(1000),) * 3, (255, 255, 255)),
                (tuple(_pq(100 * c) for c in _RED_2020), (190, 0, 0)),
            ],
        ),
        # HLG: 75 % is reference white; 50 % is 1000 * (1/12) ** 1.2 = 50.6 nits on a 1000-nit
        # display, SDR (50.6 / 203) ** (1 / 2.4) = 143
        (18, [((0.75,) * 3, (244, 244, 244)), ((0.5,) * 3, (143, 143, 143))]),
    ],
    ids=["pq", "hlg"],
)
def test_an_hdr_clip_is_tone_mapped_to_sdr_bt709(tmp_path, trc, patches):
    """A BT.2020 PQ or HLG clip (a phone's HDR video) airs in SDR BT.709 at the levels BT.2408
    gives (HDR reference white near SDR white, highlights rolled off): converted by its matrix
    alone it aired dim and grey (PQ's 100-nit grey at 130 of 255, HLG's reference white at 192)."""
    from avatarrender.encode import TVReader, close_clip_decoders

    w, h = 64 * len(patches), 64
    rgb = np.zeros((h, w, 3), np.float64)
    for i, (signal, _) in enumerate(patches):
        rgb[:, i * 64 : (i + 1) * 64] = signal
    raw = np.round(rgb * 65535).astype("<u2").tobytes()
    clip = tmp_path / "hdr.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-s", f"{w}x{h}"]
        + ["-r", "30", "-i", "-", "-vf", "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le"]
        + ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"]
        + ["-bsf:v", f"h264_metadata=colour_primaries=9:transfer_characteristics={trc}:matrix_coefficients=9"]
        + [str(clip)],
        input=raw * 15,
        check=True,
    )
    close_clip_decoders()
    planes = next(
        iter(TVReader([clip], (w, h), Fraction(30), "stretch").frames(np.zeros(1, np.int16), np.zeros(1)))
    )
    for i, (_, want) in enumerate(patches):
        got = _bt709_rgb(planes, i * 64 + 32, h // 2)
        # (a saturated colour's small channels come from the LUT's nodes, steep near black)
        tol = 8 if min(want) > 0 else 16
        assert max(abs(g - e) for g, e in zip(got, want)) < tol, (i, [round(g) for g in got], want)


def test_tv_reader_shows_a_clip_of_two_lines(tmp_path):
    """A 2x2 clip (a placeholder, a test pattern): shown as ffmpeg scales it (the deinterlacer
    refused a picture of under 3 lines, and the render failed on a clip validate took)."""
    from avatarrender.encode import TVReader

    clip = tmp_path / "tiny.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=s=2x2:r=30:d=1"]
    subprocess.run([*cmd, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    w, h, n, fps = 16, 16, 4, Fraction(30)
    want = _cli_tv(clip, 0.2, n, w, h, fps)
    got = np.array(
        [
            np.concatenate([p.ravel() for p in planes])
            for planes in TVReader([clip], (w, h), fps).frames(np.zeros(n, np.int16), 0.2 + np.arange(n) / 30)
        ]
    )
    assert np.array_equal(got, want)


def test_tv_reader_holds_the_last_good_frame_over_a_damaged_stretch(tmp_path):
    """A clip damaged mid-way (a bad sector, a broken upload) that validate passes (it decodes
    keyframes only): the TV holds its last good frame up to the next keyframe, as a player
    freezes, and the run goes on (the render failed, 'Error splitting the input into NAL units')."""
    from avatarrender.encode import TVReader, close_clip_decoders

    src, clip = tmp_path / "src.mp4", tmp_path / "damaged.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=s=320x180:r=30:d=4"]
    subprocess.run([*cmd, "-c:v", "libx264", "-g", "60", "-pix_fmt", "yuv420p", str(src)], check=True)
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:  # zero most of the second third of the stream's bytes
        pos = [p.pos for p in c.demux(video=0) if p.pos is not None and p.pos >= 0]
    a, b = pos[len(pos) // 3 + 2], pos[len(pos) // 2]
    data[a:b] = bytes(b - a)
    clip.write_bytes(data)
    with av.open(str(clip)) as c:
        with pytest.raises(av.error.InvalidDataError):
            for p in c.demux(video=0):
                p.decode()
    w, h, n, fps = 64, 36, 120, Fraction(30)
    for start in (0, 45):  # from the start, and a run started inside the damage
        close_clip_decoders()
        reader = TVReader([clip], (w, h), fps)
        got = [
            np.concatenate([p.ravel() for p in planes]).copy()
            for planes in reader.frames(np.zeros(n - start, np.int16), (start + np.arange(n - start)) / 30)
        ]
        assert len(got) == n - start
        assert any(not np.array_equal(got[i], got[i + 1]) for i in range(len(got) - 1))  # it moves
    # the run started inside the damage holds a frame from before it, then moves on at the
    # keyframe of 2 s (frame 60)
    assert np.array_equal(got[0], got[60 - start - 1])
    assert not np.array_equal(got[60 - start - 1], got[60 - start + 1])
