"""Restream the live channel to an ingest (YouTube, Twitch, any RTMP or SRT server).

The aired MPEG-TS media segments (timestamps already continuous across programmes, see
:mod:`~avatarrender.playout.tsrewrite`) are fed, as they are published, into one ffmpeg process's
stdin, which copies them (``-c copy``: no re-encoding) to ``-f flv`` for ``rtmp://``/``rtmps://``
or ``-f mpegts`` for ``srt://``.

The HLS output never waits for the ingest: :meth:`Pusher.offer` only appends a path to a bounded
queue (the oldest is dropped when the pusher is behind) and returns. A thread of its own feeds
ffmpeg; when ffmpeg exits (the ingest refused, dropped or stalled the connection) it is started
again after an exponential backoff. The stream key never reaches a log line or ``/status``: URLs
are shown redacted and ffmpeg's messages are scrubbed of every secret part of the URL.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from avatarrender.errors import SpecError

__all__ = ["Pusher", "redact", "push_command", "SCHEMES"]

log = logging.getLogger("avatarrender.playout.push")

#: scheme -> ffmpeg output format
SCHEMES = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts"}
_SECRET_QUERY = {"streamid", "passphrase", "key", "token", "pass", "password", "secret", "auth"}
REDACTED = "***"


def _parse(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise SpecError(
            None,
            "--push",
            f"{redact(url)}: give rtmp://HOST/APP/KEY, rtmps://HOST/APP/KEY or srt://HOST:PORT?streamid=KEY",
        )
    return parts


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that must not be shown: the key (last path part of an RTMP URL),
    secret query values, the password; raw and percent-decoded, longest first."""
    parts = urllib.parse.urlsplit(url)
    found = []
    if parts.password:
        found.append(parts.password)
    if parts.scheme in ("rtmp", "rtmps"):
        segs = [s for s in parts.path.split("/") if s]
        if len(segs) >= 2:
            found.append("/".join(segs[1:]))  # everything after the app is the key
            found.append(segs[-1])
    for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if v and (k.lower() in _SECRET_QUERY or parts.scheme == "srt"):
            found.append(v)
    out = set()
    for s in found:
        out.add(s)
        out.add(urllib.parse.unquote(s))
        out.add(urllib.parse.quote(s, safe=""))
    return sorted((s for s in out if s), key=len, reverse=True)


