"""Checks of the installation and of the machine: ``avatarrender doctor``.

``python -m avatarrender.doctor [--pil]`` is the quick install check that ``scripts/setup.sh``
runs after every install (Pillow-SIMD, not stock Pillow), so a broken environment fails loudly
there rather than at 3 a.m. in a render.

``avatarrender doctor`` looks at the machine a 24/7 channel will run on: CPU steal from
``/proc/stat`` (a shared VPS at 90 % steal cannot render 1080p30, and nothing else shows it),
AVX2, the Pillow-SIMD build (by timing what it accelerates), ffmpeg's and PyAV's x264, free disk
at the output and the spool, and a short 1080p render probe of a synthetic scene with the TV
playing (the hardest case). It then says how many times faster than air time the machine renders
and whether that keeps a channel fed. Measuring is kept apart from judging: :func:`assess` is a
pure function of the measured facts, so its verdicts and exit codes are tested on any machine.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = [
    "check_pillow_simd",
    "parse_proc_stat",
    "steal_pct",
    "busy_pct",
    "measure_steal",
    "gather",
    "assess",
    "report_text",
    "main",
    "OK_FACTOR",
    "STEAL_WARN_PCT",
]

#: below 1.0 the renderer falls behind air time; below this the margin is too thin for a
#: 24/7 channel (speech-heavy or TV-heavy hours, steal spikes, a render service's restarts)
OK_FACTOR = 1.2
STEAL_WARN_PCT = 10.0
DISK_WARN_HOURS = 24.0
DISK_ERROR_HOURS = 0.25  # less room than a quarter hour of output: the channel cannot be fed
#: Pillow-SIMD's AVX2 build composites a 1080p RGBA frame in about 2 ms here, stock Pillow in
#: about 16 ms (FIELD-NOTES); above this the build is not using SIMD as it should
ALPHA_COMPOSITE_SLOW_MS = 8.0

EXIT_OK = 0
EXIT_CANNOT = 1

PILLOW_FIX = (
    "pip uninstall -y pillow pillow-simd && CC='cc -mavx2' pip install --no-binary "
    "pillow-simd pillow-simd==12.1.1.post0 (scripts/setup.sh does this)"
)


def check_pillow_simd() -> str:
    """Return Pillow-SIMD's version; raise ``RuntimeError`` if ``PIL`` is anything else."""
    try:
        simd = md.distribution("pillow-simd")
    except md.PackageNotFoundError:
        raise RuntimeError("Pillow-SIMD is not installed: run scripts/setup.sh") from None
    try:
        stock = md.distribution("pillow")
    except md.PackageNotFoundError:
        stock = None
    if stock is not None:
        raise RuntimeError(
            f"stock pillow {stock.version} is installed beside Pillow-SIMD {simd.version} and "
            "overwrites its PIL/: `pip uninstall -y pillow pillow-simd` and run scripts/setup.sh again"
        )
    import PIL

    if PIL.__version__ != simd.version:
        raise RuntimeError(f"PIL {PIL.__version__} is not Pillow-SIMD {simd.version}")
    return simd.version


# ---------------------------------------------------------------------------- measuring


def parse_proc_stat(text: str) -> dict[str, int]:
    """The aggregate ``cpu`` line of ``/proc/stat`` as jiffies by field name.

    ``guest`` and ``guest_nice`` are already counted in ``user``/``nice`` (proc(5)), so
    :func:`steal_pct` leaves them out of the total.
    """
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:]]
            return {n: (values[i] if i < len(values) else 0) for i, n in enumerate(names)}
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def steal_pct(before: dict[str, int], after: dict[str, int]) -> float:
    """Share of CPU time stolen by the hypervisor between two :func:`parse_proc_stat` readings,
    percent of all CPU time (all cores) in the interval."""
    fields = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    total = sum(after[f] - before[f] for f in fields)
    return 100.0 * (after["steal"] - before["steal"]) / total if total > 0 else 0.0


