"""A strict reader of live media playlists and the RFC 8216(bis) checks the playout tests share,
LL-HLS parts included (RFC 8216bis 4.4.4.9, 4.4.5.3, 6.2.2)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from fractions import Fraction

from avatarrender.media import ffmpeg_exe
from avatarrender.playout.playlist import parse_pdt

__all__ = ["Parsed", "parse_live", "check_transition", "wait_on_air"]


@dataclasses.dataclass
class Parsed:
    target_duration_s: int
    media_sequence: int
    discontinuity_sequence: int
    hold_back_s: float
    segments: list[dict]  # {seq, uri, duration_s (Fraction-ish float), pdt_s, disc, parts}
    part_target_s: float | None = None
    part_hold_back_s: float | None = None
    can_block_reload: bool = False
    open_parts: list[dict] = dataclasses.field(default_factory=list)  # parts of the segment on air
    hint: dict | None = None
    reports: dict[str, int] = dataclasses.field(default_factory=dict)  # rendition URI -> LAST-MSN

    @property
    def duration_s(self) -> float:
        return sum(s["duration_s"] for s in self.segments)

    @property
    def position(self) -> tuple[int, int]:
        """(sequence of the segment on air, its parts published)."""
        return self.segments[-1]["seq"] + 1, len(self.open_parts)

    def has_part(self, msn: int, part: int) -> bool:
        """Does this playlist hold part ``part`` of segment ``msn`` (or anything later)?"""
        nxt, n_open = self.position
        if msn < nxt:
            seg = next((s for s in self.segments if s["seq"] == msn), None)
            if seg is None or not seg["parts"] or part < len(seg["parts"]):
                return True
            return self.has_part(msn + 1, 0)
        return msn == nxt and part < n_open


# a media segment's file: its sequence number, the take after a restart, cut short
_MEDIA_NAME = re.compile(r"^(\d{9})(?:-\d+)?(?:-cut)?\.ts$")


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def parse_live(text: str) -> Parsed:
    """Parse and check one live playlist on its own; AssertionError says what is wrong."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", "first line"
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PLAYLIST-TYPE" not in text, "live"
    tags: dict = {}
    segs: list[dict] = []
    pending: dict = {"parts": []}
    seq = None
    for ln in lines[1:]:
        if not ln:
            continue
        if ln.startswith("#EXT-X-PART-INF:"):
            tags["part_target"] = float(_attrs(ln.split(":", 1)[1])["PART-TARGET"])
        elif ln.startswith("#EXT-X-PART:"):
            a = _attrs(ln.split(":", 1)[1])
            n, _, o = a["BYTERANGE"].partition("@")
            pending["parts"].append(
                {
                    "duration_s": float(a["DURATION"]),
                    "uri": a["URI"],
                    "size": int(n),
                    "offset": int(o),
                    "independent": a.get("INDEPENDENT") == "YES",
                }
            )
        elif ln.startswith("#EXT-X-PRELOAD-HINT:"):
            a = _attrs(ln.split(":", 1)[1])
            assert "hint" not in tags, "two preload hints"
            assert a["TYPE"] == "PART", ln
            tags["hint"] = {
                "uri": a["URI"],
                "start": int(a.get("BYTERANGE-START", 0)),
                "length": int(a["BYTERANGE-LENGTH"]) if "BYTERANGE-LENGTH" in a else None,
            }
        elif ln.startswith("#EXT-X-RENDITION-REPORT:"):
            a = _attrs(ln.split(":", 1)[1])
            assert a["URI"] not in tags.setdefault("reports", {}), f"{ln}: reported twice"
            assert "LAST-PART" not in a, f"{ln}: a subtitle playlist has no parts"
            tags["reports"][a["URI"]] = int(a["LAST-MSN"])
        elif ln.startswith("#EXT-X-TARGETDURATION:"):
            tags["target"] = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            tags["mseq"] = seq = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            tags["dseq"] = int(ln.split(":", 1)[1])
        elif ln.startswith("#EXT-X-SERVER-CONTROL:"):
            a = _attrs(ln.split(":", 1)[1])
            tags["hold_back"] = float(a["HOLD-BACK"])
            tags["part_hold_back"] = float(a["PART-HOLD-BACK"]) if "PART-HOLD-BACK" in a else None
            tags["can_block"] = a.get("CAN-BLOCK-RELOAD") == "YES"
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
            pending = {"parts": []}
    for k in ("target", "mseq", "dseq", "hold_back"):
        assert k in tags, f"missing tag {k}"
    assert segs, "empty playlist"
    open_parts = pending.pop("parts")
    if open_parts:
        assert "pdt_s" in pending, "the parts on air have no PROGRAM-DATE-TIME before them"
        pending.pop("pdt_s")
        pending.pop("disc", None)
    assert not pending, "tags after the last segment"
    t = tags["target"]
    assert tags["hold_back"] >= 3 * t, "HOLD-BACK < 3 target durations"
    for s in segs:
        assert round(s["duration_s"]) <= t, f"EXTINF {s['duration_s']} > target {t}"
    pt = tags.get("part_target")
    for uri, last in tags.get("reports", {}).items():  # RFC 8216bis 4.4.5.4: where it ends
        assert pt is not None, "a rendition report without parts"
        assert last == segs[-1]["seq"], (
            f"{uri}: LAST-MSN {last}, the last closed segment is {segs[-1]['seq']}"
        )
    if pt is not None:
        _check_parts(segs, open_parts, tags, pt, seq)
    else:
        assert not open_parts and not any(s["parts"] for s in segs), "parts without PART-INF"
    for a, b in zip(segs, segs[1:]):
        assert b["pdt_s"] >= a["pdt_s"] + Fraction(a["duration_s"]).limit_denominator(1000) - Fraction(
            1, 500
        ), "PROGRAM-DATE-TIME overlaps or goes backwards"
        if not b["disc"]:
            gap = b["pdt_s"] - a["pdt_s"] - Fraction(a["duration_s"]).limit_denominator(1000)
            assert abs(gap) <= Fraction(1, 500), f"PDT gap {float(gap)} without a discontinuity"
    return Parsed(
        t,
        tags["mseq"],
        tags["dseq"],
        tags["hold_back"],
        segs,
        part_target_s=pt,
        part_hold_back_s=tags.get("part_hold_back"),
        can_block_reload=tags.get("can_block", False),
        open_parts=open_parts,
        hint=tags.get("hint"),
        reports=tags.get("reports", {}),
    )


