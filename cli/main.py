"""The ``avatarrender`` command line (typer). Sub-commands live in their own modules."""

from __future__ import annotations

import copy
import logging
import os
import sys

import typer

# (importing avatarrender first sets OPENBLAS_NUM_THREADS=1 before numpy loads: see its __init__)
from avatarrender import interrupt
from avatarrender.errors import AvatarRenderError


# Plain click help (no rich panels): flags read `-q, --quiet  No progress bar.`, without a
# `<bool>` type column beside every flag.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Render 2D avatar segments into HLS ahead of air time, and play them out live.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"avatarrender {version('avatarrender')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("avatarrender (not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Render 2D avatar segments into HLS ahead of air time, and play them out live."""


from . import doctor as _doctor  # noqa: E402
from . import epg as _epg  # noqa: E402
from . import lipsync as _lipsync  # noqa: E402
from . import metrics as _metrics  # noqa: E402
from . import new as _new  # noqa: E402
from . import playout as _playout  # noqa: E402
from . import render as _render  # noqa: E402
from . import schema as _schema  # noqa: E402
from . import serve as _serve  # noqa: E402

_render.register(app)
_lipsync.register(app)
_playout.register(app)
_serve.register(app)
_schema.register(app)
_new.register(app)
_epg.register(app)
_doctor.register(app)
_metrics.register(app)


def _stopped(stop: interrupt.Interrupted) -> None:
    """A stop signal: every child process ends, one line, exit 128 + signal. ``os._exit``: the
    interpreter's exit would wait for joblib's threads, which wait for workers now gone."""
    interrupt.end_children()
    hint = f"; {interrupt.resume_hint}" if interrupt.resume_hint else ""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")  # over the progress bar, not after it
    print(f"avatarrender: stopped by {stop.name}{hint}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stop.exit_code)


class _LowerLevelFormatter(logging.Formatter):
    """``avatarrender: warning: ...`` for a log record, as for a warning."""

    def format(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)
        record.levelname = record.levelname.lower()
        return super().format(record)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A warning is one line for the user (``avatarrender: warning: ...``), not Python's two
    with a source line: our warnings name the file and the field themselves."""
    text = " ".join(str(message).split())
    print(f"avatarrender: warning: {text}", file=file or sys.stderr)


def main() -> None:
    """Entry point: errors of ours become one line on stderr and their exit code; a stop
    signal (SIGINT, SIGTERM, SIGHUP) becomes one line and 128 + its number, whatever error it
    caused on its way (an ffmpeg child killed by the same Ctrl-C, say)."""
    import warnings

    warnings.showwarning = _show_warning
    # Pillow's own lines, which name neither the file nor the field (the command's, not the
    # library's: a script keeps its filters): a large image is the user's own art, not an
    # upload (over twice the limit it is still refused, with its file and field); a format
    # this Pillow lacks is said in the error (images._why)
    warnings.filterwarnings("ignore", message="Image size .* could be decompression bomb")
    warnings.filterwarnings("ignore", message="image file could not be identified because")
    # a log warning where no command set logging up (render's loudness ceiling, say) reads like
    # every other warning, not as a bare message: Python's last-resort handler, our format
    last = logging.StreamHandler()
    last.setLevel(logging.WARNING)
    last.setFormatter(_LowerLevelFormatter("avatarrender: %(levelname)s: %(message)s"))
    logging.lastResort = last
    # every command stops on SIGINT, SIGTERM and SIGHUP as a render does (one line, 128 + n,
    # its children ended, its own clean-up run): `new` and `doctor` were killed outright by
    # SIGTERM and SIGHUP, no line, a half-made `.NAME.partial` or probe folder left behind.
    # (render, playout and serve then route the signals their own way.)
    interrupt.install(workers=False)
    try:
        rv = app(standalone_mode=False)
    except BaseException as exc:  # noqa: BLE001 - every way out is decided here
        stop = interrupt.received()
        if stop is not None:
            _stopped(stop)
        _fail(exc)
    stop = interrupt.received()
    if stop is not None:
        _stopped(stop)
    if isinstance(rv, int) and rv:  # typer returns 130 for Ctrl-C when not standalone
        if rv == 130:
            print("avatarrender: interrupted", file=sys.stderr)
        sys.exit(rv)


# set by ``render --json``: an error is also one JSON line on stdout, as success is (for cron)
json_summary = False


def _fail(exc: BaseException) -> None:
    if isinstance(exc, AvatarRenderError):
        print(f"avatarrender: error: {exc}", file=sys.stderr)
        if json_summary:
            import json

            print(json.dumps({"ok": False, "error": str(exc), "exit_code": exc.exit_code}), flush=True)
        # workers started while the spec was checked end cleanly first: killed half-way through
        # their start by our exit, one printed loky's traceback into the terminal after the line
        try:
            interrupt.end_pool()
        except Exception:  # noqa: BLE001 - the error above is what counts
            pass
        sys.exit(exc.exit_code)
    if isinstance(exc, (typer.Abort, KeyboardInterrupt)):
        print("avatarrender: aborted", file=sys.stderr)
        sys.exit(130)
    if isinstance(exc, typer.Exit):
        sys.exit(exc.exit_code)
    if isinstance(exc, SystemExit) or not isinstance(exc, Exception):
        raise exc
    if isinstance(exc, BrokenPipeError):  # `avatarrender ... | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)  # 128 + SIGPIPE, as a shell tool would
    # Usage errors (typer's click): one line too, with the command they concern
    code = getattr(exc, "exit_code", None)
    message = getattr(exc, "format_message", None)
    if callable(message) and isinstance(code, int):
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "avatarrender"
        if message():  # (no message: the help was asked for by giving no arguments, and shown)
            print(f"{where}: {message()} (see {where} --help)", file=sys.stderr)
        sys.exit(code)
    show = getattr(exc, "show", None)
    if callable(show) and isinstance(code, int):
        show()
        sys.exit(code)
    if os.environ.get("AVATARRENDER_TRACEBACK"):
        raise exc
    # Anything else is still one line (the operator's log stays readable); the
    # traceback is there for a bug report with AVATARRENDER_TRACEBACK=1.
    if isinstance(exc, OSError):
        what = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"avatarrender: error: {what}", file=sys.stderr)
    else:
        print(
            f"avatarrender: internal error: {type(exc).__name__}: {_first_line(exc)} "
            "(AVATARRENDER_TRACEBACK=1 shows where)",
            file=sys.stderr,
        )
    sys.exit(1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