def busy_pct(before: dict[str, int], after: dict[str, int]) -> float:
    """Share of CPU time (all cores) spent running anything, percent, between two readings."""
    fields = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    total = sum(after[f] - before[f] for f in fields)
    busy = sum(after[f] - before[f] for f in ("user", "nice", "system", "irq", "softirq"))
    return 100.0 * busy / total if total > 0 else 0.0


def _read_stat() -> dict[str, int]:
    with open("/proc/stat") as fh:
        return parse_proc_stat(fh.read())


def measure_steal(interval_s: float) -> tuple[float | None, float | None]:
    """CPU steal and CPU busy (by other processes: the doctor sleeps) over ``interval_s``
    seconds, percent; (None, None) where ``/proc/stat`` is missing."""
    try:
        before = _read_stat()
        time.sleep(interval_s)
        after = _read_stat()
        return round(steal_pct(before, after), 2), round(busy_pct(before, after), 2)
    except (OSError, ValueError):
        return None, None


def _cpu_info() -> dict[str, Any]:
    flags: set[str] = set()
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(val.split())
            elif key.strip() == "model name" and model is None:
                model = val.strip()
    except OSError:
        pass
    return {"cores": os.cpu_count() or 1, "model": model, "avx2": "avx2" in flags}


def _pillow() -> dict[str, Any]:
    out: dict[str, Any] = {"version": None, "simd": False, "error": None, "alpha_composite_1080p_ms": None}
    try:
        out["version"] = check_pillow_simd()
        out["simd"] = True
    except RuntimeError as exc:
        out["error"] = str(exc)
    try:
        from PIL import Image

        a = Image.new("RGBA", (1920, 1080), (10, 20, 30, 255))
        b = Image.new("RGBA", (1920, 1080), (200, 100, 50, 128))
        best = float("inf")
        for _ in range(5):  # best of five: the figure of the build, not of a busy moment
            t = time.perf_counter()
            Image.alpha_composite(a, b)
            best = min(best, time.perf_counter() - t)
        out["alpha_composite_1080p_ms"] = round(best * 1000, 2)
    except Exception as exc:  # PIL missing or broken: say so, do not crash the doctor
        out["error"] = out["error"] or f"PIL does not work: {exc}"
    try:
        from PIL import features

        out["raqm"] = bool(features.check("raqm"))
    except Exception:  # noqa: BLE001 - PIL missing: said above
        out["raqm"] = None
    return out


_X264 = re.compile(rb"x264 - core (\d+)")


def _x264_core(data: bytes) -> int | None:
    """The x264 core (API) number from the encoder's SEI in an H.264 stream."""
    m = _X264.search(data)
    return int(m.group(1)) if m else None


