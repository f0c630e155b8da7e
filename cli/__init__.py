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


def main() -> None:
    """Console entry point (see the module's docstring)."""
    args = sys.argv[1:]
    quick = _submit_args(args[1:]) if args[:1] == ["submit"] else None
    if quick is None:
        from .main import main as full

        full()
        return
    from avatarrender.errors import AvatarRenderError
    from avatarrender.service import submit

    try:
        print(submit(quick["segment"], quick["--inbox"], name=quick.get("--name")).stem)
    except AvatarRenderError as exc:
        print(f"avatarrender: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