def _check_parts(segs: list[dict], open_parts: list[dict], tags: dict, pt: float, next_seq: int) -> None:
    """RFC 8216bis part rules on one playlist (parts are byte ranges of their parent here)."""
    t = tags["target"]
    assert tags.get("can_block"), "parts without CAN-BLOCK-RELOAD=YES"
    assert tags["part_hold_back"] is not None and tags["part_hold_back"] >= 3 * pt - 1e-6, (
        "PART-HOLD-BACK < 3 PART-TARGETs"
    )
    seen_parts = False
    end_s = sum(s["duration_s"] for s in segs) + sum(p["duration_s"] for p in open_parts)
    start_s = 0.0
    for s in segs + [{"seq": next_seq, "uri": None, "parts": open_parts, "open": True}]:
        parts = s["parts"]
        if parts:
            seen_parts = True
            assert parts[0]["offset"] == 0 and parts[0]["independent"], (
                f"segment {s['seq']}: parts listed from its middle or first part not independent"
            )
            for a, b in zip(parts, parts[1:]):
                assert b["offset"] == a["offset"] + a["size"], f"segment {s['seq']}: ranges not contiguous"
            for k, p in enumerate(parts):
                # its parent's file, or, for one cut short into a file of its own (NNN-cut.ts),
                # the whole one (NNN.ts) for the parts published before the cut; after a restart
                # a sequence number may air from another take's file (NNN-1.ts)
                m = _MEDIA_NAME.match(p["uri"].rsplit("/", 1)[-1])
                assert m and int(m[1]) == s["seq"], ("part URI is not its parent's", p, s["uri"])
                if s["uri"] is not None and not s["uri"].endswith("-cut.ts"):
                    assert p["uri"] == s["uri"], ("part URI is not its parent's", p, s["uri"])
                assert 0 < p["duration_s"] <= pt + 1e-9, f"part of {p['duration_s']} s > PART-TARGET {pt}"
                last = k == len(parts) - 1 and not s.get("open")
                if not last and not p["independent"]:
                    assert p["duration_s"] >= 0.85 * pt - 1e-6, "part shorter than 85% of PART-TARGET"
            if not s.get("open"):
                total = sum(p["duration_s"] for p in parts)
                assert abs(total - s["duration_s"]) < 1e-4 * (len(parts) + 1), (
                    f"segment {s['seq']}: parts add up to {total}, EXTINF {s['duration_s']}"
                )
        elif seen_parts and not s.get("open"):
            pass  # a segment that could not be cut is published whole (logged by the engine)
        if not s.get("open"):
            # parts are listed for the last 3 target durations (and not much more)
            if end_s - start_s <= 3 * t - 1e-6 and not parts:
                assert s.get("whole_ok", True)
            if parts:
                assert end_s - start_s <= 3 * t + 1e-6, f"segment {s['seq']}: parts listed too far back"
            start_s += s["duration_s"]
    hint = tags.get("hint")
    # hls.js takes a last segment with nothing after it for the next one (its fragmentHint) and
    # stops for good at the next reload, "media sequence mismatch" (one published whole, from a
    # render that cannot be cut, is the known exception)
    assert open_parts or hint is not None or not segs[-1]["parts"], (
        f"ends at segment {segs[-1]['seq']}, closed, with neither parts nor a preload hint after it"
    )
    if hint is not None:
        if open_parts:
            last = open_parts[-1]
            assert hint["uri"] == last["uri"] and hint["start"] == last["offset"] + last["size"], (
                "preload hint does not name the next part",
                hint,
                last,
            )
        else:
            m = _MEDIA_NAME.match(hint["uri"].rsplit("/", 1)[-1])
            assert hint["start"] == 0 and m and int(m[1]) == next_seq, (
                "preload hint does not name part 0 of the next segment",
                hint,
            )