def _ffmpeg() -> dict[str, Any]:
    out: dict[str, Any] = {"path": None, "version": None, "libx264": False, "x264_core": None, "error": None}
    try:
        from avatarrender.media import ffmpeg_exe

        exe = ffmpeg_exe()
        out["path"] = exe
        ver = subprocess.run(
            [exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
        ).stdout
        out["version"] = ver.splitlines()[0].split(" Copyright")[0] if ver else None
        enc = subprocess.run(
            [
                exe,
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "color=s=64x64:d=0.04",
                "-frames:v",
                "1",
                "-c:v",
                "libx264",
                "-f",
                "h264",
                "-",
            ],
            capture_output=True,
            timeout=60,
        )
        out["libx264"] = enc.returncode == 0
        out["x264_core"] = _x264_core(enc.stdout)
        if enc.returncode:
            out["error"] = enc.stderr.decode(errors="replace").strip()[-300:]
    except Exception as exc:
        out["error"] = str(exc)
    return out


def _pyav() -> dict[str, Any]:
    out: dict[str, Any] = {"version": None, "x264_core": None, "error": None}
    try:
        from fractions import Fraction

        import av

        out["version"] = av.__version__
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
        ctx.time_base = Fraction(1, 30)
        frame = av.VideoFrame(64, 64, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
        out["x264_core"] = _x264_core(data)
    except Exception as exc:
        out["error"] = str(exc)
    return out


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(paths: dict[str, Path], maxrate_kbps: int) -> list[dict[str, Any]]:
    out = []
    for role, path in paths.items():
        usage = shutil.disk_usage(_existing(path))
        hours = usage.free * 8 / (maxrate_kbps * 1000) / 3600 if maxrate_kbps else None
        out.append(
            {
                "role": role,
                "path": str(path),
                "free_bytes": usage.free,
                "hours_at_maxrate": round(hours, 1) if hours is not None else None,
                # "folder", "file" (a render or the playout would refuse it) or "missing"
                "kind": "folder" if path.is_dir() else "file" if path.exists() else "missing",
            }
        )
    return out


def _probe(duration_s: float, preset: str, jobs: int | None) -> dict[str, Any]:
    """Render ``duration_s`` of a synthetic scene (the demo's art, TV playing, captions)."""
    from avatarrender.render import render
    from avatarrender.scaffold import draw_assets, segment_yaml
    from avatarrender.spec import load_spec

    with tempfile.TemporaryDirectory(prefix="avatarrender-doctor-") as tmp:
        folder = Path(tmp)
        draw_assets(folder / "assets", clip_s=min(12.0, max(2.0, duration_s)))
        yml = folder / "segment.yaml"
        yml.write_text(segment_yaml("doctor", duration_s=duration_s), encoding="utf-8")
        spec = load_spec(yml, overrides={"preset": preset})
        before = _read_stat() if Path("/proc/stat").exists() else None
        # the probe's placeholder speech is silent: the warning would name a temporary file
        quiet = logging.getLogger("avatarrender.loudness")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            manifest = render(spec, folder / "out", jobs=jobs)
        finally:
            quiet.setLevel(level)
        steal = round(steal_pct(before, _read_stat()), 2) if before else None
    stats = manifest.get("render", {})
    # steady: the chunks' phase alone, start-up (spec, analysis, scene build) left out, as in a
    # long render or the warm render service
    steady = None
    wall_s, setup_s = stats.get("wall_s"), stats.get("analysis_s")
    if wall_s and setup_s is not None and wall_s > setup_s:
        steady = round(float(spec.duration_s) / (wall_s - setup_s), 3)
    return {
        "preset": preset,
        "width": spec.output.width,
        "height": spec.output.height,
        "fps": str(spec.output.fps),
        "x264_preset": spec.output.x264_preset,
        "duration_s": float(spec.duration_s),
        "frames": spec.frame_count,
        "jobs": stats.get("jobs"),
        "wall_s": stats.get("wall_s"),
        "render_fps": stats.get("fps"),
        "realtime_factor": stats.get("realtime_factor"),
        "steady_realtime_factor": steady,
        "steal_pct": steal,
    }


def gather(
    *,
    output: Path,
    spool: Path | None = None,
    steal_s: float = 3.0,
    probe_s: float = 10.0,
    preset: str = "1080p30",
    jobs: int | None = None,
) -> dict[str, Any]:
    """Measure everything :func:`assess` judges. ``probe_s`` 0 skips the render probe."""
    from avatarrender.specload import load_preset

    facts: dict[str, Any] = {"cpu": _cpu_info()}
    steal, busy = measure_steal(steal_s) if steal_s > 0 else (None, None)
    facts["cpu"]["steal_pct"], facts["cpu"]["busy_pct"] = steal, busy
    facts["cpu"]["loadavg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    facts["cpu"]["steal_measured_s"] = steal_s
    facts["pillow"] = _pillow()
    facts["ffmpeg"] = _ffmpeg()
    facts["pyav"] = _pyav()
    maxrate = int(load_preset(preset).get("maxrate_kbps") or 0)
    paths = {"output": output}
    if spool is not None:
        paths["spool"] = spool
    facts["disk"] = _disk(paths, maxrate)
    facts["probe"] = None
    if probe_s > 0 and not facts["pillow"]["error"] and facts["ffmpeg"]["libx264"]:
        try:
            facts["probe"] = _probe(probe_s, preset, jobs)
        except Exception as exc:  # the verdict must still come out, with the reason
            facts["probe"] = {"error": f"{type(exc).__name__}: {exc}"}
    return facts


# ---------------------------------------------------------------------------- judging


def _problem(severity: str, check: str, message: str, fix: str) -> dict[str, str]:
    return {"severity": severity, "check": check, "message": message, "fix": fix}


def assess(facts: dict[str, Any]) -> dict[str, Any]:
    """Judge measured facts: the verdict, its plain summary, the problems with their fixes.

    Parameters
    ----------
    facts : dict
        As :func:`gather` returns (tests build their own).

    Returns
    -------
    dict
        ``facts`` plus ``verdict`` (``ok``, ``tight``, ``cannot-keep-up``, ``broken``,
        ``wrong-folder`` (a folder it was given is wrong, the rest is fine) or ``unknown``),
        ``ok`` (bool), ``exit_code`` (0, or 1 when the machine cannot keep a channel fed, the
        install is broken or a folder is wrong), ``summary`` (plain sentences) and
        ``problems``.
    """
    problems: list[dict[str, str]] = []
    cpu, pil, ff, pyav = facts["cpu"], facts["pillow"], facts["ffmpeg"], facts.get("pyav") or {}
    probe = facts.get("probe")
    if not cpu.get("avx2"):
        problems.append(
            _problem(
                "warning",
                "avx2",
                "this CPU has no AVX2: Pillow-SIMD falls back to SSE4 and "
                "compositing costs about twice as much",
                "choose a machine or VM plan with AVX2 (x86-64-v3: Intel Haswell, AMD Zen or newer), "
                "or render elsewhere (--backend dask, or render into the spool from another machine)",
            )
        )
    if pil.get("error"):
        problems.append(_problem("error", "pillow", pil["error"], PILLOW_FIX))
    elif (pil.get("alpha_composite_1080p_ms") or 0) > ALPHA_COMPOSITE_SLOW_MS and cpu.get("avx2"):
        problems.append(
            _problem(
                "warning",
                "pillow",
                f"alpha_composite of a 1080p frame takes "
                f"{pil['alpha_composite_1080p_ms']:.1f} ms (Pillow-SIMD with AVX2: about 2 ms): "
                "this build does not use AVX2",
                PILLOW_FIX,
            )
        )
    if pil.get("raqm") is False:
        problems.append(
            _problem(
                "warning",
                "pillow",
                "Pillow-SIMD was built without libraqm: Arabic and Hebrew captions are drawn "
                "unjoined and left to right",
                "apt-get install libraqm-dev, then run scripts/setup.sh again (it builds Pillow-SIMD with it)",
            )
        )
    if not ff.get("libx264"):
        problems.append(
            _problem(
                "error",
                "ffmpeg",
                f"ffmpeg cannot encode with libx264: {ff.get('error') or 'no encoder'}",
                "pip install --force-reinstall imageio-ffmpeg (its ffmpeg has "
                "libx264), or run scripts/setup.sh",
            )
        )
    if pyav.get("error"):
        problems.append(
            _problem(
                "error",
                "pyav",
                f"PyAV cannot encode with libx264: {pyav['error']}",
                "pip install -c scripts/constraints.txt av",
            )
        )
    elif ff.get("x264_core") and pyav.get("x264_core") and ff["x264_core"] != pyav["x264_core"]:
        problems.append(
            _problem(
                "warning",
                "x264",
                f"PyAV's x264 (core {pyav['x264_core']}) is not ffmpeg's "
                f"(core {ff['x264_core']}): renders differ between the two and between machines",
                "install the pinned versions: pip install -c scripts/constraints.txt av imageio-ffmpeg",
            )
        )
    steals = [s for s in (cpu.get("steal_pct"), (probe or {}).get("steal_pct")) if s is not None]
    steal = max(steals) if steals else None
    if steal is not None and steal >= STEAL_WARN_PCT:
        problems.append(
            _problem(
                "warning",
                "steal",
                f"CPU steal {steal:.0f} %: the hypervisor gives this VM's CPU "
                "time to other tenants, and render speed swings with their load",
                "move to a dedicated-CPU plan or another host; watch the `st` column of `vmstat 5` "
                "over a day",
            )
        )
    for d in facts.get("disk", []):
        kind = d.get("kind")
        if kind == "file" or (kind == "missing" and d["role"] == "spool"):
            what = "a file, not a folder" if kind == "file" else "no such folder (the playout refuses it)"
            problems.append(
                _problem(
                    "error", "disk", f"{d['role']} {d['path']}: {what}", f"give the {d['role']} folder's path"
                )
            )
            continue
        hours = d.get("hours_at_maxrate")
        if hours is not None and hours < DISK_WARN_HOURS:
            problems.append(
                _problem(
                    "error" if hours < DISK_ERROR_HOURS else "warning",
                    "disk",
                    f"{d['role']} {d['path']}: {d['free_bytes'] / 1e9:.1f} GB free, "
                    f"{hours:.1f} h of output at the preset's maximum rate",
                    "free space there, or clear aired spool items sooner (examples/crontab)",
                )
            )

    # the steady figure when the probe was long enough to have one: a channel renders long
    # segments (or keeps a warm render service), so start-up is not paid per second of air
    factor = (probe or {}).get("steady_realtime_factor") or (probe or {}).get("realtime_factor")
    busy = cpu.get("busy_pct")
    if busy is not None and busy >= 25:
        problems.append(
            _problem(
                "warning",
                "load",
                f"other processes kept the CPU {busy:.0f} % busy while the doctor "
                "was idle: the probe measured what is left for rendering",
                "run the doctor again when the machine is quiet, or give the channel its own machine",
            )
        )
    errors = [p for p in problems if p["severity"] == "error"]
    if errors:
        verdict = "wrong-folder" if all(p["check"] == "disk" for p in errors) else "broken"
    elif probe is None:
        verdict = "unknown"
    elif probe.get("error") or not factor:
        verdict = "broken"
        problems.append(
            _problem(
                "error",
                "probe",
                f"the render probe failed: {probe.get('error', 'no figures')}",
                "run `avatarrender render` on a segment to see the full error",
            )
        )
    elif factor < 1.0:
        verdict = "cannot-keep-up"
    elif factor < OK_FACTOR:
        verdict = "tight"
    else:
        verdict = "ok"
    if verdict in ("cannot-keep-up", "tight"):
        problems.append(
            _problem(
                "error" if verdict == "cannot-keep-up" else "warning",
                "speed",
                f"renders at {factor:.2f}x air time: "
                + ("slower than the channel airs" if factor < 1 else "too little margin"),
                "a faster or dedicated-CPU machine, more cores (render workers scale with cores), a "
                "lighter preset (720p30, or x264_preset superfast), or a cluster (--backend dask)",
            )
        )

    lines = []
    if factor:
        p = probe
        hours_per_day = 24.0 / factor
        how = "steady, start-up left out" if p.get("steady_realtime_factor") else "start-up included"
        speed = (
            f"{factor:.2f} times faster than air time"
            if factor >= 1
            else f"at only {factor:.2f}x air time (slower than it airs)"
        )
        lines.append(
            f"This machine renders {speed} ({p['width']}x{p['height']} {p['fps']} fps "
            f"{p['x264_preset']}, a {p['duration_s']:g} s probe with the TV playing, "
            f"{how}): a day of programme takes {hours_per_day:.1f} h to render."
        )
        if verdict == "ok":
            lines.append(
                f"It can keep a 24/7 channel fed, with {100 * (1 - 1 / factor):.0f} % "
                "of its render time to spare."
            )
        elif verdict == "tight":
            lines.append(
                f"It can keep a 24/7 channel fed, but only just ({100 * (1 - 1 / factor):.0f} "
                f"% spare; {100 * (1 - 1 / OK_FACTOR):.0f} % is the least we advise)."
            )
        elif verdict == "cannot-keep-up":
            lines.append(
                f"It cannot keep a 24/7 channel fed: it falls "
                f"{24 * (1 / factor - 1):.1f} h behind per day of programme."
            )
    if verdict == "wrong-folder":
        lines.append("A folder it was given is wrong: fix the errors below first.")
    elif verdict == "broken":
        lines.append("The installation is broken: fix the errors below first.")
    elif verdict == "unknown":
        lines.append("No render probe was run (--probe-s 0): no verdict on speed.")
    report = dict(facts)
    report.update(
        {
            "verdict": verdict,
            "ok": verdict in ("ok", "tight", "unknown"),
            "exit_code": EXIT_OK if verdict in ("ok", "tight", "unknown") else EXIT_CANNOT,
            "summary": " ".join(lines),
            "problems": problems,
        }
    )
    return report


def report_text(report: dict[str, Any]) -> str:
    """The report for a person: the checks, then the verdict, then the problems with fixes."""
    cpu, pil, ff, pyav = report["cpu"], report["pillow"], report["ffmpeg"], report["pyav"]
    steal = cpu.get("steal_pct")
    out = [
        f"CPU       {cpu['cores']} cores, {cpu.get('model') or 'unknown model'}, "
        f"AVX2 {'yes' if cpu.get('avx2') else 'NO'}, steal "
        + (f"{steal:.1f} % over {cpu['steal_measured_s']:g} s idle" if steal is not None else "not measured")
        + (f", busy {cpu['busy_pct']:.0f} % (others)" if cpu.get("busy_pct") is not None else "")
    ]
    out.append(
        "Pillow    "
        + (f"Pillow-SIMD {pil['version']}" if pil.get("version") else "NOT Pillow-SIMD")
        + (
            f", 1080p alpha_composite {pil['alpha_composite_1080p_ms']:.1f} ms"
            if pil.get("alpha_composite_1080p_ms") is not None
            else ""
        )
    )
    out.append(
        f"ffmpeg    {ff.get('version') or 'missing'}; libx264 "
        + (f"core {ff['x264_core']}" if ff.get("x264_core") else "MISSING")
    )
    out.append(
        f"PyAV      {pyav.get('version') or 'missing'}; libx264 "
        + (f"core {pyav['x264_core']}" if pyav.get("x264_core") else "MISSING")
    )
    for d in report.get("disk", []):
        if d.get("kind") == "missing":
            out.append(f"disk      {d['role']}: {d['path']}: no such folder")
            continue
        out.append(
            f"disk      {d['role']}: {d['path']} {d['free_bytes'] / 1e9:.1f} GB free"
            + (
                f" ({d['hours_at_maxrate']:.0f} h at max rate)"
                if d.get("hours_at_maxrate") is not None
                else ""
            )
        )
    p = report.get("probe")
    if p and not p.get("error"):
        out.append(
            f"probe     {p['frames']} frames {p['width']}x{p['height']} in {p['wall_s']:.1f} s "
            f"({p['render_fps']:.1f} fps, {p['realtime_factor']:.2f}x air time with start-up"
            + (f", {p['steady_realtime_factor']:.2f}x steady" if p.get("steady_realtime_factor") else "")
            + f", {p['jobs']} workers)"
            + (f", steal {p['steal_pct']:.1f} % meanwhile" if p.get("steal_pct") is not None else "")
        )
    out.append("")
    out.append(f"verdict   {report['verdict']}: {report['summary']}")
    for prob in report["problems"]:
        out.append(f"{prob['severity']:7s}   {prob['check']}: {prob['message']}")
        out.append(f"          fix: {prob['fix']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m avatarrender.doctor [--pil]``: the quick install check (no probe)."""
    try:
        version = check_pillow_simd()
    except RuntimeError as exc:
        print(f"avatarrender doctor: {exc}", file=sys.stderr)
        return 1
    import imageio_ffmpeg

    from PIL import features

    from .text import FALLBACK_FONTS

    print(f"Pillow-SIMD {version}; ffmpeg {imageio_ffmpeg.get_ffmpeg_exe()}")
    missing = [p for p in FALLBACK_FONTS if not os.path.isfile(p)]
    if not features.check("raqm"):
        print(
            "avatarrender doctor: Pillow-SIMD has no libraqm: right-to-left captions are not "
            "shaped (install libraqm-dev and run scripts/setup.sh again)",
            file=sys.stderr,
        )
    if missing:
        print(f"avatarrender doctor: caption fallback fonts missing: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
