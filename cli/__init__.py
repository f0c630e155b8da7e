"""The ``avatarrender`` command line (installed as ``avatarrender._cli``).

:func:`main` is the console script. ``avatarrender submit`` is answered without loading the CLI
framework or numpy: it only writes a file into a render service's inbox, and it runs on the path
from a new segment to the screen (about 0.1 s against 0.4-0.5 s through typer). Every other
command, ``submit --help`` and any ``submit`` usage that is not plainly right go to the typer app
in :mod:`.main`, which says what is wrong as for any command.
"""

from __future__ import annotations

import sys


def _submit_args(args: list[str]) -> dict[str, str] | None:
    """``SEGMENT --inbox DIR [--name NAME]`` (options also as ``--opt=value``), else None."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        key, eq, value = a.partition("=")
        if key in ("--inbox", "--name"):
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            if key in out:
                return None
            out[key] = value
        elif a.startswith("-") or "segment" in out:
            return None
        else:
            out["segment"] = a
        i += 1
    return out if "segment" in out and "--inbox" in out else None


def _then_leave_at_once(run) -> None:
    """Run the command; once it has succeeded, end the process without tearing the interpreter
    down. By then the output is renamed into place and the summary printed: what is left is
    unloading numpy, PyAV and the scene's caches, 0.15-0.25 s of a 20 s render's 4 s. The worker
    pool is shut down first (its processes end, as on a normal exit); a failure, or output that
    cannot be flushed, takes the normal way out."""
    import os

    try:
        run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        raise SystemExit(0) from None  # (a closed pipe: Python reports it its own way)
    from avatarrender import interrupt

    interrupt.finish()  # done: a stop signal now would only cut the pool's shutdown short
    interrupt.end_pool()
    os._exit(0)


def main() -> None:
    """Console entry point (see the module's docstring)."""
    args = sys.argv[1:]
    quick = _submit_args(args[1:]) if args[:1] == ["submit"] else None
    if quick is None:
        from .main import main as full

        if args[:1] == ["render"]:
            _then_leave_at_once(full)
        else:
            full()
        return
    from avatarrender.errors import AvatarRenderError
    from avatarrender.service import submit, unwatched

    try:
        print(submit(quick["segment"], quick["--inbox"], name=quick.get("--name")).stem)
        if why := unwatched(quick["--inbox"]):
            print(f"avatarrender: warning: {why}", file=sys.stderr)
    except AvatarRenderError as exc:
        print(f"avatarrender: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
