"""The ``avatarrender`` command line (typer). Sub-commands live in their own modules."""
from __future__ import annotations

import os
import sys

# Before numpy loads: its OpenBLAS would start a thread per core that spins after each small
# product of the analysis, taking CPU from the render's workers (2-3 % of a render here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

from avatarrender.errors import AvatarRenderError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

from cli import doctor as _doctor  # noqa: E402
from cli import epg as _epg  # noqa: E402
from cli import lipsync as _lipsync  # noqa: E402
from cli import metrics as _metrics  # noqa: E402
from cli import new as _new  # noqa: E402
from cli import playout as _playout  # noqa: E402
from cli import render as _render  # noqa: E402
from cli import schema as _schema  # noqa: E402
from cli import serve as _serve  # noqa: E402

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
