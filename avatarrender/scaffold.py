"""``avatarrender new``: a channel folder that renders and airs as it is.

The folder holds placeholder art drawn like the demo's (:mod:`avatarrender.art`), a
``segment.yaml`` and a ``schedule.yaml`` that carry the YAML language server's ``$schema``
modeline (with the two schema files beside them), a crontab line and a short README. It is built
in a hidden sibling folder and renamed into place at the end, so a failure leaves nothing
half-written; an existing folder is never touched.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

from . import interrupt
from .errors import SpecError

__all__ = ["new_channel", "draw_assets", "segment_yaml", "NAME_PATTERN"]

#: the folder's name becomes the schedule entry's name, which the schedule restricts to this
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

_SEGMENT = """\
{modeline}
# {name}: a placeholder segment made by `avatarrender new`. Replace the art under assets/ with
# your own (same sizes, or change the positions below), then check it: avatarrender validate {yaml}
# Relative paths are relative to this file.
output:
  preset: 1080p30
duration_s: {duration_s}            # without speech the segment needs a length
scene:
  background: assets/room.png      # 1920x1080: positions below are in its pixels
  layers:
    - image: assets/light_window.png
      blend: screen
      opacity: 0.55
    - image: assets/light_lamp.png
      blend: add
      opacity: 0.85
      position: [800, 0]
    - image: assets/vignette.png
      blend: multiply
      opacity: 0.6
character:
  position: [1240, 380]
  base: assets/character/base.png
  mouths:
{mouths}
  mouth_offset: [230, 352]
  eyes:
    open: assets/character/eyes_open.png
    half: assets/character/eyes_half.png
    closed: assets/character/eyes_closed.png
  eyes_offset: [190, 240]
tv:
  screen: [96, 160, 768, 432]
  overlay: assets/tv_bezel.png
  overlay_position: [56, 120]
  clips:
    - file: assets/clip.mp4
      start_s: {clip_start_s}
      end_s: {duration_s}                # to the end, looping the clip
      at_end: loop
# Give the host a voice: a WAV/FLAC/MP3 file; its length then sets duration_s (set that to null).
# speech:
#   file: assets/speech.wav
captions:
  cues:
    - text: "Hello from {name}!"
      start_s: 0.0
      end_s: {cue1_end_s}
    - text: "Replace me in segment.yaml"
      start_s: {cue1_end_s}
      end_s: {duration_s}
  style:
    size_px: 44
    box_color: "#1e1426c8"
    padding_px: 16
    position: [960, 1050]
    max_width_px: 1100
blink:
  seed: 7
  mean_interval_s: 4.0
"""

_SCHEDULE = """\
{modeline}
# The channel: avatarrender playout --schedule {schedule} --out {live} --serve 127.0.0.1:8080
# Relative paths are relative to this file. Times are ISO-8601 with a zone.
target_duration_s: 1
window_s: 6
hold_back_s: 3
late:
  max_late_s: 30
filler:                   # the idle loop of the segment (silence, no captions, TV off)
  spec: segment.yaml
  duration_s: {filler_s}
spool: spool              # what the crontab line renders airs from here, in order of arrival
render_lead_s: 600
channel: {name}             # its name in the programme guide (avatarrender epg)
entries:
  - name: {name}            # rendered ahead by the playout, aired as soon as its first media segments exist
    after: previous
    spec: segment.yaml
    title: Hello from {name}
    description: The placeholder segment made by avatarrender new.
"""

_CRONTAB = """\
# Render {name}'s segment into the spool every 30 minutes; it airs after whatever is queued.
# Install with: crontab -l | cat - {crontab} | crontab -
# m  h  dom mon dow  command
*/30 *  *   *   *    {exe} render {segment} --into {spool} --quiet --json >> {log} 2>&1
# Once a day, items the playout was done with a day ago (it writes NAME/.done when one aired to its
# end or was skipped) leave the spool: it would only grow. Refused ones stay for you to look at.
15   4  *   *   *    find {spool} -mindepth 2 -maxdepth 2 -name .done -mmin +1440 -printf '\\%h\\0' | xargs -0r rm -rf --
# And renders into it stopped or killed and left untouched for a week (.NAME.partial).
20   4  *   *   *    find {spool} -mindepth 1 -maxdepth 1 -type d -name '.*.partial' -mmin +10080 -exec rm -rf {{}} +
"""

_README = """\
{name}: a channel made by `avatarrender new`.

  avatarrender validate segment.yaml          check the segment (files, sizes, times)
  avatarrender preview segment.yaml --at 2    one frame as PNG
  avatarrender render segment.yaml -o out     render it to HLS (out/index.m3u8)
  avatarrender playout --schedule schedule.yaml --out live --serve 127.0.0.1:8080
                                              air it; open http://127.0.0.1:8080/
  crontab                                     a line that renders into the spool on a timer

