"""``/metrics``: the playout's state in the Prometheus text exposition format (version 0.0.4).

Also :func:`service_metrics_text`, the same format for the render service (``avatarrender
serve``) from its status (``INBOX/.status.json``), for ``avatarrender metrics --service``.

:class:`Counters` is the one place the engine and the HTTP server count things (published media
segments, programme starts/ends/skips/refusals, late starts, requests and errors by kind); it is
thread-safe because the server counts from its own threads. :func:`metrics_text` renders the
counters together with gauges read from the playout at scrape time (what is on air, render-ahead,
publication lag against the clock). Nothing here imports the engine: it takes the playout as is.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from fractions import Fraction
from typing import Any

__all__ = ["Counters", "metrics_text", "service_metrics_text", "request_kind", "CONTENT_TYPE"]

#: the Content-Type a server should send with :func:`metrics_text`
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PROGRAMME_EVENTS = ("started", "ended", "skipped", "refused")


def request_kind(path: str) -> str:
    """What a request path asks for, as a bounded label: playlist, master, media, part, status,
    epg, metrics, page or other (a label per path would grow without bound)."""
    p = path.split("?", 1)[0]
    name = p.rsplit("/", 1)[-1]
    if name == "master.m3u8":
        return "master"
    if name.endswith(".m3u8"):
        return "playlist"
    if "/parts/" in p or ".part" in name:
        return "part"
    if name.endswith((".ts", ".m4s", ".mp4", ".aac")):
        return "media"
    if p in ("/status", "/status.json"):
        return "status"
    if p == "/epg.xml":
        return "epg"
    if p == "/metrics":
        return "metrics"
    if p in ("/", "/index.html") or name.endswith((".js", ".css", ".html")):
        return "page"
    return "other"


class Counters:
    """Monotonic counts since the process started; increments from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (kind, status code)
        self.errors: Counter[tuple[str, str]] = Counter()  # (source, kind)
        self.segments: Counter[str] = Counter()  # programme | filler | stall
        self.aired_s: Counter[str] = Counter()  # seconds, as above
        self.programmes: Counter[str] = Counter()  # started | ended | skipped | refused
        self.late_starts = 0
        self.late_s = Fraction(0)

    def request(self, kind: str, status: int) -> None:
        """One HTTP answer; 5xx also count as an error of that kind."""
        with self._lock:
            self.requests[(kind, str(int(status)))] += 1
            if status >= 500:
                self.errors[("http", kind)] += 1

    def error(self, kind: str, *, source: str = "playout") -> None:
        """One error (``source`` playout, http, render; ``kind`` a short bounded word)."""
        with self._lock:
            self.errors[(source, kind)] += 1

    def published(self, key: str, duration_s: Fraction, *, stalled: bool = False) -> None:
        """One media segment went on air: filler, a programme's, or filler for a stalled one."""
        what = "stall" if stalled else ("filler" if key == "filler" else "programme")
        with self._lock:
            self.segments[what] += 1
            self.aired_s[what] += Fraction(duration_s)

    def aired(self, event: dict[str, Any], *, target_duration_s: int | Fraction) -> None:
        """A scheduler event (``started``/``ended``/``skipped``/``refused``). A start is late when
        it comes a whole media segment or more after the entry was due (an absolute entry starts
        at the first boundary at or after its time: less than one segment is on time)."""
        kind = str(event.get("event"))
        with self._lock:
            if kind in PROGRAMME_EVENTS:
                self.programmes[kind] += 1
            if kind == "started" and event.get("due_s") is not None:
                late = Fraction(event["at_s"]) - Fraction(event["due_s"])
                if late >= Fraction(target_duration_s):
                    self.late_starts += 1
                    self.late_s += late

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy (taken under the lock)."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "segments": dict(self.segments),
                "aired_s": dict(self.aired_s),
                "programmes": dict(self.programmes),
                "late_starts": self.late_starts,
                "late_s": self.late_s,
            }