def check_transition(prev: Parsed | None, cur: Parsed) -> None:
    """Between two successive versions of the playlist: sequences monotonic and consistent."""
    if prev is None:
        return
    assert cur.target_duration_s == prev.target_duration_s, "TARGETDURATION changed"
    assert cur.part_target_s == prev.part_target_s, "PART-TARGET changed"
    assert cur.position >= prev.position, ("MSN/part went backwards", prev.position, cur.position)
    if cur.position[0] == prev.position[0]:
        assert cur.open_parts[: len(prev.open_parts)] == prev.open_parts, "published parts changed"
    assert cur.media_sequence >= prev.media_sequence, "MEDIA-SEQUENCE went backwards"
    assert cur.discontinuity_sequence >= prev.discontinuity_sequence, "DISCONTINUITY-SEQUENCE backwards"
    removed = [s for s in prev.segments if s["seq"] < cur.media_sequence]
    assert cur.discontinuity_sequence == prev.discontinuity_sequence + sum(s["disc"] for s in removed), (
        "DISCONTINUITY-SEQUENCE does not count the removed discontinuities"
    )
    old = {s["seq"]: s for s in prev.segments}
    for s in cur.segments:
        if s["seq"] in old:
            o = old[s["seq"]]
            assert (o["uri"], o["pdt_s"], o["disc"], o["duration_s"]) == (
                s["uri"],
                s["pdt_s"],
                s["disc"],
                s["duration_s"],
            ), f"segment {s['seq']} changed"
    if prev.segments and cur.segments and cur.segments[-1]["seq"] > prev.segments[-1]["seq"]:
        first_new = next(s for s in cur.segments if s["seq"] > prev.segments[-1]["seq"])
        last = prev.segments[-1]
        assert first_new["seq"] == last["seq"] + 1 or cur.media_sequence > last["seq"] + 1
        assert first_new["pdt_s"] >= last["pdt_s"], "PROGRAM-DATE-TIME went backwards"


def ffmpeg_reads_live(url: str, seconds: int, result: dict) -> None:
    """ffmpeg reads the channel's master playlist for ``seconds`` (in a thread beside a browser):
    ``result`` gets its exit code and what it printed at warning level."""
    r = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "warning",
            "-i",
            url + "/master.m3u8",
            "-t",
            str(seconds),
            "-map",
            "0:v",
            "-map",
            "0:a",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    result.update(rc=r.returncode, stderr=r.stderr)


def wait_on_air(url: str, segments: int = 3, timeout_s: float = 20.0) -> None:
    """Wait until the playout at ``url`` has published ``segments`` whole media segments since
    this was called. A fresh playlist already lists a window of filler (it is never empty), so
    counting its segments does not tell a channel that has run for seconds from one that has just
    started: viewers (chromium starting, an ffmpeg reader) then joined in the playout's own first
    second, all of them on 2 cores, and the player stalled at its start in 2 suite runs of 3."""
    import time
    import urllib.request

    def last() -> int:
        p = parse_live(urllib.request.urlopen(url + "/live.m3u8", timeout=5).read().decode())
        return p.media_sequence + len(p.segments) - 1

    first = last()
    deadline = time.monotonic() + timeout_s
    while last() < first + segments:
        assert time.monotonic() < deadline, f"{url}: no {segments} new media segments in {timeout_s} s"
        time.sleep(0.1)
