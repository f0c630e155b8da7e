"""examples/systemd: the units pass `systemd-analyze verify` with no complaint (the ExecStart
binary pointed at this venv's), carry what a 24/7 service needs, and their output folder scheme
really lets the web server's user (www-data) read what the service writes, and nobody else."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

UNITS = ROOT / "examples" / "systemd"
VENV_EXE = "/srv/avatarrender/.venv/bin/avatarrender"


def _parse(path: Path) -> configparser.ConfigParser:
    # strict: a repeated section or key is an error (none of ours repeats one on purpose)
    cp = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # systemd keys are case-sensitive: Umask is not UMask
    cp.read_string(path.read_text(), source=str(path))
    return cp


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("avatarrender")
    for unit in list(UNITS.glob("*.service")) + list(UNITS.glob("*.timer")):
        (tmp_path / unit.name).write_text(unit.read_text().replace(VENV_EXE, str(exe)))
    files = sorted(str(p) for p in tmp_path.iterdir())
    assert len(files) == 4
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    # and verify does catch what we could get wrong: a mistyped key is reported
    bad = tmp_path / "avatarrender-playout.service"
    bad.write_text(bad.read_text().replace("UMask=", "Umask="))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "Unknown key 'Umask'" in r.stdout + r.stderr


@pytest.mark.parametrize(
    "name,writes",
    [
        ("avatarrender-playout.service", ["/srv/live", "/srv/spool"]),
        ("avatarrender-serve.service", ["/srv/spool"]),
        ("avatarrender-render.service", ["/srv/spool"]),
    ],
)
def test_units_have_what_a_channel_needs(name: str, writes: list[str]) -> None:
    svc = _parse(UNITS / name)["Service"]
    assert svc["User"] == "avatarrender" and svc["Group"] == "avatarrender"
    assert svc["Restart"] == "on-failure" and float(svc["RestartSec"]) > 0
    assert svc["RestartPreventExitStatus"] == "2"  # bad input is not retried
    assert svc["UMask"] == "0027"
    pre = shlex.split(svc["ExecStartPre"].lstrip("+"))
    assert pre[:7] == ["/usr/bin/install", "-d", "-m", "2750", "-o", "avatarrender", "-g"]
    assert pre[7] == "www-data" and pre[8:] == writes
    assert svc["ReadWritePaths"].split() == writes and svc["ProtectSystem"] == "strict"
    cmd = shlex.split(svc["ExecStart"])
    assert cmd[0] == VENV_EXE
    sysusers = (UNITS / "avatarrender.sysusers.conf").read_text()
    assert any(ln.split()[:2] == ["u", "avatarrender"] for ln in sysusers.splitlines())
    if "playout" in name:
        assert cmd[1:] == [
            "playout",
            "--schedule",
            "/srv/avatarrender/schedule.yaml",
            "--out",
            "/srv/live",
            "--serve",
            "127.0.0.1:8081",  # behind examples/nginx.conf, which listens on 8080
        ]
        assert _parse(UNITS / name)["Install"]["WantedBy"] == "multi-user.target"
    elif "serve" in name:
        assert cmd[1:] == ["serve", "--inbox", "/var/lib/avatarrender/inbox", "--spool", "/srv/spool"]
        assert svc["StateDirectory"] == "avatarrender"  # /var/lib/avatarrender: the inbox's parent
        assert svc["KillMode"] == "mixed" and "143" in svc["SuccessExitStatus"].split()
    else:
        assert cmd[1:3] == ["render", "/srv/segments/next.yaml"] and "--into" in cmd
        assert {"3", "143"} <= set(svc["SuccessExitStatus"].split())  # a stop is no failure
        timer = _parse(UNITS / "avatarrender-render.timer")
        assert timer["Timer"]["OnCalendar"] == "*:0/30" and timer["Timer"]["Persistent"] == "true"


def test_the_command_lines_parse() -> None:
    """The ExecStart command lines are ones our CLI accepts (--help after them fails otherwise)."""
    from typer.testing import CliRunner

    from avatarrender._cli.main import app

    for name in ("avatarrender-playout.service", "avatarrender-serve.service", "avatarrender-render.service"):
        args = shlex.split(_parse(UNITS / name)["Service"]["ExecStart"])[1:]
        r = CliRunner().invoke(app, [args[0], "--help"])
        assert r.exit_code == 0
        for opt in (a for a in args if a.startswith("--")):
            assert opt in r.output, (name, opt)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs root and runuser to act as three users",
)
def test_output_scheme_is_readable_by_www_data_only() -> None:
    """ExecStartPre's folder (owner swapped for 'nobody', our service user stand-in), written
    under UMask 0027 as that user: www-data reads the file, another user (daemon) cannot."""
    pre = shlex.split(_parse(UNITS / "avatarrender-playout.service")["Service"]["ExecStartPre"].lstrip("+"))
    root = Path(tempfile.mkdtemp(prefix="avatarrender-units-", dir="/tmp"))
    try:
        root.chmod(0o755)
        live = root / "live"
        cmd = [a if a != "avatarrender" else "nobody" for a in pre[:8]] + [str(live)]
        subprocess.run(cmd, check=True)
        write = (
            f"umask 0027 && mkdir {live}/media && printf seg > {live}/media/1.ts "
            f"&& printf pl > {live}/.tmp && mv {live}/.tmp {live}/live.m3u8"
        )
        subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", write], check=True)

        def can_read(user: str, path: Path) -> bool:
            return (
                subprocess.run(
                    ["runuser", "-u", user, "--", "cat", str(path)], capture_output=True
                ).returncode
                == 0
            )

        for f in (live / "media" / "1.ts", live / "live.m3u8"):
            assert f.stat().st_gid == 33 or f.group() == "www-data"
            assert can_read("www-data", f), f
            assert not can_read("daemon", f), f
    finally:
        shutil.rmtree(root, ignore_errors=True)
