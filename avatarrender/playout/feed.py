"""What the engine hands the HTTP server: the live playlist and status, in memory, thread-safe.

The engine (its own thread) calls :meth:`LiveFeed.publish` after every publication; the server
(an asyncio loop in another thread) subscribes a callback that wakes its parked blocking-reload
requests with ``loop.call_soon_threadsafe``. :func:`reload_state` is the RFC 8216bis 6.2.5.2
decision for one ``_HLS_msn``/``_HLS_part`` request against one snapshot.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import Literal

__all__ = ["Snapshot", "LiveFeed", "reload_state", "advance_part_limit"]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One published version of the live playlist.

    Attributes
    ----------
    playlist : bytes
        The media playlist text, exactly as written to ``live.m3u8``.
    next_sequence : int
        Media sequence number of the segment on air (not complete yet).
    parts_published : int
        How many of its parts are in ``playlist``.
    part_counts : Mapping[int, int]
        Parts of the recent complete segments, by media sequence number (a request for a part
        past a segment's last is one for part 0 of the next: RFC 8216bis 6.2.5.2).
    target_duration_s : int
        EXT-X-TARGETDURATION.
    part_target_s : float or None
        PART-TARGET; None when the playlist has no parts.
    renditions : Mapping[str, bytes]
        The subtitle playlists of this version (``subs_LANG.m3u8`` -> text), as written: they
        list the closed media segments of ``playlist``, and block on ``_HLS_msn`` as it does.
    """

    playlist: bytes
    next_sequence: int
    parts_published: int
    part_counts: Mapping[int, int]
    target_duration_s: int
    part_target_s: float | None
    renditions: Mapping[str, bytes] = dataclasses.field(default_factory=dict)


def advance_part_limit(part_target_s: float) -> int:
    """RFC 8216bis 6.2.5.2: 3 / PART-TARGET parts if PART-TARGET < 1 s, else 3."""
    return math.ceil(3 / part_target_s) if part_target_s < 1 else 3


def reload_state(snap: Snapshot, msn: int, part: int | None) -> Literal["ready", "wait", "refuse"]:
    """Can a blocking reload for ``_HLS_msn=msn`` (``_HLS_part=part``) be answered from ``snap``?

    ``refuse``: the request is too far ahead (more than two segments past the last complete
    one, or more parts than the Advance Part Limit past the last published part): 400.
    """
    last_complete = snap.next_sequence - 1
    if msn > last_complete + 2 or msn < 0 or (part is not None and part < 0):
        return "refuse"
    if part is None:
        return "ready" if msn <= last_complete else "wait"
    if snap.part_target_s is not None:
        per_segment = math.ceil(snap.target_duration_s / snap.part_target_s)
        ahead = (msn - snap.next_sequence) * per_segment + part - (snap.parts_published - 1)
        if ahead > advance_part_limit(snap.part_target_s):
            return "refuse"
    while msn <= last_complete:
        n = snap.part_counts.get(msn)
        if n is None or part < n:
            return "ready"  # complete (a segment published whole counts as all its parts)
        msn, part = msn + 1, 0  # past its last part: part 0 of the next segment
    if msn == snap.next_sequence and part < snap.parts_published:
        return "ready"
    return "wait"


class LiveFeed:
    """The latest :class:`Snapshot` and status document, and who to tell when they change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._status = b"{}"
        self._listeners: list[Callable[[], None]] = []

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def status(self) -> bytes:
        """The status document (JSON) the engine keeps (also written to status.json)."""
        return self._status

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the engine's thread) after every publication."""
        with self._lock:
            self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current (after its playlist file is written) and wake listeners."""
        self._snapshot = snapshot
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            cb()

    def set_status(self, doc: bytes) -> None:
        self._status = doc