def redact(url: str) -> str:
    """``url`` with its stream key, secret query values and password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:  # no telling where its secret is: show scheme and host only
        return f"{parts.scheme}://{parts.hostname or ''}/{REDACTED}"
    text = url
    for secret in _secrets(url):
        text = text.replace(secret, REDACTED)
    return text


def scrub(text: str, url: str) -> str:
    """Remove every secret part of ``url`` from ``text`` (ffmpeg quotes the URL in errors)."""
    for secret in _secrets(url):
        text = text.replace(secret, REDACTED)
    return text


def push_command(ffmpeg: str, url: str, *, rw_timeout_s: float = 10.0) -> list[str]:
    """The ffmpeg command line: MPEG-TS on stdin, copied (no re-encoding) to ``url``."""
    fmt = SCHEMES[_parse(url).scheme]
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        # progress reports start once the output is open (connected): our "live" signal
        "-progress",
        "pipe:1",
        "-stats_period",
        "1",
        # one media segment is enough to find both streams: start pushing without delay
        "-probesize",
        "2000000",
        "-analyzeduration",
        "1500000",
        "-f",
        "mpegts",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-c",
        "copy",
    ]
    if fmt == "flv":
        cmd += ["-bsf:a", "aac_adtstoasc", "-flvflags", "no_duration_filesize"]
    # a stalled ingest makes ffmpeg fail (and us reconnect) instead of waiting for ever
    cmd += ["-rw_timeout", str(int(rw_timeout_s * 1_000_000)), "-f", fmt, url]
    return cmd


class Pusher:
    """Feeds published media segments to an ffmpeg that pushes them to ``url``.

    Parameters
    ----------
    url : str
        ``rtmp://``, ``rtmps://`` or ``srt://`` ingest URL (with its key).
    queue_segments : int
        Media segments kept while the push is behind or reconnecting; older ones are dropped
        (a jump in the pushed stream). More than the playout's window, which a fresh channel
        publishes at once. Paths are queued, not bytes: the memory is nothing.
    backoff_s : sequence of float
        Waits before successive reconnections; the last repeats. Reset after a connection that
        lasted ``stable_s``.
    stall_s : float
        A write to ffmpeg blocked this long means the ingest stalled: ffmpeg is restarted.
    ffmpeg : str, optional
        The ffmpeg binary (default: the bundled one).
    """

    def __init__(
        self,
        url: str,
        *,
        queue_segments: int = 10,
        backoff_s: tuple[float, ...] = (1, 2, 4, 8, 16, 30),
        stable_s: float = 30.0,
        stall_s: float = 20.0,
        ffmpeg: str | None = None,
    ):
        _parse(url)
        if ffmpeg is None:
            from avatarrender.media import ffmpeg_exe

            ffmpeg = ffmpeg_exe()
        self.url = url
        self.shown_url = redact(url)
        self.ffmpeg = ffmpeg
        self.backoff_s = tuple(float(b) for b in backoff_s) or (1.0,)
        self.stable_s = stable_s
        self.stall_s = stall_s
        self._queue: collections.deque[Path] = collections.deque(maxlen=max(1, queue_segments))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_since: float | None = None
        self.state = "stopped"
        self.sent = 0
        self.dropped = 0
        self.restarts = 0
        self.connections = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.retry_at: float | None = None

    # ------------------------------------------------------------------ the engine's side

    def offer(self, path: str | Path) -> None:
        """Queue a published media segment; never blocks (the oldest is dropped when full)."""
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(Path(path))
            self._cond.notify()

    def status(self) -> dict[str, Any]:
        """For ``/status``: the redacted URL, state, counts, the last error (scrubbed)."""
        now = time.time()
        return {
            "url": self.shown_url,
            "state": self.state,
            "warning": (
                f"restream {self.state}: {self.last_error}"
                if self.state == "retrying" and self.last_error
                else None
            ),
            "connected_s": round(now - self.connected_since, 1) if self.connected_since else None,
            "retry_in_s": round(max(0.0, self.retry_at - now), 1) if self.retry_at else None,
            "sent_segments": self.sent,
            "dropped_segments": self.dropped,
            "restarts": self.restarts,
            "queued": len(self._queue),
            "last_error": self.last_error,
        }

    def start(self) -> Pusher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="avatarrender-push", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop pushing: close ffmpeg's input (it flushes and ends the stream), then wait."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._kill()
        self.state = "stopped"

    # ------------------------------------------------------------------ the pusher's side

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self._connect_once()
            if self._stop.is_set():
                break
            if time.monotonic() - started >= self.stable_s:
                attempt = 0  # it worked for a while: the next failure retries quickly again
            wait_s = self.backoff_s[min(attempt, len(self.backoff_s) - 1)]
            attempt += 1
            self.restarts += 1
            self.state = "retrying"
            self.connected_since = None
            self.retry_at = time.time() + wait_s
            log.warning(
                "restream to %s: %s; reconnecting in %g s",
                self.shown_url,
                self.last_error or "ffmpeg exited",
                wait_s,
            )
            self._stop.wait(wait_s)
            self.retry_at = None

    def _connect_once(self) -> None:
        """Run one ffmpeg until it exits (or we stop); feed it from the queue meanwhile."""
        self.state = "connecting"
        tail: collections.deque[str] = collections.deque(maxlen=8)
        try:
            proc = subprocess.Popen(
                push_command(self.ffmpeg, self.url),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self.last_error = scrub(f"cannot start ffmpeg: {exc}", self.url)
            return
        self._proc = proc
        self.connections += 1

        def drain() -> None:  # ffmpeg's messages, scrubbed, keep the pipe from filling
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = scrub(raw.decode("utf-8", "replace").strip(), self.url)
                if line:
                    tail.append(line)
                    log.debug("restream ffmpeg: %s", line)

        def progress() -> None:  # key=value blocks, each ended by progress=continue
            assert proc.stdout is not None
            for raw in proc.stdout:
                if raw.startswith(b"progress=") and self.state != "live":
                    self.state = "live"
                    self.connected_since = time.time()
                    log.info("restream to %s: live", self.shown_url)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        watcher = threading.Thread(target=progress, daemon=True)
        watcher.start()
        feeder = threading.Thread(target=self._feed, args=(proc,), daemon=True)
        feeder.start()
        while proc.poll() is None and not self._stop.is_set():
            since = self._write_since
            if since is not None and time.monotonic() - since > self.stall_s:
                tail.append(f"ingest stalled: a write blocked over {self.stall_s:g} s")
                proc.kill()
                break
            self._stop.wait(0.2)
        if self._stop.is_set() and proc.poll() is None:
            try:  # a clean end of stream: close the input and give ffmpeg a moment to flush
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
        proc.wait()
        with self._cond:
            self._cond.notify_all()
        feeder.join(5)
        reader.join(5)
        watcher.join(5)
        self._write_since = None
        rc = proc.returncode
        self.last_error = scrub(f"ffmpeg exited ({rc})" + (f": {tail[-1]}" if tail else ""), self.url)

    def _feed(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        while not self._stop.is_set() and proc.poll() is None:
            with self._cond:
                while not self._queue and not self._stop.is_set() and proc.poll() is None:
                    self._cond.wait(0.5)
                if not self._queue:
                    continue
                path = self._queue.popleft()
            try:
                data = path.read_bytes()
            except OSError:
                self.dropped += 1  # already out of the window: skipped, not waited for
                continue
            try:
                self._write_since = time.monotonic()
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            finally:
                self._write_since = None
            self.sent += 1
