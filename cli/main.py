"""The ``avatarrender`` command line (typer). Sub-commands live in their own modules."""
from __future__ import annotations

import sys

import typer

# (importing avatarrender first sets OPENBLAS_NUM_THREADS=1 before numpy loads: see its __init__)
from avatarrender.errors import AvatarRenderError

# Plain click help (no rich panels): flags read `-q, --quiet  No progress bar.`, without a
# `<bool>` type column beside every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Render 2D avatar segments into HLS ahead of air time, and play them out live.")

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


def main() -> None:
    """Entry point: errors of ours become one line on stderr and their exit code."""
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:  # typer returns 130 for Ctrl-C when not standalone
            if rv == 130:
                print("avatarrender: interrupted", file=sys.stderr)
            sys.exit(rv)
    except AvatarRenderError as exc:
        print(f"avatarrender: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("avatarrender: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors (typer's vendored click): they print themselves and carry exit code 2.
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
