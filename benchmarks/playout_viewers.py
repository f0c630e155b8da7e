"""Many LL-HLS viewers on the built-in server (loopback): blocking reloads and parked clients.

    .venv/bin/python benchmarks/playout_viewers.py [--viewers 200] [--parked 1000] [--seconds 20]

Starts ``avatarrender playout --serve`` on a small filler (the server, not the media, is measured),
then, from this process (asyncio, one socket per viewer, HTTP/1.1 keep-alive):

* ``--viewers`` viewers each loop on the blocking reload of the next part
  (``_HLS_msn``/``_HLS_part``, as hls.js does) for ``--seconds``: errors, and the time from a part's
  publication (its end on the channel clock, from the playlist's PROGRAM-DATE-TIME and part
  durations) to the viewer holding the playlist that lists it: median, p99, max;
* ``--parked`` clients parked at once on a segment more than a second ahead: the server's RSS and
  threads with none, with all parked, and after they hang up (slots freed), and whether an
  ordinary request is still answered.

The server process's RSS and thread count come from /proc/PID/status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from avatarrender.playout.playlist import parse_pdt  # noqa: E402


def _proc_stats(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", text).group(1))
    return {"rss_mb": round(rss_kb / 1024, 1), "threads": threads}


def _edge(text: str) -> tuple[int, int, float]:
    """(next msn, parts of it published, wall time at which the last listed part ended)."""
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    pdt = 0.0
    t = 0.0
    n_open = 0
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt, t, n_open = float(parse_pdt(ln.split(":", 1)[1])), 0.0, 0
        elif ln.startswith("#EXT-X-PART:"):
            t += float(re.search(r"DURATION=([\d.]+)", ln).group(1))
            n_open += 1
        elif ln.startswith("#EXTINF:"):
            t = float(ln.split(":", 1)[1].rstrip(","))
        elif ln and not ln.startswith("#"):
            seq += 1
            pdt, t, n_open = pdt + t, 0.0, 0
    return seq, n_open, pdt + t


async def _request(reader, writer, path: str) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    body = await reader.readexactly(length)
    return status, body


async def _viewer(host: str, port: int, until: float, lat: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        status, body = await _request(reader, writer, "/live.m3u8")
        msn, part, _ = _edge(body.decode())
        while time.time() < until:
            status, body = await _request(reader, writer, f"/live.m3u8?_HLS_msn={msn}&_HLS_part={part}")
            now = time.time()
            if status != 200:
                errors.append(str(status))
                await asyncio.sleep(0.1)
                continue
            msn, part, edge = _edge(body.decode())
            lat.append(now - edge)
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def _parked(host: str, port: int, n: int, pid: int, seq: int) -> dict:
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection(host, port)
        w.write(f"GET /live.m3u8?_HLS_msn={seq} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        conns.append((r, w))
    await asyncio.gather(*(w.drain() for _, w in conns))
    await asyncio.sleep(0.5)
    parked = _proc_stats(pid)
    r, w = await asyncio.open_connection(host, port)
    _, body = await _request(r, w, "/status")
    w.close()
    parked["server_counts"] = json.loads(body)["http"]
    for _, w in conns:
        w.transport.abort()  # hang up while parked
    await asyncio.sleep(1.0)
    after = _proc_stats(pid)
    r, w = await asyncio.open_connection(host, port)
    status, _ = await _request(r, w, "/live.m3u8")
    _, body = await _request(r, w, "/status")
    after["server_counts"] = json.loads(body)["http"]
    w.close()
    return {"parked": n, "while_parked": parked, "after_hang_up": after, "then_status": status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, default=200)
    ap.add_argument("--parked", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from playout_media import make_rendered

    tmp = Path(tempfile.mkdtemp(prefix="playout-viewers-"))
    make_rendered(tmp / "filler", pattern="testsrc", seconds=10, cache_root=tmp / "cache")
    (tmp / "schedule.yaml").write_text("filler: {dir: filler}\n")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from avatarrender._cli.main import main; main()",
            "playout",
            "--schedule",
            str(tmp / "schedule.yaml"),
            "--out",
            str(tmp / "out"),
            "--serve",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        stdout=open(tmp / "playout.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/live.m3u8", timeout=1).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        idle = _proc_stats(proc.pid)
        lat: list[float] = []
        errors: list[str] = []
        until = time.time() + args.seconds

        async def viewers() -> dict:
            peak = {"rss_mb": 0.0, "threads": 0}

            async def sample() -> None:
                while time.time() < until:
                    st = _proc_stats(proc.pid)
                    peak["rss_mb"] = max(peak["rss_mb"], st["rss_mb"])
                    peak["threads"] = max(peak["threads"], st["threads"])
                    await asyncio.sleep(0.5)

            await asyncio.gather(
                sample(), *(_viewer("127.0.0.1", port, until, lat, errors) for _ in range(args.viewers))
            )
            return peak

        peak = asyncio.run(viewers())
        time.sleep(3)  # the viewers have hung up: what the server still holds (issue 14: < 50 MB)
        after = _proc_stats(proc.pid)
        lat.sort()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/live.m3u8", timeout=5).read().decode()
        seq, _, _ = _edge(text)
        parked = asyncio.run(_parked("127.0.0.1", port, args.parked, proc.pid, seq + 1))
        print(
            json.dumps(
                {
                    "viewers": args.viewers,
                    "seconds": args.seconds,
                    "answers": len(lat),
                    "errors": len(errors),
                    "error_kinds": sorted(set(errors))[:5],
                    "after_publication_s": {
                        "median": round(statistics.median(lat), 4),
                        "p99": round(lat[int(0.99 * (len(lat) - 1))], 4),
                        "max": round(lat[-1], 4),
                    }
                    if lat
                    else None,
                    "server_idle": idle,
                    "server_peak_with_viewers": peak,
                    "server_after_viewers": after,
                    "rss_kept_after_viewers_mb": round(after["rss_mb"] - idle["rss_mb"], 1),
                    **parked,
                },
                indent=1,
            )
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
