"""The public functions that are not a module's own: :func:`preview` and :func:`run_playout`.

``avatarrender.render``, ``avatarrender.load_spec`` and ``avatarrender.lipsync`` are handed on by
the package from their modules; this module only adds what the command line did by hand.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import MediaError, SpecError
from .rendition import Busy, FolderLock
from .spec import Spec, load_spec

log = logging.getLogger("avatarrender.playout")

__all__ = ["preview", "run_playout"]


def _spec(spec: str | Path | Spec) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def preview(spec: str | Path | Spec, at_s: float = 0.0) -> np.ndarray:
    """One composited frame of a segment, exactly as the render would encode it (no encode).

    Parameters
    ----------
    spec : str, Path or Spec
        A segment.yaml, or a spec already loaded by :func:`avatarrender.load_spec`.
    at_s : float
        Time in the segment, seconds; clamped to the segment's frames.

    Returns
    -------
    np.ndarray [shape=(height_px, width_px, 3), dtype=uint8]
        RGB at the output's size.

    Raises
    ------
    SpecError, AssetNotFoundError
        The YAML or a file it names is wrong (the message names the file and the field), or
        ``at_s`` is no number.
    MediaError, FFmpegError
        An input could not be decoded.
    """
    import math

    from .compose import preview_frame

    try:
        ok = math.isfinite(float(at_s))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SpecError(None, "at_s", f"{at_s!r} is not a time in the segment (seconds from its start)")
    return preview_frame(_spec(spec), at_s)


def run_playout(
    schedule: str | Path | None,
    out_dir: str | Path,
    *,
    filler: str | Path | None = None,
    filler_spec: str | Path | None = None,
    spool: str | Path | None = None,
    serve: tuple[str, int] | str | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[object], None] | None = None,
    verbose: bool = False,
) -> None:
    """Publish a live LL-HLS channel into ``out_dir`` until ``stop`` is set (what
    ``avatarrender playout`` runs, without its signal handling, push and logging set-up).

    Parameters
    ----------
    schedule : str, Path or None
        A schedule.yaml; None airs the spool (or only the filler).
    out_dir : str or Path
        The served folder: ``master.m3u8``, media, the monitor page.
    filler, filler_spec : str or Path, optional
        A rendered folder to loop when nothing is ready, or a segment.yaml whose idle loop is
        rendered once as filler (each overrides the schedule's).
    spool : str or Path, optional
        Air whatever finished render appears in this folder next, in order of arrival.
    serve : (host, port) or "HOST:PORT", optional
        Also serve ``out_dir`` over HTTP (blocking playlist reloads, ``/metrics``, ``/epg.xml``).
    stop : threading.Event, optional
        Set it (from another thread) to end the channel; default: run until the process ends.
    on_ready : callable, optional
        Called with the :class:`~avatarrender.playout.engine.Playout` before its first tick.
    verbose : bool
        Log every HTTP request too.

    Raises
    ------
    SpecError, AssetNotFoundError
        The schedule, a segment or the filler is wrong.
    MediaError
        The filler is not a finished render.
    """
    import dataclasses

    from .playout.engine import Playout, prepare_filler
    from .playout.schedule import Schedule, ScheduleModel, load_schedule
    from .render import ProcessRenderer

    address = _address(serve) if isinstance(serve, str) else serve
    out = Path(out_dir)
    _check_out(out, "out_dir")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    held = _OutHold(out, "out_dir")  # held until this function returns
    try:
        if schedule is not None:
            sched = load_schedule(Path(schedule), renders_dir=out / ".renders")
        else:
            sched = Schedule(
                path=None, model=ScheduleModel(), entries=(), filler_dir=None, filler_spec=None, spool=None
            )
        if spool is not None:
            sched = dataclasses.replace(sched, spool=Path(spool).resolve())
        # what can be told now is not left until after the filler's render
        if sched.spool is not None:
            _check_spool(sched.spool, "spool", sched.path if spool is None else None)
        if address is not None:
            _check_listen(address, "serve")
        renderer = ProcessRenderer()

        def ready_filler() -> Path:
            return prepare_filler(
                sched,
                out,
                filler_dir=Path(filler) if filler else None,
                filler_spec=Path(filler_spec) if filler_spec else None,
                renderer=renderer,
            )

        filler_dir = ready_filler()
        try:
            playout = Playout(sched, out, filler=filler_dir, renderer=renderer)
        except MediaError as exc:
            if (out / ".filler") not in filler_dir.parents:
                raise  # the operator's own folder: said, not replaced
            # the filler this playout rendered was damaged under it (a file removed, say): a
            # restart renders it again instead of refusing to start (exit 2 stops systemd)
            log.warning("the rendered filler is damaged (%s): rendering it again", exc)
            shutil.rmtree(filler_dir, ignore_errors=True)
            filler_dir = ready_filler()
            playout = Playout(sched, out, filler=filler_dir, renderer=renderer)
    except BaseException:  # not on air: nothing of it is left behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        held.close()
        raise
    playout.on_out_lost = held.again
    try:
        _air(playout, out, address, verbose, on_ready, stop)
    finally:
        held.close()  # whatever ends the channel, even its server's start (a port taken since)


def _air(playout, out: Path, address, verbose: bool, on_ready, stop) -> None:  # noqa: ANN001
    """Serve ``out`` (when ``address``) and run ``playout`` until ``stop``."""
    server = None
    if address is not None:
        from .playout import epg, metrics
        from .playout.server import serve_in_thread

        routes = {
            "/metrics": lambda: (metrics.metrics_text(playout).encode(), metrics.CONTENT_TYPE),
            "/epg.xml": lambda: (epg.epg_xml(playout).encode(), epg.CONTENT_TYPE),
        }
        server, _ = serve_in_thread(
            out,
            host=address[0],
            port=address[1],
            verbose=verbose,
            feed=playout.feed,
            routes=routes,
            on_request=lambda path, status: playout.counters.request(metrics.request_kind(path), status),
        )
        log.info("monitor page: %s/  (playlist %s/master.m3u8)", server.url, server.url)
    try:
        if on_ready is not None:
            on_ready(playout)
        playout.run(stop=stop or threading.Event())
    finally:
        if server is not None:
            server.shutdown()


class _OutHold:
    """The playout's lock on ``out/.lock`` (:class:`rendition.FolderLock`, kept): two playouts
    on one folder would write the same playlist, media and state over each other. ``rm -rf OUT``
    on air removes the lock file with the rest; the channel makes the folder again and
    :meth:`again` locks it anew (else a second playout could start on it)."""

    def __init__(self, out: Path, field: str):
        self.out, self.field = out, field
        try:
            self.lock = FolderLock(out / ".lock", keep=True)
        except Busy as exc:
            raise self._busy(exc) from None

    def _busy(self, exc: Busy) -> SpecError:
        return SpecError(
            None,
            self.field,
            f"{self.out}: another playout airs this folder (pid {exc.pid or '?'}): stop it "
            "first, or give this one a folder of its own",
        )

    def again(self) -> None:
        """Lock the folder's lock file again when it is not the one held (removed, made anew)."""
        try:
            self.lock.again()
        except Busy as exc:  # another playout took the folder meanwhile
            raise self._busy(exc) from None

    def close(self) -> None:
        self.lock.release()


# what only a playout's folder holds (the filler it rendered, its saved state, its playlist)
_PLAYOUT_OWN = {".state.json", "live.m3u8", ".filler", ".renders", "media", ".lock"}


def _check_out(out: Path, field: str) -> None:
    """That ``out`` is new, empty or a playout's own: a render's folder, or someone's web root,
    would have its playlists and pages overwritten (a SpecError naming ``field`` if not)."""
    try:
        names = set(os.listdir(out))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise SpecError(None, field, f"{out}: not a folder") from None
    if "manifest.json" in names:
        raise SpecError(
            None,
            field,
            f"{out}: a render's folder (the channel would overwrite its playlists): give the channel a folder of its own",
        )
    if names and not names & _PLAYOUT_OWN:
        raise SpecError(
            None,
            field,
            f"{out}: a folder that is not a playout's and not empty (the channel would overwrite its files): give the channel a new or empty folder",
        )


def _check_spool(spool: Path, field: str, file: Path | None = None) -> None:
    """That ``spool`` is a folder (a SpecError naming ``file`` and ``field`` if not: a mistyped
    spool would air filler forever, silently)."""
    if spool.exists() and not spool.is_dir():
        raise SpecError(
            file, field, f"{spool}: a file, not a folder (the spool is the folder renders go into)"
        )
    if not spool.is_dir():
        raise SpecError(
            file,
            field,
            f"{spool}: no such folder (create it, or check the path: an item there would never air)",
        )


def _check_listen(address: tuple[str, int], field: str = "serve") -> None:
    """That a server can listen on ``address`` now (a SpecError naming ``field`` if not: the
    port in use, the host not this machine's)."""
    import socket

    host, port = address
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            sock.bind(where)
    except OSError as exc:
        raise SpecError(None, field, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _address(text: str, field: str = "serve") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (on 127.0.0.1); a SpecError naming ``field``
    otherwise."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise SpecError(None, field, f"expected HOST:PORT or PORT (0-65535), got {text!r}")
    return host or "127.0.0.1", number
