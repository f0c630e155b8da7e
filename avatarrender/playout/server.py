"""A small static HTTP server for the playout folder (127.0.0.1 by default).

GET and HEAD only; paths are decoded once, dot files and ``..`` are refused, and the resolved path
(symlinks followed) must stay inside the folder. Playlists and status: ``Cache-Control: no-cache``
and no ``Last-Modified`` (a second-granular date lets a browser revalidate into a stale playlist);
media segments are immutable (their names are never reused): long caching. CORS for every answer.
"""
from __future__ import annotations

import os
import posixpath
import shutil
from collections import OrderedDict
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

__all__ = ["PlayoutServer", "serve_in_thread", "MIME_TYPES", "MAX_REQUEST_LINE_BYTES"]

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
}
_NO_CACHE = {".m3u8", ".json", ".html", ".js", ".css"}
MAX_REQUEST_LINE_BYTES = 4096
MAX_HEADERS = 64
ALIASES = {"/": "/index.html", "/status": "/status.json"}


class _Handler(BaseHTTPRequestHandler):
    server: PlayoutServer
    protocol_version = "HTTP/1.1"
    server_version = "avatarrender-playout"
    sys_version = ""
    timeout = 65  # idle keep-alive connections (and slow senders) are dropped, as nginx does at 75 s

    def handle_one_request(self) -> None:
        # like the stdlib's, with a smaller bound on the request line
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                self.close_connection = True
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            if len(self.headers) > MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            if self.command in ("GET", "HEAD"):
                if int(self.headers.get("Content-Length") or 0) or self.headers.get("Transfer-Encoding"):
                    self.send_error(HTTPStatus.CONTENT_TOO_LARGE if hasattr(HTTPStatus, "CONTENT_TOO_LARGE")
                                    else HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "no request body allowed")
                    self.close_connection = True
                    return
                self._serve(head=self.command == "HEAD")
            else:
                self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except ValueError:  # a malformed Content-Length
            self.send_error(HTTPStatus.BAD_REQUEST)
            self.close_connection = True

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _resolve(self) -> Path | None:
        raw = self.path.split("?", 1)[0].split("#", 1)[0]
        path = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
        path = ALIASES.get(path, path)
        if not path.startswith("/") or "\\" in path or "\x00" in path:
            return None
        parts = [p for p in path.split("/") if p]
        if not parts or any(p.startswith(".") for p in parts):  # no .., no dot files (state)
            return None
        root = self.server.root
        target = Path(os.path.realpath(root / posixpath.join(*parts)))
        if target != root and root not in target.parents:
            return None  # a symlink pointing out of the folder
        return target

    def _serve(self, *, head: bool) -> None:
        try:
            target = self._resolve()
        except UnicodeDecodeError:
            target = None
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self._hold(target)
        try:
            f = open(target, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            ext = target.suffix.lower()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", MIME_TYPES.get(ext, "application/octet-stream"))
            self.send_header("Content-Length", str(size))
            if ext in _NO_CACHE:
                self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
            else:
                self.send_header("Cache-Control", "public, max-age=86400, immutable")
            self.end_headers()
            if not head:
                shutil.copyfileobj(f, self.wfile, 256 * 1024)

    def _hold(self, target: Path) -> None:
        srv = self.server
        if srv.playlist_gate is None or target.name != srv.live_playlist:
            return
        # a client is known by address and user agent: what matters is which version it has
        client = (self.client_address[0], self.headers.get("User-Agent", ""))
        with srv.clients_lock:
            seen = srv.clients.get(client)
        version = srv.playlist_gate(srv.max_hold_s, seen)
        with srv.clients_lock:
            srv.clients[client] = version
            srv.clients.move_to_end(client)
            while len(srv.clients) > 4096:
                srv.clients.popitem(last=False)


class PlayoutServer(ThreadingHTTPServer):
    """Serves ``root`` (the playout folder) and nothing else.

    Parameters
    ----------
    address : (str, int)
        Host and port; port 0 picks a free one (see ``server_address``).
    root : Path
        The folder to serve.
    playlist_gate : callable, optional
        ``gate(max_hold_s, seen_version) -> version``, called before the live playlist is read:
        the playout holds a request from a client that already has the newest playlist when the
        next publication is near (see ``Playout.hold_for_next``).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: str | Path, *, verbose: bool = False,
                 playlist_gate: Callable[[float, int | None], int] | None = None,
                 max_hold_s: float = 1.0,
                 live_playlist: str = "live.m3u8"):
        self.root = Path(os.path.realpath(root))
        self.verbose = verbose
        self.playlist_gate = playlist_gate
        self.max_hold_s = max_hold_s
        self.live_playlist = live_playlist
        self.clients: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def serve_in_thread(root: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                    verbose: bool = False,
                    playlist_gate: Callable[[float, int | None], int] | None = None,
                    max_hold_s: float = 1.0) -> tuple[PlayoutServer, threading.Thread]:
    """Start a :class:`PlayoutServer` in a daemon thread; call ``server.shutdown()`` to stop."""
    server = PlayoutServer((host, port), root, verbose=verbose, playlist_gate=playlist_gate,
                           max_hold_s=max_hold_s)
    thread = threading.Thread(target=server.serve_forever, name="playout-http", daemon=True)
    thread.start()
    return server, thread
