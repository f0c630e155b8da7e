"""``avatarrender render``, ``preview`` and ``validate``."""

from __future__ import annotations

import math
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from avatarrender.errors import AvatarRenderError, SpecError

__all__ = ["register"]


class _Bar:
    """A progress line on stderr: frames, fps and ETA. Redrawn in place on a terminal."""

    def __init__(self, total: int, *, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.last_print = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.first is None:
            if done >= total:  # found done (up to date): nothing to draw progress of
                return
            self.first = (now, done)  # frames already done (resumed) do not count toward fps
        t0, d0 = self.first
        fps = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        # no rate measured yet (the first call, or nothing rendered since): say so, not "nan"
        eta = f"ETA {(total - done) / fps:5.1f} s" if fps else ("done" if done >= total else "ETA   ...")
        width = 30
        fill = int(width * done / max(total, 1))
        line = f"[{'#' * fill}{'.' * (width - fill)}] {done}/{total} frames  {fps:6.1f} fps  {eta}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total or now - self.last_print > 5:
            sys.stderr.write(line + "\n")
            self.last_print = now
        sys.stderr.flush()


def _overrides(preset: Optional[str], x264_preset: Optional[str]) -> dict:
    out = {}
    if preset:
        out["preset"] = preset
    if x264_preset:
        out["x264_preset"] = x264_preset
    return out


def _load(segment: Path, overrides: dict) -> Any:
    """load_spec with the options' values: a bad one is said as the option (it was said as a
    field of the YAML, which has no such value)."""
    from avatarrender.errors import SpecError
    from avatarrender.spec import load_spec

    try:
        return load_spec(segment, overrides=overrides)
    except SpecError as exc:
        key = (exc.field or "").removeprefix("output.")
        if exc.field and exc.field.startswith("output.") and key in overrides:
            raise SpecError(None, "--" + key.replace("_", "-"), exc.message) from None
        raise


def render_cmd(
    segment: Path = typer.Argument(..., metavar="SEGMENT.yaml", help="The segment.yaml to render."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output folder (default: out/<yaml stem>)."
    ),
    into: Optional[Path] = typer.Option(
        None, "--into", help="Publish into this spool folder as <name>/ (in progress: .<name>.partial/)."
    ),
    name: Optional[str] = typer.Option(
        None, "--name", help="Name in the spool (default: <yaml stem>-<UTC time>)."
    ),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, help="Parallel chunk workers (default: cores)."
    ),
    chunk_segments: int = typer.Option(2, "--chunk-segments", min=1, help="Media segments per chunk."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="x264 threads per worker."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Output preset (overrides the YAML)."),
    x264_preset: Optional[str] = typer.Option(None, "--x264-preset", help="x264 preset override."),
    backend: str = typer.Option("loky", "--backend", help="joblib backend: loky, or dask."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="dask scheduler address (tcp://HOST:PORT)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Render even if the output is up to date; and replace OUT even if it is a file or a folder "
        "that is not a render (its contents are lost).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for another render of the same output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (for cron)."),
) -> None:
    """Render a segment into HLS (1080p30 H.264/AAC by default), in parallel chunks."""
    from avatarrender import interrupt
    from avatarrender.render import check_not_busy, partial_path, render, start_workers

    if as_json:
        from avatarrender._cli import main as _main

        _main.json_summary = True
    interrupt.install(workers=backend == "loky")  # SIGINT, SIGTERM, SIGHUP: one line, 130/143/129
    if backend == "loky":
        start_workers(jobs or os.cpu_count() or 1)  # they start while the spec is checked
    if name is not None and into is None:
        raise SpecError(None, "--name", "names a render in a spool: give --into SPOOL with it")
    if into is not None:
        from avatarrender.service import _check_name

        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        chosen = name or f"{segment.stem}-{stamp}"
        try:  # as submit does: a name with a slash or '..' would land outside the spool, and one
            # starting with a dot or ending in .partial would never air
            _check_name(chosen, None)
        except SpecError as exc:
            raise SpecError(None, "--name", exc.message + ("" if name else " (pass --name)")) from None
    if into is not None and output is not None:
        raise SpecError(None, "--into", "give either -o/--output or --into, not both")
    if into is not None:
        out_dir = into / chosen
    else:
        out_dir = output or Path("out") / segment.stem
    if not wait:
        check_not_busy(out_dir)  # said before the spec's check (seconds of work for nothing)
    spec = _load(segment, _overrides(preset, x264_preset))  # its SpecWarnings: a line each
    where = partial_path(out_dir.absolute(), hidden=into is not None)
    if into is not None:  # a new run would take a new time-stamped name: the name resumes it
        again = f"{segment} --into {into} --name {chosen}"
        interrupt.resume_hint = f"what is finished stays in {where}: `avatarrender render {again}` resumes it"
    else:
        interrupt.resume_hint = f"what is finished stays in {where} and a new render resumes from there"
    bar = _Bar(spec.frame_count, enabled=not quiet and not as_json)
    kwargs = dict(
        jobs=jobs,
        chunk_segments=chunk_segments,
        threads=threads,
        force=force,
        wait_lock=wait,
        hidden_partial=into is not None,
        progress=bar,
    )
    if backend == "dask":
        manifest = _render_on_dask(spec, out_dir, scheduler, kwargs)
    elif backend == "loky":
        manifest = render(spec, out_dir, **kwargs)
    else:
        raise SpecError(None, "--backend", f"unknown backend {backend!r}: use loky or dask")
    stats = manifest.get("render", {})
    summary = {
        "ok": True,
        "output": str(Path(out_dir).resolve()),
        "up_to_date": bool(manifest.get("up_to_date")),
        "duration_s": manifest["duration_s"],
        "frames": manifest["frame_count"],
        "segments": len(manifest["segments"]),
        **{
            k: stats.get(k)
            for k in ("wall_s", "fps", "realtime_factor", "first_segment_s", "frames_rendered")
        },
    }
    if summary["up_to_date"]:  # nothing rendered now: not the earlier render's figures
        summary.update(wall_s=None, fps=None, realtime_factor=None, first_segment_s=None, frames_rendered=0)
    if as_json:
        print(json.dumps(summary))
    elif not quiet:
        if summary["up_to_date"]:
            print(f"{summary['output']}: up to date ({summary['segments']} media segments)")
        else:
            done = summary["frames_rendered"]
            resumed = (
                "" if done in (None, summary["frames"]) else f" ({done} rendered now, the rest found done)"
            )
            print(
                f"{summary['output']}/index.m3u8: {summary['frames']} frames{resumed}, "
                f"{summary['segments']} media segments in {summary['wall_s']:.1f} s "
                f"({summary['fps']:.1f} fps, {summary['realtime_factor']:.2f}x real time)"
            )


def _render_on_dask(spec, out_dir: Path, scheduler: Optional[str], kwargs: dict) -> dict:
    try:
        from dask.distributed import Client
    except ImportError:
        raise AvatarRenderError(
            "--backend dask needs dask.distributed: pip install 'avatarrender[cluster]'"
        ) from None
    from joblib import parallel_config

    from avatarrender.errors import ClusterError
    from avatarrender.render import render

    if not scheduler:
        raise SpecError(None, "--scheduler", "--backend dask needs --scheduler tcp://HOST:PORT")
    try:
        client = Client(scheduler, timeout="20s")
    except OSError as exc:  # distributed's own connect timeout is an OSError too
        raise ClusterError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=10)
        except TimeoutError:
            # (joblib would wait 10 s more and print a paragraph about its own settings)
            raise ClusterError(
                f"--scheduler {scheduler}: the Dask cluster has no worker (none joined in 10 s): "
                f"start some where the output folder is seen (dask worker {scheduler})"
            ) from None
        workers = len(client.scheduler_info().get("workers", {})) or 1
        kwargs = {**kwargs, "jobs": kwargs.get("jobs") or workers}
        with parallel_config(backend="dask"):
            return render(spec, out_dir, **kwargs)


