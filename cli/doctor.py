"""``avatarrender doctor``: can this machine keep a 24/7 channel fed?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def doctor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (for monitoring)."),
    output: Path = typer.Option(Path("."), "--output", "-o", help="Where renders go (free disk)."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="The playout's spool (free disk)."),
    probe_s: float = typer.Option(
        10.0,
        "--probe-s",
        min=0,
        max=600,
        help="Seconds of 1080p programme the render probe renders (0: no probe).",
    ),
    steal_s: float = typer.Option(
        3.0, "--steal-s", min=0, max=600, help="Seconds to measure CPU steal over before the probe."
    ),
    preset: str = typer.Option("1080p30", "--preset", help="The output preset to probe."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Render workers (default: cores)."),
) -> None:
    """Check the machine: CPU steal, AVX2, Pillow-SIMD, ffmpeg/x264, disk, and a render probe.

    Says how many times faster than air time this machine renders and whether it keeps a 24/7
    channel fed. Exit 1 when it cannot (or the install is broken), 0 otherwise.
    """
    from avatarrender.doctor import assess, gather, report_text
    from avatarrender.errors import SpecError
    from avatarrender.specload import load_preset

    try:
        load_preset(preset)
    except KeyError as exc:
        raise SpecError(None, "--preset", exc.args[0]) from None
    report = assess(
        gather(output=output, spool=spool, steal_s=steal_s, probe_s=probe_s, preset=preset, jobs=jobs)
    )
    print(json.dumps(report, indent=1, default=str) if as_json else report_text(report))
    raise typer.Exit(report["exit_code"])


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to ``app``."""
    app.command("doctor")(doctor_cmd)
