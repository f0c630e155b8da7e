"""The playout's HTTP server: static files, LL-HLS blocking playlist reload, byte ranges (asyncio).

One asyncio loop in one thread serves every connection, so a request parked on a blocking reload
(RFC 8216bis 6.2.5.2: ``_HLS_msn``/``_HLS_part``) costs a coroutine and a socket, not a thread.
The stdlib's ``asyncio.start_server`` is enough: the server answers GET/HEAD of files and two
in-memory documents, and a framework (aiohttp) would add a dependency and its own per-request
overhead without removing any of the code below that matters (path checks, ranges, the
delivery-directive rules).

* The live playlist and ``/status`` come from the engine's :class:`~.feed.LiveFeed` (memory), so a
  reload never reads a file the engine is replacing. The engine's thread wakes parked requests
  through ``loop.call_soon_threadsafe``; requests parked on the same (msn, part) share one future.
* ``_HLS_msn``/``_HLS_part``: 400 when malformed, negative, ``_HLS_part`` without ``_HLS_msn``, or
  further ahead than the spec allows (two segments, or the Advance Part Limit in parts); held until
  the playlist holds the asked part otherwise, at most 3 target durations, then 503.
* Files: paths decoded once, dot files and ``..`` refused, the resolved path (symlinks followed)
  must stay inside the folder. Single byte ranges (206, ``Content-Range``; 416 when unsatisfiable;
  several ranges or ``If-Range``: the whole file). Playlists and status: ``Cache-Control:
  no-cache`` and no ``Last-Modified``; media segments immutable once closed (the one on air
  no-cache, a precaution: no media file changes once written). CORS once per response, preflight
  answered.
* Bounded: at most ``max_connections`` sockets (more are answered 503 and closed), a request line
  of 4 KiB and 64 headers, 10 s to send a request's head, 65 s idle keep-alive, 30 s to take a
  response; HTTP/0.9 request lines are answered 400 and closed at once. A parked client that
  disconnects is noticed (its socket reads EOF) and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import json
import logging
import os
import posixpath
import resource
import threading
import urllib.parse
from http import HTTPStatus
from pathlib import Path
from typing import Callable

from avatarrender.playout.feed import LiveFeed, Snapshot, reload_state

__all__ = [
    "PlayoutServer",
    "serve_in_thread",
    "MIME_TYPES",
    "MAX_REQUEST_LINE_BYTES",
    "parse_range",
    "parse_directives",
]

log = logging.getLogger("avatarrender.playout.http")

MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
}
_NO_CACHE = {".m3u8", ".json", ".html", ".js", ".css"}
MAX_REQUEST_LINE_BYTES = 4096
MAX_HEADERS = 64
ALIASES = {"/": "/index.html", "/status": "/status.json"}
_REQUEST_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("request_path", default="")  # per task
_CORS = ("Access-Control-Allow-Origin", "*")


class _Refuse(Exception):
    """Answer with this status and close the connection."""

    def __init__(self, status: HTTPStatus):
        super().__init__(status.phrase)
        self.status = status


def parse_range(value: str | None, size: int) -> tuple[int, int] | None | HTTPStatus:
    """A ``Range`` header against a file of ``size`` bytes.

    Returns
    -------
    (first, last) inclusive byte positions, None to send the whole file (no header, a syntax we
    ignore, or several ranges), or ``HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE``.
    """
    if not value:
        return None
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")

    def number(s: str) -> bool:  # ASCII digits only ('²' is a digit to str.isdigit, not to int),
        return s.isascii() and s.isdigit() and len(s) <= 20  # and no 5000-digit int()

    if not dash or not (number(first_s) or number(last_s)):
        return None
    if first_s and not number(first_s) or last_s and not number(last_s):
        return None
    if not first_s:  # bytes=-N: the last N bytes
        n = int(last_s)
        if n == 0 or size == 0:
            return HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
        return max(0, size - n), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid: ignored (RFC 9110 14.1.1)
    if first >= size:
        return HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
    last = int(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def parse_directives(query: str) -> tuple[int, int | None] | None:
    """``_HLS_msn`` and ``_HLS_part`` of a playlist request's query (RFC 8216bis 6.2.5.2).

    Returns None when there is no ``_HLS_msn`` (an ordinary reload).

    Raises
    ------
    ValueError
        Malformed (not a decimal integer, given twice) or ``_HLS_part`` without ``_HLS_msn``:
        the server answers 400.
    """
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    msn_v, part_v = q.get("_HLS_msn"), q.get("_HLS_part")
    if part_v is not None and msn_v is None:
        raise ValueError("_HLS_part without _HLS_msn")
    if msn_v is None:
        return None

    def one(values: list[str], name: str) -> int:
        if len(values) != 1 or not values[0].isascii() or not values[0].isdigit():
            raise ValueError(f"{name} must be one decimal integer")
        return int(values[0])

    return one(msn_v, "_HLS_msn"), None if part_v is None else one(part_v, "_HLS_part")


class PlayoutServer:
    """Serves ``root`` (the playout folder) and nothing else; run it with :func:`serve_in_thread`.

    Parameters
    ----------
    address : (str, int)
        Host and port; port 0 picks a free one (see ``server_address`` once started).
    root : Path
        The folder to serve.
    feed : LiveFeed, optional
        The engine's playlist and status; without it ``live.m3u8`` and ``/status`` are files
        and blocking reloads are answered at once.
    max_connections : int
        Sockets served at once (parked requests included); more are answered 503.
    backlog : int
        The listen backlog (a burst of viewers connecting at once waits in the kernel).
    routes : dict, optional
        Generated documents: ``{"/metrics": fn}`` where ``fn() -> (body, content_type)`` runs in
        a worker thread (it may read files), never on the event loop.
    on_request : callable, optional
        ``on_request(path, status)`` after every answer (for the request counters of /metrics).
    """

    def __init__(
        self,
        address: tuple[str, int],
        root: str | Path,
        *,
        verbose: bool = False,
        feed: LiveFeed | None = None,
        live_playlist: str = "live.m3u8",
        max_connections: int = 4096,
        backlog: int = 4096,
        head_timeout_s: float = 10.0,
        idle_timeout_s: float = 65.0,
        write_timeout_s: float = 30.0,
        routes: dict[str, Callable[[], tuple[bytes, str]]] | None = None,
        on_request: Callable[[str, int], None] | None = None,
    ):
        self.root = Path(os.path.realpath(root))
        self.routes = dict(routes or {})
        self.on_request = on_request
        self.address = address
        self.verbose = verbose
        self.feed = feed
        self.live_playlist = live_playlist
        self.max_connections = max_connections
        self.backlog = backlog
        self.head_timeout_s = head_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.write_timeout_s = write_timeout_s
        self.server_address: tuple[str, int] = address
        self.connections = 0  # open sockets now
        self.parked = 0  # requests waiting for a part now
        self._waiters: dict[tuple[int, int | None], asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # the open connections
        self._closing = False
        self.stop_grace_s = 1.0  # what a stop waits for handlers to end, twice at most
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ life cycle

    def serve_forever(self) -> None:
        """Run the loop in this thread until :meth:`shutdown`."""
        try:
            self._serve()
        finally:
            self._stopped.set()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(
                    self._connection,
                    self.address[0],
                    self.address[1],
                    backlog=self.backlog,
                    limit=2 * MAX_REQUEST_LINE_BYTES,
                    reuse_address=True,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self.server_address = self._server.sockets[0].getsockname()[:2]
        if self.feed is not None:
            self.feed.subscribe(self._on_publish)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self.feed is not None:
                self.feed.unsubscribe(self._on_publish)
            loop.run_until_complete(self._close_all())
            loop.close()

    async def _close_all(self) -> None:
        """End every connection now: a stop never waits for a client. Handlers are cancelled
        (each closes its socket), then what is still open is aborted (a reader that stopped
        reading, a handler that went on: Python 3.11's ``wait_for`` can swallow a cancel and read
        on for the keep-alive's 65 s). Sockets go after the cancel, not before: aborting one
        under ``sendfile`` trips 3.11's transport (InvalidStateError in ``_call_connection_lost``)."""
        assert self._server is not None
        self._closing = True  # a handler that starts from now on aborts its socket at once
        self._server.close()
        me = asyncio.current_task()
        for _ in range(3):  # the last pass's accepts make their transports, their handlers start
            await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        late: set[asyncio.Task[object]] = set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=0.1)
        for writer in list(self._writers):
            writer.transport.abort()
        if late:
            _, late = await asyncio.wait(late, timeout=self.stop_grace_s)
            for t in late:
                t.cancel()
        try:
            await asyncio.wait_for(self._server.wait_closed(), self.stop_grace_s)
        except asyncio.TimeoutError:
            log.warning("HTTP server: %d connections still open at stop", self.connections)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        if not self._ready.wait(timeout_s):
            raise TimeoutError("the HTTP server did not start")
        if self._error is not None:
            raise self._error

    def shutdown(self) -> None:
        """Stop serving (from any thread); returns once the loop has stopped."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass
            if not self._stopped.wait(10):
                log.warning("HTTP server: not stopped after 10 s")

    def server_close(self) -> None:
        """Kept for callers of the former threaded server: :meth:`shutdown` closes everything."""

    # ------------------------------------------------------------------ blocking reload

    def _on_publish(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closing

    def _wake(self) -> None:
        snap = self.feed.snapshot if self.feed else None
        if snap is None:
            return
        for key, fut in list(self._waiters.items()):
            if reload_state(snap, *key) != "wait":
                del self._waiters[key]
                if not fut.done():
                    fut.set_result(None)

    async def _blocked(
        self, msn: int, part: int | None, eof: asyncio.Future[bytes]
    ) -> tuple[str, Snapshot | None]:
        """Wait until the playlist holds (msn, part): ("ready"|"refuse"|"timeout"|"gone", snapshot)."""
        assert self.feed is not None and self._loop is not None
        snap = self.feed.snapshot
        if snap is None:
            return "timeout", None
        deadline = self._loop.time() + 3 * snap.target_duration_s
        self.parked += 1
        try:
            while True:
                snap = self.feed.snapshot
                assert snap is not None
                state = reload_state(snap, msn, part)
                if state != "wait":
                    return state, snap
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    return "timeout", snap
                key = (msn, part)
                fut = self._waiters.get(key)
                if fut is None or fut.done():
                    fut = self._waiters[key] = self._loop.create_future()
                shared = asyncio.shield(fut)
                done, _ = await asyncio.wait(
                    {shared, eof}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if eof in done:
                    if eof.cancelled() or eof.exception() is not None or not eof.result():
                        shared.cancel()
                        return "gone", snap  # the end of the stream: the client went
                    # data: a pipelined request's first byte (the caller hands it on); the
                    # reload waits on, no longer watching for the client's leaving
                    eof = self._loop.create_future()
                if not done:
                    shared.cancel()
        finally:
            self.parked -= 1

    # ------------------------------------------------------------------ connections

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        timed_out = False
        self._writers.add(writer)
        self.connections += 1
        try:
            if self._closing:
                writer.transport.abort()
                return
            if self.connections > self.max_connections:
                await self._send(
                    writer, HTTPStatus.SERVICE_UNAVAILABLE, keep=False, extra=[("Retry-After", "1")]
                )
                return
            pushed = b""  # a byte read while a request was parked (a pipelined request)
            first = True
            while True:
                try:
                    line = await asyncio.wait_for(
                        reader.readline(), self.head_timeout_s if first else self.idle_timeout_s
                    )
                except (asyncio.TimeoutError, ConnectionError):
                    timed_out = True
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    await self._send(writer, HTTPStatus.REQUEST_URI_TOO_LONG, keep=False)
                    return
                line, pushed = pushed + line, b""
                first = False
                if not line:
                    return
                if len(line) > MAX_REQUEST_LINE_BYTES:
                    await self._send(writer, HTTPStatus.REQUEST_URI_TOO_LONG, keep=False)
                    return
                if not line.strip():
                    continue  # RFC 9112 2.2: tolerate blank lines before a request line
                try:
                    keep, pushed = await self._request(line, reader, writer)
                except _Refuse as r:
                    await self._send(writer, r.status, keep=False)
                    return
                except (asyncio.TimeoutError, ConnectionError):  # a write (or a read) timed out
                    timed_out = True
                    return
                if not keep:
                    return
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one bad connection never stops the server
            if self._closing:  # its socket was aborted by the stop
                log.debug("HTTP connection ended by the stop", exc_info=True)
            else:
                log.exception("HTTP connection failed")
        finally:
            self.connections -= 1
            self._writers.discard(writer)
            if timed_out and writer.transport.get_write_buffer_size():
                # a client that stopped reading (a write timed out): close() would wait for it
                # to read what is left, holding the socket and its descriptor for as long as the
                # client likes, uncounted. (An answer still in the buffer after a drain that
                # did not time out is flushed by close(): a healthy client gets all of it.)
                writer.transport.abort()
            else:
                writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            try:
                raw = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raise _Refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE) from None
            if not raw:
                raise ConnectionResetError("closed in the request head")
            if raw in (b"\r\n", b"\n"):
                return headers
            name, colon, value = raw.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise _Refuse(HTTPStatus.BAD_REQUEST)
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise _Refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    async def _request(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Answer one request; returns (keep the connection, a byte read ahead)."""
        words = line.decode("latin-1").strip().split()
        _REQUEST_PATH.set(words[1].partition("?")[0] if len(words) > 1 else "")
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            raise _Refuse(HTTPStatus.BAD_REQUEST)  # HTTP/0.9 ("GET /") or garbage
        method, target, version = words
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Refuse(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        headers = await asyncio.wait_for(self._read_head(reader), self.head_timeout_s)
        conn = headers.get("connection", "").lower()
        keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
        if self.verbose:
            log.info("%s %s", method, target)
        if method == "OPTIONS":  # CORS preflight (a Range header is not always "simple")
            await self._send(
                writer,
                HTTPStatus.NO_CONTENT,
                keep=keep,
                extra=[
                    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Allow-Headers", "Range"),
                    ("Access-Control-Max-Age", "86400"),
                ],
            )
            return keep, b""
        if method not in ("GET", "HEAD"):
            await self._send(
                writer, HTTPStatus.METHOD_NOT_ALLOWED, keep=False, extra=[("Allow", "GET, HEAD, OPTIONS")]
            )
            return False, b""
        try:
            has_body = int(headers.get("content-length") or 0) or "transfer-encoding" in headers
        except ValueError:
            raise _Refuse(HTTPStatus.BAD_REQUEST) from None
        if has_body:
            raise _Refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return await self._get(target, headers, writer, reader, head=method == "HEAD", keep=keep)

    def _resolve(self, path: str) -> Path | None:
        path = ALIASES.get(path, path)
        if not path.startswith("/") or "\\" in path or "\x00" in path:
            return None
        parts = [p for p in path.split("/") if p]
        if not parts or any(p.startswith(".") for p in parts):  # no .., no dot files (state)
            return None
        if path.endswith("/") or "//" in path:
            return None  # /live.m3u8/ names no file (a folder has no listing here)
        target = Path(os.path.realpath(self.root / posixpath.join(*parts)))
        if target != self.root and self.root not in target.parents:
            return None  # a symlink pointing out of the folder
        return target

    async def _get(
        self,
        target: str,
        headers: dict[str, str],
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        *,
        head: bool,
        keep: bool,
    ) -> tuple[bool, bytes]:
        raw, _, query = target.partition("?")
        raw = raw.partition("#")[0]
        if raw.lower().startswith(("http://", "https://")):  # absolute form (RFC 9112 3.2.2)
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        try:
            path = urllib.parse.unquote(raw, errors="strict") if "%" in raw else raw
            resolved = self._resolve(path)
        except UnicodeDecodeError:
            resolved = None
        if resolved is not None and raw in self.routes:
            try:
                body, ctype = await asyncio.get_running_loop().run_in_executor(None, self.routes[raw])
            except Exception:  # noqa: BLE001  (a generator's bug must not take the server down)
                log.exception("%s failed", path)
                await self._send(writer, HTTPStatus.INTERNAL_SERVER_ERROR, keep=keep)
                return keep, b""
            await self._send(
                writer, HTTPStatus.OK, keep=keep, body=body, head=head, ctype=ctype, no_cache=True
            )
            return keep, b""
        if resolved is None:
            await self._send(writer, HTTPStatus.NOT_FOUND, keep=keep)
            return keep, b""
        if self.feed is not None and resolved == self.root / "status.json":
            try:  # the engine's document, with the server's own counts
                doc = json.loads(self.feed.status)
                doc["http"] = {
                    "connections": self.connections,
                    "parked": self.parked,
                    "max_connections": self.max_connections,
                }
                body = json.dumps(doc, indent=1).encode()
            except ValueError:
                body = self.feed.status
            await self._send(
                writer,
                HTTPStatus.OK,
                keep=keep,
                body=body,
                head=head,
                ctype=MIME_TYPES[".json"],
                no_cache=True,
            )
            return keep, b""
        snap = self.feed.snapshot if self.feed is not None else None
        # a subtitle playlist of the snapshot (its closed segments): blocks on _HLS_msn alone
        rendition = resolved.name if snap is not None and resolved.parent == self.root else None
        if rendition is not None and rendition not in snap.renditions:
            rendition = None
        if resolved == self.root / self.live_playlist or rendition is not None:
            try:
                directive = parse_directives(query)
            except ValueError:
                await self._send(writer, HTTPStatus.BAD_REQUEST, keep=keep)
                return keep, b""
            if rendition is not None and directive is not None:
                directive = (directive[0], None)  # it has no parts: a part asked is its segment
            if snap is not None:
                pushed = b""
                if directive is not None:
                    eof = asyncio.ensure_future(reader.read(1))
                    try:
                        state, snap = await self._blocked(*directive, eof)
                    finally:
                        if eof.done() and not eof.cancelled() and eof.exception() is None:
                            pushed = eof.result()
                        else:
                            eof.cancel()
                    if state == "gone":
                        return False, b""
                    if state == "refuse":
                        await self._send(writer, HTTPStatus.BAD_REQUEST, keep=keep)
                        return keep, pushed
                    if state == "timeout" or snap is None:
                        await self._send(writer, HTTPStatus.SERVICE_UNAVAILABLE, keep=keep)
                        return keep, pushed
                body = snap.playlist if rendition is None else snap.renditions.get(rendition)
                if body is None:  # (a track gone from a later snapshot: its file)
                    await self._file(resolved, headers, writer, head=head, keep=keep)
                    return keep, pushed
                await self._send(
                    writer,
                    HTTPStatus.OK,
                    keep=keep,
                    body=body,
                    head=head,
                    ctype=MIME_TYPES[".m3u8"],
                    no_cache=True,
                )
                return keep, pushed
        await self._file(resolved, headers, writer, head=head, keep=keep)
        return keep, b""

    def _on_air(self, path: Path) -> bool:
        """Whether ``path`` is the media segment on air (or one to come), sent no-cache as a
        precaution: written whole when its slot starts (a preload hint names it), it never
        changes (cut short, or aired anew after a restart, a segment goes to a file of its own)."""
        snap = self.feed.snapshot if self.feed else None
        if snap is None or path.suffix.lower() != ".ts" or not path.stem.isdigit():
            return False
        return int(path.stem) >= snap.next_sequence

    async def _file(
        self, path: Path, headers: dict[str, str], writer: asyncio.StreamWriter, *, head: bool, keep: bool
    ) -> None:
        try:
            f = open(path, "rb")
        except OSError:  # missing, a folder, unreadable, a name too long for the file system
            await self._send(writer, HTTPStatus.NOT_FOUND, keep=keep)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            ext = path.suffix.lower()
            rng = None if "if-range" in headers else parse_range(headers.get("range"), size)
            if isinstance(rng, HTTPStatus):
                await self._send(writer, rng, keep=keep, extra=[("Content-Range", f"bytes */{size}")])
                return
            first, last = rng if rng is not None else (0, size - 1)
            extra = [("Accept-Ranges", "bytes")]
            status = HTTPStatus.OK
            if rng is not None:
                status = HTTPStatus.PARTIAL_CONTENT
                extra.append(("Content-Range", f"bytes {first}-{last}/{size}"))
            count = last - first + 1
            on_air = self._on_air(path)
            await self._send(
                writer,
                status,
                keep=keep,
                ctype=MIME_TYPES.get(ext, "application/octet-stream"),
                length=count,
                head=head,
                no_cache=ext in _NO_CACHE or on_air,
                immutable=ext not in _NO_CACHE and not on_air,
                extra=extra,
            )
            if head or count <= 0:
                return
            assert self._loop is not None
            try:
                await asyncio.wait_for(
                    self._loop.sendfile(writer.transport, f, first, count), self.write_timeout_s
                )
            except RuntimeError:  # "Transport is closing": the viewer reset the connection mid-file
                if writer.transport.is_closing():
                    raise ConnectionResetError("the client went away mid-answer") from None
                raise

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: HTTPStatus,
        *,
        keep: bool,
        body: bytes | None = None,
        length: int | None = None,
        head: bool = False,
        ctype: str | None = None,
        no_cache: bool = False,
        immutable: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """The status line and headers (CORS once), then ``body`` unless ``head``."""
        if body is None and length is None:
            body = (
                b""
                if status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED) or status < 400
                else f"{status.value} {status.phrase}\n".encode()
            )
            ctype = ctype or ("text/plain; charset=utf-8" if body else None)
        n = len(body) if body is not None else length
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Server: avatarrender-playout",
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        if status != HTTPStatus.NO_CONTENT:
            lines.append(f"Content-Length: {n}")
        if no_cache or status >= 400:  # an error is no answer to keep (a CDN kept a 400 for 10 s)
            lines.append("Cache-Control: no-cache, no-store, must-revalidate")
        elif immutable and status < 300:
            lines.append("Cache-Control: public, max-age=86400, immutable")
        lines += [f"{k}: {v}" for k, v in (extra or [])]
        lines.append(f"{_CORS[0]}: {_CORS[1]}")
        lines.append("Access-Control-Expose-Headers: Content-Length, Content-Range")
        lines.append("Connection: keep-alive" if keep else "Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if body and not head:
            writer.write(body)
        if self.on_request is not None:
            try:
                self.on_request(_REQUEST_PATH.get(), int(status))
            except Exception:  # noqa: BLE001  (counting must never fail an answer)
                log.debug("request counter failed", exc_info=True)
        await asyncio.wait_for(writer.drain(), self.write_timeout_s)


def _raise_fd_limit() -> None:
    """Every parked viewer holds a socket: let this process open as many as it may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


def serve_in_thread(
    root: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    verbose: bool = False,
    feed: LiveFeed | None = None,
    max_connections: int = 4096,
    routes: dict[str, Callable[[], tuple[bytes, str]]] | None = None,
    on_request: Callable[[str, int], None] | None = None,
) -> tuple[PlayoutServer, threading.Thread]:
    """Start a :class:`PlayoutServer` in a daemon thread; call ``server.shutdown()`` to stop.

    Raises
    ------
    OSError
        The address cannot be bound (in use, not local).
    """
    _raise_fd_limit()
    server = PlayoutServer(
        (host, port),
        root,
        verbose=verbose,
        feed=feed,
        max_connections=max_connections,
        routes=routes,
        on_request=on_request,
    )
    thread = threading.Thread(target=server.serve_forever, name="playout-http", daemon=True)
    thread.start()
    server.wait_ready()
    return server, thread