def _label(value: str) -> str:
    """Escape a label value: backslash, double quote and newline (the format's three)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float | int | Fraction) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float | int | Fraction]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")


def metrics_text(
    playout: Any, *, now_s: float | Fraction | None = None, counters: Counters | None = None
) -> str:
    """The playout's metrics as Prometheus text.

    Parameters
    ----------
    playout : Playout
        A started :class:`~avatarrender.playout.engine.Playout` (or one not started yet: then
        only the counters and ``avatarrender_playout_up 0``).
    now_s : float or Fraction, optional
        The channel's clock (epoch s) to measure lag against; default ``time.time()`` plus the
        playout's ``clock_offset_s`` (how far the channel runs ahead of the system clock, after
        the clock went back: measured against the system clock, the lag read 0 and the live
        edge's age negative while the channel stood still).
    counters : Counters, optional
        Default ``playout.counters``.

    Returns
    -------
    str
        Text exposition format 0.0.4 (serve with :data:`CONTENT_TYPE`).
    """
    offset = Fraction(getattr(playout, "clock_offset_s", 0) or 0)
    now = Fraction(time.time()) + offset if now_s is None else Fraction(now_s)
    counters = counters or getattr(playout, "counters", None) or Counters()
    c = counters.snapshot()
    w = _Writer()
    sch = getattr(playout, "scheduler", None)
    w.metric(
        "avatarrender_playout_up", "gauge", "1 once the playout has started.", [({}, int(sch is not None))]
    )
    if sch is not None:
        st = playout.status(now)
        key = st["on_air"].get("key") or "none"
        kind = key.split("/", 1)[0] if "/" in key else key
        w.metric(
            "avatarrender_on_air",
            "gauge",
            "The programme on air (value 1, named by labels).",
            [({"key": key, "kind": kind}, 1)],
        )
        w.metric(
            "avatarrender_render_ahead_seconds",
            "gauge",
            "Finished media not yet aired of the programme on air, seconds.",
            [({}, st["on_air"].get("render_ahead_s") or 0.0)],
        )
        due = getattr(playout, "next_due_s", None)
        lag = max(Fraction(0), now - Fraction(due)) if due is not None else Fraction(0)
        w.metric(
            "avatarrender_publication_lag_seconds",
            "gauge",
            "How far the next media segment's publication is behind the clock, seconds (0 when on time).",
            [({}, lag)],
        )
        edge = playout.playlist.next_pdt_s
        w.metric(
            "avatarrender_live_edge_age_seconds",
            "gauge",
            "Clock minus the PROGRAM-DATE-TIME end of the newest media segment, seconds.",
            [({}, now - Fraction(edge) if edge is not None else 0.0)],
        )
        w.metric(
            "avatarrender_clock_offset_seconds",
            "gauge",
            "How far the channel's clock runs ahead of the system clock, seconds (0 unless the "
            "system clock went back while it aired).",
            [({}, offset)],
        )
        w.metric(
            "avatarrender_media_sequence",
            "gauge",
            "EXT-X-MEDIA-SEQUENCE of the playlist.",
            [({}, int(st["media_sequence"]))],
        )
        w.metric(
            "avatarrender_discontinuity_sequence",
            "gauge",
            "EXT-X-DISCONTINUITY-SEQUENCE of the playlist.",
            [({}, int(st["discontinuity_sequence"]))],
        )
        w.metric(
            "avatarrender_spool_queue_length",
            "gauge",
            "Spool items waiting to air.",
            [({}, len(st["spool_queue"]))],
        )
        w.metric(
            "avatarrender_rendering_ahead",
            "gauge",
            "1 while the playout renders a schedule entry ahead.",
            [({}, int(st["rendering"] is not None))],
        )
        w.metric(
            "avatarrender_disk_error",
            "gauge",
            "1 while the output cannot be written.",
            [({}, int(st["disk_error"] is not None))],
        )
    w.metric(
        "avatarrender_media_segments_total",
        "counter",
        "Media segments published, by what they were (stall: filler inside a programme that "
        "has begun, its next media segment not rendered in time; a late start is "
        "avatarrender_late_starts_total).",
        [({"what": k}, c["segments"].get(k, 0)) for k in ("programme", "filler", "stall")],
    )
    w.metric(
        "avatarrender_aired_seconds_total",
        "counter",
        "Seconds published, by what.",
        [({"what": k}, c["aired_s"].get(k, Fraction(0))) for k in ("programme", "filler", "stall")],
    )
    w.metric(
        "avatarrender_programmes_total",
        "counter",
        "Programme events: started, ended, skipped (late policy), refused (corrupt).",
        [({"event": k}, c["programmes"].get(k, 0)) for k in PROGRAMME_EVENTS],
    )
    w.metric(
        "avatarrender_late_starts_total",
        "counter",
        "Programmes that started a media segment or more after they were due.",
        [({}, c["late_starts"])],
    )
    w.metric(
        "avatarrender_late_start_seconds_total",
        "counter",
        "Sum of how late the late starts were, seconds.",
        [({}, c["late_s"])],
    )
    w.metric(
        "avatarrender_http_requests_total",
        "counter",
        "HTTP answers by kind and status.",
        [({"kind": k, "code": code}, n) for (k, code), n in sorted(c["requests"].items())],
    )
    w.metric(
        "avatarrender_errors_total",
        "counter",
        "Errors by source and kind.",
        [({"source": s, "kind": k}, n) for (s, k), n in sorted(c["errors"].items())],
    )
    return "\n".join(w.lines) + "\n"


def _epoch_s(iso: str | None) -> float | None:
    import datetime as _dt

    if not iso:
        return None
    try:
        t = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def service_metrics_text(
    status: dict[str, Any], *, fps: float = 30.0, up: bool | None = None, pending: int | None = None
) -> str:
    """The render service's status (:meth:`avatarrender.service.RenderService.status`, or its
    ``.status.json``) as Prometheus text: what it renders, how many wait, how fast the last
    render went, recent failures.

    Parameters
    ----------
    status : dict
        The service's status document.
    fps : float
        The channel's frame rate, to turn the last render's frames per second into a factor of
        air time.
    up : bool, optional
        Whether the service's process is running (its status file outlives it).
    pending : int, optional
        Submissions in the inbox now (the status file's list is as of its last write).
    """
    w = _Writer()
    cur = status.get("rendering") if up is not False else None
    if up is not None:
        w.metric(
            "avatarrender_service_up",
            "gauge",
            "1 while the render service's process runs (0: it died; its other figures are its last).",
            [({}, int(up))],
        )
    w.metric(
        "avatarrender_service_started_timestamp_seconds",
        "gauge",
        "When the render service started, epoch seconds.",
        [({}, _epoch_s(status.get("started_at")) or 0.0)],
    )
    w.metric(
        "avatarrender_service_workers",
        "gauge",
        "Render workers the service keeps warm.",
        [({}, int(status.get("jobs") or 0))],
    )
    w.metric(
        "avatarrender_service_rendering",
        "gauge",
        "1 while a submission renders.",
        [({}, int(cur is not None))],
    )
    w.metric(
        "avatarrender_service_held",
        "gauge",
        "1 while the submissions wait for the machine (a full disk, a spool it cannot write, the "
        "Dask cluster gone: the status's 'held' says which), none failed for it.",
        [({}, int(bool(status.get("held")) and up is not False))],
    )
    w.metric(
        "avatarrender_service_pending_submissions",
        "gauge",
        "Submissions waiting in the inbox (the one rendering included).",
        [({}, pending if pending is not None else len(status.get("pending") or []))],
    )
    done = status.get("done") or []
    last = done[-1] if done else None
    if last:
        wall = float(last.get("wall_s") or 0)
        frames = int(last.get("frames") or 0)
        w.metric(
            "avatarrender_service_last_render_seconds",
            "gauge",
            "Wall time of the last finished render, seconds.",
            [({}, wall)],
        )
        w.metric(
            "avatarrender_service_last_first_segment_seconds",
            "gauge",
            "Submission to first published media segment in the last render, seconds.",
            [({}, float(last.get("first_segment_s") or 0))],
        )
        w.metric(
            "avatarrender_service_last_render_realtime_factor",
            "gauge",
            "Air time rendered per second of wall time in the last render.",
            [({}, frames / fps / wall if wall > 0 else 0.0)],
        )
    failed = status.get("failed") or []
    w.metric(
        "avatarrender_service_recent_failures",
        "gauge",
        "Failed submissions among the recent ones the status keeps.",
        [({}, len(failed))],
    )
    last_fail = max((_epoch_s(f.get("at")) or 0.0 for f in failed), default=0.0)
    w.metric(
        "avatarrender_service_last_failure_timestamp_seconds",
        "gauge",
        "When the last submission failed, epoch seconds (0: none recently).",
        [({}, last_fail)],
    )
    return "\n".join(w.lines) + "\n"
