"""A strict reader of live media playlists and the RFC 8216 checks the playout tests share."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

from avatarrender.playout.playlist import parse_pdt

__all__ = ["Parsed", "parse_live", "check_transition"]


@dataclasses.dataclass
class Parsed:
    target_duration_s: int
    media_sequence: int
    discontinuity_sequence: int
    hold_back_s: float
    segments: list[dict]   # {seq, uri, duration_s (Fraction-ish float), pdt_s, disc}

    @property
    def duration_s(self) -> float:
        return sum(s["duration_s"] for s in self.segments)


def parse_live(text: str) -> Parsed:
    """Parse and check one live playlist on its own; AssertionError says what is wrong."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", "first line"
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PLAYLIST-TYPE" not in text, "live"
    tags = {}
    segs: list[dict] = []
    pending: dict = {}
    seq = None
    for ln in lines[1:]:
        if not ln:
            continue
        if ln.startswith("#EXT-X-TARGETDURATION:"):
            tags["target"] = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            tags["mseq"] = seq = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            tags["dseq"] = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-SERVER-CONTROL:"):
            tags["hold_back"] = float(ln.split("HOLD-BACK=", 1)[1].split(",")[0])
        elif ln == "#EXT-X-DISCONTINUITY":
            pending["disc"] = True
        elif ln.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pending["pdt_s"] = parse_pdt(ln.split(":", 1)[1])
        elif ln.startswith("#EXTINF:"):
            pending["duration_s"] = float(ln.split(":", 1)[1].rstrip(","))
        elif ln.startswith("#"):
            assert ln.split(":")[0] in ("#EXT-X-VERSION", "#EXT-X-INDEPENDENT-SEGMENTS"), ln
        else:
            assert "duration_s" in pending, f"{ln}: no EXTINF"
            assert "pdt_s" in pending, f"{ln}: no PROGRAM-DATE-TIME"
            assert seq is not None, "MEDIA-SEQUENCE before the first segment"
            segs.append({"seq": seq, "uri": ln, "disc": pending.get("disc", False), **pending})
            seq += 1
            pending = {}
    for k in ("target", "mseq", "dseq", "hold_back"):
        assert k in tags, f"missing tag {k}"
    assert segs, "empty playlist"
    assert not pending, "tags after the last segment"
    t = tags["target"]
    assert tags["hold_back"] >= 3 * t, "HOLD-BACK < 3 target durations"
    for s in segs:
        assert round(s["duration_s"]) <= t, f"EXTINF {s['duration_s']} > target {t}"
    for a, b in zip(segs, segs[1:]):
        assert b["pdt_s"] >= a["pdt_s"] + Fraction(a["duration_s"]).limit_denominator(1000) \
            - Fraction(1, 500), "PROGRAM-DATE-TIME overlaps or goes backwards"
        if not b["disc"]:
            gap = b["pdt_s"] - a["pdt_s"] - Fraction(a["duration_s"]).limit_denominator(1000)
            assert abs(gap) <= Fraction(1, 500), f"PDT gap {float(gap)} without a discontinuity"
    return Parsed(t, tags["mseq"], tags["dseq"], tags["hold_back"], segs)


def check_transition(prev: Parsed | None, cur: Parsed) -> None:
    """Between two successive versions of the playlist: sequences monotonic and consistent."""
    if prev is None:
        return
    assert cur.target_duration_s == prev.target_duration_s, "TARGETDURATION changed"
    assert cur.media_sequence >= prev.media_sequence, "MEDIA-SEQUENCE went backwards"
    assert cur.discontinuity_sequence >= prev.discontinuity_sequence, "DISCONTINUITY-SEQUENCE backwards"
    removed = [s for s in prev.segments if s["seq"] < cur.media_sequence]
    assert cur.discontinuity_sequence == prev.discontinuity_sequence + sum(s["disc"] for s in removed), \
        "DISCONTINUITY-SEQUENCE does not count the removed discontinuities"
    old = {s["seq"]: s for s in prev.segments}
    for s in cur.segments:
        if s["seq"] in old:
            o = old[s["seq"]]
            assert (o["uri"], o["pdt_s"], o["disc"], o["duration_s"]) == \
                (s["uri"], s["pdt_s"], s["disc"], s["duration_s"]), f"segment {s['seq']} changed"
    if prev.segments and cur.segments and cur.segments[-1]["seq"] > prev.segments[-1]["seq"]:
        first_new = next(s for s in cur.segments if s["seq"] > prev.segments[-1]["seq"])
        last = prev.segments[-1]
        assert first_new["seq"] == last["seq"] + 1 or cur.media_sequence > last["seq"] + 1
        assert first_new["pdt_s"] >= last["pdt_s"], "PROGRAM-DATE-TIME went backwards"
