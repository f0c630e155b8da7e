"""Debian's nginx in front of a running playout, configured with examples/nginx.conf.

The example's server block is used as shipped, with only its listen port, root folder and the
playout's address replaced, inside a minimal main configuration of its own (pid, logs and temp
folders in a private directory), so a test or benchmark runs a real nginx on a free loopback port
without touching the system's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from procs import free_port

__all__ = ["NGINX", "free_port", "served_dir", "start_nginx"]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nginx.conf"


def served_dir() -> Path:
    """A folder nginx's workers (www-data when nginx starts as root) can read: every folder above
    it must be traversable, which pytest's 0700 temp folders are not."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="avatarrender-served-"))
    os.chmod(d, 0o755)
    return d


def start_nginx(root: Path, *, playout_port: int, work: Path) -> tuple[subprocess.Popen, str]:
    """Start nginx serving ``root`` and proxying the live playlist to ``playout_port``.

    Returns the process (terminate it when done) and its base URL. Logs: ``work/access.log``,
    ``work/error.log``.
    """
    port = free_port()
    block = EXAMPLE.read_text()
    for old, new in (
        ("listen 127.0.0.1:8080", f"listen 127.0.0.1:{port}"),
        ("root /srv/live;", f"root {root};"),
        ("server 127.0.0.1:8081;", f"server 127.0.0.1:{playout_port};"),
    ):
        assert old in block, f"examples/nginx.conf no longer has {old!r}"
        block = block.replace(old, new)
    work.mkdir(parents=True, exist_ok=True)
    user = "user www-data;" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {k}_temp_path {work}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {work}/access.log;
    sendfile on;
    tcp_nodelay on;
{temps}
{block}
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/master.m3u8", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("nginx did not start: " + (work / "error.log").read_text())
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("nginx did not answer: " + (work / "error.log").read_text())