segment.schema.json and schedule.schema.json let an editor with the YAML language server
complete and check the YAML files (see their first line). Regenerate them: avatarrender schema
"""


def _cron_arg(path: str | Path) -> str:
    """``path`` as one word of a crontab command: quoted for sh (a folder with a space sent the
    log to a file named after its first word, and the cleanup's find looked elsewhere), its %
    escaped (cron turns a bare % into a newline)."""
    return shlex.quote(str(path)).replace("%", "\\%")


def _executable() -> str:
    """The ``avatarrender`` next to this Python (a venv's), else the bare name on PATH."""
    exe = Path(sys.executable).with_name("avatarrender")
    return str(exe) if exe.is_file() else (shutil.which("avatarrender") or "avatarrender")


def draw_assets(assets: Path, *, clip_s: float = 12.0) -> None:
    """Draw the placeholder art under ``assets`` (room, lighting, character, TV bezel, a
    ``clip_s`` long TV clip) in the layout :func:`segment_yaml` expects."""
    from . import art

    assets.mkdir(parents=True, exist_ok=True)
    art.make_room(assets / "room.png")
    art.make_lighting(assets)
    art.make_character(assets / "character")
    art.make_bezel(assets / "tv_bezel.png")
    art.make_clip(assets / "clip.mp4", duration_s=clip_s)


def segment_yaml(name: str, *, duration_s: float, shown_path: str | Path = "segment.yaml") -> str:
    """The text of a placeholder ``segment.yaml`` over :func:`draw_assets`'s files: silent,
    ``duration_s`` long, the TV clip looping from 1 s to the end, two captions."""
    from .art import MOUTH_SHAPES
    from .schema import SCHEMA_FILES, modeline

    mouths = "\n".join(f"    {m}: assets/character/mouth_{m}.png" for m in MOUTH_SHAPES)
    return _SEGMENT.format(
        modeline=modeline(SCHEMA_FILES["segment"]),
        name=name,
        yaml=shown_path,
        duration_s=f"{float(duration_s):g}",
        mouths=mouths,
        clip_start_s=f"{min(1.0, duration_s / 4):g}",
        cue1_end_s=f"{float(duration_s) / 2:g}",
    )


def new_channel(folder: str | Path, *, duration_s: float = 20.0) -> Path:
    """Create a channel folder that renders and airs as it is.

    Parameters
    ----------
    folder : str or Path
        The folder to create; must not exist. Its name becomes the schedule entry's name.
    duration_s : float
        Length of the placeholder segment, seconds (at least 2).

    Returns
    -------
    Path
        The created folder, absolute.

    Raises
    ------
    SpecError
        The folder exists, its name is not a valid entry name, or ``duration_s`` is too short.
    """
    from .schema import SCHEMA_FILES, modeline, write_schemas

    folder = Path(folder).absolute()
    name = folder.name
    if folder.exists() or folder.is_symlink():
        raise SpecError(
            folder, None, "already exists: refusing to overwrite it (choose a new NAME or remove the folder)"
        )
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(
            folder, "NAME", f"{name!r}: use letters, digits, '.', '_' and '-' (it names the schedule entry)"
        )
    if not 2 <= duration_s <= 6 * 3600:
        raise SpecError(folder, "--duration-s", f"{duration_s} s: give 2 s to 6 h")
    if not folder.parent.is_dir():
        raise SpecError(folder.parent, None, "parent folder does not exist")
    partial = folder.with_name(f".{name}.partial")
    if partial.exists():  # left by a crashed run of ours: it was never the user's folder
        shutil.rmtree(partial)
    try:
        draw_assets(partial / "assets", clip_s=min(12.0, duration_s))
        write_schemas(partial)
        (partial / "segment.yaml").write_text(
            segment_yaml(name, duration_s=duration_s, shown_path=folder / "segment.yaml"), encoding="utf-8"
        )
        (partial / "schedule.yaml").write_text(
            _SCHEDULE.format(
                modeline=modeline(SCHEMA_FILES["schedule"]),
                name=name,
                schedule=folder / "schedule.yaml",
                live=folder / "live",
                filler_s=f"{min(10.0, float(duration_s)):g}",
            ),
            encoding="utf-8",
        )
        (partial / "crontab").write_text(
            _CRONTAB.format(
                name=name,
                crontab=_cron_arg(folder / "crontab"),
                exe=_cron_arg(_executable()),
                segment=_cron_arg(folder / "segment.yaml"),
                spool=_cron_arg(folder / "spool"),
                log=_cron_arg(folder / "render.log"),
            ),
            encoding="utf-8",
        )
        (partial / "README.txt").write_text(_README.format(name=name), encoding="utf-8")
        (partial / "spool").mkdir()
        with interrupt.committing():  # (a stop a library swallowed meanwhile: not created)
            partial.rename(folder)  # atomic: the folder appears complete or not at all
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder
