"""The playout HTTP server over real sockets on 127.0.0.1."""
from __future__ import annotations

import http.client
import json
import socket

import pytest

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
    r, _ = req(site, "GET", "/media/inside.ts")   # a symlink inside the folder is fine
    assert r.status == 200


def test_monitor_page_and_status(site) -> None:
    r, data = req(site, "GET", "/")
    assert r.status == 200 and b"monitor" in data and r.getheader("Content-Type").startswith("text/html")
    r, data = req(site, "GET", "/status")
    assert r.status == 200 and json.loads(data)["on_air"]["key"] == "filler"
    assert r.getheader("Content-Type") == "application/json"
    assert "no-cache" in r.getheader("Cache-Control")
    r, _ = req(site, "GET", "/live.m3u8?_HLS_msn=3")  # query strings are ignored
    assert r.status == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_only_get_and_head(site, method: str) -> None:
    r, _ = req(site, method, "/live.m3u8")
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/media/%2E%2E/%2e%2e/secret.txt", "/..%2fsecret.txt",
    "/media/..%2f..%2fsecret.txt", "/escape.txt", "/.state.json", "/%2estate.json",
    "/media/%00", "/%ff", "//etc/passwd", "/media/", "/nonexistent.m3u8", "..\\secret.txt",
    "http://evil/secret.txt",
])
def test_no_escape(site, path: str) -> None:
    r, data = req(site, "GET", path)
    assert r.status in (400, 404), (path, r.status)
    assert b"secret" not in data


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
