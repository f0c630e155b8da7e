"""The playout HTTP server over real sockets on 127.0.0.1."""

from __future__ import annotations

import re
import http.client
import json
import socket
import time

import pytest
from pathlib import Path

from avatarrender.playout.server import MAX_REQUEST_LINE_BYTES, serve_in_thread


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("site")
    root = tmp_path / "out"
    (root / "media").mkdir(parents=True)
    (root / "live.m3u8").write_text("#EXTM3U\n")
    (root / "master.m3u8").write_text("#EXTM3U\n")
    (root / "media" / "000000001.ts").write_bytes(b"\x47" * 188 * 4)
    (root / "status.json").write_text(json.dumps({"on_air": {"key": "filler"}}))
    (root / "index.html").write_text("<!doctype html><title>monitor</title>")
    (root / ".state.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "media" / "inside.ts").symlink_to(root / "media" / "000000001.ts")
    server, thread = serve_in_thread(root)
    yield server
    server.shutdown()
    server.server_close()


def req(server, method: str, path: str, *, headers=None, body=None):
    host, port = server.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def test_playlists_are_never_cached(site) -> None:
    for path in ("/live.m3u8", "/master.m3u8"):
        r, data = req(site, "GET", path)
        assert r.status == 200 and data == b"#EXTM3U\n"
        assert r.getheader("Content-Type") == "application/vnd.apple.mpegurl"
        assert "no-cache" in r.getheader("Cache-Control")
        assert r.getheader("Last-Modified") is None
        assert r.getheader("Access-Control-Allow-Origin") == "*"


def test_media_segments_cached_long(site) -> None:
    r, data = req(site, "GET", "/media/000000001.ts")
    assert r.status == 200 and len(data) == 188 * 4
    assert r.getheader("Content-Type") == "video/mp2t"
    assert "max-age=86400" in r.getheader("Cache-Control")
    assert r.getheader("Access-Control-Allow-Origin") == "*"
    r, data = req(site, "HEAD", "/media/000000001.ts")
    assert r.status == 200 and data == b"" and r.getheader("Content-Length") == str(188 * 4)
    r, _ = req(site, "GET", "/media/inside.ts")  # a symlink inside the folder is fine
    assert r.status == 200


def test_monitor_page_and_status(site) -> None:
    r, data = req(site, "GET", "/")
    assert r.status == 200 and b"monitor" in data and r.getheader("Content-Type").startswith("text/html")
    r, data = req(site, "GET", "/status")
    assert r.status == 200 and json.loads(data)["on_air"]["key"] == "filler"
    assert r.getheader("Content-Type") == "application/json"
    assert "no-cache" in r.getheader("Cache-Control")
    r, _ = req(site, "GET", "/live.m3u8?_HLS_msn=3")  # no live feed: answered at once
    assert r.status == 200
    r, _ = req(site, "GET", "/media/000000001.ts?_HLS_msn=3&_HLS_part=1")  # ignored on media
    assert r.status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE"])
def test_only_get_and_head(site, method: str) -> None:
    r, _ = req(site, method, "/live.m3u8")
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD, OPTIONS"
    r, _ = req(
        site,
        "OPTIONS",
        "/media/000000001.ts",
        headers={
            "Origin": "http://example.test",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert r.status == 204 and "Range" in r.getheader("Access-Control-Allow-Headers")
    assert r.getheader("Access-Control-Allow-Origin") == "*"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/media/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/media/..%2f..%2fsecret.txt",
        "/escape.txt",
        "/.state.json",
        "/%2estate.json",
        "/media/%00",
        "/%ff",
        "//etc/passwd",
        "/media/",
        "/nonexistent.m3u8",
        "/media/000000001.ts/",  # a file's name with a slash after it names no file
        "/media//000000001.ts",
        "..\\secret.txt",
        "http://evil/secret.txt",
        "/" + "a" * 300,  # a name longer than the file system's (it got no answer, and a traceback)
        "/media/" + "b" * 300 + ".ts",
    ],
)
def test_no_escape(site, path: str) -> None:
    r, data = req(site, "GET", path)
    assert r.status in (400, 404), (path, r.status)
    assert b"secret" not in data
    assert "no-store" in (r.getheader("Cache-Control") or ""), r.getheaders()  # a 404 is not kept


def test_bounded_request(site) -> None:
    r, _ = req(site, "GET", "/" + "a" * (MAX_REQUEST_LINE_BYTES + 10))
    assert r.status == 414
    r, _ = req(site, "GET", "/live.m3u8", headers={"Content-Length": "5"}, body=b"hello")
    assert r.status == 413
    many = {f"X-H{i}": "v" for i in range(200)}
    r, _ = req(site, "GET", "/live.m3u8", headers=many)
    assert r.status == 431
    # a client that sends nothing is dropped, and the server still answers others
    host, port = site.server_address[:2]
    with socket.create_connection((host, port)) as idle:
        idle.sendall(b"GET /live.m3u8 HTTP/1.1\r\n")
        r, _ = req(site, "GET", "/live.m3u8")
        assert r.status == 200


def test_byte_ranges(site) -> None:
    whole = 188 * 4
    r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": "bytes=188-375"})
    assert r.status == 206 and len(data) == 188
    assert r.getheader("Content-Range") == f"bytes 188-375/{whole}"
    assert r.getheader("Content-Length") == "188" and r.getheader("Accept-Ranges") == "bytes"
    r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": "bytes=700-"})
    assert r.status == 206 and len(data) == whole - 700
    r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": "bytes=-100"})
    assert r.status == 206 and r.getheader("Content-Range") == f"bytes {whole - 100}-{whole - 1}/{whole}"
    r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": "bytes=0-99999"})
    assert r.status == 206 and len(data) == whole
    r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": f"bytes={whole}-"})
    assert r.status == 416 and r.getheader("Content-Range") == f"bytes */{whole}"
    # '²' is a digit to str.isdigit but not to int(); 5000 digits are past int()'s limit: both
    # were a traceback in the log and no answer
    for ignored in (
        "bytes=0-1,4-5",
        "bytes=5-1",
        "items=0-1",
        "bytes=x-y",
        "bytes=\u00b2-",
        "bytes=" + "9" * 5000 + "-",
    ):
        r, data = req(site, "GET", "/media/000000001.ts", headers={"Range": ignored})
        assert r.status == 200 and len(data) == whole, ignored
    r, data = req(site, "HEAD", "/media/000000001.ts", headers={"Range": "bytes=0-187"})
    assert r.status == 206 and data == b"" and r.getheader("Content-Length") == "188"


def test_absolute_form_request_target(site) -> None:
    host, port = site.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as s:  # as a proxy sends it (RFC 9112 3.2.2)
        s.sendall(
            f"GET http://{host}:{port}/master.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and b"#EXTM3U" in data, data[:80]


def test_cors_once_and_http09(site) -> None:
    host, port = site.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(
            b"GET /media/000000001.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
    assert head.lower().count(b"access-control-allow-origin") == 1
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /live.m3u8\r\n")  # HTTP/0.9: answered and closed at once
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400")


def test_keep_alive_and_pipelining(site) -> None:
    host, port = site.server_address[:2]
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(
            b"GET /master.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n" * 2
            + b"GET /master.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3 and data.count(b"#EXTM3U") == 3


# ---------------------------------------------------------------- blocking reload (RFC 8216bis)


from avatarrender.playout.feed import LiveFeed, Snapshot, advance_part_limit, reload_state  # noqa: E402
from playout_check import check_transition, parse_live  # noqa: E402


def _snap(next_seq: int, parts: int, counts: dict[int, int]) -> Snapshot:
    return Snapshot(
        playlist=b"#EXTM3U\n",
        next_sequence=next_seq,
        parts_published=parts,
        part_counts=counts,
        target_duration_s=1,
        part_target_s=8 / 30,
    )


def test_reload_state_rules() -> None:
    s = _snap(10, 2, {8: 4, 9: 4})
    assert advance_part_limit(8 / 30) == 12 and advance_part_limit(2.0) == 3
    assert reload_state(s, 9, None) == "ready" and reload_state(s, 10, None) == "wait"
    assert reload_state(s, 10, 1) == "ready" and reload_state(s, 10, 2) == "wait"
    assert reload_state(s, 9, 3) == "ready"
    assert reload_state(s, 8, 4) == "ready"  # past segment 8's last part: part 0 of 9
    assert reload_state(s, 9, 4) == "ready"  # part 0 of 10, published
    assert reload_state(s, 9, 7) == "ready"  # beyond the last part: part 0 of 10
    assert reload_state(s, 11, 0) == "wait" and reload_state(s, 11, None) == "wait"
    # the last complete segment is 9: up to 9 + 2 may be asked for, more is refused
    assert reload_state(s, 12, None) == "refuse" and reload_state(s, 12, 0) == "refuse"
    assert reload_state(s, 10, 1 + 13) == "refuse"  # more than the Advance Part Limit ahead
    assert reload_state(s, 10, 1 + 12) == "wait"
    assert reload_state(s, 3, 0) == "ready"  # long gone: the current playlist at once


@pytest.fixture()
def live(tmp_path: Path):
    """A real Playout on the real clock with the asyncio server in front of it."""
    import threading

    from avatarrender.playout.engine import Playout
    from avatarrender.playout.schedule import load_schedule
    from playout_media import make_rendered

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    (tmp_path / "schedule.yaml").write_text("filler: {dir: filler}\n")
    p = Playout(load_schedule(tmp_path / "schedule.yaml"), tmp_path / "out", filler=tmp_path / "filler")
    stop = threading.Event()
    runner = threading.Thread(target=p.run, kwargs={"stop": stop}, daemon=True)
    runner.start()
    server, _ = serve_in_thread(tmp_path / "out", feed=p.feed)
    for _ in range(200):
        if p.feed.snapshot is not None:
            break
        threading.Event().wait(0.05)
    yield server, p
    server.shutdown()
    stop.set()
    runner.join(10)


def _get(server, path: str):
    r, data = req(server, "GET", path)
    return r.status, data.decode()


def test_blocking_reload_holds_until_the_part(live) -> None:
    server, p = live
    status, text = _get(server, "/live.m3u8")
    assert status == 200
    prev = parse_live(text)
    assert prev.can_block_reload and prev.part_target_s is not None
    for _ in range(14):  # about 3.7 s: across segment boundaries
        msn, part = prev.position  # the next part, not out yet
        status, text = _get(server, f"/live.m3u8?_HLS_msn={msn}&_HLS_part={part}")
        assert status == 200
        cur = parse_live(text)
        assert cur.has_part(msn, part), (msn, part, cur.position)
        check_transition(prev, cur)
        prev = cur
    nxt = prev.position[0]
    status, text = _get(server, f"/live.m3u8?_HLS_msn={nxt}")  # the whole segment
    cur = parse_live(text)
    assert status == 200 and cur.segments[-1]["seq"] >= nxt
    # a part past the last of a complete segment is part 0 of the next one
    last = cur.segments[-1]
    status, text = _get(server, f"/live.m3u8?_HLS_msn={last['seq']}&_HLS_part={len(last['parts'])}")
    assert status == 200 and parse_live(text).has_part(last["seq"] + 1, 0)
    # old requests are answered at once with the current playlist
    status, text = _get(server, f"/live.m3u8?_HLS_msn={cur.media_sequence}&_HLS_part=0")
    assert status == 200 and parse_live(text).position >= cur.position
    status, text = _get(server, "/status")
    assert status == 200 and '"parts_published"' in text


@pytest.mark.parametrize(
    "query",
    [
        "_HLS_msn=abc",
        "_HLS_msn=-1",
        "_HLS_msn=1.5",
        "_HLS_msn=",
        "_HLS_part=1",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_msn=1&_HLS_part=x",
        "_HLS_msn=1&_HLS_part=-2",
        "_HLS_msn=99999999",
        "FAR_PART",
    ],
)
def test_blocking_reload_refused(live, query: str) -> None:
    server, p = live
    if query == "FAR_PART":
        msn, parts = p.feed.snapshot.next_sequence, p.feed.snapshot.parts_published
        query = f"_HLS_msn={msn}&_HLS_part={parts + 20}"
    r, data = req(server, "GET", f"/live.m3u8?{query}")
    assert r.status == 400, (query, r.status, data)
    assert b"Traceback" not in data
    # a refusal is no answer to keep: a CDN in front kept one 10 s, for the clients that asked
    # that part once it was out (a review)
    assert "no-store" in (r.getheader("Cache-Control") or ""), r.getheaders()


def test_a_request_pipelined_behind_a_parked_reload_is_answered(live) -> None:
    server, p = live
    snap = p.feed.snapshot
    host, port = server.server_address[:2]
    msn, part = snap.next_sequence, snap.parts_published  # the next part, not out yet
    with socket.create_connection((host, port), timeout=10) as s:
        # the second request's bytes arrive while the first waits: they were taken for the
        # client leaving, and neither was answered
        s.sendall(
            f"GET /live.m3u8?_HLS_msn={msn}&_HLS_part={part} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            + b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2, data[:200]
    assert b"#EXTM3U" in data and b'"parts_published"' in data


def test_parked_client_that_leaves_frees_its_slot(live) -> None:
    import time

    server, p = live
    snap = p.feed.snapshot
    host, port = server.server_address[:2]
    far = snap.next_sequence + 1  # allowed (last complete + 2), over 1 s away
    socks = []
    for _ in range(20):
        s = socket.create_connection((host, port))
        s.sendall(f"GET /live.m3u8?_HLS_msn={far} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    for _ in range(100):
        if server.parked == 20:
            break
        time.sleep(0.02)
    assert server.parked == 20 and server.connections >= 20
    for s in socks:
        s.close()
    for _ in range(100):
        if server.parked == 0 and server.connections == 0:
            break
        time.sleep(0.02)
    assert server.parked == 0 and server.connections == 0
    status, text = _get(server, "/status")
    assert json.loads(text)["http"]["parked"] == 0


def test_blocked_too_long_is_503(tmp_path: Path) -> None:
    """A playlist that stops moving: a blocked reload gets 503 after 3 target durations."""
    feed = LiveFeed()
    (tmp_path / "live.m3u8").write_text("#EXTM3U\n")
    feed.publish(_snap(10, 1, {}))
    server, _ = serve_in_thread(tmp_path, feed=feed)
    try:
        status, _ = _get(server, "/live.m3u8?_HLS_msn=10&_HLS_part=1")
        assert status == 503
        status, text = _get(server, "/live.m3u8?_HLS_msn=10&_HLS_part=0")
        assert status == 200 and text == "#EXTM3U\n"
    finally:
        server.shutdown()


def test_stop_ends_every_connection_at_once(live, caplog) -> None:
    """A stop waits for no client: parked blocking reloads, a request head that never ends,
    idle keep-alives, readers that stopped reading a large file and connections still arriving
    are all closed, the loop ends in well under the 10 s head timeout (keep-alive: 65 s, a
    stalled write: 30 s), and nothing is said about it but what is true."""
    import gc
    import threading
    import time
    import warnings

    server, p = live
    host, port = server.server_address[:2]
    big = Path(server.root) / "big.bin"
    big.write_bytes(b"\0" * (8 << 20))
    far = p.feed.snapshot.next_sequence + 1
    socks = []
    for i in range(40):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        kind = i % 4
        if kind == 0:
            s.sendall(f"GET /live.m3u8?_HLS_msn={far} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        elif kind == 1:
            s.sendall(b"GET /status HTTP/1.1\r\n")  # the head never ends
        elif kind == 2:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle, kept alive
        else:
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        socks.append(s)
    for _ in range(100):
        if server.parked == 10 and server.connections == 40:
            break
        time.sleep(0.02)
    assert server.parked == 10 and server.connections == 40
    arriving = threading.Event()

    def arrive() -> None:  # viewers still connecting while the server stops
        while not arriving.is_set():
            try:
                socks.append(socket.create_connection((host, port), timeout=1))
            except OSError:
                time.sleep(0.001)

    t = threading.Thread(target=arrive, daemon=True)
    t.start()
    time.sleep(0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.monotonic()
        server.shutdown()
        took = time.monotonic() - t0
        arriving.set()
        t.join(5)
        gc.collect()
    assert server._stopped.is_set() and took < 5.0, took
    assert server.connections == 0
    for i, s in enumerate(socks[:40]):
        if i % 4 != 3:  # closed by the server: EOF or reset, at once (a stalled reader's socket
            s.settimeout(5)  # is the kernel's to finish: it holds what was sent before the stop)
            try:
                while s.recv(1 << 16):
                    pass
            except ConnectionResetError:
                pass
        s.close()
    for s in socks[40:]:
        s.close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert not said, said
    assert not [w for w in caught if "Task was destroyed" in str(w.message)], caught


def test_media_segment_on_air_is_not_cached_whole(tmp_path: Path) -> None:
    """The segment on air (written whole when its slot starts) is served no-cache, a precaution;
    closed segments, and a segment cut short (written to a file of its own), are immutable."""
    feed = LiveFeed()
    media = tmp_path / "media"
    media.mkdir()
    for name in ("000000009", "000000010", "000000011", "000000010-cut"):
        (media / f"{name}.ts").write_bytes(b"\x47" + bytes(187))
    feed.publish(_snap(10, 1, {9: 3}))
    server, _ = serve_in_thread(tmp_path, feed=feed)
    try:
        for seq, cached in ((9, True), (10, False), (11, False)):
            r, data = req(server, "GET", f"/media/{seq:09d}.ts")
            assert r.status == 200 and len(data) == 188
            control = r.getheader("Cache-Control")
            assert ("immutable" in control) == cached and ("no-cache" in control) == (not cached), (
                seq,
                control,
            )
        r, _ = req(server, "GET", "/media/000000010-cut.ts")  # written when it is cut, for good
        assert "immutable" in r.getheader("Cache-Control")
        feed.publish(_snap(11, 0, {9: 3, 10: 3}))  # 10 closed
        r, _ = req(server, "GET", "/media/000000010.ts")
        assert "immutable" in r.getheader("Cache-Control")
    finally:
        server.shutdown()


def test_a_viewer_resetting_mid_file_is_no_error(tmp_path: Path, caplog) -> None:
    """A browser aborting a media segment's download (a seek, a closed tab) resets the
    connection: each logged a 17-line ERROR traceback ('Transport is closing'), false alarms."""
    import logging
    import struct

    root = tmp_path / "out"
    (root / "media").mkdir(parents=True)
    (root / "media" / "000000001.ts").write_bytes(b"\x47" * 188 * 40000)  # 7.5 MB
    server, _ = serve_in_thread(root)
    host, port = server.server_address[:2]
    try:
        with caplog.at_level(logging.DEBUG, logger="avatarrender"):
            for _ in range(10):
                s = socket.create_connection((host, port), timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"GET /media/000000001.ts HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(100)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()  # RST
            r, data = req(server, "GET", "/media/000000001.ts")  # and the server goes on
            assert r.status == 200 and len(data) == 188 * 40000
            time.sleep(0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text[-3000:]


def test_subtitle_playlists_block_and_are_reported(tmp_path: Path) -> None:
    """A low-latency channel's subtitle playlist lists the closed media segments: it says it
    blocks (CAN-BLOCK-RELOAD) and holds an _HLS_msn reload until that segment is listed (Shaka
    in low-latency mode polled it every part target, 5 requests a second a viewer: a review);
    the live playlist reports it at its last segment (EXT-X-RENDITION-REPORT)."""
    import threading
    import time

    from avatarrender.playout.engine import Playout
    from avatarrender.playout.schedule import load_schedule
    from playout_media import make_rendered

    make_rendered(tmp_path / "filler", pattern="green", seconds=3)
    (tmp_path / "schedule.yaml").write_text(
        "filler: {dir: filler}\nsubtitles: [{language: en, name: English}]\n"
    )
    p = Playout(load_schedule(tmp_path / "schedule.yaml"), tmp_path / "out", filler=tmp_path / "filler")
    stop = threading.Event()
    runner = threading.Thread(target=p.run, kwargs={"stop": stop}, daemon=True)
    runner.start()
    server, _ = serve_in_thread(tmp_path / "out", feed=p.feed)
    try:
        for _ in range(200):
            if p.feed.snapshot is not None and p.feed.snapshot.renditions:
                break
            time.sleep(0.05)
        live = parse_live(_get(server, "/live.m3u8")[1])
        assert live.reports == {"subs_en.m3u8": live.segments[-1]["seq"]}
        status, subs = _get(server, "/subs_en.m3u8")
        assert status == 200 and "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n" in subs
        last = int(re.findall(r"subs/en/(\d{9})\.vtt", subs)[-1])
        for ask in (last + 1, last + 2):  # the next closed segment: held until it is listed
            began = time.monotonic()
            r, data = req(server, "GET", f"/subs_en.m3u8?_HLS_msn={ask}&_HLS_part=0")
            waited = time.monotonic() - began
            listed = [int(n) for n in re.findall(r"subs/en/(\d{9})\.vtt", data.decode())]
            assert r.status == 200 and listed[-1] >= ask, (ask, listed)
            assert 0.05 < waited < 3, waited  # held, then answered within the segment
            assert "no-store" in r.getheader("Cache-Control")
        r, _ = req(server, "GET", f"/subs_en.m3u8?_HLS_msn={last + 10}")
        assert r.status == 400  # too far ahead, as for the video's
    finally:
        server.shutdown()
        stop.set()
        runner.join(10)