def preview_cmd(
    segment: Path = typer.Argument(..., metavar="SEGMENT.yaml", help="The segment.yaml."),
    at: float = typer.Option(0.0, "--at", help="Time in the segment, seconds."),
    output: Path = typer.Option(
        Path("frame.png"), "-o", "--output", help="Image to write: PNG, or JPEG/WebP/... by its extension."
    ),
    preset: Optional[str] = typer.Option(None, "--preset", help="Output preset override."),
) -> None:
    """Write one composited frame as PNG (no encode): exactly what the render would encode."""
    from PIL import Image

    from avatarrender.compose import preview_frame
    from avatarrender.images import output_format
    from avatarrender.rendition import atomic_write
    import io

    from avatarrender import interrupt

    interrupt.install(workers=False)
    if not math.isfinite(at) or at < 0:
        raise SpecError(None, "--at", f"{at} is not a time in the segment (seconds from its start)")
    if output.is_dir():
        raise SpecError(None, "--output", f"{output} is a folder: give an image file's path (.png, .jpg)")
    kind = output_format(output, "--output")
    spec = _load(segment, _overrides(preset, None))  # warns as validate and render do
    if at >= float(spec.duration_s):  # the last frame starts a frame before the end
        raise SpecError(
            None, "--at", f"{at} s is past the segment's last frame ({float(spec.duration_s):.3f} s long)"
        )
    buf = io.BytesIO()
    Image.fromarray(preview_frame(spec, at)).convert("RGB").save(buf, format=kind)
    with interrupt.committing():  # a stop a library swallowed meanwhile still writes nothing
        atomic_write(output, buf.getvalue())
    print(f"{output}: frame at {at:.3f} s ({spec.output.width}x{spec.output.height})")


def validate_cmd(
    segment: Path = typer.Argument(..., metavar="SEGMENT.yaml", help="The segment.yaml."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Output preset override."),
) -> None:
    """Check a segment like a render would (files, media, geometry, times); write nothing."""
    from avatarrender.plan import plan_chunks

    from avatarrender import interrupt

    interrupt.install(workers=False)
    spec = _load(segment, _overrides(preset, None))  # the render's own checks, all, and warnings
    plan = plan_chunks(spec)
    out = spec.output
    clips = len(spec.tv.clips) if spec.tv else 0
    print(
        f"{segment}: ok: {float(spec.duration_s):.3f} s, {spec.frame_count} frames at "
        f"{out.width}x{out.height} {out.fps} fps, {plan.segment_count} media segments in "
        f"{len(plan.chunks)} chunks, {len(spec.cues)} captions, {clips} TV clips, "
        f"spec {spec.spec_hash}"
    )


def register(app: typer.Typer) -> None:
    """Add render, preview and validate to ``app``."""
    app.command("render")(render_cmd)
    app.command("preview")(preview_cmd)
    app.command("validate")(validate_cmd)
